// test_optim: one optimizer (the one this binary is linked with, OPTIM=...)
// against the independent PyTorch implementation in dev/optim_torch.py.
//
// 1. Reference runs (dev/optim_ref.py): the blocks of a tiny GPT-2, 5 steps
//    with a changing lr and gradients that include all-zero embedding rows and
//    a block whose first gradient is zero. After every step each block's
//    parameters are compared, the error measured against the size of that
//    block's update (max|ours - ref| / max|p_k - p_0|); after the last step
//    every state tensor is compared.
// 2. Edge cases computed by hand (per optimizer, below).
// 3. The state file: save, load into a fresh optimizer, continue: identical.
// Built as test_optim_<name> for each of the five optimizers.
#define TESTING
#include "train_gpt2.c"

#include "optim/sinkhorn.h"
#include "optim/snr.h"

#include <fcntl.h>
#include <omp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "test.h"
static const char *dir = "dev/testdata";


// SGD-SaI prints its g-SNR table at a first step and snr_write_rules prints
// its table: keep the test's output short by sending stdout to /dev/null
static int stdout_mute(void) {
    fflush(stdout);
    int saved = dup(1), devnull = open("/dev/null", O_WRONLY);
    if (saved < 0 || devnull < 0) fail("stdout_mute: cannot redirect stdout");
    dup2(devnull, 1);
    close(devnull);
    return saved;
}
static void stdout_restore(int saved) {
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
}

// ----------------------------------------------------------------------------
// reading the reference files

static float *read_floats(FILE *f, size_t n, const char *path) {
    float *x = malloc_or_fail(n * sizeof(float), path);
    fread_or_fail(x, sizeof(float), n, f, path);
    return x;
}

static void read_config_json(const char *variant, OptimConfig *oc, float *base_lr) {
    char path[512];
    snprintf(path, sizeof(path), "%s/optim_%s.json", dir, variant);
    FILE *f = fopen_or_fail(path, "rb");
    size_t size = file_size_or_fail(f, path);
    char *text = malloc_or_fail(size + 1, path);
    fread_or_fail(text, 1, size, f, path);
    text[size] = '\0';
    fclose(f);
    cJSON *j = cJSON_Parse(text);
    if (!j) fail("%s: malformed JSON", path);
    optim_default_config(oc);
    const cJSON *it;
#define NUM(key, field) if ((it = cJSON_GetObjectItem(j, key)) && cJSON_IsNumber(it)) oc->field = (float)it->valuedouble
    NUM("weight_decay", weight_decay);
    NUM("beta1", beta1);
    NUM("beta2", beta2);
    NUM("eps", eps);
    NUM("momentum", momentum);
    NUM("sinkgd_scale", sinkgd_scale);
#undef NUM
    if ((it = cJSON_GetObjectItem(j, "nesterov"))) oc->nesterov = cJSON_IsTrue(it) || (cJSON_IsNumber(it) && it->valuedouble != 0);
    if ((it = cJSON_GetObjectItem(j, "gsnr_max_norm"))) oc->gsnr_max_norm = cJSON_IsTrue(it) || (cJSON_IsNumber(it) && it->valuedouble != 0);
    if ((it = cJSON_GetObjectItem(j, "sinkgd_iters")) && cJSON_IsNumber(it)) oc->sinkgd_iters = (int)it->valuedouble;
    if ((it = cJSON_GetObjectItem(j, "gsnr")) && cJSON_IsString(it)) oc->gsnr_mode = strcmp(it->valuestring, "sqrtn") == 0 ? GSNR_SQRT_N : GSNR_RATIO;
    if ((it = cJSON_GetObjectItem(j, "slimadam_rules")) && cJSON_IsString(it) && it->valuestring[0]) {
        // the path in the JSON is relative to the repository root or to dir
        const char *r = it->valuestring;
        if (file_exists(r)) snprintf(oc->slimadam_rules, sizeof(oc->slimadam_rules), "%s", r);
        else {
            const char *base = strrchr(r, '/');
            snprintf(oc->slimadam_rules, sizeof(oc->slimadam_rules), "%s/%s", dir, base ? base + 1 : r);
        }
    }
    it = cJSON_GetObjectItem(j, "base_lr");
    if (!cJSON_IsNumber(it)) fail("%s: no base_lr", path);
    *base_lr = (float)it->valuedouble;
    cJSON_Delete(j);
    free(text);
}

// The state holds per-block tensors of at most two kinds (m | v, buf | gsnr),
// each kind concatenated over the blocks in order (optim/*.c document the
// layouts). The sizes of the first kind's per-block tensors, from the spec:
// every block's full size, except SinkGD which keeps state only for the
// blocks that are not hidden matrices. Returns the number of tensors.
static int first_kind_sizes(const ParamBlock *blocks, int nb, size_t *sizes) {
    int n = 0;
    for (int i = 0; i < nb; i++) {
        ParamRole r = blocks[i].role;
        int hidden = r == ROLE_ATTN_QKV || r == ROLE_ATTN_PROJ || r == ROLE_MLP_UP || r == ROLE_MLP_DOWN;
        if (strcmp(OPTIM_NAME, "sinkgd") == 0 && hidden) continue;
        sizes[n++] = block_numel(&blocks[i]);
    }
    return n;
}

// max over tensors of max|a - b| / max|b| (a tensor with b == 0 must match exactly)
static double per_tensor_err(const float *a, const float *b, const size_t *sizes, int n) {
    double worst = 0.0;
    for (int t = 0; t < n; t++) {
        double err = 0.0, maxb = 0.0;
        for (size_t i = 0; i < sizes[t]; i++) {
            double e = fabs((double)a[i] - (double)b[i]);
            if (!(e <= err)) err = e;
            maxb = fmax(maxb, fabs(b[i]));
        }
        double rel = maxb > 0.0 ? err / maxb : (err == 0.0 ? 0.0 : INFINITY);
        if (!(rel <= worst)) worst = rel;
        a += sizes[t];
        b += sizes[t];
    }
    return worst;
}

// elementwise max |a - b| / max(|b|, 1e-6 max|b|): for the second kind (v >= 0, gsnr)
static double rel_err_floor(const float *a, const float *b, size_t n) {
    double maxb = 0.0, worst = 0.0;
    for (size_t i = 0; i < n; i++) if (fabs(b[i]) > maxb) maxb = fabs(b[i]);
    double floor = 1e-6 * maxb > 1e-30 ? 1e-6 * maxb : 1e-30;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / fmax(fabs(b[i]), floor);
        if (!(d <= worst)) worst = d;
    }
    return worst;
}

