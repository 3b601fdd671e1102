/*
Vision Transformer training on the CPU, in one file: the parameters, the
forward and backward passes, evaluation (top-1 and top-5 accuracy, confusion
matrix), and the run handed to the training loop (run/train.h). The model is the ViT of Dosovitskiy et al. as timm
builds it: a patch embedding (a linear map of each flattened P x P x channels
patch, the same as a stride-P convolution), a cls token, learned position
embeddings, pre-LayerNorm blocks with bidirectional multi-head attention and
an exact-GELU MLP, a final LayerNorm and a linear head on the cls token.
The layers live in nn/ (shared with train_gpt2.c), the optimizers in optim/
(one is compiled in: make train_vit OPTIM=adamw|sgdm|sgd_sai|sinkgd|slimadam),
the run machinery (flags, schedule, logs, checkpoints, the loop) in run/, the image
data (Fashion-MNIST, image shards read whole or streamed, the batch loader
and its augmentation: crops, flips, Mixup/CutMix, soft targets) in data/images.h.

Model checkpoint (little-endian):
  256 int32 header: [0] magic 20241017, [1] version 1 (fp32 parameters),
  [2] image height H, [3] image width W, [4] image channels, [5] patch size P,
  [6] C, [7] L, [8] NH, [9] classes, the rest 0;
  then every parameter tensor as fp32 in the order of ParameterTensors below.
The optimizer state is a separate file (optim/optim.h, optim_save).

Parameter blocks the optimizer sees (optim/optim.h; SlimAdam rules files
name them), in this order:
  patch.w  [C, channels*P*P]  ROLE_PATCH_EMBEDDING  decayed
  patch.b  [C]                ROLE_BIAS
  cls      [1, C]             ROLE_CLS_TOKEN        decayed (a 2-D block, spec section 0)
  pos      [NP+1, C]          ROLE_POSITION_EMBEDDING decayed
  per layer l = 0..L-1, as GPT-2's:
  h<l>.ln1w, h<l>.ln1b [C]    ROLE_NORM
  h<l>.attn.qkvw [3C, C]      ROLE_ATTN_QKV         decayed
  h<l>.attn.qkvb [3C]         ROLE_BIAS
  h<l>.attn.projw [C, C]      ROLE_ATTN_PROJ        decayed
  h<l>.attn.projb [C]         ROLE_BIAS
  h<l>.ln2w, h<l>.ln2b [C]    ROLE_NORM
  h<l>.mlp.fcw [4C, C]        ROLE_MLP_UP           decayed
  h<l>.mlp.fcb [4C]           ROLE_BIAS
  h<l>.mlp.projw [C, 4C]      ROLE_MLP_DOWN         decayed
  h<l>.mlp.projb [C]          ROLE_BIAS
  lnfw, lnfb [C]              ROLE_NORM
  head.w   [classes, C]       ROLE_HEAD             decayed
  head.b   [classes]          ROLE_BIAS
*/
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/profile.h"
#include "common/rng.h"
#include "common/utils.h"
#include "nn/layers.h"
#include "nn/matmul.h"
#include "optim/optim.h"
#include "run/model.h"

// timm's ViT: LayerNorm eps 1e-6 (GPT-2 uses 1e-5), exact-erf GELU
#define VIT_LN_EPS 1e-6f
#define VIT_GELU GELU_ERF

// ----------------------------------------------------------------------------
// the model

typedef struct {
    int image_height;   // H, a multiple of P
    int image_width;    // W, a multiple of P
    int image_channels; // channels of the input images (1 grey, 3 RGB, any count works)
    int patch_size;     // P
    int channels;       // C, the transformer's width
    int num_layers;     // L
    int num_heads;      // NH
    int num_classes;
} ViTConfig;

// patches per image NP; the sequence is the cls token + NP patches
static inline int vit_num_patches(const ViTConfig *c) {
    return (c->image_height / c->patch_size) * (c->image_width / c->patch_size);
}
// values in one flattened patch: channels * P * P
static inline int vit_patch_dim(const ViTConfig *c) {
    return c->image_channels * c->patch_size * c->patch_size;
}

// The parameters, in checkpoint order; all live in one contiguous buffer.
#define NUM_PARAMETER_TENSORS (8 + LAYER_TENSORS)
typedef struct {
    float *patchw;       // (C, channels*P*P) patch embedding: a Conv2d weight [C, channels, P, P] flattened
    float *patchb;       // (C)
    float *cls;          // (C) cls token
    float *pos;          // (NP+1, C) position embedding; row 0 is the cls token's
    LayerTensors layers; // the L transformer layers' twelve tensors (run/model.h)
    float *lnfw;         // (C) final LayerNorm
    float *lnfb;         // (C)
    float *headw;        // (classes, C) classification head
    float *headb;        // (classes)
} ParameterTensors;

// The parameters in checkpoint order, each tensor's size for this
// configuration and where its pointer lives in ParameterTensors (run/model.h);
// returns their floats.
static size_t vit_param_tensors(TensorList *l, const ViTConfig *cfg) {
    size_t C = cfg->channels, K = cfg->num_classes, T = (size_t)vit_num_patches(cfg) + 1;
    tensors_begin(l, "the ViT parameters");
    tensor_add(l, offsetof(ParameterTensors, patchw), C, (size_t)vit_patch_dim(cfg));
    tensor_add(l, offsetof(ParameterTensors, patchb), C, 1);
    tensor_add(l, offsetof(ParameterTensors, cls), C, 1);
    tensor_add(l, offsetof(ParameterTensors, pos), T, C);
    layer_tensors_add(l, offsetof(ParameterTensors, layers), cfg->num_layers, C);
    tensor_add(l, offsetof(ParameterTensors, lnfw), C, 1);
    tensor_add(l, offsetof(ParameterTensors, lnfb), C, 1);
    tensor_add(l, offsetof(ParameterTensors, headw), K, C);
    tensor_add(l, offsetof(ParameterTensors, headb), K, 1);
    return tensors_total(l, 0);
}

// The activations of a forward pass that backward needs, for a batch of B
// images; T = NP+1 tokens per image. As in train_gpt2.c no pre-softmax scores
// or projection outputs are kept, and the softmax overwrites the logits; unlike
// it, the layers keep their LayerNorm and GELU outputs. The final LayerNorm
// and the head only run on the cls rows: LayerNorm is per row, so normalising
// the other rows (as timm does) changes neither the logits nor any gradient.
typedef struct {
    float *patches;          // (B, NP, channels*P*P) the images cut into flattened patches
    float *encoded;          // (B, T, C) [cls; patch embeddings] + position embedding
    LayerActivations layers; // the L layers' (run/model.h)
    float *clsx;             // (B, C) the last layer's cls rows
    float *lnf;              // (B, C) their final LayerNorm
    float *lnf_mean;         // (B)
    float *lnf_rstd;         // (B)
    float *logits;           // (B, classes) logits, then probabilities, then their gradient
    float *losses;           // (B) per-image loss
} ActivationTensors;

typedef struct {
    ViTConfig config;
    ParameterTensors params, grads; // grads: see ModelMemory.fused
    ActivationTensors acts;
    LayerScratch scratch;   // one layer's buffers (run/model.h); scratch.scratch also the patch embeddings and their gradient
    ModelMemory mem;        // the buffers all of the above point into (run/model.h)
    int batch_size;         // B the buffers were allocated for
    int *labels;            // (B) of the last forward with labels
    float *targets;         // (B, classes) of the last forward with target distributions
    int soft;               // the last forward's loss was against targets (label smoothing, Mixup)
    float mean_loss;        // of the last forward with labels or targets
    int have_dlogits;       // backward has turned the last forward's probabilities into dlogits
} ViT;

// ----------------------------------------------------------------------------
// the parameter blocks the optimizer sees: one per tensor per layer

// The block of layer l's k-th tensor (LayerTensors order), and of the final
// LayerNorm (the head follows it): the patch embedding, cls and pos come
// first, then 12 blocks per layer.
static inline int vit_layer_block(int l, int k) { return 4 + LAYER_TENSORS * l + k; }
static inline int vit_lnf_block(const ViTConfig *c) { return vit_layer_block(c->num_layers, 0); }

// Returns the number of blocks written to out (NULL: just count). Offsets
// come from the configuration alone (the memory plan needs the blocks before
// anything is allocated).
static int vit_param_blocks(const ViTConfig *cfg, ParamBlock *out) {
    int C = cfg->channels, L = cfg->num_layers, K = cfg->num_classes;
    TensorList tensors;
    size_t off[NUM_PARAMETER_TENSORS];
    vit_param_tensors(&tensors, cfg);
    tensor_offsets(&tensors, off);
    const size_t *end = off + 4 + LAYER_TENSORS; // the tensors after the layers
    int n = 0;
    n = add_param_block(out, n, "patch.w", ROLE_PATCH_EMBEDDING, 2, C, vit_patch_dim(cfg), off[0]);
    n = add_param_block(out, n, "patch.b", ROLE_BIAS, 1, C, 1, off[1]);
    n = add_param_block(out, n, "cls", ROLE_CLS_TOKEN, 2, 1, C, off[2]);
    n = add_param_block(out, n, "pos", ROLE_POSITION_EMBEDDING, 2, vit_num_patches(cfg) + 1, C, off[3]);
    for (int l = 0; l < L; l++) n = add_layer_param_blocks(out, n, l, C, off + 4);
    n = add_param_block(out, n, "lnfw", ROLE_NORM, 1, C, 1, end[0]);
    n = add_param_block(out, n, "lnfb", ROLE_NORM, 1, C, 1, end[1]);
    n = add_param_block(out, n, "head.w", ROLE_HEAD, 2, K, C, end[2]);
    n = add_param_block(out, n, "head.b", ROLE_BIAS, 1, K, 1, end[3]);
    return n;
}

// ----------------------------------------------------------------------------
// building the model: from a checkpoint, or randomly initialised

// The flags' range for model dimensions, and the largest model a checkpoint
// may describe: images as large as the image loaders take (IMAGE_MAX_SIDE),
// patches of up to 1024 x 1024 pixels; small enough that the patch dimension
// channels x P x P and every other size fit their ints.
#define VIT_MAX_DIM 65536
#define VIT_MAX_SIDE 4096
#define VIT_MAX_CHANNELS 64
#define VIT_MAX_PATCH 1024
#define VIT_MAX_CLASSES 1000000

