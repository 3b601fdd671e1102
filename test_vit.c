// test_vit: the C ViT against PyTorch (dev/vit_ref.py wrote the reference: a
// tiny ViT of odd sizes, a batch, PyTorch's logits, loss, every gradient, and
// the parameters after three AdamW steps). Errors are measured relative to
// the largest reference value of each tensor (for the steps: relative to the
// largest change the steps made to it), so a small tensor cannot hide a wrong one.
#define TESTING
#include "train_vit.c"

#include <omp.h>
#include <unistd.h>

#include "run/run.h"

static int failures = 0;

// max |a - b| / scale over n values (scale = max |ref| when 0); report and
// count a failure above tol
static double check_scaled(const char *what, const float *ours, const float *ref, size_t n, double scale, double tol) {
    double max_diff = 0.0, max_ref = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)ours[i] - (double)ref[i]);
        if (!(d <= max_diff)) max_diff = d; // also catches NaN
        if (fabs(ref[i]) > max_ref) max_ref = fabs(ref[i]);
    }
    if (scale <= 0.0) scale = max_ref > 0 ? max_ref : 1.0;
    double rel = max_diff / scale;
    int ok = rel <= tol;
    printf("%-4s %-22s max|diff| %.3e  scale %.3e  rel %.3e\n", ok ? "ok" : "FAIL", what, max_diff, scale, rel);
    if (!ok) failures++;
    return rel;
}

static double check(const char *what, const float *ours, const float *ref, size_t n, double tol) {
    return check_scaled(what, ours, ref, n, 0.0, tol);
}

static void expect(int ok, const char *what) {
    printf("%-4s %s\n", ok ? "ok" : "FAIL", what);
    failures += !ok;
}

static const char *tensor_names[NUM_PARAMETER_TENSORS] = {
    "patchw", "patchb", "cls", "pos", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
    "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb", "headw", "headb"};

