// sgemm_bf16 against sgemm (fp32) at the GEMM shapes of a GPT-2 124M step at
// B 4 x T 1024 (BT 4096, C 768): for each linear layer its forward
// (out = inp @ W^T), input gradient (dinp += dout @ W) and weight gradient
// (dW += dout^T @ inp), both precisions alternating in the same run, best of
// REPS by wall clock with all threads (OMP_NUM_THREADS). The last line is the
// whole step's GEMM work: the time of one layer's products x 12 layers plus
// the logits', fp32 over bf16.
//   make bench-gemm-bf16        (dev/bench/bench_bf16.sh runs it beside the trainers)
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/utils.h"
#include "nn/matmul.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct { const char *name; int tA, tB, M, N, K; } Shape;

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 3;
    if (reps < 1) fail("bench_gemm_bf16: REPS must be >= 1 (got '%s')", argv[1]);
    if (!sgemm_bf16_available()) fail("bench_gemm_bf16: %s", BF16_UNAVAILABLE);
    const int BT = 4096, C = 768, Vp = 50304;
    // layer, and how many of it a step has
    const struct { const char *name; int in, out, count; } layers[] = {
        {"qkv", C, 3 * C, 12}, {"attproj", C, C, 12}, {"fc", C, 4 * C, 12}, {"fcproj", 4 * C, C, 12}, {"logits", C, Vp, 1},
    };
    size_t most = (size_t)BT * Vp;
    float *x = alloc_big_floats(most, "x"), *y = alloc_big_floats(most, "y"), *z = alloc_big_floats(most, "z");
    for (size_t i = 0; i < most; i++) x[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < most; i++) y[i] = (float)((i * 40503u) % 997) * 1e-3f - 0.5f;
    printf("bench_gemm_bf16: GPT-2 124M GEMMs at BT %d, %d threads, best of %d, GFLOP/s\n", BT, omp_get_max_threads(), reps);
    printf("%-8s %-7s %6s %6s %6s %9s %9s %6s\n", "layer", "product", "M", "N", "K", "fp32", "bf16", "ratio");
    double step_fp32 = 0, step_bf16 = 0;
    for (size_t l = 0; l < sizeof layers / sizeof layers[0]; l++) {
        int in = layers[l].in, out = layers[l].out;
        Shape shapes[3] = {{"forward", 0, 1, BT, out, in}, {"dinp", 0, 0, BT, in, out}, {"dweight", 1, 0, out, in, BT}};
        for (int s = 0; s < 3; s++) {
            Shape sh = shapes[s];
            int lda = sh.tA ? sh.M : sh.K, ldb = sh.tB ? sh.K : sh.N;
            double best[2] = {1e30, 1e30};
            for (int r = 0; r < reps; r++)
                for (int p = 0; p < 2; p++) {
                    double t0 = now();
                    if (p == 0) sgemm(sh.tA, sh.tB, sh.M, sh.N, sh.K, 1.0f, x, lda, y, ldb, 0.0f, z, sh.N);
                    else sgemm_bf16(sh.tA, sh.tB, sh.M, sh.N, sh.K, 1.0f, x, lda, y, ldb, 0.0f, z, sh.N);
                    double t = now() - t0;
                    if (t < best[p]) best[p] = t;
                }
            double flops = 2.0 * sh.M * sh.N * sh.K;
            printf("%-8s %-7s %6d %6d %6d %9.1f %9.1f %6.2f\n", layers[l].name, sh.name, sh.M, sh.N, sh.K,
                   flops / best[0] / 1e9, flops / best[1] / 1e9, best[1] / best[0]);
            step_fp32 += best[0] * layers[l].count;
            step_bf16 += best[1] * layers[l].count;
        }
    }
    printf("step GEMMs: fp32 %.2f s, bf16 %.2f s, bf16 / fp32 %.2f\n", step_fp32, step_bf16, step_bf16 / step_fp32);
    return 0;
}
