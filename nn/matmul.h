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

// General single-precision matrix multiply, row-major:
//   C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C
// op(X) = X if trans == 0, X^T if trans == 1. lda/ldb/ldc are row strides of
// the matrices as stored. beta == 0 overwrites C without reading it.
void sgemm(int transA, int transB, int M, int N, int K, float alpha,
           const float *A, int lda, const float *B, int ldb,
           float beta, float *C, int ldc);

// What the packing buffers of one thread add to the resident set once it has
// run a product, in bytes (for the memory plan).
size_t matmul_thread_buffer_bytes(void);

#endif
