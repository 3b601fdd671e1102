// bench_optim_<name>: the optimizer step time of one optimizer on the
// parameter blocks of GPT-2 124M (d12: 124,439,808 parameters), with random
// gradients, and its exact state size. dev/bench/bench_optim.sh runs all five
// and prints each next to AdamW measured in the same run.
//
//   ./build/release/bin/bench_optim_adamw [steps=10] [depth=12]
// ends with one line: "result: optimizer median_ms min_ms first_step_ms
// state_bytes adamw_state_bytes parameters threads"
#define TESTING
#include "train_gpt2.c"

#include <omp.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 10;
    const char *depth = argc > 2 ? argv[2] : "12";
    char spec[16];
    snprintf(spec, sizeof(spec), "d%s", depth);
    GPT2Config cfg;
    if (!gpt2_config_from_depth(&cfg, spec) || steps < 1) fail("usage: bench_optim [steps] [depth]");
    GPT2 model;
    gpt2_build_random(&model, &cfg, 1);
    gpt2_allocate_gradients(&model, 0);
    int nb = gpt2_param_blocks(&model.config, NULL);
    ParamBlock *blocks = malloc_or_fail(nb * sizeof(ParamBlock), "blocks");
    gpt2_param_blocks(&model.config, blocks);
    // gradients of a realistic size: N(0, 1e-3), touched once so no page fault is timed
    Rng rng;
    rng_seed(&rng, 2);
    for (size_t i = 0; i < model.mem.num_parameters; i++) model.mem.grads_memory[i] = 1e-3f * rng_normal(&rng);
    OptimConfig oc;
    optim_default_config(&oc);
    Optimizer *opt = optim_create(blocks, nb, &oc);
    // the first step pays page faults on the fresh state (and SGD-SaI's one-off
    // g-SNR): reported separately, not in the median
    double t0 = now_seconds();
    optim_step(opt, model.mem.params_memory, model.mem.grads_memory, 1e-4f);
    double first_ms = 1000.0 * (now_seconds() - t0);
    double *ms = malloc_or_fail(steps * sizeof(double), "times");
    for (int s = 0; s < steps; s++) {
        t0 = now_seconds();
        optim_step(opt, model.mem.params_memory, model.mem.grads_memory, 1e-4f);
        ms[s] = 1000.0 * (now_seconds() - t0);
    }
    qsort(ms, steps, sizeof(double), cmp_double);
    printf("result: %s %.2f %.2f %.2f %zu %zu %zu %d\n", OPTIM_NAME, ms[steps / 2], ms[0], first_ms, optim_state_bytes(opt),
           optim_adamw_state_bytes(blocks, nb), optim_num_params(blocks, nb), omp_get_max_threads());
    optim_free(opt);
    free(blocks);
    free(ms);
    gpt2_free(&model);
    return 0;
}
