// Multi-head scaled dot-product attention, in two implementations:
//
// - attention_forward / attention_backward: tiled, with an online softmax (the
//   FlashAttention idea). The forward walks the keys a tile at a time, keeping a
//   running max and sum per query, and saves only the logsumexp of each query's
//   scores; the backward recomputes the probabilities from it. Memory is
//   B*NH*T floats instead of B*NH*T*T.
// - attention_forward_ref / attention_backward_ref: the direct version that
//   stores the softmax weights, short and obviously correct; the tests hold
//   the tiled version against it.
//
// Shapes (llm.c's): qkv [B,T,3C] holds q, k, v side by side (the fused
// projection's output); head h uses channels h*hs .. h*hs+hs-1 of each, hs = C/NH.
// causal = 1: position t attends to 0..t (GPT-2); causal = 0: to all (ViT).
// Backward functions ADD into dqkv, like every backward in nn/.
#ifndef NN_ATTENTION_H
#define NN_ATTENTION_H

// qkv [B,T,3C] -> out [B,T,C]; lse [B,NH,T] = log sum_t2 exp(score[t,t2]) per query
void attention_forward(float *out, float *lse, const float *qkv,
                       int B, int T, int C, int NH, int causal);
// dout [B,T,C] -> dqkv [B,T,3C] +=; out and lse are the forward's.
void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                        const float *lse, int B, int T, int C, int NH, int causal);

// qkv [B,T,3C] -> out [B,T,C]; att [B,NH,T,T] keeps the softmax weights (0 where masked)
void attention_forward_ref(float *out, float *att, const float *qkv,
                           int B, int T, int C, int NH, int causal);
// dout [B,T,C] -> dqkv [B,T,3C] +=
void attention_backward_ref(float *dqkv, const float *dout, const float *qkv, const float *att,
                            int B, int T, int C, int NH, int causal);

// Causal attention of the single query at position t, for token-by-token
// generation with a KV cache: qkv [t+1,3C] holds the rows of positions 0..t
// (one sequence), out [C] receives position t's output, att [NH, t+1] scratch.
void attention_forward_last(float *out, float *att, const float *qkv, int t, int C, int NH);

// "fp32" or "bf16": the arithmetic of attention_forward/attention_backward,
// chosen at compile time as matmul_precision() is (make PRECISION=bf16 builds
// this file with -DPRECISION_BF16 as nn/attention_bf16.o): in bf16 the inputs
// of every product (q, k, v, dout, the softmax weights, their gradients) are
// rounded to bf16 and the products summed in fp32 (vdpbf16ps), while the
// softmax statistics, the logsumexp and the normalisation stay fp32. The
// direct functions above and attention_forward_last stay fp32 in both.
const char *attention_precision(void);

// What the bf16 attention computes, written plainly in double: every product's
// inputs rounded to bf16, everything else exact; the weights of the forward's
// p . v rounded unnormalised, as e^(scale q.k) times any power of two, which
// rounds the same (nn/attention.c says why). The backward computes lse itself
// and reads out (the forward's output) for D = dout . out. Slow; for tests.
void attention_forward_bf16_ref(float *out, float *lse, const float *qkv, int B, int T, int C, int NH, int causal);
void attention_backward_bf16_ref(float *dqkv, const float *dout, const float *qkv, const float *out,
                                 int B, int T, int C, int NH, int causal);

#endif
