// The machine a benchmark ran on, and its FP32 peak measured in the same run:
// the CPU's name from /proc/cpuinfo, then each of THREADS threads issuing 24
// independent vfmadd231ps (16 lanes, 32 flops each) on registers and nothing
// else. Each thread's rate is taken by its own CPU time, so a machine shared
// with other jobs still gives the core's rate; the peak of THREADS threads is
// the sum of theirs. The benchmarks divide their GFLOP/s by this figure
// instead of a number written for another CPU (the machines of this project
// have been an AMD Zen 5 and an Intel Xeon).
//   bench_fma [THREADS]        prints two lines, and a third on AVX-512 BF16:
//   cpu: <model name> (family F model M), <n> cores online
//   fp32 fma peak: <total> GFLOP/s with <threads> threads (<per thread> per thread)
//   bf16 dot peak: <total> GFLOP/s with <threads> threads (<per thread> per thread, <ratio>x fp32)
// The bf16 line is the same loop on vdpbf16ps (the bf16 build's GEMM
// instruction: per lane two bf16 products added to an fp32 sum, 32
// multiply-adds = 64 flops per zmm instruction). Whether it issues at the FMA
// rate decides what the bf16 build can gain: on the Intel Xeon it ran at half
// the rate (the same flops as fp32), on AMD Zen 5 at the full rate (twice).
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/utils.h"

static double thread_cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// GFLOP/s of one thread by its CPU time
#ifdef __AVX512F__
#include <immintrin.h>
#define X24(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) \
               X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23)
static double fma_rate(long iters, float *sink) {
#define DECLARE(i) __m512 acc##i = _mm512_set1_ps((float)(i) * 1e-3f);
    X24(DECLARE)
    __m512 mul = _mm512_set1_ps(0.9999f), add = _mm512_set1_ps(1e-6f);
    double t0 = thread_cpu_seconds();
    for (long it = 0; it < iters; it++) {
#define FMA(i) acc##i = _mm512_fmadd_ps(acc##i, mul, add);
        X24(FMA)
        __asm__ volatile("" ::"v"(mul));  // keep the loop
    }
    double t1 = thread_cpu_seconds();
    float s = 0.0f;
#define SINK(i) s += _mm512_reduce_add_ps(acc##i);
    X24(SINK)
    *sink = s;
    return 24.0 * 32.0 * (double)iters / (t1 - t0) / 1e9;
}
#define PEAK_KIND "AVX-512"
#ifdef __AVX512BF16__
// the same on vdpbf16ps: each of the 24 accumulators gets (1.0 * 1.0 + 1.0 *
// 1.0) per instruction, 64 flops
static double dot_bf16_rate(long iters, float *sink) {
    X24(DECLARE)
    __m512bh ones = (__m512bh)_mm512_set1_epi32(0x3F803F80);  // the pair (1.0, 1.0) in bf16
    double t0 = thread_cpu_seconds();
    for (long it = 0; it < iters; it++) {
#define DOT(i) acc##i = _mm512_dpbf16_ps(acc##i, ones, ones);
        X24(DOT)
        __asm__ volatile("" ::"v"(ones));
    }
    double t1 = thread_cpu_seconds();
    float s = 0.0f;
    X24(SINK)
    *sink = s;
    return 24.0 * 64.0 * (double)iters / (t1 - t0) / 1e9;
}
#endif
#else
// without AVX-512: 8-lane vectors the compiler maps to AVX2 FMAs
typedef float v8 __attribute__((vector_size(32)));
static double fma_rate(long iters, float *sink) {
    v8 acc[12], mul = {0}, add = {0};
    for (int k = 0; k < 8; k++) { mul[k] = 0.9999f; add[k] = 1e-6f; }
    for (int i = 0; i < 12; i++) for (int k = 0; k < 8; k++) acc[i][k] = (float)i * 1e-3f;
    double t0 = thread_cpu_seconds();
    for (long it = 0; it < 2 * iters; it++) {
        for (int i = 0; i < 12; i++) acc[i] = acc[i] * mul + add;
        __asm__ volatile("" ::"x"(mul));
    }
    double t1 = thread_cpu_seconds();
    float s = 0.0f;
    for (int i = 0; i < 12; i++) for (int k = 0; k < 8; k++) s += acc[i][k];
    *sink = s;
    return 12.0 * 16.0 * 2.0 * (double)iters / (t1 - t0) / 1e9;
}
#define PEAK_KIND "AVX2"
#endif

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : omp_get_max_threads();
    if (threads < 1 || threads > 1024) fail("bench_fma: THREADS must be 1..1024 (got '%s')", argv[1]);
    // the first processor's name, family and model ("Intel(R) Xeon(R) Processor" alone says little)
    char model[256] = "unknown", family[32] = "?", number[32] = "?";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            const char *v = strchr(line, ':');
            if (!v) continue;
            v++;
            while (*v == ' ' || *v == '\t') v++;
            char *dst = strncmp(line, "model name", 10) == 0 ? model
                        : strncmp(line, "cpu family", 10) == 0 ? family
                        : strncmp(line, "model\t", 6) == 0 ? number : NULL;
            size_t size = dst == model ? sizeof model : sizeof family;
            if (dst) { snprintf(dst, size, "%s", v); dst[strcspn(dst, "\n")] = '\0'; }
            if (line[0] == '\n') break; // the end of the first processor's block
        }
        fclose(f);
    }
    printf("cpu: %s (family %s model %s), %d cores online\n", model, family, number, omp_get_num_procs());
    double rate[1024], rate_bf16[1024];
    float sink[1024];
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num();
        fma_rate(2000000, &sink[t]);  // warm up: the clock settles
        rate[t] = fma_rate(20000000, &sink[t]);
#ifdef __AVX512BF16__
        float s = sink[t];
        rate_bf16[t] = dot_bf16_rate(20000000, &sink[t]);
        sink[t] += s;
#endif
    }
    double total = 0.0, total_bf16 = 0.0;
    float s = 0.0f;
    for (int t = 0; t < threads; t++) { total += rate[t]; s += sink[t]; }
    printf("fp32 fma peak: %.1f GFLOP/s with %d threads (%.1f per thread, %s, registers only)%s\n", total, threads,
           total / threads, PEAK_KIND, s == 12345.0f ? " " : "");
#ifdef __AVX512BF16__
    for (int t = 0; t < threads; t++) total_bf16 += rate_bf16[t];
    printf("bf16 dot peak: %.1f GFLOP/s with %d threads (%.1f per thread, vdpbf16ps, registers only; %.2fx fp32)\n",
           total_bf16, threads, total_bf16 / threads, total_bf16 / total);
#else
    (void)rate_bf16, (void)total_bf16;
#endif
    return 0;
}
