// test_run: the run machinery's pieces against hand-computed values:
// learning-rate schedules, global-norm clipping, checkpoint bookkeeping
// (completeness, pruning, leftovers of a crash), the log and the other JSON-
// lines files on resume, and the --gsnr-every records against a g-SNR
// computed here another way, and the flag tables (run/flags.h): values
// parsed, ranges, help lines, against values written out here.
// The whole-trainer behaviour (accumulation, bitwise resume after SIGKILL,
// Ctrl-C, NaN stop) is tested by dev/test_run.sh.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/rng.h"
#include "common/utils.h"
#include "run/flags.h"
#include "run/run.h"

#include "test.h"

static int close_to(double a, double b) { return fabs(a - b) <= 1e-6 * fmax(1.0, fabs(b)); }

static void test_schedules(void) {
    RunConfig rc;
    run_config_defaults(&rc);
    rc.max_steps = 10;
    rc.warmup = 2;
    rc.final_frac = 0.1f;
    float lr = 1.0f;
    // warmup: lr (s+1)/W, so the first step is lr/W, never 0
    rc.schedule = SCHED_COSINE;
    CHECK(close_to(lr_at_step(&rc, lr, 0), 0.5) && close_to(lr_at_step(&rc, lr, 1), 1.0),
          "warmup: steps 0, 1 of 2 get lr/2, lr");
    // cosine: r = (s - W) / (N - W); lr_min + (1 + cos(pi r)) / 2 (lr - lr_min)
    int ok = 1;
    for (int s = 2; s < 10; s++) {
        double r = (s - 2) / 8.0;
        ok &= close_to(lr_at_step(&rc, lr, s), 0.1 + 0.5 * (1 + cos(M_PI * r)) * 0.9);
    }
    CHECK(ok && close_to(lr_at_step(&rc, lr, 6), 0.55), "cosine: halfway (step 6) is (lr + lr_min) / 2 = 0.55");
    rc.schedule = SCHED_LINEAR;
    CHECK(close_to(lr_at_step(&rc, lr, 2), 1.0) && close_to(lr_at_step(&rc, lr, 6), 0.55) &&
          close_to(lr_at_step(&rc, lr, 9), 1.0 - 0.9 * 7.0 / 8.0), "linear: 1 -> 0.55 at step 6 -> 0.2125 at the last step");
    rc.schedule = SCHED_CONSTANT;
    CHECK(close_to(lr_at_step(&rc, lr, 0), 0.5) && close_to(lr_at_step(&rc, lr, 9), 1.0), "constant after warmup");
    // wsd: 20% of 10 = 2 decay steps at the end: steps 8, 9 get 1 - 0.9/2, 0.1
    rc.schedule = SCHED_WSD;
    CHECK(close_to(lr_at_step(&rc, lr, 7), 1.0) && close_to(lr_at_step(&rc, lr, 8), 0.55) && close_to(lr_at_step(&rc, lr, 9), 0.1),
          "wsd: stable to step 7, then 0.55, then lr_min 0.1 at the last step");
    rc.warmup = 0;
    rc.schedule = SCHED_COSINE;
    CHECK(close_to(lr_at_step(&rc, lr, 0), 1.0), "no warmup: the first step has the peak lr");
    rc.max_steps = 1;
    CHECK(close_to(lr_at_step(&rc, lr, 0), 1.0), "a 1-step cosine run uses the peak lr");
}

static void test_clipping(void) {
    // two blocks with a gap between them (the gap is not a parameter)
    float g[10] = {3, 0, 0, 0, /* gap */ 99, 99, /* block 2 */ 4, 0, 0, 0};
    ParamBlock b[2] = {param_block("a", ROLE_BIAS, 1, 4, 1, 0), param_block("b", ROLE_BIAS, 1, 4, 1, 6)};
    float norm = clip_grad_norm(g, b, 2, 0.0f);
    CHECK(norm == 5.0f && g[0] == 3.0f, "norm of (3, 4) over the blocks is 5, gap ignored; clip 0 changes nothing");
    norm = clip_grad_norm(g, b, 2, 10.0f);
    CHECK(norm == 5.0f && g[0] == 3.0f, "clip 10 > norm 5: unchanged");
    norm = clip_grad_norm(g, b, 2, 1.0f);
    float coef = 1.0f / (5.0f + 1e-6f);
    CHECK(norm == 5.0f && g[0] == 3.0f * coef && g[6] == 4.0f * coef && g[4] == 99.0f,
          "clip 1: scaled by 1/(5 + 1e-6) as torch.nn.utils.clip_grad_norm_, gap untouched");
    g[7] = NAN;
    norm = clip_grad_norm(g, b, 2, 1.0f);
    CHECK(isnan(norm), "a NaN gradient gives a NaN norm (the trainer stops or skips)");
}