static void run_reference(const char *variant) {
    char path[512];
    snprintf(path, sizeof(path), "%s/optim_%s.bin", dir, variant);
    if (!file_exists(path)) fail("missing reference %s (run /usr/bin/python3 dev/optim_ref.py)", path);
    printf("-- reference %s\n", variant);
    GPT2 model;
    snprintf(path, sizeof(path), "%s/optim_tiny_gpt2.bin", dir);
    gpt2_build_from_checkpoint(&model, path);
    size_t P = model.mem.num_parameters;
    int nb = gpt2_param_blocks(&model.config, NULL);
    ParamBlock *blocks = malloc_or_fail(nb * sizeof(ParamBlock), "blocks");
    gpt2_param_blocks(&model.config, blocks);

    // gradients
    snprintf(path, sizeof(path), "%s/optim_grads.bin", dir);
    FILE *gf = fopen_or_fail(path, "rb");
    int gh[256];
    fread_or_fail(gh, sizeof(int), 256, gf, path);
    if (gh[0] != 20261125 || gh[1] != 1 || (size_t)gh[3] != P) fail("%s: bad header", path);
    int S = gh[2];
    if (S < 4) fail("%s: %d steps; the tests need at least 4", path, S);
    float *lr_mult = malloc_or_fail(S * sizeof(float), "lr");
    float **grads = malloc_or_fail(S * sizeof(float *), "grads");
    for (int k = 0; k < S; k++) {
        fread_or_fail(&lr_mult[k], sizeof(float), 1, gf, path);
        grads[k] = read_floats(gf, P, path);
    }
    fclose(gf);

    // this variant's reference
    OptimConfig oc;
    float base_lr;
    read_config_json(variant, &oc, &base_lr);
    snprintf(path, sizeof(path), "%s/optim_%s.bin", dir, variant);
    FILE *rf = fopen_or_fail(path, "rb");
    int rh[256];
    fread_or_fail(rh, sizeof(int), 256, rf, path);
    if (rh[0] != 20261126 || rh[1] != 1 || rh[2] != S || (size_t)rh[3] != P) fail("%s: bad header", path);
    size_t F = (size_t)rh[4];
    float file_lr;
    fread_or_fail(&file_lr, sizeof(float), 1, rf, path);
    if (file_lr != base_lr) fail("%s: base_lr %g differs from the JSON's %g", path, file_lr, base_lr);

    Optimizer *opt = optim_create(blocks, nb, &oc);
    CHECK(optim_state_bytes(opt) == F * sizeof(float), "state size %zu bytes = reference %zu floats x 4",
          optim_state_bytes(opt), F);
    CHECK(optim_state_bytes_for(blocks, nb, &oc) == optim_state_bytes(opt),
          "optim_state_bytes_for gives %zu bytes before optim_create, which allocated %zu",
          optim_state_bytes_for(blocks, nb, &oc), optim_state_bytes(opt));
    float *p0 = malloc_or_fail(P * sizeof(float), "p0");
    memcpy(p0, model.mem.params_memory, P * sizeof(float));
    for (int k = 0; k < S; k++) {
        int saved = stdout_mute();
        optim_step(opt, model.mem.params_memory, grads[k], base_lr * lr_mult[k]);
        stdout_restore(saved);
        float *ref = read_floats(rf, P, path);
        double worst = 0.0;
        const char *worst_block = "";
        for (int b = 0; b < nb; b++) {
            const ParamBlock *blk = &blocks[b];
            size_t n = block_numel(blk);
            double upd = 0.0, err = 0.0;
            for (size_t i = 0; i < n; i++) {
                size_t j = blk->offset + i;
                upd = fmax(upd, fabs((double)ref[j] - p0[j]));
                double e = fabs((double)model.mem.params_memory[j] - ref[j]);
                if (!(e <= err)) err = e;
            }
            // a block the reference did not move must not move at all
            double rel = upd > 0.0 ? err / upd : (err == 0.0 ? 0.0 : INFINITY);
            if (!(rel <= worst)) { worst = rel; worst_block = blk->name; }
        }
        // padding rows of wte are storage: untouched
        size_t V = model.config.vocab_size, C = model.config.channels;
        int pad_same = memcmp(model.params.wte + V * C, p0 + V * C, (model.config.padded_vocab_size - V) * C * sizeof(float)) == 0;
        CHECK(worst < 1e-4 && pad_same, "step %d (lr %.3g): max |ours-ref| / max|p_k-p_0| per block %.2e (worst %s)%s", k + 1,
              base_lr * lr_mult[k], worst, worst_block, pad_same ? "" : " PADDING CHANGED");
        free(ref);
    }
    float *ref_state = read_floats(rf, F, path);
    if (fgetc(rf) != EOF) fail("%s: trailing bytes", path);
    fclose(rf);
    const float *state = optim_base(opt)->state;
    size_t *sizes = malloc_or_fail(nb * sizeof(size_t), "sizes");
    int nt = first_kind_sizes(blocks, nb, sizes);
    size_t first = 0;
    for (int t = 0; t < nt; t++) first += sizes[t];
    double e1 = per_tensor_err(state, ref_state, sizes, nt);
    double e2 = 0.0;
    if (first < F) {
        // adamw, sinkgd: v has m's per-block sizes; slimadam: compressed v; sgd_sai: one gsnr per block
        int same_shape = strcmp(OPTIM_NAME, "adamw") == 0 || strcmp(OPTIM_NAME, "sinkgd") == 0;
        e2 = same_shape ? per_tensor_err(state + first, ref_state + first, sizes, nt)
                        : rel_err_floor(state + first, ref_state + first, F - first);
    }
    CHECK(e1 < 1e-4 && e2 < 1e-4, "state after %d steps: per-tensor relative error %.2e (m or buf), %.2e (v or gsnr)",
          S, e1, e2);
    free(sizes);

    // the state file: 2 steps, save, load into a new optimizer, 2 more steps
    // must equal 4 steps without a break, bit for bit (parameters, state, step)
    int saved = stdout_mute();
    float *params_straight = malloc_or_fail(P * sizeof(float), "params_straight");
    float *params2 = malloc_or_fail(P * sizeof(float), "params2");
    memcpy(params_straight, p0, P * sizeof(float));
    memcpy(params2, p0, P * sizeof(float));
    Optimizer *straight = optim_create(blocks, nb, &oc);
    for (int k = 0; k < 4; k++) optim_step(straight, params_straight, grads[k], base_lr * lr_mult[k]);
    Optimizer *first_half = optim_create(blocks, nb, &oc);
    for (int k = 0; k < 2; k++) optim_step(first_half, params2, grads[k], base_lr * lr_mult[k]);
    char tmp[] = "/tmp/test_optim_XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0) fail("mkstemp %s", tmp);
    close(fd);
    optim_save(first_half, tmp);
    optim_free(first_half);
    Optimizer *opt2 = optim_create(blocks, nb, &oc);
    optim_load(opt2, tmp);
    for (int k = 2; k < 4; k++) optim_step(opt2, params2, grads[k], base_lr * lr_mult[k]);
    stdout_restore(saved);
    int same = memcmp(params2, params_straight, P * sizeof(float)) == 0 &&
               memcmp(optim_base(straight)->state, optim_base(opt2)->state, F * sizeof(float)) == 0 &&
               optim_base(straight)->step == optim_base(opt2)->step && optim_base(opt2)->step == 4;
    CHECK(same, "2 steps + save + load + 2 steps == 4 steps (parameters, state and step count bit for bit)");
    remove(tmp);

    // block by block, as the fused mode steps: the blocks in reverse order,
    // each gradient copied to a buffer of its own one float off the
    // original's alignment, and no whole gradient (unless this configuration
    // needs it) must equal optim_step bit for bit
    saved = stdout_mute();
    const char *why = optim_fused_unsupported(&oc);
    float *params_blocks = malloc_or_fail(P * sizeof(float), "params_blocks");
    float *one_block = malloc_or_fail((P + 1) * sizeof(float), "one block");
    memcpy(params_blocks, p0, P * sizeof(float));
    Optimizer *by_block = optim_create(blocks, nb, &oc);
    // the blocks that offer it also hand back their sums of squares (OptimBase.sums_squares)
    OptimBase *bb = optim_base(by_block);
    int offered = 0, sums_same = 1;
    for (int k = 0; k < 4; k++) {
        optim_step_begin(by_block, why ? grads[k] : NULL);
        for (int b = nb - 1; b >= 0; b--) {
            memcpy(one_block + 1, grads[k] + blocks[b].offset, block_numel(&blocks[b]) * sizeof(float));
            double sum = -1.0;
            int asks = bb->sums_squares && bb->sums_squares[b];
            if (asks) bb->block_sumsq = &sum;
            optim_step_block(by_block, b, params_blocks, one_block + 1, base_lr * lr_mult[k]);
            bb->block_sumsq = NULL;
            offered += asks;
            if (asks) sums_same &= sum == block_sum_of_squares(grads[k] + blocks[b].offset, &blocks[b]);
        }
        optim_step_end(by_block);
    }
    stdout_restore(saved);
    same = memcmp(params_blocks, params_straight, P * sizeof(float)) == 0 &&
           memcmp(optim_base(straight)->state, optim_base(by_block)->state, F * sizeof(float)) == 0 &&
           optim_base(by_block)->step == 4;
    CHECK(same, "4 steps block by block (reverse order, gradients elsewhere%s%s) == 4 optim_steps bit for bit",
          why ? ", the whole gradient at begin" : ", none at begin", offered ? ", sums of squares asked for" : "");
    if (offered)
        CHECK(sums_same, "and the %d sums of squares the blocks handed back = block_sum_of_squares bit for bit", offered);
    optim_free(by_block);
    free(params_blocks);
    free(one_block);
    optim_free(straight);
    free(params_straight);

    optim_free(opt);
    optim_free(opt2);
    for (int k = 0; k < S; k++) free(grads[k]);
    free(grads); free(lr_mult); free(p0); free(params2); free(ref_state); free(blocks);
    gpt2_free(&model);
}

