// The run machinery shared by train_gpt2 and train_vit; see run/run.h.
#include "run/run.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <stddef.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/utils.h"
#include "run/flags.h"

#ifndef GIT_COMMIT
#define GIT_COMMIT "unknown"
#endif

// ----------------------------------------------------------------------------
// flags

void run_config_defaults(RunConfig *rc) {
    memset(rc, 0, sizeof(*rc));
    rc->B = 4;
    rc->total_batch = 0;
    rc->grad_accum = 1;
    rc->ranks = 1;
    rc->max_steps = 100;
    rc->schedule = SCHED_COSINE;
    rc->warmup = 0;
    rc->final_frac = 0.1f; // nanoGPT: cosine down to lr/10
    rc->wsd_decay_frac = 0.2f;
    rc->clip = 1.0f;       // nanoGPT's default
    rc->val_every = 0;
    rc->ckpt_every = RUN_AT_END_ONLY;
    rc->keep_last = 0;
    rc->nan_skip = 0;
    rc->print_every = 0;
    rc->seed = 1337;
}

// a size: bytes, or a number with K, M, G or T (KiB ... TiB), e.g. 16G or 1.5G
static int memory_size_flag(const FlagSpec *f, void *dest, const char *flag, const char *v) {
    (void)f;
    flag_value_or_fail(flag, v);
    char *end;
    double x = strtod(v, &end), unit = 1.0;
    const char *units = "KMGT", *u = *end ? strchr(units, *end) : NULL;
    if (u) {
        for (const char *k = units; k <= u; k++) unit *= 1024.0;
        end++;
    }
    if (end == v || *end || !(x > 0.0) || x * unit >= 1e18)
        fail("flag %s takes a size such as 16G, 512M or a number of bytes, got '%s'", flag, v);
    *(size_t *)dest = (size_t)(x * unit);
    return 1;
}

// -d: llm.c's -1 is one micro-batch, no accumulation, as 0
static int total_batch_flag(const FlagSpec *f, void *dest, const char *flag, const char *v) {
    flag_long(f, dest, flag, v);
    if (*(long *)dest < 0) *(long *)dest = 0;
    return 1;
}

// -n: llm.c writes no checkpoint for any value <= 0
static int every_or_never_flag(const FlagSpec *f, void *dest, const char *flag, const char *v) {
    flag_long(f, dest, flag, v);
    if (*(long *)dest < 0) *(long *)dest = 0;
    return 1;
}

// -x and -v record that they were given (-x 0 with -v evaluates; the ViT's
// --epochs excludes -x); dest is the RunConfig
static int steps_flag(const FlagSpec *f, void *dest, const char *flag, const char *v) {
    RunConfig *rc = dest;
    rc->steps_given = 1;
    return flag_long(f, &rc->max_steps, flag, v);
}

static int val_every_flag(const FlagSpec *f, void *dest, const char *flag, const char *v) {
    RunConfig *rc = dest;
    rc->val_every_given = 1;
    return flag_long(f, &rc->val_every, flag, v);
}

static int schedule_flag(const FlagSpec *f, void *dest, const char *flag, const char *v) {
    (void)f;
    flag_value_or_fail(flag, v);
    ScheduleKind *k = dest;
    if (strcmp(v, "cosine") == 0) *k = SCHED_COSINE;
    else if (strcmp(v, "linear") == 0) *k = SCHED_LINEAR;
    else if (strcmp(v, "constant") == 0) *k = SCHED_CONSTANT;
    else if (strcmp(v, "wsd") == 0) *k = SCHED_WSD;
    else fail("flag %s: unknown schedule '%s' (cosine, linear, constant, wsd)", flag, v);
    return 1;
}

static int nan_flag(const FlagSpec *f, void *dest, const char *flag, const char *v) {
    (void)f;
    flag_value_or_fail(flag, v);
    if (strcmp(v, "stop") == 0) *(int *)dest = 0;
    else if (strcmp(v, "skip") == 0) *(int *)dest = 1;
    else fail("flag %s takes stop or skip, not '%s'", flag, v);
    return 1;
}

// -o DIR: leaves 64 bytes of room for the file names within it
static int out_dir_flag(const FlagSpec *f, void *dest, const char *flag, const char *v) {
    (void)f;
    flag_value_or_fail(flag, v);
    char *out = dest;
    size_t cap = sizeof(((RunConfig *)0)->out_dir);
    if (!v[0]) fail("flag %s needs a directory name, not an empty string", flag);
    if (strlen(v) >= cap - 64) fail("flag %s: path too long", flag);
    snprintf(out, cap, "%s", v);
    return 1;
}

static int snr_out_flag(const FlagSpec *f, void *dest, const char *flag, const char *v) {
    (void)f;
    flag_value_or_fail(flag, v);
    char *out = dest;
    size_t cap = sizeof(((RunConfig *)0)->snr_out);
    if (!v[0]) fail("flag %s needs a file name, not an empty string", flag);
    if (strlen(v) >= cap) fail("flag %s: path too long", flag);
    snprintf(out, cap, "%s", v);
    return 1;
}

// llm.c's GPU settings that leave the result of an fp32 run as it is:
// accepted, so that llm.c's command lines run, and said to do nothing here
static int llmc_gpu_setting_flag(const FlagSpec *f, void *dest, const char *flag, const char *v) {
    (void)dest;
    static const char *const what[][2] = {{"-f", "TF32 matmuls"}, {"-w", "an fp32 master copy of bf16 weights"},
                                          {"-ge", "GELU fusion in the GPU matmuls"},
                                          {"-r", "recomputation in the GPU backward pass"}};
    long long x = parse_int_flag_or_fail(flag_value_or_fail(flag, v), flag, (long long)f->lo, (long long)f->hi);
    for (size_t k = 0; k < sizeof(what) / sizeof(what[0]); k++)
        if (strcmp(flag, what[k][0]) == 0)
            printf("note: flag %s %lld (llm.c: %s) does nothing here: this CPU trainer computes in fp32 throughout\n",
                   flag, x, what[k][1]);
    return 1;
}

// llm.c flags whose behaviour this program does not have: refused by name,
// rather than as unknown or, worse, silently
static int llmc_refused_flag(const FlagSpec *f, void *dest, const char *flag, const char *v) {
    (void)dest;
    (void)v;
    fail("flag %s is llm.c's %s, which this program does not do (the README's flag table lists llm.c's flags)", flag,
         f->range);
    return 0;
}

