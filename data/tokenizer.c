// GPT-2 byte-level BPE. See tokenizer.h for the contract.
//
// Files (the original GPT-2 release):
//   encoder.json  {"token": id, ...}: 50257 tokens; a token's bytes are
//                 written as characters through GPT-2's byte<->unicode map
//                 (printable bytes stand for themselves, the other 68 bytes
//                 for U+0100..U+0143)
//   vocab.bpe     "#version: 0.2", then one merge "A B" per line, in rank order
#include "data/tokenizer.h"
#include "data/unicode_tables.h"
#include "common/utils.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LLMC_TOKENIZER_MAGIC 20240328u
#define LLMC_TOKENIZER_VERSION 2u

// ---------------------------------------------------------------------------
// Pre-tokenization

// class of a code point: UNICODE_LETTER (\p{L}), UNICODE_NUMBER (\p{N}),
// UNICODE_SPACE (\s) or UNICODE_OTHER
static inline int class_of(uint32_t cp) {
    if (cp < 128) {
        if ((uint32_t)((cp | 32) - 'a') < 26) return UNICODE_LETTER;
        if ((uint32_t)(cp - '0') < 10) return UNICODE_NUMBER;
        if (cp == ' ' || (cp >= 9 && cp <= 13)) return UNICODE_SPACE;
        return UNICODE_OTHER;
    }
    // last interval starting at or before cp (interval 0 starts at 0)
    int lo = 0, hi = UNICODE_INTERVALS - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (unicode_class_start[mid] <= cp) lo = mid; else hi = mid - 1;
    }
    return unicode_class_value[lo];
}