// Every field in range, named in the error ("header field" when the config
// comes from a checkpoint's header).
static void vit_check_config(const ViTConfig *c, const char *source, int from_header) {
#define FIELD(name, value, lo, hi) check_config_field(source, from_header, name, value, lo, hi)
    FIELD("H", c->image_height, 1, VIT_MAX_SIDE);
    FIELD("W", c->image_width, 1, VIT_MAX_SIDE);
    FIELD("channels", c->image_channels, 1, VIT_MAX_CHANNELS);
    FIELD("P", c->patch_size, 1, VIT_MAX_PATCH);
    check_layer_config(source, from_header, c->num_layers, c->channels, c->num_heads);
    FIELD("classes", c->num_classes, 1, VIT_MAX_CLASSES);
#undef FIELD
    if (c->image_height % c->patch_size != 0 || c->image_width % c->patch_size != 0)
        fail("%s: image size %dx%d is not divisible by the patch size %d", source, c->image_height,
             c->image_width, c->patch_size);
}

#define VIT_CHECKPOINT_MAGIC 20241017
#define VIT_CHECKPOINT_VERSION 1 // fp32 parameters

// The configuration's fields in the order of the checkpoint header (ints 2..9).
#define VIT_HEADER_FIELDS 8
static void vit_header_fields(ViTConfig *c, int *fields[VIT_HEADER_FIELDS]) {
    int *f[VIT_HEADER_FIELDS] = {&c->image_height, &c->image_width, &c->image_channels, &c->patch_size,
                                 &c->channels, &c->num_layers, &c->num_heads, &c->num_classes};
    memcpy(fields, f, sizeof(f));
}

// A model of this configuration, its parameters allocated (zeroed), nothing
// else; its checkpoint header made.
static void vit_allocate_parameters(ViT *model, const ViTConfig *config) {
    *model = (ViT){.config = *config};
    vit_param_tensors(&model->mem.param_list, config);
    ViTConfig c = *config;
    int *fields[VIT_HEADER_FIELDS];
    vit_header_fields(&c, fields);
    checkpoint_header_write(model->mem.header, VIT_CHECKPOINT_MAGIC, VIT_CHECKPOINT_VERSION, fields,
                            VIT_HEADER_FIELDS);
    model_alloc_params(&model->mem, &model->params, "ViT");
}

// Open a checkpoint and read its configuration, checked against the file's
// size; the file is left positioned at the parameters.
static FILE *vit_open_checkpoint(const char *path, ViTConfig *c) {
    int header[CHECKPOINT_HEADER_INTS];
    FILE *f = checkpoint_open(path, header, VIT_CHECKPOINT_MAGIC, "ViT");
    if (header[1] != VIT_CHECKPOINT_VERSION)
        fail("%s has version %d; this trainer reads version %d (fp32)", path, header[1], VIT_CHECKPOINT_VERSION);
    int *fields[VIT_HEADER_FIELDS];
    vit_header_fields(c, fields);
    checkpoint_header_read(header, fields, VIT_HEADER_FIELDS);
    vit_check_config(c, path, 1);
    // the size the header describes must be the file's, before any allocation
    TensorList params;
    checkpoint_check_size(f, path, vit_param_tensors(&params, c), sizeof(float));
    return f;
}

// the configuration of a checkpoint, before anything is allocated (the memory plan)
void vit_read_checkpoint_config(const char *path, ViTConfig *c) {
    fclose(vit_open_checkpoint(path, c));
}

void vit_build_from_checkpoint(ViT *model, const char *path) {
    ViTConfig config;
    FILE *f = vit_open_checkpoint(path, &config);
    vit_allocate_parameters(model, &config);
    fread_or_fail(model->mem.params_memory, sizeof(float), model->mem.num_parameters, f, path);
    fclose(f);
}

// timm's initialisation: every linear weight (qkv, projections, MLP, head)
// and the position embedding from N(0, 0.02) (timm truncates at +-2, i.e. at
// 100 standard deviations: no truncation in practice), biases 0, LayerNorm
// gains 1, the cls token from N(0, 1e-6). The patch embedding keeps PyTorch's
// Conv2d default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
void vit_build_random(ViT *model, const ViTConfig *config, uint64_t seed) {
    vit_check_config(config, "model", 0);
    vit_allocate_parameters(model, config);
    const ViTConfig *c = &model->config;
    ParameterTensors *p = &model->params;
    size_t C = c->channels, L = c->num_layers, K = c->num_classes, D = vit_patch_dim(c);
    size_t T = (size_t)vit_num_patches(c) + 1;
    float bound = 1.0f / sqrtf((float)D);
    Rng rng;
    rng_seed(&rng, seed);
    for (size_t i = 0; i < C * D; i++) p->patchw[i] = bound * (2.0f * rng_uniform(&rng) - 1.0f);
    for (size_t i = 0; i < C; i++) p->patchb[i] = bound * (2.0f * rng_uniform(&rng) - 1.0f);
    for (size_t i = 0; i < C; i++) p->cls[i] = 1e-6f * rng_normal(&rng);
    for (size_t i = 0; i < T * C; i++) p->pos[i] = 0.02f * rng_normal(&rng);
    layer_tensors_init(&p->layers, L, C, 0.02f, &rng);
    for (size_t i = 0; i < C; i++) p->lnfw[i] = 1.0f;
    for (size_t i = 0; i < K * C; i++) p->headw[i] = 0.02f * rng_normal(&rng);
    // the other biases and LayerNorm biases are already 0 (alloc_big zeroes)
}

// The activation tensors and the scratch for batches of B images, each
// tensor's size and where its pointer lives in ViT (for the allocation and
// the memory plan).
static void vit_activation_tensors(TensorList *acts, TensorList *scratch, const ViTConfig *c, int B) {
    size_t L = c->num_layers, NH = c->num_heads, C = c->channels, K = c->num_classes;
    size_t NP = vit_num_patches(c), T = NP + 1, D = vit_patch_dim(c);
    tensors_begin(acts, "the ViT activations for B %d", B);
    size_t BT = mul_size_or_fail((size_t)B, T, acts->what);
    tensor_add(acts, offsetof(ViT, acts.patches), mul_size_or_fail((size_t)B, NP, acts->what), D);
    tensor_add(acts, offsetof(ViT, acts.encoded), BT, C);
    layer_activations_add(acts, offsetof(ViT, acts.layers), L, (size_t)B, T, C, NH, 1);
    tensor_add(acts, offsetof(ViT, acts.clsx), (size_t)B, C);
    tensor_add(acts, offsetof(ViT, acts.lnf), (size_t)B, C);
    tensor_add(acts, offsetof(ViT, acts.lnf_mean), (size_t)B, 1);
    tensor_add(acts, offsetof(ViT, acts.lnf_rstd), (size_t)B, 1);
    tensor_add(acts, offsetof(ViT, acts.logits), (size_t)B, K);
    tensor_add(acts, offsetof(ViT, acts.losses), (size_t)B, 1);
    tensors_begin(scratch, "the ViT backward scratch for B %d", B);
    layer_scratch_add(scratch, offsetof(ViT, scratch), BT, C, 1);
}

// Activation and scratch buffers for batches of B images: allocated once, before training.
void vit_allocate_activations(ViT *model, int B) {
    TensorList acts, scratch;
    vit_activation_tensors(&acts, &scratch, &model->config, B);
    model_alloc_activations(&model->mem, model, &acts, &scratch, "ViT", "ViT backward scratch");
    model->labels = malloc_or_fail((size_t)B * sizeof(int), "labels");
    model->targets = malloc_or_fail((size_t)B * model->config.num_classes * sizeof(float), "targets");
    model->batch_size = B;
}

// The gradient buffer, before training (see ModelMemory.fused).
void vit_allocate_gradients(ViT *model, int fused) { model_alloc_grads(&model->mem, &model->grads, fused, "ViT"); }

void vit_free(ViT *model) {
    model_memory_free(&model->mem);
    free(model->labels);
    free(model->targets);
}

// ----------------------------------------------------------------------------
// the ViT's own layers; the transformer layers come from nn/

// Patch embedding = im2col + a linear layer, the same as Conv2d(channels, C,
// kernel P, stride P). images (B, ch, H, W) -> patches (B, NP, ch*P*P), patch
// n = (row py, column px) in row-major order over the (H/P) x (W/P) grid, its
// values in (channel, row, col) order, the order of a Conv2d weight [C, ch, P, P];
// then out (B, NP, C) = patches @ w^T + b with w (C, ch*P*P), b (C).
static void patch_embed_forward(float *out, float *patches, const float *images, const float *w, const float *b,
                                int B, int ch, int H, int W, int P, int C) {
    profile_begin(PROFILE_EMBEDDING, 0);
    int GH = H / P, GW = W / P, NP = GH * GW, D = ch * P * P;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int bi = 0; bi < B; bi++) {
        for (int n = 0; n < NP; n++) {
            int py = n / GW, px = n % GW;
            float *dst = patches + ((size_t)bi * NP + n) * D;
            for (int c = 0; c < ch; c++) {
                const float *plane = images + ((size_t)bi * ch + c) * H * W;
                for (int i = 0; i < P; i++) {
                    const float *src = plane + (size_t)(py * P + i) * W + (size_t)px * P;
                    memcpy(dst + (size_t)(c * P + i) * P, src, (size_t)P * sizeof(float));
                }
            }
        }
    }
    matmul_forward(out, patches, w, b, B * NP, D, C);
    profile_end();
}

// dout (B, NP, C) -> dw (C, ch*P*P) +=, db (C) +=. The images need no gradient.
// The sums over the B*NP patches run in matmul_backward's fixed order.
static void patch_embed_backward(float *dw, float *db, const float *dout, const float *patches, const float *w,
                                 int B, int NP, int D, int C) {
    profile_begin(PROFILE_EMBEDDING, 0);
    matmul_backward(NULL, dw, db, dout, patches, w, B * NP, D, C);
    profile_end();
}

// Token sequence: out[b,0,:] = cls + pos[0], out[b,1+n,:] = patch_emb[b,n,:] + pos[1+n].
// patch_emb (B, NP, C), cls (C), pos (NP+1, C) -> out (B, NP+1, C)
static void embed_forward(float *out, const float *patch_emb, const float *cls, const float *pos, int B, int NP, int C) {
    profile_begin(PROFILE_EMBEDDING, 0);
    int T = NP + 1;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *o = out + ((size_t)b * T + t) * C;
            const float *x = t == 0 ? cls : patch_emb + ((size_t)b * NP + t - 1) * C;
            const float *pe = pos + (size_t)t * C;
            for (int c = 0; c < C; c++) o[c] = x[c] + pe[c];
        }
    }
    profile_end();
}

