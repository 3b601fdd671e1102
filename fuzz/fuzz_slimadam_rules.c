// libFuzzer harness: a SlimAdam rules file (--slimadam-rules, optim/slimadam.c),
// read by optim_create; an optimizer it accepts takes one step, which reads
// and writes the compressed second moment the rules laid out.
#include "fuzz/fuzz.h"
#include "fuzz/fuzz_model.h"

#include <string.h>

static ParamBlock blocks[FUZZ_NUM_BLOCKS];
static float params[FUZZ_NUM_PARAMS], grads[FUZZ_NUM_PARAMS];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!blocks[0].name[0]) fuzz_model_blocks(blocks);
    const char *path = fuzz_input_file(data, size);
    OptimConfig cfg;
    optim_default_config(&cfg);
    snprintf(cfg.slimadam_rules, sizeof(cfg.slimadam_rules), "%s", path);
    jmp_buf jump;
    if (setjmp(jump) == 0) {
        fuzz_fail_jump = &jump;
        Optimizer *opt = optim_create(blocks, FUZZ_NUM_BLOCKS, &cfg);
        if (optim_state_bytes(opt) != optim_state_bytes_for(blocks, FUZZ_NUM_BLOCKS, &cfg)) abort(); // the plan's size
        fuzz_model_values(params, grads);
        optim_step(opt, params, grads, 1e-3f);
        optim_free(opt);
    }
    fuzz_fail_jump = NULL;
    return 0;
}