static void touch(const char *dir, const char *kind, long step, const char *ext) {
    char path[700];
    ckpt_path(path, sizeof(path), dir, kind, step, ext);
    FILE *f = fopen_or_fail(path, "wb");
    fputs("x", f);
    fclose(f);
}

static int exists(const char *dir, const char *kind, long step, const char *ext) {
    char path[700];
    ckpt_path(path, sizeof(path), dir, kind, step, ext);
    return file_exists(path);
}

static void test_checkpoints(void) {
    char dir[] = "/tmp/test_run_XXXXXX";
    if (!mkdtemp(dir)) fail("mkdtemp");
    CHECK(ckpt_latest(dir) == -1, "an empty directory has no checkpoint");
    // complete checkpoints 1, 2, 3
    for (long s = 1; s <= 3; s++) {
        touch(dir, "model", s, "bin");
        touch(dir, "optim", s, "bin");
        cJSON *st = cJSON_CreateObject();
        cJSON_AddNumberToObject(st, "step", (double)s);
        ckpt_commit(dir, s, st, 0, 0);
    }
    // a crash while writing checkpoint 4: model written, optimizer half-written, no state
    touch(dir, "model", 4, "bin");
    touch(dir, "optim", 4, "bin.tmp");
    CHECK(ckpt_latest(dir) == 3, "a checkpoint without its state file is incomplete: the latest is 3");
    cJSON *st = ckpt_read_state(dir, 3);
    CHECK(json_get_number(st, "step", "state") == 3.0, "the state file of 3 reads back");
    cJSON_Delete(st);
    // the resumed run commits 4 with keep_last 2: 1 and 2 go; 3 and 4 stay
    touch(dir, "optim", 4, "bin");
    st = cJSON_CreateObject();
    ckpt_commit(dir, 4, st, 2, 0);
    CHECK(!exists(dir, "model", 1, "bin") && !exists(dir, "state", 2, "json") && exists(dir, "model", 3, "bin") &&
          exists(dir, "state", 4, "json") && exists(dir, "optim", 4, "bin"),
          "keep last 2: checkpoints 1 and 2 removed, 3 and 4 kept");
    CHECK(!exists(dir, "optim", 4, "bin.tmp"), "the temporary file of an interrupted write is removed");
    // model/optim files without a state file are not shown to be this run's
    // (llm.c writes model_00000005.bin too): they stay; and no name that is
    // not exactly a checkpoint file's is touched, whatever it looks like
    touch(dir, "model", 5, "bin");
    touch(dir, "optim", 5, "bin");
    const char *foreign[] = {"model_1.bin", "state_3.txt", "model_00000001.bin.bak", "optim_00000001.bin.tmp.keep",
                             "state_00000001.json~", "DONE_00000005", "model_+0000001.bin", "state_1.json"};
    int nforeign = (int)(sizeof(foreign) / sizeof(foreign[0]));
    char fpath[800];
    for (int i = 0; i < nforeign; i++) {
        snprintf(fpath, sizeof(fpath), "%s/%s", dir, foreign[i]);
        FILE *ff = fopen_or_fail(fpath, "wb");
        fputs("not ours", ff);
        fclose(ff);
    }
    st = cJSON_CreateObject();
    ckpt_commit(dir, 6, st, 1, 0);
    int kept = 1;
    for (int i = 0; i < nforeign; i++) {
        snprintf(fpath, sizeof(fpath), "%s/%s", dir, foreign[i]);
        kept &= file_exists(fpath);
    }
    CHECK(exists(dir, "model", 5, "bin") && exists(dir, "optim", 5, "bin") && !exists(dir, "state", 4, "json") &&
          !exists(dir, "model", 3, "bin") && exists(dir, "state", 6, "json"),
          "keep last 1 at 6: complete checkpoints 3 and 4 removed; 5's model and optimizer files (no state file) kept");
    CHECK(kept && ckpt_latest(dir) == 6, "names not exactly a checkpoint's (model_1.bin, state_3.txt, "
          "model_00000001.bin.bak, state_1.json...) are neither deleted nor taken for checkpoints");
    // the log on resume from step 3: records of steps <= 3 and step-less ones kept, the torn line dropped
    char path[700];
    snprintf(path, sizeof(path), "%s/log.jsonl", dir);
    FILE *f = fopen_or_fail(path, "wb");
    fputs("{\"type\":\"config\"}\n{\"step\":1,\"loss\":5}\n{\"step\":3,\"val_loss\":4}\n{\"step\":4,\"loss\":3}\n{\"step\":5,\"lo", f);
    fclose(f);
    RunLog log;
    run_log_open(&log, dir, 3);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "step", 4);
    run_log_write(&log, r);
    run_log_close(&log);
    f = fopen_or_fail(path, "rb");
    char buf[512] = {0};
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    CHECK(strcmp(buf, "{\"type\":\"config\"}\n{\"step\":1,\"loss\":5}\n{\"step\":3,\"val_loss\":4}\n{\"step\":4}\n") == 0,
          "log resumed at step 3: later and torn records dropped, new ones appended");
    char cmd[800];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) fail("cleanup of %s", dir);
}