#define RC(field) offsetof(RunConfig, field), 0
#define OC(field) offsetof(OptimConfig, field), 1
#define REFUSED(name, what) {name, NULL, NULL, NULL, llmc_refused_flag, 0, 0, 0, 0, 0, what}
#define GPU_SETTING(name) {name, NULL, NULL, NULL, llmc_gpu_setting_flag, 0, 0, 0, 2, 0, NULL}
static const FlagSpec run_flag_specs[] = {
    FLAG_TEXT("training flags (llm.c's letters and meanings; the README's flag table has llm.c's and nanoGPT's names):"),
    {"-b", "--batch", "N", "micro-batch size (default 4; train_vit 128)", flag_int, RC(B), 1, RUN_MAX_BATCH, 0, NULL},
    {"-d", "--total-batch", "N", "tokens (GPT-2) or images (ViT) per optimizer step; a multiple of\n"
     "the micro-batch, reached by gradient accumulation (0 or -1 = one micro-batch)",
     total_batch_flag, RC(total_batch), -1, RUN_MAX_TOTAL_BATCH, 0, NULL},
    {"-x", "--steps", "N", "optimizer steps (default 100; -1 = one epoch of the training data; 0 = no\n"
     "training: evaluate and sample only)", steps_flag, 0, 0, RUN_ONE_EPOCH, RUN_MAX_STEPS, 0, NULL},
    {"-l", "--lr", "F", "peak learning rate", flag_float, OC(lr), 0, INFINITY, 0, ">= 0"},
    {"-c", "--weight-decay", "F", "weight decay (matrices and embeddings only)", flag_float, OC(weight_decay), 0,
     INFINITY, 0, ">= 0"},
    {"-k", "--schedule", "S", "cosine (default) | linear | constant | wsd", schedule_flag, RC(schedule), 0, 0, 0, NULL},
    {"-u", "--warmup", "N", "linear warmup steps (the first step has lr/N, never 0)", flag_long, RC(warmup), 0,
     RUN_MAX_STEPS, 0, NULL},
    {"-q", "--final-frac", "F", "final lr as a fraction of the peak (cosine, linear, wsd; default 0.1)", flag_float,
     RC(final_frac), 0, 1, 0, "in [0, 1]"},
    {NULL, "--wsd-decay", "F", "fraction of the steps spent decaying in wsd (default 0.2)", flag_float,
     RC(wsd_decay_frac), 0, 1, 0, "in [0, 1]"},
    {NULL, "--clip", "F", "clip the global gradient norm to F (0 = off; default 1)", flag_float, RC(clip), 0,
     INFINITY, 0, ">= 0 (0 disables clipping)"},
    {NULL, "--seed", "N", "random seed (initialisation, data order, sampling; default 1337)", flag_u64, RC(seed), 0,
     INT64_MAX, 0, NULL},
    {NULL, "--nan", "stop|skip", "on a NaN/Inf loss or gradient: stop (default) or skip the step", nan_flag,
     RC(nan_skip), 0, 0, 0, NULL},
    {NULL, "--fused-update", "1", "update each parameter block during the backward pass, as soon as its\n"
     "gradient is complete, and keep no gradient buffer (the same result;\n"
     "--clip > 0 or --nan skip run the backward twice, first for the norm;\n"
     "not with gradient accumulation)", flag_01, RC(fused_update), 0, 0, 0, NULL},
    {NULL, "--profile", "1", "at the end, the CPU and wall time per step of each phase (GEMMs,\n"
     "attention, LayerNorm/GELU, loss, optimizer, norm, clears), steps after the first", flag_01, RC(profile), 0, 0,
     0, NULL},
    FLAG_TEXT("evaluation:"),
    {"-v", "--val-every", "N", "evaluate every N steps and at the end (0 = at the end only)", val_every_flag,
     0, 0, 0, RUN_MAX_STEPS, 0, NULL},
    FLAG_TEXT("output:"),
    {"-o", "--out", "DIR", "write DIR/log.jsonl and checkpoints to DIR", out_dir_flag, RC(out_dir), 0, 0, 0, NULL},
    {"-n", "--ckpt-every", "N", "checkpoint every N steps and at the end (0 = never; default: at the\n"
     "end only)", every_or_never_flag, RC(ckpt_every), -1, RUN_MAX_STEPS, 0, NULL},
    {"-nk", "--keep-last", "K", "keep only the newest K checkpoints (0 = all)", flag_int, RC(keep_last), 0,
     RUN_MAX_KEEP, 0, NULL},
    {"-nm", "--keep-major", "N", "never delete the checkpoints of steps that are multiples of N", flag_long,
     RC(keep_major), 0, RUN_MAX_STEPS, 0, NULL},
    {"-y", "--resume", "1", "continue from the newest complete checkpoint in DIR", flag_01, RC(resume), 0, 0, 0,
     NULL},
    {"-p", "--print-every", "N", "progress line every N steps (0 = about every 2 seconds)", flag_long,
     RC(print_every), 0, RUN_MAX_STEPS, 0, NULL},
    FLAG_TEXT("memory (the plan printed at start-up):"),
    {NULL, "--force-memory", "1", "run even when the plan does not fit in the memory available", flag_01,
     RC(force_memory), 0, 0, 0, NULL},
    {NULL, "--memory-limit", "S", "plan against S (e.g. 16G, 512M) instead of the memory available",
     memory_size_flag, RC(memory_limit), 0, 0, 0, NULL},
    {NULL, "--memory-plan-only", "1", "print the plan and stop (status 1 if it does not fit)", flag_01,
     RC(memory_plan_only), 0, 0, 0, NULL},
    FLAG_TEXT("SlimAdam rules from data (OPTIM=adamw):"),
    {NULL, "--snr-every", "N", "every N steps measure the SNR of AdamW's second moments along each\n"
     "candidate dimension, one line each in DIR/snr.jsonl; at the end write the\n"
     "SlimAdam rules and, beside them in <rules>_snr.json, the mean SNRs", flag_long, RC(snr_every), 0,
     RUN_MAX_STEPS, 0, NULL},
    {NULL, "--snr-out", "FILE", "where to write them (default DIR/slimadam_rules.json or slimadam_rules.json)",
     snr_out_flag, RC(snr_out), 0, 0, 0, NULL},
    FLAG_TEXT("g-SNR over training (SGD-SaI's analysis, any optimizer):"),
    {NULL, "--gsnr-every", "N", "at step 1 and every N steps write each block's g-SNR of the clipped\n"
     "gradient, ||g|| / (std + 1e-8), to DIR/gsnr.jsonl (needs -o; 0 = off)", flag_long, RC(gsnr_every), 0,
     RUN_MAX_STEPS, 0, NULL},
    FLAG_TEXT("llm.c's GPU settings -f, -w, -ge, -r are accepted and do nothing (fp32 on the CPU); its -sl, -sg,\n"
              "-a, -z, -lg and -p* are refused by name."),
    GPU_SETTING("-f"), GPU_SETTING("-w"), GPU_SETTING("-ge"), GPU_SETTING("-r"),
    REFUSED("-sl", "skipping updates whose loss is an outlier"),
    REFUSED("-sg", "skipping updates whose gradient norm is an outlier"),
    REFUSED("-a", "overfitting a single batch"), REFUSED("-z", "ZeRO sharding across GPUs"),
    REFUSED("-lg", "GPU logging"), REFUSED("-pn", "multi-process training"), REFUSED("-pr", "multi-process training"),
    REFUSED("-pg", "multi-process training"), REFUSED("-pi", "multi-process training"),
    REFUSED("-pf", "multi-process training"), REFUSED("-ps", "multi-process training"),
    REFUSED("-pm", "multi-process training"), REFUSED("-pp", "multi-process training"),
};
#undef RC
#undef OC
#undef REFUSED
#undef GPU_SETTING
static const FlagTable run_flags = FLAG_TABLE(run_flag_specs);

int run_parse_flag(RunConfig *rc, OptimConfig *oc, int argc, char **argv, int *i) {
    void *bases[2] = {rc, oc};
    if (flags_parse_one(&run_flags, bases, argc, argv, i)) return 1;
    // an optimizer hyperparameter (fails if it belongs to another optimizer)
    const char *a = argv[*i];
    if (strncmp(a, "--", 2) != 0 || !optim_parse_flag(oc, a, *i + 1 < argc ? argv[*i + 1] : NULL)) return 0;
    (*i)++;
    return 1;
}

int run_parse_args(const FlagTable *own, void *base, RunConfig *rc, OptimConfig *oc, int argc, char **argv,
                   const char *name, const char *help, const FlagTable *other, const char *other_name) {
    void *bases[] = {base};
    for (int i = 1; i < argc; i++) {
        int r = flags_parse_one(own, bases, argc, argv, &i);
        if (r == FLAG_HELP || r == FLAG_HELP_MARKDOWN) return r;
        if (r || run_parse_flag(rc, oc, argc, argv, &i)) continue;
        if (other && flags_find(other, argv[i]))
            fail("flag %s is for %s; %s does not take it (%s lists the flags)", argv[i], other_name, name, help);
        fail("unknown flag %s (%s lists the flags)", argv[i], help);
    }
    return 0;
}

