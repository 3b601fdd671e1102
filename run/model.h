// Model bookkeeping shared by train_gpt2.c and train_vit.c. A model is lists
// of tensors (TensorList), each tensor a size in floats, laid out one after
// another in one contiguous buffer per list: the parameters (in checkpoint
// order), the gradients, the activations, the scratch (ModelMemory). The
// model file says which tensors it has, how large each is (from its
// configuration) and where its pointer lives; summing, allocating, pointing
// into, zeroing, saving and freeing the buffers happen here, once. Both models
// stack the same transformer layer, whose twelve tensors (LayerTensors), its
// activations (LayerActivations), one layer's scratch (LayerScratch) and the
// optimizer's per-layer parameter blocks are listed here too. Checkpoints use llm.c's
// layout: a header of 256 int32 (magic, version, the model's fields), then
// the parameters. What a header field or a tensor means, the initialisation,
// forward and backward stay in the model file.
#ifndef RUN_MODEL_H
#define RUN_MODEL_H

#include <stddef.h>
#include <stdio.h>

#include "common/rng.h"
#include "optim/optim.h"

// ----------------------------------------------------------------------------
// a list of tensors in one buffer

// A model's tensors of one kind (its parameters, its activations, ...) in the
// order they lie in their buffer: for each, where its pointer lives (an
// offset into a struct of the model's, as offsetof gives it) and its size in
// floats. A tensor that stacks the L transformer layers holds L times one
// layer's floats (layers L, else 1): the gradients of fused updates are laid
// out as the same model with one layer.
#define MAX_TENSORS 40
typedef struct {
    int n;
    size_t offset[MAX_TENSORS];
    size_t size[MAX_TENSORS];
    size_t layers[MAX_TENSORS];
    char what[96]; // the errors' name for them, e.g. "the GPT-2 parameters"
} TensorList;

// An empty list; what (printf's format and arguments) names its tensors in errors.
void tensors_begin(TensorList *l, const char *what, ...) __attribute__((format(printf, 2, 3)));
// Adds a tensor of rows x cols floats (the product checked, so that a
// configuration too big for memory fails rather than wraps around).
void tensor_add(TensorList *l, size_t offset, size_t rows, size_t cols);
// Their floats; with one_layer, those of the same model with one layer.
size_t tensors_total(const TensorList *l, int one_layer);
// Where each tensor starts in the buffer, in floats.
void tensor_offsets(const TensorList *l, size_t *offsets);
// One zeroed allocation (alloc_big_floats, `what` in its error) for the
// tensors, each pointer in the struct at base pointed at its tensor (NULL for
// a tensor of 0 floats); returns the buffer, its floats in *total.
float *alloc_tensors(const TensorList *l, void *base, int one_layer, const char *what, size_t *total);

// ----------------------------------------------------------------------------
// the transformer layers both models stack

// The parameters of the L layers, each tensor the L layers' stacked, in
// checkpoint order; layer_tensors() gives one layer's.
#define LAYER_TENSORS 12
typedef struct {
    float *ln1w;     // (L, C)
    float *ln1b;     // (L, C)
    float *qkvw;     // (L, 3C, C) fused q, k, v projection
    float *qkvb;     // (L, 3C)
    float *attprojw; // (L, C, C)
    float *attprojb; // (L, C)
    float *ln2w;     // (L, C)
    float *ln2b;     // (L, C)
    float *fcw;      // (L, 4C, C) MLP up
    float *fcb;      // (L, 4C)
    float *fcprojw;  // (L, C, 4C) MLP down
    float *fcprojb;  // (L, C)
} LayerTensors;

