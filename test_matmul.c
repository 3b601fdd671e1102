// Tests for nn/matmul.c against a naive double-precision reference: sgemm,
// the fast linear layer and its plain-loop definition (matmul_forward_ref,
// matmul_backward_ref) each against the sums in double.
//
// Every element is checked with a tolerance relative to the size of the sum
// that produced it: |got - want| <= TOL * (|alpha| sum_k |a_ik b_kj| + |beta c_ij| + |bias_j|).
// Rounding errors of a K-term fp32 sum with random signs are about
// 2^-24 * sum|a b| / 5, so TOL = 32 * 2^-24 leaves a wide margin, while one
// missing or doubled term (about sum|a b| / K) still fails for any K < 500k.
//
//   ./test_matmul            all tests (a few seconds)
#include "nn/matmul.h"

#include "common/bf16.h"
#include "common/rng.h"
#include "common/utils.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOL (32.0 / 16777216.0)

static int failures = 0;
static Rng rng;

static float *random_floats(size_t n) {
    float *x = malloc_or_fail(n * sizeof(float), "test data");
    for (size_t i = 0; i < n; i++) x[i] = 2.0f * rng_uniform(&rng) - 1.0f;
    return x;
}

static float *copy_floats(const float *x, size_t n) {
    float *y = malloc_or_fail(n * sizeof(float), "test copy");
    memcpy(y, x, n * sizeof(float));
    return y;
}

// op(X)[r,c] of a row-major matrix stored with leading dimension ld
static double elem(const float *X, int ld, int trans, int r, int c) {
    return trans ? X[(size_t)c * ld + r] : X[(size_t)r * ld + c];
}

// Compare C (after sgemm) with the reference computed from the inputs and
// the original C0. Elements outside the M x N view (the padding of a leading
// dimension, and GUARD_ROWS rows after the last) must be untouched.
#define GUARD_ROWS 16
static void check_sgemm(const char *label, int tA, int tB, int M, int N, int K, float alpha,
                        const float *A, int lda, const float *B, int ldb, float beta,
                        const float *C0, const float *C, int ldc) {
    int bad = 0;
    double worst = 0.0;
    for (int i = 0; i < M + GUARD_ROWS && bad < 3; i++) {
        for (int j = 0; j < ldc; j++) {
            size_t at = (size_t)i * ldc + j;
            if (i >= M || j >= N) {  // padding: bitwise unchanged (NaN stays NaN)
                if (memcmp(&C[at], &C0[at], sizeof(float)) != 0) {
                    printf("FAIL %s: wrote outside the view at [%d,%d]\n", label, i, j);
                    bad++;
                }
                continue;
            }
            double sum = 0.0, mag = 0.0;
            for (int k = 0; k < K; k++) {
                double p = elem(A, lda, tA, i, k) * elem(B, ldb, tB, k, j);
                sum += p;
                mag += fabs(p);
            }
            double want = alpha * sum, scale = fabs(alpha) * mag;
            if (beta != 0.0f) {
                want += (double)beta * C0[at];
                scale += fabs((double)beta * C0[at]);
            }
            double err = fabs((double)C[at] - want);
            if (!(err <= TOL * scale + 1e-30)) {
                if (bad < 3)
                    printf("FAIL %s: C[%d,%d] = %.9g, want %.9g (err %.3g, allowed %.3g)\n", label, i, j,
                           C[at], want, err, TOL * scale);
                bad++;
            }
            if (scale > 0 && err / scale > worst) worst = err / scale;
        }
    }
    if (bad) failures++;
}

