// libFuzzer harness: an optimizer state file (optim_load, optim/optim.c) for
// the optimizer this harness is linked with (one binary per optimizer,
// fuzz_optim_state_<name>), then one step from the loaded state, which reads
// every state float the file gave.
//
// FUZZ_WRITE_SEED=path writes the state after two steps from the default
// configuration as a seed (fuzz/seeds/optim_state_<name>/) and exits.
#include "fuzz/fuzz.h"
#include "fuzz/fuzz_model.h"

#include <string.h>

static ParamBlock blocks[FUZZ_NUM_BLOCKS];
static float params[FUZZ_NUM_PARAMS], grads[FUZZ_NUM_PARAMS];
static Optimizer *opt;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_model_blocks(blocks);
    OptimConfig cfg;
    optim_default_config(&cfg);
    opt = optim_create(blocks, FUZZ_NUM_BLOCKS, &cfg);
    const char *seed = getenv("FUZZ_WRITE_SEED");
    if (seed) {
        fuzz_model_values(params, grads);
        optim_step(opt, params, grads, 1e-3f);
        optim_step(opt, params, grads, 1e-3f);
        optim_save(opt, seed);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_input_file(data, size);
    jmp_buf jump;
    if (setjmp(jump) == 0) {
        fuzz_fail_jump = &jump;
        optim_load(opt, path);
        fuzz_model_values(params, grads);
        optim_step(opt, params, grads, 1e-3f);
    }
    fuzz_fail_jump = NULL;
    return 0;
}
