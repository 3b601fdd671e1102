// libFuzzer harness: llm.c's decode-only tokenizer file (data/tokenizer.c,
// tokenizer_load_llmc), then every id decoded as the sampler decodes them.
#include "data/tokenizer.h"
#include "fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_input_file(data, size);
    jmp_buf jump;
    if (setjmp(jump) == 0) {
        fuzz_fail_jump = &jump;
        Tokenizer *t = tokenizer_load_llmc(path);
        int n = tokenizer_vocab_size(t);
        size_t total = 0, len;
        for (int id = -1; id <= n; id++) { // one id outside each end: decode returns NULL there
            const unsigned char *bytes = tokenizer_decode(t, id, &len);
            if ((id < 0 || id == n) != (bytes == NULL)) abort();
            for (size_t i = 0; bytes && i < len; i++) total += bytes[i]; // read every byte it claims
        }
        if (tokenizer_eot(t) < 0 || tokenizer_eot(t) >= n || tokenizer_can_encode(t)) abort();
        tokenizer_free(t);
        (void)total;
    }
    fuzz_fail_jump = NULL;
    return 0;
}