// one sgemm call on fresh random data, views with the given leading dimensions
static void test_sgemm_ld(int tA, int tB, int M, int N, int K, float alpha, float beta, int lda, int ldb, int ldc) {
    int ar = tA ? K : M, br = tB ? N : K;  // stored rows
    float *A = random_floats((size_t)ar * lda + 1);
    float *B = random_floats((size_t)br * ldb + 1);
    size_t csize = (size_t)(M + GUARD_ROWS) * ldc;
    float *C0 = random_floats(csize);
    for (size_t at = 0; at < csize; at++)  // garbage that must not be read or overwritten
        if (beta == 0.0f || at / ldc >= (size_t)M || at % ldc >= (size_t)N) C0[at] = NAN;
    float *C = copy_floats(C0, csize);
    sgemm(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    char label[160];
    snprintf(label, sizeof label, "sgemm tA=%d tB=%d M=%d N=%d K=%d alpha=%g beta=%g lda=%d ldb=%d ldc=%d", tA, tB,
             M, N, K, alpha, beta, lda, ldb, ldc);
    check_sgemm(label, tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C0, C, ldc);
    free(A), free(B), free(C0), free(C);
}

// the same with leading dimensions padded by pad floats
static void test_sgemm_case(int tA, int tB, int M, int N, int K, float alpha, float beta, int pad) {
    int ac = tA ? M : K, bc = tB ? K : N;  // stored columns
    int lda = ac + pad, ldb = bc + pad, ldc = N + pad;
    test_sgemm_ld(tA, tB, M, N, K, alpha, beta, lda > 1 ? lda : 1, ldb > 1 ? ldb : 1, ldc > 1 ? ldc : 1);
}

static void test_sgemm(void) {
    // sizes around the blocking constants (MR 6, NR 64, KC 512, MC 126,
    // NC 768), ones, and odd primes
    static const int shapes[][3] = {
        {1, 1, 1},     {1, 7, 13},    {13, 1, 7},     {7, 13, 1},     {2, 3, 5},      {6, 64, 16},
        {7, 65, 17},   {5, 63, 31},   {17, 97, 511},  {23, 53, 512},  {11, 101, 513}, {125, 50, 37},
        {127, 67, 19}, {131, 770, 3}, {5, 769, 11},   {61, 1, 300},   {1, 131, 300},  {1, 1000, 1031},
        {67, 71, 517}, {3, 2, 1031},  {253, 129, 40}, {12, 767, 9},
        // panels of all N (one A block, or one K block: the few-rows
        // backward) with a partial last sliver, and NC-wide panels again
        {64, 1700, 700}, {200, 833, 64}, {130, 800, 600},
        // one K block and a B too wide to stay in L2: panels of B (6 x 384 and 196 wide)
        {100, 2500, 300},
    };
    static const float ab[][2] = {{1, 0}, {1, 1}, {0.5f, -2}, {-1.5f, 0}, {0, 0.25f}, {0, 0}};
    int n = sizeof shapes / sizeof shapes[0];
    int case_no = 0;
    for (int s = 0; s < n; s++)
        for (int tA = 0; tA < 2; tA++)
            for (int tB = 0; tB < 2; tB++) {
                // every shape with alpha 1 / beta 0 and 1; the rest rotate
                // through the other alpha/beta pairs and leading-dim pads
                for (int c = 0; c < 2; c++)
                    test_sgemm_case(tA, tB, shapes[s][0], shapes[s][1], shapes[s][2], ab[c][0], ab[c][1], 0);
                int c = 2 + case_no % 4;
                test_sgemm_case(tA, tB, shapes[s][0], shapes[s][1], shapes[s][2], ab[c][0], ab[c][1],
                                1 + case_no % 5);
                case_no++;
            }
    // leading dimensions of 1024 and 2048 floats (4 and 8 KiB): an A^T or a B
    // with such a stride is packed instead of read in place (nn/matmul.c)
    static const int aliased[][4] = {
        {131, 200, 700, 1024}, {300, 770, 600, 1024}, {7, 1000, 1024, 1024}, {130, 64, 40, 1024},
        {6, 64, 513, 2048},    {127, 129, 1031, 2048},
    };
    for (int s = 0; s < (int)(sizeof aliased / sizeof aliased[0]); s++)
        for (int tA = 0; tA < 2; tA++)
            for (int tB = 0; tB < 2; tB++)
                for (int c = 0; c < 3; c++) {
                    const int *a = aliased[s];
                    test_sgemm_ld(tA, tB, a[0], a[1], a[2], ab[c][0], ab[c][1], a[3], a[3], a[3]);
                }
    // K == 0 and empty matrices
    test_sgemm_case(0, 0, 5, 6, 0, 1.0f, 0.0f, 0);
    test_sgemm_case(1, 1, 5, 6, 0, 2.0f, 3.0f, 2);
    test_sgemm_case(0, 1, 0, 6, 4, 1.0f, 1.0f, 0);
    test_sgemm_case(0, 1, 6, 0, 4, 1.0f, 1.0f, 1);
    printf("sgemm: %d shapes x 4 transposes x 3 alpha/beta cases done, and %d with leading dimensions of 4 and 8 KiB\n",
           n, (int)(sizeof aliased / sizeof aliased[0]));
}

// ---------------------------------------------------------------------------
// the linear layer, in double

static void ref_forward(double *out, const float *inp, const float *w, const float *bias, int BT, int C,
                        int OC, double *scale) {
    for (int b = 0; b < BT; b++)
        for (int o = 0; o < OC; o++) {
            double s = bias ? bias[o] : 0.0, m = bias ? fabs(bias[o]) : 0.0;
            for (int c = 0; c < C; c++) {
                double p = (double)inp[(size_t)b * C + c] * w[(size_t)o * C + c];
                s += p, m += fabs(p);
            }
            out[(size_t)b * OC + o] = s;
            scale[(size_t)b * OC + o] = m;
        }
}

// want[M,N] = start[M,N] + op(X)[M,K] @ op(Y)[K,N] in double, and scale the
// sum of the magnitudes of its terms (the gradients' references)
static void ref_accumulate(double *want, double *scale, const float *start, int M, int N, int K,
                           const float *X, int ldx, int tX, const float *Y, int ldy, int tY) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = start[(size_t)i * N + j], m = fabs(s);
            for (int k = 0; k < K; k++) {
                double p = elem(X, ldx, tX, i, k) * elem(Y, ldy, tY, k, j);
                s += p, m += fabs(p);
            }
            want[(size_t)i * N + j] = s, scale[(size_t)i * N + j] = m;
        }
}

