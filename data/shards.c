// llm.c token shards: writer, validator, batch loader. See shards.h.
#include "data/shards.h"
#include "common/utils.h"

#include <errno.h>
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

int shard_validate(const char *path, int vocab_size, int64_t *ntokens, char *err, size_t errlen) {
    // a FIFO in the glob must not block the open: checked before reading
    int fd = open_regular_for_reading(path, err, errlen);
    if (fd < 0) return -1;
    FILE *f = fdopen(fd, "rb");
    if (!f) { close(fd); return set_error(err, errlen, "cannot open %s for reading: %s", path, strerror(errno)); }
    struct stat st;
    int rc = 0;
    if (fstat(fileno(f), &st) != 0) {
        rc = set_error(err, errlen, "cannot stat %s: %s", path, strerror(errno));
        fclose(f);
        return rc;
    }
    size_t size = (size_t)st.st_size;
    int32_t header[SHARD_HEADER_INTS];
    if (size < SHARD_HEADER_BYTES || fread(header, sizeof(int32_t), SHARD_HEADER_INTS, f) != SHARD_HEADER_INTS) {
        rc = set_error(err, errlen, "%s is truncated: %zu bytes, shorter than the %d-byte shard header",
                       path, size, SHARD_HEADER_BYTES);
        goto done;
    }
    if (header[0] != SHARD_MAGIC) {
        rc = set_error(err, errlen, "%s: not an llm.c token shard (magic %d, expected %d)", path, header[0], SHARD_MAGIC);
        goto done;
    }
    if (header[1] != SHARD_VERSION) {
        rc = set_error(err, errlen, "%s: unsupported shard version %d (expected %d)", path, header[1], SHARD_VERSION);
        goto done;
    }
    int64_t n = header[2];
    size_t body = size - SHARD_HEADER_BYTES;
    if (n < 0) {
        rc = set_error(err, errlen, "%s: negative token count %lld in the header", path, (long long)n);
        goto done;
    }
    if (body % 2 != 0) {
        rc = set_error(err, errlen, "%s: odd number of bytes after the header (%zu); tokens are uint16", path, body);
        goto done;
    }
    if ((int64_t)(body / 2) < n) {
        rc = set_error(err, errlen, "%s is truncated: the header says %lld tokens, the file holds %zu",
                       path, (long long)n, body / 2);
        goto done;
    }
    if ((int64_t)(body / 2) > n) {
        rc = set_error(err, errlen, "%s: %zu extra bytes after the %lld tokens the header announces",
                       path, body - 2 * (size_t)n, (long long)n);
        goto done;
    }
    // every id must index the embedding table
    enum { CHUNK = 1 << 16 };
    uint16_t *buf = malloc_or_fail(CHUNK * sizeof(uint16_t), "shard check buffer");
    for (int64_t at = 0; at < n && rc == 0;) {
        size_t want = (size_t)(n - at < CHUNK ? n - at : CHUNK);
        if (fread(buf, sizeof(uint16_t), want, f) != want) {
            rc = set_error(err, errlen, "reading %s: %s", path, ferror(f) ? strerror(errno) : "unexpected end of file");
            break;
        }
        for (size_t i = 0; i < want; i++) {
            if (buf[i] >= vocab_size) {
                rc = set_error(err, errlen, "%s: token %d at position %lld is not below the vocabulary size %d",
                               path, buf[i], (long long)(at + (int64_t)i), vocab_size);
                break;
            }
        }
        at += (int64_t)want;
    }
    free(buf);
    if (rc == 0) *ntokens = n;
done:
    fclose(f);
    return rc;
}

