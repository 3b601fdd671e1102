// test_attention: the tiled attention (nn/attention.c) against
// - the direct attention that stores the weights (attention_*_ref), to fp32
//   rounding, at shapes that cover one tile, several, a partial last tile
//   (T not a multiple of 64), causal and not, and head sizes that take the
//   AVX-512 path (hs a multiple of 16) and the plain one (hs 4, 24);
// - a double-precision attention written here from the formulas, whose own
//   backward is checked against central finite differences of its forward;
// - PyTorch (dev/attention_ref.py wrote dev/testdata/attention_ref.bin,
//   float64 softmax(q k^T / sqrt(hs) + mask) v and autograd);
// and checks that 1 and 2 threads give the same bits. Linked with the bf16
// attention (test_attention_bf16: make PRECISION=bf16's nn/attention_bf16.o),
// the same comparisons within bf16 tolerances, and against the bf16
// definition in double (attention_*_bf16_ref) relative to bf16's effect.
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/attention.h"

#include "test.h"

// largest |a - b| over n values, relative to the largest |b| (NaN counts as the largest)
static double rel_diff(const float *a, const double *b, size_t n) {
    double d = 0.0, m = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= d)) d = e;
        if (fabs(b[i]) > m) m = fabs(b[i]);
    }
    return d / m;
}
static double rel_diff_ff(const float *a, const float *b, size_t n) {
    double *bd = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) bd[i] = b[i];
    double r = rel_diff(a, bd, n);
    free(bd);
    return r;
}

// largest |a - b| (the logsumexp's error is what shifts every weight: absolute)
static double abs_diff(const float *a, const double *b, size_t n) {
    double d = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= d)) d = e;
    }
    return d;
}

// L2 distances: float against float, and double against float
static double dist_fd(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(s);
}
static double dist_dd_f(const double *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
    return sqrt(s);
}

// the attention linked in: fp32, or bf16 (test_attention_bf16, nn/attention_bf16.o)
static int bf16;
// bf16 against fp32 arithmetic, relative to the largest value (the logsumexp:
// absolute): inputs rounded to 8 significant bits (2^-9 relative error each)
// move an output by a few 1e-3 of the largest
#define BF16_TOL 2e-2
// the tiled bf16 attention's distance from its definition, as a fraction of
// the definition's distance from fp32 (both in L2)
#define BF16_RATIO 0.05

// uniform in [-1, 1) from a 64-bit LCG (any fixed sequence will do)
static uint64_t rng_state = 12345;
static float uniform(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xFFFFFF) / 8388608.0f - 1.0f;
}