// The character at s[i] (i < n): sets its code point and returns its length
// in bytes. A byte that does not start a well-formed UTF-8 sequence (Unicode
// Table 3-7: no overlongs, no surrogates, nothing above U+10FFFF, no missing
// continuation bytes) is a character of its own, code point UTF8_INVALID.
static inline size_t decode_at(const unsigned char *s, size_t n, size_t i, uint32_t *code) {
    unsigned c = s[i];
    if (c < 0x80) { *code = c; return 1; }
    size_t left = n - i;
    uint32_t cp;
    size_t len;
    if (c >= 0xC2 && c <= 0xDF) {
        if (left < 2 || (s[i + 1] & 0xC0) != 0x80) goto invalid;
        cp = ((c & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu);
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        if (left < 3) goto invalid;
        unsigned c1 = s[i + 1], c2 = s[i + 2];
        unsigned lo = (c == 0xE0) ? 0xA0 : 0x80, hi = (c == 0xED) ? 0x9F : 0xBF;
        if (c1 < lo || c1 > hi || (c2 & 0xC0) != 0x80) goto invalid;
        cp = ((c & 0x0Fu) << 12) | ((c1 & 0x3Fu) << 6) | (c2 & 0x3Fu);
        len = 3;
    } else if (c >= 0xF0 && c <= 0xF4) {
        if (left < 4) goto invalid;
        unsigned c1 = s[i + 1], c2 = s[i + 2], c3 = s[i + 3];
        unsigned lo = (c == 0xF0) ? 0x90 : 0x80, hi = (c == 0xF4) ? 0x8F : 0xBF;
        if (c1 < lo || c1 > hi || (c2 & 0xC0) != 0x80 || (c3 & 0xC0) != 0x80) goto invalid;
        cp = ((c & 0x07u) << 18) | ((c1 & 0x3Fu) << 12) | ((c2 & 0x3Fu) << 6) | (c3 & 0x3Fu);
        len = 4;
    } else {
        goto invalid;
    }
    *code = cp;
    return len;
invalid:
    *code = UTF8_INVALID;
    return 1;
}

size_t utf8_char_at(const unsigned char *s, size_t n, size_t i, uint32_t *code) {
    return decode_at(s, n, i, code);
}

// The character at s[i]: its class ("other" for a byte of invalid UTF-8) and length.
static inline size_t char_at(const unsigned char *s, size_t n, size_t i, int *cls) {
    uint32_t cp;
    size_t len = decode_at(s, n, i, &cp);
    *cls = cp == UTF8_INVALID ? UNICODE_OTHER : class_of(cp);
    return len;
}

// One match of
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// at pos, alternatives tried in order as a backtracking regex engine would.
size_t tokenizer_next_piece(const unsigned char *s, size_t n, size_t pos) {
    // contractions: ASCII apostrophe and lower-case letters only
    if (s[pos] == '\'' && pos + 1 < n) {
        unsigned char a = s[pos + 1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return pos + 2;
        if (pos + 2 < n) {
            unsigned char b = s[pos + 2];
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return pos + 3;
        }
    }
    int cls;
    size_t i = pos + char_at(s, n, pos, &cls);
    // " ?X+": one ASCII space may lead a run of letters, numbers or other
    if (s[pos] == ' ' && i < n) {
        int next;
        size_t w = char_at(s, n, i, &next);
        if (next != UNICODE_SPACE) { cls = next; i += w; }
    }
    if (cls != UNICODE_SPACE) {
        while (i < n) {
            int c;
            size_t w = char_at(s, n, i, &c);
            if (c != cls) break;
            i += w;
        }
        return i;
    }
    // whitespace run [pos, i); last = start of its last character
    size_t last = pos;
    while (i < n) {
        int c;
        size_t w = char_at(s, n, i, &c);
        if (c != UNICODE_SPACE) break;
        last = i;
        i += w;
    }
    if (i == n) return n;        // \s+(?!\S) takes a run that ends the text
    if (last > pos) return last; // \s+(?!\S) leaves the last one to lead the next word
    return i;                    // \s+: a single whitespace before a non-space
}

// ---------------------------------------------------------------------------
// Tokenizer state

// merge table entry: pair (left id, right id) -> rank and merged id
typedef struct {
    uint64_t key; // (left << 32) | right; EMPTY_KEY if unused
    int32_t rank;
    int32_t merged;
} MergeSlot;
#define EMPTY_KEY UINT64_MAX

// cached encoding of one piece: bytes in cache_bytes, ids in cache_ids
typedef struct {
    uint64_t hash; // 0 if unused
    uint32_t key_off, ids_off;
    uint16_t key_len, n_ids;
} CacheSlot;
#define CACHE_SLOTS (1u << 17)
#define CACHE_BYTES (4u << 20)
#define CACHE_IDS (1u << 20)
#define CACHE_MAX_PIECE 255 // longer pieces are rare: encode without caching

// candidate merge of symbol `left` with its right neighbour
typedef struct {
    int32_t rank, left;
    int32_t left_id, right_id; // ids when pushed; stale if either has changed
} HeapItem;

struct Tokenizer {
    int vocab_size, eot;
    unsigned char *tok_bytes; // all tokens' bytes back to back
    uint32_t *tok_off;        // [vocab_size + 1]: token i is tok_bytes[tok_off[i] .. tok_off[i+1])
    // encoding: absent in a decode-only tokenizer
    int can_encode;
    int byte_token[256];      // id of each single byte
    MergeSlot *merges;        // open addressing, power-of-two size
    uint64_t merge_mask;
    CacheSlot *cache;
    size_t cache_used;
    unsigned char *cache_bytes;
    size_t cache_bytes_used;
    int *cache_ids;
    size_t cache_ids_used;
    // BPE scratch for one piece, grown to the longest piece seen
    int *sym_id, *sym_next, *sym_prev;
    HeapItem *heap;
    size_t scratch_cap;
};

static inline uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    return x;
}

// FNV-1a over bytes
static inline uint64_t hash_bytes(const unsigned char *p, size_t n) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 0x100000001B3ull; }
    return h;
}

