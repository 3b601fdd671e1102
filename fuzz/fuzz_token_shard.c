// libFuzzer harness: the llm.c token shard validator and, for a shard it
// accepts, the loader's first batches (data/shards.c).
#include "data/shards.h"
#include "fuzz/fuzz.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_input_file(data, size);
    char err[1024];
    int64_t n;
    if (shard_validate(path, 65536, &n, err, sizeof(err)) != 0 || n < 3) return 0;
    jmp_buf jump;
    static TokenLoader l;
    if (setjmp(jump) == 0) {
        fuzz_fail_jump = &jump;
        // shuffled: the orders are built from the header's count
        TokenLoaderOptions opt = {SHARD_FORMAT_LLMC, 1, 42};
        token_loader_open(&l, path, 1, 2, 65536, &opt);
        int in[2], tg[2];
        for (int i = 0; i < 3; i++) token_loader_next(&l, in, tg);
    }
    fuzz_fail_jump = NULL;
    token_loader_free(&l);
    return 0;
}
