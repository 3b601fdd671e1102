// test_nn: the vectorisable math of nn/vecmath.h against double precision,
// and the soft-target softmax + cross-entropy (label smoothing, mixup) against
// PyTorch (dev/softce_ref.py wrote dev/testdata/softce_ref.bin) and against its
// double-precision reference, layernorm_recompute against the forward and
// gelu_backward against double precision. (The
// other layers are tested against PyTorch by
// test_gpt2 and test_vit.)
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/layers.h"
#include "nn/vecmath.h"

#include "test.h"

// distance in units in the last place between a float and the exact value
static double ulps(float got, double exact) {
    float e = (float)exact;
    float next = nextafterf(e, INFINITY);
    return fabs((double)got - exact) / ((double)next - (double)e);
}

// largest |a - b| over n values, relative to the largest |b| (at least 1e-30)
static double rel_diff_fd(const float *a, const double *b, size_t n) {
    double d = 0.0, m = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (!(e <= d)) d = e; // NaN counts as the largest
        if (fabs(b[i]) > m) m = fabs(b[i]);
    }
    return d / m;
}

static void read_or_die(void *dst, size_t size, size_t count, FILE *f, const char *path) {
    if (fread(dst, size, count, f) != count) {
        printf("FAIL %s is truncated (make softce-ref rewrites it)\n", path);
        exit(1);
    }
}

// Each case of dev/testdata/softce_ref.bin through the fast kernels (with a
// padded row, Vp = V + 3) and the double-precision reference: per-row losses
// and the gradient of their mean against PyTorch's. For label smoothing the
// targets are built here from the definition, (1 - eps) onehot + eps / V.
static void test_soft_crossentropy(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { printf("FAIL cannot open %s\n", path); failures++; return; }
    int32_t hdr[4];
    read_or_die(hdr, sizeof(int32_t), 4, f, path);
    if (hdr[0] != 20261202 || hdr[1] != 1) { printf("FAIL %s: bad magic or version\n", path); failures++; fclose(f); return; }
    for (int c = 0; c < hdr[2]; c++) {
        int32_t dims[3];
        float eps;
        read_or_die(dims, sizeof(int32_t), 3, f, path);
        read_or_die(&eps, sizeof(float), 1, f, path);
        int N = dims[0], V = dims[1], kind = dims[2], Vp = V + 3;
        size_t nv = (size_t)N * V;
        float *logits = malloc(nv * sizeof(float)), *targets = malloc(nv * sizeof(float));
        float *ref_losses = malloc((size_t)N * sizeof(float)), *ref_grad = malloc(nv * sizeof(float));
        float *row = malloc((size_t)N * Vp * sizeof(float)), *losses = malloc((size_t)N * sizeof(float));
        double *dl = malloc((size_t)N * sizeof(double)), *dg = malloc(nv * sizeof(double));
        double *torch_l = malloc((size_t)N * sizeof(double)), *torch_g = malloc(nv * sizeof(double));
        int *labels = malloc((size_t)N * sizeof(int));
        read_or_die(logits, sizeof(float), nv, f, path);
        if (kind == 0) {
            read_or_die(labels, sizeof(int), (size_t)N, f, path);
            float off = eps / (float)V, on = 1.0f - eps + off;
            for (int n = 0; n < N; n++)
                for (int v = 0; v < V; v++) targets[(size_t)n * V + v] = v == labels[n] ? on : off;
        } else {
            read_or_die(targets, sizeof(float), nv, f, path);
        }
        read_or_die(ref_losses, sizeof(float), (size_t)N, f, path);
        read_or_die(ref_grad, sizeof(float), nv, f, path);
        for (int n = 0; n < N; n++) torch_l[n] = ref_losses[n];
        for (size_t i = 0; i < nv; i++) torch_g[i] = ref_grad[i];

        for (int n = 0; n < N; n++) {
            memcpy(row + (size_t)n * Vp, logits + (size_t)n * V, (size_t)V * sizeof(float));
            for (int v = V; v < Vp; v++) row[(size_t)n * Vp + v] = 123.0f; // padding must not count
        }
        softmax_crossentropy_soft_forward(losses, row, targets, N, V, V + 3);
        softmax_crossentropy_soft_backward(row, targets, 1.0f / N, N, V, Vp);
        float *grad = malloc(nv * sizeof(float));
        int pad_zero = 1;
        for (int n = 0; n < N; n++) {
            memcpy(grad + (size_t)n * V, row + (size_t)n * Vp, (size_t)V * sizeof(float));
            for (int v = V; v < Vp; v++) pad_zero &= row[(size_t)n * Vp + v] == 0.0f;
        }
        // the reference reads the logits with row stride V here
        softmax_crossentropy_soft_reference(dl, dg, logits, targets, 1.0 / N, N, V, V);
        const char *what = kind == 0 ? "label smoothing" : "probability targets";
        double e1 = rel_diff_fd(losses, torch_l, (size_t)N), e2 = rel_diff_fd(grad, torch_g, nv);
        CHECK(e1 < 2e-6 && e2 < 2e-6 && pad_zero, "soft CE %s eps %.2f N %d V %d: losses and gradient vs PyTorch (rel %.1e, %.1e)",
              what, eps, N, V, e1, e2);
        // 1e-6 from the arithmetic, whatever order the sums run in (16 lanes, or
        // one by one as under the sanitizers): each exp is within 2 ulp (1.2e-7),
        // the sums are in double (V 2^-53, nothing at these V), so log(sum) is off
        // by ~1.2e-7 absolute and each (max - x) by one float rounding (6e-8
        // relative); a probability by the exp, 1 / sum and the product (~3e-7).
        // With float sums the order alone moved the loss by up to ~V ulp
        // (measured 2.8e-6 at V 1000 under ASan, 3e-7 vectorised).
        double e3 = rel_diff_fd(losses, dl, (size_t)N), e4 = rel_diff_fd(grad, dg, nv);
        CHECK(e3 < 1e-6 && e4 < 1e-6, "soft CE %s eps %.2f N %d V %d: fast kernel vs double reference (rel %.1e, %.1e)",
              what, eps, N, V, e3, e4);
        float *ref_f = malloc((size_t)N * sizeof(float)), *refg_f = malloc(nv * sizeof(float));
        for (int n = 0; n < N; n++) ref_f[n] = (float)dl[n];
        for (size_t i = 0; i < nv; i++) refg_f[i] = (float)dg[i];
        double e5 = rel_diff_fd(ref_f, torch_l, (size_t)N), e6 = rel_diff_fd(refg_f, torch_g, nv);
        CHECK(e5 < 2e-6 && e6 < 2e-6, "soft CE %s eps %.2f N %d V %d: double reference vs PyTorch (rel %.1e, %.1e)",
              what, eps, N, V, e5, e6);
        // a one-hot target gives exactly the hard-label loss
        if (kind == 0) {
            float *hard = malloc((size_t)N * Vp * sizeof(float)), *hl = malloc((size_t)N * sizeof(float));
            for (int n = 0; n < N; n++) {
                memcpy(hard + (size_t)n * Vp, logits + (size_t)n * V, (size_t)V * sizeof(float));
                memcpy(row + (size_t)n * Vp, logits + (size_t)n * V, (size_t)V * sizeof(float));
                for (int v = 0; v < V; v++) targets[(size_t)n * V + v] = v == labels[n] ? 1.0f : 0.0f;
            }
            softmax_crossentropy_forward(hl, hard, labels, N, V, Vp);
            softmax_crossentropy_soft_forward(losses, row, targets, N, V, Vp);
            CHECK(memcmp(hl, losses, (size_t)N * sizeof(float)) == 0, "soft CE with one-hot targets = hard-label CE bit for bit (N %d V %d)", N, V);
            free(hard);
            free(hl);
        }
        free(logits); free(targets); free(ref_losses); free(ref_grad); free(row); free(losses); free(dl); free(dg);
        free(torch_l); free(torch_g); free(labels); free(grad); free(ref_f); free(refg_f);
    }
    fclose(f);
}