static inline const MergeSlot *merge_find(const Tokenizer *t, int left, int right) {
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    for (uint64_t i = hash_u64(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const MergeSlot *m = &t->merges[i];
        if (m->key == key) return m;
        if (m->key == EMPTY_KEY) return NULL;
    }
}

// ---------------------------------------------------------------------------
// BPE of one piece

static void ensure_scratch(Tokenizer *t, size_t n) {
    if (n <= t->scratch_cap) return;
    if (n > INT32_MAX / 4) fail("a single pre-token of %zu bytes is too long to encode", n);
    size_t cap = t->scratch_cap ? t->scratch_cap : 64;
    while (cap < n) cap *= 2;
    free(t->sym_id); free(t->sym_next); free(t->sym_prev); free(t->heap);
    t->sym_id = malloc_or_fail(cap * sizeof(int), "BPE symbols");
    t->sym_next = malloc_or_fail(cap * sizeof(int), "BPE symbols");
    t->sym_prev = malloc_or_fail(cap * sizeof(int), "BPE symbols");
    // at most n-1 initial pairs plus two per merge
    t->heap = malloc_or_fail(3 * cap * sizeof(HeapItem), "BPE heap");
    t->scratch_cap = cap;
}

static inline int heap_less(const HeapItem *a, const HeapItem *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static inline void heap_push(HeapItem *h, size_t *size, HeapItem item) {
    size_t i = (*size)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(&item, &h[parent])) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = item;
}

static inline HeapItem heap_pop(HeapItem *h, size_t *size) {
    HeapItem top = h[0], last = h[--(*size)];
    size_t i = 0, n = *size;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (n > 0) h[i] = last;
    return top;
}

static inline void push_pair(const Tokenizer *t, HeapItem *heap, size_t *size, int left) {
    int right = t->sym_next[left];
    const MergeSlot *m = merge_find(t, t->sym_id[left], t->sym_id[right]);
    if (m) heap_push(heap, size, (HeapItem){m->rank, left, t->sym_id[left], t->sym_id[right]});
}

// GPT-2's BPE: repeatedly merge the pair of lowest rank, all its occurrences
// left to right. A heap ordered by (rank, position) visits merges in exactly
// that order because every merge's parts were made by earlier merges (checked
// at load), so a merge never creates a pair of lower rank than its own.
// Writes the ids to out (at most n) and returns their number.
static size_t bpe_piece(Tokenizer *t, const unsigned char *p, size_t n, int *out) {
    ensure_scratch(t, n);
    int *id = t->sym_id, *next = t->sym_next, *prev = t->sym_prev;
    int len = (int)n;
    for (int i = 0; i < len; i++) {
        id[i] = t->byte_token[p[i]];
        next[i] = i + 1 < len ? i + 1 : -1;
        prev[i] = i - 1;
    }
    size_t hsize = 0;
    for (int i = 0; i + 1 < len; i++) push_pair(t, t->heap, &hsize, i);
    while (hsize > 0) {
        HeapItem top = heap_pop(t->heap, &hsize);
        int left = top.left;
        if (id[left] != top.left_id) continue; // merged since (or dead: id -1)
        int right = next[left];                // unchanged while id[left] is
        if (right < 0 || id[right] != top.right_id) continue;
        id[left] = merge_find(t, top.left_id, top.right_id)->merged;
        id[right] = -1;
        next[left] = next[right];
        if (next[right] >= 0) prev[next[right]] = left;
        if (prev[left] >= 0) push_pair(t, t->heap, &hsize, prev[left]);
        if (next[left] >= 0) push_pair(t, t->heap, &hsize, left);
    }
    size_t k = 0;
    for (int i = 0; i >= 0; i = next[i]) out[k++] = id[i];
    return k;
}

static void cache_clear(Tokenizer *t) {
    memset(t->cache, 0, CACHE_SLOTS * sizeof(CacheSlot));
    t->cache_used = t->cache_bytes_used = t->cache_ids_used = 0;
}

// ids of one piece into out (room for n): from the cache, or by BPE
static size_t encode_piece(Tokenizer *t, const unsigned char *p, size_t n, int *out) {
    if (n == 1) { out[0] = t->byte_token[p[0]]; return 1; }
    if (n > CACHE_MAX_PIECE) return bpe_piece(t, p, n, out);
    uint64_t h = hash_bytes(p, n) | 1; // 0 marks an empty slot
    size_t mask = CACHE_SLOTS - 1, i = h & mask;
    for (; t->cache[i].hash != 0; i = (i + 1) & mask) {
        const CacheSlot *c = &t->cache[i];
        if (c->hash == h && c->key_len == n && memcmp(t->cache_bytes + c->key_off, p, n) == 0) {
            memcpy(out, t->cache_ids + c->ids_off, c->n_ids * sizeof(int));
            return c->n_ids;
        }
    }
    size_t k = bpe_piece(t, p, n, out);
    // a full cache starts over: simple, and the working set refills quickly
    if (t->cache_used >= CACHE_SLOTS / 2 || t->cache_bytes_used + n > CACHE_BYTES ||
        t->cache_ids_used + k > CACHE_IDS) {
        cache_clear(t);
        for (i = h & mask; t->cache[i].hash != 0; i = (i + 1) & mask) {}
    }
    CacheSlot *c = &t->cache[i];
    c->hash = h;
    c->key_off = (uint32_t)t->cache_bytes_used;
    c->key_len = (uint16_t)n;
    c->ids_off = (uint32_t)t->cache_ids_used;
    c->n_ids = (uint16_t)k;
    memcpy(t->cache_bytes + t->cache_bytes_used, p, n);
    memcpy(t->cache_ids + t->cache_ids_used, out, k * sizeof(int));
    t->cache_bytes_used += n;
    t->cache_ids_used += k;
    t->cache_used++;
    return k;
}

size_t tokenizer_encode(Tokenizer *t, const unsigned char *text, size_t len,
                        int **ids, size_t *count, size_t *capacity) {
    if (!t->can_encode) fail("this tokenizer was loaded from an llm.c tokenizer file and can only decode");
    if (!t->cache) { // 11 MB, so only tokenizers that encode pay for it
        t->cache = calloc_or_fail(CACHE_SLOTS, sizeof(CacheSlot), "tokenizer cache");
        t->cache_bytes = malloc_or_fail(CACHE_BYTES, "tokenizer cache");
        t->cache_ids = malloc_or_fail(CACHE_IDS * sizeof(int), "tokenizer cache");
    }
    size_t pos = 0;
    while (pos < len) {
        size_t end = tokenizer_next_piece(text, len, pos);
        size_t n = end - pos;
        // a piece of n bytes gives at most n ids
        if (*count + n > *capacity || *ids == NULL) {
            size_t cap = *capacity ? *capacity : 1024;
            while (cap < *count + n) cap *= 2;
            int *grown = realloc(*ids, cap * sizeof(int));
            if (!grown) fail("out of memory growing the token id array to %zu ids", cap);
            *ids = grown;
            *capacity = cap;
        }
        *count += encode_piece(t, text + pos, n, *ids + *count);
        pos = end;
    }
    return *count;
}

const unsigned char *tokenizer_decode(const Tokenizer *t, int id, size_t *len) {
    if (id < 0 || id >= t->vocab_size) { *len = 0; return NULL; }
    *len = t->tok_off[id + 1] - t->tok_off[id];
    return t->tok_bytes + t->tok_off[id];
}

int tokenizer_vocab_size(const Tokenizer *t) { return t->vocab_size; }
int tokenizer_eot(const Tokenizer *t) { return t->eot; }
int tokenizer_can_encode(const Tokenizer *t) { return t->can_encode; }

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    free(t->tok_bytes); free(t->tok_off);
    free(t->merges);
    free(t->cache); free(t->cache_bytes); free(t->cache_ids);
    free(t->sym_id); free(t->sym_next); free(t->sym_prev); free(t->heap);
    free(t);
}

