// The GEMMs of a GPT-2 XL step at B 1 x T 64 (64 rows, C 1600), as the
// trainer runs them with fused updates: per layer the forward of qkv (3C),
// attproj (C), fc (4C) and fcproj (4C -> C), then in reverse each backward's
// input gradient (dinp += dout @ W) and weight gradient, written (beta 0, as
// matmul_backward_into with write_dweight); and the LM head (Vp 50304) once. The weights stream
// from memory as in a step: LAYERS sets of them (369 MB, beyond the 32 MiB
// L3) used in turn, and wte's 322 MB. Each product is timed on its own;
// printed per product, GFLOP/s per thread (all the threads' work over the
// threads): by the process's CPU time over all calls (what --profile 1
// reports; a wait for a core is not counted, a thread spinning at a barrier
// is), and the best call by wall clock (the least disturbed one, on a shared
// machine). The few-rows forward is also checked against the usual packed
// product (sgemm with op(B) = B^T): the two must be equal bit for bit.
//   make bench-gemm-xl [BENCH_THREADS=N]   (bench_gemm_xl [THREADS] [REPS])
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

enum { FWD, DINP, DWEIGHT, KINDS };
enum { LAYERS = 3, NPROD = 5 };
static const char *const KIND_NAME[KINDS] = {"forward", "dinp", "dweight"};

typedef struct {
    const char *name;
    int in, out;       // features: the weight is [out, in]
    int per_layer;     // 1: LAYERS copies of the weight in turn; 0: one (the LM head)
    float *w[LAYERS];  // weights
    double cpu[KINDS], best[KINDS];
    int calls[KINDS];
} Product;

static void fill(float *x, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((i * 7 + seed) % 13) * 0.01f - 0.06f;
}

// time one product: CPU seconds added to p->cpu[kind], wall seconds kept if the best
#define TIMED(p, kind, call)                                                                  \
    do {                                                                                      \
        double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);         \
        call;                                                                                 \
        double w1 = clock_s(CLOCK_MONOTONIC);                                                 \
        (p)->cpu[kind] += clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;                             \
        if (w1 - w0 < (p)->best[kind]) (p)->best[kind] = w1 - w0;                             \
        (p)->calls[kind]++;                                                                   \
    } while (0)

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : omp_get_max_threads(), reps = argc > 2 ? atoi(argv[2]) : 4;
    if (threads < 1 || reps < 1) fail("usage: bench_gemm_xl [THREADS >= 1] [REPS >= 1]");
    omp_set_num_threads(threads);
    const int BT = 64, C = 1600, Vp = 50304;
    Product prod[NPROD] = {
        {.name = "qkv", .in = C, .out = 3 * C, .per_layer = 1},
        {.name = "attproj", .in = C, .out = C, .per_layer = 1},
        {.name = "fc", .in = C, .out = 4 * C, .per_layer = 1},
        {.name = "fcproj", .in = 4 * C, .out = C, .per_layer = 1},
        {.name = "lm head", .in = C, .out = Vp, .per_layer = 0},
    };
    size_t max_w = 0;
    for (int p = 0; p < NPROD; p++) {
        size_t n = (size_t)prod[p].in * prod[p].out;
        for (int l = 0; l < (prod[p].per_layer ? LAYERS : 1); l++) {
            prod[p].w[l] = alloc_big_floats(n, "weights");
            fill(prod[p].w[l], n, (unsigned)(p * LAYERS + l));
        }
        if (n > max_w) max_w = n;
        for (int k = 0; k < KINDS; k++) prod[p].best[k] = 1e30;
    }
    // activations: an input and an output gradient as wide as the widest
    float *inp = alloc_big_floats((size_t)BT * Vp, "inp"), *dout = alloc_big_floats((size_t)BT * Vp, "dout");
    float *out = alloc_big_floats((size_t)BT * Vp, "out"), *out2 = alloc_big_floats((size_t)BT * Vp, "out2");
    float *dinp = alloc_big_floats((size_t)BT * 4 * C, "dinp"), *dw = alloc_big_floats(max_w, "weight gradient");
    fill(inp, (size_t)BT * Vp, 1), fill(dout, (size_t)BT * Vp, 2);

    int failures = 0;
    for (int rep = 0; rep < reps; rep++)
        for (int l = 0; l < LAYERS; l++) {
            for (int p = 0; p < NPROD; p++) {
                Product *q = &prod[p];
                if (!q->per_layer && l > 0) continue;
                TIMED(q, FWD, matmul_forward(out, inp, q->w[l], NULL, BT, q->in, q->out));
            }
            for (int p = NPROD - 1; p >= 0; p--) {
                Product *q = &prod[p];
                if (!q->per_layer && l > 0) continue;
                TIMED(q, DINP, sgemm(0, 0, BT, q->in, q->out, 1.0f, dout, q->out, q->w[l], q->in, 1.0f, dinp, q->in));
                TIMED(q, DWEIGHT, sgemm(1, 0, q->out, q->in, BT, 1.0f, dout, q->out, inp, q->in, 0.0f, dw, q->in));
            }
        }
    // the few-rows forward against the packed product, once per shape
    for (int p = 0; p < NPROD; p++) {
        Product *q = &prod[p];
        matmul_forward(out, inp, q->w[0], NULL, BT, q->in, q->out);
        sgemm(0, 1, BT, q->out, q->in, 1.0f, inp, q->in, q->w[0], q->in, 0.0f, out2, q->out);
        if (memcmp(out, out2, (size_t)BT * q->out * sizeof(float)) != 0) {
            printf("FAIL %s: the few-rows forward differs from the packed product\n", q->name);
            failures++;
        }
    }

    printf("bench_gemm_xl: GPT-2 XL's GEMMs at B 1 x T 64, %d thread%s, %d reps x %d layers (LM head: %d),\n",
           threads, threads == 1 ? "" : "s", reps, LAYERS, reps);
    printf("GFLOP/s per thread: by CPU time over all calls [best call by wall clock]\n");
    printf("%-8s", "");
    for (int k = 0; k < KINDS; k++) printf(" %17s", KIND_NAME[k]);
    printf("\n");
    double flops_all[KINDS] = {0}, cpu_all[KINDS] = {0};
    for (int p = 0; p < NPROD; p++) {
        Product *q = &prod[p];
        double flops = 2.0 * BT * q->in * q->out;
        printf("%-8s", q->name);
        for (int k = 0; k < KINDS; k++) {
            printf("      %5.0f [%5.0f]", flops * q->calls[k] / q->cpu[k] / 1e9, flops / q->best[k] / 1e9 / threads);
            flops_all[k] += flops * q->calls[k] * (q->per_layer ? 48.0 / LAYERS : 1.0);
            cpu_all[k] += q->cpu[k] * (q->per_layer ? 48.0 / LAYERS : 1.0);
        }
        printf("\n");
    }
    // a step's mix: 48 layers and one LM head
    printf("an XL step's mix (48 layers, one LM head), by CPU time: forward %.0f, backward (dinp + dweight) %.0f GFLOP/s per thread\n",
           flops_all[FWD] / cpu_all[FWD] / 1e9, (flops_all[DINP] + flops_all[DWEIGHT]) / (cpu_all[DINP] + cpu_all[DWEIGHT]) / 1e9);
    if (failures) printf("FAIL: %d shape(s)\n", failures);
    return failures ? 1 : 0;
}
