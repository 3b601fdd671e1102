/*
GPT-2 training on the CPU, in one file: the parameters, the forward and
backward passes, token-by-token sampling with a KV cache, and the run: its
text, data and evaluations, handed to the training loop (run/train.h) as
hooks. The layers live in nn/ (shared with train_vit.c), the optimizers in
optim/ (one is compiled in: make train_gpt2 OPTIM=adamw|sgdm|sgd_sai|sinkgd|slimadam),
the run machinery (flags, schedule, logs, checkpoints, the loop) in run/, data
in data/, this trainer's own flags in train_gpt2_flags.h.

Model checkpoints use llm.c's format, so llm.c's tools can read them:
256 int32 header (magic 20240326, version 3 = fp32, maxT, V, L, NH, C, Vp),
then every parameter tensor as fp32 in the order of ParameterTensors below.
*/
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/profile.h"
#include "common/rng.h"
#include "common/bf16.h"
#include "common/utils.h"
#include "nn/layers.h"
#include "nn/matmul.h"
#include "optim/optim.h"
#include "run/model.h"

// ----------------------------------------------------------------------------
// the model

typedef struct {
    int max_seq_len;       // maxT, e.g. 1024
    int vocab_size;        // V, 50257
    int padded_vocab_size; // Vp, V rounded up to a multiple of 128 (fast matmuls)
    int num_layers;        // L
    int num_heads;         // NH
    int channels;          // C
} GPT2Config;

// The parameters, in checkpoint order; all live in one contiguous buffer.
#define NUM_PARAMETER_TENSORS (4 + LAYER_TENSORS)
typedef struct {
    float *wte;          // (Vp, C) token embedding, also the LM head (tied); rows V..Vp-1 are padding
    float *wpe;          // (maxT, C) position embedding
    LayerTensors layers; // the L transformer layers' twelve tensors (run/model.h)
    float *lnfw;         // (C) final LayerNorm
    float *lnfb;         // (C)
} ParameterTensors;

// The parameters in checkpoint order, each tensor's size for this
// configuration and where its pointer lives in ParameterTensors (run/model.h);
// returns their floats.
static size_t gpt2_param_tensors(TensorList *l, const GPT2Config *cfg) {
    size_t Vp = cfg->padded_vocab_size, C = cfg->channels, maxT = cfg->max_seq_len;
    tensors_begin(l, "the GPT-2 parameters");
    tensor_add(l, offsetof(ParameterTensors, wte), Vp, C);
    tensor_add(l, offsetof(ParameterTensors, wpe), maxT, C);
    layer_tensors_add(l, offsetof(ParameterTensors, layers), cfg->num_layers, C);
    tensor_add(l, offsetof(ParameterTensors, lnfw), C, 1);
    tensor_add(l, offsetof(ParameterTensors, lnfb), C, 1);
    return tensors_total(l, 0);
}

// The activations of a forward pass that backward needs, for a batch (B,T).
// Compared with llm.c we keep no pre-softmax scores and no attention weights
// (only their logsumexp per query: B*NH*T floats a layer, not B*NH*T*T), no attention-projection
// or MLP-projection outputs (they only feed a residual sum), no LayerNorm
// outputs (backward recomputes them from x, mean and rstd), no GELU outputs
// (backward recomputes them from fch), and no logits of the whole batch (see
// HeadScratch). At 124M B4 T1024 that is 3.2 GiB less than llm.c's.
typedef struct {
    float *encoded;          // (B, T, C) token + position embedding
    LayerActivations layers; // the L layers' (run/model.h), without their LayerNorm and GELU outputs
    float *lnf_mean;         // (B, T) the final LayerNorm's statistics (its output is recomputed too)
    float *lnf_rstd;         // (B, T)
    float *losses;           // (B, T) each token's loss, of the last forward with targets
} ActivationTensors;

// The LM head works on R = min(B*T, matmul_k_block()) rows at a time, so that
// R x Vp logits exist instead of B*T x Vp (0.77 GiB at 124M B4 T1024). With
// one chunk (B*T <= R) the logits buffer keeps the batch's probabilities for
// backward, as llm.c does. With several, a training forward does the head's
// backward chunk by chunk right after each chunk's loss (gpt2_forward_train),
// leaving its gradients for gpt2_backward in head.dwte and in
// scratch.scratch, which backward does not otherwise use. The layers'
// buffers (LayerScratch, run/model.h) come before these in one allocation;
// scratch.ln holds the final LayerNorm's output after a forward.
typedef struct {
    float *logits; // (R, Vp) a chunk's logits, then probabilities, then their gradient
    float *dwte;   // (Vp, C) with several head chunks: the head's wte gradient for a mean loss (else none)
} HeadScratch;

typedef struct {
    GPT2Config config;
    ParameterTensors params, grads; // grads: see ModelMemory.fused
    ActivationTensors acts;
    LayerScratch scratch;
    HeadScratch head;
    ModelMemory mem;         // the buffers all of the above point into (run/model.h); its
                             // num_parameters counts wte's padding rows (storage)
    int batch_size, seq_len; // (B, T) the buffers were allocated for
    int fwd_B, fwd_T;        // the shape of the last forward (a smaller one is allowed, for evaluation)
    int *inputs, *targets;   // (fwd_B, fwd_T) of the last forward
    float mean_loss;         // of the last forward with targets
    int have_dlogits;        // one head chunk: backward has turned the last forward's probabilities into dlogits
    int have_head_grads;     // several head chunks: scratch.scratch and head.dwte hold the last forward's head gradients
} GPT2;

// ----------------------------------------------------------------------------
// the parameter blocks the optimizer sees: one per tensor per layer

// The block of layer l's k-th tensor (LayerTensors order), and of the final
// LayerNorm: wte and wpe come first, then 12 blocks per layer, then lnf.
static inline int gpt2_layer_block(int l, int k) { return 2 + LAYER_TENSORS * l + k; }
static inline int gpt2_lnf_block(const GPT2Config *c) { return gpt2_layer_block(c->num_layers, 0); }

// Returns the number of blocks written to out (NULL: just count). Offsets
// come from the configuration alone, so the memory plan has the blocks before
// anything is allocated.
static int gpt2_param_blocks(const GPT2Config *cfg, ParamBlock *out) {
    int C = cfg->channels, L = cfg->num_layers;
    TensorList tensors;
    size_t off[NUM_PARAMETER_TENSORS];
    gpt2_param_tensors(&tensors, cfg);
    tensor_offsets(&tensors, off);
    int n = 0;
    // wte's padding rows V..Vp-1 are storage, not parameters: the block is its first V rows
    n = add_param_block(out, n, "wte", ROLE_TOKEN_EMBEDDING, 2, cfg->vocab_size, C, off[0]);
    n = add_param_block(out, n, "wpe", ROLE_POSITION_EMBEDDING, 2, cfg->max_seq_len, C, off[1]);
    for (int l = 0; l < L; l++) n = add_layer_param_blocks(out, n, l, C, off + 2);
    n = add_param_block(out, n, "lnfw", ROLE_NORM, 1, C, 1, off[2 + LAYER_TENSORS]);
    n = add_param_block(out, n, "lnfb", ROLE_NORM, 1, C, 1, off[3 + LAYER_TENSORS]);
    return n;
}

// ----------------------------------------------------------------------------
// building the model: from a checkpoint, or randomly initialised

// The largest model a checkpoint may describe: far beyond GPT-2's (maxT 1024,
// V 50257, L 48, C 1600), small enough that every size and int index derived
// from them fits.
#define GPT2_MAX_SEQ_LEN (1 << 20)
#define GPT2_MAX_VOCAB (1 << 24)

// Every field in range, named in the error (with "header field" when the
// config comes from a checkpoint's header).
static void gpt2_check_config(const GPT2Config *c, const char *source, int from_header) {
#define FIELD(name, value, lo, hi) check_config_field(source, from_header, name, value, lo, hi)
    FIELD("maxT", c->max_seq_len, 1, GPT2_MAX_SEQ_LEN);
    FIELD("V", c->vocab_size, 1, GPT2_MAX_VOCAB);
    check_layer_config(source, from_header, c->num_layers, c->channels, c->num_heads);
    FIELD("Vp", c->padded_vocab_size, c->vocab_size, GPT2_MAX_VOCAB);
#undef FIELD
}

#define GPT2_CHECKPOINT_MAGIC 20240326
#define GPT2_CHECKPOINT_VERSION 3      // fp32 parameters
#define GPT2_CHECKPOINT_VERSION_BF16 5 // bf16 parameters, llm.c's GPU trainer's default; else as version 3

// The configuration's fields in the order of the checkpoint header (ints 2..7).
#define GPT2_HEADER_FIELDS 6
static void gpt2_header_fields(GPT2Config *c, int *fields[GPT2_HEADER_FIELDS]) {
    int *f[GPT2_HEADER_FIELDS] = {&c->max_seq_len, &c->vocab_size, &c->num_layers, &c->num_heads, &c->channels,
                                  &c->padded_vocab_size};
    memcpy(fields, f, sizeof(f));
}

// The 256-int header of llm.c's checkpoint format, for either version.
static void gpt2_checkpoint_header(const GPT2Config *config, int version, int header[CHECKPOINT_HEADER_INTS]) {
    GPT2Config c = *config;
    int *fields[GPT2_HEADER_FIELDS];
    gpt2_header_fields(&c, fields);
    checkpoint_header_write(header, GPT2_CHECKPOINT_MAGIC, version, fields, GPT2_HEADER_FIELDS);
}

// A model of this configuration, its parameters allocated (zeroed), nothing else.
static void gpt2_allocate_parameters(GPT2 *model, const GPT2Config *config) {
    *model = (GPT2){.config = *config};
    gpt2_param_tensors(&model->mem.param_list, config);
    gpt2_checkpoint_header(config, GPT2_CHECKPOINT_VERSION, model->mem.header);
    model_alloc_params(&model->mem, &model->params, "GPT-2");
}

// Open a checkpoint and read its configuration, checked against the file's
// size; the file is left positioned at the parameters. Returns the version.
static int gpt2_open_checkpoint_version(const char *path, GPT2Config *c, FILE **out) {
    int header[CHECKPOINT_HEADER_INTS];
    FILE *f = checkpoint_open(path, header, GPT2_CHECKPOINT_MAGIC, "GPT-2");
    int version = header[1];
    if (version != GPT2_CHECKPOINT_VERSION && version != GPT2_CHECKPOINT_VERSION_BF16)
        fail("%s has version %d; this trainer reads versions %d (fp32) and %d (bf16)", path, version,
             GPT2_CHECKPOINT_VERSION, GPT2_CHECKPOINT_VERSION_BF16);
    int *fields[GPT2_HEADER_FIELDS];
    gpt2_header_fields(c, fields);
    checkpoint_header_read(header, fields, GPT2_HEADER_FIELDS);
    gpt2_check_config(c, path, 1);
    // the size the header describes must be the file's, before any allocation
    TensorList params;
    size_t value_bytes = version == GPT2_CHECKPOINT_VERSION_BF16 ? sizeof(uint16_t) : sizeof(float);
    checkpoint_check_size(f, path, gpt2_param_tensors(&params, c), value_bytes);
    *out = f;
    return version;
}

static FILE *gpt2_open_checkpoint(const char *path, GPT2Config *c) {
    FILE *f;
    gpt2_open_checkpoint_version(path, c, &f);
    return f;
}

// the configuration of a checkpoint, before anything is allocated (the memory plan)
void gpt2_read_checkpoint_config(const char *path, GPT2Config *c) {
    fclose(gpt2_open_checkpoint(path, c));
}

// bf16 values are read (and written) this many at a time through a small buffer
#define BF16_CHUNK 65536