// ---------------------------------------------------------------------------
// Loading GPT-2's files

static char *read_whole_file(const char *path, size_t *size) {
    FILE *f = fopen_or_fail(path, "rb");
    size_t n = file_size_or_fail(f, path);
    char *buf = malloc_or_fail(n + 1, path);
    if (n > 0) fread_or_fail(buf, 1, n, f, path);
    buf[n] = '\0';
    fclose(f);
    *size = n;
    return buf;
}

// GPT-2's byte <-> unicode map: bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF
// stand for themselves; the other 68 bytes, in order, for U+0100..U+0143
#define BYTE_CHARS 0x144
static void byte_unicode_maps(int char_to_byte[BYTE_CHARS]) {
    for (int c = 0; c < BYTE_CHARS; c++) char_to_byte[c] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        char_to_byte[printable ? b : 256 + extra++] = b;
    }
}

// decode a token written in GPT-2's byte-as-character form (UTF-8 text
// s[0..n)) into raw bytes; returns the byte count or -1 if malformed
static int token_from_chars(const unsigned char *s, size_t n, const int char_to_byte[BYTE_CHARS],
                            unsigned char *out, size_t out_cap) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        unsigned cp;
        if (c < 0x80) { cp = c; i += 1; }
        else if ((c & 0xE0) == 0xC0 && i + 1 < n && (s[i + 1] & 0xC0) == 0x80) {
            cp = ((c & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu);
            i += 2;
        } else return -1; // every byte character is below U+0800
        if (cp >= BYTE_CHARS || char_to_byte[cp] < 0 || k >= out_cap) return -1;
        out[k++] = (unsigned char)char_to_byte[cp];
    }
    return (int)k;
}