static int compare(const char *label, const float *got, const double *want, const double *scale, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
        if (!(err <= TOL * scale[i] + 1e-30)) {
            printf("FAIL %s: [%zu] = %.9g, want %.9g (err %.3g, allowed %.3g)\n", label, i, got[i], want[i], err,
                   TOL * scale[i]);
            failures++;
            return 0;
        }
    }
    return 1;
}

static void test_forward(int BT, int C, int OC, int with_bias) {
    float *inp = random_floats((size_t)BT * C), *w = random_floats((size_t)OC * C);
    float *bias = with_bias ? random_floats(OC) : NULL;
    float *out = malloc_or_fail((size_t)BT * OC * sizeof(float), "out");
    for (size_t i = 0; i < (size_t)BT * OC; i++) out[i] = NAN;  // must be overwritten
    double *want = malloc_or_fail((size_t)BT * OC * sizeof(double), "want");
    double *scale = malloc_or_fail((size_t)BT * OC * sizeof(double), "scale");
    float *out_ref = copy_floats(out, (size_t)BT * OC);
    matmul_forward(out, inp, w, bias, BT, C, OC);
    matmul_forward_ref(out_ref, inp, w, bias, BT, C, OC);
    ref_forward(want, inp, w, bias, BT, C, OC, scale);
    char label[100];
    snprintf(label, sizeof label, "matmul_forward BT=%d C=%d OC=%d bias=%d", BT, C, OC, with_bias);
    compare(label, out, want, scale, (size_t)BT * OC);
    snprintf(label, sizeof label, "matmul_forward_ref BT=%d C=%d OC=%d bias=%d", BT, C, OC, with_bias);
    compare(label, out_ref, want, scale, (size_t)BT * OC);
    free(inp), free(w), free(bias), free(out), free(out_ref), free(want), free(scale);
}

// gradients start from random values: the backward must add to them
static void test_backward(int BT, int C, int OC, int with_dinp, int with_dbias) {
    float *inp = random_floats((size_t)BT * C), *w = random_floats((size_t)OC * C);
    float *dout = random_floats((size_t)BT * OC);
    float *dinp0 = random_floats((size_t)BT * C), *dw0 = random_floats((size_t)OC * C);
    float *db0 = random_floats(OC);
    float *dinp = copy_floats(dinp0, (size_t)BT * C), *dw = copy_floats(dw0, (size_t)OC * C);
    float *db = copy_floats(db0, OC);
    float *dinp_ref = copy_floats(dinp0, (size_t)BT * C), *dw_ref = copy_floats(dw0, (size_t)OC * C);
    float *db_ref = copy_floats(db0, OC);
    matmul_backward(with_dinp ? dinp : NULL, dw, with_dbias ? db : NULL, dout, inp, w, BT, C, OC);
    matmul_backward_ref(with_dinp ? dinp_ref : NULL, dw_ref, with_dbias ? db_ref : NULL, dout, inp, w, BT, C, OC);

    size_t big = (size_t)(BT > OC ? BT : OC) * C;
    double *want = malloc_or_fail(big * sizeof(double), "want");
    double *scale = malloc_or_fail(big * sizeof(double), "scale");
    char label[120];
    if (with_dinp) {  // dinp0 + dout @ weight
        ref_accumulate(want, scale, dinp0, BT, C, OC, dout, OC, 0, w, C, 0);
        snprintf(label, sizeof label, "matmul_backward dinp BT=%d C=%d OC=%d", BT, C, OC);
        compare(label, dinp, want, scale, (size_t)BT * C);
        snprintf(label, sizeof label, "matmul_backward_ref dinp BT=%d C=%d OC=%d", BT, C, OC);
        compare(label, dinp_ref, want, scale, (size_t)BT * C);
    } else if (memcmp(dinp, dinp0, (size_t)BT * C * sizeof(float)) != 0 ||
               memcmp(dinp_ref, dinp0, (size_t)BT * C * sizeof(float)) != 0) {
        printf("FAIL matmul_backward(_ref) touched dinp's buffer although NULL was passed\n");
        failures++;
    }
    ref_accumulate(want, scale, dw0, OC, C, BT, dout, OC, 1, inp, C, 0);  // dweight0 + dout^T @ inp
    snprintf(label, sizeof label, "matmul_backward dweight BT=%d C=%d OC=%d", BT, C, OC);
    compare(label, dw, want, scale, (size_t)OC * C);
    snprintf(label, sizeof label, "matmul_backward_ref dweight BT=%d C=%d OC=%d", BT, C, OC);
    compare(label, dw_ref, want, scale, (size_t)OC * C);
    if (with_dbias) {
        for (int o = 0; o < OC; o++) {
            double s = db0[o], m = fabs(s);
            for (int b = 0; b < BT; b++) s += dout[(size_t)b * OC + o], m += fabs(dout[(size_t)b * OC + o]);
            want[o] = s, scale[o] = m;
        }
        snprintf(label, sizeof label, "matmul_backward dbias BT=%d C=%d OC=%d", BT, C, OC);
        compare(label, db, want, scale, OC);
        snprintf(label, sizeof label, "matmul_backward_ref dbias BT=%d C=%d OC=%d", BT, C, OC);
        compare(label, db_ref, want, scale, OC);
    }
    free(inp), free(w), free(dout), free(dinp0), free(dw0), free(db0), free(dinp), free(dw), free(db);
    free(dinp_ref), free(dw_ref), free(db_ref);
    free(want), free(scale);
}

