// SinkGD's update of one hidden matrix: see sinkhorn.h.
#include "optim/sinkhorn.h"

#include "optim/optim.h"

#include <math.h>
#include <omp.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

size_t sinkhorn_part_floats(int m, int n) {
    return (size_t)((m + SINKHORN_SLAB_ROWS - 1) / SINKHORN_SLAB_ROWS) * (size_t)n;
}

// ----------------------------------------------------------------------------
// the pieces both kernels share

// row i's scale after its row pass, sum = sum_j G_ij^2 c_j^2:
// r_i *= sqrt(n) / max(r_i * sqrt(sum), 1e-8). An all-zero row stays zero
// whatever its scale; leaving r_i alone keeps it from overflowing (the spec's
// X has a 0 row either way).
static inline void scale_row(float *ri, float sum, float row_target) {
    if (sum != 0.0f) *ri *= row_target / fmaxf(*ri * sqrtf(sum), 1e-8f);
}

// columns j0..j1-1 (at most 64): c_j *= sqrt(m) / max(c_j * sqrt(sum_i r_i^2 G_ij^2), 1e-8),
// the sum over i being the slabs' parts added in slab order
static void scale_columns(const float *part, int nslabs, int n, int j0, int j1, float *c, float col_target) {
    float acc[64] = {0};
    for (int s = 0; s < nslabs; s++) {
        const float *ps = part + (size_t)s * n;
        #pragma omp simd
        for (int j = j0; j < j1; j++) acc[j - j0] += ps[j];
    }
    for (int j = j0; j < j1; j++) {
        if (acc[j - j0] == 0.0f) continue; // an all-zero column, as for rows
        c[j] *= col_target / fmaxf(c[j] * sqrtf(acc[j - j0]), 1e-8f);
    }
}

// one row of the step: p = p*decay - (step r_i) * (g c)
static inline void update_row(float *p, const float *g, const float *c, int n, float step_ri, float decay) {
    #pragma omp simd
    for (int j = 0; j < n; j++) p[j] = p[j] * decay - step_ri * (g[j] * c[j]);
}

// ----------------------------------------------------------------------------
// the reference: one row at a time

// sum_j (g_j c_j)^2 in 64 interleaved partial sums (one chain of adds
// would wait on the adder's latency at every vector), then a fixed tree.
// Each square is added by fmaf, as the fast kernel's fmadd adds it: written
// as acc += x * x the bits would depend on whether the compiler contracts it
// (gcc does at -O2 and above, not at the sanitizers' -O1).
static float row_sum_of_squares(const float *g, const float *c, int n) {
    float acc[64] = {0};
    int j = 0;
    for (; j + 64 <= n; j += 64)
        for (int l = 0; l < 64; l++) { float x = g[j + l] * c[j + l]; acc[l] = fmaf(x, x, acc[l]); }
    for (int l = 0; j + l < n; l++) { float x = g[j + l] * c[j + l]; acc[l] = fmaf(x, x, acc[l]); }
    for (int w = 32; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    return acc[0];
}

void sinkhorn_update_reference(float *P, const float *G, int m, int n, int iters, float step, float decay,
                               float *r, float *c, float *part, double *slab_sumsq) {
    const float row_target = sqrtf((float)n), col_target = sqrtf((float)m);
    const int nslabs = (m + SINKHORN_SLAB_ROWS - 1) / SINKHORN_SLAB_ROWS;
    #pragma omp parallel
    {
        #pragma omp for schedule(static)
        for (int i = 0; i < m; i++) r[i] = 1.0f;
        #pragma omp for schedule(static)
        for (int j = 0; j < n; j++) c[j] = 1.0f;
        for (int it = 0; it < iters; it++) {
            #pragma omp for schedule(static)
            for (int s = 0; s < nslabs; s++) {
                float *ps = part + (size_t)s * n;
                for (int j = 0; j < n; j++) ps[j] = 0.0f;
                int i1 = (s + 1) * SINKHORN_SLAB_ROWS < m ? (s + 1) * SINKHORN_SLAB_ROWS : m;
                double sumsq = 0.0;
                for (int i = s * SINKHORN_SLAB_ROWS; i < i1; i++) {
                    const float *g = G + (size_t)i * n;
                    if (it == 0 && slab_sumsq) sumsq += row_sum_of_squares_d(g, n);
                    scale_row(&r[i], row_sum_of_squares(g, c, n), row_target);
                    // the column pass's share of this row, with its new scale
                    float ri = r[i];
                    #pragma omp simd
                    for (int j = 0; j < n; j++) { float x = ri * g[j]; ps[j] = fmaf(x, x, ps[j]); }
                }
                if (it == 0 && slab_sumsq) slab_sumsq[s] = sumsq;
            }
            #pragma omp for schedule(static)
            for (int j0 = 0; j0 < n; j0 += 64) scale_columns(part, nslabs, n, j0, j0 + 64 < n ? j0 + 64 : n, c, col_target);
        }
        #pragma omp for schedule(static)
        for (int i = 0; i < m; i++) update_row(P + (size_t)i * n, G + (size_t)i * n, c, n, step * r[i], decay);
    }
}

// ----------------------------------------------------------------------------
// the fast kernel (AVX-512): rows four at a time, the next rows prefetched

#if defined(__AVX512F__)
#define GROUP_ROWS 4

// the 64 lanes of a0..a3 added in row_sum_of_squares's tree order
static inline float tree_sum(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    a0 = _mm512_add_ps(a0, a2); // lanes l < 32 += l + 32
    a1 = _mm512_add_ps(a1, a3);
    a0 = _mm512_add_ps(a0, a1); // l < 16 += l + 16
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a0),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a0), 1))); // l < 8
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)); // l < 4
    q = _mm_add_ps(q, _mm_movehl_ps(q, q)); // l < 2
    q = _mm_add_ss(q, _mm_movehdup_ps(q));  // l < 1
    return _mm_cvtss_f32(q);
}