// any JSON-lines file on resume: a record whose newline a crash cut off is ended
static void test_jsonl_resume(void) {
    char dir[] = "/tmp/test_run_XXXXXX";
    if (!mkdtemp(dir)) fail("mkdtemp");
    char path[700];
    snprintf(path, sizeof(path), "%s/gsnr.jsonl", dir);
    FILE *f = fopen_or_fail(path, "wb");
    fputs("{\"type\":\"header\"}\n{\"step\":1,\"g\":1}\n{\"step\":4,\"g\":2}\n{\"step\":8,\"g\":3}", f);
    fclose(f);
    RunLog log;
    long kept = run_jsonl_open(&log, path, 4);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "step", 8);
    run_log_write(&log, r);
    run_log_close(&log);
    f = fopen_or_fail(path, "rb");
    char buf[512] = {0};
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    CHECK(kept == 3 && strcmp(buf, "{\"type\":\"header\"}\n{\"step\":1,\"g\":1}\n{\"step\":4,\"g\":2}\n{\"step\":8}\n") == 0,
          "a JSON-lines file resumed at step 4: header and steps 1, 4 kept (3 records), 8 dropped, the new 8 appended");
    f = fopen_or_fail(path, "wb");
    fputs("{\"type\":\"header\"}\n{\"step\":4,\"g\":2}", f); // the crash came before the newline
    fclose(f);
    kept = run_jsonl_open(&log, path, 4);
    r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "step", 5);
    run_log_write(&log, r);
    run_log_close(&log);
    f = fopen_or_fail(path, "rb");
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    CHECK(kept == 2 && strcmp(buf, "{\"type\":\"header\"}\n{\"step\":4,\"g\":2}\n{\"step\":5}\n") == 0,
          "a last record without its newline is ended before the next one is appended");
    kept = run_jsonl_open(&log, path, -1);
    run_log_close(&log);
    f = fopen_or_fail(path, "rb");
    CHECK(kept == 0 && file_size_or_fail(f, path) == 0, "a new run starts the file empty");
    fclose(f);
    remove(path);
    rmdir(dir);
}

// g-SNR the textbook way, independent of gsnr_of_gradient: Welford's running
// mean and sum of squared deviations, in long double
static double gsnr_welford(const float *g, size_t n) {
    long double mean = 0.0L, m2 = 0.0L, sumsq = 0.0L;
    for (size_t i = 0; i < n; i++) {
        long double x = g[i], d = x - mean;
        mean += d / (long double)(i + 1);
        m2 += d * (x - mean);
        sumsq += x * x;
    }
    long double std = n > 1 ? sqrtl(m2 / (long double)(n - 1)) : 0.0L;
    return (double)(sqrtl(sumsq) / (std + 1e-8L));
}