static void test_layer(void) {
    static const int shapes[][3] = {
        {1, 1, 1}, {1, 64, 192}, {1, 97, 61}, {3, 5, 7}, {17, 32, 96}, {64, 128, 10}, {100, 129, 257},
        {257, 64, 48}, {50, 300, 1}, {1, 768, 2304}, {64, 768, 2304},  // the last: a GPT-2 attention projection
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int BT = shapes[s][0], C = shapes[s][1], OC = shapes[s][2];
        test_forward(BT, C, OC, 1);
        test_forward(BT, C, OC, 0);
        test_backward(BT, C, OC, 1, 1);
        if (s % 3 == 0) test_backward(BT, C, OC, 0, 0);
    }
    printf("matmul_forward / matmul_backward and their _ref definitions: %zu shapes done\n", sizeof shapes / sizeof shapes[0]);
}

// matmul_backward_into: a written gradient (dinp = dout @ weight, dweight =
// dout^T @ inp) whatever the buffer held (NaN here), against the
// double-precision sums; and bit for bit matmul_backward adding into a cleared
// buffer, which the trainers rely on (a fused update's results must equal the
// normal mode's, a written input gradient the cleared one's); one not written
// and dbias still add.
static void test_backward_into(int BT, int C, int OC, int write_dinp, int write_dweight) {
    float *inp = random_floats((size_t)BT * C), *w = random_floats((size_t)OC * C);
    float *dout = random_floats((size_t)BT * OC);
    float *dinp0 = random_floats((size_t)BT * C), *db0 = random_floats(OC);
    float *dinp_w = copy_floats(dinp0, (size_t)BT * C), *db_w = copy_floats(db0, OC);
    float *dinp_a = copy_floats(dinp0, (size_t)BT * C), *db_a = copy_floats(db0, OC);
    // 64-byte aligned, as the trainers' gradients: the condition for non-temporal stores
    float *dw_w = alloc_big_floats((size_t)OC * C, "dw_w"), *dw_a = alloc_big_floats((size_t)OC * C, "dw_a");
    float *zeros = calloc_or_fail((size_t)OC * C > (size_t)BT * C ? (size_t)OC * C : (size_t)BT * C, sizeof(float), "zeros");
    for (size_t i = 0; i < (size_t)OC * C; i++) dw_w[i] = write_dweight ? NAN : 0.0f, dw_a[i] = 0.0f;
    if (write_dinp)
        for (size_t i = 0; i < (size_t)BT * C; i++) dinp_w[i] = NAN, dinp_a[i] = 0.0f;
    matmul_backward_into(dinp_w, dw_w, db_w, dout, inp, w, BT, C, OC, write_dinp, write_dweight);
    matmul_backward(dinp_a, dw_a, db_a, dout, inp, w, BT, C, OC);
    size_t most = (size_t)OC * C > (size_t)BT * C ? (size_t)OC * C : (size_t)BT * C;
    double *want = malloc_or_fail(most * sizeof(double), "want");
    double *scale = malloc_or_fail(most * sizeof(double), "scale");
    char label[120];
    if (write_dweight) {
        ref_accumulate(want, scale, zeros, OC, C, BT, dout, OC, 1, inp, C, 0);  // dout^T @ inp
        snprintf(label, sizeof label, "matmul_backward_into dweight written BT=%d C=%d OC=%d", BT, C, OC);
        compare(label, dw_w, want, scale, (size_t)OC * C);
    }
    if (write_dinp) {
        ref_accumulate(want, scale, zeros, BT, C, OC, dout, OC, 0, w, C, 0);  // dout @ weight
        snprintf(label, sizeof label, "matmul_backward_into dinp written BT=%d C=%d OC=%d", BT, C, OC);
        compare(label, dinp_w, want, scale, (size_t)BT * C);
    }
    if (memcmp(dw_w, dw_a, (size_t)OC * C * sizeof(float)) != 0 ||
        memcmp(dinp_w, dinp_a, (size_t)BT * C * sizeof(float)) != 0 || memcmp(db_w, db_a, OC * sizeof(float)) != 0) {
        printf("FAIL matmul_backward_into BT=%d C=%d OC=%d write_dinp %d write_dweight %d: not the bits of "
               "matmul_backward into a cleared buffer\n", BT, C, OC, write_dinp, write_dweight);
        failures++;
    }
    free(inp), free(w), free(dout), free(dinp0), free(db0), free(dinp_w), free(db_w), free(dinp_a), free(db_a);
    free_big(dw_w), free_big(dw_a), free(zeros), free(want), free(scale);
}