void token_loader_init(TokenLoader *l, const char *pattern, int B, int T, int vocab_size) {
    memset(l, 0, sizeof(*l));
    if (B <= 0 || T <= 0 || (int64_t)B * T + 1 > INT32_MAX) fail("token loader: bad batch shape B=%d T=%d", B, T);
    if (vocab_size <= 0 || vocab_size > 65536)
        fail("token loader: vocabulary size %d does not fit uint16 tokens", vocab_size);
    l->B = B;
    l->T = T;
    l->vocab_size = vocab_size;
    glob_t g;
    int rc = glob(pattern, 0, NULL, &g); // sorted
    if (rc == GLOB_NOMATCH) fail("no token shards match %s", pattern);
    if (rc != 0) fail("cannot list token shards %s", pattern);
    if (g.gl_pathc > INT32_MAX) fail("too many shards match %s", pattern);
    l->num_shards = (int)g.gl_pathc;
    l->paths = malloc_or_fail((size_t)l->num_shards * sizeof(char *), "shard paths");
    l->shard_tokens = malloc_or_fail((size_t)l->num_shards * sizeof(int64_t), "shard sizes");
    int64_t need = (int64_t)B * T + 1;
    for (int s = 0; s < l->num_shards; s++) {
        const char *path = g.gl_pathv[s];
        size_t len = strlen(path);
        l->paths[s] = malloc_or_fail(len + 1, "shard path");
        memcpy(l->paths[s], path, len + 1);
        char err[1024];
        if (shard_validate(path, vocab_size, &l->shard_tokens[s], err, sizeof(err)) != 0) fail("%s", err);
        if (l->shard_tokens[s] < need)
            fail("%s has %lld tokens; one batch of B=%d x T=%d needs %lld", path,
                 (long long)l->shard_tokens[s], B, T, (long long)need);
        l->total_tokens += l->shard_tokens[s];
        // batches start at 0, B*T, 2*B*T, ... while B*T+1 tokens remain
        l->batches_per_epoch += (l->shard_tokens[s] - 1) / ((int64_t)B * T);
    }
    globfree(&g);
    l->buf = malloc_or_fail((size_t)need * sizeof(uint16_t), "batch tokens");
    l->file = NULL;
    l->file_shard = -1;
}

void token_loader_next(TokenLoader *l, int *inputs, int *targets) {
    int64_t bt = (int64_t)l->B * l->T;
    if (l->pos.offset + bt + 1 > l->shard_tokens[l->pos.shard]) {
        l->pos.offset = 0;
        if (++l->pos.shard == l->num_shards) {
            l->pos.shard = 0;
            l->pos.epoch++;
        }
    }
    const char *path = l->paths[l->pos.shard];
    if (l->file_shard != l->pos.shard) {
        if (l->file) fclose(l->file);
        l->file = fopen_or_fail(path, "rb");
        l->file_shard = l->pos.shard;
    }
    off_t at = (off_t)SHARD_HEADER_BYTES + (off_t)l->pos.offset * (off_t)sizeof(uint16_t);
    if (fseeko(l->file, at, SEEK_SET) != 0) fail("cannot seek in %s: %s", path, strerror(errno));
    fread_or_fail(l->buf, sizeof(uint16_t), (size_t)bt + 1, l->file, path);
    for (int64_t i = 0; i <= bt; i++) {
        // checked at init; a file replaced since then must not index past the embedding
        if (l->buf[i] >= l->vocab_size)
            fail("%s: token %d at position %lld is not below the vocabulary size %d (file changed while training?)",
                 path, l->buf[i], (long long)(l->pos.offset + i), l->vocab_size);
    }
    for (int64_t i = 0; i < bt; i++) {
        inputs[i] = l->buf[i];
        targets[i] = l->buf[i + 1];
    }
    l->pos.offset += bt;
}

void token_loader_reset(TokenLoader *l) {
    l->pos = (TokenLoaderPos){0, 0, 0};
}

TokenLoaderPos token_loader_get_pos(const TokenLoader *l) {
    return l->pos;
}

void token_loader_set_pos(TokenLoader *l, TokenLoaderPos pos) {
    if (pos.shard < 0 || pos.shard >= l->num_shards || pos.epoch < 0 || pos.offset < 0 ||
        pos.offset > l->shard_tokens[pos.shard])
        fail("token loader position (shard %lld, offset %lld, epoch %lld) does not fit the %d shard(s) of %lld tokens "
             "starting with %s", (long long)pos.shard, (long long)pos.offset, (long long)pos.epoch, l->num_shards,
             (long long)l->total_tokens, l->paths[0]);
    l->pos = pos;
}

void token_loader_free(TokenLoader *l) {
    if (l->file) fclose(l->file);
    for (int s = 0; s < l->num_shards; s++) free(l->paths[s]);
    free(l->paths);
    free(l->shard_tokens);
    free(l->buf);
    memset(l, 0, sizeof(*l));
}