void run_print_flags_help(void) {
    flags_print_help(&run_flags);
    optim_print_flags_help();
}

int run_flag_known(const char *flag) { return flags_find(&run_flags, flag) != NULL; }

void run_print_flags_markdown(void) {
    flags_print_markdown(&run_flags, "run");
    printf("<!-- begin flags optim -->\n| flag | meaning |\n|---|---|\n");
    const char *arg, *help;
    char names[64];
    for (int i = 0; optim_flag_name(i, &arg, &help); i++) {
        snprintf(names, sizeof(names), "%s %s", optim_flag_name(i, &arg, &help), arg);
        flags_print_markdown_row(names, help);
    }
    printf("\n<!-- end flags optim -->\n");
}

// what depends on the run's length (-x): the warmup is clamped to it, and
// --snr-every must measure at least once
static void check_run_length(RunConfig *rc) {
    if (rc->warmup > rc->max_steps) rc->warmup = rc->max_steps;
    if (rc->snr_every > 0 && rc->max_steps / rc->snr_every == 0)
        fail("flag --snr-every %ld: a run of %ld steps makes no measurement, so there would be no rules to write",
             rc->snr_every, rc->max_steps);
}

void run_set_epoch_steps(RunConfig *rc, long micro_batches_per_epoch, const char *data) {
    if (rc->max_steps != RUN_ONE_EPOCH) return;
    rc->max_steps = micro_batches_per_epoch / ((long)rc->grad_accum * rc->ranks);
    if (rc->max_steps < 1)
        fail("flag -x -1: one epoch of %s is %ld micro-batches, less than one step of %ld", data,
             micro_batches_per_epoch, (long)rc->grad_accum * rc->ranks);
    printf("run: -x -1 is one epoch of %s: %ld steps\n", data, rc->max_steps);
    check_run_length(rc);
}

int run_every_active(long every) {
    return every > 0 || every == RUN_AT_END_ONLY;
}

void run_finalize_config(RunConfig *rc, const OptimConfig *oc, long items_per_micro, const char *unit) {
    if (rc->total_batch == 0) rc->total_batch = items_per_micro;
    if (rc->total_batch % items_per_micro != 0)
        fail("flag -d: total batch %ld %s is not a multiple of the micro-batch's %ld %s", rc->total_batch, unit,
             items_per_micro, unit);
    if (rc->total_batch / items_per_micro > RUN_MAX_ACCUM)
        fail("flag -d: total batch %ld %s is %ld micro-batches of %ld %s; at most %d accumulation steps are allowed",
             rc->total_batch, unit, rc->total_batch / items_per_micro, items_per_micro, unit, RUN_MAX_ACCUM);
    rc->grad_accum = (int)(rc->total_batch / items_per_micro);
    if (rc->fused_update) {
        // what needs the whole gradient of a step before its first update
        if (rc->grad_accum > 1)
            fail("flag --fused-update 1 updates each block during the backward pass, so it cannot accumulate "
                 "gradients over micro-batches (-d %ld is %d micro-batches of %ld %s): use -d 0 or a larger micro-batch",
                 rc->total_batch, rc->grad_accum, items_per_micro, unit);
        if (rc->gsnr_every > 0)
            fail("flag --gsnr-every reads the whole gradient after each step, which --fused-update 1 never holds");
        const char *why = optim_fused_unsupported(oc);
        if (why) fail("flag --fused-update 1 does not work with %s: %s", OPTIM_NAME, why);
    }
    if (rc->resume && !rc->out_dir[0]) fail("flag -y 1 needs -o DIR (the directory holding the checkpoints)");
    if (rc->snr_every > 0 && strcmp(OPTIM_NAME, "adamw") != 0)
        fail("flag --snr-every measures AdamW's second moments: build with OPTIM=adamw (this is %s)", OPTIM_NAME);
    if (rc->gsnr_every > 0 && !rc->out_dir[0]) fail("flag --gsnr-every writes DIR/gsnr.jsonl: it needs -o DIR");
    if (rc->max_steps != RUN_ONE_EPOCH) check_run_length(rc);
    if (rc->snr_every > 0 && !rc->snr_out[0]) {
        rc->snr_out_default = 1;
        // out_dir leaves 64 bytes of room (see -o), enough for the file name
        size_t n = strlen(rc->out_dir);
        memcpy(rc->snr_out, rc->out_dir, n);
        if (n) rc->snr_out[n++] = '/';
        memcpy(rc->snr_out + n, "slimadam_rules.json", sizeof("slimadam_rules.json"));
    }
}

void run_refuse_data_parallel_gaps(const RunConfig *rc, const OptimConfig *oc, int training) {
    if (rc->ranks <= 1) return;
    // each would need its own exchange
    if (!training) fail("flag -x 0 evaluates in one process: run it without mpirun");
    if (rc->fused_update)
        fail("flag --fused-update 1 does not work with mpirun -np %d (the gradient must be reduced first)", rc->ranks);
    if (rc->snr_every > 0 || rc->gsnr_every > 0)
        fail("flags --snr-every and --gsnr-every do not work with mpirun -np %d: run the measurement in one process",
             rc->ranks);
    if ((OPTIM_HPARAMS & HP_GSNR) && oc->gsnr_max_norm)
        fail("flag --gsnr-max-norm 1 divides by the largest g-SNR of all blocks, which ZeRO-1 spreads over the "
             "ranks: it does not work with mpirun -np %d", rc->ranks);
}

int run_fused_measures(const RunConfig *rc) {
    return rc->clip > 0.0f || rc->nan_skip;
}

// ----------------------------------------------------------------------------
// the learning-rate schedule (llm.c's flags; step is 0-based)

float lr_at_step(const RunConfig *rc, float peak_lr, long step) {
    double lr = peak_lr, lr_min = peak_lr * (double)rc->final_frac;
    long N = rc->max_steps, W = rc->warmup;
    if (step < W) return (float)(lr * (double)(step + 1) / (double)W); // never 0 at the first step
    double r = (double)(step - W) / (double)(N - W > 1 ? N - W : 1);
    switch (rc->schedule) {
    case SCHED_COSINE: return (float)(lr_min + 0.5 * (1.0 + cos(M_PI * r)) * (lr - lr_min));
    case SCHED_LINEAR: return (float)(lr - (lr - lr_min) * r);
    case SCHED_CONSTANT: return (float)lr;
    case SCHED_WSD: {
        // warmup, stable, then linear decay to lr_min over the last D steps
        long D = lround(rc->wsd_decay_frac * (double)N);
        if (D <= 0 || step < N - D) return (float)lr;
        return (float)(lr - (lr - lr_min) * (double)(step - (N - D) + 1) / (double)D);
    }
    }
    return (float)lr;
}

const char *schedule_name(ScheduleKind k) {
    static const char *names[] = {"cosine", "linear", "constant", "wsd"};
    return names[k];
}

// ----------------------------------------------------------------------------
// gradient clipping

float clip_grad_norm(float *grads, const ParamBlock *blocks, int num_blocks, float clip) {
    // each block's sum in a fixed order (block_sum_of_squares), then the blocks in order
    double total = 0.0;
    for (int b = 0; b < num_blocks; b++) total += block_sum_of_squares(grads + blocks[b].offset, &blocks[b]);
    float norm = (float)sqrt(total);
    float coef = clip_coef(norm, clip);
    if (coef < 1.0f)
        for (int b = 0; b < num_blocks; b++) scale_floats(grads + blocks[b].offset, block_numel(&blocks[b]), coef);
    return norm;
}