// row_sum_of_squares_d's lanes: l < 8 in d[0], 8..15 in d[1]; the squares of
// floats are exact in double, so an fma adds what the plain sum adds
static inline void add_squares_d(__m512d d[2], __m512 gv) {
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(gv));
    __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(gv), 1)));
    d[0] = _mm512_fmadd_pd(lo, lo, d[0]);
    d[1] = _mm512_fmadd_pd(hi, hi, d[1]);
}

// ... and its tree: l += l + 8, 4, 2, 1
static inline double tree_sum_d(__m512d d0, __m512d d1) {
    d0 = _mm512_add_pd(d0, d1);
    __m256d h = _mm256_add_pd(_mm512_castpd512_pd256(d0), _mm512_extractf64x4_pd(d0, 1));
    __m128d q = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
    q = _mm_add_sd(q, _mm_unpackhi_pd(q, q));
    return _mm_cvtsd_f64(q);
}

// the 16 lanes from column j on that are inside the row
static inline __mmask16 lanes_from(int j, int n) {
    int left = n - j;
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
}

// Rows g[0..R) (row stride n) of one slab: their row pass (each row's sum in
// row_sum_of_squares's lanes and tree), their new scales, and their share of
// the column sums ps, added row after row as the reference adds them (first:
// ps starts from zero). Loads past the row's end are masked to zero, which
// adds +0 to sums of squares. While the rows are in L1, the next R_next rows
// this thread will read (next, stride n) are prefetched into L2.
// With sumsq (a constant), each row's row_sum_of_squares_d too, into rowsq[k]:
// its 16 lanes are the two halves of each 16-column vector, in double.
static inline __attribute__((always_inline)) void group_pass(const float *g, int n, const int R, float *r,
                                                             const float *c, float *ps, int first, float row_target,
                                                             const float *next, int R_next, const int sumsq,
                                                             double *rowsq) {
    __m512 acc[GROUP_ROWS][4];
    __m512d dacc[GROUP_ROWS][2];
    for (int k = 0; k < R; k++) {
        for (int q = 0; q < 4; q++) acc[k][q] = _mm512_setzero_ps();
        if (sumsq) dacc[k][0] = dacc[k][1] = _mm512_setzero_pd();
    }
    int j = 0;
    for (; j + 64 <= n; j += 64)
        for (int q = 0; q < 4; q++) {
            __m512 cv = _mm512_loadu_ps(c + j + 16 * q);
            for (int k = 0; k < R; k++) {
                __m512 gv = _mm512_loadu_ps(g + (size_t)k * n + j + 16 * q);
                __m512 x = _mm512_mul_ps(gv, cv);
                acc[k][q] = _mm512_fmadd_ps(x, x, acc[k][q]);
                if (sumsq) add_squares_d(dacc[k], gv);
            }
        }
    for (int q = 0; j + 16 * q < n; q++) {
        __mmask16 in = lanes_from(j + 16 * q, n);
        __m512 cv = _mm512_maskz_loadu_ps(in, c + j + 16 * q);
        for (int k = 0; k < R; k++) {
            __m512 gv = _mm512_maskz_loadu_ps(in, g + (size_t)k * n + j + 16 * q);
            __m512 x = _mm512_mul_ps(gv, cv);
            acc[k][q] = _mm512_fmadd_ps(x, x, acc[k][q]);
            if (sumsq) add_squares_d(dacc[k], gv);
        }
    }
    if (sumsq)
        for (int k = 0; k < R; k++) rowsq[k] = tree_sum_d(dacc[k][0], dacc[k][1]);
    __m512 rk[GROUP_ROWS];
    for (int k = 0; k < R; k++) {
        scale_row(&r[k], tree_sum(acc[k][0], acc[k][1], acc[k][2], acc[k][3]), row_target);
        rk[k] = _mm512_set1_ps(r[k]);
    }
    for (j = 0; j < n; j += 16) {
        __mmask16 in = lanes_from(j, n);
        __m512 sum = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(in, ps + j);
        for (int k = 0; k < R; k++) {
            __m512 x = _mm512_mul_ps(rk[k], _mm512_maskz_loadu_ps(in, g + (size_t)k * n + j));
            sum = _mm512_fmadd_ps(x, x, sum);
        }
        _mm512_mask_storeu_ps(ps + j, in, sum);
        for (int k = 0; k < R_next; k++) _mm_prefetch((const char *)(next + (size_t)k * n + j), _MM_HINT_T1);
    }
}