// bytes -> id, used while reading vocab.bpe
typedef struct {
    int32_t *slot; // token id or -1
    uint64_t mask;
} TokenIndex;

static int32_t *token_index_slot(TokenIndex *ix, const Tokenizer *t, const unsigned char *p, size_t n) {
    for (uint64_t i = hash_bytes(p, n) & ix->mask;; i = (i + 1) & ix->mask) {
        int32_t id = ix->slot[i];
        if (id < 0) return &ix->slot[i];
        size_t len = t->tok_off[id + 1] - t->tok_off[id];
        if (len == n && memcmp(t->tok_bytes + t->tok_off[id], p, n) == 0) return &ix->slot[i];
    }
}

#define MAX_TOKEN_BYTES 1024

static void load_encoder_json(Tokenizer *t, const char *path, const int char_to_byte[BYTE_CHARS]) {
    size_t size;
    char *text = read_whole_file(path, &size);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, size, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at ? (long)(at - text) : -1;
        fail("%s: malformed JSON near byte %ld", path, off);
    }
    // nothing but white space after the object (a key given twice shows up
    // below as an id used twice or two ids with the same bytes)
    while (end < text + size && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    if (end != text + size) fail("%s: unexpected text after the JSON value at byte %ld", path, (long)(end - text));
    if (!cJSON_IsObject(root)) fail("%s: expected a JSON object {\"token\": id, ...}", path);
    int n = cJSON_GetArraySize(root);
    if (n <= 256 || n > (1 << 24)) fail("%s: %d tokens; a byte-level BPE vocabulary needs more than 256", path, n);
    t->vocab_size = n;
    // tokens arrive in any id order: collect their bytes in file order first
    size_t cap = 16 * (size_t)n, used = 0;
    unsigned char *arena = malloc_or_fail(cap, "token bytes");
    size_t *src = malloc_or_fail((size_t)n * sizeof(size_t), "token offsets");
    int *lens = malloc_or_fail((size_t)n * sizeof(int), "token lengths");
    for (int i = 0; i < n; i++) lens[i] = -1;
    for (cJSON *item = root->child; item; item = item->next) {
        if (!cJSON_IsNumber(item)) fail("%s: the id of token \"%s\" is not a number", path, item->string);
        double v = item->valuedouble;
        if (v < 0 || v >= n || v != (double)(int)v)
            fail("%s: token \"%s\" has id %g, outside 0..%d", path, item->string, v, n - 1);
        int id = (int)v;
        if (lens[id] >= 0) fail("%s: id %d is used twice (token \"%s\")", path, id, item->string);
        if (used + MAX_TOKEN_BYTES > cap) {
            cap *= 2;
            unsigned char *grown = realloc(arena, cap);
            if (!grown) fail("out of memory reading %s", path);
            arena = grown;
        }
        int len = token_from_chars((const unsigned char *)item->string, strlen(item->string),
                                   char_to_byte, arena + used, MAX_TOKEN_BYTES);
        if (len <= 0) fail("%s: token \"%s\" is not written in GPT-2's byte-as-character form", path, item->string);
        src[id] = used;
        lens[id] = len;
        used += (size_t)len;
    }
    cJSON_Delete(root);
    free(text);
    t->tok_off = malloc_or_fail(((size_t)n + 1) * sizeof(uint32_t), "token offsets");
    t->tok_bytes = malloc_or_fail(used, "token bytes");
    size_t off = 0;
    for (int id = 0; id < n; id++) {
        t->tok_off[id] = (uint32_t)off;
        memcpy(t->tok_bytes + off, arena + src[id], (size_t)lens[id]);
        off += (size_t)lens[id];
    }
    t->tok_off[n] = (uint32_t)off;
    free(arena);
    free(src);
    free(lens);
}