void gpt2_build_from_checkpoint(GPT2 *model, const char *path) {
    GPT2Config config;
    FILE *f;
    int version = gpt2_open_checkpoint_version(path, &config, &f);
    gpt2_allocate_parameters(model, &config);
    if (version == GPT2_CHECKPOINT_VERSION) {
        fread_or_fail(model->mem.params_memory, sizeof(float), model->mem.num_parameters, f, path);
    } else {  // bf16 -> fp32 master weights: exact (the low 16 bits are 0)
        uint16_t *buf = malloc_or_fail(BF16_CHUNK * sizeof(uint16_t), "bf16 read buffer");
        for (size_t i = 0; i < model->mem.num_parameters; i += BF16_CHUNK) {
            size_t n = model->mem.num_parameters - i < BF16_CHUNK ? model->mem.num_parameters - i : BF16_CHUNK;
            fread_or_fail(buf, sizeof(uint16_t), n, f, path);
            for (size_t j = 0; j < n; j++) model->mem.params_memory[i + j] = float_from_bf16(buf[j]);
        }
        free(buf);
        printf("model: %s holds bf16 parameters (version %d), widened to fp32\n", path, version);
    }
    fclose(f);
}

// GPT-2's initialisation (as nanoGPT/llm.c): weights and embeddings from
// N(0, 0.02), the two projections into the residual stream (attention output,
// MLP down) from N(0, 0.02/sqrt(2L)) so the residual's variance does not grow
// with depth; biases 0, LayerNorm gains 1. wte's padding rows stay 0.
void gpt2_build_random(GPT2 *model, const GPT2Config *config, uint64_t seed) {
    gpt2_check_config(config, "model", 0);
    gpt2_allocate_parameters(model, config);
    const GPT2Config *c = &model->config;
    size_t C = c->channels, L = c->num_layers;
    float residual_std = 0.02f / sqrtf(2.0f * (float)L);
    ParameterTensors *p = &model->params;
    Rng rng;
    rng_seed(&rng, seed);
    for (size_t i = 0; i < (size_t)c->vocab_size * C; i++) p->wte[i] = 0.02f * rng_normal(&rng);
    for (size_t i = 0; i < (size_t)c->max_seq_len * C; i++) p->wpe[i] = 0.02f * rng_normal(&rng);
    layer_tensors_init(&p->layers, L, C, residual_std, &rng);
    for (size_t i = 0; i < C; i++) p->lnfw[i] = 1.0f;
    // biases and LayerNorm biases are already 0 (alloc_big zeroes)
}

// A new model by name, as llm.c names them: "d<L>" or "gpt2:d<L>". The depths
// of llm.c's table are its GPT-2 sizes; a shallower model (d1..d11, e.g. the
// d4 of make train) follows llm.c's rule for those, C = 64 L and L heads.
// Anything else is refused with the list, so that an llm.c command never
// builds another model than llm.c would. maxT 1024, GPT-2's vocabulary.
static const struct { int layers, channels, heads; const char *name; } GPT2_SIZES[] = {
    {6, 384, 6, "gpt2-tiny, 30M"},   {12, 768, 12, "GPT-2 small, 124M"}, {24, 1024, 16, "GPT-2 medium, 350M"},
    {36, 1280, 20, "GPT-2 large, 774M"}, {48, 1600, 25, "GPT-2 XL, 1558M"}, {60, 1920, 30, "2.7B"},
};
#define NUM_GPT2_SIZES ((int)(sizeof(GPT2_SIZES) / sizeof(GPT2_SIZES[0])))

// Returns 0 if spec is not a model name (then it is a checkpoint path).
int gpt2_config_from_depth(GPT2Config *c, const char *spec) {
    const char *d = strncmp(spec, "gpt2:", 5) == 0 ? spec + 5 : spec;
    if (d[0] != 'd' || d[1] < '0' || d[1] > '9') {
        if (d != spec) fail("flag -e: %s: llm.c's form is gpt2:d<layers>, e.g. gpt2:d12", spec);
        return 0;
    }
    char *end;
    long depth = strtol(d + 1, &end, 10);
    if (*end != '\0') return 0;
    c->num_layers = 0;
    for (int i = 0; i < NUM_GPT2_SIZES; i++) if (GPT2_SIZES[i].layers == depth) {
        c->num_layers = GPT2_SIZES[i].layers;
        c->channels = GPT2_SIZES[i].channels;
        c->num_heads = GPT2_SIZES[i].heads;
    }
    if (c->num_layers == 0 && depth >= 1 && depth < 12) {
        c->num_layers = (int)depth;
        c->channels = 64 * (int)depth;
        c->num_heads = (int)depth;
    }
    if (c->num_layers == 0) {
        char list[256] = "";
        for (int i = 0; i < NUM_GPT2_SIZES; i++)
            snprintf(list + strlen(list), sizeof(list) - strlen(list), "%sd%d", i ? ", " : "", GPT2_SIZES[i].layers);
        fail("flag -e: %s is not a GPT-2 size; llm.c's are %s, and d1..d11 (C = 64 L, L heads)", spec, list);
    }
    c->max_seq_len = 1024;
    c->vocab_size = 50257;
    c->padded_vocab_size = 50304;
    return 1;
}

// llm.c's version 5: the header and tensor order of version 3, each parameter
// rounded to bf16 (nearest, ties to even) and stored as 2 bytes; written
// atomically. For llm.c and other readers: this trainer resumes from fp32.
void gpt2_save_checkpoint_bf16(const GPT2 *model, const char *path) {
    int header[CHECKPOINT_HEADER_INTS];
    gpt2_checkpoint_header(&model->config, GPT2_CHECKPOINT_VERSION_BF16, header);
    AtomicFile af;
    atomic_open(&af, path);
    fwrite_or_fail(header, sizeof(int), CHECKPOINT_HEADER_INTS, af.f, af.tmp_path);
    uint16_t *buf = malloc_or_fail(BF16_CHUNK * sizeof(uint16_t), "bf16 write buffer");
    for (size_t i = 0; i < model->mem.num_parameters; i += BF16_CHUNK) {
        size_t n = model->mem.num_parameters - i < BF16_CHUNK ? model->mem.num_parameters - i : BF16_CHUNK;
        for (size_t j = 0; j < n; j++) buf[j] = bf16_from_float(model->mem.params_memory[i + j]);
        fwrite_or_fail(buf, sizeof(uint16_t), n, af.f, af.tmp_path);
    }
    free(buf);
    atomic_commit(&af);
}

// the rows of one LM head chunk (see HeadScratch) for a batch of BT tokens
static size_t gpt2_head_rows(size_t BT) {
    size_t k = (size_t)matmul_k_block();
    return BT < k ? BT : k;
}

// The activation tensors and the scratch for batches of (B, T), each
// tensor's size and where its pointer lives in GPT2 (for the allocation and
// the memory plan).
static void gpt2_activation_tensors(TensorList *acts, TensorList *scratch, const GPT2Config *c, int B, int T) {
    if (T > c->max_seq_len) fail("sequence length %d exceeds the model's maximum %d", T, c->max_seq_len);
    size_t L = c->num_layers, NH = c->num_heads, C = c->channels, Vp = c->padded_vocab_size;
    tensors_begin(acts, "the GPT-2 activations for B %d x T %d", B, T);
    size_t BT = mul_size_or_fail((size_t)B, (size_t)T, acts->what);
    tensor_add(acts, offsetof(GPT2, acts.encoded), BT, C);
    layer_activations_add(acts, offsetof(GPT2, acts.layers), L, (size_t)B, (size_t)T, C, NH, 0);
    tensor_add(acts, offsetof(GPT2, acts.lnf_mean), BT, 1);
    tensor_add(acts, offsetof(GPT2, acts.lnf_rstd), BT, 1);
    tensor_add(acts, offsetof(GPT2, acts.losses), BT, 1);
    size_t R = gpt2_head_rows(BT), chunked = R < BT;
    tensors_begin(scratch, "the GPT-2 layer buffers for B %d x T %d", B, T);
    layer_scratch_add(scratch, offsetof(GPT2, scratch), BT, C, 0);
    tensor_add(scratch, offsetof(GPT2, head.logits), R, Vp);
    tensor_add(scratch, offsetof(GPT2, head.dwte), chunked ? Vp : 0, C);
}

// The gradient buffer, before training (see ModelMemory.fused).
void gpt2_allocate_gradients(GPT2 *model, int fused) { model_alloc_grads(&model->mem, &model->grads, fused, "GPT-2"); }

// Activation and scratch buffers for batches of (B, T): allocated once, before training.
void gpt2_allocate_activations(GPT2 *model, int B, int T) {
    TensorList acts, scratch;
    gpt2_activation_tensors(&acts, &scratch, &model->config, B, T);
    model_alloc_activations(&model->mem, model, &acts, &scratch, "GPT-2", "GPT-2 layer buffers");
    model->inputs = malloc_or_fail((size_t)B * T * sizeof(int), "inputs");
    model->targets = malloc_or_fail((size_t)B * T * sizeof(int), "targets");
    model->batch_size = B;
    model->seq_len = T;
}

void gpt2_free(GPT2 *model) {
    model_memory_free(&model->mem);
    free(model->inputs);
    free(model->targets);
}

// ----------------------------------------------------------------------------
// forward and backward

// token + position embedding: out[b,t,:] = wte[inp[b,t],:] + wpe[t,:]
static void encoder_forward(float *out, const int *inp, const float *wte, const float *wpe, int B, int T, int C) {
    profile_begin(PROFILE_EMBEDDING, 0);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *o = out + ((size_t)b * T + t) * C;
            const float *we = wte + (size_t)inp[b * T + t] * C;
            const float *pe = wpe + (size_t)t * C;
            for (int c = 0; c < C; c++) o[c] = we[c] + pe[c];
        }
    }
    profile_end();
}

// dout (B,T,C) -> dwte +=, dwpe +=. A token can occur many times, so the rows
// of dwte collect sums; threads split the channels, never the positions, so
// each sum runs in position order.
static void encoder_backward(float *dwte, float *dwpe, const float *dout, const int *inp, int B, int T, int C) {
    profile_begin(PROFILE_EMBEDDING, 0);
    #pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += 16) {
        int c1 = c0 + 16 < C ? c0 + 16 : C;
        for (int b = 0; b < B; b++) {
            for (int t = 0; t < T; t++) {
                const float *d = dout + ((size_t)b * T + t) * C;
                float *dwt = dwte + (size_t)inp[b * T + t] * C;
                float *dwp = dwpe + (size_t)t * C;
                for (int c = c0; c < c1; c++) { dwt[c] += d[c]; dwp[c] += d[c]; }
            }
        }
    }
    profile_end();
}

// The LM head and the loss, written directly: lnf (BT, C) -> logits (BT, Vp)
// = lnf @ wte^T (the head is wte, tied; the padding rows give 0). With
// targets (BT), logits become probabilities and losses (BT) their
// cross-entropies; with dlnf and dwte too, probabilities become dlogits for
// the mean loss and the head's backward gives dlnf (BT, C) and dwte (Vp, C)
// (both overwritten). The reference that gpt2_head_forward_backward is held
// to (test_gpt2); gpt2_logits computes the full logits with it.
void gpt2_head_ref(float *logits, float *losses, float *dlnf, float *dwte, const float *lnf, const float *wte,
                   const int *targets, int BT, int C, int V, int Vp) {
    matmul_forward(logits, lnf, wte, NULL, BT, C, Vp);
    if (!targets) return;
    softmax_crossentropy_forward(losses, logits, targets, BT, V, Vp);
    if (!dlnf) return;
    softmax_crossentropy_backward(logits, targets, 1.0f / (float)BT, BT, V, Vp);
    memset(dlnf, 0, (size_t)BT * C * sizeof(float));
    memset(dwte, 0, (size_t)Vp * C * sizeof(float));
    matmul_backward(dlnf, dwte, NULL, logits, lnf, wte, BT, C, Vp);
}

