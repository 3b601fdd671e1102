// The transformer layers both models share (GPT-2 and the ViT), each as a
// *_forward / *_backward pair of free functions on flat float arrays, with the
// tensor shapes in the comments. The linear layers are in nn/matmul.h.
//
// Conventions (llm.c's):
// - activations are row-major: [B,T,C] means B*T rows of C contiguous floats;
// - a backward function ADDS (+=) into the gradients of its inputs and
//   parameters, because a tensor can feed several consumers (the residual
//   stream feeds a block and skips past it); callers zero gradients once per
//   step, before the first micro-batch;
// - every reduction has a fixed order that does not depend on the number of
//   OpenMP threads, so a run is reproducible bit for bit.
#ifndef NN_LAYERS_H
#define NN_LAYERS_H

#include "nn/attention.h"

// LayerNorm over the last dimension.
// inp [N,C] -> out [N,C]; saves mean [N] and rstd [N] (1/sqrt(var+eps)) for backward.
// weight, bias [C]. GPT-2 uses eps 1e-5, timm's ViT 1e-6.
void layernorm_forward(float *out, float *mean, float *rstd,
                       const float *inp, const float *weight, const float *bias,
                       int N, int C, float eps);
// The forward's out [N,C] again from its saved mean and rstd [N], bit for bit
// (a model that does not store a LayerNorm's output recomputes it for backward).
void layernorm_recompute(float *out, const float *inp, const float *mean, const float *rstd,
                         const float *weight, const float *bias, int N, int C);
// dout [N,C] -> dinp [N,C] +=, dweight [C] +=, dbias [C] +=
void layernorm_backward(float *dinp, float *dweight, float *dbias,
                        const float *dout, const float *inp, const float *weight,
                        const float *mean, const float *rstd, int N, int C);

// Attention is in nn/attention.h (included here).

// GELU, elementwise over N values. GPT-2 uses the tanh approximation
// 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))); timm's ViT the exact 0.5x(1+erf(x/sqrt 2)).
typedef enum { GELU_TANH, GELU_ERF } GeluKind;
void gelu_forward(float *out, const float *inp, int N, GeluKind kind);
// dout [N] -> dinp [N] +=
void gelu_backward(float *dinp, const float *inp, const float *dout, int N, GeluKind kind);
// The same written in place, dout [N] -> dinp [N] (the bits of gelu_backward
// into zeros), for a caller whose dout is not needed afterwards: no buffer to clear.
void gelu_backward_inplace(float *dout_to_dinp, const float *inp, int N, GeluKind kind);

// Residual connection: out [N] = a + b.
void residual_forward(float *out, const float *a, const float *b, int N);
// dout [N] -> da [N] +=, db [N] +=
void residual_backward(float *da, float *db, const float *dout, int N);

// Softmax + cross-entropy, fused, in place to save memory.
// logits [N,Vp]: on return rows hold the probabilities over the first V
// entries (the padded columns V..Vp-1 are set to 0). losses [N] = -log p[target].
// targets [N] in [0,V).
void softmax_crossentropy_forward(float *losses, float *logits_to_probs, const int *targets,
                                  int N, int V, int Vp);
// Turns probs [N,Vp] in place into dlogits = (probs - onehot(target)) * dloss,
// the gradient of sum_i dloss * losses[i]; dloss is the same for every row
// (1/N for a mean loss; divided again by the number of accumulation steps).
// Padded columns get 0.
void softmax_crossentropy_backward(float *probs_to_dlogits, const int *targets,
                                   float dloss, int N, int V, int Vp);
// The two in one pass over each row, logits [N,Vp] -> dlogits in place and
// losses [N] (the same bits): a row of GPT-2's 50304 logits (201 KB) stays
// in L2 between them instead of going to memory and back.
void softmax_crossentropy_forward_backward(float *losses, float *logits_to_dlogits, const int *targets,
                                           float dloss, int N, int V, int Vp);

// The same against a target distribution per row, for label smoothing and
// mixup/cutmix (soft targets): targets [N,V]; losses [N] =
// -sum_v targets[v] log softmax[v], PyTorch's cross_entropy with probability
// targets. Label smoothing eps is the target (1 - eps) onehot + eps / V, whose
// loss is (1 - eps) CE + eps mean_v(-log p[v]) (timm's, and PyTorch's
// label_smoothing). A one-hot row gives exactly the loss above.
void softmax_crossentropy_soft_forward(float *losses, float *logits_to_probs, const float *targets,
                                       int N, int V, int Vp);
// probs [N,Vp] in place -> dlogits = (probs * sum_v targets[v] - targets) * dloss
// (sum_v targets = 1 for a distribution); padded columns get 0.
void softmax_crossentropy_soft_backward(float *probs_to_dlogits, const float *targets,
                                        float dloss, int N, int V, int Vp);
// The reference the tests hold both against: the same in double precision
// from the logits (left unchanged); losses [N], dlogits [N,V] (NULL: none).
void softmax_crossentropy_soft_reference(double *losses, double *dlogits, const float *logits,
                                         const float *targets, double dloss, int N, int V, int Vp);

#endif
