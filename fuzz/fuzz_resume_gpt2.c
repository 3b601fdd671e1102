// libFuzzer harness: a GPT-2 run's resume record (state_<step>.json): read as
// -y 1 reads it (ckpt_read_state, run/run.c), checked against the run's flags
// (run_resume_check_state), then the GPT-2 trainer's own keys
// (gpt2_resume_data, train_gpt2.c): the loader's position in two token shards
// of 40 and 25 tokens read shuffled (seed 42), where the next two batches are
// then read, and the sampler's generator. The record is named
// state_00000007.json.
#define TESTING
#include "train_gpt2.c"
#include "fuzz/fuzz.h"
#include "fuzz/fuzz_resume.h"

static RunConfig rc;
static TokenLoader loader;
static const int seq_len = 4; // -t

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    uint16_t tokens[40];
    for (int i = 0; i < 40; i++) tokens[i] = (uint16_t)(i * 7 % 50);
    char path[128], pattern[128];
    snprintf(path, sizeof(path), "%s/train_000.bin", fuzz_dir());
    shard_write(path, tokens, 40);
    snprintf(path, sizeof(path), "%s/train_001.bin", fuzz_dir());
    shard_write(path, tokens, 25);
    snprintf(pattern, sizeof(pattern), "%s/train_*.bin", fuzz_dir());
    rc.B = 2;
    rc.grad_accum = 3;
    TokenLoaderOptions opt = {SHARD_FORMAT_LLMC, 1, 42};
    token_loader_open(&loader, pattern, rc.B, seq_len, 50257, &opt);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[128];
    static Run run;
    jmp_buf jump;
    if (setjmp(jump) == 0) {
        fuzz_fail_jump = &jump;
        cJSON *state = fuzz_resume_record(data, size, &rc, &run, path, sizeof(path));
        Rng sample_rng;
        gpt2_resume_check_seq_len(state, path, seq_len);
        gpt2_resume_data(state, path, &run, &rc, seq_len, &loader, &sample_rng);
        int in[8], tg[8];
        token_loader_next(&loader, in, tg);
        token_loader_next(&loader, in, tg);
        cJSON_Delete(state);
    }
    fuzz_fail_jump = NULL;
    return 0;
}