// gpt2_head_ref R rows at a time, so that only R x Vp logits exist
// (logits_chunk). Each row's logits, loss and dlnf are computed as in one
// product over all rows; dwte sums the rows chunk by chunk, and with R a
// multiple of the matmul's K block (matmul_k_block) those are the blocks one
// product adds in order: the same bits as gpt2_head_ref.
void gpt2_head_forward_backward(float *logits_chunk, float *losses, float *dlnf, float *dwte, const float *lnf,
                                const float *wte, const int *targets, int BT, int R, int C, int V, int Vp) {
    for (int r0 = 0; r0 < BT; r0 += R) {
        int n = BT - r0 < R ? BT - r0 : R;
        const float *x = lnf + (size_t)r0 * C;
        matmul_forward(logits_chunk, x, wte, NULL, n, C, Vp);
        if (!dlnf) {
            softmax_crossentropy_forward(losses + r0, logits_chunk, targets + r0, n, V, Vp);
            continue;
        }
        // the losses and the gradient of mean(losses) over all BT rows
        softmax_crossentropy_forward_backward(losses + r0, logits_chunk, targets + r0, 1.0f / (float)BT, n, V, Vp);
        // each chunk's dlnf rows written, dwte written by the first chunk and
        // added into by the others (the bits of adding into cleared buffers)
        matmul_backward_into(dlnf + (size_t)r0 * C, dwte, NULL, logits_chunk, x, wte, n, C, Vp, 1, r0 == 0);
    }
}

// The final LayerNorm's output of the last forward, recomputed into
// model->scratch.ln (the same bits as the forward's); returns it.
static float *gpt2_recompute_lnf(GPT2 *model) {
    const GPT2Config *c = &model->config;
    size_t BT = (size_t)model->fwd_B * model->fwd_T, C = c->channels;
    const float *last = model->acts.layers.residual3 + (c->num_layers - 1) * BT * C;
    layernorm_recompute(model->scratch.ln, last, model->acts.lnf_mean, model->acts.lnf_rstd, model->params.lnfw,
                        model->params.lnfb, (int)BT, (int)C);
    return model->scratch.ln;
}

// The full logits (B*T, Vp) of the last forward (tests and exports; training
// and evaluation never hold them): lnf @ wte^T.
void gpt2_logits(GPT2 *model, float *logits) {
    const GPT2Config *c = &model->config;
    const float *lnf = gpt2_recompute_lnf(model);
    gpt2_head_ref(logits, NULL, NULL, NULL, lnf, model->params.wte, NULL, model->fwd_B * model->fwd_T,
                  c->channels, c->vocab_size, c->padded_vocab_size);
}

// The head on lnf (B*T, C) of the last forward, with its gradients when grads
// is set: losses into acts.losses; in one chunk the logits buffer keeps the
// probabilities (gpt2_backward turns them into dlogits); in several, with
// grads, the head's dlnf goes to scratch.scratch and its dwte to head.dwte.
static void gpt2_head(GPT2 *model, const float *lnf, int grads) {
    const GPT2Config *cfg = &model->config;
    int BT = model->fwd_B * model->fwd_T, R = (int)gpt2_head_rows((size_t)BT);
    int chunked = R < BT;
    gpt2_head_forward_backward(model->head.logits, model->acts.losses, chunked && grads ? model->scratch.scratch : NULL,
                               model->head.dwte, lnf, model->params.wte, model->targets, BT, R, cfg->channels,
                               cfg->vocab_size, cfg->padded_vocab_size);
    model->have_head_grads = chunked && grads;
}

// Forward over inputs (B,T). With targets, also the per-token losses
// (model->acts.losses) and their mean (model->mean_loss).
// Without targets (targets == NULL) it stops at the final LayerNorm
// (gpt2_logits computes the logits). (B,T) may be smaller than the allocated
// shape (T no longer, B*T no more tokens): evaluation packs short rows; every
// tensor then lies packed at the start of its buffer. A training step calls
// gpt2_forward_train instead (gpt2_backward works after either).
static void gpt2_forward_pass(GPT2 *model, const int *inputs, const int *targets, int B, int T, int train) {
    if (!model->mem.acts_memory) fail("gpt2_forward: activations not allocated");
    if (B < 1 || T < 1 || T > model->seq_len || (size_t)B * T > (size_t)model->batch_size * model->seq_len)
        fail("gpt2_forward: batch (%d,%d) does not fit the allocated (%d,%d)", B, T, model->batch_size, model->seq_len);
    model->fwd_B = B;
    model->fwd_T = T;
    const GPT2Config *cfg = &model->config;
    int V = cfg->vocab_size, L = cfg->num_layers, NH = cfg->num_heads, C = cfg->channels;
    size_t BT = (size_t)B * T;
    for (size_t i = 0; i < BT; i++) {
        if (inputs[i] < 0 || inputs[i] >= V) fail("input token %d at position %zu is outside [0, %d)", inputs[i], i, V);
        if (targets && (targets[i] < 0 || targets[i] >= V))
            fail("target token %d at position %zu is outside [0, %d)", targets[i], i, V);
    }
    memcpy(model->inputs, inputs, BT * sizeof(int));
    if (targets) memcpy(model->targets, targets, BT * sizeof(int));
    model->have_dlogits = 0;
    model->have_head_grads = 0;

    ParameterTensors p = model->params;
    ActivationTensors a = model->acts;
    encoder_forward(a.encoded, inputs, p.wte, p.wpe, B, T, C);
    for (int l = 0; l < L; l++) {
        const float *residual = l == 0 ? a.encoded : a.layers.residual3 + (size_t)(l - 1) * BT * C;
        // this layer's weights and activations
        LayerActivations act = layer_activations(&a.layers, l, B, T, C, NH);
        LayerTensors w = layer_tensors(&p.layers, l, C);
        float *proj = model->scratch.scratch; // a projection's output, added to the residual right away
        // LayerNorm and GELU outputs live only while the layer runs (backward recomputes them)
        float *ln1 = model->scratch.ln, *ln2 = model->scratch.ln, *fch_gelu = model->scratch.fch_gelu;
        // attention block: x + proj(attention(ln1(x)))
        layernorm_forward(ln1, act.ln1_mean, act.ln1_rstd, residual, w.ln1w, w.ln1b, BT, C, 1e-5f);
        matmul_forward(act.qkv, ln1, w.qkvw, w.qkvb, BT, C, 3 * C);
        attention_forward(act.atty, act.lse, act.qkv, B, T, C, NH, 1);
        matmul_forward(proj, act.atty, w.attprojw, w.attprojb, BT, C, C);
        residual_forward(act.residual2, residual, proj, BT * C);
        // MLP block: x + proj(gelu(fc(ln2(x))))
        layernorm_forward(ln2, act.ln2_mean, act.ln2_rstd, act.residual2, w.ln2w, w.ln2b, BT, C, 1e-5f);
        matmul_forward(act.fch, ln2, w.fcw, w.fcb, BT, C, 4 * C);
        gelu_forward(fch_gelu, act.fch, BT * 4 * C, GELU_TANH);
        matmul_forward(proj, fch_gelu, w.fcprojw, w.fcprojb, BT, 4 * C, C);
        residual_forward(act.residual3, act.residual2, proj, BT * C);
    }
    const float *last = a.layers.residual3 + (size_t)(L - 1) * BT * C;
    float *lnf = model->scratch.ln;
    layernorm_forward(lnf, a.lnf_mean, a.lnf_rstd, last, p.lnfw, p.lnfb, BT, C, 1e-5f);
    if (targets) {
        gpt2_head(model, lnf, train);
        const float *losses = a.losses;
        double sum = 0.0;
        for (size_t i = 0; i < BT; i++) sum += losses[i];
        model->mean_loss = (float)(sum / BT);
    } else {
        model->mean_loss = -1.0f;
    }
}

void gpt2_forward(GPT2 *model, const int *inputs, const int *targets, int B, int T) {
    gpt2_forward_pass(model, inputs, targets, B, T, 0);
}

// The forward of a training step, at the allocated (B,T): as gpt2_forward,
// and when the head runs in several chunks, also the head's backward (while
// each chunk's probabilities exist; gpt2_backward would otherwise recompute
// the logits).
void gpt2_forward_train(GPT2 *model, const int *inputs, const int *targets) {
    gpt2_forward_pass(model, inputs, targets, model->batch_size, model->seq_len, 1);
}