static void load_vocab_bpe(Tokenizer *t, const char *path, const char *encoder_path,
                           const int char_to_byte[BYTE_CHARS]) {
    // bytes -> id for every token, and the id of each single byte
    TokenIndex ix;
    uint64_t slots = 1;
    while (slots < 2 * (uint64_t)t->vocab_size) slots *= 2;
    ix.mask = slots - 1;
    ix.slot = malloc_or_fail(slots * sizeof(int32_t), "token index");
    for (uint64_t i = 0; i < slots; i++) ix.slot[i] = -1;
    for (int id = 0; id < t->vocab_size; id++) {
        int32_t *s = token_index_slot(&ix, t, t->tok_bytes + t->tok_off[id], t->tok_off[id + 1] - t->tok_off[id]);
        if (*s >= 0) fail("%s: tokens %d and %d have the same bytes", encoder_path, *s, id);
        *s = id;
    }
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        t->byte_token[b] = *token_index_slot(&ix, t, &c, 1);
        if (t->byte_token[b] < 0) fail("%s: no token for the single byte 0x%02X", encoder_path, b);
    }
    const unsigned char eot[] = "<|endoftext|>";
    t->eot = *token_index_slot(&ix, t, eot, sizeof(eot) - 1);
    if (t->eot < 0) fail("%s: no <|endoftext|> token", encoder_path);

    size_t size;
    char *text = read_whole_file(path, &size);
    if (strncmp(text, "#version", 8) != 0) fail("%s: the first line should be '#version: ...'", path);
    uint64_t mslots = 1;
    while (mslots < 2 * (uint64_t)t->vocab_size) mslots *= 2;
    t->merge_mask = mslots - 1;
    t->merges = malloc_or_fail(mslots * sizeof(MergeSlot), "merge table");
    for (uint64_t i = 0; i < mslots; i++) t->merges[i].key = EMPTY_KEY;
    // rank of the merge that made each token (-1: a single byte, or never made)
    int32_t *made_at = malloc_or_fail((size_t)t->vocab_size * sizeof(int32_t), "merge ranks");
    for (int id = 0; id < t->vocab_size; id++) made_at[id] = -1;

    char *line = strchr(text, '\n');
    int lineno = 1, rank = 0;
    unsigned char a[MAX_TOKEN_BYTES], b[2 * MAX_TOKEN_BYTES];
    while (line && line[1] != '\0') {
        line++;
        lineno++;
        char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char *next = end;
        if (len == 0) { line = next; continue; }
        char *space = memchr(line, ' ', len);
        if (!space || space == line || space == line + len - 1 || memchr(space + 1, ' ', len - (size_t)(space + 1 - line)))
            fail("%s:%d: expected two tokens separated by one space", path, lineno);
        int la = token_from_chars((const unsigned char *)line, (size_t)(space - line), char_to_byte, a, sizeof(a));
        int lb = token_from_chars((const unsigned char *)space + 1, len - (size_t)(space + 1 - line), char_to_byte,
                                  b, MAX_TOKEN_BYTES);
        if (la <= 0 || lb <= 0) fail("%s:%d: not written in GPT-2's byte-as-character form", path, lineno);
        int left = *token_index_slot(&ix, t, a, (size_t)la);
        int right = *token_index_slot(&ix, t, b, (size_t)lb);
        memmove(b + la, b, (size_t)lb);
        memcpy(b, a, (size_t)la);
        int merged = *token_index_slot(&ix, t, b, (size_t)(la + lb));
        if (left < 0 || right < 0 || merged < 0)
            fail("%s:%d: the merge uses or makes a token that %s does not have", path, lineno, encoder_path);
        uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
        uint64_t i = hash_u64(key) & t->merge_mask;
        for (; t->merges[i].key != EMPTY_KEY; i = (i + 1) & t->merge_mask)
            if (t->merges[i].key == key) fail("%s:%d: the same merge appears twice", path, lineno);
        if ((uint64_t)rank + 1 >= mslots / 2) fail("%s: more merges than tokens", path);
        t->merges[i] = (MergeSlot){key, rank, merged};
        if (made_at[merged] < 0) made_at[merged] = rank;
        rank++;
        line = next;
    }
    if (rank == 0) fail("%s: no merges after the '#version' line; a BPE vocabulary needs them", path);
    // the heap in bpe_piece relies on merges coming in training order: a merge
    // only uses tokens that earlier merges made
    for (uint64_t i = 0; i < mslots; i++) {
        const MergeSlot *m = &t->merges[i];
        if (m->key == EMPTY_KEY) continue;
        int left = (int)(m->key >> 32), right = (int)(uint32_t)m->key;
        if (made_at[left] >= m->rank || made_at[right] >= m->rank)
            fail("%s: merge %d uses a token made by a later merge; merges must be in training order", path, m->rank + 1);
    }
    free(made_at);
    free(text);
    free(ix.slot);
}

