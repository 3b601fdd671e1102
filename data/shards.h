// Token shards in llm.c's format (and nanoGPT's header-less .bin), and the data
// loader the GPT-2 trainer reads batches from.
//
// Shard file (little-endian):
//   int32 header[256]: [0] = 20240520 (magic), [1] = 1 (version),
//                      [2] = number of tokens N, the rest 0
//   uint16 tokens[N]
// nanoGPT's train.bin / val.bin (--data-format nanogpt): uint16 tokens only.
//
// The loader follows llm.c's DataLoader. A shard's batches ("samples" in
// llm.c) are the windows of B*T+1 tokens starting at 0, B*T, 2*B*T, ... while
// B*T+1 tokens remain (inputs = the first B*T, targets = the same shifted by
// one). Unshuffled, the loader serves the shards in sorted glob order and each
// shard's batches in file order; after the last shard a new epoch begins.
// Shuffled (llm.c's default for training), an MT19937 seeded with the shuffle
// seed (llm.c: 42) permutes the shard order in place at the start of every
// epoch, and each shard's batch order afresh (from the identity) when the
// loader enters that shard, with llm.c's Fisher-Yates (common/mt19937.h); the
// draws happen in exactly llm.c's sequence, so the order is llm.c's.
//
// Memory does not grow with the data: the loader holds one open file, one batch
// of B*T+1 tokens, the shard order and one shard's batch order (4 bytes per
// batch of the largest shard, only when shuffling). Opening checks each shard's
// header and size; token ids are checked as each batch is read, and an id at
// or above the vocabulary size fails with one line naming the file and the
// token's position and byte offset.
#ifndef DATA_SHARDS_H
#define DATA_SHARDS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/mt19937.h"

#define SHARD_MAGIC 20240520
#define SHARD_VERSION 1
#define SHARD_HEADER_INTS 256
#define SHARD_HEADER_BYTES (SHARD_HEADER_INTS * 4)

// write tokens[0..count) as one shard, atomically (temporary file + rename)
void shard_write(const char *path, const uint16_t *tokens, size_t count);

// Check one shard: header, that the size matches the token count, and that
// every id is below vocab_size. Returns 0 and sets *ntokens, or -1 with a
// one-line message naming the file in err.
int shard_validate(const char *path, int vocab_size, int64_t *ntokens, char *err, size_t errlen);

// file layouts the loader reads
typedef enum { SHARD_FORMAT_LLMC = 0, SHARD_FORMAT_NANOGPT = 1 } ShardFormat;

// Check one file's layout without reading its tokens: header and size for
// llm.c shards, an even size for nanoGPT's. Returns 0 and sets *ntokens, or -1
// with a one-line message naming the file in err.
int shard_check_layout(const char *path, ShardFormat format, int64_t *ntokens, char *err, size_t errlen);

// Where the next batch comes from; save it in a checkpoint to resume exactly.
// With shuffling, shard and batch count positions in this epoch's orders.
typedef struct {
    int64_t epoch;  // passes completed over all shards
    int64_t shard;  // the shard being read: the shard-th of this epoch's order
    int64_t batch;  // the next batch: the batch-th of that shard's order
} TokenLoaderPos;

typedef struct {
    ShardFormat format;
    int shuffle;           // llm.c's per-epoch shuffling of shards and batches
    uint32_t shuffle_seed; // llm.c: 42 (+ the process rank)
} TokenLoaderOptions;

typedef struct {
    int B, T, vocab_size;
    TokenLoaderOptions opt;
    int num_shards;
    char **paths;             // [num_shards], sorted
    int64_t *shard_tokens;    // [num_shards]
    int64_t *shard_batches;   // [num_shards]: (tokens - 1) / (B*T)
    int64_t max_shard_batches;
    int64_t total_tokens;     // over all shards
    int64_t batches_per_epoch;
    TokenLoaderPos pos;
    // private
    Mt19937 rng;              // the shuffle generator, at pos
    uint32_t *shard_order;    // [num_shards]: this epoch's order of shards
    uint32_t *batch_order;    // [max_shard_batches] when shuffling: the current shard's order of batches
    int fd;                   // the shard being read, -1 if none
    int64_t fd_shard;         // its index in paths
    uint16_t *buf;            // [B*T+1]
} TokenLoader;

// pattern: a glob of one or more shards (e.g. "data/bible/bible_train_*.bin").
// token_loader_init reads llm.c shards in order; token_loader_open takes options.
void token_loader_init(TokenLoader *l, const char *pattern, int B, int T, int vocab_size);
void token_loader_open(TokenLoader *l, const char *pattern, int B, int T, int vocab_size,
                       const TokenLoaderOptions *opt);
// inputs and targets are [B, T] (row-major) token ids; no allocation
void token_loader_next(TokenLoader *l, int *inputs, int *targets);
// back to the first batch of epoch 0 (the shuffle generator reseeded)
void token_loader_reset(TokenLoader *l);
TokenLoaderPos token_loader_get_pos(const TokenLoader *l);
// fails with one line if pos does not fit these shards; replays the shuffle
// generator from the seed up to pos (a few draws per batch of the data seen)
void token_loader_set_pos(TokenLoader *l, TokenLoaderPos pos);
// bytes the loader holds for batches of B x T: the batch and the orders
size_t token_loader_bytes(int64_t max_shard_tokens, int num_shards, int B, int T, int shuffle);
void token_loader_free(TokenLoader *l);

#endif