// dout (B, NP+1, C) -> dpatch_emb (B, NP, C) +=, dcls (C) +=, dpos (NP+1, C) +=.
// dpos and dcls sum over the batch: one thread owns a position and adds the
// images in order b = 0, 1, ..., so the sums do not depend on the thread count.
static void embed_backward(float *dpatch_emb, float *dcls, float *dpos, const float *dout, int B, int NP, int C) {
    profile_begin(PROFILE_EMBEDDING, 0);
    int T = NP + 1;
    #pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        float *dp = dpos + (size_t)t * C;
        for (int b = 0; b < B; b++) {
            const float *d = dout + ((size_t)b * T + t) * C;
            for (int c = 0; c < C; c++) dp[c] += d[c];
            if (t == 0) for (int c = 0; c < C; c++) dcls[c] += d[c];
            else {
                float *dx = dpatch_emb + ((size_t)b * NP + t - 1) * C;
                for (int c = 0; c < C; c++) dx[c] += d[c];
            }
        }
    }
    profile_end();
}

// The cls rows of the residual stream, for the head: x (B, T, C) -> out (B, C) = x[:, 0, :]
static void cls_pool_forward(float *out, const float *x, int B, int T, int C) {
    for (int b = 0; b < B; b++) memcpy(out + (size_t)b * C, x + (size_t)b * T * C, (size_t)C * sizeof(float));
}

// dout (B, C) -> dx (B, T, C) += on the cls rows
static void cls_pool_backward(float *dx, const float *dout, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        float *d = dx + (size_t)b * T * C;
        const float *g = dout + (size_t)b * C;
        for (int c = 0; c < C; c++) d[c] += g[c];
    }
}

// ----------------------------------------------------------------------------
// forward and backward

// Forward over images (B, channels, H, W) (float, normalised) to the logits
// (model->acts.logits, B x classes).
static void vit_forward_logits(ViT *model, const float *images, int B) {
    if (!model->mem.acts_memory) fail("vit_forward: activations not allocated");
    if (B != model->batch_size) fail("vit_forward: batch %d differs from the allocated %d", B, model->batch_size);
    const ViTConfig *cfg = &model->config;
    int L = cfg->num_layers, NH = cfg->num_heads, C = cfg->channels, K = cfg->num_classes;
    int NP = vit_num_patches(cfg), T = NP + 1;
    size_t BT = (size_t)B * T;
    model->have_dlogits = 0;

    ParameterTensors p = model->params;
    ActivationTensors a = model->acts;
    float *patch_emb = model->scratch.scratch; // (B, NP, C), consumed right away
    patch_embed_forward(patch_emb, a.patches, images, p.patchw, p.patchb, B, cfg->image_channels,
                        cfg->image_height, cfg->image_width, cfg->patch_size, C);
    embed_forward(a.encoded, patch_emb, p.cls, p.pos, B, NP, C);
    for (int l = 0; l < L; l++) {
        const float *residual = l == 0 ? a.encoded : a.layers.residual3 + (size_t)(l - 1) * BT * C;
        // this layer's weights and activations
        LayerActivations act = layer_activations(&a.layers, l, B, T, C, NH);
        LayerTensors w = layer_tensors(&p.layers, l, C);
        float *proj = model->scratch.scratch; // a projection's output, added to the residual right away
        // attention block: x + proj(attention(ln1(x))), every token sees every token
        layernorm_forward(act.ln1, act.ln1_mean, act.ln1_rstd, residual, w.ln1w, w.ln1b, BT, C, VIT_LN_EPS);
        matmul_forward(act.qkv, act.ln1, w.qkvw, w.qkvb, BT, C, 3 * C);
        attention_forward(act.atty, act.lse, act.qkv, B, T, C, NH, 0);
        matmul_forward(proj, act.atty, w.attprojw, w.attprojb, BT, C, C);
        residual_forward(act.residual2, residual, proj, BT * C);
        // MLP block: x + proj(gelu(fc(ln2(x))))
        layernorm_forward(act.ln2, act.ln2_mean, act.ln2_rstd, act.residual2, w.ln2w, w.ln2b, BT, C, VIT_LN_EPS);
        matmul_forward(act.fch, act.ln2, w.fcw, w.fcb, BT, C, 4 * C);
        gelu_forward(act.fch_gelu, act.fch, BT * 4 * C, VIT_GELU);
        matmul_forward(proj, act.fch_gelu, w.fcprojw, w.fcprojb, BT, 4 * C, C);
        residual_forward(act.residual3, act.residual2, proj, BT * C);
    }
    const float *last = a.layers.residual3 + (size_t)(L - 1) * BT * C;
    cls_pool_forward(a.clsx, last, B, T, C);
    layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, a.clsx, p.lnfw, p.lnfb, B, C, VIT_LN_EPS);
    matmul_forward(a.logits, a.lnf, p.headw, p.headb, B, C, K);
}

// The forward pass, and with labels the per-image cross-entropy losses and
// their mean (model->mean_loss); the logits buffer then holds probabilities.
// Without labels (NULL) the logits stay logits.
void vit_forward(ViT *model, const float *images, const int *labels, int B) {
    int K = model->config.num_classes;
    if (labels)
        for (int i = 0; i < B; i++)
            if (labels[i] < 0 || labels[i] >= K) fail("label %d of image %d is outside [0, %d)", labels[i], i, K);
    vit_forward_logits(model, images, B);
    model->soft = 0;
    if (labels) {
        memcpy(model->labels, labels, (size_t)B * sizeof(int));
        softmax_crossentropy_forward(model->acts.losses, model->acts.logits, labels, B, K, K);
        double sum = 0.0;
        for (int i = 0; i < B; i++) sum += model->acts.losses[i];
        model->mean_loss = (float)(sum / B);
    } else {
        model->mean_loss = -1.0f;
    }
}

// The same with a target distribution per image, targets (B, classes) (label
// smoothing, Mixup/CutMix: see nn/layers.h): losses -sum_k t_k log p_k.
void vit_forward_soft(ViT *model, const float *images, const float *targets, int B) {
    vit_forward_logits(model, images, B);
    int K = model->config.num_classes;
    memcpy(model->targets, targets, (size_t)B * K * sizeof(float));
    model->soft = 1;
    softmax_crossentropy_soft_forward(model->acts.losses, model->acts.logits, model->targets, B, K, K);
    double sum = 0.0;
    for (int i = 0; i < B; i++) sum += model->acts.losses[i];
    model->mean_loss = (float)(sum / B);
}

// Backward of the last forward (which had labels or targets).
// fused NULL: gradients ACCUMULATE into model->grads, so that micro-batches
// add up; loss_scale is the weight of this micro-batch's mean loss in the
// total (1 / accumulation steps).
// fused (the model's gradients are one layer's, vit_allocate_gradients):
// every block's gradient goes to fused_block as soon as it is complete: the
// head's and lnf's first, each layer's after its backward, the embeddings'
// last. A second call after the same forward (the measuring pass, then the
// updating one) computes the same gradients: the dlogits are kept, the
// parameters a pass reads have not moved yet.
void vit_backward(ViT *model, float loss_scale, FusedStep *fused) {
    const ViTConfig *cfg = &model->config;
    int B = model->batch_size;
    int L = cfg->num_layers, NH = cfg->num_heads, C = cfg->channels, K = cfg->num_classes;
    int NP = vit_num_patches(cfg), T = NP + 1;
    size_t BT = (size_t)B * T;
    ParameterTensors p = model->params, g = model->grads;
    ActivationTensors a = model->acts;
    LayerScratch s = model->scratch;

    if (fused && !model->mem.fused) fail("vit_backward: fused updates need vit_allocate_gradients(model, 1)");
    if (model->mem.fused) model_zero_grad(&model->mem); // each pass is a whole step's gradient

    // the mean over B images: each image's loss has weight loss_scale / B
    if (!model->have_dlogits) {
        if (model->soft) softmax_crossentropy_soft_backward(a.logits, model->targets, loss_scale / (float)B, B, K, K);
        else softmax_crossentropy_backward(a.logits, model->labels, loss_scale / (float)B, B, K, K);
    }
    model->have_dlogits = 1;
    float *dlogits = a.logits;
    float *dlnf = s.dln, *dclsx = s.datty; // (B, C) each
    matmul_backward_into(dlnf, g.headw, g.headb, dlogits, a.lnf, p.headw, B, C, K, 1, 0);  // dlnf written
    step_block(fused, vit_lnf_block(cfg) + 2, g.headw);
    step_block(fused, vit_lnf_block(cfg) + 3, g.headb);
    memset(dclsx, 0, (size_t)B * C * sizeof(float));
    layernorm_backward(dclsx, g.lnfw, g.lnfb, dlnf, a.clsx, p.lnfw, a.lnf_mean, a.lnf_rstd, B, C);
    step_block(fused, vit_lnf_block(cfg), g.lnfw);
    step_block(fused, vit_lnf_block(cfg) + 1, g.lnfb);
    memset(s.dresidual, 0, BT * C * sizeof(float));
    cls_pool_backward(s.dresidual, dclsx, B, T, C);

    for (int l = L - 1; l >= 0; l--) {
        const float *residual = l == 0 ? a.encoded : a.layers.residual3 + (size_t)(l - 1) * BT * C;
        LayerActivations act = layer_activations(&a.layers, l, B, T, C, NH);
        // this layer's parameters and gradients (with fused updates, the one layer of the buffer)
        LayerTensors lp = layer_tensors(&p.layers, l, C), lg = layer_tensors(&g.layers, model->mem.fused ? 0 : l, C);
        // s.dresidual holds d(layer output); the MLP branch starts from it ...
        // (a linear layer's input gradient is a fresh buffer: written, not cleared and added into)
        matmul_backward_into(s.dfch_gelu, lg.fcprojw, lg.fcprojb, s.dresidual, act.fch_gelu, lp.fcprojw, BT, 4 * C, C, 1, 0);
        gelu_backward_inplace(s.dfch_gelu, act.fch, BT * 4 * C, VIT_GELU);  // now d(GELU input)
        matmul_backward_into(s.dln, lg.fcw, lg.fcb, s.dfch_gelu, act.ln2, lp.fcw, BT, C, 4 * C, 1, 0);
        // ... and adds its input gradient back: dresidual is now d(residual2)
        layernorm_backward(s.dresidual, lg.ln2w, lg.ln2b, s.dln, act.residual2, lp.ln2w, act.ln2_mean, act.ln2_rstd, BT, C);
        // the attention branch likewise
        matmul_backward_into(s.datty, lg.attprojw, lg.attprojb, s.dresidual, act.atty, lp.attprojw, BT, C, C, 1, 0);
        memset(s.dqkv, 0, BT * 3 * C * sizeof(float));
        attention_backward(s.dqkv, s.datty, act.qkv, act.atty, act.lse, B, T, C, NH, 0);
        matmul_backward_into(s.dln, lg.qkvw, lg.qkvb, s.dqkv, act.ln1, lp.qkvw, BT, C, 3 * C, 1, 0);
        layernorm_backward(s.dresidual, lg.ln1w, lg.ln1b, s.dln, residual, lp.ln1w, act.ln1_mean, act.ln1_rstd, BT, C);
        // dresidual is now d(layer input) = d(previous layer's output)
        if (fused) {
            // the layer's gradients are complete: step its blocks, then clear them for the next layer
            step_layer_blocks(fused, vit_layer_block(l, 0), &lg);
            // the one layer's tensors are contiguous: ln1w .. fcprojb
            memset(lg.ln1w, 0, (size_t)(lg.fcprojb + C - lg.ln1w) * sizeof(float));
        }
    }
    float *dpatch_emb = s.scratch; // (B, NP, C)
    memset(dpatch_emb, 0, (size_t)B * NP * C * sizeof(float));
    embed_backward(dpatch_emb, g.cls, g.pos, s.dresidual, B, NP, C);
    step_block(fused, 2, g.cls);
    step_block(fused, 3, g.pos);
    patch_embed_backward(g.patchw, g.patchb, dpatch_emb, a.patches, p.patchw, B, NP, vit_patch_dim(cfg), C);
    step_block(fused, 0, g.patchw);
    step_block(fused, 1, g.patchb);
}