// one slab's rows in groups of GROUP_ROWS; after its last group, the first
// rows of slab `following` (-1: none) are prefetched
// With slab_sumsq, also the slab's sum of squares (its rows' in order).
static void slab_pass(const float *G, int m, int n, int s, int following, float *r, const float *c, float *ps,
                      float row_target, double *slab_sumsq) {
    int i0 = s * SINKHORN_SLAB_ROWS, i1 = i0 + SINKHORN_SLAB_ROWS < m ? i0 + SINKHORN_SLAB_ROWS : m;
    double sumsq = 0.0, rowsq[GROUP_ROWS];
    for (int i = i0; i < i1;) {
        int R = i1 - i >= GROUP_ROWS ? GROUP_ROWS : 1;
        // the rows read next: this slab's, or the following slab's first ones
        int next_row = i + R < i1 ? i + R : following >= 0 ? following * SINKHORN_SLAB_ROWS : m;
        int R_next = m - next_row < GROUP_ROWS ? m - next_row : GROUP_ROWS;
        const float *g = G + (size_t)i * n, *next = G + (size_t)next_row * n;
        if (slab_sumsq) { // (four calls: each with its constants, the plain passes keep their registers)
            if (R == GROUP_ROWS) group_pass(g, n, GROUP_ROWS, r + i, c, ps, i == i0, row_target, next, R_next, 1, rowsq);
            else group_pass(g, n, 1, r + i, c, ps, i == i0, row_target, next, R_next, 1, rowsq);
            for (int k = 0; k < R; k++) sumsq += rowsq[k];
        } else {
            if (R == GROUP_ROWS) group_pass(g, n, GROUP_ROWS, r + i, c, ps, i == i0, row_target, next, R_next, 0, NULL);
            else group_pass(g, n, 1, r + i, c, ps, i == i0, row_target, next, R_next, 0, NULL);
        }
        i += R;
    }
    if (slab_sumsq) slab_sumsq[s] = sumsq;
}
#endif

void sinkhorn_update(float *P, const float *G, int m, int n, int iters, float step, float decay,
                     float *r, float *c, float *part, double *slab_sumsq) {
#if !defined(__AVX512F__)
    sinkhorn_update_reference(P, G, m, n, iters, step, decay, r, c, part, slab_sumsq);
#else
    const float row_target = sqrtf((float)n), col_target = sqrtf((float)m);
    const int nslabs = (m + SINKHORN_SLAB_ROWS - 1) / SINKHORN_SLAB_ROWS;
    #pragma omp parallel
    {
        // this thread's slabs lo..hi-1, the same in every pass
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        int lo = (int)((long long)nslabs * t / T), hi = (int)((long long)nslabs * (t + 1) / T);
        int row_lo = lo * SINKHORN_SLAB_ROWS, row_hi = hi * SINKHORN_SLAB_ROWS < m ? hi * SINKHORN_SLAB_ROWS : m;
        for (int i = row_lo; i < row_hi; i++) r[i] = 1.0f;
        #pragma omp for schedule(static)
        for (int j = 0; j < n; j++) c[j] = 1.0f;
        for (int it = 0; it < iters; it++) {
            int down = it % 2 == 0;
            for (int k = 0; k < hi - lo; k++) {
                int s = down ? hi - 1 - k : lo + k;
                int following = k + 1 == hi - lo ? -1 : down ? s - 1 : s + 1;
                slab_pass(G, m, n, s, following, r, c, part + (size_t)s * n, row_target, it == 0 ? slab_sumsq : NULL);
            }
            #pragma omp barrier
            #pragma omp for schedule(static)
            for (int j0 = 0; j0 < n; j0 += 64) scale_columns(part, nslabs, n, j0, j0 + 64 < n ? j0 + 64 : n, c, col_target);
        }
        // the step: this thread's rows, against the last pass's order
        int down = iters % 2 == 0;
        for (int k = 0; k < row_hi - row_lo; k++) {
            int i = down ? row_hi - 1 - k : row_lo + k;
            update_row(P + (size_t)i * n, G + (size_t)i * n, c, n, step * r[i], decay);
        }
    }
#endif
}