// ----------------------------------------------------------------------------
// attention in double precision, straight from the definition:
// s = q.k / sqrt(hs) (keys after the query masked when causal), p = softmax(s),
// out = p v; backward dp = dout.v, ds = p (dp - sum p dp), dq = ds k / sqrt(hs),
// dk = ds^T q / sqrt(hs), dv = p^T dout.
static void attention_double(double *out, double *dqkv, const double *qkv, const double *dout,
                             int B, int T, int C, int NH, int causal) {
    int hs = C / NH, C3 = 3 * C;
    double scale = 1.0 / sqrt((double)hs);
    double *p = malloc((size_t)T * sizeof(double)), *dp = malloc((size_t)T * sizeof(double));
    if (dqkv) memset(dqkv, 0, (size_t)B * T * C3 * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const double *q = qkv + ((size_t)b * T + t) * C3 + h * hs;
                int len = causal ? t + 1 : T;
                double mx = -INFINITY, sum = 0.0;
                for (int u = 0; u < len; u++) {
                    const double *k = qkv + ((size_t)b * T + u) * C3 + C + h * hs;
                    double s = 0.0;
                    for (int d = 0; d < hs; d++) s += q[d] * k[d];
                    p[u] = s * scale;
                    if (p[u] > mx) mx = p[u];
                }
                for (int u = 0; u < len; u++) { p[u] = exp(p[u] - mx); sum += p[u]; }
                for (int u = 0; u < len; u++) p[u] /= sum;
                double *o = out + ((size_t)b * T + t) * C + h * hs;
                for (int d = 0; d < hs; d++) {
                    double s = 0.0;
                    for (int u = 0; u < len; u++) s += p[u] * qkv[((size_t)b * T + u) * C3 + 2 * C + h * hs + d];
                    o[d] = s;
                }
                if (!dqkv) continue;
                const double *dy = dout + ((size_t)b * T + t) * C + h * hs;
                double pdp = 0.0;
                for (int u = 0; u < len; u++) {
                    const double *v = qkv + ((size_t)b * T + u) * C3 + 2 * C + h * hs;
                    double *dv = dqkv + ((size_t)b * T + u) * C3 + 2 * C + h * hs;
                    double s = 0.0;
                    for (int d = 0; d < hs; d++) { s += dy[d] * v[d]; dv[d] += p[u] * dy[d]; }
                    dp[u] = s;
                    pdp += p[u] * s;
                }
                double *dq = dqkv + ((size_t)b * T + t) * C3 + h * hs;
                for (int u = 0; u < len; u++) {
                    double ds = p[u] * (dp[u] - pdp) * scale;
                    const double *k = qkv + ((size_t)b * T + u) * C3 + C + h * hs;
                    double *dk = dqkv + ((size_t)b * T + u) * C3 + C + h * hs;
                    for (int d = 0; d < hs; d++) { dq[d] += ds * k[d]; dk[d] += ds * q[d]; }
                }
            }
    free(p);
    free(dp);
}

// The double backward against central differences of L = sum(dout * out) on a
// small case (every input perturbed).
static void test_double_reference_by_finite_differences(void) {
    const int B = 2, T = 5, C = 8, NH = 2;
    for (int causal = 0; causal <= 1; causal++) {
        size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C;
        double *qkv = malloc(nq * sizeof(double)), *dqkv = malloc(nq * sizeof(double));
        double *dout = malloc(no * sizeof(double)), *out = malloc(no * sizeof(double));
        for (size_t i = 0; i < nq; i++) qkv[i] = 1.5 * uniform();
        for (size_t i = 0; i < no; i++) dout[i] = uniform();
        attention_double(out, dqkv, qkv, dout, B, T, C, NH, causal);
        double worst = 0.0, h = 1e-5;
        for (size_t i = 0; i < nq; i++) {
            double x = qkv[i], lp = 0.0, lm = 0.0;
            qkv[i] = x + h;
            attention_double(out, NULL, qkv, dout, B, T, C, NH, causal);
            for (size_t j = 0; j < no; j++) lp += dout[j] * out[j];
            qkv[i] = x - h;
            attention_double(out, NULL, qkv, dout, B, T, C, NH, causal);
            for (size_t j = 0; j < no; j++) lm += dout[j] * out[j];
            qkv[i] = x;
            double fd = (lp - lm) / (2 * h), e = fabs(fd - dqkv[i]) / (fabs(fd) > 1e-3 ? fabs(fd) : 1e-3);
            if (!(e <= worst)) worst = e;
        }
        CHECK(worst < 1e-7, "double-precision attention backward = finite differences of its forward (%s, worst rel %.1e)",
              causal ? "causal" : "bidirectional", worst);
        free(qkv); free(dqkv); free(dout); free(out);
    }
}

// ----------------------------------------------------------------------------
// tiled against direct against double, at one shape