// Backward of the last forward (which had targets).
// fused NULL: gradients ACCUMULATE into model->grads, so that micro-batches
// add up; loss_scale is the weight of this micro-batch's mean loss in the
// total (1 / accumulation steps).
// fused (the model's gradients are one layer's, gpt2_allocate_gradients):
// every block's gradient goes to fused_block as soon as it is complete:
// lnf's first, each layer's after its backward, wte's (the LM head's part
// waits in the buffer for the token embedding's) and wpe's last. A second
// call after the same forward (the measuring pass, then the updating one)
// computes the same gradients: the dlogits (or the head's gradients) are
// kept, the parameters a pass reads have not moved yet.
void gpt2_backward(GPT2 *model, float loss_scale, FusedStep *fused) {
    const GPT2Config *cfg = &model->config;
    int B = model->batch_size, T = model->seq_len;
    if (model->fwd_B != B || model->fwd_T != T)
        fail("gpt2_backward: the last forward was (%d,%d), not the allocated (%d,%d)", model->fwd_B, model->fwd_T, B, T);
    int V = cfg->vocab_size, Vp = cfg->padded_vocab_size, L = cfg->num_layers, NH = cfg->num_heads, C = cfg->channels;
    size_t BT = (size_t)B * T;
    ParameterTensors p = model->params, g = model->grads;
    ActivationTensors a = model->acts;
    LayerScratch s = model->scratch;
    if (fused && !model->mem.fused) fail("gpt2_backward: fused updates need gpt2_allocate_gradients(model, 1)");
    // With fused updates each pass is a whole step's gradient, and each matrix's
    // gradient is produced once per pass: written (matmul_backward_into's
    // write_dweight, the bits of adding into zeros), not cleared and added
    // into. Only the tensors that collect sums are cleared: wpe's and lnf's
    // here, a layer's gains and biases before its backward. (wte's is written
    // by the LM head, then the token embedding adds into it.) A linear layer's
    // input gradient is always a fresh buffer: written likewise.
    if (model->mem.fused) {
        memset(g.wpe, 0, (size_t)cfg->max_seq_len * C * sizeof(float));
        memset(g.lnfw, 0, C * sizeof(float));
        memset(g.lnfb, 0, C * sizeof(float));
    }
    const int write_dweight = model->mem.fused;

    // the mean over B*T tokens: each token's loss has weight loss_scale / (B*T)
    if (gpt2_head_rows(BT) == BT) {
        // one head chunk: the logits buffer holds the probabilities of every row
        if (!model->have_dlogits)
            softmax_crossentropy_backward(model->head.logits, model->targets, loss_scale / (float)BT, BT, V, Vp);
        model->have_dlogits = 1;
        float *dlogits = model->head.logits;
        matmul_backward_into(s.dln, g.wte, NULL, dlogits, gpt2_recompute_lnf(model), p.wte, BT, C, Vp, 1, write_dweight);
    } else {
        // several: the head's gradients of the mean loss (gpt2_forward_train's, or computed now), scaled
        if (!model->have_head_grads) gpt2_head(model, gpt2_recompute_lnf(model), 1);
        float *dwte = g.wte, *head_dlnf = s.scratch;
        #pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < BT * C; i++) s.dln[i] = loss_scale * head_dlnf[i];
        if (model->mem.fused) { // written, as above
            #pragma omp parallel for simd schedule(static)
            for (size_t i = 0; i < (size_t)Vp * C; i++) dwte[i] = loss_scale * model->head.dwte[i];
        } else {
            #pragma omp parallel for simd schedule(static)
            for (size_t i = 0; i < (size_t)Vp * C; i++) dwte[i] += loss_scale * model->head.dwte[i];
        }
    }
    memset(s.dresidual, 0, BT * C * sizeof(float));
    const float *last = a.layers.residual3 + (size_t)(L - 1) * BT * C;
    layernorm_backward(s.dresidual, g.lnfw, g.lnfb, s.dln, last, p.lnfw, a.lnf_mean, a.lnf_rstd, BT, C);
    step_block(fused, gpt2_lnf_block(cfg), g.lnfw);
    step_block(fused, gpt2_lnf_block(cfg) + 1, g.lnfb);

    for (int l = L - 1; l >= 0; l--) {
        const float *residual = l == 0 ? a.encoded : a.layers.residual3 + (size_t)(l - 1) * BT * C;
        LayerActivations act = layer_activations(&a.layers, l, B, T, C, NH);
        // this layer's parameters and gradients (with fused updates, the one layer of the buffer)
        LayerTensors lp = layer_tensors(&p.layers, l, C), lg = layer_tensors(&g.layers, model->mem.fused ? 0 : l, C);
        if (model->mem.fused) { // the one layer's sums start from zero (its matrices are written)
            float *sums[] = {lg.ln1w, lg.ln1b, lg.qkvb, lg.attprojb, lg.ln2w, lg.ln2b, lg.fcb, lg.fcprojb};
            int len[] = {C, C, 3 * C, C, C, C, 4 * C, C};
            for (int k = 0; k < 8; k++) memset(sums[k], 0, (size_t)len[k] * sizeof(float));
        }
        // s.dresidual holds d(layer output); the MLP branch starts from it,
        // with the GELU output the forward had (recomputed: the same bits) ...
        float *fch_gelu = s.fch_gelu;
        gelu_forward(fch_gelu, act.fch, BT * 4 * C, GELU_TANH);
        matmul_backward_into(s.dfch_gelu, lg.fcprojw, lg.fcprojb, s.dresidual, fch_gelu, lp.fcprojw, BT, 4 * C, C,
                             1, write_dweight);
        float *dfch = s.dfch_gelu; // d(GELU output) becomes d(GELU input), in place
        gelu_backward_inplace(dfch, act.fch, BT * 4 * C, GELU_TANH);
        float *ln2 = s.ln;
        layernorm_recompute(ln2, act.residual2, act.ln2_mean, act.ln2_rstd, lp.ln2w, lp.ln2b, BT, C);
        matmul_backward_into(s.dln, lg.fcw, lg.fcb, dfch, ln2, lp.fcw, BT, C, 4 * C, 1, write_dweight);
        // ... and adds its input gradient back: dresidual is now d(residual2)
        layernorm_backward(s.dresidual, lg.ln2w, lg.ln2b, s.dln, act.residual2, lp.ln2w, act.ln2_mean, act.ln2_rstd, BT, C);
        // the attention branch likewise
        matmul_backward_into(s.datty, lg.attprojw, lg.attprojb, s.dresidual, act.atty, lp.attprojw, BT, C, C,
                             1, write_dweight);
        memset(s.dqkv, 0, BT * 3 * C * sizeof(float));
        attention_backward(s.dqkv, s.datty, act.qkv, act.atty, act.lse, B, T, C, NH, 1);
        float *ln1 = s.ln;
        layernorm_recompute(ln1, residual, act.ln1_mean, act.ln1_rstd, lp.ln1w, lp.ln1b, BT, C);
        matmul_backward_into(s.dln, lg.qkvw, lg.qkvb, s.dqkv, ln1, lp.qkvw, BT, C, 3 * C, 1, write_dweight);
        layernorm_backward(s.dresidual, lg.ln1w, lg.ln1b, s.dln, residual, lp.ln1w, act.ln1_mean, act.ln1_rstd, BT, C);
        // dresidual is now d(layer input) = d(previous layer's output)
        // the layer's gradients are complete: step its blocks (the next layer writes over them)
        if (fused) step_layer_blocks(fused, gpt2_layer_block(l, 0), &lg);
    }
    encoder_backward(g.wte, g.wpe, s.dresidual, model->inputs, B, T, C);
    step_block(fused, 0, g.wte); // both of its gradients are in now
    step_block(fused, 1, g.wpe);
}

// ----------------------------------------------------------------------------
// sampling: one token at a time, with a KV cache
//
// Each new token runs the model on a single position: its q, k, v rows are
// appended to a per-layer cache of the sequence so far, and its query attends
// over the cache. That is O(L C^2 + L C t) per token instead of re-running
// the whole (B,T) forward for every token as llm.c does.

typedef struct {
    int max_len;   // positions the cache holds
    float *qkv;    // (L, max_len, 3C) every position's q, k, v
    float *x;      // (C) the residual stream of the current position
    float *ln;     // (C)
    float *atty;   // (C)
    float *proj;   // (C)
    float *fch;    // (4C)
    float *fch_gelu; // (4C)
    float *att;    // (NH, max_len)
    float *logits; // (Vp)
    float *sorted; // (V) scratch for top-k
    float mean_rstd[2];
    float *memory;
} KVCache;

// Sizes in floats of the cache's buffers (KVCache order) for max_len
// positions; returns their total (for kvcache_init and the memory plan).
#define NUM_KV_BUFFERS 10
static size_t kvcache_sizes(const GPT2Config *c, int max_len, size_t sizes[NUM_KV_BUFFERS]) {
    size_t L = c->num_layers, C = c->channels, NH = c->num_heads, Vp = c->padded_vocab_size;
    if (max_len < 1 || max_len > c->max_seq_len) fail("KV cache of %d positions for a model of %d", max_len, c->max_seq_len);
    const char *what = "the KV cache";
    size_t s[NUM_KV_BUFFERS] = {mul4_size_or_fail(L, (size_t)max_len, 3, C, what), C, C, C, C, 4 * C, 4 * C,
                                mul_size_or_fail(NH, (size_t)max_len, what), Vp, (size_t)c->vocab_size};
    size_t total = 0;
    for (int i = 0; i < NUM_KV_BUFFERS; i++) { sizes[i] = s[i]; total = add_size_or_fail(total, s[i], what); }
    return total;
}

void kvcache_init(KVCache *kv, const GPT2Config *c, int max_len) {
    size_t sizes[NUM_KV_BUFFERS];
    size_t total = kvcache_sizes(c, max_len, sizes);
    kv->max_len = max_len;
    float **ptrs[] = {&kv->qkv, &kv->x, &kv->ln, &kv->atty, &kv->proj, &kv->fch, &kv->fch_gelu, &kv->att,
                      &kv->logits, &kv->sorted};
    kv->memory = alloc_big_floats(total, "KV cache");
    float *m = kv->memory;
    for (int i = 0; i < NUM_KV_BUFFERS; i++) { *ptrs[i] = m; m += sizes[i]; }
}

void kvcache_free(KVCache *kv) { free_big(kv->memory); }

// Run token `token` at position pos (0-based; positions 0..pos-1 are cached);
// leaves the next-token logits in kv->logits.
void gpt2_forward_token(const GPT2 *model, KVCache *kv, int token, int pos) {
    const GPT2Config *cfg = &model->config;
    int C = cfg->channels, NH = cfg->num_heads, L = cfg->num_layers, Vp = cfg->padded_vocab_size;
    const ParameterTensors *p = &model->params;
    float *x = kv->x;
    for (int c = 0; c < C; c++) x[c] = p->wte[(size_t)token * C + c] + p->wpe[(size_t)pos * C + c];
    float *mean = &kv->mean_rstd[0], *rstd = &kv->mean_rstd[1];
    for (int l = 0; l < L; l++) {
        float *cache = kv->qkv + (size_t)l * kv->max_len * 3 * C;
        LayerTensors w = layer_tensors(&p->layers, l, C);
        layernorm_forward(kv->ln, mean, rstd, x, w.ln1w, w.ln1b, 1, C, 1e-5f);
        matmul_forward(cache + (size_t)pos * 3 * C, kv->ln, w.qkvw, w.qkvb, 1, C, 3 * C);
        attention_forward_last(kv->atty, kv->att, cache, pos, C, NH);
        matmul_forward(kv->proj, kv->atty, w.attprojw, w.attprojb, 1, C, C);
        residual_forward(x, x, kv->proj, C);
        layernorm_forward(kv->ln, mean, rstd, x, w.ln2w, w.ln2b, 1, C, 1e-5f);
        matmul_forward(kv->fch, kv->ln, w.fcw, w.fcb, 1, C, 4 * C);
        gelu_forward(kv->fch_gelu, kv->fch, 4 * C, GELU_TANH);
        matmul_forward(kv->proj, kv->fch_gelu, w.fcprojw, w.fcprojb, 1, 4 * C, C);
        residual_forward(x, x, kv->proj, C);
    }
    layernorm_forward(kv->ln, mean, rstd, x, p->lnfw, p->lnfb, 1, C, 1e-5f);
    matmul_forward(kv->logits, kv->ln, p->wte, NULL, 1, C, Vp);
}

static int compare_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

// Draw a token from softmax(logits / temperature), among the top_k most
// likely (0 = all).
int sample_token(const float *logits, float *scratch, int V, float temperature, int top_k, Rng *rng) {
    float threshold = -INFINITY;
    if (top_k > 0 && top_k < V) {
        memcpy(scratch, logits, V * sizeof(float));
        qsort(scratch, V, sizeof(float), compare_desc);
        threshold = scratch[top_k - 1];
    }
    float maxval = -INFINITY;
    for (int v = 0; v < V; v++) if (logits[v] > maxval) maxval = logits[v];
    double sum = 0.0;
    for (int v = 0; v < V; v++) if (logits[v] >= threshold) sum += exp((logits[v] - maxval) / temperature);
    double r = rng_uniform(rng) * sum, acc = 0.0;
    int last = 0;
    for (int v = 0; v < V; v++) {
        if (logits[v] < threshold) continue;
        acc += exp((logits[v] - maxval) / temperature);
        last = v;
        if (acc > r) return v;
    }
    return last; // rounding: r landed at the very end
}

// Generate up to n tokens after the prompt; writes them to out, returns the
// count (generation stops early at <|endoftext|>).
int gpt2_generate(const GPT2 *model, KVCache *kv, const int *prompt, int prompt_len, int n, int *out,
                  float temperature, int top_k, Rng *rng, int eot) {
    int V = model->config.vocab_size;
    if (prompt_len + n > kv->max_len) n = kv->max_len - prompt_len;
    for (int i = 0; i < prompt_len; i++) gpt2_forward_token(model, kv, prompt[i], i);
    int count = 0;
    for (int i = 0; i < n; i++) {
        // a NaN would make every draw the same token, silently
        for (int v = 0; v < V; v++)
            if (!isfinite(kv->logits[v]))
                fail("sampling: the logit of token %d at position %d is %s; the model's parameters are not usable "
                     "(a diverged or corrupt checkpoint?)", v, prompt_len + i - 1, isnan(kv->logits[v]) ? "NaN" : "infinite");
        int next = sample_token(kv->logits, kv->sorted, V, temperature, top_k, rng);
        out[count++] = next;
        if (next == eot) break;
        if (i + 1 < n) gpt2_forward_token(model, kv, next, prompt_len + i);
    }
    return count;
}