Tokenizer *tokenizer_load(const char *dir) {
    char enc_path[1024], bpe_path[1024];
    if (snprintf(enc_path, sizeof(enc_path), "%s/encoder.json", dir) >= (int)sizeof(enc_path) ||
        snprintf(bpe_path, sizeof(bpe_path), "%s/vocab.bpe", dir) >= (int)sizeof(bpe_path))
        fail("tokenizer directory name too long: %s", dir);
    Tokenizer *t = calloc_or_fail(1, sizeof(Tokenizer), "tokenizer");
    int char_to_byte[BYTE_CHARS];
    byte_unicode_maps(char_to_byte);
    load_encoder_json(t, enc_path, char_to_byte);
    load_vocab_bpe(t, bpe_path, enc_path, char_to_byte);
    t->can_encode = 1;
    return t;
}

// ---------------------------------------------------------------------------
// llm.c's tokenizer file

void tokenizer_write_llmc(const Tokenizer *t, const char *path) {
    uint32_t header[256] = {0};
    header[0] = LLMC_TOKENIZER_MAGIC;
    header[1] = LLMC_TOKENIZER_VERSION;
    header[2] = (uint32_t)t->vocab_size;
    header[3] = (uint32_t)t->eot;
    AtomicFile af;
    atomic_open(&af, path);
    fwrite_or_fail(header, sizeof(uint32_t), 256, af.f, af.tmp_path);
    for (int id = 0; id < t->vocab_size; id++) {
        size_t len;
        const unsigned char *p = tokenizer_decode(t, id, &len);
        if (len == 0 || len > 255) {
            atomic_abort(&af);
            fail("%s: token %d has %zu bytes; the format allows 1..255", path, id, len);
        }
        unsigned char l = (unsigned char)len;
        fwrite_or_fail(&l, 1, 1, af.f, af.tmp_path);
        fwrite_or_fail(p, 1, len, af.f, af.tmp_path);
    }
    atomic_commit(&af);
}