static void test_layer_into(void) {
    // odd sizes, a tile's edges, and GPT-2 XL's few-rows shapes (B*T 64, C 1600, 3C; and 4C, whose
    // weight gradient, bigger than the L3, is written with non-temporal stores; 1616 x 5300 so too,
    // with a partial last column tile and row tile); and XL's MLP projection, whose 64 x 6400
    // input is read in panels (1 thread: 4 of 1600 columns); and 512 x 300 -> 700, whose weight
    // gradient has the LM head's order (one K block, panels of 192 and 108 columns, more rows
    // than columns: each A block through every panel)
    static const int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 32, 96}, {100, 129, 257}, {64, 1600, 4800},
                                    {64, 1600, 6400}, {61, 1616, 5300}, {64, 6400, 1600}, {512, 300, 700}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int mode = 1; mode < 4; mode++)  // dinp written, dweight written, both
            test_backward_into(shapes[s][0], shapes[s][1], shapes[s][2], mode & 1, mode >> 1);
    printf("matmul_backward_into: %zu shapes x 3 modes done\n", sizeof shapes / sizeof shapes[0]);
}

// ---------------------------------------------------------------------------
// 1, 2 and 3 threads must give bitwise identical results (3 oversubscribes
// this 2-core machine but exercises an uneven split of C)

static void run_layer(int threads, int BT, int C, int OC, const float *inp, const float *w, const float *bias,
                      const float *dout, float *out, float *dinp, float *dw, float *db) {
    omp_set_num_threads(threads);
    memset(dinp, 0, (size_t)BT * C * sizeof(float));
    memset(dw, 0, (size_t)OC * C * sizeof(float));
    memset(db, 0, (size_t)OC * sizeof(float));
    matmul_forward(out, inp, w, bias, BT, C, OC);
    matmul_backward(dinp, dw, db, dout, inp, w, BT, C, OC);
}

static void test_determinism(void) {
    // shapes that split over M, over N, a matrix-vector product, and K over
    // several KC blocks
    static const int shapes[][3] = {{256, 768, 2304}, {130, 600, 1000}, {1, 768, 3000}, {2000, 64, 200}, {64, 1100, 2000},
                                    {64, 1600, 1600}, {64, 6400, 1600}};
    static const int threads[] = {1, 2, 3};
    int maxt = omp_get_max_threads(), failures_before = failures;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int BT = shapes[s][0], C = shapes[s][1], OC = shapes[s][2];
        float *inp = random_floats((size_t)BT * C), *w = random_floats((size_t)OC * C);
        float *bias = random_floats(OC), *dout = random_floats((size_t)BT * OC);
        float *out[3], *dinp[3], *dw[3], *db[3];
        for (int t = 0; t < 3; t++) {
            out[t] = malloc_or_fail((size_t)BT * OC * sizeof(float), "out");
            dinp[t] = malloc_or_fail((size_t)BT * C * sizeof(float), "dinp");
            dw[t] = malloc_or_fail((size_t)OC * C * sizeof(float), "dw");
            db[t] = malloc_or_fail((size_t)OC * sizeof(float), "db");
            run_layer(threads[t], BT, C, OC, inp, w, bias, dout, out[t], dinp[t], dw[t], db[t]);
        }
        for (int t = 1; t < 3; t++)
            if (memcmp(out[0], out[t], (size_t)BT * OC * sizeof(float)) ||
                memcmp(dinp[0], dinp[t], (size_t)BT * C * sizeof(float)) ||
                memcmp(dw[0], dw[t], (size_t)OC * C * sizeof(float)) || memcmp(db[0], db[t], OC * sizeof(float))) {
                printf("FAIL determinism BT=%d C=%d OC=%d: 1 and %d threads differ\n", BT, C, OC, threads[t]);
                failures++;
            }
        for (int t = 0; t < 3; t++) free(out[t]), free(dinp[t]), free(dw[t]), free(db[t]);
        free(inp), free(w), free(bias), free(dout);
    }
    omp_set_num_threads(maxt);
    if (failures == failures_before)
        printf("determinism: 1, 2 and 3 threads bitwise identical on %zu shapes\n", sizeof shapes / sizeof shapes[0]);
}