// ----------------------------------------------------------------------------
// resuming: what a resume record (state_<step>.json at path) holds for the
// GPT-2 trainer alone, checked: the training loader's position and the
// sampler's generator (run_resume_check_state checked the rest)
#include "data/shards.h"
#include "run/run.h"

// The trainer's keys of a checkpoint's state record (read back by the two
// functions below): the training data's position, in the orders it counts
// in, the sampler's generator, the sequence length.
__attribute__((unused)) // main calls it; the tests that include this file do not
static cJSON *gpt2_state_record(const TokenLoader *train, TokenLoaderPos pos, const Rng *sample_rng, int T) {
    cJSON *s = cJSON_CreateObject();
    cJSON *p = cJSON_AddObjectToObject(s, "train_loader");
    json_add_u64(p, "epoch", (uint64_t)pos.epoch);
    json_add_u64(p, "shard", (uint64_t)pos.shard);
    json_add_u64(p, "batch", (uint64_t)pos.batch);
    // the orders the position counts in: a resume must read the same ones
    cJSON_AddBoolToObject(p, "shuffle", train->opt.shuffle);
    json_add_u64(p, "shuffle_seed", train->opt.shuffle_seed);
    json_add_u64(s, "sample_rng", sample_rng->state);
    cJSON_AddNumberToObject(s, "seq_len", T);
    return s;
}

// A run resumes with its sequence length (run_resume_check_state checked
// the rest of the batch's shape)
__attribute__((unused)) // main and fuzz/fuzz_resume_gpt2.c call it; the tests that include this file do not
static void gpt2_resume_check_seq_len(const cJSON *state, const char *path, int T) {
    if (json_get_number(state, "seq_len", path) != T)
        fail("%s: the checkpoint was made with another -t (sequence length %g); resume with the same one", path,
             json_get_number(state, "seq_len", path));
}

__attribute__((unused)) // main and fuzz/fuzz_resume_gpt2.c call it; the tests that include this file do not
static void gpt2_resume_data(const cJSON *state, const char *path, const Run *run, const RunConfig *rc, int T,
                             TokenLoader *train_loader, Rng *sample_rng) {
    const cJSON *pos = cJSON_GetObjectItemCaseSensitive(state, "train_loader");
    if (!cJSON_IsObject(pos)) fail("%s: missing \"train_loader\"", path);
    uint64_t shard = json_get_u64(pos, "shard", path), epoch = json_get_u64(pos, "epoch", path), batch;
    int saved_shuffle = 0;
    uint32_t saved_seed = 0;
    if (cJSON_GetObjectItemCaseSensitive(pos, "batch")) {
        batch = json_get_u64(pos, "batch", path);
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(pos, "shuffle");
        if (!cJSON_IsBool(sh)) fail("%s: \"train_loader\" has no \"shuffle\" true or false", path);
        saved_shuffle = cJSON_IsTrue(sh);
        uint64_t seed = json_get_u64(pos, "shuffle_seed", path);
        if (seed > UINT32_MAX) fail("%s: \"shuffle_seed\" %llu does not fit 32 bits", path, (unsigned long long)seed);
        saved_seed = (uint32_t)seed;
    } else {
        // written before shuffling existed: a token offset into shards read in order
        uint64_t offset = json_get_u64(pos, "offset", path), bt = (uint64_t)rc->B * (uint64_t)T;
        if (offset % bt != 0)
            fail("%s: the \"train_loader\" offset %llu is not a multiple of B x T = %llu", path,
                 (unsigned long long)offset, (unsigned long long)bt);
        batch = offset / bt;
    }
    if (saved_shuffle != train_loader->opt.shuffle ||
        (saved_shuffle && saved_seed != train_loader->opt.shuffle_seed)) {
        if (saved_shuffle)
            fail("%s: the run read its data shuffled with seed %u; resume it with --shuffle 1 --shuffle-seed %u",
                 path, saved_seed, saved_seed);
        fail("%s: the run read its data in order; resume it with --shuffle 0", path);
    }
    if (shard > INT64_MAX || batch > INT64_MAX || epoch > INT64_MAX)
        fail("%s: the \"train_loader\" position is out of range", path);
    // the shuffle's replay runs through every epoch before this one: no run
    // of start_step steps got further than its batches allow (a crafted
    // epoch of 10^15 would replay for ever)
    // (every rank reads the whole global batch: grad_accum micro-batches per rank)
    uint64_t batches = (uint64_t)run->start_step * (uint64_t)rc->grad_accum * (uint64_t)rc->ranks;
    if (train_loader->batches_per_epoch > 0 && epoch > batches / (uint64_t)train_loader->batches_per_epoch)
        fail("%s: the \"train_loader\" epoch %llu is more than %ld steps of %d micro-batches of these shards reach",
             path, (unsigned long long)epoch, run->start_step, rc->grad_accum * rc->ranks);
    TokenLoaderPos tp = {(int64_t)epoch, (int64_t)shard, (int64_t)batch};
    token_loader_set_pos(train_loader, tp);
    sample_rng->state = json_get_u64(state, "sample_rng", path);
    if (sample_rng->state == 0)
        fail("%s: \"sample_rng\" is 0, which no run writes (the generator's state is never 0)", path);
}

// ----------------------------------------------------------------------------
// the training run
#ifndef TESTING
#include <glob.h>
#include <omp.h>
#include <sys/stat.h>

#include "data/evalfile.h"
#include "data/shards.h"
#include "data/tokenizer.h"
#include "run/memplan.h"
#include "run/dist.h"
#include "run/run.h"
#include "run/train.h"
#include "train_gpt2_flags.h"

// llm.c's flags and nanoGPT's settings beside this trainer's (the README's
// table; the llm.c flags of its first column are checked to be taken or
// refused by name here)
static const char *const llmc_cells[] = {
    "llm.c", "llm.c's meaning (default)", "here (default)", "nanoGPT",
    "`-i`", "training shards, a glob (Tiny Shakespeare)", "the same (the Bible)", "`dataset`",
    "`-j`", "validation shards", "the same; with `-x 0` any shards to evaluate", "`dataset`",
    "`-e`", "model file, or `d12`-style depth for a new model (`gpt2_124M_bf16.bin`)",
    "the same for fp32 files (version 3; llm.c's bf16 files, version 5, are refused) and `d<L>`, `gpt2:d<L>` "
    "(d4)", "`init_from`, `n_layer`, `n_head`, `n_embd`",
    "`-o`", "output folder: `main.log`, `model_`/`state_`/`DONE_` checkpoints (none)",
    "the same role; here `log.jsonl` and `model_`/`optim_`/`state_….json` checkpoints (none)", "`out_dir`",
    "`-n`", "checkpoint every N steps and at the end, 0 = never (0)", "the same (without `-n`: at the end only)",
    "`always_save_checkpoint`",
    "`-nk`", "keep the newest N checkpoints, 0 = all (0)", "the same", "",
    "`-nm`", "checkpoints at multiples of N are never deleted (0)", "the same", "",
    "`-y`", "resume from the newest checkpoint in `-o` (0)",
    "the same, for this program's folders ([llm.c's are refused](#llmcs-checkpoint-folders))", "`init_from='resume'`",
    "`-b`", "micro-batch (4)", "the same (4; ViT 128)", "`batch_size`",
    "`-t`", "sequence length (1024)", "the same (64)", "`block_size`",
    "`-d`", "tokens per step, by accumulation; -1 = one micro-batch (-1)",
    "the same (one micro-batch; 0 also means it)", "`gradient_accumulation_steps` x `batch_size` x `block_size`",
    "(none: llm.c always shuffles training data, seed 42)", "shards and batches shuffled every epoch",
    "`--shuffle 1`, `--shuffle-seed 42` (the same order as llm.c's); `--shuffle 0` reads in order",
    "(random offsets every batch)",
    "", "", "`--data-format nanogpt`", "`dataset` with `train.bin`/`val.bin`",
    "", "", "`--vocab-size V` (new models)", "`meta_vocab_size` (`meta.pkl`)",
    "`-x`", "steps; -1 = one epoch (-1)",
    "the same (100); one epoch is the batches of one pass over the shards (each reads B x T + 1 tokens) over "
    "the accumulation steps, where llm.c divides the token count by the tokens per step (one step more at most)",
    "`max_iters`",
    "`-k`", "schedule: cosine, linear, constant, wsd (cosine)", "the same", "`decay_lr`",
    "`-l`", "peak lr (3e-4)", "the same (per optimizer)", "`learning_rate`",
    "`-u`", "warmup steps (0)", "the same", "`warmup_iters`",
    "`-q`", "final lr as a fraction of the peak (1.0)", "the same (0.1)", "`min_lr` / `learning_rate`",
    "`-c`", "weight decay (0)", "the same (per optimizer)", "`weight_decay`",
    "`-sl`, `-sg`", "skip an update whose loss / gradient norm is an outlier (z-score)", "refused by name", "",
    "`-v`", "validation every N steps, at step 0 and at the end (20)",
    "every N steps and at the end, not at step 0; 0 = at the end only (llm.c would divide by 0)", "`eval_interval`",
    "`-m`", "validation batches; -1 = the whole split (20)",
    "the same: one pass over the shards (llm.c: their tokens over B x T, which can wrap around to the first "
    "shard)", "`eval_iters`",
    "`-s`", "sample every N steps and at the end; <= 0 never (20)", "the same (at the end only)", "",
    "`-g`", "tokens per sample (64)", "the same", "`max_new_tokens`",
    "`-h`", "HellaSwag with each validation (0)", "the same; `--hellaswag FILE`; `-h` alone is help", "",
    "`-a`", "overfit one batch", "refused by name", "",
    "`-f`, `-w`, `-ge`, `-r`", "TF32; fp32 master weights; GELU fusion; recomputation",
    "accepted with a note, change nothing: all fp32, on the CPU (`train_gpt2` always recomputes the GELU and "
    "LayerNorm outputs in backward, as llm.c's `-r 2`)", "`dtype`",
    "`-z`", "ZeRO stage", "refused by name", "",
    "`-pn`, `-pr`, `-pg`, `-pi`, `-pf`, `-ps`", "multi-process, multi-node", "refused by name", "`backend` (DDP)",
    "", "", "`--seed`, `--clip`, `--temperature`, `--top-k`, `--prompt`, `-p`, and the rest above",
    "`seed`, `grad_clip`, `temperature`, `top_k`, `start`, `log_interval`",
    "", "", "`-x 0` with `-j` or `-v`", "`eval_only`",
};
static const MarkdownTable llmc_table = MARKDOWN_TABLE("llmc", 4, llmc_cells);

static int gpt2_flag_known(const char *flag) { return flags_find(&gpt2_flags, flag) || run_flag_known(flag); }

// --help, or with markdown the README's tables of the flags (--help-markdown)
static void print_usage(int markdown) {
    if (markdown) {
        flags_print_markdown(&gpt2_flags, "train_gpt2");
        run_print_flags_markdown();
        flags_print_markdown_table(&llmc_table, gpt2_flag_known);
        return;
    }
    printf("usage: ./train_gpt2 [flags]   (built with OPTIM=%s)\n", OPTIM_NAME);
    flags_print_help(&gpt2_flags);
    run_print_flags_help();
}

// What the memory plan needs to know about this run besides B, T and the optimizer.
typedef struct {
    const GPT2Config *config;
    MemPlanModel model;  // the blocks and optimizer of this rank's part, training or not
    int evaluating;      // -x 0 with an evaluation: activations, without gradients
    int sample_len;      // positions of the KV cache, 0 when the run does not sample
    size_t resident_now; // the process's resident set when the plan is made
    const TokenLoader *train, *val; // NULL when not read
} GPT2PlanContext;

