// llm.c token shards: writer, validator, batch loader. See shards.h.
#include "data/shards.h"
#include "common/utils.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

void shard_write(const char *path, const uint16_t *tokens, size_t count) {
    if (count > INT32_MAX) fail("%s: %zu tokens do not fit one shard (at most %d)", path, count, INT32_MAX);
    int32_t header[SHARD_HEADER_INTS] = {0};
    header[0] = SHARD_MAGIC;
    header[1] = SHARD_VERSION;
    header[2] = (int32_t)count;
    AtomicFile af;
    atomic_open(&af, path);
    fwrite_or_fail(header, sizeof(int32_t), SHARD_HEADER_INTS, af.f, af.tmp_path);
    if (count) fwrite_or_fail(tokens, sizeof(uint16_t), count, af.f, af.tmp_path);
    atomic_commit(&af);
}

__attribute__((format(printf, 3, 4)))
static int set_error(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

// Opens path (regular files only: a FIFO in the glob must not block) and
// checks its layout; returns the descriptor, or -1 with the message in err.
static int open_checked(const char *path, ShardFormat format, int64_t *ntokens, char *err, size_t errlen) {
    int fd = open_regular_for_reading(path, err, errlen);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        set_error(err, errlen, "cannot stat %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    if (format == SHARD_FORMAT_NANOGPT) {
        // nanoGPT's np.memmap of uint16: the size is the only check there is
        if (size % 2 != 0) {
            set_error(err, errlen, "%s: odd number of bytes (%zu); nanoGPT's .bin holds uint16 tokens", path, size);
            close(fd);
            return -1;
        }
        *ntokens = (int64_t)(size / 2);
        return fd;
    }
    int32_t header[SHARD_HEADER_INTS];
    int rc = 0;
    if (size < SHARD_HEADER_BYTES || pread(fd, header, SHARD_HEADER_BYTES, 0) != SHARD_HEADER_BYTES) {
        rc = set_error(err, errlen, "%s is truncated: %zu bytes, shorter than the %d-byte shard header (nanoGPT's "
                       "header-less .bin needs --data-format nanogpt)", path, size, SHARD_HEADER_BYTES);
    } else if (header[0] != SHARD_MAGIC) {
        rc = set_error(err, errlen, "%s: not an llm.c token shard (magic %d, expected %d; nanoGPT's header-less "
                       ".bin needs --data-format nanogpt)", path, header[0], SHARD_MAGIC);
    } else if (header[1] != SHARD_VERSION) {
        rc = set_error(err, errlen, "%s: unsupported shard version %d (expected %d)", path, header[1], SHARD_VERSION);
    } else {
        int64_t n = header[2];
        size_t body = size - SHARD_HEADER_BYTES;
        if (n < 0)
            rc = set_error(err, errlen, "%s: negative token count %lld in the header", path, (long long)n);
        else if (body % 2 != 0)
            rc = set_error(err, errlen, "%s: odd number of bytes after the header (%zu); tokens are uint16", path, body);
        else if ((int64_t)(body / 2) < n)
            rc = set_error(err, errlen, "%s is truncated: the header says %lld tokens, the file holds %zu",
                           path, (long long)n, body / 2);
        else if ((int64_t)(body / 2) > n)
            rc = set_error(err, errlen, "%s: %zu extra bytes after the %lld tokens the header announces",
                           path, body - 2 * (size_t)n, (long long)n);
        else
            *ntokens = n;
    }
    if (rc != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int shard_check_layout(const char *path, ShardFormat format, int64_t *ntokens, char *err, size_t errlen) {
    int fd = open_checked(path, format, ntokens, err, errlen);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

int shard_validate(const char *path, int vocab_size, int64_t *ntokens, char *err, size_t errlen) {
    int64_t n;
    int fd = open_checked(path, SHARD_FORMAT_LLMC, &n, err, errlen);
    if (fd < 0) return -1;
    // every id must index the embedding table
    enum { CHUNK = 1 << 16 };
    uint16_t *buf = malloc_or_fail(CHUNK * sizeof(uint16_t), "shard check buffer");
    int rc = 0;
    for (int64_t at = 0; at < n && rc == 0;) {
        size_t want = (size_t)(n - at < CHUNK ? n - at : CHUNK);
        ssize_t got = pread(fd, buf, want * sizeof(uint16_t), SHARD_HEADER_BYTES + at * (off_t)sizeof(uint16_t));
        if (got != (ssize_t)(want * sizeof(uint16_t))) {
            rc = set_error(err, errlen, "reading %s: %s", path, got < 0 ? strerror(errno) : "unexpected end of file");
            break;
        }
        for (size_t i = 0; i < want; i++) {
            if (buf[i] >= vocab_size) {
                int64_t p = at + (int64_t)i;
                rc = set_error(err, errlen, "%s: token %d at position %lld (byte %lld) is not below the vocabulary "
                               "size %d", path, buf[i], (long long)p, (long long)(SHARD_HEADER_BYTES + 2 * p), vocab_size);
                break;
            }
        }
        at += (int64_t)want;
    }
    free(buf);
    close(fd);
    if (rc == 0) *ntokens = n;
    return rc;
}

void token_loader_init(TokenLoader *l, const char *pattern, int B, int T, int vocab_size) {
    TokenLoaderOptions opt = {SHARD_FORMAT_LLMC, 0, 0};
    token_loader_open(l, pattern, B, T, vocab_size, &opt);
}

void token_loader_open(TokenLoader *l, const char *pattern, int B, int T, int vocab_size,
                       const TokenLoaderOptions *opt) {
    memset(l, 0, sizeof(*l));
    l->fd = -1;
    l->fd_shard = -1;
    if (B <= 0 || T <= 0 || (int64_t)B * T + 1 > INT32_MAX) fail("token loader: bad batch shape B=%d T=%d", B, T);
    if (vocab_size <= 0 || vocab_size > 65536)
        fail("token loader: vocabulary size %d does not fit uint16 tokens", vocab_size);
    l->B = B;
    l->T = T;
    l->vocab_size = vocab_size;
    l->opt = *opt;
    glob_t g;
    int rc = glob(pattern, 0, NULL, &g); // sorted
    if (rc == GLOB_NOMATCH) fail("no token shards match %s", pattern);
    if (rc != 0) fail("cannot list token shards %s", pattern);
    if (g.gl_pathc > INT32_MAX) fail("too many shards match %s", pattern);
    l->num_shards = (int)g.gl_pathc;
    l->paths = malloc_or_fail((size_t)l->num_shards * sizeof(char *), "shard paths");
    l->shard_tokens = malloc_or_fail((size_t)l->num_shards * sizeof(int64_t), "shard sizes");
    l->shard_batches = malloc_or_fail((size_t)l->num_shards * sizeof(int64_t), "shard batch counts");
    int64_t bt = (int64_t)B * T, need = bt + 1;
    for (int s = 0; s < l->num_shards; s++) {
        const char *path = g.gl_pathv[s];
        size_t len = strlen(path);
        l->paths[s] = malloc_or_fail(len + 1, "shard path");
        memcpy(l->paths[s], path, len + 1);
        char err[1024];
        if (shard_check_layout(path, opt->format, &l->shard_tokens[s], err, sizeof(err)) != 0) fail("%s", err);
        if (l->shard_tokens[s] < need)
            fail("%s has %lld tokens; one batch of B=%d x T=%d needs %lld", path,
                 (long long)l->shard_tokens[s], B, T, (long long)need);
        l->total_tokens += l->shard_tokens[s];
        // batches start at 0, B*T, 2*B*T, ... while B*T+1 tokens remain
        l->shard_batches[s] = (l->shard_tokens[s] - 1) / bt;
        if (l->shard_batches[s] > l->max_shard_batches) l->max_shard_batches = l->shard_batches[s];
        l->batches_per_epoch += l->shard_batches[s];
    }
    globfree(&g);
    // llm.c's permutations hold int indices
    if (opt->shuffle && l->max_shard_batches > INT32_MAX)
        fail("%s: a shard of %lld batches of %d x %d tokens is too long to shuffle (at most %d batches; use a larger "
             "B x T or --shuffle 0)", pattern, (long long)l->max_shard_batches, B, T, INT32_MAX);
    l->buf = malloc_or_fail((size_t)need * sizeof(uint16_t), "batch tokens");
    l->shard_order = malloc_or_fail((size_t)l->num_shards * sizeof(uint32_t), "shard order");
    if (opt->shuffle)
        l->batch_order = malloc_or_fail((size_t)l->max_shard_batches * sizeof(uint32_t), "batch order");
    token_loader_reset(l);
}

size_t token_loader_bytes(int64_t max_shard_tokens, int num_shards, int B, int T, int shuffle) {
    int64_t bt = (int64_t)B * T;
    size_t bytes = (size_t)(bt + 1) * sizeof(uint16_t) + (size_t)num_shards * sizeof(uint32_t);
    if (shuffle && max_shard_tokens > bt) bytes += (size_t)((max_shard_tokens - 1) / bt) * sizeof(uint32_t);
    return bytes;
}

// Entering the pos.shard-th shard of the epoch: its batch order, when shuffling,
// is a fresh permutation of the identity (llm.c's prepare_intra_shard_indices_).
static void enter_shard(TokenLoader *l) {
    if (!l->opt.shuffle) return;
    int64_t n = l->shard_batches[l->shard_order[l->pos.shard]];
    for (int64_t i = 0; i < n; i++) l->batch_order[i] = (uint32_t)i;
    mt19937_shuffle(&l->rng, l->batch_order, n);
}

// A new epoch: llm.c permutes the shard order in place (so each epoch's order
// builds on the last one's), then enters the first shard.
static void begin_epoch(TokenLoader *l) {
    l->pos.shard = 0;
    l->pos.batch = 0;
    if (l->opt.shuffle) mt19937_shuffle(&l->rng, l->shard_order, l->num_shards);
    enter_shard(l);
}

void token_loader_next(TokenLoader *l, int *inputs, int *targets) {
    int64_t bt = (int64_t)l->B * l->T;
    if (l->pos.batch >= l->shard_batches[l->shard_order[l->pos.shard]]) {
        if (l->pos.shard + 1 == l->num_shards) {
            l->pos.epoch++;
            begin_epoch(l);
        } else {
            l->pos.shard++;
            l->pos.batch = 0;
            enter_shard(l);
        }
    }
    int64_t s = l->shard_order[l->pos.shard];
    const char *path = l->paths[s];
    if (l->fd_shard != s) {
        if (l->fd >= 0) close(l->fd);
        l->fd = open(path, O_RDONLY);
        if (l->fd < 0) fail("cannot open %s for reading: %s", path, strerror(errno));
        l->fd_shard = s;
    }
    int64_t b = l->opt.shuffle ? l->batch_order[l->pos.batch] : l->pos.batch;
    int64_t first = b * bt; // token position of the batch in its shard
    off_t header = l->opt.format == SHARD_FORMAT_LLMC ? SHARD_HEADER_BYTES : 0;
    off_t at = header + (off_t)first * (off_t)sizeof(uint16_t);
    size_t want = (size_t)(bt + 1) * sizeof(uint16_t);
    for (size_t got = 0; got < want;) {
        ssize_t r = pread(l->fd, (char *)l->buf + got, want - got, at + (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            fail("reading %s at byte %lld: %s", path, (long long)(at + (off_t)got),
                 r < 0 ? strerror(errno) : "the file is shorter than when training started");
        got += (size_t)r;
    }
    for (int64_t i = 0; i <= bt; i++) {
        // checked here, as the batch is read: opening never reads the tokens
        if (l->buf[i] >= l->vocab_size)
            fail("%s: token %d at position %lld (byte %lld) is not below the vocabulary size %d", path, l->buf[i],
                 (long long)(first + i), (long long)(header + (first + i) * (off_t)sizeof(uint16_t)), l->vocab_size);
    }
    for (int64_t i = 0; i < bt; i++) {
        inputs[i] = l->buf[i];
        targets[i] = l->buf[i + 1];
    }
    l->pos.batch++;
}

void token_loader_reset(TokenLoader *l) {
    l->pos = (TokenLoaderPos){0, 0, 0};
    for (int s = 0; s < l->num_shards; s++) l->shard_order[s] = (uint32_t)s;
    if (l->opt.shuffle) mt19937_seed(&l->rng, l->opt.shuffle_seed);
    begin_epoch(l);
}

TokenLoaderPos token_loader_get_pos(const TokenLoader *l) {
    return l->pos;
}

void token_loader_set_pos(TokenLoader *l, TokenLoaderPos pos) {
    int fits = pos.shard >= 0 && pos.shard < l->num_shards && pos.epoch >= 0 && pos.batch >= 0;
    // the batch count is the shard's at that place in the order: known after the replay
    if (!fits)
        fail("token loader position (epoch %lld, shard %lld, batch %lld) does not fit the %d shard(s) starting with %s",
             (long long)pos.epoch, (long long)pos.shard, (long long)pos.batch, l->num_shards, l->paths[0]);
    token_loader_reset(l);
    if (l->opt.shuffle) {
        // replay llm.c's draws: per epoch the shard permutation and one batch
        // permutation per shard; only the last one's result is kept
        for (int64_t e = 0; e <= pos.epoch; e++) {
            if (e > 0) mt19937_shuffle(&l->rng, l->shard_order, l->num_shards);
            int64_t last = e == pos.epoch ? pos.shard : l->num_shards - 1;
            for (int64_t k = (e == 0); k <= last; k++) {
                if (k < last || e < pos.epoch) {
                    // the permutation's draws without the swaps: n - 1 of them
                    int64_t n = l->shard_batches[l->shard_order[k]];
                    for (int64_t i = n - 1; i > 0; i--) (void)mt19937_u32(&l->rng);
                } else {
                    l->pos.shard = k;
                    enter_shard(l);
                }
            }
        }
    }
    l->pos = pos;
    if (pos.batch > l->shard_batches[l->shard_order[pos.shard]])
        fail("token loader position (epoch %lld, shard %lld, batch %lld) does not fit: that shard (%s) has %lld "
             "batches of %d x %d tokens", (long long)pos.epoch, (long long)pos.shard, (long long)pos.batch,
             l->paths[l->shard_order[pos.shard]], (long long)l->shard_batches[l->shard_order[pos.shard]], l->B, l->T);
}

void token_loader_free(TokenLoader *l) {
    if (l->fd >= 0) close(l->fd);
    for (int s = 0; s < l->num_shards; s++) free(l->paths[s]);
    free(l->paths);
    free(l->shard_tokens);
    free(l->shard_batches);
    free(l->shard_order);
    free(l->batch_order);
    free(l->buf);
    memset(l, 0, sizeof(*l));
    l->fd = -1;
}
