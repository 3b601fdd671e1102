// The tiled attention (attention_forward/attention_backward) against the
// direct one that stores the T x T weights (attention_forward_ref/
// attention_backward_ref), measured in the same run at GPT-2 124M's shapes
// (C 768, 12 heads, causal). Time per call is the median over the repetitions,
// by wall clock and by the process's CPU time divided by the thread count
// (on a shared machine the wall clock also counts the wait for a core).
// GFLOP/s count the useful work of both passes the same way for both
// versions: 2 hs FLOPs per (query, visible key) for each of q.k and p.v
// forward, and of dp, dv, dq, dk backward (12 hs per pair; the tiled
// backward's recomputation of q.k is not counted). The share is of the FP32
// FMA peak in FMA_PEAK_GFLOPS, which make bench-attention measures first with
// bench_fma for the same threads (unset: no share is printed).
//   make bench-attention          (OMP_NUM_THREADS, default 2)
//   make bench-attention-bf16     the same with the tiled attention of PRECISION=bf16 (its
//                                 shares are still of the FP32 peak)
//   [FMA_PEAK_GFLOPS=G] build/release/bin/bench_attention [B T [reps]]
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/utils.h"
#include "nn/attention.h"

static double wall(void) { return omp_get_wtime(); }
static double process_cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) { qsort(v, n, sizeof(double), cmp_double); return v[n / 2]; }

static void run_shape(int B, int T, int reps, double peak) {
    const int C = 768, NH = 12, hs = C / NH;
    size_t nqkv = (size_t)B * T * 3 * C, nout = (size_t)B * T * C, natt = (size_t)B * NH * T * T;
    float *qkv = alloc_big_floats(nqkv, "qkv"), *dqkv = alloc_big_floats(nqkv, "dqkv");
    float *out = alloc_big_floats(nout, "out"), *dout = alloc_big_floats(nout, "dout");
    float *lse = alloc_big_floats((size_t)B * NH * T, "lse"), *att = alloc_big_floats(natt, "att");
    // N(0,1)-ish inputs from a fixed sequence: the speed does not depend on the values
    uint64_t s = 1;
    for (size_t i = 0; i < nqkv; i++) { s = s * 6364136223846793005ull + 1442695040888963407ull; qkv[i] = (float)((s >> 40) & 0xFFFF) / 32768.0f - 1.0f; }
    for (size_t i = 0; i < nout; i++) { s = s * 6364136223846793005ull + 1442695040888963407ull; dout[i] = (float)((s >> 40) & 0xFFFF) / 32768.0f - 1.0f; }
    double pairs = (double)B * NH * T * (T + 1) / 2.0;
    double flops_fwd = 4.0 * hs * pairs, flops_bwd = 8.0 * hs * pairs;
    int threads = omp_get_max_threads();
    double t[4][2][64]; // [ref fwd, ref bwd, tiled fwd, tiled bwd][wall, cpu][rep]
    if (reps > 64) reps = 64;
    for (int r = 0; r < reps + 1; r++) { // the first repetition warms up and is not counted
        double w0, c0;
        int k = r - 1 < 0 ? 0 : r - 1;
        w0 = wall(); c0 = process_cpu();
        attention_forward_ref(out, att, qkv, B, T, C, NH, 1);
        t[0][0][k] = wall() - w0; t[0][1][k] = (process_cpu() - c0) / threads;
        memset(dqkv, 0, nqkv * sizeof(float));
        w0 = wall(); c0 = process_cpu();
        attention_backward_ref(dqkv, dout, qkv, att, B, T, C, NH, 1);
        t[1][0][k] = wall() - w0; t[1][1][k] = (process_cpu() - c0) / threads;
        w0 = wall(); c0 = process_cpu();
        attention_forward(out, lse, qkv, B, T, C, NH, 1);
        t[2][0][k] = wall() - w0; t[2][1][k] = (process_cpu() - c0) / threads;
        memset(dqkv, 0, nqkv * sizeof(float));
        w0 = wall(); c0 = process_cpu();
        attention_backward(dqkv, dout, qkv, out, lse, B, T, C, NH, 1);
        t[3][0][k] = wall() - w0; t[3][1][k] = (process_cpu() - c0) / threads;
    }
    const char *names[4] = {"direct forward", "direct backward", "tiled forward", "tiled backward"};
    double med[4][2];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 2; j++) med[i][j] = median(t[i][j], reps);
    for (int i = 0; i < 4; i++) {
        double f = i % 2 ? flops_bwd : flops_fwd;
        printf("B%d T%-5d %-16s %9.2f ms wall %9.2f ms cpu/thread %7.1f GFLOP/s (cpu)", B, T, names[i],
               1e3 * med[i][0], 1e3 * med[i][1], f / med[i][1] / 1e9);
        if (peak > 0.0) printf(" %5.1f%% of peak", 100.0 * f / med[i][1] / 1e9 / peak);
        printf("\n");
    }
    double ref = med[0][1] + med[1][1], tiled = med[2][1] + med[3][1];
    printf("B%d T%-5d forward + backward: tiled %.2f ms, direct %.2f ms (cpu/thread): tiled / direct = %.2f; "
           "per layer memory: lse %.2f MiB, direct's weights %.2f MiB\n\n", B, T, 1e3 * tiled, 1e3 * ref, tiled / ref,
           (double)B * NH * T * 4 / 1048576.0, (double)natt * 4 / 1048576.0);
    free_big(qkv); free_big(dqkv); free_big(out); free_big(dout); free_big(lse); free_big(att);
}

int main(int argc, char **argv) {
    int threads = omp_get_max_threads();
    const char *peak_env = getenv("FMA_PEAK_GFLOPS"); // bench_fma's figure for these threads
    double peak = peak_env ? atof(peak_env) : 0.0;
    printf("bench_attention: GPT-2 124M attention (C 768, 12 heads, hs 64, causal), %d threads, median of the repetitions; "
           "the tiled attention in %s, the direct one in fp32\n", threads, attention_precision());
    if (argc >= 3) {
        run_shape(atoi(argv[1]), atoi(argv[2]), argc > 3 ? atoi(argv[3]) : 5, peak);
        return 0;
    }
    run_shape(4, 64, 21, peak);
    run_shape(1, 1024, 5, peak);
    run_shape(4, 1024, 3, peak);
    return 0;
}