static void test_shape(int B, int T, int C, int NH, int causal) {
    int hs = C / NH;
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C, nl = (size_t)B * NH * T;
    float *qkv = malloc(nq * sizeof(float)), *dout = malloc(no * sizeof(float)), *start = malloc(nq * sizeof(float));
    float *out = malloc(no * sizeof(float)), *out_ref = malloc(no * sizeof(float)), *lse = malloc(nl * sizeof(float));
    float *att = malloc((size_t)B * NH * T * T * sizeof(float));
    float *dqkv = malloc(nq * sizeof(float)), *dqkv_ref = malloc(nq * sizeof(float));
    double *qkv_d = malloc(nq * sizeof(double)), *dout_d = malloc(no * sizeof(double)), *lse_d = malloc(nl * sizeof(double));
    double *out_d = malloc(no * sizeof(double)), *dqkv_d = malloc(nq * sizeof(double));
    // scores of a few units, so that the softmax is neither flat nor one-hot
    for (size_t i = 0; i < nq; i++) { qkv[i] = 2.0f * uniform(); qkv_d[i] = qkv[i]; }
    for (size_t i = 0; i < no; i++) { dout[i] = uniform(); dout_d[i] = dout[i]; }
    // the gradients start non-zero: a backward must add, not overwrite
    for (size_t i = 0; i < nq; i++) dqkv[i] = dqkv_ref[i] = start[i] = 0.25f * uniform();

    attention_forward(out, lse, qkv, B, T, C, NH, causal);
    attention_backward(dqkv, dout, qkv, out, lse, B, T, C, NH, causal);
    attention_forward_ref(out_ref, att, qkv, B, T, C, NH, causal);
    attention_backward_ref(dqkv_ref, dout, qkv, att, B, T, C, NH, causal);
    attention_double(out_d, dqkv_d, qkv_d, dout_d, B, T, C, NH, causal);
    for (size_t i = 0; i < nq; i++) dqkv_d[i] += start[i];
    // logsumexp of each query's scores, in double
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                const double *q = qkv_d + ((size_t)b * T + t) * 3 * C + h * hs;
                int len = causal ? t + 1 : T;
                double mx = -INFINITY, s = 0.0;
                for (int pass = 0; pass < 2; pass++)
                    for (int u = 0; u < len; u++) {
                        double d = 0.0;
                        for (int k = 0; k < hs; k++) d += q[k] * qkv_d[((size_t)b * T + u) * 3 * C + C + h * hs + k];
                        d /= sqrt((double)hs);
                        if (pass == 0) mx = d > mx ? d : mx;
                        else s += exp(d - mx);
                    }
                lse_d[((size_t)b * NH + h) * T + t] = mx + log(s);
            }

    double e_tr = rel_diff_ff(out, out_ref, no), e_dtr = rel_diff_ff(dqkv, dqkv_ref, nq);
    double e_out = rel_diff(out, out_d, no), e_d = rel_diff(dqkv, dqkv_d, nq), e_lse = rel_diff(lse, lse_d, nl);
    double e_outr = rel_diff(out_ref, out_d, no), e_dr = rel_diff(dqkv_ref, dqkv_d, nq);
    const char *kind = causal ? "causal" : "bidir.";
    if (!bf16) {
        CHECK(e_tr < 2e-6 && e_dtr < 2e-6, "B%d T%-4d C%-3d NH%d hs%-3d %s: tiled vs direct: out rel %.1e, dqkv rel %.1e",
              B, T, C, NH, hs, kind, e_tr, e_dtr);
        CHECK(e_out < 2e-6 && e_d < 2e-6 && e_lse < 4e-6,
              "B%d T%-4d C%-3d NH%d hs%-3d %s: tiled vs double: out %.1e, dqkv %.1e, lse %.1e (direct vs double: %.1e, %.1e)",
              B, T, C, NH, hs, kind, e_out, e_d, e_lse, e_outr, e_dr);
    }

    // the bf16 definition in double (attention_*_bf16_ref), from the same
    // inputs and, in the backward, the same out as the tiled version read
    float *out_b = malloc(no * sizeof(float)), *lse_b = malloc(nl * sizeof(float)), *dqkv_b = malloc(nq * sizeof(float));
    memcpy(dqkv_b, start, nq * sizeof(float));
    attention_forward_bf16_ref(out_b, lse_b, qkv, B, T, C, NH, causal);
    attention_backward_bf16_ref(dqkv_b, dout, qkv, out, B, T, C, NH, causal);
    // itself: as far from the fp32 double attention as bf16 inputs make it (2^-9 relative each)
    double e_bo = rel_diff(out_b, out_d, no), e_bd = rel_diff(dqkv_b, dqkv_d, nq), e_bl = abs_diff(lse_b, lse_d, nl);
    CHECK(e_bo < BF16_TOL && e_bd < BF16_TOL && e_bl < BF16_TOL,
          "B%d T%-4d C%-3d NH%d hs%-3d %s: bf16 definition vs double: out %.1e, dqkv %.1e, lse abs %.1e (bf16 tolerance %.0e)",
          B, T, C, NH, hs, kind, e_bo, e_bd, e_bl, BF16_TOL);
    if (bf16) {
        // The tiled bf16 attention against its definition: they round the same
        // values to bf16, computed in fp32 here and in double there, so a value
        // near the middle of two bf16 numbers now and then rounds to the other
        // one; the rest is fp32 rounding. Both against the effect of bf16 (the
        // distance of the definition from the fp32 double attention), in L2:
        // a missing or a wrong rounding is at 1 or more.
        double r_out = dist_fd(out, out_b, no) / dist_dd_f(out_d, out_b, no);
        double r_d = dist_fd(dqkv, dqkv_b, nq) / dist_dd_f(dqkv_d, dqkv_b, nq);
        double e_l = rel_diff_ff(lse, lse_b, nl);
        CHECK(r_out < BF16_RATIO && r_d < BF16_RATIO && e_l < 4e-6,
              "B%d T%-4d C%-3d NH%d hs%-3d %s: tiled vs bf16 definition: |diff| / |bf16 effect| out %.3f, dqkv %.3f "
              "(limit %.2f); lse rel %.1e", B, T, C, NH, hs, kind, r_out, r_d, BF16_RATIO, e_l);
        double e_la = abs_diff(lse, lse_d, nl);
        CHECK(e_out < BF16_TOL && e_d < BF16_TOL && e_la < BF16_TOL && e_tr < BF16_TOL && e_dtr < BF16_TOL,
              "B%d T%-4d C%-3d NH%d hs%-3d %s: tiled vs double: out %.1e, dqkv %.1e, lse abs %.1e; vs direct (fp32): %.1e, %.1e",
              B, T, C, NH, hs, kind, e_out, e_d, e_la, e_tr, e_dtr);
    }
    free(out_b); free(lse_b); free(dqkv_b);

    // the same bits on 1 thread as on several
    float *out1 = malloc(no * sizeof(float)), *lse1 = malloc(nl * sizeof(float)), *dqkv1 = malloc(nq * sizeof(float));
    memcpy(dqkv1, start, nq * sizeof(float));
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    attention_forward(out1, lse1, qkv, B, T, C, NH, causal);
    attention_backward(dqkv1, dout, qkv, out1, lse1, B, T, C, NH, causal);
    omp_set_num_threads(threads);
    CHECK(memcmp(out1, out, no * sizeof(float)) == 0 && memcmp(lse1, lse, nl * sizeof(float)) == 0 &&
          memcmp(dqkv1, dqkv, nq * sizeof(float)) == 0,
          "B%d T%-4d C%-3d NH%d hs%-3d %s: 1 thread and %d give the same bits", B, T, C, NH, hs, kind, threads);

    free(qkv); free(dout); free(start); free(out); free(out_ref); free(lse); free(att); free(dqkv); free(dqkv_ref);
    free(qkv_d); free(dout_d); free(lse_d); free(out_d); free(dqkv_d); free(out1); free(lse1); free(dqkv1);
}

