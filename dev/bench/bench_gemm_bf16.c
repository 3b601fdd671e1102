// sgemm_bf16 against sgemm (fp32) at the GEMM shapes of a GPT-2 124M step at
// B 4 x T 1024 (BT 4096, C 768): for each linear layer its forward
// (out = inp @ W^T), input gradient (dinp += dout @ W) and weight gradient
// (dW += dout^T @ inp), both precisions alternating in the same run, best of
// REPS with all threads (OMP_NUM_THREADS), by wall clock and by CPU time (the
// process's CPU time over the threads: on a shared machine it leaves out the
// waits for a core). The last line is the whole step's GEMM work: one layer's
// products x 12 layers plus the logits', bf16 over fp32.
//   make bench-gemm-bf16        (dev/bench/bench_bf16.sh runs it beside the trainers)
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/utils.h"
#include "nn/matmul.h"

static double clock_s(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
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
    int threads = omp_get_max_threads();
    printf("bench_gemm_bf16: GPT-2 124M GEMMs at BT %d, %d threads, best of %d; GFLOP/s by wall clock (by CPU time)\n",
           BT, threads, reps);
    printf("%-8s %-7s %6s %6s %6s %15s %15s %11s\n", "layer", "product", "M", "N", "K", "fp32", "bf16", "bf16/fp32");
    double step_fp32 = 0, step_bf16 = 0, cpu_fp32 = 0, cpu_bf16 = 0;
    for (size_t l = 0; l < sizeof layers / sizeof layers[0]; l++) {
        int in = layers[l].in, out = layers[l].out;
        Shape shapes[3] = {{"forward", 0, 1, BT, out, in}, {"dinp", 0, 0, BT, in, out}, {"dweight", 1, 0, out, in, BT}};
        for (int s = 0; s < 3; s++) {
            Shape sh = shapes[s];
            int lda = sh.tA ? sh.M : sh.K, ldb = sh.tB ? sh.K : sh.N;
            double best[2] = {1e30, 1e30}, best_cpu[2] = {1e30, 1e30};
            for (int r = 0; r < reps; r++)
                for (int p = 0; p < 2; p++) {
                    double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
                    if (p == 0) sgemm(sh.tA, sh.tB, sh.M, sh.N, sh.K, 1.0f, x, lda, y, ldb, 0.0f, z, sh.N);
                    else sgemm_bf16(sh.tA, sh.tB, sh.M, sh.N, sh.K, 1.0f, x, lda, y, ldb, 0.0f, z, sh.N);
                    double t = clock_s(CLOCK_MONOTONIC) - t0, c = (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0) / threads;
                    if (t < best[p]) best[p] = t;
                    if (c < best_cpu[p]) best_cpu[p] = c;
                }
            double gf = 2.0 * sh.M * sh.N * sh.K / 1e9;
            printf("%-8s %-7s %6d %6d %6d %6.1f (%6.1f) %6.1f (%6.1f) %4.2f (%4.2f)\n", layers[l].name, sh.name, sh.M,
                   sh.N, sh.K, gf / best[0], gf / best_cpu[0], gf / best[1], gf / best_cpu[1], best[1] / best[0],
                   best_cpu[1] / best_cpu[0]);
            step_fp32 += best[0] * layers[l].count, cpu_fp32 += best_cpu[0] * layers[l].count;
            step_bf16 += best[1] * layers[l].count, cpu_bf16 += best_cpu[1] * layers[l].count;
        }
    }
    printf("step GEMMs: fp32 %.2f s (%.2f s CPU per thread), bf16 %.2f s (%.2f s); bf16 / fp32 %.2f (%.2f)\n",
           step_fp32, cpu_fp32, step_bf16, cpu_bf16, step_bf16 / step_fp32, cpu_bf16 / cpu_fp32);
    return 0;
}