static void test_gsnr_probe(void) {
    // blocks of every kind, with a gap (not a parameter) between two of them:
    // random [5,4] with a non-zero mean, a fused qkv [6,2] (one block, as
    // SGD-SaI sees it), 1 element (std 0), a constant vector (std 0), an
    // all-zero matrix (g-SNR 0) and a vector holding a NaN (null in the file)
    ParamBlock b[6] = {param_block("wte", ROLE_TOKEN_EMBEDDING, 2, 5, 4, 0), param_block("h0.attn.qkvw", ROLE_ATTN_QKV, 2, 6, 2, 23),
                       param_block("one", ROLE_BIAS, 1, 1, 1, 35), param_block("ln", ROLE_NORM, 1, 5, 1, 36),
                       param_block("zero", ROLE_ATTN_PROJ, 2, 2, 3, 41), param_block("nan", ROLE_BIAS, 1, 3, 1, 47)};
    float g[50];
    Rng rng;
    rng_seed(&rng, 5);
    for (int i = 0; i < 20; i++) g[i] = 0.3f + rng_uniform(&rng);
    for (int i = 20; i < 23; i++) g[i] = 1e6f; // the gap
    for (int i = 23; i < 35; i++) g[i] = 2e-3f * (rng_uniform(&rng) - 0.5f);
    g[35] = -0.37f;
    for (int i = 36; i < 41; i++) g[i] = 0.25f;
    for (int i = 41; i < 47; i++) g[i] = 0.0f;
    g[47] = 1.0f; g[48] = NAN; g[49] = 2.0f;
    double expect[6];
    for (int i = 0; i < 5; i++) expect[i] = gsnr_welford(g + b[i].offset, block_numel(&b[i]));
    GsnrProbe p;
    gsnr_probe_init(&p, b, 6);
    gsnr_probe_measure(&p, g, 7);
    // the record as a reader sees it: printed and parsed back
    cJSON *rec = gsnr_probe_record(&p), *hdr = gsnr_probe_header(&p);
    char *rt = cJSON_PrintUnformatted(rec), *ht = cJSON_PrintUnformatted(hdr);
    cJSON_Delete(rec);
    cJSON_Delete(hdr);
    rec = cJSON_Parse(rt);
    hdr = cJSON_Parse(ht);
    const cJSON *vals = cJSON_GetObjectItemCaseSensitive(rec, "gsnr");
    int ok = cJSON_GetArraySize(vals) == 6 && json_get_number(rec, "step", "record") == 7.0;
    double worst = 0.0;
    for (int i = 0; i < 5; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(vals, b[i].name);
        ok &= cJSON_IsNumber(v);
        if (!cJSON_IsNumber(v)) continue;
        double err = expect[i] == 0.0 ? fabs(v->valuedouble) : fabs(v->valuedouble - expect[i]) / expect[i];
        worst = fmax(worst, err);
    }
    CHECK(ok && worst < 1e-12, "g-SNR of 5 blocks (random, fused qkv, 1 element, constant, zero) = a long double Welford recomputation (rel err %.1e)", worst);
    CHECK(fabs(expect[2] - 0.37 / 1e-8) < 1e-6 * expect[2] && fabs(expect[3] - sqrt(5 * 0.0625) / 1e-8) < 1e-6 * expect[3] && expect[4] == 0.0,
          "and the edge cases by hand: |g|/1e-8, ||g||/1e-8, 0");
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(vals, "nan")), "a NaN gradient gives null");
    const cJSON *hb = cJSON_GetObjectItemCaseSensitive(hdr, "blocks");
    const cJSON *qkv = cJSON_GetObjectItemCaseSensitive(hb, "h0.attn.qkvw"), *one = cJSON_GetObjectItemCaseSensitive(hb, "one");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(qkv, "shape");
    CHECK(cJSON_GetArraySize(hb) == 6 && json_get_number(hdr, "eps", "header") == 1e-8 &&
          strcmp(cJSON_GetObjectItemCaseSensitive(qkv, "role")->valuestring, "attn_qkv") == 0 &&
          json_get_number(qkv, "n", "header") == 12 && cJSON_GetArraySize(shape) == 2 &&
          cJSON_GetArrayItem(shape, 0)->valueint == 6 && json_get_number(one, "n", "header") == 1 &&
          cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(one, "shape")) == 1,
          "header: eps 1e-8, every block once with role, shape and N (fused qkv one block of 12)");
    cJSON_Delete(rec);
    cJSON_Delete(hdr);
    free(rt);
    free(ht);
    gsnr_probe_free(&p);
}

