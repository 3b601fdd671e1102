// libFuzzer harness: the GPT-2 checkpoint loader (train_gpt2.c), then what
// sampling does with the sizes the header gave (the KV cache and a few
// tokens), where a crafted header once wrote through a wild pointer.
#define TESTING
#include "train_gpt2.c"
#include "fuzz/fuzz.h"

static GPT2 model;
static KVCache kv;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_input_file(data, size);
    jmp_buf jump;
    memset(&kv, 0, sizeof(kv));
    if (setjmp(jump) == 0) {
        fuzz_fail_jump = &jump;
        gpt2_build_from_checkpoint(&model, path);
        int len = model.config.max_seq_len < 4 ? model.config.max_seq_len : 4;
        kvcache_init(&kv, &model.config, len);
        int prompt[1] = {0}, out[4];
        Rng rng;
        rng_seed(&rng, 1);
        gpt2_generate(&model, &kv, prompt, 1, len - 1, out, 1.0f, 2, &rng, model.config.vocab_size - 1);
    }
    fuzz_fail_jump = NULL;
    free_big(kv.memory);
    gpt2_free(&model); // what a refused input had allocated (gpt2_build_from_checkpoint zeroes model first)
    memset(&model, 0, sizeof(model));
    return 0;
}