// ----------------------------------------------------------------------------
// running something that must fail, in a child process

typedef void (*FailingFn)(const void *arg);

// Run fn(arg) in a child; it must exit non-zero with `expect` in its stderr.
// A forked child of a process with OpenMP threads cannot run LeakSanitizer's
// exit check cleanly (it warns about the parent's threads after our one-line
// error), so the child leaves with _exit and the status fail() asked for.
static void exit_now(int status, void *unused) { (void)unused; _exit(status); }

static void expect_failure(const char *what, FailingFn fn, const void *arg, const char *expect) {
    int pipefd[2];
    if (pipe(pipefd) != 0) fail("pipe");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        dup2(pipefd[1], 2);
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        on_exit(exit_now, NULL);
        fn(arg);
        _exit(0);
    }
    close(pipefd[1]);
    char buf[1024] = {0};
    size_t got = 0;
    ssize_t r;
    while (got < sizeof(buf) - 1 && (r = read(pipefd[0], buf + got, sizeof(buf) - 1 - got)) > 0) got += (size_t)r;
    close(pipefd[0]);
    int status;
    waitpid(pid, &status, 0);
    int exited_nonzero = WIFEXITED(status) && WEXITSTATUS(status) != 0;
    char *nl = strchr(buf, '\n');
    int one_line = nl && nl[1] == '\0';
    if (nl) *nl = '\0';
    CHECK(exited_nonzero && one_line && strstr(buf, expect) != NULL, "%s -> \"%s\"", what, buf);
}

// ----------------------------------------------------------------------------
// hand-computed edge cases

static ParamBlock blk(const char *name, ParamRole role, int ndim, int rows, int cols, size_t offset) {
    return param_block(name, role, ndim, rows, cols, offset);
}

static void sgd_sai_edge_cases(void) {
    printf("-- SGD-SaI edge cases\n");
    // blocks: a 1-element vector, a [3,4] matrix whose first gradient is zero,
    // a constant-gradient vector of 5, a random [4,6] matrix
    ParamBlock b[4] = {blk("one", ROLE_BIAS, 1, 1, 1, 0), blk("zero", ROLE_ATTN_PROJ, 2, 3, 4, 1),
                       blk("const", ROLE_BIAS, 1, 5, 1, 13), blk("rand", ROLE_MLP_UP, 2, 4, 6, 18)};
    size_t P = 42;
    float p[42], g[42], p0[42];
    Rng rng;
    rng_seed(&rng, 7);
    for (size_t i = 0; i < P; i++) p[i] = p0[i] = rng_normal(&rng);
    g[0] = -0.37f;
    for (int i = 1; i < 13; i++) g[i] = 0.0f;
    for (int i = 13; i < 18; i++) g[i] = 0.25f;
    for (int i = 18; i < 42; i++) g[i] = rng_normal(&rng);
    OptimConfig oc;
    optim_default_config(&oc);
    oc.weight_decay = 0.1f;
    float lr = 1e-3f;
    Optimizer *opt = optim_create(b, 4, &oc);
    fflush(stdout);
    optim_step(opt, p, g, lr);
    const float *gsnr = optim_base(opt)->state + P;
    double eps = 1e-8;
    CHECK(fabs(gsnr[0] - 0.37 / eps) / (0.37 / eps) < 1e-6, "1-element block: gsnr = |g|/eps = %.6g (got %.6g)", 0.37 / eps, gsnr[0]);
    CHECK(gsnr[1] == 0.0f, "all-zero first gradient: gsnr = 0 (got %g)", gsnr[1]);
    double cnorm = sqrt(5 * 0.25 * 0.25);
    CHECK(fabs(gsnr[2] - cnorm / eps) / (cnorm / eps) < 1e-6, "constant gradient: gsnr = norm/eps = %.6g (got %.6g)", cnorm / eps, gsnr[2]);
    // the random block by hand, in double
    double s = 0, ss = 0;
    for (int i = 18; i < 42; i++) { s += g[i]; ss += (double)g[i] * g[i]; }
    double mean = s / 24, dev = 0;
    for (int i = 18; i < 42; i++) dev += (g[i] - mean) * (g[i] - mean);
    double expect = sqrt(ss) / (sqrt(dev / 23) + eps);
    CHECK(fabs(gsnr[3] - expect) / expect < 1e-6, "random block: gsnr = norm/(sample std+eps) = %.6g (got %.6g)", expect, gsnr[3]);
    // more steps with nonzero gradients: the zero-gsnr matrix moves only by weight decay
    for (int i = 1; i < 13; i++) g[i] = 1.0f;
    for (int k = 0; k < 3; k++) optim_step(opt, p, g, lr);
    double worst = 0.0;
    for (int i = 1; i < 13; i++) {
        double expect_p = p0[i] * pow(1.0 - (double)lr * 0.1, 4);
        worst = fmax(worst, fabs(p[i] - expect_p) / fabs(expect_p));
    }
    CHECK(worst < 1e-6, "zero-gsnr block after 4 steps: p = p0 (1 - lr wd)^4 (rel err %.1e)", worst);
    optim_free(opt);
}