// checked size arithmetic: the exact value, or exit 1 where it would wrap
static int exits_with_1(size_t (*fn)(size_t, size_t, const char *), size_t a, size_t b) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 2);
        fn(a, b, "test");
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 1;
}

static void test_checked_sizes(void) {
    size_t half = (size_t)1 << 63;
    CHECK(mul_size_or_fail((size_t)1 << 20, (size_t)1 << 20, "t") == (size_t)1 << 40 &&
          mul4_size_or_fail(3, 5, 7, 11, "t") == 1155 && add_size_or_fail(half - 1, half, "t") == SIZE_MAX,
          "checked products and sums: 2^20 x 2^20 = 2^40, 3 x 5 x 7 x 11 = 1155, (2^63 - 1) + 2^63 = 2^64 - 1");
    CHECK(exits_with_1(mul_size_or_fail, half, 2) && exits_with_1(add_size_or_fail, half, half) &&
          exits_with_1(mul_size_or_fail, (size_t)1 << 32, (size_t)1 << 32),
          "2^63 x 2, 2^63 + 2^63, 2^32 x 2^32 overflow 64 bits: each fails (exit 1) instead of wrapping to 0");
}

// Parse one command line through the run's table; returns 1 if all of it was run flags.
static int parse_run_flags(RunConfig *rc, OptimConfig *oc, int argc, char **argv) {
    run_config_defaults(rc);
    optim_default_config(oc);
    for (int i = 1; i < argc; i++)
        if (!run_parse_flag(rc, oc, argc, argv, &i)) return 0;
    return 1;
}

// A flag's failure: the child's one line on stderr (fail() exits 1)
static int flag_fails_with(char **argv, int argc, const char *want) {
    fflush(stdout);
    int fds[2];
    if (pipe(fds) != 0) return 0;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        RunConfig rc;
        OptimConfig oc;
        parse_run_flags(&rc, &oc, argc, argv);
        _exit(0);
    }
    close(fds[1]);
    char buf[512] = {0};
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(buf) - 1 && (n = read(fds[0], buf + len, sizeof(buf) - 1 - len)) > 0) len += (size_t)n;
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 1 && strstr(buf, want) != NULL;
}

typedef struct { int n; long big; float f; double d; int on; const char *name; } TestFlags;

