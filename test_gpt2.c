// test_gpt2: the C GPT-2 against PyTorch (dev/gpt2_ref.py wrote the
// reference: a tiny model of odd sizes, a batch, PyTorch's logits, loss and
// every gradient). Errors are measured relative to the largest reference
// value of each tensor, so a small gradient tensor cannot hide a wrong one.
#define TESTING
#include "train_gpt2.c"

#include <omp.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures = 0;

// max |a - b| / max |b| over n values; report and count a failure above tol
static double check(const char *what, const float *ours, const float *ref, size_t n, double tol) {
    double max_diff = 0.0, max_ref = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)ours[i] - (double)ref[i]);
        if (!(d <= max_diff)) max_diff = d; // also catches NaN
        if (fabs(ref[i]) > max_ref) max_ref = fabs(ref[i]);
    }
    double rel = max_diff / (max_ref > 0 ? max_ref : 1.0);
    int ok = rel <= tol;
    printf("%-4s %-12s max|diff| %.3e  max|ref| %.3e  rel %.3e\n", ok ? "ok" : "FAIL", what, max_diff, max_ref, rel);
    if (!ok) failures++;
    return rel;
}

// -e d<L> and gpt2:d<L> against llm.c's table of GPT-2 sizes; parameter counts
// hand-computed as V C + maxT C + L (12 C^2 + 13 C) + 2 C (padded: Vp for V)
static void test_presets(void) {
    struct { const char *spec; int L, C, NH; size_t params, padded; } want[] = {
        {"d4", 4, 256, 4, 16287488, 16299520},
        {"d6", 6, 384, 6, 30339456, 30357504},
        {"d12", 12, 768, 12, 124439808, 124475904},
        {"gpt2:d12", 12, 768, 12, 124439808, 124475904},
        {"d24", 24, 1024, 16, 354823168, 354871296},
        {"d36", 36, 1280, 20, 774030080, 774090240},
        {"d48", 48, 1600, 25, 1557611200, 1557686400},
        {"d60", 60, 1920, 30, 2754168960, 2754259200},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        GPT2Config c;
        TensorList tensors;
        int ok = gpt2_config_from_depth(&c, want[i].spec);
        size_t padded = ok ? gpt2_param_tensors(&tensors, &c) : 0;
        size_t params = padded - (size_t)(c.padded_vocab_size - c.vocab_size) * (size_t)c.channels;
        ok = ok && c.num_layers == want[i].L && c.channels == want[i].C && c.num_heads == want[i].NH &&
             params == want[i].params && padded == want[i].padded;
        printf("%-4s preset %-9s L %d C %d NH %d, %zu parameters (%zu padded)\n", ok ? "ok" : "FAIL", want[i].spec,
               c.num_layers, c.channels, c.num_heads, params, padded);
        if (!ok) failures++;
    }
    // a checkpoint path is not a preset; a depth outside the table is refused with one line
    GPT2Config c;
    int ok = !gpt2_config_from_depth(&c, "model.bin") && !gpt2_config_from_depth(&c, "dev/x.bin");
    const char *refused[] = {"d13", "d96", "d0", "gpt2:x12"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            freopen("/dev/null", "w", stderr);
            gpt2_config_from_depth(&c, refused[i]);
            _exit(0); // accepted: the parent counts a failure
        }
        int status;
        waitpid(pid, &status, 0);
        ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 1;
    }
    printf("%-4s presets: paths are not presets; d13, d96, d0, gpt2:x12 are refused\n", ok ? "ok" : "FAIL");
    if (!ok) failures++;
}