// Adds the stacked tensors of L layers of width C, in LayerTensors order;
// offset is the LayerTensors' own in the list's struct.
void layer_tensors_add(TensorList *l, size_t offset, size_t L, size_t C);
// Layer l's tensors within the stack.
LayerTensors layer_tensors(const LayerTensors *stack, int l, int C);
// The initialisation both models give their layers (nanoGPT's and timm's):
// the qkv and MLP-up weights from N(0, 0.02), the two projections into the
// residual stream (attention output, MLP down) from N(0, proj_std), in that
// order from rng; LayerNorm gains 1; biases stay 0 (the buffer is zeroed).
void layer_tensors_init(LayerTensors *t, size_t L, size_t C, float proj_std, Rng *rng);

// The activations of the L layers that backward needs, for a batch of B
// sequences of T tokens, each tensor the L layers' stacked. A model keeps its
// LayerNorm and GELU outputs (the ViT), or has its backward recompute them
// from x, mean and rstd and from fch (GPT-2): then ln1, ln2 and fch_gelu are
// 0 floats and LayerScratch.ln holds one at a time.
typedef struct {
    float *ln1;       // (L, B, T, C) kept, or none
    float *ln1_mean;  // (L, B, T)
    float *ln1_rstd;  // (L, B, T)
    float *qkv;       // (L, B, T, 3C)
    float *atty;      // (L, B, T, C) attention output, before the projection
    float *lse;       // (L, B, NH, T) logsumexp of each query's attention scores (attention_backward recomputes the weights)
    float *residual2; // (L, B, T, C) after the attention block
    float *ln2;       // (L, B, T, C) kept, or none
    float *ln2_mean;  // (L, B, T)
    float *ln2_rstd;  // (L, B, T)
    float *fch;       // (L, B, T, 4C) MLP hidden, before GELU
    float *fch_gelu;  // (L, B, T, 4C) kept, or none
    float *residual3; // (L, B, T, C) after the MLP block = the layer's output
} LayerActivations;

// Layer l's slice of the stacked activations (a tensor a model does not keep stays NULL).
LayerActivations layer_activations(const LayerActivations *a, int l, size_t B, size_t T, size_t C, size_t NH);

// Adds them in LayerActivations order (keep_outputs 0: ln1, ln2 and
// fch_gelu of 0 floats); offset is the LayerActivations' own.
void layer_activations_add(TensorList *l, size_t offset, size_t L, size_t B, size_t T, size_t C, size_t NH,
                           int keep_outputs);

// One layer's buffers for the forward and the backward, reused by every
// layer: layers run one at a time, so one layer's worth is enough (llm.c
// keeps all L). The residual stream's gradient `dresidual` is shared by a
// block and its skip connection: the residual's backward is the identity, so
// each block simply adds its input gradient into it.
typedef struct {
    float *dresidual; // (B, T, C)
    float *dln;       // (B, T, C) gradient of a LayerNorm output
    float *datty;     // (B, T, C)
    float *dqkv;      // (B, T, 3C)
    float *fch_gelu;  // (B, T, 4C) a recomputed GELU output, when the activations do not keep it (else none)
    float *dfch_gelu; // (B, T, 4C) gradient of the GELU output, then (in place) of its input
    float *scratch;   // (B, T, C) a projection's output before it is added to the residual (and the model's own uses)
    float *ln;        // (B, T, C) a recomputed LayerNorm output, when the activations do not keep them (else none)
} LayerScratch;

// Adds them in LayerScratch order for BT tokens; offset is the LayerScratch's own.
void layer_scratch_add(TensorList *l, size_t offset, size_t BT, size_t C, int keep_outputs);

// The transformer's L, C and NH in range, NH dividing C (check_config_field's errors).
#define MODEL_MAX_LAYERS 1024
#define MODEL_MAX_CHANNELS 65536
void check_layer_config(const char *source, int from_header, int L, int C, int NH);

// ----------------------------------------------------------------------------
// the parameter blocks the optimizer sees: one per tensor per layer

// Writes a block at out[n] (out NULL: only counts) and returns n + 1.
int add_param_block(ParamBlock *out, int n, const char *name, ParamRole role, int ndim, int rows, int cols,
                    size_t offset);