// ---------------------------------------------------------------------------
// bad arguments: one line on stderr and exit status 1, no crash

static void expect_error(const char *label, int M, int N, int K, int lda, int ldb, int ldc) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) fail("fork failed");
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stderr)) _exit(3);
        float x[64] = {0};
        sgemm(0, 0, M, N, K, 1.0f, x, lda, x, ldb, 0.0f, x, ldc);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 1) {
        printf("FAIL bad input (%s) was not rejected with exit status 1\n", label);
        failures++;
    }
}

static void test_bad_input(void) {
    expect_error("negative M", -1, 2, 2, 2, 2, 2);
    expect_error("negative K", 2, 2, -3, 2, 2, 2);
    expect_error("lda < K", 2, 2, 4, 3, 2, 2);
    expect_error("ldc < N", 2, 4, 2, 2, 4, 3);
    printf("bad input: rejected\n");
}

// matmul_forward with few rows (BT <= 64) computes out^T = weight @ inp^T in
// chunks; it must give the bits of the usual product out = inp @ weight^T
// (sgemm with op(B) = B^T, the bias standing in C with beta 1), also when C
// spans several KC blocks and OC several chunks with an uneven last one
static void test_few_rows(void) {
    static const int shapes[][3] = {{2, 5, 7}, {17, 1100, 900}, {64, 600, 1700}, {63, 1600, 96}, {64, 64, 50304},
                                    {64, 700, 1600}, {64, 300, 6400}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int BT = shapes[s][0], C = shapes[s][1], OC = shapes[s][2];
        float *inp = random_floats((size_t)BT * C), *w = random_floats((size_t)OC * C), *bias = random_floats(OC);
        float *out = malloc_or_fail((size_t)BT * OC * sizeof(float), "out");
        float *want = malloc_or_fail((size_t)BT * OC * sizeof(float), "want");
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            matmul_forward(out, inp, w, with_bias ? bias : NULL, BT, C, OC);
            for (int i = 0; i < BT; i++)
                for (int o = 0; o < OC; o++) want[(size_t)i * OC + o] = with_bias ? bias[o] : NAN;
            sgemm(0, 1, BT, OC, C, 1.0f, inp, C, w, C, with_bias ? 1.0f : 0.0f, want, OC);
            int same = memcmp(out, want, (size_t)BT * OC * sizeof(float)) == 0;
            printf("%-4s matmul_forward BT=%d C=%d OC=%d bias=%d: the few-rows path = sgemm bit for bit\n",
                   same ? "ok" : "FAIL", BT, C, OC, with_bias);
            failures += !same;
        }
        free(inp); free(w); free(bias); free(out); free(want);
    }
}

// ---------------------------------------------------------------------------
// bf16 products: sgemm_bf16 against sgemm_bf16_ref, its definition in double.
// Both round the same inputs to bf16 and the products are exact, so what
// remains is the fp32 summation error: the same TOL, relative to
// sum_k |bf16(a) bf16(b)|.