Tokenizer *tokenizer_from_tokens(const unsigned char *bytes, const uint32_t *off, int n) {
    static const char eot_text[] = "<|endoftext|>";
    size_t eot_len = sizeof(eot_text) - 1, total = off[n];
    Tokenizer *t = calloc_or_fail(1, sizeof(Tokenizer), "tokenizer");
    t->vocab_size = n + 1;
    t->eot = n;
    t->tok_off = malloc_or_fail(((size_t)n + 2) * sizeof(uint32_t), "token offsets");
    t->tok_bytes = malloc_or_fail(total + eot_len, "token bytes");
    memcpy(t->tok_off, off, ((size_t)n + 1) * sizeof(uint32_t));
    memcpy(t->tok_bytes, bytes, total);
    memcpy(t->tok_bytes + total, eot_text, eot_len);
    t->tok_off[n + 1] = (uint32_t)(total + eot_len);
    t->can_encode = 0;
    return t;
}

Tokenizer *tokenizer_bytes(void) {
    unsigned char bytes[256];
    uint32_t off[257];
    for (int b = 0; b < 256; b++) {
        bytes[b] = (unsigned char)b;
        off[b] = (uint32_t)b;
    }
    off[256] = 256;
    return tokenizer_from_tokens(bytes, off, 256);
}

Tokenizer *tokenizer_load_llmc(const char *path) {
    FILE *f = fopen_or_fail(path, "rb");
    size_t size = file_size_or_fail(f, path);
    uint32_t header[256];
    if (size < sizeof(header)) fail("%s is truncated: %zu bytes, shorter than the 1024-byte header", path, size);
    fread_or_fail(header, sizeof(uint32_t), 256, f, path);
    if (header[0] != LLMC_TOKENIZER_MAGIC)
        fail("%s: not an llm.c tokenizer file (magic %u, expected %u)", path, header[0], LLMC_TOKENIZER_MAGIC);
    if (header[1] != LLMC_TOKENIZER_VERSION)
        fail("%s: unsupported tokenizer file version %u (expected %u)", path, header[1], LLMC_TOKENIZER_VERSION);
    uint32_t n = header[2], eot = header[3];
    if (n == 0 || n > (1u << 24)) fail("%s: implausible vocabulary size %u", path, n);
    if (eot >= n) fail("%s: EOT id %u is outside the vocabulary of %u tokens", path, eot, n);
    size_t body = size - sizeof(header);
    // each token takes at least 2 bytes (its length and one byte): a header
    // announcing more than the file can hold is refused before the tables are
    // allocated (a 1 KiB file could ask for 64 MiB of offsets)
    if ((uint64_t)n * 2 > body)
        fail("%s is truncated: %u tokens need at least %llu bytes after the header, it has %zu", path, n,
             (unsigned long long)n * 2, body);
    unsigned char *raw = malloc_or_fail(body, "tokenizer file");
    if (body > 0) fread_or_fail(raw, 1, body, f, path);
    fclose(f);

    Tokenizer *t = calloc_or_fail(1, sizeof(Tokenizer), "tokenizer");
    t->vocab_size = (int)n;
    t->eot = (int)eot;
    t->tok_off = malloc_or_fail(((size_t)n + 1) * sizeof(uint32_t), "token offsets");
    t->tok_bytes = malloc_or_fail(body, "token bytes");
    size_t at = 0, off = 0;
    for (uint32_t id = 0; id < n; id++) {
        if (at >= body) fail("%s is truncated: it ends before token %u of %u", path, id, n);
        size_t len = raw[at++];
        if (len == 0) fail("%s: token %u has length 0", path, id);
        if (at + len > body) fail("%s is truncated: it ends inside token %u of %u", path, id, n);
        t->tok_off[id] = (uint32_t)off;
        memcpy(t->tok_bytes + off, raw + at, len);
        off += len;
        at += len;
    }
    t->tok_off[n] = (uint32_t)off;
    if (at != body) fail("%s: %zu unexpected bytes after the last token", path, body - at);
    free(raw);
    t->can_encode = 0;
    return t;
}