// This run's memory plan (a MemPlanBuilder): what gpt2_build_*, optim_create,
// gpt2_allocate_activations, kvcache_init and the loop allocate and touch.
static void gpt2_memory_plan(MemPlan *p, const void *ctx, int B, int T, const char *optim, int fused) {
    const GPT2PlanContext *x = ctx;
    memplan_begin(p, B, T, optim, fused, x->resident_now, "binary, libraries, tokenizer");
    TensorList params;
    gpt2_param_tensors(&params, x->config);
    memplan_add_model(p, tensors_total(&params, 0), tensors_total(&params, fused),
                      fused ? "fused updates: wte, wpe, lnf and one layer" : "the same", &x->model);
    if (x->model.training || x->evaluating) {
        TensorList act_list, scratch_list;
        gpt2_activation_tensors(&act_list, &scratch_list, x->config, B, T);
        size_t acts = tensors_total(&act_list, 0), scratch = tensors_total(&scratch_list, 0);
        memplan_add(p, "activations", alloc_big_footprint(acts * sizeof(float)), "B %d x T %d: %zu floats", B, T, acts);
        memplan_add(p, "backward scratch", alloc_big_footprint(scratch * sizeof(float)),
                    "one layer's buffers and the LM head's: %zu floats", scratch);
        // the model's and the loop's inputs and targets, each loader's batch
        // of B*T+1 tokens and its orders of shards and batches
        size_t BT = (size_t)B * T, loaders = 0;
        const TokenLoader *ls[2] = {x->train, x->val};
        for (int k = 0; k < 2; k++) {
            if (!ls[k]) continue;
            int64_t longest = 0;
            for (int s = 0; s < ls[k]->num_shards; s++)
                if (ls[k]->shard_tokens[s] > longest) longest = ls[k]->shard_tokens[s];
            loaders += token_loader_bytes(longest, ls[k]->num_shards, B, T, ls[k]->opt.shuffle);
        }
        memplan_add(p, "batch", 4 * BT * sizeof(int) + loaders, "token ids, the loaders' batches and orders");
    }
    size_t kv_sizes[NUM_KV_BUFFERS];
    if (x->sample_len)
        memplan_add(p, "KV cache", alloc_big_footprint(kvcache_sizes(x->config, x->sample_len, kv_sizes) * sizeof(float)),
                    "%d positions", x->sample_len);
    else
        memplan_add(p, "KV cache", 0, "none: no samples (-s -1)");
    memplan_add_threads(p);
}

// print a sample as text (or ids when no tokenizer is available)
static void print_tokens(const Tokenizer *tok, const int *ids, int n) {
    for (int i = 0; i < n; i++) {
        if (!tok) { printf("%d ", ids[i]); continue; }
        if (ids[i] == tokenizer_eot(tok)) { printf("\n<|endoftext|>"); continue; }
        size_t len;
        const unsigned char *bytes = tokenizer_decode(tok, ids[i], &len);
        if (bytes) fwrite(bytes, 1, len, stdout);
    }
    printf("\n");
}

// mean loss over the first `batches` batches of the validation data; with
// several ranks, rank r evaluates batches r, r + ranks, ... and the batch
// losses (batch_loss[batches], 0 where another rank evaluates) are added in
// batch order, as one process adds them
static float gpt2_validate(GPT2 *model, TokenLoader *val, int batches, int *inputs, int *targets, double *batch_loss) {
    token_loader_reset(val);
    int rank = dist_rank(), ranks = dist_size();
    for (int i = 0; i < batches; i++) {
        token_loader_next(val, inputs, targets);
        batch_loss[i] = 0.0;
        if (i % ranks != rank) continue;
        gpt2_forward(model, inputs, targets, model->batch_size, model->seq_len);
        batch_loss[i] = model->mean_loss;
    }
    dist_share_doubles(batch_loss, batches);
    double sum = 0.0;
    for (int i = 0; i < batches; i++) sum += batch_loss[i];
    return (float)(sum / batches);
}

// An evaluation's record beside the loss: the perplexity and how much was read
static cJSON *val_record_extra(float loss, int batches, int B, int T) {
    cJSON *x = cJSON_CreateObject();
    cJSON_AddNumberToObject(x, "val_perplexity", exp((double)loss));
    cJSON_AddNumberToObject(x, "val_batches", batches);
    cJSON_AddNumberToObject(x, "val_tokens", (double)batches * B * T);
    return x;
}

// HellaSwag from llm.c's eval file: each completion's row (context, then the
// completion) goes through the model, rows packed `rows` at a time into
// sequences of `row_len` positions (the longest row less its last token, which
// is only a target), within the activations allocated for the run's (B, T).
typedef struct {
    EvalSet set;
    int row_len, rows;
    int *row_completion;   // [rows] which completion each packed row holds
    int *row_example;      // [rows]
    double *sum_loss;      // [set.num_completions] total loss over the completion's tokens
    double *mean_loss;     // [set.num_completions] the same, per token
} HellaSwag;

// Score every example; returns the number right by the lowest mean loss
// (llm.c's acc_norm) and sets *correct_sum (the lowest total loss: acc). With
// details, one record per example (its losses and both predictions).
static int gpt2_hellaswag(GPT2 *model, HellaSwag *h, int *inputs, int *targets, int *correct_sum, RunLog *details) {
    const EvalSet *es = &h->set;
    int Th = h->row_len, n_rows = 0, row[Th + 1];
    // every completion, in file order: (example i, its completion c)
    int i = 0, c = 0;
    while (i < es->num_examples) {
        // fill the next batch of rows
        n_rows = 0;
        while (n_rows < h->rows && i < es->num_examples) {
            int n = evalset_row(es, i, c, row);
            int *in = inputs + (size_t)n_rows * Th, *tg = targets + (size_t)n_rows * Th;
            for (int t = 0; t < Th; t++) {
                in[t] = t < n - 1 ? row[t] : 0; // beyond the row: any token (causal attention never looks ahead)
                tg[t] = t < n - 1 ? row[t + 1] : 0;
            }
            h->row_example[n_rows] = i;
            h->row_completion[n_rows] = es->first[i] + c;
            n_rows++;
            if (++c == es->first[i + 1] - es->first[i]) { c = 0; i++; }
        }
        gpt2_forward(model, inputs, targets, n_rows, Th);
        const float *losses = model->acts.losses; // (n_rows, Th)
        for (int r = 0; r < n_rows; r++) {
            int e = h->row_example[r], k = h->row_completion[r], ctx = es->ctx_len[e], len = es->comp_len[k];
            // the last context token predicts the first completion token
            double sum = 0.0;
            for (int t = ctx - 1; t < ctx - 1 + len; t++) sum += losses[(size_t)r * Th + t];
            h->sum_loss[k] = sum;
            h->mean_loss[k] = sum / len;
        }
    }
    int correct_mean = 0;
    *correct_sum = 0;
    for (int e = 0; e < es->num_examples; e++) {
        int pred_sum, pred_mean = evalset_predict(es, e, h->mean_loss + es->first[e], h->sum_loss + es->first[e], &pred_sum);
        correct_mean += pred_mean == es->label[e];
        *correct_sum += pred_sum == es->label[e];
        if (!details) continue;
        cJSON *r = cJSON_CreateObject();
        cJSON_AddNumberToObject(r, "example", e);
        cJSON_AddNumberToObject(r, "label", es->label[e]);
        cJSON *ml = cJSON_AddArrayToObject(r, "mean_losses"), *sl = cJSON_AddArrayToObject(r, "sum_losses");
        for (int k = es->first[e]; k < es->first[e + 1]; k++) {
            cJSON_AddItemToArray(ml, cJSON_CreateNumber(h->mean_loss[k]));
            cJSON_AddItemToArray(sl, cJSON_CreateNumber(h->sum_loss[k]));
        }
        cJSON_AddNumberToObject(r, "pred_norm", pred_mean);
        cJSON_AddNumberToObject(r, "pred", pred_sum);
        run_log_write(details, r);
    }
    return correct_mean;
}

// Run HellaSwag and report it: a line, and a record in the log.
static void hellaswag_report(Run *run, long step, GPT2 *model, HellaSwag *h, int *inputs, int *targets,
                             RunLog *details) {
    int correct_sum, correct = gpt2_hellaswag(model, h, inputs, targets, &correct_sum, details);
    int n = h->set.num_examples;
    printf("step %ld: hellaswag acc_norm %.4f (%d/%d), acc %.4f (%d/%d)\n", step, (double)correct / n, correct, n,
           (double)correct_sum / n, correct_sum, n);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "step", (double)step);
    cJSON_AddNumberToObject(r, "hellaswag_acc_norm", (double)correct / n);
    cJSON_AddNumberToObject(r, "hellaswag_acc", (double)correct_sum / n);
    cJSON_AddNumberToObject(r, "hellaswag_correct_norm", correct);
    cJSON_AddNumberToObject(r, "hellaswag_correct", correct_sum);
    cJSON_AddNumberToObject(r, "hellaswag_examples", n);
    run_log_write(&run->log, r);
}

// --save-bf16 FILE, checked at start-up to be a new file
static void save_bf16(const GPT2 *model, const char *path) {
    gpt2_save_checkpoint_bf16(model, path);
    printf("model: wrote %s (llm.c's version 5: bf16 parameters)\n", path);
}

// Everything a GPT-2 run holds besides the run machinery: the model, the
// text it reads and writes, the evaluations. The Trainer hooks (run/train.h)
// get it as their `self`.
typedef struct {
    GPT2Flags fl;
    RunConfig rc;
    OptimConfig oc;
    int training, have_val, evaluating, samples;
    GPT2Config config;
    int new_model;
    GPT2 model;
    Tokenizer *tok;            // NULL: samples print token ids
    int other_vocab;           // the vocabulary of a tokenizer that does not fit the model (0: none)
    int *prompt;               // <|endoftext|>, then --prompt's tokens
    size_t prompt_len;
    long sample_len;           // positions a sample takes (the KV cache's)
    TokenLoader train_loader, val_loader;
    TokenLoaderPos pos_before; // the training data's position before the current step
    HellaSwag hs;
    KVCache kv;
    Rng sample_rng;
    int *gen, *inputs, *targets;
    double *val_losses;        // one per validation batch (gpt2_validate)
    size_t state_bytes, adamw_bytes; // the optimizer state's size (the whole run's, every rank's) and AdamW's
} GPT2Run;

// The record opening the log: the run's flags, the model, the data.
static cJSON *gpt2_config_record(const GPT2Run *x, int argc, char **argv, const MemPlan *plan) {
    const GPT2Flags *fl = &x->fl;
    const GPT2Config *mc = &x->config;
    int training = x->training, have_val = x->have_val;
    cJSON *c = run_config_json(&x->rc, &x->oc, "gpt2", argc, argv);
    cJSON *r = cJSON_GetObjectItemCaseSensitive(c, "run");
    cJSON_AddNumberToObject(r, "seq_len", fl->T);
    cJSON_AddNumberToObject(r, "val_batches", fl->val_batches);
    const char *keys[] = {"layers", "heads", "channels", "vocab", "max_seq_len"};
    double values[] = {mc->num_layers, mc->num_heads, mc->channels, mc->vocab_size, mc->max_seq_len};
    run_config_add_model(c, matmul_precision(), "gpt2", keys, values, 5, fl->model_spec);
    cJSON_AddStringToObject(c, "train_data", training ? fl->train_pattern : "");
    cJSON_AddStringToObject(c, "val_data", have_val ? fl->val_pattern : "");
    cJSON_AddStringToObject(c, "data_format", fl->data_format == SHARD_FORMAT_NANOGPT ? "nanogpt" : "llmc");
    cJSON_AddBoolToObject(c, "shuffle", training && fl->shuffle);
    if (training && fl->shuffle) cJSON_AddNumberToObject(c, "shuffle_seed", fl->shuffle_seed);
    if (fl->hellaswag) cJSON_AddStringToObject(c, "hellaswag", fl->hellaswag_path);
    cJSON_AddNumberToObject(c, "optimizer_state_bytes", (double)x->state_bytes);
    cJSON_AddNumberToObject(c, "adamw_state_bytes", (double)x->adamw_bytes);
    cJSON_AddItemToObject(c, "memory_plan", memplan_json(plan));
    return c;
}