// layernorm_recompute gives the forward's output bit for bit (GPT-2 recomputes
// its LayerNorms in backward instead of storing them; test_gpt2 holds the
// gradients against PyTorch), and the output is (x - mean) rstd w + b with
// mean and rstd computed here in double.
static void test_layernorm_recompute(void) {
    int N = 37, C = 83; // odd sizes: vector bodies and remainders
    float *x = malloc(N * C * sizeof(float)), *w = malloc(C * sizeof(float)), *bias = malloc(C * sizeof(float));
    float *out = malloc(N * C * sizeof(float)), *again = malloc(N * C * sizeof(float));
    float *mean = malloc(N * sizeof(float)), *rstd = malloc(N * sizeof(float));
    uint64_t st = 99;
    for (int i = 0; i < N * C; i++) { st = st * 6364136223846793005ull + 1442695040888963407ull; x[i] = (float)((st >> 40) % 2000) / 100.0f - 7.0f; }
    for (int c = 0; c < C; c++) { w[c] = 0.5f + 0.01f * c; bias[c] = 0.1f - 0.003f * c; }
    layernorm_forward(out, mean, rstd, x, w, bias, N, C, 1e-5f);
    layernorm_recompute(again, x, mean, rstd, w, bias, N, C);
    double worst = 0.0;
    for (int n = 0; n < N; n++) {
        double m = 0.0, v = 0.0;
        for (int c = 0; c < C; c++) m += x[n * C + c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[n * C + c] - m) * (x[n * C + c] - m);
        double s = 1.0 / sqrt(v / C + 1e-5);
        for (int c = 0; c < C; c++) {
            double want = (x[n * C + c] - m) * s * w[c] + bias[c];
            worst = fmax(worst, fabs(out[n * C + c] - want));
        }
    }
    CHECK(memcmp(out, again, N * C * sizeof(float)) == 0, "layernorm_recompute = layernorm_forward's output, bit for bit");
    CHECK(worst < 1e-5, "layernorm_forward against double precision: max |diff| %.1e", worst);
    free(x); free(w); free(bias); free(out); free(again); free(mean); free(rstd);
}