// Each case of dev/testdata/attention_ref.bin (PyTorch, float64) through the tiled attention.
static void test_against_pytorch(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { printf("FAIL cannot open %s (make attention-ref writes it)\n", path); failures++; return; }
    int32_t hdr[4];
    if (fread(hdr, sizeof(int32_t), 4, f) != 4 || hdr[0] != 20261130 || hdr[1] != 1) {
        printf("FAIL %s: bad header (make attention-ref rewrites it)\n", path); failures++; fclose(f); return;
    }
    for (int c = 0; c < hdr[2]; c++) {
        int32_t d[5];
        if (fread(d, sizeof(int32_t), 5, f) != 5) { printf("FAIL %s is truncated\n", path); failures++; break; }
        int B = d[0], T = d[1], C = d[2], NH = d[3], causal = d[4];
        size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C;
        float *qkv = malloc(nq * sizeof(float)), *dout = malloc(no * sizeof(float)), *want_out = malloc(no * sizeof(float));
        float *want_dqkv = malloc(nq * sizeof(float)), *out = malloc(no * sizeof(float));
        float *lse = malloc((size_t)B * NH * T * sizeof(float)), *dqkv = calloc(nq, sizeof(float));
        if (fread(qkv, sizeof(float), nq, f) != nq || fread(dout, sizeof(float), no, f) != no ||
            fread(want_out, sizeof(float), no, f) != no || fread(want_dqkv, sizeof(float), nq, f) != nq) {
            printf("FAIL %s is truncated\n", path); failures++;
        } else {
            attention_forward(out, lse, qkv, B, T, C, NH, causal);
            attention_backward(dqkv, dout, qkv, out, lse, B, T, C, NH, causal);
            double e1 = rel_diff_ff(out, want_out, no), e2 = rel_diff_ff(dqkv, want_dqkv, nq);
            double tol = bf16 ? BF16_TOL : 2e-6;
            CHECK(e1 < tol && e2 < tol, "B%d T%-4d C%-3d NH%d %s: tiled vs PyTorch: out rel %.1e, dqkv rel %.1e (tolerance %.0e)",
                  B, T, C, NH, causal ? "causal" : "bidir.", e1, e2, tol);
        }
        free(qkv); free(dout); free(want_out); free(want_dqkv); free(out); free(lse); free(dqkv);
    }
    fclose(f);
}