// recover X from one step with wd 0: p_new = p - a*lr*X
static void sinkhorn_of(const float *G, int m, int n, int iters, double *X) {
    ParamBlock b = blk("h0.attn.projw", ROLE_ATTN_PROJ, 2, m, n, 0);
    OptimConfig oc;
    optim_default_config(&oc);
    oc.weight_decay = 0.0f;
    oc.sinkgd_iters = iters;
    Optimizer *opt = optim_create(&b, 1, &oc);
    float *p = calloc_or_fail((size_t)m * n, sizeof(float), "p");
    float lr = 1.0f;
    optim_step(opt, p, G, lr);
    for (size_t i = 0; i < (size_t)m * n; i++) X[i] = -(double)p[i] / (oc.sinkgd_scale * lr);
    free(p);
    optim_free(opt);
}

static void sinkgd_edge_cases(void) {
    printf("-- SinkGD edge cases\n");
    int m = 24, n = 40;
    float *G = malloc_or_fail((size_t)m * n * sizeof(float), "G");
    double *X = malloc_or_fail((size_t)m * n * sizeof(double), "X");
    Rng rng;
    rng_seed(&rng, 3);
    for (int i = 0; i < m * n; i++) G[i] = rng_normal(&rng) * (1.0f + (float)(i % 7)); // uneven rows and columns
    sinkhorn_of(G, m, n, 50, X);
    double row_err = 0, col_err = 0;
    for (int i = 0; i < m; i++) {
        double s = 0;
        for (int j = 0; j < n; j++) s += X[i * n + j] * X[i * n + j];
        row_err = fmax(row_err, fabs(sqrt(s) - sqrt((double)n)) / sqrt((double)n));
    }
    for (int j = 0; j < n; j++) {
        double s = 0;
        for (int i = 0; i < m; i++) s += X[i * n + j] * X[i * n + j];
        col_err = fmax(col_err, fabs(sqrt(s) - sqrt((double)m)) / sqrt((double)m));
    }
    CHECK(col_err < 1e-5, "after 50 iterations every column norm is sqrt(m) (max rel err %.1e)", col_err);
    CHECK(row_err < 1e-4, "and every row norm is sqrt(n) (max rel err %.1e)", row_err);
    // one iteration on a 2x2 matrix by hand: rows to norm sqrt(2), then columns to norm sqrt(2)
    float G2[4] = {3, 4, 0, 2};
    double X2[4];
    sinkhorn_of(G2, 2, 2, 1, X2);
    double r[4] = {3 * sqrt(2.0) / 5, 4 * sqrt(2.0) / 5, 0, sqrt(2.0)}; // after the row pass
    double c0 = sqrt(r[0] * r[0] + r[2] * r[2]), c1 = sqrt(r[1] * r[1] + r[3] * r[3]);
    double e2[4] = {r[0] * sqrt(2.0) / c0, r[1] * sqrt(2.0) / c1, r[2] * sqrt(2.0) / c0, r[3] * sqrt(2.0) / c1};
    double err = 0;
    for (int i = 0; i < 4; i++) err = fmax(err, fabs(X2[i] - e2[i]));
    CHECK(err < 1e-6, "one iteration on [[3,4],[0,2]] matches the hand computation (max err %.1e)", err);
    // a zero gradient stays zero (norms clamped at 1e-8, no NaN)
    float Z[6] = {0};
    double XZ[6];
    sinkhorn_of(Z, 2, 3, 5, XZ);
    int zero = 1;
    for (int i = 0; i < 6; i++) zero &= XZ[i] == 0.0;
    CHECK(zero, "an all-zero gradient gives X = 0");
    // several slabs of rows (the column sums are split by 32 rows) with an
    // uneven last one, a zero row and a zero column: the spec's passes on X
    // itself, in double, and 1, 2 and 3 threads must give the same bits
    {
        int mb = 100, nb = 70;
        float *Gb = malloc_or_fail((size_t)mb * nb * sizeof(float), "G");
        double *want = malloc_or_fail((size_t)mb * nb * sizeof(double), "want");
        double *got[3];
        for (int i = 0; i < mb * nb; i++) {
            int row = i / nb, col = i % nb;
            Gb[i] = row == 37 || col == 5 ? 0.0f : rng_normal(&rng) * (1.0f + (float)(row % 5) + 0.5f * (float)(col % 3));
            want[i] = Gb[i];
        }
        for (int it = 0; it < 5; it++) {
            for (int i = 0; i < mb; i++) {
                double s = 0;
                for (int j = 0; j < nb; j++) s += want[i * nb + j] * want[i * nb + j];
                for (int j = 0; j < nb; j++) want[i * nb + j] *= sqrt((double)nb) / fmax(sqrt(s), 1e-8);
            }
            for (int j = 0; j < nb; j++) {
                double s = 0;
                for (int i = 0; i < mb; i++) s += want[i * nb + j] * want[i * nb + j];
                for (int i = 0; i < mb; i++) want[i * nb + j] *= sqrt((double)mb) / fmax(sqrt(s), 1e-8);
            }
        }
        int maxt = omp_get_max_threads();
        for (int t = 0; t < 3; t++) {
            omp_set_num_threads(t + 1);
            got[t] = malloc_or_fail((size_t)mb * nb * sizeof(double), "got");
            sinkhorn_of(Gb, mb, nb, 5, got[t]);
        }
        omp_set_num_threads(maxt);
        double worst = 0;
        for (int i = 0; i < mb * nb; i++) worst = fmax(worst, fabs(got[0][i] - want[i]));
        CHECK(worst < 1e-5, "5 iterations on a 100 x 70 gradient (4 slabs, a zero row and column) = the spec's passes in double (max err %.1e)", worst);
        int same = !memcmp(got[0], got[1], (size_t)mb * nb * sizeof(double)) && !memcmp(got[0], got[2], (size_t)mb * nb * sizeof(double));
        CHECK(same, "and 1, 2 and 3 threads give the same bits");
        for (int t = 0; t < 3; t++) free(got[t]);
        free(Gb); free(want);
    }
    // the fast kernel (optim/sinkhorn.c: rows four at a time, masked vectors,
    // slabs visited in alternating order) against the plain reference, bit for
    // bit: shapes with every remainder (rows mod 4 and mod 32, columns mod 16
    // and mod 64), a zero row, a zero column and -0 entries, 1 to 3 threads
    {
        static const int shapes[][2] = {{1, 1}, {3, 5}, {4, 16}, {33, 17}, {37, 130}, {64, 64}, {100, 70}, {131, 203}};
        int maxt = omp_get_max_threads(), worst_shape = -1, sumsq_shape = -1;
        for (int sh = 0; sh < (int)(sizeof(shapes) / sizeof(shapes[0])); sh++) {
            int ms = shapes[sh][0], ns = shapes[sh][1];
            size_t N = (size_t)ms * ns;
            float *Gs = malloc_or_fail(N * sizeof(float), "G"), *P0 = malloc_or_fail(N * sizeof(float), "P0");
            float *Pr = malloc_or_fail(N * sizeof(float), "P ref"), *Pf = malloc_or_fail(N * sizeof(float), "P fast");
            float *scratch = malloc_or_fail((ms + ns + sinkhorn_part_floats(ms, ns)) * sizeof(float), "scratch");
            for (size_t i = 0; i < N; i++) {
                int row = (int)(i / ns), col = (int)(i % ns);
                Gs[i] = (ms > 2 && row == ms / 2) || (ns > 2 && col == ns / 3) ? (i % 2 ? -0.0f : 0.0f)
                                                                               : rng_normal(&rng) * (1.0f + (float)(row % 3));
                P0[i] = 0.02f * rng_normal(&rng);
            }
            memcpy(Pr, P0, N * sizeof(float));
            int nsl = (ms + SINKHORN_SLAB_ROWS - 1) / SINKHORN_SLAB_ROWS;
            double sq_ref[8], sq_fast[8], sq_sum = 0.0; // (at most 5 slabs here)
            sinkhorn_update_reference(Pr, Gs, ms, ns, 5, 1e-3f, 0.999f, scratch, scratch + ms, scratch + ms + ns, sq_ref);
            for (int k = 0; k < nsl; k++) sq_sum += sq_ref[k];
            if (sq_sum != sum_of_squares_rows(Gs, ms, ns) && sumsq_shape < 0) sumsq_shape = sh;
            for (int t = 1; t <= 3; t++) {
                omp_set_num_threads(t);
                memcpy(Pf, P0, N * sizeof(float));
                sinkhorn_update(Pf, Gs, ms, ns, 5, 1e-3f, 0.999f, scratch, scratch + ms, scratch + ms + ns, t == 2 ? NULL : sq_fast);
                if (memcmp(Pf, Pr, N * sizeof(float)) != 0 && worst_shape < 0) worst_shape = sh;
                if (t != 2 && memcmp(sq_fast, sq_ref, nsl * sizeof(double)) != 0 && sumsq_shape < 0) sumsq_shape = sh;
            }
            omp_set_num_threads(maxt);
            free(Gs); free(P0); free(Pr); free(Pf); free(scratch);
        }
        CHECK(worst_shape < 0, "the fast Sinkhorn kernel = the plain reference, bit for bit, 8 shapes x 1-3 threads%s",
              worst_shape < 0 ? "" : " (first difference at shape index below)");
        if (worst_shape >= 0) printf("     first differing shape: %d x %d\n", shapes[worst_shape][0], shapes[worst_shape][1]);
        CHECK(sumsq_shape < 0, "and with the sums of squares of the first pass: the same parts in both, adding up to sum_of_squares_rows's bits%s",
              sumsq_shape < 0 ? "" : " (differs at a shape)");
    }
    // block_sum_of_squares: by hand, and against a plain double sum
    {
        float h[4] = {3, 4, 0, 2};
        ParamBlock hb = blk("h0.attn.projw", ROLE_ATTN_PROJ, 2, 2, 2, 0);
        CHECK(block_sum_of_squares(h, &hb) == 29.0, "block_sum_of_squares of [[3,4],[0,2]] = 29");
        int rows = 75, cols = 37; // 3 slabs, rows with every lane remainder
        float *g = malloc_or_fail((size_t)rows * cols * sizeof(float), "g");
        double plain = 0.0;
        for (int i = 0; i < rows * cols; i++) { g[i] = rng_normal(&rng); plain += (double)g[i] * g[i]; }
        ParamBlock gb = blk("h0.mlp.fcw", ROLE_MLP_UP, 2, rows, cols, 0), vb = blk("h0.mlp.fcb", ROLE_BIAS, 1, rows * cols, 1, 0);
        double got2 = block_sum_of_squares(g, &gb), got1 = block_sum_of_squares(g, &vb);
        CHECK(fabs(got2 - plain) < 1e-12 * plain && fabs(got1 - plain) < 1e-12 * plain,
              "block_sum_of_squares of a 75 x 37 block, 2-D and 1-D = the plain double sum (rel err %.1e, %.1e)",
              fabs(got2 - plain) / plain, fabs(got1 - plain) / plain);
        free(g);
    }
    // fused updates: optim_step_block hands back the block's sum of squares
    // with the same bits as block_sum_of_squares, for the hidden matrices (a
    // fused qkv of C = 64, whose q, k, v start on slab boundaries, included;
    // C = 48 does not divide into slabs of 32 rows, so its qkv does not offer
    // it) and the AdamW blocks
    {
        for (int C = 64; C >= 48; C -= 16) {
            ParamBlock mb[3] = {blk("h0.attn.qkvw", ROLE_ATTN_QKV, 2, 3 * C, C, 0),
                                blk("h0.mlp.fcw", ROLE_MLP_UP, 2, 4 * C, C, (size_t)3 * C * C),
                                blk("h0.ln1w", ROLE_NORM, 1, C, 1, (size_t)7 * C * C)};
            size_t N = (size_t)7 * C * C + C;
            float *g = malloc_or_fail(N * sizeof(float), "g"), *p = calloc_or_fail(N, sizeof(float), "p");
            for (size_t i = 0; i < N; i++) g[i] = rng_normal(&rng);
            OptimConfig oc;
            optim_default_config(&oc);
            Optimizer *o = optim_create(mb, 3, &oc);
            OptimBase *ob = optim_base(o);
            optim_step_begin(o, NULL);
            int same = 1;
            for (int b = 0; b < 3; b++) {
                double sum = -1.0;
                if (ob->sums_squares[b]) ob->block_sumsq = &sum;
                optim_step_block(o, b, p, g + mb[b].offset, 1e-3f);
                ob->block_sumsq = NULL;
                if (ob->sums_squares[b]) same &= sum == block_sum_of_squares(g + mb[b].offset, &mb[b]);
            }
            optim_step_end(o);
            if (C == 64)
                CHECK(ob->sums_squares[0] && ob->sums_squares[1] && ob->sums_squares[2] && same,
                      "C 64: qkv, fc and the LayerNorm (an AdamW block) offer their sums of squares, equal to block_sum_of_squares bit for bit");
            else
                CHECK(!ob->sums_squares[0] && ob->sums_squares[1] && ob->sums_squares[2] && same,
                      "C 48: qkv does not offer it, fc and the LayerNorm do (same bits)");
            optim_free(o);
            free(g); free(p);
        }
    }
    // state: only the AdamW blocks have any
    ParamBlock bl[3] = {blk("wte", ROLE_TOKEN_EMBEDDING, 2, 10, 4, 0), blk("h0.mlp.fcw", ROLE_MLP_UP, 2, 16, 4, 40),
                        blk("h0.ln1w", ROLE_NORM, 1, 4, 1, 104)};
    OptimConfig oc;
    optim_default_config(&oc);
    Optimizer *opt = optim_create(bl, 3, &oc);
    CHECK(optim_state_bytes(opt) == 2 * 4 * (40 + 4), "state: m and v of wte and the LayerNorm only (%zu bytes)", optim_state_bytes(opt));
    optim_free(opt);
    free(G); free(X);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen_or_fail(path, "wb");
    fputs(text, f);
    fclose(f);
}