// gelu_backward (both kinds) against the derivative of GELU in double, and
// gelu_backward_inplace bit for bit gelu_backward into zeros (the trainers
// write the MLP's input gradient in place of the GELU output's gradient).
static void test_gelu_backward(void) {
    int N = 1001; // vector bodies and a remainder
    float *x = malloc(N * sizeof(float)), *dout = malloc(N * sizeof(float));
    float *added = malloc(N * sizeof(float)), *inplace = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) x[i] = -8.0f + 16.0f * i / (N - 1), dout[i] = 0.5f + 0.001f * i;
    for (int kind = 0; kind < 2; kind++) {
        GeluKind k = kind ? GELU_ERF : GELU_TANH;
        for (int i = 0; i < N; i++) added[i] = 0.0f, inplace[i] = dout[i];
        gelu_backward(added, x, dout, N, k);
        gelu_backward_inplace(inplace, x, N, k);
        double worst = 0.0;
        for (int i = 0; i < N; i++) {
            double v = x[i], grad;
            if (k == GELU_TANH) {
                double a = sqrt(2.0 / M_PI), u = a * (v + 0.044715 * v * v * v), th = tanh(u);
                grad = 0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * a * (1.0 + 3.0 * 0.044715 * v * v);
            } else {
                grad = 0.5 * (1.0 + erf(v / sqrt(2.0))) + v * exp(-0.5 * v * v) / sqrt(2.0 * M_PI);
            }
            worst = fmax(worst, fabs(added[i] - grad * dout[i]));
        }
        CHECK(worst < 2e-6, "gelu_backward (%s) against double precision: max |diff| %.1e", kind ? "erf" : "tanh", worst);
        CHECK(memcmp(added, inplace, N * sizeof(float)) == 0,
              "gelu_backward_inplace (%s) = gelu_backward into zeros, bit for bit", kind ? "erf" : "tanh");
    }
    free(x); free(dout); free(added); free(inplace);
}

// vexp2f and its AVX-512 form against exp2 in double: every 16th float in
// [-126, 128) (2^x normal: ~40 million values); denormal results within 1
// of the last place of a denormal; the limits, -inf and NaN.
static void test_vexp2f(void) {
    double worst = 0.0, worst_avx = 0.0, worst_den = 0.0;
    float worst_x = 0.0f;
    const float ends[2] = {-126.0f, 128.0f};
#if defined(__AVX512F__)
    float xs[16];
    int nx = 0;
#endif
    for (int side = 0; side < 2; side++) {
        uint32_t b0 = side ? 0u : 0x80000000u, b1; // from +0 or -0 out to the end's bits
        memcpy(&b1, &ends[side], 4);
        for (uint32_t b = b0; b < b1; b += 16) {
            float x;
            memcpy(&x, &b, 4);
            double u = ulps(vexp2f(x), vexp2f_ref(x));
            if (u > worst) { worst = u; worst_x = x; }
#if defined(__AVX512F__)
            xs[nx++] = x; // the same values, 16 to a vector
            if (nx == 16) {
                float ys[16];
                _mm512_storeu_ps(ys, vexp2f_avx512(_mm512_loadu_ps(xs)));
                for (int i = 0; i < 16; i++) {
                    double ua = ulps(ys[i], vexp2f_ref(xs[i]));
                    if (ua > worst_avx) worst_avx = ua;
                }
                nx = 0;
            }
#endif
        }
    }
    CHECK(worst <= 2.0, "vexp2f within 2 ulp on [-126, 128) (worst %.2f ulp at %.9g)", worst, worst_x);
    for (float x = -149.4f; x < -126.0f; x += 0.01f) { // denormal results: the last place is 2^-149
        double d = fabs((double)vexp2f(x) - vexp2f_ref(x)) / ldexp(1.0, -149);
        if (d > worst_den) worst_den = d;
    }
    CHECK(worst_den <= 1.0, "vexp2f's denormal results within 1 denormal step (worst %.2f)", worst_den);
    CHECK(vexp2f(-151.0f) == 0.0f && vexp2f(-INFINITY) == 0.0f && isinf(vexp2f(128.0f)) && isinf(vexp2f(1000.0f)) &&
          vexp2f(0.0f) == 1.0f && vexp2f(-3.0f) == 0.125f && isnan(vexp2f(NAN)),
          "vexp2f: 2^-151 and 2^-inf are 0, 2^128 inf, 2^0 = 1, 2^-3 = 1/8, NaN stays NaN");
#if defined(__AVX512F__)
    CHECK(worst_avx <= 2.0, "vexp2f_avx512 within 2 ulp on [-126, 128) (worst %.2f ulp)", worst_avx);
    float sx[16] = {-151.0f, -INFINITY, 128.0f, 1000.0f, 0.0f, -3.0f, NAN, -149.0f, 10.5f, -0.25f, 1.0f, 2.0f,
                    -126.0f, -140.3f, 127.9f, 0.5f};
    float ys[16];
    _mm512_storeu_ps(ys, vexp2f_avx512(_mm512_loadu_ps(sx)));
    int same = 1;
    for (int i = 0; i < 16; i++) {
        float want = vexp2f(sx[i]);
        if (!(ys[i] == want || (isnan(ys[i]) && isnan(want)))) same = 0; // the same steps: the same floats
    }
    CHECK(same && ys[0] == 0.0f && ys[1] == 0.0f && isinf(ys[2]) && isnan(ys[6]) && ys[7] == ldexpf(1.0f, -149),
          "vexp2f_avx512: limits, -inf, NaN, denormals as vexp2f");
#endif
}

