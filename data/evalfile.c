// llm.c's multiple-choice evaluation file (HellaSwag). See evalfile.h.
#include "data/evalfile.h"
#include "common/utils.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void evalset_load(EvalSet *s, const char *path, int vocab_size) {
    memset(s, 0, sizeof(*s));
    FILE *f = fopen_or_fail(path, "rb");
    struct stat st;
    if (fstat(fileno(f), &st) != 0) fail("cannot stat %s", path);
    size_t size = (size_t)st.st_size, header_bytes = EVALFILE_HEADER_INTS * sizeof(int32_t);
    int32_t header[EVALFILE_HEADER_INTS];
    if (size < header_bytes) fail("%s is truncated: %zu bytes, shorter than the %zu-byte header", path, size, header_bytes);
    fread_or_fail(header, sizeof(int32_t), EVALFILE_HEADER_INTS, f, path);
    if (header[0] != EVALFILE_MAGIC)
        fail("%s: not an llm.c eval file such as hellaswag_val.bin (magic %d, expected %d)", path, header[0], EVALFILE_MAGIC);
    if (header[1] != EVALFILE_VERSION) fail("%s: unsupported eval file version %d (expected %d)", path, header[1], EVALFILE_VERSION);
    // example indices are uint16, so a file holds at most 65535 examples
    if (header[2] < 1 || header[2] > 65535) fail("%s: number of examples %d in the header, expected 1..65535", path, header[2]);
    size_t body = size - header_bytes;
    if (body % 2) fail("%s: odd number of bytes after the header (%zu); the examples are uint16", path, body);
    size_t n = body / 2;
    if (n > (size_t)INT32_MAX) fail("%s: %zu bytes of examples, more than this reader handles", path, body);
    int E = header[2];
    s->num_examples = E;
    s->tokens = malloc_or_fail(n ? n * sizeof(uint16_t) : 1, "eval file");
    if (n) fread_or_fail(s->tokens, sizeof(uint16_t), n, f, path);
    fclose(f);
    s->label = malloc_or_fail(E * sizeof(int), "eval file");
    s->ctx_off = malloc_or_fail(E * sizeof(int), "eval file");
    s->ctx_len = malloc_or_fail(E * sizeof(int), "eval file");
    s->first = malloc_or_fail((E + 1) * sizeof(int), "eval file");
    int cap = 4 * E;
    s->comp_off = malloc_or_fail(cap * sizeof(int), "eval file");
    s->comp_len = malloc_or_fail(cap * sizeof(int), "eval file");
    const uint16_t *t = s->tokens;
    size_t pos = 0;
    int longest_bytes = 0;
    for (int i = 0; i < E; i++) {
        // the six fields before the context's tokens
        if (n - pos < 6) fail("%s is truncated: example %d of %d starts %zu bytes before the end", path, i, E, 2 * (n - pos));
        size_t start = pos;
        if (t[pos] != EVALFILE_START_EXAMPLE)
            fail("%s: example %d does not start with the delimiter 65535 (found %d at byte %zu)", path, i, t[pos],
                 header_bytes + 2 * pos);
        int bytes = t[pos + 1], index = t[pos + 2], label = t[pos + 3], nc = t[pos + 4];
        if (index != i) fail("%s: example %d has index %d", path, i, index);
        if (nc < 1 || nc > EVALFILE_MAX_COMPLETIONS)
            fail("%s: example %d has %d completions, expected 1..%d", path, i, nc, EVALFILE_MAX_COMPLETIONS);
        if (label >= nc) fail("%s: example %d has label %d but %d completions", path, i, label, nc);
        if (bytes % 2 || (size_t)bytes / 2 > n - start)
            fail("%s: example %d says it is %d bytes, but %zu bytes are left in the file", path, i, bytes, 2 * (n - start));
        size_t end = start + (size_t)bytes / 2; // the example's fields must end exactly here
        pos += 5;
        s->label[i] = label;
        s->ctx_len[i] = t[pos];
        s->ctx_off[i] = (int)pos + 1;
        if (s->ctx_len[i] < 1) fail("%s: example %d has an empty context", path, i);
        if (pos + 1 + s->ctx_len[i] > end) fail("%s: example %d: its context runs past its %d bytes", path, i, bytes);
        pos += 1 + s->ctx_len[i];
        s->first[i] = s->num_completions;
        for (int c = 0; c < nc; c++) {
            if (pos >= end) fail("%s: example %d: completion %d runs past its %d bytes", path, i, c, bytes);
            int len = t[pos];
            if (len < 1) fail("%s: example %d: completion %d is empty", path, i, c);
            if (pos + 1 + len > end) fail("%s: example %d: completion %d runs past its %d bytes", path, i, c, bytes);
            if (s->num_completions == cap) {
                cap *= 2;
                s->comp_off = realloc(s->comp_off, cap * sizeof(int));
                s->comp_len = realloc(s->comp_len, cap * sizeof(int));
                if (!s->comp_off || !s->comp_len) fail("out of memory reading %s", path);
            }
            s->comp_off[s->num_completions] = (int)pos + 1;
            s->comp_len[s->num_completions] = len;
            s->num_completions++;
            if (s->ctx_len[i] + len > s->longest_row) s->longest_row = s->ctx_len[i] + len;
            pos += 1 + len;
        }
        if (pos != end) fail("%s: example %d says it is %d bytes, its fields take %zu", path, i, bytes, 2 * (pos - start));
        if (bytes > longest_bytes) longest_bytes = bytes;
    }
    s->first[E] = s->num_completions;
    if (pos != n) fail("%s: %zu bytes after the last of its %d examples", path, 2 * (n - pos), E);
    if (header[3] != longest_bytes)
        fail("%s: the header says the longest example is %d bytes, it is %d", path, header[3], longest_bytes);
    // every token below the vocabulary (the delimiter and lengths are not tokens)
    for (int i = 0; i < E; i++)
        for (int k = 0; k < s->ctx_len[i]; k++)
            if (t[s->ctx_off[i] + k] >= vocab_size)
                fail("%s: example %d: context token %d is %d, outside the model's vocabulary of %d", path, i, k,
                     t[s->ctx_off[i] + k], vocab_size);
    for (int c = 0; c < s->num_completions; c++)
        for (int k = 0; k < s->comp_len[c]; k++)
            if (t[s->comp_off[c] + k] >= vocab_size)
                fail("%s: a completion token is %d, outside the model's vocabulary of %d", path, t[s->comp_off[c] + k],
                     vocab_size);
}

void evalset_free(EvalSet *s) {
    free(s->label); free(s->ctx_off); free(s->ctx_len); free(s->first);
    free(s->comp_off); free(s->comp_len); free(s->tokens);
    memset(s, 0, sizeof(*s));
}

int evalset_row(const EvalSet *s, int i, int c, int *row) {
    int n = 0, k = s->first[i] + c;
    for (int j = 0; j < s->ctx_len[i]; j++) row[n++] = s->tokens[s->ctx_off[i] + j];
    for (int j = 0; j < s->comp_len[k]; j++) row[n++] = s->tokens[s->comp_off[k] + j];
    return n;
}

int evalset_predict(const EvalSet *s, int i, const double *mean_loss, const double *sum_loss, int *pred_sum) {
    int nc = s->first[i + 1] - s->first[i], best_mean = 0, best_sum = 0;
    for (int c = 1; c < nc; c++) {
        if (mean_loss[c] < mean_loss[best_mean]) best_mean = c; // strict: a tie keeps the lower index
        if (sum_loss[c] < sum_loss[best_sum]) best_sum = c;
    }
    *pred_sum = best_sum;
    return best_mean;
}