int main(int argc, char **argv) {
    if (omp_get_max_threads() < 2) omp_set_num_threads(2); // the thread check needs 2
    bf16 = strcmp(attention_precision(), "bf16") == 0;
    printf("test_attention: the tiled attention in %s\n", attention_precision());
    test_against_pytorch(argc > 1 ? argv[1] : "dev/testdata/attention_ref.bin");
    test_double_reference_by_finite_differences();
    // B, T, C, NH, causal: one partial tile; one full tile; several with a
    // partial last one; a head size of 32 (two vectors), 24 and 4 (plain
    // loops); bidirectional with a partial tile, and at the ViT's lengths:
    // ViT-Ti/16's 197 tokens (hs 64), and 17 tokens of hs 16; causal with
    // the last tile ending inside a 16-row band of the diagonal at head sizes
    // of 48 (three vectors) and 128 (two passes of four); odd head sizes, 5
    // and 7 (the bf16 path pairs the last channel with a zero)
    int shapes[][5] = {{1, 1, 64, 1, 1}, {2, 5, 8, 2, 1}, {1, 64, 128, 2, 1}, {2, 67, 128, 2, 1},
                       {1, 200, 64, 1, 1}, {2, 130, 96, 3, 1}, {1, 100, 48, 2, 1}, {1, 70, 8, 2, 0},
                       {2, 130, 128, 2, 0}, {1, 257, 192, 3, 1}, {2, 197, 192, 3, 0}, {3, 17, 64, 4, 0},
                       {2, 93, 96, 2, 1}, {1, 150, 256, 2, 1}, {1, 37, 10, 2, 1}, {2, 20, 21, 3, 0}};
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
        test_shape(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], shapes[i][4]);
    if (failures) { printf("test_attention: %d FAILED\n", failures); return 1; }
    printf("test_attention: all passed\n");
    return 0;
}