// Where class y ranks among the logits (K): the classes ahead of it are those
// with a larger logit and those with an equal one and a smaller index (as
// the argmax below, which takes the first largest). Top-k correct: rank < k.
static int vit_label_rank(const float *logits, int K, int y) {
    int rank = 0;
    for (int k = 0; k < K; k++) rank += logits[k] > logits[y] || (logits[k] == logits[y] && k < y);
    return rank;
}

// predicted class of each of the first n images of the last forward without labels
static void vit_predict(const ViT *model, int n, int *pred) {
    int K = model->config.num_classes;
    for (int i = 0; i < n; i++) {
        const float *row = model->acts.logits + (size_t)i * K;
        int best = 0;
        for (int k = 1; k < K; k++) if (row[k] > row[best]) best = k;
        pred[i] = best;
    }
}

// ----------------------------------------------------------------------------
// resuming: what a resume record (state_<step>.json at path) holds for the
// ViT trainer alone, checked: the training loader's state, for the same
// images (train_name names them; run_resume_check_state checked the rest)
#include "data/images.h"
#include "run/run.h"

// The trainer's keys of a checkpoint's state record (read back below): the
// training loader's position and augmentation RNG, and the images it counts in
__attribute__((unused)) // main calls it; the tests that include this file do not
static cJSON *vit_state_record(ImageLoaderState ls, int train_count) {
    cJSON *s = cJSON_CreateObject();
    cJSON *l = cJSON_AddObjectToObject(s, "train_loader");
    json_add_u64(l, "epoch", (uint64_t)ls.epoch);
    json_add_u64(l, "pos", (uint64_t)ls.pos);
    json_add_u64(l, "rng", ls.rng_state);
    json_add_u64(l, "images", (uint64_t)train_count);
    return s;
}

__attribute__((unused)) // main and fuzz/fuzz_resume_vit.c call it; the tests that include this file do not
static void vit_resume_data(const cJSON *state, const char *path, ImageLoader *train_loader, const char *train_name) {
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(state, "train_loader");
    if (!cJSON_IsObject(l)) fail("%s: missing \"train_loader\"", path);
    int count = train_loader->set->count;
    if (json_get_u64(l, "images", path) != (uint64_t)count)
        fail("%s: the checkpoint was trained on %llu images, %s has %d; resume with the same data", path,
             (unsigned long long)json_get_u64(l, "images", path), train_name, count);
    uint64_t epoch = json_get_u64(l, "epoch", path), pos = json_get_u64(l, "pos", path);
    if (epoch > INT64_MAX || pos > INT64_MAX) fail("%s: the \"train_loader\" state is out of range", path);
    ImageLoaderState ls = {(int64_t)epoch, (int64_t)pos, json_get_u64(l, "rng", path)};
    image_loader_set_state(train_loader, ls);
}

// ----------------------------------------------------------------------------
// the training run
#ifndef TESTING
#include <omp.h>

#include "data/images.h"
#include "run/dist.h"
#include "run/memplan.h"
#include "run/flags.h"
#include "run/run.h"
#include "run/train.h"
#include "train_gpt2_flags.h"

// Model presets: the ImageNet models under timm's names (the short names
// they had here before stay as aliases) and small ones for 28 x 28 x 1
// (Fashion-MNIST). The number of classes comes from the training data.
typedef struct {
    const char *name;
    ViTConfig config;
    const char *note;
    const char *alias;
} ViTPreset;

static const ViTPreset presets[] = {
    {"fmnist-tiny", {28, 28, 1, 7, 64, 4, 4, 0}, "16 patches of 7x7", NULL},
    {"fmnist-small", {28, 28, 1, 4, 96, 6, 4, 0}, "49 patches of 4x4", NULL},
    {"vit_tiny_patch16_224", {224, 224, 3, 16, 192, 12, 3, 0}, "ViT-Ti/16", "vit-ti16"},
    {"vit_small_patch16_224", {224, 224, 3, 16, 384, 12, 6, 0}, "ViT-S/16", "vit-s16"},
    {"vit_base_patch16_224", {224, 224, 3, 16, 768, 12, 12, 0}, "ViT-B/16", "vit-b16"},
};
#define NUM_PRESETS ((int)(sizeof(presets) / sizeof(presets[0])))

static const ViTPreset *find_preset(const char *name) {
    for (int i = 0; i < NUM_PRESETS; i++)
        if (strcmp(presets[i].name, name) == 0 || (presets[i].alias && strcmp(presets[i].alias, name) == 0))
            return &presets[i];
    return NULL;
}

typedef struct {
    const char *model_spec, *train_shard, *test_shard, *fmnist_dir, *mean_text, *std_text;
    // overrides of a new model's preset (0 = keep)
    int patch, embed_dim, layers, heads, image_height, image_width, image_channels;
    int crop_pad, flip;
    int rrc;                                  // RandomResizedCrop
    double rrc_scale[2], rrc_ratio[2];
    double smoothing, mixup, cutmix, mixup_prob, switch_prob;
    int shard_in_memory;                      // read the shards whole instead of streaming them
    double epochs;       // 0 = use -x
} ViTFlags;

static void vit_flags_defaults(ViTFlags *fl) {
    memset(fl, 0, sizeof(*fl));
    fl->model_spec = "fmnist-tiny";
    // timm's defaults for what is off by default here
    ImageLoaderConfig d;
    image_loader_config_defaults(&d);
    memcpy(fl->rrc_scale, d.rrc_scale, sizeof(fl->rrc_scale));
    memcpy(fl->rrc_ratio, d.rrc_ratio, sizeof(fl->rrc_ratio));
    fl->mixup_prob = d.mix_prob;
    fl->switch_prob = d.switch_prob;
}

// Were any of a new model's overrides given?
static int vit_model_flags_given(const ViTFlags *fl) {
    return fl->patch || fl->embed_dim || fl->layers || fl->heads || fl->image_height || fl->image_channels;
}

// "LO,HI": two numbers, 0 < LO <= HI (<= f->hi)
static int range_flag(const FlagSpec *f, void *dest, const char *flag, const char *text) {
    flag_value_or_fail(flag, text);
    double *out = dest, max_hi = f->hi;
    const char *comma = strchr(text, ',');
    char first[64];
    size_t n = comma ? (size_t)(comma - text) : 0;
    if (!comma || n == 0 || n >= sizeof(first)) fail("flag %s: expected LO,HI, got '%s'", flag, text);
    memcpy(first, text, n);
    first[n] = '\0';
    out[0] = parse_double_or_fail(first, flag);
    out[1] = parse_double_or_fail(comma + 1, flag);
    if (!(out[0] > 0.0 && out[0] <= out[1] && out[1] <= max_hi))
        fail("flag %s: expected 0 < LO <= HI <= %g, got '%s'", flag, max_hi, text);
    return 1;
}

static int positive_int_flag(const char *v, const char *flag, int min) {
    return (int)parse_int_flag_or_fail(v, flag, min, VIT_MAX_DIM);
}

// --image-size N or HxW; dest is the ViTFlags
static int image_size_flag(const FlagSpec *f, void *dest, const char *flag, const char *text) {
    (void)f;
    flag_value_or_fail(flag, text);
    ViTFlags *fl = dest;
    const char *x = strchr(text, 'x');
    if (!x) { fl->image_height = fl->image_width = positive_int_flag(text, "--image-size", 1); return 1; }
    char first[32];
    size_t n = (size_t)(x - text);
    if (n == 0 || n >= sizeof(first)) fail("flag --image-size: expected N or HxW, got '%s'", text);
    memcpy(first, text, n);
    first[n] = '\0';
    fl->image_height = positive_int_flag(first, "--image-size", 1);
    fl->image_width = positive_int_flag(x + 1, "--image-size", 1);
    return 1;
}

static int image_channels_flag(const FlagSpec *f, void *dest, const char *flag, const char *v) {
    flag_int(f, dest, flag, v);
    if (*(int *)dest > IMAGE_MAX_CHANNELS) fail("flag %s: the image loader handles at most %d channels", flag, IMAGE_MAX_CHANNELS);
    return 1;
}