static ParamBlock slim_blocks[5];
static void init_slim_blocks(void) {
    slim_blocks[0] = blk("wte", ROLE_TOKEN_EMBEDDING, 2, 10, 4, 0);
    slim_blocks[1] = blk("h0.attn.qkvw", ROLE_ATTN_QKV, 2, 12, 4, 40);
    slim_blocks[2] = blk("h0.mlp.fcw", ROLE_MLP_UP, 2, 16, 4, 88);
    slim_blocks[3] = blk("h0.mlp.fcb", ROLE_BIAS, 1, 16, 1, 152);
    slim_blocks[4] = blk("h0.ln1w", ROLE_NORM, 1, 4, 1, 168);
}

static void create_with_rules(const void *path) {
    OptimConfig oc;
    optim_default_config(&oc);
    snprintf(oc.slimadam_rules, sizeof(oc.slimadam_rules), "%s", (const char *)path);
    Optimizer *opt = optim_create(slim_blocks, 5, &oc);
    optim_free(opt);
}

static void slimadam_edge_cases(void) {
    printf("-- SlimAdam edge cases\n");
    init_slim_blocks();
    OptimConfig oc;
    optim_default_config(&oc);
    Optimizer *opt = optim_create(slim_blocks, 5, &oc);
    // defaults: wte K=(1,) 10; q,k K=(1,) 4+4, v K=(0,) 4; fcw K=(0,) 4; fcb none 16; ln none 4
    size_t m = 40 + 48 + 64 + 16 + 4;
    size_t v = 10 + 4 + 4 + 4 + 4 + 16 + 4;
    CHECK(optim_state_bytes(opt) == 4 * (m + v), "default rules: compressed v shapes give %zu bytes (expect %zu)",
          optim_state_bytes(opt), 4 * (m + v));
    optim_free(opt);
    char path[] = "/tmp/test_slimadam_rules_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    write_text(path, "{\"wte\": [0, 1], \"h0.attn.qkvw.v\": null, \"h0.mlp.fcb\": [0], \"h0.mlp.fcw\": []}");
    snprintf(oc.slimadam_rules, sizeof(oc.slimadam_rules), "%s", path);
    opt = optim_create(slim_blocks, 5, &oc);
    v = 1 + 4 + 4 + 16 + 64 + 1 + 4;
    CHECK(optim_state_bytes(opt) == 4 * (m + v), "rules from JSON: (0,1) keeps 1, null and [] keep all, [0] of a vector keeps 1 (%zu bytes)",
          optim_state_bytes(opt));
    optim_free(opt);
    write_text(path, "{\"h0.attn.qkvw.x\": [1]}");
    expect_failure("unknown block name", create_with_rules, path, "unknown block 'h0.attn.qkvw.x'");
    write_text(path, "{\"h0.mlp.fcb\": [1]}");
    expect_failure("dimension 1 of a vector", create_with_rules, path, "dimension 1 is impossible");
    write_text(path, "{\"wte\": [2]}");
    expect_failure("dimension 2 of a matrix", create_with_rules, path, "dimension 2 is impossible");
    write_text(path, "{\"wte\": [1,]");
    expect_failure("malformed JSON", create_with_rules, path, "malformed JSON");
    write_text(path, "{\"wte\": \"rows\"}");
    expect_failure("a string instead of dimensions", create_with_rules, path, "expected a list of dimensions");
    remove(path);
    expect_failure("a missing rules file", create_with_rules, "/nonexistent/rules.json", "/nonexistent/rules.json");
}


