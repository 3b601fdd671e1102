// libFuzzer harness: GPT-2's encoder.json + vocab.bpe (data/tokenizer.c,
// tokenizer_load). The input is both files (fuzz_split2); a tokenizer that
// loads must encode a fixed text and decode it back to the same bytes.
#include "data/tokenizer.h"
#include "fuzz/fuzz.h"

#include <string.h>

static const char sample[] = "Hello, world! It's 2026: naïve café, ﬁsh\t  \n\xff\xfe end.";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *enc, *bpe;
    size_t nenc, nbpe;
    fuzz_split2(data, size, &enc, &nenc, &bpe, &nbpe);
    char path[128];
    fuzz_write_file(path, sizeof(path), "encoder.json", enc, nenc);
    fuzz_write_file(path, sizeof(path), "vocab.bpe", bpe, nbpe);
    int *ids = NULL; // a block of this input: freed with the rest if the input is refused
    size_t count = 0, capacity = 0;
    jmp_buf jump;
    if (setjmp(jump) == 0) {
        fuzz_fail_jump = &jump;
        Tokenizer *t = tokenizer_load(fuzz_dir());
        tokenizer_encode(t, (const unsigned char *)sample, sizeof(sample) - 1, &ids, &count, &capacity);
        size_t at = 0, len;
        for (size_t i = 0; i < count; i++) {
            const unsigned char *bytes = tokenizer_decode(t, ids[i], &len);
            if (!bytes || at + len > sizeof(sample) - 1 || memcmp(bytes, sample + at, len) != 0) abort();
            at += len;
        }
        if (at != sizeof(sample) - 1) abort(); // decoding gives back exactly the text
        tokenizer_free(t);
        free(ids);
    }
    fuzz_fail_jump = NULL;
    return 0;
}
