// What test_gpt2_bf16 and test_vit_bf16 share: a bf16 model's logits, loss
// and gradients against two PyTorch references of the same batch, one with
// every input of the linear layers' matmuls rounded to bf16 and one in fp32. Ours must be close to
// the first and measurably away from the second (why these limits: the
// comment at the top of test_gpt2_bf16.c).
#ifndef TEST_BF16_H
#define TEST_BF16_H

#include <math.h>
#include <stdio.h>

#include "test.h"

#define GRAD_RATIO 0.5    // |ours - bf16 ref| / |bf16 ref - fp32 ref| per gradient tensor
#define TOTAL_RATIO 0.25  // the same over all gradients

static double dist(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(s);
}

// |ours - bf16 ref| / |fp32 ref - bf16 ref|: 0 is the bf16 reference, 1 as far as fp32 is
static double ratio(const char *what, const float *ours, const float *ref_bf16, const float *ref_fp32, size_t n,
                    double limit) {
    double to_bf16 = dist(ours, ref_bf16, n), effect = dist(ref_fp32, ref_bf16, n), to_fp32 = dist(ours, ref_fp32, n);
    double r = to_bf16 / effect;
    int ok = r <= limit;  // NaN fails
    printf("%-4s %-9s %6zu values: |ours - bf16 ref| %.3e = %.2f x |bf16 ref - fp32 ref| (limit %.2f); |ours - fp32 ref| %.3e\n",
           ok ? "ok" : "FAIL", what, n, to_bf16, r, limit, to_fp32);
    failures += !ok;
    return r;
}

// The forward judged as the gradients are, against the bf16 effect (for a
// model where one flipped rounding shows in the logits: test_vit_bf16 says
// why): the logits' largest difference from the bf16 reference at most limit
// x the references' largest difference, and the loss's likewise.
static inline void check_bf16_logits_vs_effect(const float *logits, const float *ref_bf16, const float *ref_fp32, size_t n,
                                        double limit) {
    double max_ref = 0, max_bf16 = 0, max_fp32 = 0, effect = 0;
    for (size_t i = 0; i < n; i++) {
        max_ref = fmax(max_ref, fabs(ref_bf16[i]));
        max_bf16 = fmax(max_bf16, fabs(logits[i] - ref_bf16[i]));
        max_fp32 = fmax(max_fp32, fabs(logits[i] - ref_fp32[i]));
        effect = fmax(effect, fabs(ref_fp32[i] - ref_bf16[i]));
    }
    int ok = max_bf16 <= limit * effect; // NaN fails
    printf("%-4s logits: max|ours - bf16 ref| %.2e = %.2f x max|bf16 ref - fp32 ref| (limit %.2f); max|ours - fp32 ref| %.2e (max|ref| %.2f)\n",
           ok ? "ok" : "FAIL", max_bf16, max_bf16 / effect, limit, max_fp32, max_ref);
    failures += !ok;
}

static inline void check_bf16_loss_vs_effect(float loss, float ref_bf16, float ref_fp32, double limit) {
    double d = fabs(loss - ref_bf16), effect = fabs(ref_fp32 - ref_bf16);
    int ok = d <= limit * effect;
    printf("%-4s loss %.6f: bf16 ref %.6f, fp32 ref %.6f: |ours - bf16 ref| = %.2f x |bf16 ref - fp32 ref| (limit %.2f)\n",
           ok ? "ok" : "FAIL", loss, ref_bf16, ref_fp32, d / effect, limit);
    failures += !ok;
}

// every gradient tensor (sizes[i] floats each, in order) within GRAD_RATIO, all of them within total_limit
// (TOTAL_RATIO, unless a test says why not)
static inline void check_bf16_grads(const char *const *names, const size_t *sizes, int num_tensors, const float *grads,
                             const float *ref_bf16, const float *ref_fp32, double total_limit) {
    size_t offset = 0;
    for (int i = 0; i < num_tensors; i++) {
        ratio(names[i], grads + offset, ref_bf16 + offset, ref_fp32 + offset, sizes[i], GRAD_RATIO);
        offset += sizes[i];
    }
    ratio("all grads", grads, ref_bf16, ref_fp32, offset, total_limit);
}

#endif