static int epochs_flag(const FlagSpec *f, void *dest, const char *flag, const char *v) {
    (void)f;
    double e = parse_double_or_fail(flag_value_or_fail(flag, v), flag);
    if (!(e > 0.0) || e > 1e6) fail("flag --epochs must be a positive number, got %s", v);
    *(double *)dest = e;
    return 1;
}

// llm.c's -h 1 is HellaSwag, a GPT-2 evaluation; -h alone asks for help
static int help_flag(const FlagSpec *f, void *dest, const char *flag, const char *v) {
    (void)f;
    (void)dest;
    if (strcmp(flag, "-h") == 0 && v && !(v[0] == '-' && !(v[1] >= '0' && v[1] <= '9')))
        fail("flag -h %s: -h 0|1 is llm.c's HellaSwag evaluation, which is for train_gpt2 (-h alone or --help "
             "prints the help)", v);
    return FLAG_HELP;
}

#define FL(field) offsetof(ViTFlags, field), 0
static const FlagSpec vit_flag_specs[] = {
    FLAG_TEXT("model:"),
    {"-e", NULL, "MODEL", "checkpoint to start from, or a preset for a new model (default\n"
     "fmnist-tiny; the presets are listed above)", flag_string, FL(model_spec), 0, 0, 0, NULL},
    {NULL, "--patch", "P", "a new model's patch size", flag_int, FL(patch), 1, VIT_MAX_DIM, 0, NULL},
    {NULL, "--embed-dim", "C", "a new model's width C", flag_int, FL(embed_dim), 1, VIT_MAX_DIM, 0, NULL},
    {NULL, "--layers", "L", "a new model's number of blocks", flag_int, FL(layers), 1, VIT_MAX_DIM, 0, NULL},
    {NULL, "--heads", "NH", "a new model's attention heads (C must be divisible by NH)", flag_int, FL(heads), 1,
     VIT_MAX_DIM, 0, NULL},
    {NULL, "--image-size", "N|HxW", "a new model's input size (multiple of the patch size)", image_size_flag, 0, 0, 0,
     0, 0, NULL},
    {NULL, "--image-channels", "N", "a new model's input channels", image_channels_flag, FL(image_channels), 1,
     VIT_MAX_DIM, 0, NULL},
    FLAG_TEXT("  -x 0 with -e CHECKPOINT only evaluates it"),
    FLAG_TEXT("data (Fashion-MNIST from " FASHION_MNIST_DIR " by default):"),
    {NULL, "--train-shard", "PATH", "training images: a shard made by ./prepare_images, streamed image by\n"
     "image (bounded memory)", flag_string, FL(train_shard), 0, 0, 0, NULL},
    {NULL, "--test-shard", "PATH", "evaluation images (a shard); with --train-shard and without this\n"
     "flag there is no evaluation. Stored images larger than the model's\n"
     "input are centre-cropped to it", flag_string, FL(test_shard), 0, 0, 0, NULL},
    {NULL, "--shard-in-memory", "0|1", "read the shards whole into memory instead (default 0)", flag_01,
     FL(shard_in_memory), 0, 0, 0, NULL},
    {NULL, "--fmnist-dir", "DIR", "Fashion-MNIST idx files from DIR", flag_string, FL(fmnist_dir), 0, 0, 0, NULL},
    {NULL, "--mean", "V[,V,V]", "normalisation mean per channel, pixel scale 0..1 (default: the\n"
     "training set's own, from a shard's header)", flag_string, FL(mean_text), 0, 0, 0, NULL},
    {NULL, "--std", "V[,V,V]", "normalisation std per channel (default: the training set's own)", flag_string,
     FL(std_text), 0, 0, 0, NULL},
    FLAG_TEXT("augmentation of the training images (timm's names in brackets):"),
    {NULL, "--rrc", "0|1", "RandomResizedCrop of the stored image to the model's input (default 0)", flag_01, FL(rrc),
     0, 0, 0, NULL},
    {NULL, "--rrc-scale", "LO,HI", "its area fraction range (default 0.08,1) [--scale]", range_flag, FL(rrc_scale),
     0, 1.0, 0, NULL},
    {NULL, "--rrc-ratio", "LO,HI", "its aspect ratio range (default 0.75,1.3333333333333333) [--ratio]", range_flag,
     FL(rrc_ratio), 0, 1e6, 0, NULL},
    {NULL, "--flip", "0|1", "random horizontal flip, p = 1/2 (default 0) [--hflip 0.5]", flag_01, FL(flip), 0, 0, 0,
     NULL},
    {NULL, "--crop-pad", "K", "random crop after padding K pixels (default 0)", flag_int, FL(crop_pad), 0,
     VIT_MAX_DIM, 0, NULL},
    {NULL, "--smoothing", "F", "label smoothing of the training targets (default 0) [--smoothing]", flag_double,
     FL(smoothing), 0, 1, FLAG_HI_OPEN, NULL},
    {NULL, "--mixup", "A", "Mixup with lam ~ Beta(A, A); 0 off (default) [--mixup]", flag_double, FL(mixup), 0, 1e6,
     0, NULL},
    {NULL, "--cutmix", "A", "CutMix with lam ~ Beta(A, A); 0 off (default) [--cutmix]", flag_double, FL(cutmix), 0,
     1e6, 0, NULL},
    {NULL, "--mixup-prob", "P", "probability of mixing a batch (default 1) [--mixup-prob]", flag_double,
     FL(mixup_prob), 0, 1, 0, NULL},
    {NULL, "--mixup-switch-prob", "P", "CutMix instead of Mixup when both are on (default 0.5) [--mixup-switch-prob]",
     flag_double, FL(switch_prob), 0, 1, 0, NULL},
    {NULL, "--epochs", "F", "train F epochs: -x = F * (images / micro-batch) / accumulation\n"
     "(-x -1 is one epoch, as in llm.c)", epochs_flag, FL(epochs), 0, 0, 0, NULL},
    FLAG_TEXT("  -v N evaluates top-1 and top-5 accuracy on the whole evaluation set every N steps and at the end"),
    {"-h", "--help", NULL, "this help", help_flag, 0, 0, 0, 0, 0, NULL},
    {NULL, "--help-markdown", NULL, "this help as the README's tables (make readme-flags writes them there)",
     flag_help_markdown, 0, 0, 0, 0, 0, NULL},
};
#undef FL
static const FlagTable vit_flags = FLAG_TABLE(vit_flag_specs);

// The augmentation flags beside timm's train.py's (the README's table; the
// flags of its first column are checked to be the table's above)
static const char *const vit_timm_cells[] = {
    "flag", "timm's `train.py`", "meaning",
    "`--rrc 1`", "(always on)",
    "torchvision's `RandomResizedCrop`: 10 attempts at an area fraction from `--rrc-scale` and a log-uniform "
    "aspect ratio from `--rrc-ratio`, else the centre crop of the ratio-clamped image; the box resampled to the "
    "model's input (area averaging when shrinking, bilinear when growing, rounded to uint8)",
    "`--rrc-scale LO,HI`", "`--scale 0.08 1.0`", "area range, default 0.08,1",
    "`--rrc-ratio LO,HI`", "`--ratio 0.75 1.3333`", "aspect ratio range, default 3/4,4/3",
    "`--flip 1`", "`--hflip 0.5`", "horizontal mirror with probability 1/2",
    "`--smoothing F`", "`--smoothing 0.1`",
    "label smoothing: the loss is (1 - F) CE + F mean over classes of -log p (default 0 here)",
    "`--mixup A`, `--cutmix A`", "`--mixup`, `--cutmix`",
    "timm's `Mixup` (mode `batch`): lam ~ Beta(A, A), image b mixed with image B-1-b of the micro-batch; "
    "CutMix's box from `rand_bbox` and lam corrected to its area; soft targets with the smoothing. Needs an "
    "even `-b`",
    "`--mixup-prob P`, `--mixup-switch-prob P`", "`--mixup-prob`, `--mixup-switch-prob`",
    "probability of mixing a batch (1); of CutMix rather than Mixup when both are on (0.5)",
};
static const MarkdownTable vit_timm_table = MARKDOWN_TABLE("train_vit_timm", 3, vit_timm_cells);

static int vit_flag_known(const char *flag) { return flags_find(&vit_flags, flag) != NULL; }

// --help, or with markdown the README's tables of the flags (--help-markdown)
static void print_usage(int markdown) {
    if (markdown) {
        flags_print_markdown(&vit_flags, "train_vit");
        flags_print_markdown_table(&vit_timm_table, vit_flag_known);
        return;
    }
    printf("usage: ./train_vit [flags]   (built with OPTIM=%s)\npresets for -e:", OPTIM_NAME);
    for (int i = 0; i < NUM_PRESETS; i++)
        printf("%s %s%s%s%s", i ? "," : "", presets[i].name, presets[i].alias ? " (" : "",
               presets[i].alias ? presets[i].alias : "", presets[i].alias ? ")" : "");
    printf("\n");
    flags_print_help(&vit_flags);
    run_print_flags_help();
}


// What the memory plan needs to know about this run besides B and the optimizer.
typedef struct {
    const ViTConfig *config;
    MemPlanModel model;  // the blocks and optimizer of this rank's part, training or not
    const ImageSet *train, *test; // their sizes (from the headers); test NULL without one
    int streamed;                 // the shards are streamed: no pixels held
    const ImageLoaderConfig *train_loader, *test_loader; // the loaders' (the plan sets B)
    size_t resident_now;          // the process's resident set when the plan is made
} ViTPlanContext;

