// Memory bandwidth of this machine, STREAM-style: the bound for a step that
// streams the weights, gradients and optimizer state of a large model
// (README, "GPT-2 XL step time"). Buffers of 1 GiB each, far beyond the
// caches (L3 260 MiB on the Xeon, 32 MiB per Zen 5 CCD), allocated like the trainers' (alloc_big: huge
// pages) and touched once before timing. Each kernel runs 5 times with 1 and
// with all threads; the best time counts, bytes = what the kernel must read
// plus write (a write also reads the line first unless the CPU avoids it, as
// STREAM counts it).
//   read   s += a[i]                     4 bytes per element
//   write  a[i] = x                      4
//   copy   a[i] = b[i]                   8
//   triad  a[i] = b[i] + x * c[i]        12
//   adamw  the AdamW update: read p, g, m, v; write p, m, v   28
// Every kernel's result is checked against values known in advance (small
// integers, exact in float), so a kernel the compiler skipped would fail.
// Each rate is given twice: by the wall clock, and by the process's CPU time
// per thread. On a machine shared with other jobs the wall clock also counts
// the time spent waiting for a core; the CPU time (a stall on memory counts,
// a wait for a core does not) is then the better estimate of what the memory
// delivers while we run.
//   make bench-stream   (build/release/bin/bench_stream [GiB per buffer])
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/utils.h"

// wall-clock and CPU seconds of one repetition
typedef struct { double t0, c0; } Clock;
static Clock clock_start(void) { Clock c = {now_seconds(), cpu_seconds()}; return c; }
static void clock_stop(Clock c, double *wall, double *cpu, int threads) {
    *wall = now_seconds() - c.t0;
    *cpu = (cpu_seconds() - c.c0) / threads;
}

static double best_of(double *t, int n) {
    double b = t[0];
    for (int i = 1; i < n; i++) if (t[i] < b) b = t[i];
    return b;
}

#define REPS 5