// The flags, checked together; the defaults of the paths (the *_given say
// whether the command line named them). Returns 0 when they asked for the help.
static int gpt2_parse_flags(GPT2Run *x, int argc, char **argv) {
    GPT2Flags *fl = &x->fl;
    RunConfig *rc = &x->rc;
    run_config_defaults(rc);
    optim_default_config(&x->oc);
    gpt2_flags_defaults(fl);
    int help = run_parse_args(&gpt2_flags, fl, rc, &x->oc, argc, argv, "train_gpt2", "./train_gpt2 --help", NULL, NULL);
    if (help) {
        print_usage(help == FLAG_HELP_MARKDOWN);
        return 0;
    }
    fl->train_pattern_given = fl->train_pattern != NULL;
    fl->val_pattern_given = fl->val_pattern != NULL;
    fl->tokenizer_given = fl->tokenizer_path != NULL;
    fl->hellaswag_given = fl->hellaswag_path != NULL;
    if (!fl->train_pattern) fl->train_pattern = DEFAULT_TRAIN_DATA;
    if (!fl->val_pattern) fl->val_pattern = DEFAULT_VAL_DATA;
    if (!fl->tokenizer_path) fl->tokenizer_path = DEFAULT_TOKENIZER;
    if (!fl->hellaswag_path) fl->hellaswag_path = DEFAULT_HELLASWAG;
    if (fl->hellaswag_given && !fl->hellaswag) fail("flag --hellaswag names the file of -h 1; give -h 1 too");
    if (fl->save_bf16 && (fl->save_bf16[0] == '\0' || file_exists(fl->save_bf16)))
        fail("flag --save-bf16: %s%s; it must name a new file (this program does not overwrite a file it did not write)",
             fl->save_bf16[0] ? fl->save_bf16 : "''", fl->save_bf16[0] ? " exists" : " is empty");
    // mpirun -np N: each rank runs micro-batches of B x T, and -d is the
    // global batch: N x B x T x (accumulation steps per rank)
    rc->ranks = dist_size();
    rc->follower = dist_rank() != 0;
    run_finalize_config(rc, &x->oc, (long)rc->B * fl->T * rc->ranks, "tokens");
    x->training = rc->max_steps != 0; // -x -1 (one epoch) or N steps; -x 0 only evaluates
    if (rc->ranks > 1 && x->training && fl->hellaswag)
        fail("flag -h 1 (HellaSwag) does not work with mpirun -np %d: evaluate a checkpoint with -x 0 in one process", rc->ranks);
    run_refuse_data_parallel_gaps(rc, &x->oc, x->training);
    return 1;
}

// The model's configuration: a new model by name (-e d12), or a checkpoint's
// header (built only after the memory plan).
static void gpt2_choose_model(GPT2Run *x) {
    GPT2Config *c = &x->config;
    const GPT2Flags *fl = &x->fl;
    x->new_model = gpt2_config_from_depth(c, fl->model_spec);
    if (x->new_model) {
        if (fl->vocab_size) {
            c->vocab_size = fl->vocab_size;
            c->padded_vocab_size = (fl->vocab_size + 127) / 128 * 128; // as llm.c pads 50257 to 50304
        }
        gpt2_check_config(c, "model", 0);
        printf("model: new GPT-2 %s, initialised with seed %llu\n", fl->model_spec, (unsigned long long)x->rc.seed);
    } else {
        if (!file_exists(fl->model_spec))
            fail("flag -e: %s is neither a checkpoint file nor d<layers>", fl->model_spec);
        gpt2_read_checkpoint_config(fl->model_spec, c);
        // a resumed run's command line names the vocabulary its new model had
        if (fl->vocab_size && fl->vocab_size != c->vocab_size)
            fail("flag --vocab-size %d: %s has a vocabulary of %d tokens (the flag is for new models)", fl->vocab_size,
                 fl->model_spec, c->vocab_size);
        printf("model: %s\n", fl->model_spec);
    }
    TensorList params;
    size_t n = gpt2_param_tensors(&params, c);
    printf("  L %d, NH %d, C %d, vocab %d (padded %d), max seq len %d, %zu parameters (%zu with padding)\n",
           c->num_layers, c->num_heads, c->channels, c->vocab_size, c->padded_vocab_size, c->max_seq_len,
           n - (size_t)(c->padded_vocab_size - c->vocab_size) * c->channels, n);
}

// Samples need a tokenizer to print text; without one they print ids. The
// default one (deps/) is used when it fits the model; one named with
// --tokenizer must exist and fit. Then the prompt: <|endoftext|>, and the
// tokens of --prompt.
static void gpt2_open_tokenizer(GPT2Run *x) {
    const GPT2Flags *fl = &x->fl;
    int V = x->config.vocab_size;
    if (fl->tokenizer_given && !file_exists(fl->tokenizer_path))
        fail("flag --tokenizer: %s does not exist", fl->tokenizer_path);
    if (file_exists(fl->tokenizer_path)) {
        struct stat st;
        stat(fl->tokenizer_path, &st);
        x->tok = S_ISDIR(st.st_mode) ? tokenizer_load(fl->tokenizer_path) : tokenizer_load_llmc(fl->tokenizer_path);
        if (tokenizer_vocab_size(x->tok) != V) {
            if (fl->tokenizer_given)
                fail("flag --tokenizer: %s has a vocabulary of %d tokens, the model's has %d", fl->tokenizer_path,
                     tokenizer_vocab_size(x->tok), V);
            x->other_vocab = tokenizer_vocab_size(x->tok);
            tokenizer_free(x->tok);
            x->tok = NULL;
        }
    }
    size_t prompt_cap = 1;
    x->prompt = malloc_or_fail(sizeof(int), "prompt");
    x->prompt[x->prompt_len++] = x->tok ? tokenizer_eot(x->tok) : V - 1; // samples start a new document
    if (fl->prompt) {
        if (!x->tok && x->other_vocab)
            fail("flag --prompt needs a tokenizer of the model's %d tokens; %s has %d (name one with --tokenizer)",
                 V, fl->tokenizer_path, x->other_vocab);
        if (!x->tok)
            fail("flag --prompt needs a tokenizer; %s does not exist (name one with --tokenizer DIR)", fl->tokenizer_path);
        if (!tokenizer_can_encode(x->tok))
            fail("flag --prompt needs a tokenizer with merges (a folder with encoder.json and vocab.bpe); %s is an "
                 "llm.c tokenizer file, which only decodes", fl->tokenizer_path);
        tokenizer_encode(x->tok, (const unsigned char *)fl->prompt, strlen(fl->prompt), &x->prompt, &x->prompt_len,
                         &prompt_cap);
    }
    int maxT = x->config.max_seq_len;
    x->samples = run_every_active(fl->sample_every); // -s 0: never
    if (x->samples) {
        if (maxT < 2)
            fail("%s has a context of %d position; sampling needs at least 2 (<|endoftext|> to start from and one "
                 "token to draw): train it with -s -1", fl->model_spec, maxT);
        if ((long)x->prompt_len >= maxT)
            fail("flag --prompt: the prompt is %zu tokens with the <|endoftext|> before it; the model's context is %d",
                 x->prompt_len, maxT);
    }
    x->sample_len = (long)x->prompt_len + fl->gen_tokens;
    if (x->sample_len > maxT) x->sample_len = maxT;
}

// HellaSwag's examples packed into rows of the run's (B, T) activations.
static void hellaswag_open(HellaSwag *hs, const char *path, const GPT2Config *c, int B, int T) {
    evalset_load(&hs->set, path, c->vocab_size);
    int need = hs->set.longest_row - 1; // positions: the last token is only a target
    if (need > c->max_seq_len)
        fail("%s: its longest example (context + completion) needs %d positions, more than the model's context of %d",
             path, need, c->max_seq_len);
    if (need > T)
        fail("%s: its longest example (context + completion) needs %d positions: run with -t %d or more (-t is %d)",
             path, need, need, T);
    hs->row_len = need;
    hs->rows = (int)(((long)B * T) / need);
    hs->row_completion = malloc_or_fail(hs->rows * sizeof(int), "HellaSwag rows");
    hs->row_example = malloc_or_fail(hs->rows * sizeof(int), "HellaSwag rows");
    hs->sum_loss = malloc_or_fail(hs->set.num_completions * sizeof(double), "HellaSwag losses");
    hs->mean_loss = malloc_or_fail(hs->set.num_completions * sizeof(double), "HellaSwag losses");
    printf("hellaswag: %s, %d examples (%d completions), rows of %d positions, %d per forward pass\n", path,
           hs->set.num_examples, hs->set.num_completions, hs->row_len, hs->rows);
}

static void hellaswag_free(HellaSwag *hs) {
    evalset_free(&hs->set);
    free(hs->row_completion);
    free(hs->row_example);
    free(hs->sum_loss);
    free(hs->mean_loss);
}

// The data, before the memory plan (the loaders hold a batch each; -x -1
// needs the training data's length): training shards, validation shards
// (-j, or the default corpus's val split when training on the default corpus
// and it exists; -x 0 evaluates it when asked to, by -j or -v), HellaSwag.
static void gpt2_open_data(GPT2Run *x) {
    GPT2Flags *fl = &x->fl;
    RunConfig *rc = &x->rc;
    int V = x->config.vocab_size;
    if (x->training) {
        TokenLoaderOptions train_opt = {fl->data_format, fl->shuffle, fl->shuffle_seed};
        token_loader_open(&x->train_loader, fl->train_pattern, rc->B, fl->T, V, &train_opt);
        run_set_epoch_steps(rc, (long)x->train_loader.batches_per_epoch, fl->train_pattern);
    }
    x->have_val = fl->val_pattern_given;
    if (!fl->val_pattern_given && (!fl->train_pattern_given || !x->training)) {
        glob_t g;
        x->have_val = glob(fl->val_pattern, 0, NULL, &g) == 0;
        globfree(&g);
    }
    if (!x->training && rc->val_every_given && !x->have_val)
        fail("flag -v with -x 0 evaluates the validation loss, but %s matches no file: name the shards with -j PATTERN",
             fl->val_pattern);
    if (!x->training && !fl->val_pattern_given && !rc->val_every_given) x->have_val = 0;
    if (x->have_val) {
        TokenLoaderOptions val_opt = {fl->data_format, 0, 0}; // as llm.c: validation in order
        token_loader_open(&x->val_loader, fl->val_pattern, rc->B, fl->T, V, &val_opt);
        if (x->val_loader.batches_per_epoch < 1)
            fail("%s: the validation shards hold no batch of %d x %d tokens (each shard needs %lld tokens)",
                 fl->val_pattern, rc->B, fl->T, (long long)rc->B * fl->T + 1);
        if (fl->val_batches == GPT2_WHOLE_SPLIT) fl->val_batches = (int)x->val_loader.batches_per_epoch; // -m -1
    }
    if (fl->hellaswag && !fl->hellaswag_given && x->training && !file_exists(fl->hellaswag_path)) {
        // as llm.c: a training run goes on without it
        printf("note: -h 1: %s does not exist, so there is no HellaSwag evaluation (llm.c's dev/data/hellaswag.py "
               "writes the file; --hellaswag FILE names it)\n", fl->hellaswag_path);
        fl->hellaswag = 0;
    }
    if (fl->hellaswag) hellaswag_open(&x->hs, fl->hellaswag_path, &x->config, rc->B, fl->T);
    x->evaluating = x->have_val || fl->hellaswag;
    if (!x->training && !x->evaluating && !x->samples && !fl->save_bf16)
        fail("flag -x 0 trains nothing and -s 0 samples nothing: nothing to do (-j PATTERN or -v N evaluates the "
             "validation loss, -h 1 HellaSwag)");
}