// Layer l's twelve blocks ("h<l>.ln1w" .. "h<l>.mlp.projb") from n on, in
// LayerTensors order; `offsets` are the stacked tensors' in the buffer.
// Returns n + 12.
int add_layer_param_blocks(ParamBlock *out, int n, int l, int C, const size_t offsets[LAYER_TENSORS]);

// Fused updates: block b's gradient is complete (fused NULL: gradients accumulate).
static inline void step_block(FusedStep *fused, int b, float *grad) {
    if (fused) fused_block(fused, b, grad);
}

// Fused updates: layer l's gradients g are complete, its blocks from block first on (LayerTensors order).
void step_layer_blocks(FusedStep *fused, int first, const LayerTensors *g);

// ----------------------------------------------------------------------------
// configuration and checkpoints

// A configuration field in [lo, hi], else fails with "<source>: <name> is
// <value>, outside [lo, hi]" ("header field <name>" when it comes from a
// checkpoint's header).
void check_config_field(const char *source, int from_header, const char *name, long long value, long long lo,
                        long long hi);

#define CHECKPOINT_HEADER_INTS 256
// Opens a checkpoint and reads its header, which must start with `magic`
// (else "<path> is not a <kind> checkpoint ..."); the file is left at the
// values after the header.
FILE *checkpoint_open(const char *path, int header[CHECKPOINT_HEADER_INTS], int magic, const char *kind);
// The configuration's n fields stand in the header from int 2 on, after the
// magic and the version, in the order the model lists them.
void checkpoint_header_write(int header[CHECKPOINT_HEADER_INTS], int magic, int version, int *const *fields, int n);
void checkpoint_header_read(const int header[CHECKPOINT_HEADER_INTS], int *const *fields, int n);
// The file must hold the header and exactly n values of value_bytes each: a
// header describing another size fails here, before anything is allocated.
void checkpoint_check_size(FILE *f, const char *path, size_t n, size_t value_bytes);
// The header and n fp32 values, written atomically (a crash leaves the old file).
void checkpoint_save(const char *path, const int header[CHECKPOINT_HEADER_INTS], const float *values, size_t n);

// ----------------------------------------------------------------------------
// a model's buffers

// The four buffers a model holds, each a TensorList's tensors one after
// another: the model's structs of tensor pointers (its parameters, gradients,
// activations, scratch) point into them.
typedef struct {
    TensorList param_list;   // the parameters, offsets in the model's ParameterTensors
    int header[CHECKPOINT_HEADER_INTS]; // its checkpoint's header (the configuration: it does not change)
    float *params_memory;    // the parameters, in checkpoint order
    size_t num_parameters;   // floats
    // The gradients: the whole model's, laid out as the parameters; or, with
    // fused updates, those of the same model with one layer (reused by every
    // layer), each block stepped when complete.
    int fused;
    float *grads_memory;
    size_t num_grad_floats;
    float *acts_memory;      // the activations of a forward pass that backward needs
    size_t num_activations;
    float *scratch_memory;   // one layer's buffers for the passes (and the model's own)
    size_t num_scratch_floats;
} ModelMemory;

// The allocations below name the model in their errors ("out of memory: <name> parameters ...").
// The parameters of m->param_list (filled by the model), zeroed, pointed at from params.
void model_alloc_params(ModelMemory *m, void *params, const char *name);
// The gradient buffer (see ModelMemory.fused), zeroed, pointed at from grads.
void model_alloc_grads(ModelMemory *m, void *grads, int fused, const char *name);
// The activations and the scratch of a batch shape, each list's offsets in
// the model's struct at model; scratch_what names the scratch in its error.
void model_alloc_activations(ModelMemory *m, void *model, const TensorList *acts, const TensorList *scratch,
                             const char *name, const char *scratch_what);
void model_zero_grad(ModelMemory *m);
// The model file of a checkpoint: the header, then the parameters, written atomically.
void model_save_checkpoint(const ModelMemory *m, const char *path);
void model_memory_free(ModelMemory *m);

#endif