// a state file from another optimizer or model must be refused
static void load_foreign_state(const void *path) {
    ParamBlock b = blk("other", ROLE_ATTN_PROJ, 2, 3, 3, 0);
    OptimConfig oc;
    optim_default_config(&oc);
    Optimizer *opt = optim_create(&b, 1, &oc);
    optim_load(opt, (const char *)path);
}

// SNR_K of v computed here, apart from optim/snr.c, in long double: the groups
// are the rows (K=(1,)), the columns (K=(0,)) or the whole block (K=(0,1));
// mean over the groups with a finite mean^2 / population variance
static double snr_reference(const float *v, int rows, int cols, int k) {
    int groups = k == SNR_K1 ? rows : k == SNR_K0 ? cols : 1;
    int len = k == SNR_K1 ? cols : k == SNR_K0 ? rows : rows * cols;
    long double total = 0.0L;
    int finite = 0;
    for (int gi = 0; gi < groups; gi++) {
        long double mean = 0.0L, var = 0.0L;
        for (int j = 0; j < len; j++) mean += k == SNR_K0 ? v[j * cols + gi] : v[gi * len + j];
        mean /= len;
        for (int j = 0; j < len; j++) {
            long double d = (k == SNR_K0 ? v[j * cols + gi] : v[gi * len + j]) - mean;
            var += d * d;
        }
        long double r = mean * mean / (var / len);
        if (isfinite((double)r)) { total += r; finite++; }
    }
    return finite ? (double)(total / finite) : NAN;
}