// This run's memory plan (a MemPlanBuilder; T is unused): what the data
// loading, vit_build_*, optim_create, vit_allocate_activations, the loaders
// and the loop allocate and touch.
static void vit_memory_plan(MemPlan *p, const void *ctx, int B, int T, const char *optim, int fused) {
    (void)T;
    const ViTPlanContext *x = ctx;
    memplan_begin(p, B, 0, optim, fused, x->resident_now, "binary, libraries");
    size_t data = image_set_resident_bytes(x->train, x->streamed) +
                  (x->test ? image_set_resident_bytes(x->test, x->streamed) : 0);
    if (x->streamed)
        memplan_add(p, "data", data, "labels, class names, image CRCs of %d + %d images; pixels streamed",
                    x->train->count, x->test ? x->test->count : 0);
    else
        memplan_add(p, "data", data, "%d + %d images of %dx%dx%d, as bytes", x->train->count,
                    x->test ? x->test->count : 0, x->train->channels, x->train->height, x->train->width);
    TensorList params, act_list, scratch_list;
    vit_param_tensors(&params, x->config);
    memplan_add_model(p, tensors_total(&params, 0), tensors_total(&params, fused),
                      fused ? "fused updates: embeddings, lnf, head and one layer" : "the same", &x->model);
    vit_activation_tensors(&act_list, &scratch_list, x->config, B);
    size_t acts = tensors_total(&act_list, 0), scratch = tensors_total(&scratch_list, 0);
    memplan_add(p, "activations", alloc_big_footprint(acts * sizeof(float)), "B %d: %zu floats", B, acts);
    if (x->model.training)
        memplan_add(p, "backward scratch", alloc_big_footprint(scratch * sizeof(float)),
                    "one layer's gradients: %zu floats", scratch);
    else // the forward pass writes only the projections' output (scratch.scratch)
        memplan_add(p, "backward scratch", (size_t)B * (vit_num_patches(x->config) + 1) * x->config->channels *
                    sizeof(float), "only its forward part without training steps");
    // the float images, labels, targets (the loader's and the model's copy), predictions and
    // confusion matrix of a batch; the loaders' orders and work space
    int K = x->config->num_classes, threads = omp_get_max_threads();
    size_t in = (size_t)x->config->image_channels * x->config->image_height * x->config->image_width;
    ImageLoaderConfig train_lc = *x->train_loader, test_lc = *x->test_loader; // at this plan's B
    train_lc.B = test_lc.B = B;
    size_t batch = (size_t)B * in * sizeof(float) + 3 * (size_t)B * sizeof(int) + 2 * (size_t)B * K * sizeof(float) +
                   (size_t)K * K * sizeof(int64_t) + image_loader_resident_bytes(x->train, &train_lc, x->streamed, threads) +
                   (x->test ? image_loader_resident_bytes(x->test, &test_lc, x->streamed, threads) : 0);
    memplan_add(p, "batch", batch, "images as floats, labels, targets, the loaders' orders and work space");
    memplan_add_threads(p);
}

// The images must be what the model takes: its channels, and at least its
// size (larger ones are centre-cropped), any size when RandomResizedCrop
// resizes them; fails naming the data source.
static void check_data_fits(const ImageSet *set, const char *source, const ViTConfig *c, int resized) {
    if (set->channels != c->image_channels ||
        (!resized && (set->height < c->image_height || set->width < c->image_width)))
        fail("%s holds %dx%dx%d images; the model takes %dx%dx%d (a new model's input is set by the preset, "
             "--image-size and --image-channels; larger images are centre-cropped, --rrc 1 resizes training "
             "images)", source, set->height, set->width, set->channels, c->image_height, c->image_width,
             c->image_channels);
    if (set->num_classes != c->num_classes)
        fail("%s has %d classes; the model has %d", source, set->num_classes, c->num_classes);
}

// Top-1 accuracy over the whole evaluation set (unaugmented, in order; the
// last batch may be partial), and in *acc5 top-5 (top-K for fewer than 5
// classes), as timm's accuracy(output, target, topk=(1, 5)). Adds every
// (true, predicted) pair to confusion [classes x classes] and returns the
// mean cross-entropy (hard labels, no smoothing) in *loss.
static float vit_evaluate(ViT *model, ImageLoader *eval, float *images, int *labels, int *pred,
                          int64_t *confusion, double *loss, float *acc5) {
    int K = model->config.num_classes;
    image_loader_reset(eval);
    int64_t correct = 0, correct5 = 0, total = 0;
    double loss_sum = 0.0;
    int64_t batches = image_loader_batches_per_epoch(eval);
    for (int64_t i = 0; i < batches; i++) {
        int n = image_loader_next(eval, images, labels);
        vit_forward(model, images, NULL, model->batch_size);
        vit_predict(model, n, pred);
        for (int j = 0; j < n; j++) {
            correct += pred[j] == labels[j];
            correct5 += vit_label_rank(model->acts.logits + (size_t)j * K, K, labels[j]) < 5;
            confusion[(size_t)labels[j] * K + pred[j]]++;
        }
        // the loss of the valid rows (turns their logits into probabilities)
        softmax_crossentropy_forward(model->acts.losses, model->acts.logits, labels, n, K, K);
        for (int j = 0; j < n; j++) loss_sum += model->acts.losses[j];
        total += n;
    }
    *loss = loss_sum / (double)total;
    *acc5 = (float)((double)correct5 / (double)total);
    return (float)((double)correct / (double)total);
}

// per-class accuracy, and the confusion matrix when it fits on a screen
static void print_confusion(const int64_t *confusion, const ImageSet *set) {
    int K = set->num_classes;
    if (K > 100) { printf("per-class accuracy: not printed for %d classes (see the log)\n", K); return; }
    printf("per-class accuracy:\n");
    for (int k = 0; k < K; k++) {
        int64_t n = 0;
        for (int j = 0; j < K; j++) n += confusion[(size_t)k * K + j];
        printf("  %3d %-24s %6.2f%%  (%lld images)\n", k, set->class_names[k],
               n ? 100.0 * (double)confusion[(size_t)k * K + k] / (double)n : 0.0, (long long)n);
    }
    if (K > 20) return;
    printf("confusion matrix (rows: true class, columns: predicted):\n      ");
    for (int j = 0; j < K; j++) printf(" %5d", j);
    printf("\n");
    for (int k = 0; k < K; k++) {
        printf("  %3d ", k);
        for (int j = 0; j < K; j++) printf(" %5lld", (long long)confusion[(size_t)k * K + j]);
        printf("   %.12s\n", set->class_names[k]);
    }
}

// The next training micro-batch through the forward pass: against a target
// distribution per image when targets is set (label smoothing, Mixup/CutMix),
// else against the labels.
// forward: 0 only reads the micro-batch (another rank's share of the global
// batch: the loader and its augmentation draws advance the same on every rank).
static void vit_next_batch_forward(ViT *model, ImageLoader *loader, float *images, int *labels, float *targets, int B,
                                   int forward) {
    if (targets) {
        image_loader_next_targets(loader, images, labels, targets);
        if (forward) vit_forward_soft(model, images, targets, B);
    } else {
        image_loader_next(loader, images, labels);
        if (forward) vit_forward(model, images, labels, B);
    }
}

// Everything a ViT run holds besides the run machinery: the model, its data,
// the evaluation's buffers. The Trainer hooks (run/train.h) get it as `self`.
typedef struct {
    ViTFlags fl;
    RunConfig rc;
    OptimConfig oc;
    int model_flags;            // overrides of a new model given
    int streamed;               // the shards are streamed, not read whole
    ImageSet train_set, test_set;
    const char *train_name, *test_name;
    char fm_train[1100], fm_test[1100];
    const char *fm_dir;
    int have_test;
    const ViTPreset *preset;    // a new model's, or NULL for a checkpoint
    ViTConfig config;
    ImageLoaderConfig train_lc, test_lc;
    float mean[IMAGE_MAX_CHANNELS], std[IMAGE_MAX_CHANNELS];
    ViT model;
    ImageLoader train_loader, test_loader;
    ImageLoaderState before;    // the training loader's state before the current step
    float *images, *targets;
    int *labels, *pred;
    int64_t *confusion;         // [classes x classes] of the last evaluation
    double epochs_per_step;
    size_t state_bytes, adamw_bytes; // the optimizer state's size (the whole run's, every rank's) and AdamW's
} ViTRun;

// The checks of the flags together (after vit_parse_flags)
static void vit_check_flags(ViTRun *x) {
    ViTFlags *fl = &x->fl;
    if (fl->epochs > 0.0 && x->rc.steps_given) fail("flags -x and --epochs both set the length of the run; give one");
    if (x->rc.max_steps == RUN_ONE_EPOCH) fl->epochs = 1.0; // -x -1: one epoch, as in llm.c
    if (fl->test_shard && !fl->train_shard) fail("flag --test-shard needs --train-shard (the default data is Fashion-MNIST)");
    if (fl->fmnist_dir && fl->train_shard) fail("flag --fmnist-dir is for the default data, not with --train-shard");
    if (fl->shard_in_memory && !fl->train_shard) fail("flag --shard-in-memory is for --train-shard and --test-shard");
    if (fl->rrc && fl->crop_pad) fail("flags --rrc and --crop-pad are two random crops; give one");
    x->streamed = fl->train_shard && !fl->shard_in_memory;
    x->model_flags = vit_model_flags_given(fl);
}

// The flags: the ViT's own, the run's and the optimizer's (a GPT-2 flag,
// train_gpt2_flags.h, is named as such), checked together. Returns 0 when
// they asked for the help.
static int vit_parse_flags(ViTRun *x, int argc, char **argv) {
    vit_flags_defaults(&x->fl);
    run_config_defaults(&x->rc);
    x->rc.B = 128;
    optim_default_config(&x->oc);
    int help = run_parse_args(&vit_flags, &x->fl, &x->rc, &x->oc, argc, argv, "train_vit", "./train_vit -h",
                              &gpt2_flags, "train_gpt2");
    if (help) print_usage(help == FLAG_HELP_MARKDOWN);
    else vit_check_flags(x);
    return !help;
}

// The data's headers: sizes and classes, nothing loaded before the memory plan
static void vit_read_data_headers(ViTRun *x) {
    const ViTFlags *fl = &x->fl;
    x->fm_dir = fl->fmnist_dir ? fl->fmnist_dir : FASHION_MNIST_DIR;
    if (fl->train_shard) {
        image_set_read_shard_header(&x->train_set, fl->train_shard);
        x->train_name = fl->train_shard;
        x->have_test = fl->test_shard != NULL;
        if (x->have_test) image_set_read_shard_header(&x->test_set, fl->test_shard);
        x->test_name = x->have_test ? fl->test_shard : "(none)";
    } else {
        image_set_fashion_mnist_header(&x->train_set, x->fm_dir, "train");
        image_set_fashion_mnist_header(&x->test_set, x->fm_dir, "test");
        snprintf(x->fm_train, sizeof(x->fm_train), "Fashion-MNIST train (%s)", x->fm_dir);
        snprintf(x->fm_test, sizeof(x->fm_test), "Fashion-MNIST test (%s)", x->fm_dir);
        x->train_name = x->fm_train;
        x->test_name = x->fm_test;
        x->have_test = 1;
    }
    const ImageSet *tr = &x->train_set, *te = &x->test_set;
    // the sizes may differ (each is checked against the model below): training images stored
    // larger for RandomResizedCrop, evaluation images at the size they are centre-cropped from
    if (x->have_test && (te->channels != tr->channels || te->num_classes != tr->num_classes))
        fail("%s holds %dx%dx%d images of %d classes, but the training data %dx%dx%d of %d", x->test_name,
             te->height, te->width, te->channels, te->num_classes, tr->height, tr->width, tr->channels,
             tr->num_classes);
    if (x->rc.B > tr->count) fail("flag -b: micro-batch %d is larger than the training set (%d images)", x->rc.B, tr->count);
}