static void test_sgemm_bf16_case(int tA, int tB, int M, int N, int K, float alpha, float beta, int pad) {
    int ar = tA ? K : M, ac = tA ? M : K, br = tB ? N : K, bc = tB ? K : N;
    int lda = ac + pad > 0 ? ac + pad : 1, ldb = bc + pad > 0 ? bc + pad : 1, ldc = N + pad > 0 ? N + pad : 1;
    float *A = random_floats((size_t)ar * lda + 1), *B = random_floats((size_t)br * ldb + 1);
    size_t csize = (size_t)(M + GUARD_ROWS) * ldc;
    float *C0 = random_floats(csize);
    for (size_t at = 0; at < csize; at++)
        if (beta == 0.0f || at / ldc >= (size_t)M || at % ldc >= (size_t)N) C0[at] = NAN;
    float *C = copy_floats(C0, csize), *R = copy_floats(C0, csize);
    sgemm_bf16(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    sgemm_bf16_ref(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, R, ldc);
    int bad = 0;
    for (int i = 0; i < M + GUARD_ROWS; i++)
        for (int j = 0; j < ldc; j++) {
            size_t at = (size_t)i * ldc + j;
            if (i >= M || j >= N) {
                if (memcmp(&C[at], &C0[at], sizeof(float))) bad++;
                continue;
            }
            double mag = 0.0;
            for (int k = 0; k < K; k++)
                mag += fabs((double)round_to_bf16((float)elem(A, lda, tA, i, k)) * round_to_bf16((float)elem(B, ldb, tB, k, j)));
            double scale = fabs(alpha) * mag + (beta != 0.0f ? fabs((double)beta * C0[at]) : 0.0);
            double err = fabs((double)C[at] - R[at]);
            if (!(err <= TOL * scale + 1e-30)) {
                if (bad < 3)
                    printf("FAIL sgemm_bf16 tA=%d tB=%d M=%d N=%d K=%d alpha=%g beta=%g pad=%d: C[%d,%d] = %.9g, "
                           "the definition %.9g (err %.3g, allowed %.3g)\n",
                           tA, tB, M, N, K, alpha, beta, pad, i, j, C[at], R[at], err, TOL * scale);
                bad++;
            }
        }
    if (bad) failures++;
    free(A), free(B), free(C0), free(C), free(R);
}

static void test_sgemm_bf16(void) {
    // odd K (a last k without a partner), K over several KC blocks, edges of
    // MR, NR, MC, NC, the bf16 nest's chunks of rows and panels of columns,
    // and a matrix-vector product (no gemv shortcut here)
    static const int shapes[][3] = {
        {1, 1, 1},   {2, 3, 5},     {6, 64, 16},    {7, 65, 17},   {5, 63, 31},    {17, 97, 33},
        {23, 53, 512}, {11, 101, 513}, {127, 67, 19}, {131, 770, 3}, {1, 1000, 1031}, {67, 71, 1025},
        {253, 129, 40}, {12, 767, 64}, {130, 800, 95},
            // past one chunk of A blocks (4158 rows) and one panel of B (1536 columns), on each of 2 threads
        {8500, 70, 37}, {40, 3300, 66},
            // on 2 threads, an operand both convert a part of (gemm_block_bf16's shared one): A's 3 row
            // blocks split 1 + 2, B's 3 slivers split 1 + 2, A's one block packed by one thread alone;
            // odd K over 2 and 3 K blocks; B shared, each thread's 650 rows in a 504-row chunk (the
            // shared-B chunk) and a partial one, over 3 K blocks
        {300, 1000, 601}, {700, 150, 1301}, {70, 4200, 600}, {1300, 130, 1100},
    };
    static const float ab[][2] = {{1, 0}, {1, 1}, {0.5f, -2}, {-1.5f, 0}};
    int n = sizeof shapes / sizeof shapes[0], case_no = 0;
    for (int s = 0; s < n; s++)
        for (int tA = 0; tA < 2; tA++)
            for (int tB = 0; tB < 2; tB++) {
                test_sgemm_bf16_case(tA, tB, shapes[s][0], shapes[s][1], shapes[s][2], 1.0f, 0.0f, 0);
                int c = 1 + case_no % 3;
                test_sgemm_bf16_case(tA, tB, shapes[s][0], shapes[s][1], shapes[s][2], ab[c][0], ab[c][1],
                                     1 + case_no % 5);
                case_no++;
            }
    printf("sgemm_bf16: %d shapes x 4 transposes x 2 alpha/beta cases match the definition\n", n);
}

// Values worked out by hand. bf16 keeps 7 bits after the point, so near 1 its
// step is 2^-7: 1 + 3*2^-9 rounds up to 1 + 2^-7; the ties 1 + 2^-8 and
// 1 + 3*2^-8 go to the even neighbours 1 and 1 + 2^-6. A row of 10 such values
// times a column of ones sums to exactly 10 times the rounded value (fp32
// would give 10.05859375, 10.0390625, 10.1171875).
static void test_bf16_by_hand(void) {
    const float a_val[4] = {1.0f + 3.0f / 512, 1.0f + 1.0f / 256, 1.0f + 3.0f / 256, -(1.0f + 3.0f / 512)};
    const float want[4] = {10.078125f, 10.0f, 10.15625f, -10.078125f};
    enum { M = 4, N = 70, K = 10 };
    float A[M * K], B[K * N], C[M * N], R[M * N];
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++) A[i * K + k] = a_val[i];
    for (int i = 0; i < K * N; i++) B[i] = 1.0f;
    sgemm_bf16(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
    sgemm_bf16_ref(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, R, N);
    int bad = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) bad += C[i * N + j] != want[i] || R[i * N + j] != want[i];
    printf("%-4s sgemm_bf16 and sgemm_bf16_ref on hand-computed roundings (nearest, ties to even)\n", bad ? "FAIL" : "ok");
    failures += bad != 0;
}

