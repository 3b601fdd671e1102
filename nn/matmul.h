// Matrix multiplication for the linear layers: the forward/backward pair both
// models use, on top of one packed, cache-blocked, OpenMP-parallel SGEMM.
//
// Layout (llm.c's): activations are row-major [rows, features]; a weight is
// [out_features, in_features] (PyTorch's nn.Linear layout).
//
// Determinism: every output element is one sum in a fixed order that does not
// depend on the number of threads; threads split the output, never a sum.
//
// Threads: each call uses omp_get_max_threads() threads (one for tiny
// products); called from inside an active OpenMP parallel region it runs on
// the calling thread alone. Calls may run concurrently from several threads:
// the only state is a packing buffer per thread (about 1.5 MiB, allocated on a
// thread's first call and kept). Bad sizes or leading dimensions fail with a
// one-line error. Speed: make bench-matmul (dev/bench/bench_matmul.c).
#ifndef NN_MATMUL_H
#define NN_MATMUL_H

#include <stddef.h>

// out[BT,OC] = inp[BT,C] @ weight[OC,C]^T + bias[OC]        (bias may be NULL)
void matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                    int BT, int C, int OC);

// given dout[BT,OC], accumulate (+=) the gradients
//   dinp[BT,C]    += dout @ weight             (dinp may be NULL: not needed)
//   dweight[OC,C] += dout^T @ inp
//   dbias[OC]     += sum over rows of dout     (dbias may be NULL)
void matmul_backward(float *dinp, float *dweight, float *dbias,
                     const float *dout, const float *inp, const float *weight,
                     int BT, int C, int OC);

// The same with a choice for dinp and for dweight: written (1: dinp = dout @
// weight, dweight = dout^T @ inp, their old contents never read) or added into
// (0, as matmul_backward; dbias always adds). Written gives the bits of
// matmul_backward into a cleared buffer (except that an exact -0 stays -0),
// for a caller that would otherwise clear it first: a fresh activation
// gradient, or a weight gradient produced once per backward (fused updates).
void matmul_backward_into(float *dinp, float *dweight, float *dbias,
                          const float *dout, const float *inp, const float *weight,
                          int BT, int C, int OC, int write_dinp, int write_dweight);

// The same two, written as plain loops (the definition; slow, for tests).
// In a PRECISION=bf16 build the fast pair rounds its inputs to bf16 first
// (sgemm_bf16_ref below is that definition); these stay fp32.
void matmul_forward_ref(float *out, const float *inp, const float *weight, const float *bias,
                        int BT, int C, int OC);
void matmul_backward_ref(float *dinp, float *dweight, float *dbias,
                         const float *dout, const float *inp, const float *weight,
                         int BT, int C, int OC);

// General single-precision matrix multiply, row-major:
//   C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C
// op(X) = X if trans == 0, X^T if trans == 1. lda/ldb/ldc are row strides of
// the matrices as stored. beta == 0 overwrites C without reading it.
void sgemm(int transA, int transB, int M, int N, int K, float alpha,
           const float *A, int lda, const float *B, int ldb,
           float beta, float *C, int ldc);

// The same product with every input rounded to bf16 (round to nearest even),
// products exact and sums in fp32, on the AVX-512 BF16 dot-product
// instruction (vdpbf16ps). Fails with BF16_UNAVAILABLE on a CPU (or a build)
// without it; sgemm_bf16_available() says whether it can run.
void sgemm_bf16(int transA, int transB, int M, int N, int K, float alpha,
                const float *A, int lda, const float *B, int ldb,
                float beta, float *C, int ldc);
int sgemm_bf16_available(void);
#define BF16_UNAVAILABLE "this CPU (or this build) has no AVX-512 BF16 instructions (avx512_bf16 in /proc/cpuinfo); build with PRECISION=fp32, the default"

// sgemm_bf16's definition, written plainly: inputs rounded to bf16, the sum
// in double, one element at a time (slow; for tests)
void sgemm_bf16_ref(int transA, int transB, int M, int N, int K, float alpha,
                    const float *A, int lda, const float *B, int ldb,
                    float beta, float *C, int ldc);

// "fp32" or "bf16": the arithmetic of matmul_forward/matmul_backward, chosen
// at compile time (make PRECISION=bf16 builds nn/matmul.c with
// -DPRECISION_BF16: the linear layers then compute as sgemm_bf16, their bias
// sums stay fp32; a binary so built exits with a one-line error at start-up
// on a CPU without AVX-512 BF16)
const char *matmul_precision(void);

// The depth of the K blocks in which a product's sums run (KC below): a
// weight gradient accumulated over row chunks that are multiples of it gets
// the bits of one product over all the rows (each block is added to C in order).
int matmul_k_block(void);

// What the packing buffers of one thread add to the resident set once it has
// run a product, in bytes (for the memory plan).
size_t matmul_thread_buffer_bytes(void);
// And the one buffer the threads of a bf16 product share (mapped once the
// first product splits over 2 or more threads; 0 in an fp32 build).
size_t matmul_shared_buffer_bytes(void);

#endif