static cJSON *read_json_file(const char *path) {
    FILE *f = fopen_or_fail(path, "rb");
    size_t size = file_size_or_fail(f, path);
    char *text = malloc_or_fail(size + 1, path);
    fread_or_fail(text, 1, size, f, path);
    text[size] = '\0';
    fclose(f);
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) fail("%s: malformed JSON", path);
    return j;
}

// SlimAdam's SNR analysis (runs with AdamW, the optimizer whose v it reads)
static void snr_analysis(void) {
    printf("-- SlimAdam SNR analysis of AdamW's second moments\n");
    // by hand: rows (1,1) and (1,3); (1,1) has variance 0, its ratio is dropped
    float v[4] = {1, 1, 1, 3};
    CHECK(fabs(snr_of(v, 2, 2, SNR_K1) - 4.0) < 1e-12, "K=(1,): row (1,3) has mean^2/var = 4/1; row (1,1) dropped");
    CHECK(fabs(snr_of(v, 2, 2, SNR_K0) - 4.0) < 1e-12, "K=(0,): column (1,3) gives 4");
    CHECK(fabs(snr_of(v, 2, 2, SNR_K01) - 3.0) < 1e-12, "K=(0,1): mean 1.5, variance 0.75: 3");
    float c[4] = {2, 2, 2, 2};
    CHECK(isnan(snr_of(c, 2, 2, SNR_K01)), "a constant v has no finite ratio");
    // a real AdamW run: a matrix whose gradient rows have very different
    // scales (v is nearly constant along each row: K=(1,)), one whose columns
    // do (K=(0,)), one whose every entry has its own scale, spread over four
    // decades (no mean describes v: none), and a LayerNorm gain (always none)
    ParamBlock b[4] = {blk("rows", ROLE_MLP_UP, 2, 8, 16, 0), blk("cols", ROLE_MLP_DOWN, 2, 8, 16, 128),
                       blk("noise", ROLE_ATTN_PROJ, 2, 8, 16, 256), blk("ln", ROLE_NORM, 1, 16, 1, 384)};
    OptimConfig oc;
    optim_default_config(&oc);
    Optimizer *opt = optim_create(b, 4, &oc);
    SnrStats s;
    snr_init(&s, b, 4);
    float p[400] = {0}, g[400], scale[128];
    double line_sum[4][SNR_NUM_K] = {{0}}, line_err = 0.0;
    int line_count[4][SNR_NUM_K] = {{0}}, lines = 0, lines_ok = 1;
    Rng rng;
    rng_seed(&rng, 11);
    for (int i = 0; i < 128; i++) scale[i] = powf(10.0f, 4.0f * rng_uniform(&rng) - 2.0f);
    for (int step = 0; step < 20; step++) {
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 16; j++) {
                float u = 1.0f + 0.05f * rng_normal(&rng);
                g[i * 16 + j] = (float)(1 << i) * u;               // row scales 1..128
                g[128 + i * 16 + j] = (float)(1 + j * j) * u;      // column scales 1..226
                g[256 + i * 16 + j] = scale[i * 16 + j] * u;
            }
        for (int j = 0; j < 16; j++) g[384 + j] = 1.0f + 0.01f * rng_normal(&rng);
        optim_step(opt, p, g, 1e-3f);
        if (step % 4 != 3) continue;
        snr_measure(&s, opt, step + 1);
        // the line of snr.jsonl, as a reader sees it (printed, parsed back),
        // against the SNRs of AdamW's v computed here
        cJSON *rec = snr_record(&s);
        char *t = cJSON_PrintUnformatted(rec);
        cJSON_Delete(rec);
        rec = cJSON_Parse(t);
        free(t);
        const cJSON *st = cJSON_GetObjectItem(rec, "step"), *snr = cJSON_GetObjectItem(rec, "snr");
        lines_ok &= cJSON_IsNumber(st) && st->valueint == step + 1 && cJSON_GetArraySize(snr) == 4;
        for (int i = 0; i < 4; i++) {
            const float *v = optim_second_moment(opt, b[i].offset, block_numel(&b[i]));
            const cJSON *a = cJSON_GetObjectItem(snr, b[i].name);
            lines_ok &= cJSON_GetArraySize(a) == SNR_NUM_K;
            for (int k = 0; k < SNR_NUM_K; k++) {
                double ref = b[i].ndim == 1 && k != SNR_K01 ? NAN : snr_reference(v, b[i].rows, b[i].cols, k);
                const cJSON *x = cJSON_GetArrayItem(a, k);
                if (!isfinite(ref)) { lines_ok &= cJSON_IsNull(x); continue; }
                if (!cJSON_IsNumber(x)) { lines_ok = 0; continue; }
                line_err = fmax(line_err, fabs(x->valuedouble - ref) / fabs(ref));
                line_sum[i][k] += x->valuedouble;
                line_count[i][k]++;
            }
        }
        lines++;
        cJSON_Delete(rec);
    }
    CHECK(lines_ok && lines == 5 && line_err < 1e-12,
          "each measurement's line (step, 4 blocks x 3 K, null for a vector's K=(0,), (1,)) = the SNRs recomputed from v (rel err %.1e)",
          line_err);
    char path[] = "/tmp/test_snr_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    char means_path[64];
    snr_means_path(means_path, sizeof(means_path), path);
    int saved = stdout_mute();
    snr_write_rules(&s, path, means_path);
    stdout_restore(saved);
    FILE *f = fopen_or_fail(path, "rb");
    char text[1024] = {0};
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    cJSON *j = cJSON_Parse(text);
    const cJSON *r = cJSON_GetObjectItem(j, "rows"), *cl = cJSON_GetObjectItem(j, "cols");
    const cJSON *no = cJSON_GetObjectItem(j, "noise"), *ln = cJSON_GetObjectItem(j, "ln");
    int rows_ok = cJSON_GetArraySize(r) == 1 && cJSON_GetArrayItem(r, 0)->valueint == 1;
    int cols_ok = cJSON_GetArraySize(cl) == 1 && cJSON_GetArrayItem(cl, 0)->valueint == 0;
    CHECK(j && rows_ok && cols_ok && cJSON_IsNull(no) && cJSON_IsNull(ln),
          "rules from a run: row-structured -> [1], column-structured -> [0], unstructured -> null, LayerNorm -> null");
    // the averages beside the rules: the mean of the lines, and each rule the
    // K of the highest mean above 1 (none for LayerNorm), derived here
    cJSON *m = read_json_file(means_path);
    const cJSON *mb = cJSON_GetObjectItem(m, "blocks");
    int means_ok = cJSON_GetObjectItem(m, "measurements")->valueint == 5 && cJSON_GetObjectItem(m, "first_step")->valueint == 4 &&
                   cJSON_GetObjectItem(m, "last_step")->valueint == 20 && cJSON_GetArraySize(mb) == 4;
    double mean_err = 0.0;
    for (int i = 0; i < 4; i++) {
        const cJSON *e = cJSON_GetObjectItem(mb, b[i].name);
        const cJSON *mean = cJSON_GetObjectItem(e, "mean"), *count = cJSON_GetObjectItem(e, "count");
        int best = -1;
        double best_mean = 1.0;
        for (int k = 0; k < SNR_NUM_K; k++) {
            const cJSON *x = cJSON_GetArrayItem(mean, k);
            means_ok &= cJSON_GetArrayItem(count, k)->valueint == line_count[i][k];
            if (line_count[i][k] == 0) { means_ok &= cJSON_IsNull(x); continue; }
            double expect = line_sum[i][k] / line_count[i][k];
            means_ok &= cJSON_IsNumber(x);
            if (cJSON_IsNumber(x)) mean_err = fmax(mean_err, fabs(x->valuedouble - expect) / fabs(expect));
            if (b[i].role != ROLE_NORM && expect > best_mean) { best = k; best_mean = expect; }
        }
        // the rule as a JSON text: null, [0] (a vector's K=(0,1) is its dim 0), [1], [0,1]
        const char *want = best < 0 ? "null" : b[i].ndim == 1 || best == SNR_K0 ? "[0]" : best == SNR_K1 ? "[1]" : "[0,1]";
        char *in_rules = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, b[i].name));
        char *in_means = cJSON_PrintUnformatted(cJSON_GetObjectItem(e, "rule"));
        means_ok &= strcmp(in_rules, want) == 0 && strcmp(in_means, want) == 0;
        free(in_rules);
        free(in_means);
    }
    CHECK(means_ok && mean_err < 1e-12,
          "%s: 5 measurements (steps 4..20), each mean = the mean of the lines (rel err %.1e), the rules follow from them",
          strrchr(means_path, '/') + 1, mean_err);
    cJSON_Delete(m);
    remove(means_path);
    cJSON_Delete(j);
    remove(path);
    snr_free(&s);
    optim_free(opt);
}