// ----------------------------------------------------------------------------
// the log

long run_jsonl_open(RunLog *log, const char *path, long resume_step) {
    if (strlen(path) >= sizeof(log->path)) fail("path too long: %s", path);
    snprintf(log->path, sizeof(log->path), "%s", path);
    long kept = 0;
    if (resume_step >= 0 && file_exists(log->path)) {
        // keep what the run logged up to the checkpoint; drop what came after
        // it (those steps are about to be run again)
        FILE *in = fopen_or_fail(log->path, "rb");
        AtomicFile af;
        atomic_open(&af, log->path);
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while ((len = getline(&line, &cap, in)) > 0) {
            cJSON *rec = cJSON_Parse(line);
            if (!rec) continue; // a torn last line from a crash
            const cJSON *step = cJSON_GetObjectItemCaseSensitive(rec, "step");
            int keep = !cJSON_IsNumber(step) || step->valuedouble <= (double)resume_step;
            cJSON_Delete(rec);
            if (!keep) continue;
            fwrite_or_fail(line, 1, (size_t)len, af.f, af.tmp_path);
            // a crash between a record and its newline: end the line, so the
            // next record does not join it
            if (line[len - 1] != '\n') fwrite_or_fail("\n", 1, 1, af.f, af.tmp_path);
            kept++;
        }
        free(line);
        fclose(in);
        atomic_commit(&af);
        log->f = fopen_or_fail(log->path, "ab");
    } else {
        log->f = fopen_or_fail(log->path, "wb");
    }
    return kept;
}

void run_log_open(RunLog *log, const char *dir, long resume_step) {
    char path[sizeof(log->path)];
    snprintf(path, sizeof(path), "%s/log.jsonl", dir);
    run_jsonl_open(log, path, resume_step);
}

void run_log_write(RunLog *log, cJSON *obj) {
    if (!log->f) { cJSON_Delete(obj); return; }
    char *text = cJSON_PrintUnformatted(obj);
    if (!text) fail("out of memory formatting a log record");
    if (fprintf(log->f, "%s\n", text) < 0 || fflush(log->f) != 0)
        fail("writing %s: %s", log->path, strerror(errno));
    free(text);
    cJSON_Delete(obj);
}

void run_log_close(RunLog *log) {
    if (log->f) fclose_or_fail(log->f, log->path);
    log->f = NULL;
}

cJSON *run_config_json(const RunConfig *rc, const OptimConfig *oc, const char *model_name, int argc, char **argv) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "config");
    cJSON_AddStringToObject(o, "model", model_name);
    cJSON_AddStringToObject(o, "git_commit", GIT_COMMIT);
    cJSON_AddNumberToObject(o, "threads", omp_get_max_threads()); // results are bitwise per thread count
    cJSON *args = cJSON_AddArrayToObject(o, "argv");
    for (int i = 0; i < argc; i++) cJSON_AddItemToArray(args, cJSON_CreateString(argv[i]));
    cJSON *opt = cJSON_AddObjectToObject(o, "optimizer");
    cJSON_AddStringToObject(opt, "name", OPTIM_NAME);
    cJSON_AddNumberToObject(opt, "lr", oc->lr);
    cJSON_AddNumberToObject(opt, "weight_decay", oc->weight_decay);
    if (OPTIM_HPARAMS & HP_BETAS) { cJSON_AddNumberToObject(opt, "beta1", oc->beta1); cJSON_AddNumberToObject(opt, "beta2", oc->beta2); }
    if (OPTIM_HPARAMS & HP_EPS) cJSON_AddNumberToObject(opt, "eps", oc->eps);
    if (OPTIM_HPARAMS & HP_MOMENTUM) cJSON_AddNumberToObject(opt, "momentum", oc->momentum);
    if (OPTIM_HPARAMS & HP_NESTEROV) cJSON_AddBoolToObject(opt, "nesterov", oc->nesterov);
    if (OPTIM_HPARAMS & HP_GSNR) {
        cJSON_AddStringToObject(opt, "gsnr", oc->gsnr_mode == GSNR_RATIO ? "ratio" : "sqrtn");
        cJSON_AddBoolToObject(opt, "gsnr_max_norm", oc->gsnr_max_norm);
    }
    if (OPTIM_HPARAMS & HP_SINKGD) {
        cJSON_AddNumberToObject(opt, "sinkgd_iters", oc->sinkgd_iters);
        cJSON_AddNumberToObject(opt, "sinkgd_scale", oc->sinkgd_scale);
    }
    if (OPTIM_HPARAMS & HP_SLIMADAM_RULES) cJSON_AddStringToObject(opt, "slimadam_rules", oc->slimadam_rules);
    cJSON *run = cJSON_AddObjectToObject(o, "run");
    cJSON_AddNumberToObject(run, "micro_batch", rc->B);
    cJSON_AddNumberToObject(run, "total_batch", (double)rc->total_batch);
    cJSON_AddNumberToObject(run, "grad_accum", rc->grad_accum);
    cJSON_AddNumberToObject(run, "ranks", rc->ranks);
    cJSON_AddNumberToObject(run, "steps", (double)rc->max_steps);
    cJSON_AddStringToObject(run, "schedule", schedule_name(rc->schedule));
    cJSON_AddNumberToObject(run, "warmup", (double)rc->warmup);
    cJSON_AddNumberToObject(run, "final_frac", rc->final_frac);
    if (rc->schedule == SCHED_WSD) cJSON_AddNumberToObject(run, "wsd_decay", rc->wsd_decay_frac);
    cJSON_AddNumberToObject(run, "clip", rc->clip);
    cJSON_AddBoolToObject(run, "fused_update", rc->fused_update);
    cJSON_AddNumberToObject(run, "seed", (double)rc->seed);
    cJSON_AddStringToObject(run, "nan", rc->nan_skip ? "skip" : "stop");
    cJSON_AddNumberToObject(run, "val_every", (double)rc->val_every);
    return o;
}

void run_config_add_model(cJSON *config, const char *precision, const char *name, const char *const *keys,
                          const double *values, int n, const char *init) {
    cJSON_AddStringToObject(config, "precision", precision);
    cJSON *m = cJSON_AddObjectToObject(config, name);
    for (int i = 0; i < n; i++) cJSON_AddNumberToObject(m, keys[i], values[i]);
    cJSON_AddStringToObject(config, "init", init);
}

// ----------------------------------------------------------------------------
// the progress line

void progress_start(Progress *p, long first_step, double elapsed_before) {
    p->start_time = now_seconds();
    p->elapsed_before = elapsed_before;
    p->first_step = first_step;
    p->last_print = -1e9;
}

double progress_elapsed(const Progress *p) {
    return p->elapsed_before + (now_seconds() - p->start_time);
}

static const char *format_duration(double s, char *buf, size_t len) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
    return buf;
}