// The buffers of the model's passes, the KV cache, the sampler
static void gpt2_allocate_buffers(GPT2Run *x) {
    const RunConfig *rc = &x->rc;
    if (x->samples) kvcache_init(&x->kv, &x->config, (int)x->sample_len);
    x->gen = malloc_or_fail(x->fl.gen_tokens * sizeof(int), "generated tokens");
    rng_seed(&x->sample_rng, rc->seed + 1);
    if (x->have_val) x->val_losses = malloc_or_fail(x->fl.val_batches * sizeof(double), "validation losses");
    if (x->training || x->evaluating) {
        gpt2_allocate_activations(&x->model, rc->B, x->fl.T);
        x->inputs = malloc_or_fail((size_t)rc->B * x->fl.T * sizeof(int), "inputs");
        x->targets = malloc_or_fail((size_t)rc->B * x->fl.T * sizeof(int), "targets");
    }
    if (x->training)
        printf("data: train %s (%lld tokens in %d shard(s), %s), val %s\n", x->fl.train_pattern,
               (long long)x->train_loader.total_tokens, x->train_loader.num_shards,
               x->fl.shuffle ? "shuffled as llm.c does" : "in order", x->have_val ? x->fl.val_pattern : "(none)");
    if (x->have_val)
        printf("val: %d batches of %d x %d tokens per evaluation (%lld batches in one pass over %s)\n",
               x->fl.val_batches, rc->B, x->fl.T, (long long)x->val_loader.batches_per_epoch, x->fl.val_pattern);
}

static void gpt2_free_run(GPT2Run *x) {
    gpt2_free(&x->model); // zeroed when it was not built
    if (x->training) token_loader_free(&x->train_loader);
    if (x->have_val) token_loader_free(&x->val_loader);
    if (x->fl.hellaswag) hellaswag_free(&x->hs);
    if (x->tok) tokenizer_free(x->tok);
    kvcache_free(&x->kv);
    free(x->prompt); free(x->gen); free(x->inputs); free(x->targets); free(x->val_losses);
}

// A sample from the prompt, printed (and with the step, logged)
static void gpt2_sample(GPT2Run *x, Run *run, long step) {
    const GPT2Flags *fl = &x->fl;
    int n = gpt2_generate(&x->model, &x->kv, x->prompt, (int)x->prompt_len, fl->gen_tokens, x->gen, fl->temperature,
                          fl->top_k, &x->sample_rng, x->prompt[0]);
    if (step < 0) {
        if (fl->prompt) printf("%s", fl->prompt);
        print_tokens(x->tok, x->gen, n);
        return;
    }
    printf("--- sample at step %ld ---\n%s", step, fl->prompt ? fl->prompt : "");
    print_tokens(x->tok, x->gen, n);
    printf("---\n");
    cJSON *sm = cJSON_CreateObject();
    cJSON_AddNumberToObject(sm, "step", (double)step);
    cJSON *ids = cJSON_AddArrayToObject(sm, "sample_ids");
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(ids, cJSON_CreateNumber(x->gen[i]));
    run_log_write(&run->log, sm);
}

// -x 0: evaluate and sample, without training
static void gpt2_evaluate_only(GPT2Run *x, Run *run) {
    const GPT2Flags *fl = &x->fl;
    const RunConfig *rc = &x->rc;
    long step = run->start_step;
    if (x->have_val) {
        float loss = gpt2_validate(&x->model, &x->val_loader, fl->val_batches, x->inputs, x->targets, x->val_losses);
        run_eval_end(run, step, "val_loss", loss, val_record_extra(loss, fl->val_batches, rc->B, fl->T));
        printf("val: loss %.4f, perplexity %.3f (%d batches, %lld tokens of %s)\n", loss, exp((double)loss),
               fl->val_batches, (long long)fl->val_batches * rc->B * fl->T, fl->val_pattern);
    }
    if (fl->hellaswag) {
        // with -o, each example's losses and predictions go to DIR/hellaswag.jsonl
        RunLog details = {0};
        if (rc->out_dir[0]) {
            char path[700];
            snprintf(path, sizeof(path), "%s/hellaswag.jsonl", rc->out_dir);
            run_jsonl_open(&details, path, -1);
        }
        hellaswag_report(run, step, &x->model, &x->hs, x->inputs, x->targets, rc->out_dir[0] ? &details : NULL);
        run_log_close(&details);
    }
    if (x->samples) gpt2_sample(x, run, -1);
    if (fl->save_bf16) save_bf16(&x->model, fl->save_bf16);
    run_log_close(&run->log);
}

// the Trainer hooks (run/train.h)
static float gpt2_forward_next(void *self, int mine, int first) {
    GPT2Run *x = self;
    if (first) x->pos_before = token_loader_get_pos(&x->train_loader);
    token_loader_next(&x->train_loader, x->inputs, x->targets);
    if (!mine) return 0.0f;
    gpt2_forward_train(&x->model, x->inputs, x->targets); // at the allocated (B, T)
    return x->model.mean_loss;
}

static void gpt2_backward_hook(void *self, float loss_scale, FusedStep *fused) {
    gpt2_backward(&((GPT2Run *)self)->model, loss_scale, fused);
}

static cJSON *gpt2_state_record_hook(const void *self, int rewound) {
    const GPT2Run *x = self;
    TokenLoaderPos pos = rewound ? x->pos_before : token_loader_get_pos(&x->train_loader);
    return gpt2_state_record(&x->train_loader, pos, &x->sample_rng, x->fl.T);
}

static void gpt2_resume_data_hook(void *self, const Run *run, const cJSON *state, const char *path) {
    GPT2Run *x = self;
    gpt2_resume_data(state, path, run, &x->rc, x->fl.T, &x->train_loader, &x->sample_rng);
}

// the evaluations and the sample due after a step
static void gpt2_after_step(void *self, Run *run, long step) {
    GPT2Run *x = self;
    const GPT2Flags *fl = &x->fl;
    if (x->have_val && run_due(run, step, x->rc.val_every)) {
        float val = gpt2_validate(&x->model, &x->val_loader, fl->val_batches, x->inputs, x->targets, x->val_losses);
        run_eval_end(run, step, "val_loss", val, val_record_extra(val, fl->val_batches, x->rc.B, fl->T));
    }
    if (fl->hellaswag && run_due(run, step, x->rc.val_every)) // llm.c: with the validation loss
        hellaswag_report(run, step, &x->model, &x->hs, x->inputs, x->targets, NULL);
    if (x->samples && dist_rank() == 0 && run_due(run, step, fl->sample_every)) gpt2_sample(x, run, step);
}

static const Trainer gpt2_trainer = {gpt2_forward_next, gpt2_backward_hook, gpt2_state_record_hook, gpt2_after_step};

int main(int argc, char **argv) {
    dist_init(&argc, &argv);
    static GPT2Run x; // zeroed
    RunConfig *rc = &x.rc;
    if (!gpt2_parse_flags(&x, argc, argv)) return 0; // it printed the help

    // resuming: the newest complete checkpoint in -o replaces -e
    // rank 0 makes, locks and checks the folder before the others read it
    Run run;
    char resume_model[700], resume_optim[700];
    cJSON *resume_state = training_resume_begin(&run, rc, resume_model, resume_optim, sizeof(resume_model));
    if (resume_state) {
        gpt2_resume_check_seq_len(resume_state, run.state_path, x.fl.T);
        x.fl.model_spec = resume_model;
    }

    // the model's configuration, the parameter blocks the optimizer sees, the text and the data
    gpt2_choose_model(&x);
    int num_blocks = gpt2_param_blocks(&x.config, NULL);
    ParamBlock *blocks = malloc_or_fail(num_blocks * sizeof(ParamBlock), "parameter blocks");
    gpt2_param_blocks(&x.config, blocks);
    Dist dist;
    OptimConfig part_oc = training_plan_ranks(&dist, blocks, num_blocks, &x.oc, rc->ranks, x.training);
    gpt2_open_tokenizer(&x);
    gpt2_open_data(&x);

    // the memory plan, before any large allocation: fails here if the run does not fit
    if (rc->ranks > 1 && x.training) dist_print_partition(&dist, &part_oc);
    GPT2PlanContext plan_ctx = {&x.config,
                                {dist_own_blocks(&dist), dist_num_own_blocks(&dist), &part_oc, x.training},
                                x.evaluating, x.samples ? (int)x.sample_len : 0, current_rss_bytes(),
                                x.training ? &x.train_loader : NULL, x.have_val ? &x.val_loader : NULL};
    MemPlan plan;
    gpt2_memory_plan(&plan, &plan_ctx, rc->B, x.fl.T, OPTIM_NAME, rc->fused_update);
    memplan_check(&plan, gpt2_memory_plan, &plan_ctx, rc->memory_limit, rc->force_memory);

    if (!rc->memory_plan_only) { // else nothing large was allocated
        // the model, the optimizer
        if (x.new_model) gpt2_build_random(&x.model, &x.config, rc->seed);
        else gpt2_build_from_checkpoint(&x.model, x.fl.model_spec);
        Optimizer *opt = training_create_optimizer(&dist, blocks, num_blocks, &x.oc, &part_oc, rc->ranks,
                                                   &x.state_bytes, &x.adamw_bytes);
        gpt2_allocate_buffers(&x);
        if (!x.training) {
            run_open(&run, gpt2_config_record(&x, argc, argv, &plan), "tok", "val", x.state_bytes, 0.0);
            gpt2_evaluate_only(&x, &run);
            memplan_print_peak(&plan);
        } else {
            printf("run: %ld steps of %ld tokens (micro-batch %d x %d, %d accumulation steps%s), lr %g %s, warmup %ld, final %g, clip %g, %d threads%s, %s matmuls\n",
                   rc->max_steps, rc->total_batch, rc->B, x.fl.T, rc->grad_accum, rc->ranks > 1 ? " on each rank" : "",
                   x.oc.lr, schedule_name(rc->schedule), rc->warmup, rc->final_frac, rc->clip, omp_get_max_threads(),
                   rc->ranks > 1 ? " per rank" : "", matmul_precision());
            if (rc->ranks > 1) printf("data parallel: %d ranks (mpirun -np %d)\n", rc->ranks, rc->ranks);
            gpt2_allocate_gradients(&x.model, rc->fused_update);
            Training tr;
            training_init(&tr, &run, &dist, opt, blocks, num_blocks, &gpt2_trainer, &x, &x.model.mem);
            double elapsed_before = resume_state ? training_resume(&tr, resume_state, resume_optim, gpt2_resume_data_hook) : 0.0;
            run_open(&run, gpt2_config_record(&x, argc, argv, &plan), "tok", "val", x.state_bytes, elapsed_before);

            long step = training_loop(&tr, x.oc.lr);

            if (x.fl.save_bf16 && dist.rank == 0) save_bf16(&x.model, x.fl.save_bf16); // the same model on every rank
            memplan_print_peak(&plan);
            training_finish(&tr, step, "sample from it again", "./train_gpt2", " -g 256");
            training_free(&tr);
        }
        optim_free(opt);
    }
    cJSON_Delete(resume_state);
    gpt2_free_run(&x);
    free(blocks);
    dist_free(&dist);
    dist_finalize();
    return 0;
}
#endif