// The run's length (--epochs: from the data, before run_finalize_config
// clamps the warmup) and the batch. mpirun -np N: each rank runs
// micro-batches of B images, and -d is the global batch: N x B x
// (accumulation steps per rank)
static void vit_finalize_run(ViTRun *x) {
    RunConfig *rc = &x->rc;
    rc->ranks = dist_size();
    rc->follower = dist_rank() != 0;
    long batches_per_epoch = x->train_set.count / rc->B;
    if (x->fl.epochs > 0.0) {
        long accum = rc->total_batch > 0 ? rc->total_batch / rc->B : rc->ranks;
        if (accum < 1) accum = 1;
        rc->max_steps = (long)floor(x->fl.epochs * (double)batches_per_epoch / (double)accum);
        if (rc->max_steps < 1)
            fail("flag --epochs %g gives no optimizer step (%ld batches per epoch)", x->fl.epochs, batches_per_epoch);
    }
    run_finalize_config(rc, &x->oc, (long)rc->B * rc->ranks, "images");
    run_refuse_data_parallel_gaps(rc, &x->oc, rc->max_steps != 0);
    x->epochs_per_step = (double)rc->total_batch / (double)x->train_set.count;
}

// The model's configuration: a preset (with the flags), or a checkpoint's
// header (built only after the memory plan); the data must fit it. Then the
// loaders' configurations: training shuffled and augmented at the model's
// input size, evaluation in order, centre-cropped.
static void vit_choose_model(ViTRun *x, int resuming) {
    const ViTFlags *fl = &x->fl;
    ViTConfig *c = &x->config;
    x->preset = find_preset(fl->model_spec);
    if (x->preset) {
        *c = x->preset->config;
        if (fl->patch) c->patch_size = fl->patch;
        if (fl->embed_dim) c->channels = fl->embed_dim;
        if (fl->layers) c->num_layers = fl->layers;
        if (fl->heads) c->num_heads = fl->heads;
        if (fl->image_height) { c->image_height = fl->image_height; c->image_width = fl->image_width; }
        if (fl->image_channels) c->image_channels = fl->image_channels;
        c->num_classes = x->train_set.num_classes;
        char source[128];
        snprintf(source, sizeof(source), "%s%s", x->preset->name, x->model_flags ? " with the model flags" : "");
        vit_check_config(c, source, 0);
        printf("model: new ViT %s (%s%s), initialised with seed %llu\n", x->preset->name, x->preset->note,
               x->model_flags ? ", with flags" : "", (unsigned long long)x->rc.seed);
    } else {
        if (!file_exists(fl->model_spec))
            fail("flag -e: %s is neither a checkpoint file nor a preset (./train_vit -h lists them)", fl->model_spec);
        if (x->model_flags && !resuming)
            fail("flags --patch/--embed-dim/--layers/--heads/--image-size/--image-channels describe a new model; "
                 "checkpoint %s has its own", fl->model_spec);
        vit_read_checkpoint_config(fl->model_spec, c);
        printf("model: %s\n", fl->model_spec);
    }
    check_data_fits(&x->train_set, x->train_name, c, fl->rrc);
    if (x->have_test) check_data_fits(&x->test_set, x->test_name, c, 0);
    ImageLoaderConfig *tl = &x->train_lc, *el = &x->test_lc;
    image_loader_config_defaults(tl);
    tl->B = x->rc.B;
    tl->seed = x->rc.seed + 1;
    tl->shuffle = 1;
    tl->out_height = c->image_height;
    tl->out_width = c->image_width;
    tl->crop_pad = fl->crop_pad;
    tl->flip = fl->flip;
    tl->rrc = fl->rrc;
    memcpy(tl->rrc_scale, fl->rrc_scale, sizeof(fl->rrc_scale));
    memcpy(tl->rrc_ratio, fl->rrc_ratio, sizeof(fl->rrc_ratio));
    tl->smoothing = fl->smoothing;
    tl->mixup_alpha = fl->mixup;
    tl->cutmix_alpha = fl->cutmix;
    tl->mix_prob = fl->mixup_prob;
    tl->switch_prob = fl->switch_prob;
    image_loader_config_defaults(el);
    el->B = x->rc.B;
    el->out_height = c->image_height;
    el->out_width = c->image_width;
    if ((fl->mixup > 0.0 || fl->cutmix > 0.0) && x->rc.B % 2 != 0)
        fail("flag -b %d: Mixup and CutMix mix image b with image B-1-b of a micro-batch, which must be even", x->rc.B);
    int NP = vit_num_patches(c);
    TensorList params;
    printf("  %dx%dx%d images, patch %d (%d patches + cls = %d tokens), L %d, NH %d, C %d, %d classes, %zu parameters\n",
           c->image_height, c->image_width, c->image_channels, c->patch_size, NP, NP + 1, c->num_layers,
           c->num_heads, c->channels, c->num_classes, vit_param_tensors(&params, c));
}

// The data: shards streamed (labels in memory, each image read when a batch
// needs it) or read whole; the normalisation's mean and std (the flags, a
// version-2 shard's header, or one pass over the training data)
static void vit_load_data(ViTRun *x) {
    const ViTFlags *fl = &x->fl;
    if (fl->train_shard) {
        if (x->streamed) {
            image_set_open_shard(&x->train_set, fl->train_shard);
            if (x->have_test) image_set_open_shard(&x->test_set, fl->test_shard);
        } else {
            image_set_read_shard(&x->train_set, fl->train_shard);
            if (x->have_test) image_set_read_shard(&x->test_set, fl->test_shard);
        }
    } else {
        image_set_load_fashion_mnist(&x->train_set, x->fm_dir, "train");
        image_set_load_fashion_mnist(&x->test_set, x->fm_dir, "test");
    }
    int ch = x->train_set.channels;
    if (!fl->mean_text || !fl->std_text) {
        if (x->train_set.has_stats) { // a version-2 shard's header: image_set_channel_stats' values
            memcpy(x->mean, x->train_set.stats_mean, sizeof(x->mean));
            memcpy(x->std, x->train_set.stats_std, sizeof(x->std));
        } else {
            if (!x->train_set.pixels)
                printf("data: measuring the channel statistics of %s (a version-1 shard): one pass over it; "
                       "--mean and --std skip it\n", x->train_name);
            double m[IMAGE_MAX_CHANNELS], s[IMAGE_MAX_CHANNELS];
            image_set_channel_stats(&x->train_set, m, s);
            for (int c = 0; c < ch; c++) { x->mean[c] = (float)m[c]; x->std[c] = (float)s[c]; }
        }
    }
    if (fl->mean_text) parse_channel_values_or_fail(fl->mean_text, ch, "--mean", 0, x->mean);
    if (fl->std_text) parse_channel_values_or_fail(fl->std_text, ch, "--std", 1, x->std);
}

// The loaders (training shuffled and augmented, evaluation in order and never
// augmented), said in a few lines, and the buffers of a batch
static void vit_open_loaders(ViTRun *x) {
    const ViTFlags *fl = &x->fl;
    const ViTConfig *mc = &x->config;
    const ImageSet *ts = &x->train_set;
    int ch = ts->channels, B = x->rc.B, K = mc->num_classes;
    x->train_lc.mean = x->test_lc.mean = x->mean;
    x->train_lc.std = x->test_lc.std = x->std;
    image_loader_init_config(&x->train_loader, &x->train_set, &x->train_lc);
    if (x->have_test) image_loader_init_config(&x->test_loader, &x->test_set, &x->test_lc);
    printf("data: train %s (%d images%s), test %s", x->train_name, ts->count, x->streamed ? ", streamed" : "",
           x->test_name);
    if (x->have_test) printf(" (%d images)", x->test_set.count);
    if (ts->height != mc->image_height || ts->width != mc->image_width)
        printf("\n  stored %dx%d: training images %s, evaluation images centre-cropped to %dx%d", ts->height,
               ts->width, fl->rrc ? "RandomResizedCrop'd" : "centre-cropped", mc->image_height, mc->image_width);
    printf("\n  normalisation mean");
    for (int c = 0; c < ch; c++) printf(" %.4f", x->mean[c]);
    printf(", std");
    for (int c = 0; c < ch; c++) printf(" %.4f", x->std[c]);
    printf("\n  augmentation: crop padding %d, flip %d, RandomResizedCrop %d", fl->crop_pad, fl->flip, fl->rrc);
    if (fl->rrc) printf(" (scale %g-%g, ratio %g-%g)", fl->rrc_scale[0], fl->rrc_scale[1], fl->rrc_ratio[0], fl->rrc_ratio[1]);
    printf(", label smoothing %g, Mixup %g, CutMix %g", fl->smoothing, fl->mixup, fl->cutmix);
    if (fl->mixup > 0.0 || fl->cutmix > 0.0) printf(" (prob %g, switch prob %g)", fl->mixup_prob, fl->switch_prob);
    printf("\n");
    size_t image_floats = (size_t)B * mc->image_channels * mc->image_height * mc->image_width;
    x->images = malloc_or_fail(image_floats * sizeof(float), "images");
    x->labels = malloc_or_fail((size_t)B * sizeof(int), "labels");
    x->targets = x->train_loader.soft ? malloc_or_fail((size_t)B * K * sizeof(float), "targets") : NULL;
    x->pred = malloc_or_fail((size_t)B * sizeof(int), "predictions");
    x->confusion = calloc_or_fail((size_t)K * K, sizeof(int64_t), "confusion matrix");
}

// built: the model and the loaders exist
static void vit_free_run(ViTRun *x, int built) {
    if (built) {
        vit_free(&x->model);
        image_loader_free(&x->train_loader);
        if (x->have_test) image_loader_free(&x->test_loader);
    }
    if (x->have_test) image_set_free(&x->test_set);
    image_set_free(&x->train_set);
    free(x->images); free(x->labels); free(x->targets); free(x->pred); free(x->confusion);
}