int main(int argc, char **argv) {
    double gib = argc > 1 ? atof(argv[1]) : 1.0;
    if (!(gib > 0.0 && gib <= 4.0)) fail("usage: bench_stream [GiB per buffer, at most 4]");
    size_t n = (size_t)(gib * (double)(1u << 30)) / sizeof(float);
    float *p = alloc_big_floats(n, "p"), *g = alloc_big_floats(n, "g"), *m = alloc_big_floats(n, "m"),
          *v = alloc_big_floats(n, "v");
    int max_threads = omp_get_max_threads();
    printf("bench_stream: 4 buffers of %.2f GiB (%zu floats), threads 1 and %d, best of %d\n", gib, n, max_threads,
           REPS);
    int failures = 0;
    for (int threads = 1; threads <= max_threads; threads = threads == max_threads ? threads + 1 : max_threads) {
        omp_set_num_threads(threads);
        // first touch, by the threads that will use the pages
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) { p[i] = 1.0f; g[i] = 2.0f; m[i] = 0.0f; v[i] = 0.0f; }
        double t[REPS], u[REPS];
        // read
        double sum = 0.0;
        for (int r = 0; r < REPS; r++) {
            Clock ck = clock_start();
            double s = 0.0;
            #pragma omp parallel for simd schedule(static) reduction(+:s)
            for (size_t i = 0; i < n; i++) s += g[i];
            clock_stop(ck, &t[r], &u[r], threads);
            sum = s;
        }
        double read_gbs = 4.0 * n / best_of(t, REPS) / 1e9, read_cpu = 4.0 * n / best_of(u, REPS) / 1e9;
        if (sum != 2.0 * (double)n) { printf("FAIL read: sum %.1f, expected %.1f\n", sum, 2.0 * n); failures++; }
        // write
        for (int r = 0; r < REPS; r++) {
            Clock ck = clock_start();
            #pragma omp parallel for simd schedule(static)
            for (size_t i = 0; i < n; i++) m[i] = 3.0f;
            clock_stop(ck, &t[r], &u[r], threads);
        }
        double write_gbs = 4.0 * n / best_of(t, REPS) / 1e9, write_cpu = 4.0 * n / best_of(u, REPS) / 1e9;
        if (m[n / 3] != 3.0f || m[n - 1] != 3.0f) { printf("FAIL write\n"); failures++; }
        // copy
        for (int r = 0; r < REPS; r++) {
            Clock ck = clock_start();
            #pragma omp parallel for simd schedule(static)
            for (size_t i = 0; i < n; i++) v[i] = g[i];
            clock_stop(ck, &t[r], &u[r], threads);
        }
        double copy_gbs = 8.0 * n / best_of(t, REPS) / 1e9, copy_cpu = 8.0 * n / best_of(u, REPS) / 1e9;
        if (v[n / 2] != 2.0f || v[n - 1] != 2.0f) { printf("FAIL copy\n"); failures++; }
        // triad
        for (int r = 0; r < REPS; r++) {
            Clock ck = clock_start();
            #pragma omp parallel for simd schedule(static)
            for (size_t i = 0; i < n; i++) v[i] = g[i] + 0.5f * m[i];
            clock_stop(ck, &t[r], &u[r], threads);
        }
        double triad_gbs = 12.0 * n / best_of(t, REPS) / 1e9, triad_cpu = 12.0 * n / best_of(u, REPS) / 1e9;
        if (v[n / 2] != 3.5f || v[n - 1] != 3.5f) { printf("FAIL triad\n"); failures++; }
        // the AdamW update (optim/optim.c's loop with constants): p, m, v move, g is read
        #pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < n; i++) { p[i] = 1.0f; m[i] = 0.0f; v[i] = 0.0f; }
        for (int r = 0; r < REPS; r++) {
            Clock ck = clock_start();
            #pragma omp parallel for simd schedule(static)
            for (size_t i = 0; i < n; i++) {
                float gi = g[i];
                float mi = 0.5f * m[i] + 0.5f * gi;
                float vi = 0.5f * v[i] + 0.5f * gi * gi;
                m[i] = mi;
                v[i] = vi;
                p[i] = p[i] - 0.0625f * (mi / (sqrtf(vi) + 1.0f));
            }
            clock_stop(ck, &t[r], &u[r], threads);
        }
        double adamw_gbs = 28.0 * n / best_of(t, REPS) / 1e9, adamw_cpu = 28.0 * n / best_of(u, REPS) / 1e9;
        // after 5 steps with g = 2 from m = v = 0: m = 2 - 2^-4, v = 4 - 4 * 2^-5; p from the same recurrence
        double pm = 0.0, pv = 0.0, pp = 1.0;
        for (int r = 0; r < REPS; r++) {
            pm = (float)(0.5f * (float)pm + 1.0f);
            pv = (float)(0.5f * (float)pv + 2.0f);
            pp = (float)((float)pp - 0.0625f * ((float)pm / (sqrtf((float)pv) + 1.0f)));
        }
        if (m[n - 1] != (float)pm || v[n - 1] != (float)pv || fabsf(p[n - 1] - (float)pp) > 1e-6f) {
            printf("FAIL adamw: p %g m %g v %g, expected %g %g %g\n", p[n - 1], m[n - 1], v[n - 1], pp, pm, pv);
            failures++;
        }
        printf("threads %d: read %.1f GB/s, write %.1f GB/s, copy %.1f GB/s, triad %.1f GB/s, AdamW update %.1f GB/s "
               "(%.2f ns per parameter)\n", threads, read_gbs, write_gbs, copy_gbs, triad_gbs, adamw_gbs,
               28.0 / adamw_gbs);
        printf("threads %d by CPU time: read %.1f GB/s, write %.1f GB/s, copy %.1f GB/s, triad %.1f GB/s, AdamW update "
               "%.1f GB/s (%.2f ns per parameter)\n", threads, read_cpu, write_cpu, copy_cpu, triad_cpu, adamw_cpu,
               28.0 / adamw_cpu);
    }
    free_big(p); free_big(g); free_big(m); free_big(v);
    if (failures) { printf("bench_stream: %d FAILED\n", failures); return 1; }
    return 0;
}