void progress_print(Progress *p, const RunConfig *rc, long step, float loss, float val, const char *val_name,
                    float lr, float norm, double step_ms, double cpu_ms, double items_per_s, const char *unit,
                    int force) {
    double now = now_seconds();
    int due = rc->print_every > 0 ? (step % rc->print_every == 0) : (now - p->last_print >= 2.0);
    if (!(force || due || step == 1 || step == rc->max_steps)) return;
    p->last_print = now;
    double mine = now - p->start_time;
    long done = step - p->first_step;
    double eta = done > 0 ? mine / done * (double)(rc->max_steps - step) : 0.0;
    char e[32], r[32], vbuf[48] = "";
    if (val >= 0.0f) snprintf(vbuf, sizeof(vbuf), " | %s %.4f", val_name, val);
    double rate = items_per_s;
    const char *k = "";
    if (rate >= 1e6) { rate /= 1e6; k = "M"; } else if (rate >= 1e4) { rate /= 1e3; k = "k"; }
    printf("step %*ld/%ld | loss %.4f%s | lr %.2e | norm %.3f | %.0f ms | cpu %.0f ms | %.1f%s %s/s | %s elapsed | ETA %s\n",
           (int)snprintf(NULL, 0, "%ld", rc->max_steps), step, rc->max_steps, loss, vbuf, lr, norm, step_ms, cpu_ms,
           rate, k, unit, format_duration(progress_elapsed(p), e, sizeof(e)), format_duration(eta, r, sizeof(r)));
    fflush(stdout);
}

// ----------------------------------------------------------------------------
// checkpoints
//
// The run only ever deletes or replaces files with exactly the names it
// writes: model_<step>.bin, optim_<step>.bin, state_<step>.json (step as
// %08ld) and the same with ".tmp". Anything else in the folder is left alone,
// and model/optim files without a state file (an incomplete checkpoint, or
// another program's, such as llm.c's model_00000003.bin) are never deleted:
// only the state file shows that a checkpoint is this run's.

void ckpt_path(char *out, size_t len, const char *dir, const char *kind, long step, const char *ext) {
    snprintf(out, len, "%s/%s_%08ld.%s", dir, kind, step, ext);
}

// the files of a checkpoint, in the order they are written
static const char *const ckpt_kinds[3][2] = {{"model", "bin"}, {"optim", "bin"}, {"state", "json"}};
enum { CKPT_MODEL, CKPT_OPTIM, CKPT_STATE };

// Is name exactly one of the checkpoint names (or its ".tmp")? Returns the
// kind (CKPT_*) and sets *step and *tmp; -1 for any other name.
static int ckpt_parse_name(const char *name, long *step, int *tmp) {
    for (int k = 0; k < 3; k++) {
        size_t kl = strlen(ckpt_kinds[k][0]);
        if (strncmp(name, ckpt_kinds[k][0], kl) != 0 || name[kl] != '_') continue;
        const char *digits = name + kl + 1;
        if (*digits < '0' || *digits > '9') return -1;
        errno = 0;
        char *end;
        long s = strtol(digits, &end, 10);
        if (errno != 0) return -1;
        char want[96];
        snprintf(want, sizeof(want), "%s_%08ld.%s", ckpt_kinds[k][0], s, ckpt_kinds[k][1]);
        *step = s;
        if (strcmp(name, want) == 0) { *tmp = 0; return k; }
        size_t wl = strlen(want);
        if (strncmp(name, want, wl) == 0 && strcmp(name + wl, ".tmp") == 0) { *tmp = 1; return k; }
        return -1;
    }
    return -1;
}

// steps of the complete checkpoints (state files) in dir, ascending; returns the count
static int list_checkpoints(const char *dir, long **steps_out) {
    DIR *d = opendir(dir);
    int n = 0, cap = 16;
    long *steps = malloc_or_fail(cap * sizeof(long), "checkpoint list");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            long s;
            int tmp;
            if (ckpt_parse_name(e->d_name, &s, &tmp) != CKPT_STATE || tmp) continue;
            if (n == cap) { cap *= 2; steps = realloc(steps, cap * sizeof(long)); if (!steps) fail("out of memory"); }
            steps[n++] = s;
        }
        closedir(d);
    }
    for (int i = 1; i < n; i++) // insertion sort: a handful of entries
        for (int j = i; j > 0 && steps[j - 1] > steps[j]; j--) { long t = steps[j]; steps[j] = steps[j - 1]; steps[j - 1] = t; }
    *steps_out = steps;
    return n;
}

long ckpt_latest(const char *dir) {
    long *steps;
    int n = list_checkpoints(dir, &steps);
    long latest = n > 0 ? steps[n - 1] : -1;
    free(steps);
    return latest;
}

// a complete checkpoint: its model and optimizer files, then the state file
// that made it complete (so a crash in between leaves no orphan behind a state)
static void remove_checkpoint_files(const char *dir, long step) {
    char path[700];
    for (int k = 0; k < 3; k++) {
        ckpt_path(path, sizeof(path), dir, ckpt_kinds[k][0], step, ckpt_kinds[k][1]);
        remove(path);
    }
}

// the temporary files of checkpoint writes a crash interrupted
static void remove_checkpoint_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[700];
    while ((e = readdir(d)) != NULL) {
        long s;
        int tmp;
        if (ckpt_parse_name(e->d_name, &s, &tmp) < 0 || !tmp) continue;
        if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) < (int)sizeof(path)) remove(path);
    }
    closedir(d);
}

void ckpt_commit(const char *dir, long step, cJSON *state, int keep_last, long keep_major) {
    char path[700];
    ckpt_path(path, sizeof(path), dir, "state", step, "json");
    json_write_file_atomic(state, path);
    cJSON_Delete(state);
    // prune: complete checkpoints beyond keep_last, and temporary files of
    // interrupted writes
    long *steps;
    int n = list_checkpoints(dir, &steps);
    if (keep_last > 0)
        for (int i = 0; i < n - keep_last; i++)
            if (keep_major <= 0 || steps[i] % keep_major != 0) remove_checkpoint_files(dir, steps[i]);
    free(steps);
    remove_checkpoint_temporaries(dir);
}

cJSON *ckpt_read_state(const char *dir, long step) {
    char path[700];
    ckpt_path(path, sizeof(path), dir, "state", step, "json");
    cJSON *state = json_read_file_or_fail(path);
    if (!cJSON_IsObject(state)) fail("%s: malformed checkpoint state (not a JSON object)", path);
    return state;
}

void ensure_output_dir(const char *dir) {
    // mkdir -p: create the missing parents too
    char partial[512];
    size_t len = strlen(dir);
    if (len >= sizeof(partial)) fail("output directory path too long: %s", dir);
    for (size_t i = 1; i <= len; i++) {
        if (dir[i] != '/' && dir[i] != '\0') continue;
        memcpy(partial, dir, i);
        partial[i] = '\0';
        if (mkdir(partial, 0755) != 0 && errno != EEXIST)
            fail("cannot create output directory %s: %s", partial, strerror(errno));
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) fail("output path %s is not a directory", dir);
    if (access(dir, W_OK) != 0) fail("output directory %s is not writable: %s", dir, strerror(errno));
    // a real write, so that a full disk is reported now rather than at the
    // first checkpoint; to a new file of a unique name (mkstemp), so that no
    // file of the folder is touched
    char probe[700];
    snprintf(probe, sizeof(probe), "%s/.write-probe-XXXXXX", dir);
    int fd = mkstemp(probe);
    if (fd < 0) fail("cannot write in output directory %s: %s", dir, strerror(errno));
    char block[4096] = {0};
    if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block) || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        remove(probe);
        fail("cannot write in output directory %s: %s", dir, strerror(e ? e : ENOSPC));
    }
    close(fd);
    remove(probe);
}

// DIR/.lock, locked (flock) for as long as the process lives: a second run on
// the same folder is refused. The file is created if missing and never removed
// (removing a lock file races with the next run taking it).
static void lock_output_dir(const char *dir) {
    char path[700];
    snprintf(path, sizeof(path), "%s/.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0644);
    if (fd < 0) fail("cannot open the lock file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) fail("%s is not a regular file", path);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            fail("%s is in use by another run (it holds the lock on %s): wait for that run to end, or choose "
                 "another -o DIR", dir, path);
        fail("cannot lock %s: %s", path, strerror(errno));
    }
    // fd stays open (and locked) until exit
}

