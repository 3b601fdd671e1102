// sgemm_bf16 against sgemm (fp32) at the GEMM shapes of a GPT-2 124M step at
// B 4 x T 1024 (BT 4096, C 768): for each linear layer its forward
// (out = inp @ W^T), input gradient (dinp += dout @ W) and weight gradient
// (dW += dout^T @ inp), both precisions alternating in the same run, best of
// REPS with all threads (OMP_NUM_THREADS), by wall clock and by CPU time (the
// process's CPU time over the threads: on a shared machine it leaves out the
// waits for a core). The logits go as the trainer computes them, in chunks of
// matmul_k_block() = 512 rows (train_gpt2.c's LM head). The last line is the
// whole step's GEMM work: one layer's products x 12 layers plus the logits'
// chunks, bf16 over fp32.
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

// The ceiling of each kernel: one thread issues 24 independent vdpbf16ps (64
// flops each) or vfmadd231ps (32 flops each) per iteration, nothing else, and
// the rate is taken by the thread's CPU time.
#ifdef __AVX512BF16__
#include <immintrin.h>
#define X24(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) \
               X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23)
static void instruction_ceilings(void) {
#define DECLARE(i) __m512 acc##i = _mm512_set1_ps((float)(i) * 1e-3f);
    X24(DECLARE)
    __m512bh pair = (__m512bh)_mm512_set1_epi32(0x3F803F80);  // (1.0, 1.0) in bf16
    __m512 mul = _mm512_set1_ps(0.9999f), add = _mm512_set1_ps(1e-6f);
    const long iters = 20000000;
    double t0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    for (long it = 0; it < iters; it++) {
#define DOT(i) acc##i = _mm512_dpbf16_ps(acc##i, pair, pair);
        X24(DOT)
        __asm__ volatile("" ::"v"(pair));  // keep the loop
    }
    double t1 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    for (long it = 0; it < iters; it++) {
#define FMA(i) acc##i = _mm512_fmadd_ps(acc##i, mul, add);
        X24(FMA)
        __asm__ volatile("" ::"v"(mul));
    }
    double t2 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    float sink = 0.0f;
#define SINK(i) sink += _mm512_reduce_add_ps(acc##i);
    X24(SINK)
    double n = 24.0 * iters;
    printf("one thread, registers only: vdpbf16ps %.2f G/s = %.1f GFLOP/s, vfmadd231ps %.2f G/s = %.1f GFLOP/s "
           "(bf16 / fp32 flop rate %.2f)%s\n", n / (t1 - t0) / 1e9, 64 * n / (t1 - t0) / 1e9, n / (t2 - t1) / 1e9,
           32 * n / (t2 - t1) / 1e9, (64 * n / (t1 - t0)) / (32 * n / (t2 - t1)), sink == 12345.0f ? " " : "");
}
#endif

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);  // line by line through tee
    int reps = argc > 1 ? atoi(argv[1]) : 3;
    if (reps < 1) fail("bench_gemm_bf16: REPS must be >= 1 (got '%s')", argv[1]);
    if (!sgemm_bf16_available()) fail("bench_gemm_bf16: %s", BF16_UNAVAILABLE);
    const int BT = 4096, C = 768, Vp = 50304;
    // layer, its rows, and how many of it a step has
    const int head_rows = matmul_k_block();
    const struct { const char *name; int in, out, rows, count; } layers[] = {
        {"qkv", C, 3 * C, BT, 12}, {"attproj", C, C, BT, 12}, {"fc", C, 4 * C, BT, 12}, {"fcproj", 4 * C, C, BT, 12},
        {"logits", C, Vp, head_rows, BT / head_rows},
    };
    size_t most = (size_t)BT * Vp;
    float *x = alloc_big_floats(most, "x"), *y = alloc_big_floats(most, "y"), *z = alloc_big_floats(most, "z");
    for (size_t i = 0; i < most; i++) x[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < most; i++) y[i] = (float)((i * 40503u) % 997) * 1e-3f - 0.5f;
    memset(z, 0, most * sizeof(float));  // the output's pages touched before any timing
    // and each thread's packing buffers allocated: a product of each kind first
    sgemm(0, 1, 1024, 768, 768, 1.0f, x, 768, y, 768, 0.0f, z, 768);
    sgemm_bf16(0, 1, 1024, 768, 768, 1.0f, x, 768, y, 768, 0.0f, z, 768);
#ifdef __AVX512BF16__
    instruction_ceilings();
#endif
    int threads = omp_get_max_threads();
    printf("bench_gemm_bf16: GPT-2 124M GEMMs at BT %d, %d threads, best of %d; GFLOP/s by wall clock (by CPU time)\n",
           BT, threads, reps);
    printf("%-8s %-7s %6s %6s %6s %15s %15s %11s\n", "layer", "product", "M", "N", "K", "fp32", "bf16", "bf16/fp32");
    double step_fp32 = 0, step_bf16 = 0, cpu_fp32 = 0, cpu_bf16 = 0;
    for (size_t l = 0; l < sizeof layers / sizeof layers[0]; l++) {
        int in = layers[l].in, out = layers[l].out, rows = layers[l].rows;
        Shape shapes[3] = {{"forward", 0, 1, rows, out, in}, {"dinp", 0, 0, rows, in, out}, {"dweight", 1, 0, out, in, rows}};
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
