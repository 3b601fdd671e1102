// The three GEMMs of a GPT-2 XL MLP layer at B 1 x T 64 (64 rows, C 1600, 4C
// 6400), with the weights streaming from memory as in a step: 8 weight
// matrices (328 MB, beyond the L3: 32 MiB per CCD on Zen 5, 260 MiB on the Xeon) used in turn. One thread, rates by
// the thread's CPU time (the machine may be shared: a wait for a core is not
// counted, a stall on memory is). The forward (matmul_forward's few-rows
// path) is also run through the usual packed product (sgemm with op(B) = B^T)
// for comparison, and the two outputs must be equal bit for bit.
//   make bench-gemm-xl
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/utils.h"
#include "nn/matmul.h"

static double thread_cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(void) {
    const int BT = 64, C = 1600, OC = 6400, NW = 8;
    const size_t W = (size_t)OC * C;
    float *inp = alloc_big_floats((size_t)BT * C, "inp"), *w = alloc_big_floats(W * NW, "weights");
    float *dw = alloc_big_floats(W * NW, "weight gradients"), *out = alloc_big_floats((size_t)BT * OC, "out");
    float *out2 = alloc_big_floats((size_t)BT * OC, "out2"), *dinp = alloc_big_floats((size_t)BT * C, "dinp");
    for (size_t i = 0; i < W * NW; i++) w[i] = (float)(i % 7) * 0.01f;
    for (int i = 0; i < BT * C; i++) inp[i] = (float)(i % 5) * 0.1f;
    omp_set_num_threads(1);
    const double flops = 2.0 * BT * C * OC * NW;
    int failures = 0;
    printf("bench_gemm_xl: %d x %d x %d, %d weight matrices in turn, 1 thread, GFLOP/s by CPU time\n", BT, C, OC, NW);
    for (int rep = 0; rep < 3; rep++) {
        double t0 = thread_cpu();
        for (int k = 0; k < NW; k++) matmul_forward(out, inp, w + k * W, NULL, BT, C, OC);
        double t1 = thread_cpu();
        for (int k = 0; k < NW; k++) sgemm(0, 1, BT, OC, C, 1.0f, inp, C, w + k * W, C, 0.0f, out2, OC);
        double t2 = thread_cpu();
        for (int k = 0; k < NW; k++) sgemm(0, 0, BT, C, OC, 1.0f, out, OC, w + k * W, C, 1.0f, dinp, C);
        double t3 = thread_cpu();
        for (int k = 0; k < NW; k++) sgemm(1, 0, OC, C, BT, 1.0f, out, OC, inp, C, 1.0f, dw + k * W, C);
        double t4 = thread_cpu();
        failures += memcmp(out, out2, (size_t)BT * OC * sizeof(float)) != 0;
        printf("forward %.0f (packed W^T: %.0f), backward input gradient %.0f, weight gradient %.0f\n",
               flops / (t1 - t0) / 1e9, flops / (t2 - t1) / 1e9, flops / (t3 - t2) / 1e9, flops / (t4 - t3) / 1e9);
    }
    if (failures) printf("FAIL: the few-rows forward differs from the packed product\n");
    return failures ? 1 : 0;
}