static int same_bits(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

// The LM head in chunks (more rows than one chunk, the last one partial):
//  - gpt2_head_forward_backward against gpt2_head_ref, which holds all the
//    logits at once: the same losses, dlnf and dwte, bit for bit;
//  - a training forward (head gradients in the forward) and a plain forward
//    (gpt2_backward recomputes them) give the same loss and gradients, bit for
//    bit, on 1 thread as on several, and a second backward after the same
//    forward (fused updates' measuring pass) the same again;
//  - the whole model's gradient of a batch of 3 rows (chunked) against the sum
//    of the 3 rows' gradients, each a batch of one row taken in one chunk (the
//    path test_gpt2 holds against PyTorch below), weighted 1/3: to fp32 rounding.
static void test_chunked_head(void) {
    GPT2Config cfg = {.max_seq_len = 512, .vocab_size = 301, .num_layers = 2, .num_heads = 2, .channels = 32,
                      .padded_vocab_size = 320};
    int B = 3, T = 300, C = cfg.channels, V = cfg.vocab_size, Vp = cfg.padded_vocab_size;
    size_t BT = (size_t)B * T;
    int R = (int)gpt2_head_rows(BT);
    if (R >= (int)BT) { printf("FAIL chunked head: %zu rows fit one chunk of %d\n", BT, R); failures++; return; }
    GPT2 model, row_model;
    gpt2_build_random(&model, &cfg, 7);
    gpt2_build_random(&row_model, &cfg, 7);
    gpt2_allocate_gradients(&model, 0);
    gpt2_allocate_activations(&model, B, T);
    gpt2_allocate_gradients(&row_model, 0);
    gpt2_allocate_activations(&row_model, 1, T);
    int *x = malloc_or_fail(BT * sizeof(int), "x"), *y = malloc_or_fail(BT * sizeof(int), "y");
    Rng rng;
    rng_seed(&rng, 11);
    for (size_t i = 0; i < BT; i++) { x[i] = (int)rng_below(&rng, V); y[i] = (int)rng_below(&rng, V); }

    // the head alone, on the final LayerNorm's output a forward leaves in scratch.ln
    gpt2_forward(&model, x, y, B, T);
    float *logits = malloc_or_fail(BT * Vp * sizeof(float), "logits"), *chunk = malloc_or_fail((size_t)R * Vp * sizeof(float), "chunk");
    float *losses_ref = malloc_or_fail(BT * sizeof(float), "losses"), *losses = malloc_or_fail(BT * sizeof(float), "losses");
    float *dlnf_ref = malloc_or_fail(BT * C * sizeof(float), "dlnf"), *dlnf = malloc_or_fail(BT * C * sizeof(float), "dlnf");
    float *dwte_ref = malloc_or_fail((size_t)Vp * C * sizeof(float), "dwte"), *dwte = malloc_or_fail((size_t)Vp * C * sizeof(float), "dwte");
    gpt2_head_ref(logits, losses_ref, dlnf_ref, dwte_ref, model.scratch.ln, model.params.wte, y, (int)BT, C, V, Vp);
    gpt2_head_forward_backward(chunk, losses, dlnf, dwte, model.scratch.ln, model.params.wte, y, (int)BT, R, C, V, Vp);
    int ok = same_bits(losses, losses_ref, BT) && same_bits(dlnf, dlnf_ref, BT * C) && same_bits(dwte, dwte_ref, (size_t)Vp * C);
    printf("%-4s LM head in chunks of %d rows (%zu rows) = all rows at once: losses, dlnf, dwte bit for bit\n",
           ok ? "ok" : "FAIL", R, BT);
    failures += !ok;

    // the whole model: training forward, plain forward, 1 thread, a second backward
    size_t np = model.mem.num_parameters;
    float *g_train = malloc_or_fail(np * sizeof(float), "grads"), *g_rows = calloc_or_fail(np, sizeof(float), "grads");
    model_zero_grad(&model.mem);
    gpt2_forward_train(&model, x, y);
    float loss_train = model.mean_loss;
    gpt2_backward(&model, 1.0f, NULL);
    memcpy(g_train, model.mem.grads_memory, np * sizeof(float));
    model_zero_grad(&model.mem);
    gpt2_forward(&model, x, y, B, T);
    gpt2_backward(&model, 1.0f, NULL);
    ok = model.mean_loss == loss_train && same_bits(model.mem.grads_memory, g_train, np);
    printf("%-4s chunked head: gradients in the training forward = recomputed in backward, bit for bit\n", ok ? "ok" : "FAIL");
    failures += !ok;
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    model_zero_grad(&model.mem);
    gpt2_forward_train(&model, x, y);
    gpt2_backward(&model, 1.0f, NULL);
    omp_set_num_threads(threads);
    ok = model.mean_loss == loss_train && same_bits(model.mem.grads_memory, g_train, np);
    model_zero_grad(&model.mem);
    gpt2_backward(&model, 1.0f, NULL); // again after the same forward
    ok = ok && same_bits(model.mem.grads_memory, g_train, np);
    printf("%-4s chunked head: 1 thread and %d give the same bits; so does a second backward\n", ok ? "ok" : "FAIL", threads);
    failures += !ok;

    // against three one-row batches, each in one chunk
    double loss_rows = 0.0;
    for (int b = 0; b < B; b++) {
        model_zero_grad(&row_model.mem);
        gpt2_forward_train(&row_model, x + (size_t)b * T, y + (size_t)b * T);
        gpt2_backward(&row_model, 1.0f / B, NULL);
        loss_rows += row_model.mean_loss / (double)B;
        for (size_t i = 0; i < np; i++) g_rows[i] += row_model.mem.grads_memory[i];
    }
    printf("%-4s chunked head: loss %.7f, the rows' mean %.7f\n", fabs(loss_train - loss_rows) < 1e-6 * loss_rows ? "ok" : "FAIL",
           loss_train, loss_rows);
    failures += !(fabs(loss_train - loss_rows) < 1e-6 * loss_rows);
    check("chunked grads", g_train, g_rows, np, 1e-5);

    free(x); free(y); free(logits); free(chunk); free(losses_ref); free(losses); free(dlnf_ref); free(dlnf);
    free(dwte_ref); free(dwte); free(g_train); free(g_rows);
    gpt2_free(&model);
    gpt2_free(&row_model);
}

// ./test_gpt2 --logits CHECKPOINT INPUT OUTPUT: the model's logits for
// dev/test_export.py. INPUT: int32 B, T, then B*T int32 token ids; OUTPUT:
// B*T*V float32 logits (the real vocabulary, not the padding).
static int logits_main(int argc, char **argv) {
    if (argc != 5) fail("usage: ./test_gpt2 --logits CHECKPOINT INPUT OUTPUT");
    GPT2 model;
    gpt2_build_from_checkpoint(&model, argv[2]);
    FILE *f = fopen_or_fail(argv[3], "rb");
    int bt[2];
    fread_or_fail(bt, sizeof(int), 2, f, argv[3]);
    if (bt[0] < 1 || bt[1] < 1 || bt[1] > model.config.max_seq_len || bt[0] > 4096)
        fail("%s: B %d, T %d do not fit the model", argv[3], bt[0], bt[1]);
    int B = bt[0], T = bt[1], V = model.config.vocab_size, Vp = model.config.padded_vocab_size;
    int *ids = malloc_or_fail((size_t)B * T * sizeof(int), "ids");
    fread_or_fail(ids, sizeof(int), (size_t)B * T, f, argv[3]);
    fclose(f);
    for (int i = 0; i < B * T; i++)
        if (ids[i] < 0 || ids[i] >= V) fail("%s: token %d out of the vocabulary", argv[3], ids[i]);
    gpt2_allocate_activations(&model, B, T);
    gpt2_forward(&model, ids, NULL, B, T);
    float *all_logits = malloc_or_fail((size_t)B * T * Vp * sizeof(float), "logits");
    gpt2_logits(&model, all_logits);
    AtomicFile af;
    atomic_open(&af, argv[4]);
    for (size_t r = 0; r < (size_t)B * T; r++)
        fwrite_or_fail(all_logits + r * (size_t)Vp, sizeof(float), (size_t)V, af.f, af.tmp_path);
    atomic_commit(&af);
    free(ids);
    free(all_logits);
    gpt2_free(&model);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--logits") == 0) return logits_main(argc, argv);
    test_presets();
    test_chunked_head();
    const char *dir = argc > 1 ? argv[1] : "dev/testdata";
    char model_path[512], debug_path[512];
    snprintf(model_path, sizeof(model_path), "%s/gpt2_tiny.bin", dir);
    snprintf(debug_path, sizeof(debug_path), "%s/gpt2_tiny_debug.bin", dir);

    GPT2 model;
    gpt2_build_from_checkpoint(&model, model_path);
    const GPT2Config *c = &model.config;
    printf("model: L %d, NH %d, C %d, V %d, Vp %d, maxT %d, %zu parameters\n", c->num_layers, c->num_heads,
           c->channels, c->vocab_size, c->padded_vocab_size, c->max_seq_len, model.mem.num_parameters);

    FILE *f = fopen_or_fail(debug_path, "rb");
    int header[256];
    fread_or_fail(header, sizeof(int), 256, f, debug_path);
    if (header[0] != 20240327 || header[1] != 1) fail("%s: bad magic or version", debug_path);
    int B = header[2], T = header[3], V = header[4];
    if (V != c->vocab_size) fail("%s: vocab %d does not match the model's %d", debug_path, V, c->vocab_size);
    int Vp = c->padded_vocab_size;
    size_t BT = (size_t)B * T;
    int *x = malloc_or_fail(BT * sizeof(int), "x");
    int *y = malloc_or_fail(BT * sizeof(int), "y");
    float *ref_logits = malloc_or_fail(BT * V * sizeof(float), "logits");
    float ref_loss;
    float *ref_grads = malloc_or_fail(model.mem.num_parameters * sizeof(float), "grads");
    fread_or_fail(x, sizeof(int), BT, f, debug_path);
    fread_or_fail(y, sizeof(int), BT, f, debug_path);
    fread_or_fail(ref_logits, sizeof(float), BT * V, f, debug_path);
    fread_or_fail(&ref_loss, sizeof(float), 1, f, debug_path);
    fread_or_fail(ref_grads, sizeof(float), model.mem.num_parameters, f, debug_path);
    fclose(f);

    gpt2_allocate_gradients(&model, 0);
    gpt2_allocate_activations(&model, B, T);

    // logits (gpt2_logits after a forward without targets); compare the first V columns
    gpt2_forward(&model, x, NULL, B, T);
    float *all_logits = malloc_or_fail(BT * Vp * sizeof(float), "logits");
    gpt2_logits(&model, all_logits);
    float *logits = malloc_or_fail(BT * V * sizeof(float), "logits copy");
    for (size_t i = 0; i < BT; i++) memcpy(logits + i * V, all_logits + i * Vp, V * sizeof(float));
    check("logits", logits, ref_logits, BT * V, 1e-5);
    int padded_zero = 1;
    for (size_t i = 0; i < BT; i++)
        for (int v = V; v < Vp; v++) padded_zero &= all_logits[i * Vp + v] == 0.0f;
    printf("%-4s padded logits are 0\n", padded_zero ? "ok" : "FAIL");
    failures += !padded_zero;

    // loss and gradients
    gpt2_forward(&model, x, y, B, T);
    check("loss", &model.mean_loss, &ref_loss, 1, 1e-6);
    model_zero_grad(&model.mem);
    gpt2_backward(&model, 1.0f, NULL);
    const char *names[NUM_PARAMETER_TENSORS] = {"wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
                                                "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"};
    size_t offset = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        check(names[i], model.mem.grads_memory + offset, ref_grads + offset, model.mem.param_list.size[i], 2e-5);
        offset += model.mem.param_list.size[i];
    }
    int pad_grad_zero = 1;
    for (size_t i = (size_t)V * c->channels; i < (size_t)Vp * c->channels; i++) pad_grad_zero &= model.grads.wte[i] == 0.0f;
    printf("%-4s wte padding rows get no gradient\n", pad_grad_zero ? "ok" : "FAIL");
    failures += !pad_grad_zero;

    // accumulation: a second backward of the same batch with scale 1 doubles every gradient
    float *g1 = malloc_or_fail(model.mem.num_parameters * sizeof(float), "g1");
    memcpy(g1, model.mem.grads_memory, model.mem.num_parameters * sizeof(float));
    gpt2_forward(&model, x, y, B, T);
    gpt2_backward(&model, 1.0f, NULL);
    for (size_t i = 0; i < model.mem.num_parameters; i++) g1[i] *= 2.0f;
    check("accumulate", model.mem.grads_memory, g1, model.mem.num_parameters, 1e-6);

    // the same numbers with 1 thread and with all threads, bit for bit
    int nthreads = omp_get_max_threads();
    model_zero_grad(&model.mem);
    gpt2_forward(&model, x, y, B, T);
    gpt2_backward(&model, 1.0f, NULL);
    memcpy(g1, model.mem.grads_memory, model.mem.num_parameters * sizeof(float));
    float loss_all = model.mean_loss;
    omp_set_num_threads(1);
    model_zero_grad(&model.mem);
    gpt2_forward(&model, x, y, B, T);
    gpt2_backward(&model, 1.0f, NULL);
    omp_set_num_threads(nthreads);
    int same = model.mean_loss == loss_all && memcmp(g1, model.mem.grads_memory, model.mem.num_parameters * sizeof(float)) == 0;
    printf("%-4s 1 thread and %d threads give identical loss and gradients\n", same ? "ok" : "FAIL", nthreads);
    failures += !same;

    // the optimizer's view: blocks tile the parameter buffer exactly once,
    // except wte's padding rows; matrices are decayed, vectors are not
    int nb = gpt2_param_blocks(&model.config, NULL);
    ParamBlock *blocks = malloc_or_fail(nb * sizeof(ParamBlock), "blocks");
    gpt2_param_blocks(&model.config, blocks);
    unsigned char *covered = calloc_or_fail(model.mem.num_parameters, 1, "coverage");
    int tiles = 1, decay_ok = 1;
    for (int b = 0; b < nb; b++) {
        for (size_t i = 0; i < block_numel(&blocks[b]); i++) {
            size_t j = blocks[b].offset + i;
            if (j >= model.mem.num_parameters || covered[j]++) tiles = 0;
        }
        decay_ok &= blocks[b].decay == (blocks[b].ndim == 2);
    }
    for (size_t j = 0; j < model.mem.num_parameters; j++) {
        int is_padding = j >= (size_t)V * c->channels && j < (size_t)Vp * c->channels;
        if (covered[j] != !is_padding) tiles = 0;
    }
    printf("%-4s %d blocks cover every parameter once, padding rows none\n", tiles ? "ok" : "FAIL", nb);
    printf("%-4s weight decay on the %d matrices only\n", decay_ok ? "ok" : "FAIL", 2 + 4 * c->num_layers);
    failures += !tiles + !decay_ok;
    free(blocks); free(covered);

    // sampling with the KV cache: position t's logits equal the full forward's row t
    KVCache kv;
    kvcache_init(&kv, c, T);
    gpt2_forward(&model, x, NULL, B, T);
    gpt2_logits(&model, all_logits);
    double worst = 0.0, maxref = 0.0;
    for (int t = 0; t < T; t++) {
        gpt2_forward_token(&model, &kv, x[t], t); // batch row 0
        for (int v = 0; v < V; v++) {
            worst = fmax(worst, fabs(kv.logits[v] - all_logits[(size_t)t * Vp + v]));
            maxref = fmax(maxref, fabs(all_logits[(size_t)t * Vp + v]));
        }
    }
    printf("%-4s KV-cache decoding equals the full forward (max rel diff %.2e)\n", worst / maxref < 1e-5 ? "ok" : "FAIL", worst / maxref);
    failures += !(worst / maxref < 1e-5);
    // top-k 1 is greedy; temperature sampling follows the softmax
    Rng rng;
    rng_seed(&rng, 5);
    float logits3[3] = {1.0f, 3.0f, 2.0f}, scratch[3];
    int greedy = sample_token(logits3, scratch, 3, 1.0f, 1, &rng) == 1;
    int counts[3] = {0};
    for (int i = 0; i < 30000; i++) counts[sample_token(logits3, scratch, 3, 1.0f, 2, &rng)]++;
    double p2 = exp(2.0) / (exp(2.0) + exp(3.0)); // top-2 renormalised: tokens 1 and 2
    int topk_ok = counts[0] == 0 && fabs(counts[2] / 30000.0 - p2) < 0.015;
    printf("%-4s sampling: top-1 is argmax, top-2 never draws the third and matches softmax (%.3f vs %.3f)\n",
           greedy && topk_ok ? "ok" : "FAIL", counts[2] / 30000.0, p2);
    failures += !(greedy && topk_ok);
    kvcache_free(&kv);

    free(x); free(y); free(ref_logits); free(ref_grads); free(logits); free(all_logits); free(g1);
    gpt2_free(&model);
    if (failures) { printf("test_gpt2: %d FAILED\n", failures); return 1; }
    printf("test_gpt2: all passed\n");
    return 0;
}