int main(int argc, char **argv) {
    test_soft_crossentropy(argc > 1 ? argv[1] : "dev/testdata/softce_ref.bin");
    test_layernorm_recompute();
    test_gelu_backward();
    // every 64th float in [-87.33, 88.37]: ~60 million values, all binades
    double worst = 0.0;
    float worst_x = 0.0f;
    uint32_t lo_bits, hi_bits;
    float lo = -87.33f, hi = 88.37f;
    memcpy(&lo_bits, &lo, 4);
    memcpy(&hi_bits, &hi, 4);
    for (uint32_t b = 0x80000000u; b <= lo_bits; b += 64) { // negative values, -0 down to lo
        float x;
        memcpy(&x, &b, 4);
        double u = ulps(vexpf(x), vexpf_ref(x));
        if (u > worst) { worst = u; worst_x = x; }
    }
    for (uint32_t b = 0; b <= hi_bits; b += 64) { // positive values, 0 up to hi
        float x;
        memcpy(&x, &b, 4);
        double u = ulps(vexpf(x), vexpf_ref(x));
        if (u > worst) { worst = u; worst_x = x; }
    }
    CHECK(worst <= 2.0, "vexpf within 2 ulp on [-87.33, 88.37] (worst %.2f ulp at %.9g)", worst, worst_x);
    CHECK(vexpf(-100.0f) == 0.0f && isinf(vexpf(100.0f)) && vexpf(0.0f) == 1.0f, "vexpf: underflow 0, overflow inf, e^0 = 1");
    CHECK(isnan(vexpf(NAN)) && isnan(vtanhf(NAN)), "NaN in, NaN out");
    test_vexp2f();
    double worst_t = 0.0;
    for (int i = -2000000; i <= 2000000; i++) {
        float x = (float)i * 1e-5f; // [-20, 20]
        double d = fabs((double)vtanhf(x) - vtanhf_ref(x));
        if (d > worst_t) worst_t = d;
    }
    CHECK(worst_t <= 2e-7, "vtanhf within 2e-7 absolute on [-20, 20] (worst %.2e)", worst_t);
    CHECK(vtanhf(50.0f) == 1.0f && vtanhf(-50.0f) == -1.0f, "vtanhf saturates at +-1");
    // erf: every 16th float in [-6, 6] (both branches, the seams at 1.2 and 3.92)
    double worst_e = 0.0;
    float worst_ex = 0.0f;
    float six = 6.0f;
    uint32_t six_bits;
    memcpy(&six_bits, &six, 4);
    for (uint32_t b = 0; b <= six_bits; b += 16) {
        float x;
        memcpy(&x, &b, 4);
        for (int sign = 0; sign < 2; sign++, x = -x) {
            double d = fabs((double)verff(x) - verff_ref(x));
            if (d > worst_e) { worst_e = d; worst_ex = x; }
        }
    }
    CHECK(worst_e <= 2e-7, "verff within 2e-7 absolute on [-6, 6] (worst %.2e at %.9g)", worst_e, worst_ex);
    CHECK(verff(0.0f) == 0.0f && verff(10.0f) == 1.0f && verff(-10.0f) == -1.0f && isnan(verff(NAN)),
          "verff: erf(0) = 0, saturates at +-1, NaN stays NaN");
    if (failures) { printf("test_nn: %d FAILED\n", failures); return 1; }
    printf("test_nn: all passed\n");
    return 0;
}