// ./test_vit --logits CHECKPOINT INPUT OUTPUT: the model's logits for
// dev/test_export.py. INPUT: int32 B, then B images (channels, H, W) of
// float32, normalised; OUTPUT: B x classes float32 logits.
static int logits_main(int argc, char **argv) {
    if (argc != 5) fail("usage: ./test_vit --logits CHECKPOINT INPUT OUTPUT");
    ViT model;
    vit_build_from_checkpoint(&model, argv[2]);
    const ViTConfig *c = &model.config;
    FILE *f = fopen_or_fail(argv[3], "rb");
    int B;
    fread_or_fail(&B, sizeof(int), 1, f, argv[3]);
    if (B < 1 || B > 4096) fail("%s: B %d out of range", argv[3], B);
    size_t per = (size_t)c->image_channels * c->image_height * c->image_width;
    float *images = malloc_or_fail((size_t)B * per * sizeof(float), "images");
    fread_or_fail(images, sizeof(float), (size_t)B * per, f, argv[3]);
    fclose(f);
    vit_allocate_activations(&model, B);
    vit_forward(&model, images, NULL, B);
    AtomicFile af;
    atomic_open(&af, argv[4]);
    fwrite_or_fail(model.acts.logits, sizeof(float), (size_t)B * c->num_classes, af.f, af.tmp_path);
    atomic_commit(&af);
    free(images);
    vit_free(&model);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--logits") == 0) return logits_main(argc, argv);
    const char *dir = argc > 1 ? argv[1] : "dev/testdata";
    char model_path[512], debug_path[512];
    snprintf(model_path, sizeof(model_path), "%s/vit_tiny.bin", dir);
    snprintf(debug_path, sizeof(debug_path), "%s/vit_tiny_debug.bin", dir);

    ViT model;
    vit_build_from_checkpoint(&model, model_path);
    const ViTConfig *c = &model.config;
    printf("model: %dx%dx%d images, patch %d, C %d, L %d, NH %d, %d classes, %zu parameters\n", c->image_height,
           c->image_width, c->image_channels, c->patch_size, c->channels, c->num_layers, c->num_heads,
           c->num_classes, model.mem.num_parameters);

    FILE *f = fopen_or_fail(debug_path, "rb");
    int header[256];
    fread_or_fail(header, sizeof(int), 256, f, debug_path);
    if (header[0] != 20241018 || header[1] != 1) fail("%s: bad magic or version", debug_path);
    int B = header[2], K = c->num_classes, steps = header[7];
    if (header[3] != c->image_height || header[4] != c->image_width || header[5] != c->image_channels ||
        header[6] != K || steps < 1 || steps > 100)
        fail("%s does not match %s", debug_path, model_path);
    size_t image_floats = (size_t)B * c->image_channels * c->image_height * c->image_width;
    size_t np = model.mem.num_parameters;
    float *images = malloc_or_fail(image_floats * sizeof(float), "images");
    int *labels = malloc_or_fail(B * sizeof(int), "labels");
    float *ref_logits = malloc_or_fail((size_t)B * K * sizeof(float), "logits");
    float ref_loss, weight_decay, clip;
    float *ref_grads = malloc_or_fail(np * sizeof(float), "grads");
    float *lrs = malloc_or_fail(steps * sizeof(float), "lrs");
    float *ref_step_loss = malloc_or_fail(steps * sizeof(float), "step losses");
    float *ref_after = malloc_or_fail(np * sizeof(float), "params after");
    fread_or_fail(images, sizeof(float), image_floats, f, debug_path);
    fread_or_fail(labels, sizeof(int), B, f, debug_path);
    fread_or_fail(ref_logits, sizeof(float), (size_t)B * K, f, debug_path);
    fread_or_fail(&ref_loss, sizeof(float), 1, f, debug_path);
    fread_or_fail(ref_grads, sizeof(float), np, f, debug_path);
    fread_or_fail(lrs, sizeof(float), steps, f, debug_path);
    fread_or_fail(&weight_decay, sizeof(float), 1, f, debug_path);
    fread_or_fail(&clip, sizeof(float), 1, f, debug_path);
    fread_or_fail(ref_step_loss, sizeof(float), steps, f, debug_path);
    fread_or_fail(ref_after, sizeof(float), np, f, debug_path);
    fclose(f);

    vit_allocate_gradients(&model, 0);
    vit_allocate_activations(&model, B);

    // logits: a forward without labels leaves them in place
    vit_forward(&model, images, NULL, B);
    check("logits", model.acts.logits, ref_logits, (size_t)B * K, 1e-5);
    int *pred = malloc_or_fail(B * sizeof(int), "predictions");
    vit_predict(&model, B, pred);
    int pred_ok = 1;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < K; k++) pred_ok &= ref_logits[(size_t)b * K + k] <= ref_logits[(size_t)b * K + pred[b]];
    expect(pred_ok, "predictions are the argmax of the reference logits");
    free(pred);

    // loss and gradients
    vit_forward(&model, images, labels, B);
    check("loss", &model.mean_loss, &ref_loss, 1, 1e-6);
    model_zero_grad(&model.mem);
    vit_backward(&model, 1.0f, NULL);
    size_t offset = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        char what[64];
        snprintf(what, sizeof(what), "grad %s", tensor_names[i]);
        check(what, model.mem.grads_memory + offset, ref_grads + offset, model.mem.param_list.size[i], 2e-5);
        offset += model.mem.param_list.size[i];
    }

    // accumulation: a second backward of the same batch with scale 1 doubles every gradient
    float *g1 = malloc_or_fail(np * sizeof(float), "g1");
    memcpy(g1, model.mem.grads_memory, np * sizeof(float));
    vit_forward(&model, images, labels, B);
    vit_backward(&model, 1.0f, NULL);
    for (size_t i = 0; i < np; i++) g1[i] *= 2.0f;
    check("accumulate", model.mem.grads_memory, g1, np, 1e-6);

    // the same numbers with 1 thread and with all threads, bit for bit
    int nthreads = omp_get_max_threads();
    model_zero_grad(&model.mem);
    vit_forward(&model, images, labels, B);
    vit_backward(&model, 1.0f, NULL);
    memcpy(g1, model.mem.grads_memory, np * sizeof(float));
    float loss_all = model.mean_loss;
    omp_set_num_threads(1);
    model_zero_grad(&model.mem);
    vit_forward(&model, images, labels, B);
    vit_backward(&model, 1.0f, NULL);
    omp_set_num_threads(nthreads);
    int same = model.mean_loss == loss_all && memcmp(g1, model.mem.grads_memory, np * sizeof(float)) == 0;
    char what[128];
    snprintf(what, sizeof(what), "1 thread and %d threads give identical loss and gradients", nthreads);
    expect(same, what);

    // Soft targets (label smoothing, Mixup/CutMix), against the hard-label path
    // that the checks above hold against PyTorch. (The soft-target kernel itself
    // is checked against PyTorch in test_nn.)
    {
        float *t = calloc_or_fail((size_t)B * K, sizeof(float), "targets");
        float *probs = malloc_or_fail((size_t)B * K * sizeof(float), "probabilities");
        // one-hot targets: the hard-label loss bit for bit, its gradient
        for (int b = 0; b < B; b++) t[(size_t)b * K + labels[b]] = 1.0f;
        model_zero_grad(&model.mem);
        vit_forward(&model, images, labels, B);
        float hard_loss = model.mean_loss;
        memcpy(probs, model.acts.logits, (size_t)B * K * sizeof(float));
        vit_backward(&model, 1.0f, NULL);
        memcpy(g1, model.mem.grads_memory, np * sizeof(float));
        model_zero_grad(&model.mem);
        vit_forward_soft(&model, images, t, B);
        expect(model.mean_loss == hard_loss, "soft targets: one-hot targets give the hard-label loss bit for bit");
        vit_backward(&model, 1.0f, NULL);
        check("grads, one-hot targets", model.mem.grads_memory, g1, np, 1e-6);
        // label smoothing eps: (1 - eps) CE + eps mean_k(-log p_k), from the hard forward's probabilities
        const double eps = 0.1;
        double want = 0.0;
        for (int b = 0; b < B; b++) {
            double mean_nll = 0.0;
            for (int k = 0; k < K; k++) mean_nll += -log((double)probs[(size_t)b * K + k]) / K;
            want += ((1.0 - eps) * -log((double)probs[(size_t)b * K + labels[b]]) + eps * mean_nll) / B;
        }
        for (int b = 0; b < B; b++)
            for (int k = 0; k < K; k++) t[(size_t)b * K + k] = (float)(k == labels[b] ? 1.0 - eps + eps / K : eps / K);
        vit_forward_soft(&model, images, t, B);
        float want_f = (float)want;
        check("loss, label smoothing 0.1", &model.mean_loss, &want_f, 1, 1e-6);
        // any target distribution: the gradient is sum_b sum_k t[b][k] G[b][k], where G[b][k]
        // is the gradient with target e_k on image b and no target (zeros) on the others
        Rng r;
        rng_seed(&r, 7);
        float *tr = malloc_or_fail((size_t)B * K * sizeof(float), "targets");
        for (int b = 0; b < B; b++) {
            double sum = 0.0;
            for (int k = 0; k < K; k++) sum += tr[(size_t)b * K + k] = rng_uniform(&r) + 0.05f;
            for (int k = 0; k < K; k++) tr[(size_t)b * K + k] = (float)(tr[(size_t)b * K + k] / sum);
        }
        double *acc = calloc_or_fail(np, sizeof(double), "gradient sum");
        for (int b = 0; b < B; b++)
            for (int k = 0; k < K; k++) {
                memset(t, 0, (size_t)B * K * sizeof(float));
                t[(size_t)b * K + k] = 1.0f;
                model_zero_grad(&model.mem);
                vit_forward_soft(&model, images, t, B);
                vit_backward(&model, 1.0f, NULL);
                for (size_t i = 0; i < np; i++) acc[i] += (double)tr[(size_t)b * K + k] * model.mem.grads_memory[i];
            }
        model_zero_grad(&model.mem);
        vit_forward_soft(&model, images, tr, B);
        vit_backward(&model, 1.0f, NULL);
        for (size_t i = 0; i < np; i++) g1[i] = (float)acc[i];
        check("grads, random target rows", model.mem.grads_memory, g1, np, 2e-6);
        free(acc); free(tr); free(t); free(probs);
    }

    // top-k: where the label ranks among the logits, ties to the lower index (as the argmax);
    // by hand: 0.9 (class 3), 0.7 (6), 0.5 (1), 0.5 (5), 0.3 (2), 0.1 (0), -0.2 (4)
    {
        const float row[7] = {0.1f, 0.5f, 0.3f, 0.9f, -0.2f, 0.5f, 0.7f};
        const int want_rank[7] = {5, 2, 4, 0, 6, 3, 1};
        int ok = 1, top5 = 0;
        for (int y = 0; y < 7; y++) {
            ok &= vit_label_rank(row, 7, y) == want_rank[y];
            top5 += vit_label_rank(row, 7, y) < 5;
        }
        expect(ok && top5 == 5, "label ranks for top-1/top-5 by hand (ties to the lower index, as the argmax)");
    }

    // the optimizer's view: blocks tile the parameter buffer exactly once,
    // matrices (and the cls token) are decayed, vectors are not; names and roles
    int nb = vit_param_blocks(&model.config, NULL);
    ParamBlock *blocks = malloc_or_fail(nb * sizeof(ParamBlock), "blocks");
    vit_param_blocks(&model.config, blocks);
    unsigned char *covered = calloc_or_fail(np, 1, "coverage");
    int tiles = 1, decay_ok = 1, ndecayed = 0;
    for (int b = 0; b < nb; b++) {
        for (size_t i = 0; i < block_numel(&blocks[b]); i++) {
            size_t j = blocks[b].offset + i;
            if (j >= np || covered[j]++) tiles = 0;
        }
        decay_ok &= blocks[b].decay == (blocks[b].ndim == 2);
        ndecayed += blocks[b].decay;
    }
    for (size_t j = 0; j < np; j++) tiles &= covered[j] == 1;
    snprintf(what, sizeof(what), "%d blocks cover every parameter once", nb);
    expect(tiles && nb == 4 + 12 * c->num_layers + 4, what);
    snprintf(what, sizeof(what), "weight decay on the %d matrices only", ndecayed);
    expect(decay_ok && ndecayed == 4 + 4 * c->num_layers, what);
    struct { int index; const char *name; ParamRole role; int rows, cols; } expected[] = {
        {0, "patch.w", ROLE_PATCH_EMBEDDING, c->channels, c->image_channels * c->patch_size * c->patch_size},
        {1, "patch.b", ROLE_BIAS, c->channels, 1},
        {2, "cls", ROLE_CLS_TOKEN, 1, c->channels},
        {3, "pos", ROLE_POSITION_EMBEDDING, vit_num_patches(c) + 1, c->channels},
        {4, "h0.ln1w", ROLE_NORM, c->channels, 1},
        {6 + 12, "h1.attn.qkvw", ROLE_ATTN_QKV, 3 * c->channels, c->channels},
        {8 + 12, "h1.attn.projw", ROLE_ATTN_PROJ, c->channels, c->channels},
        {12 + 12, "h1.mlp.fcw", ROLE_MLP_UP, 4 * c->channels, c->channels},
        {14 + 12, "h1.mlp.projw", ROLE_MLP_DOWN, c->channels, 4 * c->channels},
        {nb - 4, "lnfw", ROLE_NORM, c->channels, 1},
        {nb - 2, "head.w", ROLE_HEAD, K, c->channels},
        {nb - 1, "head.b", ROLE_BIAS, K, 1},
    };
    int names_ok = 1;
    for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
        const ParamBlock *b = &blocks[expected[i].index];
        if (strcmp(b->name, expected[i].name) != 0 || b->role != expected[i].role || b->rows != expected[i].rows ||
            b->cols != expected[i].cols) {
            printf("     block %d is %s (%s, %dx%d), expected %s\n", expected[i].index, b->name, role_name(b->role),
                   b->rows, b->cols, expected[i].name);
            names_ok = 0;
        }
    }
    expect(names_ok, "block names, roles and shapes as documented");
    free(covered);

    // the checkpoint round trip: the saved file loads back bit for bit
    char tmp_path[] = "/tmp/test_vit_XXXXXX";
    int fd = mkstemp(tmp_path);
    if (fd < 0) fail("cannot create a temporary file in /tmp");
    close(fd);
    model_save_checkpoint(&model.mem, tmp_path);
    ViT copy;
    vit_build_from_checkpoint(&copy, tmp_path);
    remove(tmp_path);
    expect(memcmp(&copy.config, &model.config, sizeof(ViTConfig)) == 0 && copy.mem.num_parameters == np &&
           memcmp(copy.mem.params_memory, model.mem.params_memory, np * sizeof(float)) == 0,
           "a saved checkpoint loads back identical");
    vit_free(&copy);

    // AdamW steps as the trainer takes them: zero grads, forward, backward,
    // clip the global norm, step with this step's lr
    float *p0 = malloc_or_fail(np * sizeof(float), "p0");
    memcpy(p0, model.mem.params_memory, np * sizeof(float));
    OptimConfig oc;
    optim_default_config(&oc);
    oc.weight_decay = weight_decay;
    Optimizer *opt = optim_create(blocks, nb, &oc);
    float *step_loss = malloc_or_fail(steps * sizeof(float), "step losses");
    for (int s = 0; s < steps; s++) {
        model_zero_grad(&model.mem);
        vit_forward(&model, images, labels, B);
        step_loss[s] = model.mean_loss;
        vit_backward(&model, 1.0f, NULL);
        clip_grad_norm(model.mem.grads_memory, blocks, nb, clip);
        optim_step(opt, model.mem.params_memory, model.mem.grads_memory, lrs[s]);
    }
    check("losses during the steps", step_loss, ref_step_loss, steps, 1e-5);
    // Each tensor after the steps, relative to the largest change PyTorch made
    // to it. Left out: the key bias (the middle third of each layer's qkvb).
    // Its gradient is exactly 0 in exact arithmetic (it adds q.b_k to every
    // score of a query, and the softmax ignores a shift), so both sides hold
    // rounding noise of ~1e-9 there, which AdamW scales up to steps of +-lr
    // with random signs. The gradient test above covers it: both are ~0.
    offset = 0;
    int C = c->channels;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        size_t n = model.mem.param_list.size[i];
        float *ours = malloc_or_fail(n * sizeof(float), "step check"), *ref = malloc_or_fail(n * sizeof(float), "step check");
        memcpy(ours, model.mem.params_memory + offset, n * sizeof(float));
        memcpy(ref, ref_after + offset, n * sizeof(float));
        if (model.params.layers.qkvb == model.mem.params_memory + offset)
            for (int l = 0; l < c->num_layers; l++)
                for (int j = 0; j < C; j++) {
                    size_t at = (size_t)l * 3 * C + C + j;
                    ours[at] = ref[at] = p0[offset + at];
                }
        double change = 0.0;
        for (size_t j = 0; j < n; j++) change = fmax(change, fabs((double)ref[j] - (double)p0[offset + j]));
        snprintf(what, sizeof(what), "%d AdamW steps %s%s", steps, tensor_names[i],
                 model.params.layers.qkvb == model.mem.params_memory + offset ? " (q, v)" : "");
        check_scaled(what, ours, ref, n, change, 1e-3);
        free(ours); free(ref);
        offset += n;
    }
    optim_free(opt);

    free(images); free(labels); free(ref_logits); free(ref_grads); free(lrs); free(ref_step_loss); free(ref_after);
    free(g1); free(blocks); free(p0); free(step_loss);
    vit_free(&model);
    if (failures) { printf("test_vit: %d FAILED\n", failures); return 1; }
    printf("test_vit: all passed\n");
    return 0;
}