void json_add_u64(cJSON *obj, const char *key, uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
    cJSON_AddStringToObject(obj, key, buf);
}

uint64_t json_get_u64(const cJSON *obj, const char *key, const char *file) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(it)) fail("%s: missing or invalid \"%s\"", file, key);
    char *end;
    errno = 0;
    unsigned long long v = strtoull(it->valuestring, &end, 10);
    if (errno || *end || it->valuestring[0] < '0' || it->valuestring[0] > '9')
        fail("%s: \"%s\" is not an unsigned integer", file, key);
    return (uint64_t)v;
}

double json_get_number(const cJSON *obj, const char *key, const char *file) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(it)) fail("%s: missing or invalid \"%s\"", file, key);
    return it->valuedouble;
}

// ----------------------------------------------------------------------------
// the run as the training loops see it

// Is the first line of path a config record, as the trainers write first?
static int is_our_log(const char *path) {
    FILE *f = fopen_or_fail(path, "rb");
    char *line = NULL;
    size_t cap = 0;
    int ours = 0;
    if (getline(&line, &cap, f) > 0) {
        cJSON *rec = cJSON_Parse(line);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(rec, "type");
        ours = cJSON_IsString(type) && strcmp(type->valuestring, "config") == 0;
        cJSON_Delete(rec);
    }
    free(line);
    fclose(f);
    return ours;
}

// the JSON-lines files this run starts (or continues) in DIR
static int run_writes_jsonl(const RunConfig *rc, const char *name) {
    if (strcmp(name, "snr.jsonl") == 0) return rc->snr_every > 0;
    if (strcmp(name, "gsnr.jsonl") == 0) return rc->gsnr_every > 0;
    return 1;
}
static const char *const run_jsonl_names[] = {"log.jsonl", "snr.jsonl", "gsnr.jsonl"};
#define NUM_RUN_JSONL ((int)(sizeof(run_jsonl_names) / sizeof(run_jsonl_names[0])))

// The folder of a new run (no -y 1) must not hold what the run would write
// over: another run's checkpoints or logs, a file with a checkpoint's name,
// the default SlimAdam rules file.
static void check_new_run_dir(const RunConfig *rc) {
    const char *dir = rc->out_dir;
    long earlier = ckpt_latest(dir);
    if (earlier >= 0)
        fail("%s holds an earlier run's checkpoints (newest: step %ld): continue it with -y 1, "
             "or choose another -o DIR", dir, earlier);
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            long s;
            int tmp;
            if (ckpt_parse_name(e->d_name, &s, &tmp) < 0 || tmp) continue;
            char name[256];
            snprintf(name, sizeof(name), "%s", e->d_name);
            closedir(d);
            fail("%s/%s exists, and this run writes its checkpoints under such names: choose another -o DIR",
                 dir, name);
        }
        closedir(d);
    }
    char path[700];
    for (int i = 0; i < NUM_RUN_JSONL; i++) {
        if (!run_writes_jsonl(rc, run_jsonl_names[i])) continue;
        snprintf(path, sizeof(path), "%s/%s", dir, run_jsonl_names[i]);
        if (file_exists(path))
            fail("%s holds another run's log: continue that run with -y 1, or choose another -o DIR", path);
    }
    if (rc->snr_every > 0 && rc->snr_out_default && file_exists(rc->snr_out))
        fail("%s holds another run's SlimAdam rules: continue that run with -y 1, or choose another -o DIR", rc->snr_out);
}

// The SlimAdam rules are written at the end of the run: make sure before it
// starts that they can be, with a file of a unique name beside them (created
// and removed; the rules file itself is not touched).
static void probe_rules_path(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) fail("flag --snr-out: %s is not a regular file", path);
    char probe[sizeof(((RunConfig *)0)->snr_out) + 32];
    const char *slash = strrchr(path, '/');
    if (slash) snprintf(probe, sizeof(probe), "%.*s/.rules-probe-XXXXXX", (int)(slash - path), path);
    else snprintf(probe, sizeof(probe), ".rules-probe-XXXXXX");
    int fd = mkstemp(probe);
    if (fd < 0) fail("flag --snr-out: cannot write the SlimAdam rules to %s: %s", path, strerror(errno));
    close(fd);
    remove(probe);
}

// llm.c's checkpoint folder (train_gpt2.cu -o): model_<step>.bin (the same
// name as ours), state_<step>_<rank>.bin, the marker DONE_<step> written last,
// and main.log. Is name one of llm.c's own names (not the model, which is
// shared)? Sets *done_step for a DONE_ marker, else -1.
static int is_llmc_name(const char *name, long *done_step) {
    *done_step = -1;
    size_t n = strlen(name);
    if (strcmp(name, "main.log") == 0) return 1;
    if (strncmp(name, "DONE_", 5) == 0 && n > 5 && strspn(name + 5, "0123456789") == n - 5) {
        *done_step = n - 5 < 18 ? strtol(name + 5, NULL, 10) : LONG_MAX;
        return 1;
    }
    // state_%08d_%05d.bin
    return n == strlen("state_00000000_00000.bin") && strncmp(name, "state_", 6) == 0 &&
           strspn(name + 6, "0123456789") == 8 && name[14] == '_' && strspn(name + 15, "0123456789") == 5 &&
           strcmp(name + 20, ".bin") == 0;
}

// This program neither resumes llm.c's checkpoints nor writes over them (both
// name their models model_<step>.bin): a folder holding any of llm.c's files
// is refused, for new runs and -y 1 alike, before anything is written in it.
// llm.c's model is still a valid -e for a new run in another folder.
static void refuse_llmc_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return; // not there yet: nothing of llm.c's
    struct dirent *e;
    long newest = -1;
    char first[256] = "";
    while ((e = readdir(d)) != NULL) {
        long s;
        if (!is_llmc_name(e->d_name, &s)) continue;
        if (s > newest) newest = s;
        if (!first[0] || strcmp(e->d_name, first) < 0) snprintf(first, sizeof(first), "%s", e->d_name);
    }
    closedir(d);
    if (!first[0]) return;
    if (newest >= 0)
        fail("%s holds llm.c's checkpoints (DONE_%08ld: step %ld), which this program neither resumes nor writes over: "
             "start from its weights with -e %s/model_%08ld.bin and another -o DIR", dir, newest, newest, dir, newest);
    fail("%s holds llm.c's files (%s), which this program neither resumes nor writes over: choose another -o DIR",
         dir, first);
}

// -y 1 writes over a model_/optim_ file without a state file: the remains of a
// checkpoint of ours that a crash interrupted. Such remains come with our log
// (written before the first checkpoint); without it the file is someone
// else's, and the run is refused.
static void refuse_foreign_orphans(const char *dir, int have_our_log) {
    if (have_our_log) return;
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char name[256] = "";
    while ((e = readdir(d)) != NULL) {
        long s;
        int tmp, k = ckpt_parse_name(e->d_name, &s, &tmp);
        if (k < 0 || k == CKPT_STATE || tmp) continue;
        char state[700];
        ckpt_path(state, sizeof(state), dir, "state", s, "json");
        if (file_exists(state)) continue;
        if (!name[0] || strcmp(e->d_name, name) < 0) snprintf(name, sizeof(name), "%s", e->d_name);
    }
    closedir(d);
    if (name[0])
        fail("%s/%s was not written by this program (no state file of its step, no log.jsonl of ours beside it), and "
             "-y 1 could write over it: choose another -o DIR", dir, name);
}