// The record opening the log: the run's flags, the model, the data.
static cJSON *vit_config_record(const ViTRun *x, int argc, char **argv, const MemPlan *plan) {
    const ViTFlags *fl = &x->fl;
    const ViTConfig *mc = &x->config;
    int ch = x->train_set.channels;
    cJSON *c = run_config_json(&x->rc, &x->oc, "vit", argc, argv);
    const char *keys[] = {"image_height", "image_width", "image_channels", "patch", "channels", "layers", "heads",
                          "classes", "parameters"};
    double values[] = {mc->image_height, mc->image_width, mc->image_channels, mc->patch_size, mc->channels,
                       mc->num_layers, mc->num_heads, mc->num_classes, (double)x->model.mem.num_parameters};
    run_config_add_model(c, matmul_precision(), "vit", keys, values, 9, fl->model_spec);
    cJSON_AddStringToObject(c, "train_data", x->train_name);
    cJSON_AddStringToObject(c, "test_data", x->test_name);
    cJSON_AddNumberToObject(c, "train_images", x->train_set.count);
    cJSON *norm = cJSON_AddObjectToObject(c, "normalisation");
    cJSON_AddItemToObject(norm, "mean", cJSON_CreateFloatArray(x->mean, ch));
    cJSON_AddItemToObject(norm, "std", cJSON_CreateFloatArray(x->std, ch));
    cJSON_AddNumberToObject(c, "crop_pad", fl->crop_pad);
    cJSON_AddNumberToObject(c, "flip", fl->flip);
    cJSON_AddBoolToObject(c, "streamed", x->streamed);
    cJSON *aug = cJSON_AddObjectToObject(c, "augmentation");
    cJSON_AddNumberToObject(aug, "rrc", fl->rrc);
    cJSON_AddItemToObject(aug, "rrc_scale", cJSON_CreateDoubleArray(fl->rrc_scale, 2));
    cJSON_AddItemToObject(aug, "rrc_ratio", cJSON_CreateDoubleArray(fl->rrc_ratio, 2));
    cJSON_AddNumberToObject(aug, "smoothing", fl->smoothing);
    cJSON_AddNumberToObject(aug, "mixup", fl->mixup);
    cJSON_AddNumberToObject(aug, "cutmix", fl->cutmix);
    cJSON_AddNumberToObject(aug, "mixup_prob", fl->mixup_prob);
    cJSON_AddNumberToObject(aug, "mixup_switch_prob", fl->switch_prob);
    cJSON_AddNumberToObject(c, "epochs", x->rc.max_steps * x->epochs_per_step);
    cJSON_AddNumberToObject(c, "optimizer_state_bytes", (double)x->state_bytes);
    cJSON_AddNumberToObject(c, "adamw_state_bytes", (double)x->adamw_bytes);
    cJSON_AddItemToObject(c, "memory_plan", memplan_json(plan));
    return c;
}

// the Trainer hooks (run/train.h)
static float vit_forward_next(void *self, int mine, int first) {
    ViTRun *x = self;
    if (first) x->before = image_loader_get_state(&x->train_loader);
    vit_next_batch_forward(&x->model, &x->train_loader, x->images, x->labels, x->targets, x->rc.B, mine);
    return mine ? x->model.mean_loss : 0.0f;
}

static void vit_backward_hook(void *self, float loss_scale, FusedStep *fused) {
    vit_backward(&((ViTRun *)self)->model, loss_scale, fused);
}

static cJSON *vit_state_record_hook(const void *self, int rewound) {
    const ViTRun *x = self;
    return vit_state_record(rewound ? x->before : image_loader_get_state(&x->train_loader), x->train_set.count);
}

static void vit_resume_data_hook(void *self, const Run *run, const cJSON *state, const char *path) {
    (void)run;
    ViTRun *x = self;
    vit_resume_data(state, path, &x->train_loader, x->train_name);
}

// The evaluation due after a step, on rank 0 (the others go on to the next
// step's exchange); at the end with the confusion matrix
static void vit_after_step(void *self, Run *run, long step) {
    ViTRun *x = self;
    int K = x->config.num_classes;
    if (!x->have_test || dist_rank() != 0 || !run_due(run, step, x->rc.val_every)) return;
    int final = step == x->rc.max_steps || run_interrupted();
    memset(x->confusion, 0, (size_t)K * K * sizeof(int64_t));
    double test_loss;
    float acc5, acc = vit_evaluate(&x->model, &x->test_loader, x->images, x->labels, x->pred, x->confusion,
                                   &test_loss, &acc5);
    cJSON *extra = cJSON_CreateObject();
    cJSON_AddNumberToObject(extra, "epoch", step * x->epochs_per_step);
    cJSON_AddNumberToObject(extra, "test_loss", test_loss);
    cJSON_AddNumberToObject(extra, "test_acc5", acc5);
    if (final && K <= 100) {
        cJSON *cm = cJSON_AddArrayToObject(extra, "confusion");
        for (int k = 0; k < K; k++) {
            cJSON *row = cJSON_CreateArray();
            for (int j = 0; j < K; j++) cJSON_AddItemToArray(row, cJSON_CreateNumber((double)x->confusion[(size_t)k * K + j]));
            cJSON_AddItemToArray(cm, row);
        }
    }
    run_eval_end(run, step, "test_acc", acc, extra);
    printf("step %ld: test_acc5 %.4f\n", step, acc5);
    if (final) print_confusion(x->confusion, &x->test_set);
}

static const Trainer vit_trainer = {vit_forward_next, vit_backward_hook, vit_state_record_hook, vit_after_step};

int main(int argc, char **argv) {
    dist_init(&argc, &argv);
    static ViTRun x; // zeroed
    if (!vit_parse_flags(&x, argc, argv)) return 0; // it printed the help
    RunConfig *rc = &x.rc;
    vit_read_data_headers(&x);
    vit_finalize_run(&x);

    // resuming: the newest complete checkpoint in -o replaces -e (rank 0
    // makes, locks and checks the folder before the others read it)
    Run run;
    char resume_model[700], resume_optim[700];
    cJSON *resume_state = training_resume_begin(&run, rc, resume_model, resume_optim, sizeof(resume_model));
    if (resume_state) x.fl.model_spec = resume_model;

    // the model's configuration and the parameter blocks the optimizer sees
    vit_choose_model(&x, resume_state != NULL);
    int num_blocks = vit_param_blocks(&x.config, NULL);
    ParamBlock *blocks = malloc_or_fail(num_blocks * sizeof(ParamBlock), "parameter blocks");
    vit_param_blocks(&x.config, blocks);

    // the memory plan, before any large allocation: fails here if the run does not fit
    int training = rc->max_steps > 0;
    Dist dist;
    OptimConfig part_oc = training_plan_ranks(&dist, blocks, num_blocks, &x.oc, rc->ranks, 1);
    if (rc->ranks > 1) dist_print_partition(&dist, &part_oc);
    ViTPlanContext plan_ctx = {&x.config,
                               {dist_own_blocks(&dist), dist_num_own_blocks(&dist), &part_oc, training},
                               &x.train_set, x.have_test ? &x.test_set : NULL, x.streamed, &x.train_lc, &x.test_lc,
                               current_rss_bytes()};
    MemPlan plan;
    vit_memory_plan(&plan, &plan_ctx, rc->B, 0, OPTIM_NAME, rc->fused_update);
    memplan_check(&plan, vit_memory_plan, &plan_ctx, rc->memory_limit, rc->force_memory);

    if (!rc->memory_plan_only) { // else nothing large was allocated
        // the data, the model, the optimizer
        vit_load_data(&x);
        if (x.preset) vit_build_random(&x.model, &x.config, rc->seed);
        else vit_build_from_checkpoint(&x.model, x.fl.model_spec);
        Optimizer *opt = training_create_optimizer(&dist, blocks, num_blocks, &x.oc, &part_oc, rc->ranks,
                                                   &x.state_bytes, &x.adamw_bytes);
        vit_open_loaders(&x);
        if (training) vit_allocate_gradients(&x.model, rc->fused_update);
        vit_allocate_activations(&x.model, rc->B);
        Training tr;
        training_init(&tr, &run, &dist, opt, blocks, num_blocks, &vit_trainer, &x, &x.model.mem);

        if (!training) { // -x 0: just evaluate the model
            if (!x.have_test) fail("flag -x 0 evaluates the model, but there is no evaluation data (--test-shard)");
            double loss;
            float acc5, acc = vit_evaluate(&x.model, &x.test_loader, x.images, x.labels, x.pred, x.confusion, &loss,
                                           &acc5);
            printf("test: top-1 accuracy %.4f, top-5 %.4f, loss %.4f (%d images)\n", acc, acc5, loss, x.test_set.count);
            print_confusion(x.confusion, &x.test_set);
            memplan_print_peak(&plan);
        } else {
            printf("run: %ld steps (%.2f epochs) of %ld images (micro-batch %d, %d accumulation steps), lr %g %s, warmup %ld, "
                   "final %g, clip %g, %d threads, %s matmuls\n", rc->max_steps, rc->max_steps * x.epochs_per_step,
                   rc->total_batch, rc->B, rc->grad_accum, x.oc.lr, schedule_name(rc->schedule), rc->warmup,
                   rc->final_frac, rc->clip, omp_get_max_threads(), matmul_precision());
            if (rc->ranks > 1)
                printf("data parallel: %d ranks (mpirun -np %d), each with %d accumulation step%s of %d images and %d thread%s\n",
                       rc->ranks, rc->ranks, rc->grad_accum, rc->grad_accum == 1 ? "" : "s", rc->B,
                       omp_get_max_threads(), omp_get_max_threads() == 1 ? "" : "s");
            double elapsed_before = resume_state ? training_resume(&tr, resume_state, resume_optim, vit_resume_data_hook) : 0.0;
            run_open(&run, vit_config_record(&x, argc, argv, &plan), "img", "acc", x.state_bytes, elapsed_before);

            long step = training_loop(&tr, x.oc.lr);

            memplan_print_peak(&plan);
            training_finish(&tr, step, "evaluate it again", "./train_vit", "");
        }
        training_free(&tr);
        optim_free(opt);
    }
    cJSON_Delete(resume_state);
    vit_free_run(&x, !rc->memory_plan_only);
    free(blocks);
    dist_free(&dist);
    dist_finalize();
    return 0;
}
#endif