// In a PRECISION=bf16 build the linear layer is sgemm_bf16's product: out
// equals sgemm_bf16 with the bias in C (beta 1) bit for bit, the input and
// weight gradients equal sgemm_bf16 adding into them, and the bias gradient is
// the fp32 build's column sums (checked in double as in test_backward).
static void test_layer_bf16(int BT, int C, int OC) {
    size_t nin = (size_t)BT * C, nw = (size_t)OC * C, nout = (size_t)BT * OC;
    float *inp = random_floats(nin), *w = random_floats(nw), *bias = random_floats(OC), *dout = random_floats(nout);
    float *out = malloc_or_fail(nout * sizeof(float), "out"), *want = malloc_or_fail(nout * sizeof(float), "want");
    matmul_forward(out, inp, w, bias, BT, C, OC);
    for (int i = 0; i < BT; i++) memcpy(want + (size_t)i * OC, bias, OC * sizeof(float));
    sgemm_bf16(0, 1, BT, OC, C, 1.0f, inp, C, w, C, 1.0f, want, OC);
    int ok_out = memcmp(out, want, nout * sizeof(float)) == 0;

    float *dinp = random_floats(nin), *dw = random_floats(nw), *db = random_floats(OC);
    float *dinp_want = copy_floats(dinp, nin), *dw_want = copy_floats(dw, nw), *db0 = copy_floats(db, OC);
    matmul_backward(dinp, dw, db, dout, inp, w, BT, C, OC);
    sgemm_bf16(0, 0, BT, C, OC, 1.0f, dout, OC, w, C, 1.0f, dinp_want, C);
    sgemm_bf16(1, 0, OC, C, BT, 1.0f, dout, OC, inp, C, 1.0f, dw_want, C);
    int ok_dinp = memcmp(dinp, dinp_want, nin * sizeof(float)) == 0;
    int ok_dw = memcmp(dw, dw_want, nw * sizeof(float)) == 0;
    int ok_db = 1;
    for (int o = 0; o < OC; o++) {
        double s = db0[o], m = fabs(db0[o]);
        for (int b = 0; b < BT; b++) s += dout[(size_t)b * OC + o], m += fabs(dout[(size_t)b * OC + o]);
        if (!(fabs(db[o] - s) <= TOL * m)) ok_db = 0;
    }
    int ok = ok_out && ok_dinp && ok_dw && ok_db;
    printf("%-4s bf16 linear layer BT=%d C=%d OC=%d: out %s, dinp %s, dweight %s (= sgemm_bf16), dbias %s (fp32 sums)\n",
           ok ? "ok" : "FAIL", BT, C, OC, ok_out ? "ok" : "differs", ok_dinp ? "ok" : "differs",
           ok_dw ? "ok" : "differs", ok_db ? "ok" : "off");
    failures += !ok;
    free(inp), free(w), free(bias), free(dout), free(out), free(want);
    free(dinp), free(dw), free(db), free(dinp_want), free(dw_want), free(db0);
}

int main(int argc, char **argv) {
    rng_seed(&rng, 1234);
    // "determinism" alone: run under OMP_THREAD_LIMIT=2, where a product that
    // asks for 3 threads gets 2 and must still compute all of C
    if (argc > 1 && strcmp(argv[1], "determinism") == 0) {
        test_determinism();
        printf("test_matmul determinism: %s\n", failures ? "FAILED" : "passed");
        return failures != 0;
    }
    int bf16_build = strcmp(matmul_precision(), "bf16") == 0;
    printf("linear layers: %s\n", matmul_precision());
    test_sgemm();
    if (sgemm_bf16_available()) {
        test_sgemm_bf16();
        test_bf16_by_hand();
    } else {
        printf("sgemm_bf16: not in this build or on this CPU (%s)\n", BF16_UNAVAILABLE);
    }
    if (bf16_build) {  // the layer's bf16 products against sgemm_bf16, just tested against its definition
        static const int shapes[][3] = {{2, 5, 7}, {64, 600, 1700}, {130, 768, 2304}, {300, 1100, 96}};
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) test_layer_bf16(shapes[s][0], shapes[s][1], shapes[s][2]);
    } else {
        test_layer();
        test_layer_into();
        test_few_rows();
    }
    test_determinism();
    test_bad_input();
    if (failures) {
        printf("test_matmul: %d FAILED\n", failures);
        return 1;
    }
    printf("test_matmul: all passed\n");
    return 0;
}