void run_resume_check_state(Run *run, const cJSON *state, long step) {
    const RunConfig *rc = run->rc;
    const char *sp = run->state_path;
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(state, "optimizer");
    if (!cJSON_IsString(o) || strcmp(o->valuestring, OPTIM_NAME) != 0)
        fail("%s: the checkpoint was made with OPTIM=%s, this program with OPTIM=%s", sp,
             cJSON_IsString(o) ? o->valuestring : "?", OPTIM_NAME);
    if (json_get_number(state, "step", sp) != (double)step)
        fail("%s: its \"step\" is %g, but the file name says %ld", sp, json_get_number(state, "step", sp), step);
    if (json_get_number(state, "micro_batch", sp) != rc->B ||
        json_get_number(state, "grad_accum", sp) != (double)rc->grad_accum * rc->ranks)
        fail("%s: the checkpoint was made with other -b/-d flags; resume with the same ones", sp);
    double skipped = json_get_number(state, "nan_skipped", sp);
    if (!(skipped >= 0 && skipped <= (double)step && skipped == floor(skipped)))
        fail("%s: \"nan_skipped\" is %g, not a count of steps in [0, %ld]", sp, skipped, step);
    double elapsed = json_get_number(state, "elapsed_s", sp);
    if (!(elapsed >= 0 && elapsed < 1e12)) fail("%s: \"elapsed_s\" is %g, not a time in seconds", sp, elapsed);
    run->start_step = step;
    run->log_keep_step = step;
    run->nan_skipped = (long)skipped;
}

cJSON *run_resume_begin(Run *run, const RunConfig *rc) {
    memset(run, 0, sizeof(*run));
    run->rc = rc;
    run->last_eval = -1.0f;
    run->log_keep_step = -1;
    char path[700];
    if (rc->follower) {
        // rank 0 made and checked the folder; the others only read the checkpoint
        if (!rc->out_dir[0] || !rc->resume) return NULL;
        long step = ckpt_latest(rc->out_dir);
        if (step < 0) return NULL;
        cJSON *state = ckpt_read_state(rc->out_dir, step);
        ckpt_path(run->state_path, sizeof(run->state_path), rc->out_dir, "state", step, "json");
        run->start_step = step;
        run->log_keep_step = step;
        run->nan_skipped = (long)json_get_number(state, "nan_skipped", run->state_path);
        return state;
    }
    if (rc->out_dir[0]) {
        refuse_llmc_dir(rc->out_dir);
        // the folder: created, writable, ours alone (the lock), without the
        // temporary files a crash of ours left
        ensure_output_dir(rc->out_dir);
        lock_output_dir(rc->out_dir);
        remove_checkpoint_temporaries(rc->out_dir);
        for (int i = 0; i < NUM_RUN_JSONL; i++) {
            snprintf(path, sizeof(path), "%s/%s.tmp", rc->out_dir, run_jsonl_names[i]);
            remove(path);
        }
    }
    if (rc->snr_every > 0) probe_rules_path(rc->snr_out); // by default in DIR, which now exists
    if (!rc->out_dir[0]) return NULL;
    if (!rc->resume) {
        // a new run must not mix its checkpoints with an earlier run's (a later
        // -y 1 would pick the newest of either) nor write over its files
        check_new_run_dir(rc);
        return NULL;
    }
    long step = ckpt_latest(rc->out_dir);
    snprintf(path, sizeof(path), "%s/log.jsonl", rc->out_dir);
    int have_log = file_exists(path);
    if (have_log && !is_our_log(path))
        fail("%s was not written by this program (its first line is not a config record): choose another -o DIR",
             path);
    refuse_foreign_orphans(rc->out_dir, have_log);
    if (step < 0) {
        // a run that stopped before its first checkpoint: its log is kept up to
        // the steps it is about to run again, as on any resume
        run->log_keep_step = 0;
        printf("resume: no complete checkpoint in %s, starting from scratch\n", rc->out_dir);
        return NULL;
    }
    cJSON *state = ckpt_read_state(rc->out_dir, step);
    ckpt_path(run->state_path, sizeof(run->state_path), rc->out_dir, "state", step, "json");
    run_resume_check_state(run, state, step);
    return state;
}

void run_resume_optimizer(const Run *run, Optimizer *opt, const char *path) {
    optim_load(opt, path);
    run_check_optimizer_step(run, opt, path);
}

void run_check_optimizer_step(const Run *run, const Optimizer *opt, const char *path) {
    // the optimizer steps once per step that was not skipped
    int64_t want = run->start_step - run->nan_skipped, got = optim_base_const(opt)->step;
    if (got != want)
        fail("%s: the optimizer state is at step %lld, but checkpoint %s is at step %ld (%lld steps taken, %ld "
             "skipped)", path, (long long)got, run->state_path, run->start_step, (long long)want, run->nan_skipped);
}

void run_checkpoint_paths(const Run *run, long step, char *model_path, char *optim_path, size_t len) {
    ckpt_path(model_path, len, run->rc->out_dir, "model", step, "bin");
    ckpt_path(optim_path, len, run->rc->out_dir, "optim", step, "bin");
}

void run_checkpoint_begin(const Run *run, long step, char *model_path, char *optim_path, size_t len) {
    run_checkpoint_paths(run, step, model_path, optim_path, len);
    // until the state file completes it, a failure removes what this
    // checkpoint wrote; rewriting a complete checkpoint (the last good state
    // before a NaN) keeps its files, which hold the same step either way
    char state[700];
    ckpt_path(state, sizeof(state), run->rc->out_dir, "state", step, "json");
    if (file_exists(state)) return;
    fail_cleanup_add(model_path);
    fail_cleanup_add(optim_path);
}

void run_open(Run *run, cJSON *config_record, const char *unit, const char *eval_name, size_t optim_state_bytes,
              double elapsed_before) {
    run->unit = unit;
    run->eval_name = eval_name;
    run->optim_state_bytes = optim_state_bytes;
    if (run->rc->out_dir[0] && !run->rc->follower) {
        run_log_open(&run->log, run->rc->out_dir, run->log_keep_step);
        if (run->start_step > 0) cJSON_AddNumberToObject(config_record, "resumed_from_step", (double)run->start_step);
        run_log_write(&run->log, config_record);
    } else {
        cJSON_Delete(config_record);
    }
    run_install_sigint();
    progress_start(&run->progress, run->start_step, elapsed_before);
}

void run_step_begin(Run *run) {
    run->step_t0 = now_seconds();
    run->step_cpu0 = cpu_seconds();
}

void run_step_end(Run *run, long step, float loss, float lr, float norm, int skipped, double items) {
    double ms = 1000.0 * (now_seconds() - run->step_t0);
    double per_s = items / (ms / 1000.0);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "step", (double)step);
    if (skipped) {
        cJSON_AddNullToObject(r, "loss"); // JSON has no NaN
        cJSON_AddBoolToObject(r, "skipped", 1);
        cJSON_AddNumberToObject(r, "nan_skipped", (double)run->nan_skipped);
    } else {
        cJSON_AddNumberToObject(r, "loss", loss);
    }
    cJSON_AddNumberToObject(r, "lr", lr);
    if (isfinite(norm)) cJSON_AddNumberToObject(r, "grad_norm", norm);
    else cJSON_AddNullToObject(r, "grad_norm");
    cJSON_AddNumberToObject(r, "ms", ms);
    double cpu_ms = 1000.0 * (cpu_seconds() - run->step_cpu0);
    cJSON_AddNumberToObject(r, "cpu_ms", cpu_ms); // all threads
    if (run->rc->ranks > 1) cJSON_AddNumberToObject(r, "comm_ms", run->comm_ms);
    char key[32];
    snprintf(key, sizeof(key), "%s_per_s", strcmp(run->unit, "tok") == 0 ? "tokens" : "images");
    cJSON_AddNumberToObject(r, key, per_s);
    run_log_write(&run->log, r);
    progress_print(&run->progress, run->rc, step, skipped ? NAN : loss, run->last_eval, run->eval_name, lr, norm, ms,
                   cpu_ms, per_s, run->unit, 0);
}

