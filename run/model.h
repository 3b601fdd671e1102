// Model bookkeeping shared by train_gpt2.c and train_vit.c. A model is a list
// of tensors, each a size in floats, laid out one after another in one
// contiguous buffer: the parameters (in checkpoint order), the gradients, the
// activations, the backward's scratch. The model file says which tensors it
// has and how large each is (from its configuration); summing, allocating and
// pointing into the buffer happen here, once. Both models stack the same
// transformer layer, whose twelve tensors (LayerTensors) and the optimizer's
// per-layer parameter blocks are listed here too. Checkpoints use llm.c's
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

// The sum of n sizes (floats); a sum too large fails naming `what`.
size_t tensors_total(const size_t *sizes, int n, const char *what);
// Points *ptrs[i] at tensor i of a buffer holding the n tensors in order.
void point_tensors(float **const *ptrs, const size_t *sizes, int n, float *memory);
// One zeroed allocation (alloc_big_floats, `what` in its error) for the n
// tensors, pointed at; returns the buffer, its floats in *total.
float *alloc_tensors(float **const *ptrs, const size_t *sizes, int n, const char *what, size_t *total);
// Where each tensor starts in that buffer, in floats.
void tensor_offsets(const size_t *sizes, int n, size_t *offsets);

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

// The sizes of the stacked tensors for L layers of width C (products
// checked, `what` in the error).
void layer_tensor_sizes(size_t sizes[LAYER_TENSORS], size_t L, size_t C, const char *what);
// Where the stacked tensors' pointers live, in LayerTensors order (for point_tensors).
void layer_tensor_pointers(LayerTensors *t, float **ptrs[LAYER_TENSORS]);
// Layer l's tensors within the stack.
LayerTensors layer_tensors(const LayerTensors *stack, int l, int C);
// The initialisation both models give their layers (nanoGPT's and timm's):
// the qkv and MLP-up weights from N(0, 0.02), the two projections into the
// residual stream (attention output, MLP down) from N(0, proj_std), in that
// order from rng; LayerNorm gains 1; biases stay 0 (the buffer is zeroed).
void layer_tensors_init(LayerTensors *t, size_t L, size_t C, float proj_std, Rng *rng);

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

#endif