// The memory plan's state sizes on GPT-2 124M: optim_state_bytes_for and the
// named formula (what another optimizer's trainer says of this one) equal what
// optim_create allocates, and both equal section 6 of the spec worked out by
// hand from the shapes (V 50257, maxT 1024, L 12, C 768).
static void state_sizes_gpt2_124m(void) {
    printf("-- state sizes on GPT-2 124M\n");
    GPT2Config c;
    gpt2_config_from_depth(&c, "d12");
    int nb = gpt2_param_blocks(&c, NULL);
    ParamBlock *blocks = malloc_or_fail(nb * sizeof(ParamBlock), "blocks");
    gpt2_param_blocks(&c, blocks);
    OptimConfig oc;
    optim_default_config(&oc);
    size_t before = optim_state_bytes_for(blocks, nb, &oc);
    Optimizer *opt = optim_create(blocks, nb, &oc); // mapped, never touched
    CHECK(before == optim_state_bytes(opt), "optim_state_bytes_for %zu = allocated %zu", before, optim_state_bytes(opt));
    CHECK(optim_state_bytes_named(OPTIM_NAME, blocks, nb) == optim_state_bytes(opt), "optim_state_bytes_named(\"%s\") %zu",
          OPTIM_NAME, optim_state_bytes_named(OPTIM_NAME, blocks, nb));
    size_t V = 50257, maxT = 1024, L = 12, C = 768;
    size_t N = V * C + maxT * C + L * (12 * C * C + 13 * C) + 2 * C; // 124,439,808
    size_t by_hand = 0;
    if (strcmp(OPTIM_NAME, "adamw") == 0) by_hand = 8 * N;
    if (strcmp(OPTIM_NAME, "sgdm") == 0) by_hand = 4 * N;
    if (strcmp(OPTIM_NAME, "sgd_sai") == 0) by_hand = 4 * N + 4 * (size_t)nb; // one g-SNR per block
    // m, v of everything but the hidden matrices: embeddings, LayerNorms, biases
    if (strcmp(OPTIM_NAME, "sinkgd") == 0) by_hand = 8 * (V * C + maxT * C + L * 13 * C + 2 * C);
    // m, and v per Table 1: a row's for wte, wpe, q, k; a column's for v, proj, fc, mlp proj; full for the vectors
    if (strcmp(OPTIM_NAME, "slimadam") == 0) by_hand = 4 * N + 4 * (V + maxT + L * (4 * C + 4 * C + 13 * C + C) + 2 * C);
    CHECK(N == 124439808 && by_hand == optim_state_bytes(opt), "%s: %zu bytes worked out by hand", OPTIM_NAME, by_hand);
    optim_free(opt);
    free(blocks);
}

static void state_file_errors(void) {
    printf("-- state file errors\n");
    ParamBlock b = blk("mine", ROLE_ATTN_PROJ, 2, 4, 4, 0);
    OptimConfig oc;
    optim_default_config(&oc);
    Optimizer *opt = optim_create(&b, 1, &oc);
    char path[] = "/tmp/test_optim_state_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    optim_save(opt, path);
    expect_failure("state of another model", load_foreign_state, path, "block 0 is mine");
    FILE *f = fopen_or_fail(path, "r+b");
    fputc('X', f); // break the magic
    fclose(f);
    expect_failure("bad magic", load_foreign_state, path, "not an optimizer state file");
    optim_save(opt, path);
    if (truncate(path, 100) != 0) fail("truncate %s", path);
    expect_failure("truncated file", load_foreign_state, path, "truncated");
    remove(path);
    optim_free(opt);
}

int main(int argc, char **argv) {
    if (argc > 1) dir = argv[1];
    printf("test_optim: %s\n", OPTIM_NAME);
    static const char *variants[][3] = {
        {"adamw", "adamw", NULL}, {"sgdm", "sgdm", "sgdm_nesterov"}, {"sgd_sai", "sgd_sai", "sgd_sai_sqrtn_max"},
        {"sinkgd", "sinkgd", NULL}, {"slimadam", "slimadam", "slimadam_rules"}};
    for (int i = 0; i < 5; i++) {
        if (strcmp(variants[i][0], OPTIM_NAME) != 0) continue;
        for (int j = 1; j < 3; j++) if (variants[i][j]) run_reference(variants[i][j]);
    }
    if (strcmp(OPTIM_NAME, "sgd_sai") == 0) sgd_sai_edge_cases();
    if (strcmp(OPTIM_NAME, "sinkgd") == 0) sinkgd_edge_cases();
    if (strcmp(OPTIM_NAME, "slimadam") == 0) slimadam_edge_cases();
    if (strcmp(OPTIM_NAME, "adamw") == 0) snr_analysis();
    state_sizes_gpt2_124m();
    state_file_errors();
    if (failures) { printf("test_optim %s: %d FAILED\n", OPTIM_NAME, failures); return 1; }
    printf("test_optim %s: all passed\n", OPTIM_NAME);
    return 0;
}