int run_due(const Run *run, long step, long every) {
    if (step == run->rc->max_steps || run_interrupted()) return 1;
    return every > 0 && step % every == 0;
}

void run_eval_end(Run *run, long step, const char *key, float value, cJSON *extra) {
    run->last_eval = value;
    cJSON *v = extra ? extra : cJSON_CreateObject();
    cJSON_AddNumberToObject(v, "step", (double)step);
    cJSON_AddNumberToObject(v, key, value);
    cJSON_AddNumberToObject(v, "optimizer_state_bytes", (double)run->optim_state_bytes);
    cJSON_AddNumberToObject(v, "peak_rss_bytes", (double)peak_rss_bytes());
    cJSON_AddNumberToObject(v, "elapsed_s", progress_elapsed(&run->progress));
    run_log_write(&run->log, v);
    printf("step %ld: %s %.4f\n", step, key, value);
}

void run_checkpoint_commit(Run *run, long step, cJSON *extra) {
    const RunConfig *rc = run->rc;
    cJSON *s = extra ? extra : cJSON_CreateObject();
    cJSON_AddNumberToObject(s, "step", (double)step);
    cJSON_AddStringToObject(s, "optimizer", OPTIM_NAME);
    cJSON_AddNumberToObject(s, "micro_batch", rc->B);
    // micro-batches per step over all ranks: a run resumes with another
    // number of ranks when the global batch is the same
    cJSON_AddNumberToObject(s, "grad_accum", (double)rc->grad_accum * rc->ranks);
    cJSON_AddNumberToObject(s, "nan_skipped", (double)run->nan_skipped);
    cJSON_AddNumberToObject(s, "elapsed_s", progress_elapsed(&run->progress));
    if (rc->follower) { cJSON_Delete(s); return; } // rank 0 commits
    ckpt_commit(rc->out_dir, step, s, rc->keep_last, rc->keep_major);
    char model_path[700], optim_path[700];
    run_checkpoint_paths(run, step, model_path, optim_path, sizeof(model_path));
    fail_cleanup_remove(model_path);
    fail_cleanup_remove(optim_path);
}

int run_check_finite(Run *run, long step, float loss, float norm, const char *saved_note) {
    if (isfinite(loss) && isfinite(norm)) return 0;
    if (!run->rc->nan_skip) {
        const char *what = isfinite(loss) ? "gradient norm" : "loss";
        float x = isfinite(loss) ? norm : loss;
        fail("step %ld: the %s is %s; stopping%s (--nan skip skips such steps)", step, what,
             isnan(x) ? "NaN" : "infinite", saved_note ? saved_note : "");
    }
    run->nan_skipped++;
    return 1;
}

void run_finish(Run *run, long step, float last_loss) {
    char t[32];
    printf("done: %ld steps, last train loss %.4f", step, last_loss);
    if (run->last_eval >= 0.0f) printf(", %s %.4f", run->eval_name, run->last_eval);
    if (run->nan_skipped) printf(", %ld steps skipped (NaN/Inf)", run->nan_skipped);
    printf(", peak memory %s, %.1f s\n", format_bytes((double)peak_rss_bytes(), t, sizeof(t)), progress_elapsed(&run->progress));
    run_log_close(&run->log);
}

// ----------------------------------------------------------------------------
// measurements during training

// open DIR/<name> (kept to the resumed step), with the header if it has none
static void open_jsonl_with_header(RunLog *log, const Run *run, const char *name, cJSON *header) {
    char path[sizeof(log->path)];
    snprintf(path, sizeof(path), "%s/%s", run->rc->out_dir, name);
    long kept = run_jsonl_open(log, path, run->log_keep_step);
    if (kept == 0) run_log_write(log, header);
    else cJSON_Delete(header);
}

// a resumed run: the measurements before its checkpoint come back from snr.jsonl
static void snr_restore(SnrStats *s, const char *path) {
    FILE *f = fopen_or_fail(path, "rb");
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        cJSON *rec = json_parse_or_fail(line, path);
        if (!cJSON_GetObjectItemCaseSensitive(rec, "type")) snr_add_record(s, rec, path); // not the header
        cJSON_Delete(rec);
    }
    free(line);
    fclose(f);
}

void run_analyses_open(RunAnalyses *a, const Run *run, const ParamBlock *blocks, int num_blocks) {
    memset(a, 0, sizeof(*a));
    const RunConfig *rc = a->rc = run->rc;
    if (rc->snr_every > 0) {
        snr_init(&a->snr, blocks, num_blocks);
        if (rc->out_dir[0]) {
            open_jsonl_with_header(&a->snr_log, run, "snr.jsonl", snr_header(&a->snr));
            if (run->start_step > 0) snr_restore(&a->snr, a->snr_log.path);
        } else printf("note: --snr-every without -o: each measurement's SNRs (DIR/snr.jsonl) are not written\n");
    }
    if (rc->gsnr_every > 0) {
        gsnr_probe_init(&a->gsnr, blocks, num_blocks);
        open_jsonl_with_header(&a->gsnr_log, run, "gsnr.jsonl", gsnr_probe_header(&a->gsnr));
    }
}

void run_analyses_step(RunAnalyses *a, long step, const Optimizer *opt, const float *grads) {
    const RunConfig *rc = a->rc;
    if (rc->snr_every > 0 && step % rc->snr_every == 0) {
        snr_measure(&a->snr, opt, step);
        run_log_write(&a->snr_log, snr_record(&a->snr));
    }
    if (rc->gsnr_every > 0 && (step == 1 || step % rc->gsnr_every == 0)) {
        gsnr_probe_measure(&a->gsnr, grads, step);
        run_log_write(&a->gsnr_log, gsnr_probe_record(&a->gsnr));
    }
}

void run_analyses_finish(RunAnalyses *a) {
    const RunConfig *rc = a->rc;
    if (rc->snr_every > 0) {
        char means[sizeof(rc->snr_out) + 16];
        snr_means_path(means, sizeof(means), rc->snr_out);
        if (a->snr.measurements > 0) snr_write_rules(&a->snr, rc->snr_out, means);
        else printf("note: the run stopped before its first SNR measurement (step %ld): no SlimAdam rules written\n",
                    rc->snr_every);
        snr_free(&a->snr);
        run_log_close(&a->snr_log);
    }
    if (rc->gsnr_every > 0) {
        gsnr_probe_free(&a->gsnr);
        run_log_close(&a->gsnr_log);
    }
}

// ----------------------------------------------------------------------------
// Ctrl-C

static volatile sig_atomic_t interrupted = 0;

static void on_sigint(int sig) {
    interrupted = 1;
    signal(sig, SIG_DFL); // a second Ctrl-C (or SIGTERM) ends the process at once
}

void run_install_sigint(void) {
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint); // kill, timeout, a batch system: the same as Ctrl-C
}

static int interrupt_agreed = -1; // -1: not a data-parallel run, the signal decides

int run_interrupted(void) {
    return interrupt_agreed >= 0 ? interrupt_agreed : interrupted;
}

int run_signal_received(void) {
    return interrupted;
}

void run_agree_interrupted(int v) {
    interrupt_agreed = v != 0;
}