static void test_flags(void) {
    RunConfig rc;
    OptimConfig oc;
    char *argv1[] = {"x", "-b", "8", "-d", "-1", "-x", "5", "-l", "0.01", "-c", "0.2", "-k", "wsd", "--clip", "0",
                     "--seed", "9223372036854775807", "-o", "some/dir", "-n", "-1", "--nan", "skip",
                     "--memory-limit", "1.5G", "-y", "1", "-v", "3", "--fused-update", "1", "-nk", "2"};
    int ok = parse_run_flags(&rc, &oc, (int)(sizeof(argv1) / sizeof(argv1[0])), argv1);
    CHECK(ok && rc.B == 8 && rc.total_batch == 0 && rc.max_steps == 5 && rc.steps_given && oc.lr == 0.01f &&
          oc.weight_decay == 0.2f && rc.schedule == SCHED_WSD && rc.clip == 0.0f && rc.seed == 9223372036854775807ULL &&
          strcmp(rc.out_dir, "some/dir") == 0 && rc.ckpt_every == 0 && rc.nan_skip == 1 &&
          rc.memory_limit == (size_t)(1.5 * 1024 * 1024 * 1024) && rc.resume == 1 && rc.val_every == 3 &&
          rc.val_every_given && rc.fused_update == 1 && rc.keep_last == 2,
          "run flags from the table: -b 8 -d -1 (= 0) -x 5 -l -c -k wsd --clip 0 --seed 2^63-1 -o -n -1 (= 0) --nan skip "
          "--memory-limit 1.5G -y 1 -v 3 --fused-update 1 -nk 2");
    char *argv2[] = {"x", "-t", "64"};
    CHECK(!parse_run_flags(&rc, &oc, 3, argv2), "-t is not a run flag (it is the GPT-2 trainer's)");
    char *bad1[] = {"x", "-b", "0"}, *bad2[] = {"x", "-q", "2"}, *bad3[] = {"x", "--seed", "9223372036854775808"},
         *bad4[] = {"x", "-y", "2"}, *bad5[] = {"x", "-sl", "1"}, *bad6[] = {"x", "-l"};
    CHECK(flag_fails_with(bad1, 3, "-b") && flag_fails_with(bad2, 3, "flag -q must be in [0, 1], got 2") &&
          flag_fails_with(bad3, 3, "--seed") && flag_fails_with(bad4, 3, "flag -y takes 0 or 1, not '2'") &&
          flag_fails_with(bad5, 3, "flag -sl is llm.c's skipping updates whose loss is an outlier") &&
          flag_fails_with(bad6, 2, "flag -l needs a value"),
          "bad values fail with one line naming the flag: -b 0, -q 2, --seed 2^63, -y 2, -sl, -l without a value");

    // a table of one's own: each kind of value, and the help it prints
    static const FlagSpec specs[] = {
        FLAG_TEXT("heading:"),
        {"-n", "--number", "N", "an int", flag_int, offsetof(TestFlags, n), 0, -3, 7, 0, NULL},
        {NULL, "--big", "N", "a long\nover two lines", flag_long, offsetof(TestFlags, big), 0, 0, 1e12, 0, NULL},
        {"-f", NULL, "F", "a float in (0, 1]", flag_float, offsetof(TestFlags, f), 0, 0, 1, FLAG_LO_OPEN, "in (0, 1]"},
        {NULL, "--d", "F", "a double", flag_double, offsetof(TestFlags, d), 0, 0, 1, FLAG_HI_OPEN, NULL},
        {NULL, "--on", "0|1", "a switch", flag_01, offsetof(TestFlags, on), 0, 0, 0, 0, NULL},
        {NULL, "--name", "S", "a string", flag_string, offsetof(TestFlags, name), 0, 0, 0, 0, NULL},
        {"-h", "--help", NULL, "this help", flag_help, 0, 0, 0, 0, 0, NULL},
    };
    static const FlagTable table = FLAG_TABLE(specs);
    TestFlags t = {0};
    void *bases[] = {&t};
    char *argv3[] = {"x", "--number", "-3", "--big", "1000000000000", "-f", "1", "--d", "0.5", "--on", "1",
                     "--name", "abc", "--other"};
    int parsed = 0, i;
    for (i = 1; i < 13; i++) parsed += flags_parse_one(&table, bases, 14, argv3, &i);
    int other = flags_parse_one(&table, bases, 14, argv3, &(int){13});
    int help = flags_parse_one(&table, bases, 2, (char *[]){"x", "-h"}, &(int){1});
    CHECK(parsed == 6 && i == 13 && t.n == -3 && t.big == 1000000000000L && t.f == 1.0f && t.d == 0.5 && t.on == 1 &&
          strcmp(t.name, "abc") == 0 && other == 0 && help == FLAG_HELP && flags_find(&table, "--number") == &specs[1] &&
          flags_find(&table, "-n") == &specs[1] && flags_find(&table, "--nope") == NULL,
          "a table of each kind: the values, an unknown flag left alone, -h asks for the help");
    // the help, captured
    fflush(stdout);
    char path[] = "/tmp/test_run_help_XXXXXX";
    int fd = mkstemp(path), saved = dup(1);
    dup2(fd, 1);
    flags_print_help(&table);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    char help_text[1024] = {0};
    ssize_t got = pread(fd, help_text, sizeof(help_text) - 1, 0);
    (void)got;
    close(fd);
    remove(path);
    const char *want = "heading:\n"
                       "  -n, --number N         an int\n"
                       "      --big N            a long\n"
                       "                         over two lines\n"
                       "  -f F                   a float in (0, 1]\n"
                       "      --d F              a double\n"
                       "      --on 0|1           a switch\n"
                       "      --name S           a string\n"
                       "  -h, --help             this help\n";
    CHECK(strcmp(help_text, want) == 0, "the help lines: names padded to one column, later lines under the first");
}

int main(void) {
    test_flags();
    test_checked_sizes();
    test_schedules();
    test_clipping();
    test_checkpoints();
    test_jsonl_resume();
    test_gsnr_probe();
    if (failures) { printf("test_run: %d FAILED\n", failures); return 1; }
    printf("test_run: all passed\n");
    return 0;
}
