// Tiled attention: nn/attention.h. See the file's header for the idea.
//
// Tiles: the forward takes ATT_BQ queries x ATT_BK keys at a time, the
// backward ATT_BWD_BQ x ATT_BWD_BK. With hs = 64 a forward tile of queries
// (transposed), of scores and of the output accumulator are 16 KiB each, and
// the keys and values are read where they are; the backward's tiles are 16 or
// 32 KiB; they stay in the 48 KiB L1 and 1 MiB L2 of a Zen 5 core. The
// backward's key tile is twice as wide: each query tile's q, dout and dq rows
// are then read once per 128 keys instead of per 64 (measured: backward 2-3%
// faster on Zen 5, 1 thread).
//
// The softmax works in base 2: e^(scale s) = 2^(c s) with c = scale log2(e),
// one FMA per score before vexp2f (nn/vecmath.h), which is cheaper than e^x.
//
// Determinism: every output element is summed in one fixed order that does
// not depend on the number of threads. The forward splits the work over
// (batch, head, query tile), each writing its own rows; the backward over
// (batch, head), one thread owning all the dq, dk, dv rows of a head, which
// collect their tiles' contributions in increasing tile order.
//
// PRECISION=bf16 compiles this file a second time (nn/attention_bf16.o) with
// the products of both passes on bf16 inputs: the bf16 section below, with
// its definition in double at the end of the file.
#include "nn/attention.h"
#include "common/bf16.h"
#include "common/profile.h"
#include "common/utils.h"
#include "nn/vecmath.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define ATT_BQ 64
#define ATT_BK 64
#define ATT_BWD_BQ 64
#define ATT_BWD_BK 128
#define LOG2E 1.44269504088896341f
#define LN2 0.693147180559945309f

// PRECISION_BF16 (make PRECISION=bf16, which compiles this file as
// nn/attention_bf16.o): the products in bf16, see the bf16 section below
#if defined(PRECISION_BF16)
#if !defined(__AVX512BF16__)
#error "PRECISION_BF16 needs the AVX-512 BF16 instructions (-mavx512bf16)"
#endif
#define ATT_BF16 1
static void attention_forward_bf16(float *out, float *lse, const float *qkv, int B, int T, int C, int NH, int causal);
static void attention_backward_bf16(float *dqkv, const float *dout, const float *qkv, const float *out,
                                    const float *lse, int B, int T, int C, int NH, int causal);
#else
#define ATT_BF16 0
#endif

// ----------------------------------------------------------------------------
// The one small product every step below is made of:
//   c[m][0:W] = row_scale[m] * c[m][0:W] + sum_{k<K} a(m, k) * b[k][0:W]   for m < M,
// with a(m, k) = a[m*am + k*ak] (any strides: a product with a transposed
// tile is the same loop), b rows ldb apart, c rows ldc apart. accumulate = 0
// starts from 0 instead of c; row_scale NULL means 1 (the forward rescales
// its accumulator by the online softmax's correction on the way). The sum
// over k runs in increasing k for every element, on every path.

// reference: plain loops
static void tile_product_ref(float *c, size_t ldc, const float *a, size_t am, size_t ak, const float *b, size_t ldb,
                             int M, int K, int W, int accumulate, const float *row_scale) {
    for (int m = 0; m < M; m++) {
        for (int w = 0; w < W; w++) {
            float s = accumulate ? c[(size_t)m * ldc + w] * (row_scale ? row_scale[m] : 1.0f) : 0.0f;
            for (int k = 0; k < K; k++) s += a[(size_t)m * am + (size_t)k * ak] * b[(size_t)k * ldb + w];
            c[(size_t)m * ldc + w] = s;
        }
    }
}

#if defined(__AVX512F__)
// mr rows x nv vectors of 16 floats held in registers (at most 6 x 4 = 24 of
// the 32 zmm registers) while k runs: per k, nv loads of b, mr broadcasts of a
// and mr*nv FMAs. Called with constant mr and nv so that the arrays below
// become registers.
static inline __attribute__((always_inline)) void
tile_block_avx512(float *c, size_t ldc, const float *a, size_t am, size_t ak, const float *b, size_t ldb,
                  int K, int mr, int nv, int accumulate, const float *row_scale) {
    __m512 acc[6][4];
    for (int r = 0; r < mr; r++) {
        __m512 s = _mm512_set1_ps(row_scale ? row_scale[r] : 1.0f);
        for (int v = 0; v < nv; v++)
            acc[r][v] = accumulate ? _mm512_mul_ps(_mm512_loadu_ps(c + (size_t)r * ldc + 16 * v), s) : _mm512_setzero_ps();
    }
    for (int k = 0; k < K; k++) {
        __m512 bv[4];
        for (int v = 0; v < nv; v++) bv[v] = _mm512_loadu_ps(b + (size_t)k * ldb + 16 * v);
        const float *ak_ptr = a + (size_t)k * ak;
        for (int r = 0; r < mr; r++) {
            __m512 av = _mm512_set1_ps(ak_ptr[(size_t)r * am]);
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) _mm512_storeu_ps(c + (size_t)r * ldc + 16 * v, acc[r][v]);
}
#endif

static void tile_product(float *c, size_t ldc, const float *a, size_t am, size_t ak, const float *b, size_t ldb,
                         int M, int K, int W, int accumulate, const float *row_scale) {
#if defined(__AVX512F__)
    if (W % 16 == 0) {
        for (int w0 = 0; w0 < W; w0 += 64) {
            int nv = (W - w0) / 16 < 4 ? (W - w0) / 16 : 4;
            for (int m0 = 0; m0 < M; m0 += 6) {
                int mr = M - m0 < 6 ? M - m0 : 6;
                float *cc = c + (size_t)m0 * ldc + w0;
                const float *aa = a + (size_t)m0 * am;
                const float *bb = b + w0;
                const float *rs = row_scale ? row_scale + m0 : NULL;
                switch (mr * 8 + nv) {
#define ATT_CASE(MR, NV) case MR * 8 + NV: tile_block_avx512(cc, ldc, aa, am, ak, bb, ldb, K, MR, NV, accumulate, rs); break;
                    ATT_CASE(6, 4) ATT_CASE(5, 4) ATT_CASE(4, 4) ATT_CASE(3, 4) ATT_CASE(2, 4) ATT_CASE(1, 4)
                    ATT_CASE(6, 3) ATT_CASE(5, 3) ATT_CASE(4, 3) ATT_CASE(3, 3) ATT_CASE(2, 3) ATT_CASE(1, 3)
                    ATT_CASE(6, 2) ATT_CASE(5, 2) ATT_CASE(4, 2) ATT_CASE(3, 2) ATT_CASE(2, 2) ATT_CASE(1, 2)
                    ATT_CASE(6, 1) ATT_CASE(5, 1) ATT_CASE(4, 1) ATT_CASE(3, 1) ATT_CASE(2, 1) ATT_CASE(1, 1)
#undef ATT_CASE
                }
            }
        }
        return;
    }
#endif
    tile_product_ref(c, ldc, a, am, ak, b, ldb, M, K, W, accumulate, row_scale);
}

// dst [n][hs] = the hs-wide slices of rows 0..n-1 (ld apart), packed. Only
// where a tile is transposed or reused many times: the rows of a head sit 3C
// floats apart in qkv, a stride that maps a tile's rows onto a quarter of the
// L1 sets, but on Zen 5 the products read such rows in place faster than a
// copy costs (forward 6% faster without packing k and v, measured 1 thread).
static void pack_rows(float *dst, const float *rows, size_t ld, int n, int hs) {
#if defined(__AVX512F__)
    // gcc turns a plain loop, even one of loadu/storeu intrinsics, into a call
    // to memcpy per row, slow for 256 bytes; a masked store it leaves alone
    if (hs % 16 == 0) {
        for (int j = 0; j < n; j++)
            for (int i = 0; i < hs; i += 16)
                _mm512_mask_storeu_ps(dst + (size_t)j * hs + i, 0xFFFF, _mm512_loadu_ps(rows + (size_t)j * ld + i));
        return;
    }
#endif
    for (int j = 0; j < n; j++)
        for (int i = 0; i < hs; i++) dst[(size_t)j * hs + i] = rows[(size_t)j * ld + i];
}

// Causal tiles on the diagonal are computed in bands of ATT_BAND rows, each
// band's product cut to the columns (or the sum to the terms) that some row
// of the band can see; a band of one vector's width keeps the cut columns
// whole vectors. Everything cut is masked, so the results are the same.
#define ATT_BAND 16
static inline int imin(int a, int b) { return a < b ? a : b; }
// the first band (a multiple of ATT_BAND) holding index first, at least 0
static inline int first_band_needed(int first) { return first <= 0 ? 0 : first / ATT_BAND * ATT_BAND; }
// the width, in whole bands, up to and including index last, at most width
static inline int last_band_needed(int last, int width) {
    int w = (last / ATT_BAND + 1) * ATT_BAND;
    return last < 0 ? 0 : imin(w, width);
}

// Ask for rows [n][hs] (ld floats apart) before they are needed, to be read
// (into L2) or written (prefetchw, into L1). A head's rows are 3C or C floats
// apart, each in its own 4 KiB page, where the hardware prefetchers do not
// follow: perf showed the backward waiting on such rows (D, the packing of k
// and v, the adding of dk and dv), and dq += ds . k, which reads and writes dq
// in place, ran at 76% of the FMA peak in the loop, 87% with its rows asked for.
static inline void prefetch_rows_read(const float *rows, size_t ld, int n, int hs) {
    for (int j = 0; j < n; j++)
        for (int i = 0; i < hs; i += 16) __builtin_prefetch(rows + (size_t)j * ld + i, 0, 2);
}
static inline void prefetch_rows_write(float *rows, size_t ld, int n, int hs) {
    for (int j = 0; j < n; j++)
        for (int i = 0; i < hs; i += 16) __builtin_prefetch(rows + (size_t)j * ld + i, 1, 3);
}

// dst [hs][ld] = src [n][hs] (packed rows) transposed; columns n..pad-1 are
// zero, so a partial tile multiplies like a full one.
static void transpose_tile(float *dst, int ld, int pad, const float *src, int n, int hs) {
    for (int d = 0; d < hs; d++) {
        float *drow = dst + (size_t)d * ld;
        for (int j = 0; j < n; j++) drow[j] = src[(size_t)j * hs + d];
        for (int j = n; j < pad; j++) drow[j] = 0.0f;
    }
}

// ----------------------------------------------------------------------------
// forward

// One key tile's step of the online softmax of a query tile.
// In: st [nk][BQ] the raw scores k.q (keys in rows, queries in columns);
// run_max [BQ] (raw units) and run_sum [BQ] over the keys before this tile.
// Key j is visible to query column i when j <= i + off, off = i0 - j0
// (masked = 1: causal and some key of the tile after some query), to all
// when masked = 0. Out: st = exp(scale (s - m)) (0 where masked), with m
// the new running max; correction = exp(scale (m_old - m)), by which the
// old sum (done here) and the output accumulator (the caller) are rescaled.
static void softmax_step_ref(float *st, int nk, int masked, int off, float scale,
                             float *run_max, float *run_sum, float *correction) {
    const float c = scale * LOG2E;
    for (int i = 0; i < ATT_BQ; i++) {
        float m = run_max[i];
        for (int j = 0; j < nk; j++)
            if (!masked || j <= i + off) m = st[(size_t)j * ATT_BQ + i] > m ? st[(size_t)j * ATT_BQ + i] : m;
        if (m == -INFINITY) m = 0.0f; // a query that has seen no key yet: its terms are all 0
        float mc = m * c, sum = 0.0f;
        for (int j = 0; j < nk; j++) {
            float *s = st + (size_t)j * ATT_BQ + i;
            *s = !masked || j <= i + off ? vexp2f(*s * c - mc) : 0.0f;
            sum += *s;
        }
        correction[i] = vexp2f(run_max[i] * c - mc); // 0 while run_max is -inf
        run_sum[i] = run_sum[i] * correction[i] + sum;
        run_max[i] = m;
    }
}

#if defined(__AVX512F__)
// The same, 16 query columns at a time, each column's max and sum in
// registers (two partial sums, added at the end: fewer waits on the adds).
static void softmax_step_avx512(float *st, int nk, int masked, int off, float scale,
                                float *run_max, float *run_sum, float *correction) {
    const __m512 c = _mm512_set1_ps(scale * LOG2E), neg_inf = _mm512_set1_ps(-INFINITY);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int i0 = 0; i0 < ATT_BQ; i0 += 16) {
        float *col = st + i0;
        __m512i last_key = _mm512_add_epi32(lane, _mm512_set1_epi32(i0 + off)); // key j visible iff j <= i + off
        // on the diagonal, keys after the column's last query are masked for all 16: skipped
        int jend = masked && i0 + 15 + off + 1 < nk ? i0 + 15 + off + 1 : nk;
        __m512 m0 = _mm512_loadu_ps(run_max + i0), m1 = neg_inf;
        int j = 0;
        if (!masked) {
            for (; j + 2 <= jend; j += 2) {
                m0 = _mm512_max_ps(m0, _mm512_loadu_ps(col + (size_t)j * ATT_BQ));
                m1 = _mm512_max_ps(m1, _mm512_loadu_ps(col + (size_t)(j + 1) * ATT_BQ));
            }
        }
        for (; j < jend; j++) {
            __mmask16 vis = masked ? _mm512_cmp_epi32_mask(_mm512_set1_epi32(j), last_key, _MM_CMPINT_LE) : 0xFFFF;
            m0 = _mm512_mask_max_ps(m0, vis, m0, _mm512_loadu_ps(col + (size_t)j * ATT_BQ));
        }
        __m512 m = _mm512_max_ps(m0, m1);
        m = _mm512_mask_mov_ps(m, _mm512_cmp_ps_mask(m, neg_inf, _CMP_EQ_OQ), _mm512_setzero_ps());
        __m512 mc = _mm512_mul_ps(m, c), s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
        j = 0;
        if (!masked) {
            for (; j + 2 <= jend; j += 2) {
                float *r0 = col + (size_t)j * ATT_BQ, *r1 = r0 + ATT_BQ;
                __m512 p0 = vexp2f_avx512(_mm512_fmsub_ps(_mm512_loadu_ps(r0), c, mc));
                __m512 p1 = vexp2f_avx512(_mm512_fmsub_ps(_mm512_loadu_ps(r1), c, mc));
                _mm512_storeu_ps(r0, p0);
                _mm512_storeu_ps(r1, p1);
                s0 = _mm512_add_ps(s0, p0);
                s1 = _mm512_add_ps(s1, p1);
            }
        }
        for (; j < jend; j++) {
            float *r = col + (size_t)j * ATT_BQ;
            __mmask16 vis = masked ? _mm512_cmp_epi32_mask(_mm512_set1_epi32(j), last_key, _MM_CMPINT_LE) : 0xFFFF;
            __m512 p = _mm512_maskz_mov_ps(vis, vexp2f_avx512(_mm512_fmsub_ps(_mm512_loadu_ps(r), c, mc)));
            _mm512_storeu_ps(r, p);
            s0 = _mm512_add_ps(s0, p);
        }
        for (; j < nk; j++) _mm512_storeu_ps(col + (size_t)j * ATT_BQ, _mm512_setzero_ps());
        __m512 corr = vexp2f_avx512(_mm512_fmsub_ps(_mm512_loadu_ps(run_max + i0), c, mc));
        _mm512_storeu_ps(correction + i0, corr);
        _mm512_storeu_ps(run_sum + i0, _mm512_fmadd_ps(_mm512_loadu_ps(run_sum + i0), corr, _mm512_add_ps(s0, s1)));
        _mm512_storeu_ps(run_max + i0, m);
    }
}
#endif

static void softmax_step(float *st, int nk, int masked, int off, float scale,
                         float *run_max, float *run_sum, float *correction) {
#if defined(__AVX512F__)
    if (ATT_BQ % 16 == 0) { softmax_step_avx512(st, nk, masked, off, scale, run_max, run_sum, correction); return; }
#endif
    softmax_step_ref(st, nk, masked, off, scale, run_max, run_sum, correction);
}

// The scores are computed transposed, st[key][query] = k . q, so that the
// query tile is transposed once for all key tiles (its columns are then the
// vectors), and the softmax's running max and sum per query are vector
// operations down the columns.
void attention_forward(float *out, float *lse, const float *qkv,
                       int B, int T, int C, int NH, int causal) {
    profile_begin(PROFILE_ATTN_FWD, 0);
#if ATT_BF16
    attention_forward_bf16(out, lse, qkv, B, T, C, NH, causal);
    profile_end();
    return;
#endif
    int hs = C / NH;
    size_t C3 = 3 * (size_t)C;
    float scale = 1.0f / sqrtf((float)hs);
    int ntiles = (T + ATT_BQ - 1) / ATT_BQ;
    #pragma omp parallel for collapse(3) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int qt = 0; qt < ntiles; qt++) {
                float q_t[hs * ATT_BQ];     // the query tile, transposed [hs][BQ]
                float st[ATT_BK * ATT_BQ];  // scores, then their exp [BK][BQ]
                float acc[ATT_BQ * hs];     // sum of p * v, not yet divided by the sum of p [BQ][hs]
                float run_max[ATT_BQ], run_sum[ATT_BQ], correction[ATT_BQ];
                int i0 = qt * ATT_BQ, nq = T - i0 < ATT_BQ ? T - i0 : ATT_BQ;
                const float *seq = qkv + (size_t)b * T * C3;
                pack_rows(acc, seq + (size_t)i0 * C3 + h * hs, C3, nq, hs); // acc as scratch for a moment
                transpose_tile(q_t, ATT_BQ, ATT_BQ, acc, nq, hs);
                memset(acc, 0, sizeof(float) * nq * hs);
                for (int i = 0; i < ATT_BQ; i++) { run_max[i] = -INFINITY; run_sum[i] = 0.0f; }
                int kend = causal ? i0 + nq : T; // keys any query of the tile may see
                // while the key tiles run, a share each of the rows the next tile
                // of this head reads first (its queries; causal: its diagonal's
                // keys and values, new to this head) and of the rows this one writes
                int i0n = i0 + ATT_BQ, nqn = imin(ATT_BQ, T - i0n), nsteps = (kend + ATT_BK - 1) / ATT_BK;
                int share = (ATT_BQ + nsteps - 1) / nsteps;
                for (int j0 = 0, step = 0; j0 < kend; j0 += ATT_BK, step++) {
                    int nk = kend - j0 < ATT_BK ? kend - j0 : ATT_BK;
                    int r0 = step * share, rn = imin(share, nq - r0), rn_next = imin(share, nqn - r0);
                    if (rn > 0) prefetch_rows_write(out + ((size_t)b * T + i0 + r0) * C + h * hs, C, rn, hs);
                    if (rn_next > 0) {
                        const float *next = seq + (size_t)(i0n + r0) * C3 + h * hs;
                        prefetch_rows_read(next, C3, rn_next, hs);
                        if (causal) {
                            prefetch_rows_read(next + C, C3, rn_next, hs);
                            prefetch_rows_read(next + 2 * C, C3, rn_next, hs);
                        }
                    }
                    // the key tile's k and v rows [nk][hs], 3C floats apart, read in place
                    const float *k = seq + (size_t)j0 * C3 + C + h * hs, *v = seq + (size_t)j0 * C3 + 2 * C + h * hs;
                    int masked = causal && j0 + nk - 1 > i0; // some key of the tile is after some query
                    int off = i0 - j0;
                    if (!masked) {
                        tile_product(st, ATT_BQ, k, C3, 1, q_t, ATT_BQ, nk, hs, ATT_BQ, 0, NULL); // st = k . q
                        softmax_step(st, nk, 0, off, scale, run_max, run_sum, correction);
                        // acc = acc * correction + p . v, with p[query][key] = st[key][query]
                        tile_product(acc, hs, st, 1, ATT_BQ, v, C3, nq, nk, hs, 1, correction);
                    } else {
                        // the same on the diagonal, band by band of 16 keys (then
                        // queries), leaving out the products whose every term is
                        // masked: keys j see queries i >= j - off only
                        for (int jb = 0; jb < nk; jb += ATT_BAND) {
                            int w0 = first_band_needed(jb - off);
                            tile_product(st + (size_t)jb * ATT_BQ + w0, ATT_BQ, k + (size_t)jb * C3, C3, 1, q_t + w0,
                                         ATT_BQ, imin(ATT_BAND, nk - jb), hs, ATT_BQ - w0, 0, NULL);
                        }
                        softmax_step(st, nk, 1, off, scale, run_max, run_sum, correction); // reads only what is visible
                        for (int ib = 0; ib < nq; ib += ATT_BAND) // queries i see keys j <= i + off only
                            tile_product(acc + (size_t)ib * hs, hs, st + ib, 1, ATT_BQ, v, C3, imin(ATT_BAND, nq - ib),
                                         imin(nk, ib + ATT_BAND + off), hs, 1, correction + ib);
                    }
                }
                for (int i = 0; i < nq; i++) {
                    float *o = out + ((size_t)b * T + i0 + i) * C + h * hs;
                    float inv = 1.0f / run_sum[i];
                    for (int d = 0; d < hs; d++) o[d] = acc[(size_t)i * hs + d] * inv;
                    lse[((size_t)b * NH + h) * T + i0 + i] = run_max[i] * scale + logf(run_sum[i]);
                }
            }
        }
    }
    profile_end();
}

// ----------------------------------------------------------------------------
// backward
//
// With p = softmax(s), s = q.k * scale, out = p . v (per query row):
//   dv += p^T dout,  dp = dout . v,  ds = p * (dp - D) with D = sum_j p_j dp_j
//   = dout . out,  dq += ds . k * scale,  dk += ds^T q * scale.
// p is recomputed from the saved logsumexp: p = exp(s - lse). That is a fifth
// product (q.k again), which make bench-attention does not count: at T = 1024
// this pass computes 1.27x the FLOPs it is credited with (diagonal bands
// included), so its share of the FMA peak there is at most 79%, and 75% at the
// 95% one tile product reaches alone (measured, data in L1/L2, 1 thread).

// D[t] = dout[b,t,h,:] . out[b,t,h,:] for each query t of head h: the
// softmax backward's sum_j p_tj dp_tj, computed once per head from its output
static void output_dots(float *D, const float *dout, const float *out, int b, int h, int T, int C, int hs) {
    const int ahead = 8; // rows asked for in advance (they come from memory)
    for (int t = 0; t < T; t++) {
        const float *dy = dout + ((size_t)b * T + t) * C + h * hs;
        const float *y = out + ((size_t)b * T + t) * C + h * hs;
        if (t + ahead < T) {
            prefetch_rows_read(dy + (size_t)ahead * C, C, 1, hs);
            prefetch_rows_read(y + (size_t)ahead * C, C, 1, hs);
        }
        float s = 0.0f;
        #pragma omp simd reduction(+:s)
        for (int d = 0; d < hs; d++) s += dy[d] * y[d];
        D[t] = s;
    }
}

// One tile's softmax backward, in place. In: p [nq][BK] the raw scores q.k,
// ds [nq][BK] dp = dout . v; lse and D of the nq queries. Out: p =
// exp(scale s - lse), ds = p (dp - D) scale (the gradient of the raw score),
// both 0 where key j is masked for query row i (j > i + off, off = i0 - j0,
// when masked) and in columns nk..BK-1 (a partial key tile's padding).
static void softmax_backward_step_ref(float *p, float *ds, int nq, int nk, int masked, int off, float scale,
                                      const float *lse, const float *D) {
    const float c = scale * LOG2E;
    for (int i = 0; i < nq; i++) {
        float l = lse[i] * LOG2E;
        for (int j = 0; j < ATT_BWD_BK; j++) {
            float *pij = p + (size_t)i * ATT_BWD_BK + j, *dsij = ds + (size_t)i * ATT_BWD_BK + j;
            int visible = j < nk && (!masked || j <= i + off);
            *pij = visible ? vexp2f(*pij * c - l) : 0.0f;
            *dsij = visible ? *pij * (*dsij - D[i]) * scale : 0.0f; // (masked: not computed, maybe not a number)
        }
    }
}

#if defined(__AVX512F__)
static void softmax_backward_step_avx512(float *p, float *ds, int nq, int nk, int masked, int off, float scale,
                                         const float *lse, const float *D) {
    const __m512 c = _mm512_set1_ps(scale * LOG2E), sc = _mm512_set1_ps(scale);
    for (int i = 0; i < nq; i++) {
        __m512 l = _mm512_set1_ps(lse[i] * LOG2E), Di = _mm512_set1_ps(D[i]);
        int n = masked && i + off + 1 < nk ? i + off + 1 : nk; // keys 0..n-1 visible
        for (int j = 0; j < ATT_BWD_BK; j += 16) {
            float *pr = p + (size_t)i * ATT_BWD_BK + j, *dsr = ds + (size_t)i * ATT_BWD_BK + j;
            __mmask16 vis = n >= j + 16 ? 0xFFFF : (n <= j ? 0 : (__mmask16)((1u << (n - j)) - 1));
            __m512 pv = _mm512_maskz_mov_ps(vis, vexp2f_avx512(_mm512_fmsub_ps(_mm512_loadu_ps(pr), c, l)));
            _mm512_storeu_ps(pr, pv);
            // masked lanes were maybe not computed (not a number): set to 0, not multiplied by 0
            _mm512_storeu_ps(dsr, _mm512_maskz_mul_ps(vis, _mm512_mul_ps(pv, _mm512_sub_ps(_mm512_loadu_ps(dsr), Di)), sc));
        }
    }
}
#endif

static void softmax_backward_step(float *p, float *ds, int nq, int nk, int masked, int off, float scale,
                                  const float *lse, const float *D) {
#if defined(__AVX512F__)
    if (ATT_BWD_BK % 16 == 0) { softmax_backward_step_avx512(p, ds, nq, nk, masked, off, scale, lse, D); return; }
#endif
    softmax_backward_step_ref(p, ds, nq, nk, masked, off, scale, lse, D);
}

void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                        const float *lse, int B, int T, int C, int NH, int causal) {
    profile_begin(PROFILE_ATTN_BWD, 0);
#if ATT_BF16
    attention_backward_bf16(dqkv, dout, qkv, out, lse, B, T, C, NH, causal);
    profile_end();
    return;
#endif
    int hs = C / NH;
    size_t C3 = 3 * (size_t)C;
    float scale = 1.0f / sqrtf((float)hs);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            float kt[hs * ATT_BWD_BK], vt[hs * ATT_BWD_BK]; // the key tile's k and v, transposed [hs][BK]
            float dk[ATT_BWD_BK * hs], dv[ATT_BWD_BK * hs]; // their gradients over all query tiles [BK][hs]
            float kp[ATT_BWD_BK * hs];                      // the key tile's k, packed [BK][hs]
            float p[ATT_BWD_BQ * ATT_BWD_BK], ds[ATT_BWD_BQ * ATT_BWD_BK];
            float D[T];
            const float *seq = qkv + (size_t)b * T * C3;
            float *dseq = dqkv + (size_t)b * T * C3;
            const float *lse_bh = lse + ((size_t)b * NH + h) * T;
            output_dots(D, dout, out, b, h, T, C, hs);
            for (int j0 = 0; j0 < T; j0 += ATT_BWD_BK) {
                int nk = T - j0 < ATT_BWD_BK ? T - j0 : ATT_BWD_BK;
                const float *k = seq + (size_t)j0 * C3 + C + h * hs;
                const float *v = seq + (size_t)j0 * C3 + 2 * C + h * hs;
                int wk = (nk + 15) / 16 * 16; // the key columns worth computing (past nk: zeros)
                pack_rows(kp, k, C3, nk, hs);
                transpose_tile(kt, ATT_BWD_BK, wk, kp, nk, hs);
                pack_rows(dv, v, C3, nk, hs); // dv as scratch before it is zeroed
                transpose_tile(vt, ATT_BWD_BK, wk, dv, nk, hs);
                memset(dk, 0, sizeof(float) * nk * hs);
                memset(dv, 0, sizeof(float) * nk * hs);
                // causal: the first query tile that sees any of these keys
                int istart = causal ? (j0 / ATT_BWD_BQ) * ATT_BWD_BQ : 0;
                // while the query tiles run, a share of the rows this key tile adds
                // dk and dv into, and of the next key tile's k and v, each step
                int nk_next = imin(ATT_BWD_BK, T - j0 - nk), nsteps = (T - istart + ATT_BWD_BQ - 1) / ATT_BWD_BQ;
                int share = (ATT_BWD_BK + nsteps - 1) / nsteps;
                for (int i0 = istart, step = 0; i0 < T; i0 += ATT_BWD_BQ, step++) {
                    int nq = T - i0 < ATT_BWD_BQ ? T - i0 : ATT_BWD_BQ;
                    // the query tile's q and dout rows [nq][hs], 3C and C floats apart, read in place
                    const float *q = seq + (size_t)i0 * C3 + h * hs;
                    const float *dy = dout + ((size_t)b * T + i0) * C + h * hs;
                    float *dq = dseq + (size_t)i0 * C3 + h * hs; // straight into dqkv: this thread owns the head
                    int r0 = step * share, rn = imin(share, nk - r0), rn_next = imin(share, nk_next - r0);
                    if (rn > 0) {
                        prefetch_rows_write(dseq + (size_t)(j0 + r0) * C3 + C + h * hs, C3, rn, hs);
                        prefetch_rows_write(dseq + (size_t)(j0 + r0) * C3 + 2 * C + h * hs, C3, rn, hs);
                    }
                    if (rn_next > 0) {
                        prefetch_rows_read(k + (size_t)(nk + r0) * C3, C3, rn_next, hs);
                        prefetch_rows_read(v + (size_t)(nk + r0) * C3, C3, rn_next, hs);
                    }
                    // and the next query tile's rows (or the next key tile's first)
                    int i_next = i0 + ATT_BWD_BQ < T ? i0 + ATT_BWD_BQ : (nk_next > 0 ? (causal ? (j0 + nk) / ATT_BWD_BQ * ATT_BWD_BQ : 0) : -1);
                    if (i_next >= 0) {
                        int nq_next = imin(ATT_BWD_BQ, T - i_next);
                        prefetch_rows_read(seq + (size_t)i_next * C3 + h * hs, C3, nq_next, hs);
                        prefetch_rows_read(dout + ((size_t)b * T + i_next) * C + h * hs, C, nq_next, hs);
                        prefetch_rows_write(dseq + (size_t)i_next * C3 + h * hs, C3, nq_next, hs);
                    }
                    int masked = causal && j0 + nk - 1 > i0; // some key of the tile is after some query
                    int off = i0 - j0;
                    if (!masked) {
                        tile_product(p, ATT_BWD_BK, q, C3, 1, kt, ATT_BWD_BK, nq, hs, wk, 0, NULL);  // q . k
                        tile_product(ds, ATT_BWD_BK, dy, C, 1, vt, ATT_BWD_BK, nq, hs, wk, 0, NULL); // dp = dout . v
                        softmax_backward_step(p, ds, nq, nk, 0, off, scale, lse_bh + i0, D + i0);
                        // dv += p^T dout, dk += ds^T q (a(m=key, k=query) = p[query][key])
                        tile_product(dv, hs, p, 1, ATT_BWD_BK, dy, C, nk, nq, hs, 1, NULL);
                        tile_product(dk, hs, ds, 1, ATT_BWD_BK, q, C3, nk, nq, hs, 1, NULL);
                        tile_product(dq, C3, ds, ATT_BWD_BK, 1, kp, hs, nq, nk, hs, 1, NULL); // dq += ds . k
                    } else {
                        // the same on the diagonal, band by band of 16 queries (then
                        // keys), leaving out the products whose every term is masked:
                        // query i sees keys j <= i + off, key j is seen by i >= j - off
                        for (int ib = 0; ib < nq; ib += ATT_BAND) {
                            int n = imin(ATT_BAND, nq - ib), w = last_band_needed(imin(ib + ATT_BAND - 1 + off, nk - 1), ATT_BWD_BK);
                            tile_product(p + (size_t)ib * ATT_BWD_BK, ATT_BWD_BK, q + (size_t)ib * C3, C3, 1, kt, ATT_BWD_BK, n, hs, w, 0, NULL);
                            tile_product(ds + (size_t)ib * ATT_BWD_BK, ATT_BWD_BK, dy + (size_t)ib * C, C, 1, vt, ATT_BWD_BK, n, hs, w, 0, NULL);
                        }
                        softmax_backward_step(p, ds, nq, nk, 1, off, scale, lse_bh + i0, D + i0); // reads only what is visible
                        for (int jb = 0; jb < nk; jb += ATT_BAND) {
                            int n = imin(ATT_BAND, nk - jb), i1 = first_band_needed(jb - off);
                            if (i1 >= nq) continue;
                            tile_product(dv + (size_t)jb * hs, hs, p + (size_t)i1 * ATT_BWD_BK + jb, 1, ATT_BWD_BK, dy + (size_t)i1 * C,
                                         C, n, nq - i1, hs, 1, NULL);
                            tile_product(dk + (size_t)jb * hs, hs, ds + (size_t)i1 * ATT_BWD_BK + jb, 1, ATT_BWD_BK, q + (size_t)i1 * C3,
                                         C3, n, nq - i1, hs, 1, NULL);
                        }
                        for (int ib = 0; ib < nq; ib += ATT_BAND)
                            tile_product(dq + (size_t)ib * C3, C3, ds + (size_t)ib * ATT_BWD_BK, ATT_BWD_BK, 1, kp, hs, imin(ATT_BAND, nq - ib),
                                         imin(nk, ib + ATT_BAND + off), hs, 1, NULL);
                    }
                }
                for (int j = 0; j < nk; j++) {
                    float *dkr = dseq + (size_t)(j0 + j) * C3 + C + h * hs;
                    float *dvr = dseq + (size_t)(j0 + j) * C3 + 2 * C + h * hs;
                    for (int d = 0; d < hs; d++) {
                        dkr[d] += dk[(size_t)j * hs + d];
                        dvr[d] += dv[(size_t)j * hs + d];
                    }
                }
            }
        }
    }
    profile_end();
}

// ----------------------------------------------------------------------------
// bf16 (make PRECISION=bf16: this file compiled with -DPRECISION_BF16 and the
// AVX-512 BF16 instructions). The same tiles, loops and fp32 softmax as above,
// but every product's inputs are rounded to bf16 and multiplied by vdpbf16ps,
// which adds x[2i] y[2i] + x[2i+1] y[2i+1] to each of 16 fp32 sums: both
// operands of a product are held as 32-bit words of two bf16 values that are
// consecutive in the summed index (the lower one in the low half), as in
// nn/matmul.c's bf16 section. What is rounded, and what stays fp32:
//   forward:  s = bf16(q) . bf16(k) (fp32 sums); the running max, the sum of
//             the weights, the correction and the logsumexp in fp32; the
//             weights e_j = 2^(c s_j - m) rounded to bf16 for e . bf16(v).
//             m is the running max rounded up to a whole number (base 2), so
//             that the correction is a power of two and the rounding of e_j
//             does not depend on which tile raised the max: the result is
//             sum_j bf16(e^(scale s_j)) bf16(v_j) / sum_j e^(scale s_j), up to
//             fp32 rounding (attention_forward_bf16_ref is this in double).
//   backward: p = exp(scale s - lse) and ds = p (dp - D) scale in fp32 from
//             s and dp = bf16(dout) . bf16(v); dv += bf16(p)^T bf16(dout),
//             dq += bf16(ds) bf16(k), dk += bf16(ds)^T bf16(q).
// The split over threads and every sum's order are the fp32 path's, so the
// bits do not depend on the number of threads either.
#if ATT_BF16

// tail_mask(n): the lowest n of 16 lanes (none for n <= 0, all for n >= 16)
static inline __mmask16 tail_mask(int n) { return n <= 0 ? 0 : n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1); }

// n floats x -> (n+1)/2 words (bf16 x[2i], bf16 x[2i+1]); an odd last one's partner is 0
static void bf16_words(uint32_t *dst, const float *x, int n) {
    for (int i = 0; i < n; i += 32) {
        __m512 lo = _mm512_maskz_loadu_ps(tail_mask(n - i), x + i), hi = _mm512_maskz_loadu_ps(tail_mask(n - i - 16), x + i + 16);
        _mm512_mask_storeu_epi32(dst + i / 2, tail_mask((n - i + 1) / 2), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
    }
}

// 16 columns of two rows x (an even index) and y (the next) -> 16 words (bf16 x[c], bf16 y[c])
static inline __m512i bf16_interleave(__m512 x, __m512 y) {
    const __m512i lo_idx = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi_idx = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    return (__m512i)_mm512_cvtne2ps_pbh(_mm512_permutex2var_ps(x, hi_idx, y), _mm512_permutex2var_ps(x, lo_idx, y));
}

// rows [n][w] (ld floats apart) -> words [(n+1)/2][w] (ldd apart): word (p, c) =
// (bf16 row 2p [c], bf16 row 2p+1 [c]), the partner of an odd last row 0
static void bf16_row_pairs(uint32_t *dst, size_t ldd, const float *rows, size_t ld, int n, int w) {
    for (int p = 0; 2 * p < n; p++) {
        const float *x = rows + (size_t)(2 * p) * ld, *y = 2 * p + 1 < n ? x + ld : NULL;
        for (int c0 = 0; c0 < w; c0 += 16) {
            __mmask16 m = tail_mask(w - c0);
            __m512 yv = y ? _mm512_maskz_loadu_ps(m, y + c0) : _mm512_setzero_ps();
            _mm512_mask_storeu_epi32(dst + (size_t)p * ldd + c0, m, bf16_interleave(_mm512_maskz_loadu_ps(m, x + c0), yv));
        }
    }
}

// rows [n][hs] (ld floats apart) -> words [hs2][ldd], hs2 = (hs+1)/2: column j
// holds row j's words (bf16_words), columns n..pad-1 are 0
static void bf16_words_transposed(uint32_t *dst, size_t ldd, int pad, const float *rows, size_t ld, int n, int hs) {
    int hs2 = (hs + 1) / 2;
    uint32_t w[hs2];
    for (int j = 0; j < n; j++) {
        bf16_words(w, rows + (size_t)j * ld, hs);
        for (int p = 0; p < hs2; p++) dst[(size_t)p * ldd + j] = w[p];
    }
    for (int p = 0; p < hs2; p++)
        for (int j = n; j < pad; j++) dst[(size_t)p * ldd + j] = 0;
}

// The small product of the bf16 path, tile_product with pairs for k:
//   c[m][0:W] = row_scale[m] * c[m][0:W] + sum_{p<P} a(m, p) . b[p][0:W]
// a(m, p) = a[m*am + p*ap] and b[p][w] are words of two bf16 values each, "."
// their pairs' products summed (vdpbf16ps). The sum over p runs in increasing
// p on both paths.
static inline float bf16_lo(uint32_t w) { return float_from_bf16((uint16_t)(w & 0xFFFF)); }
static inline float bf16_hi(uint32_t w) { return float_from_bf16((uint16_t)(w >> 16)); }

static void tile_product_bf16_ref(float *c, size_t ldc, const uint32_t *a, size_t am, size_t ap, const uint32_t *b, size_t ldb,
                                  int M, int P, int W, int accumulate, const float *row_scale) {
    for (int m = 0; m < M; m++)
        for (int w = 0; w < W; w++) {
            float s = accumulate ? c[(size_t)m * ldc + w] * (row_scale ? row_scale[m] : 1.0f) : 0.0f;
            for (int p = 0; p < P; p++) {
                uint32_t x = a[(size_t)m * am + (size_t)p * ap], y = b[(size_t)p * ldb + w];
                s += bf16_lo(x) * bf16_lo(y) + bf16_hi(x) * bf16_hi(y);
            }
            c[(size_t)m * ldc + w] = s;
        }
}

static inline __attribute__((always_inline)) void
tile_block_bf16(float *c, size_t ldc, const uint32_t *a, size_t am, size_t ap, const uint32_t *b, size_t ldb,
                int P, int mr, int nv, int accumulate, const float *row_scale) {
    __m512 acc[6][4];
    for (int r = 0; r < mr; r++) {
        __m512 s = _mm512_set1_ps(row_scale ? row_scale[r] : 1.0f);
        for (int v = 0; v < nv; v++)
            acc[r][v] = accumulate ? _mm512_mul_ps(_mm512_loadu_ps(c + (size_t)r * ldc + 16 * v), s) : _mm512_setzero_ps();
    }
    for (int p = 0; p < P; p++) {
        __m512bh bv[4];
        for (int v = 0; v < nv; v++) bv[v] = (__m512bh)_mm512_loadu_si512(b + (size_t)p * ldb + 16 * v);
        const uint32_t *ap_ptr = a + (size_t)p * ap;
        for (int r = 0; r < mr; r++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)ap_ptr[(size_t)r * am]);
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
        }
    }
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) _mm512_storeu_ps(c + (size_t)r * ldc + 16 * v, acc[r][v]);
}

static void tile_product_bf16(float *c, size_t ldc, const uint32_t *a, size_t am, size_t ap, const uint32_t *b, size_t ldb,
                              int M, int P, int W, int accumulate, const float *row_scale) {
    if (W % 16 != 0) { tile_product_bf16_ref(c, ldc, a, am, ap, b, ldb, M, P, W, accumulate, row_scale); return; }
    for (int w0 = 0; w0 < W; w0 += 64) {
        int nv = (W - w0) / 16 < 4 ? (W - w0) / 16 : 4;
        for (int m0 = 0; m0 < M; m0 += 6) {
            int mr = M - m0 < 6 ? M - m0 : 6;
            float *cc = c + (size_t)m0 * ldc + w0;
            const uint32_t *aa = a + (size_t)m0 * am, *bb = b + w0;
            const float *rs = row_scale ? row_scale + m0 : NULL;
            switch (mr * 8 + nv) {
#define ATT_CASE(MR, NV) case MR * 8 + NV: tile_block_bf16(cc, ldc, aa, am, ap, bb, ldb, P, MR, NV, accumulate, rs); break;
                ATT_CASE(6, 4) ATT_CASE(5, 4) ATT_CASE(4, 4) ATT_CASE(3, 4) ATT_CASE(2, 4) ATT_CASE(1, 4)
                ATT_CASE(6, 3) ATT_CASE(5, 3) ATT_CASE(4, 3) ATT_CASE(3, 3) ATT_CASE(2, 3) ATT_CASE(1, 3)
                ATT_CASE(6, 2) ATT_CASE(5, 2) ATT_CASE(4, 2) ATT_CASE(3, 2) ATT_CASE(2, 2) ATT_CASE(1, 2)
                ATT_CASE(6, 1) ATT_CASE(5, 1) ATT_CASE(4, 1) ATT_CASE(3, 1) ATT_CASE(2, 1) ATT_CASE(1, 1)
#undef ATT_CASE
            }
        }
    }
}

// softmax_step with the max in whole base-2 units, writing the weights as
// bf16 pairs of keys. In: st [nk][BQ] raw scores; run_max [BQ] in base-2
// units (c s, rounded up to a whole number; -inf before the first key),
// run_sum [BQ]. Out: pw [(nk+1)/2][BQ] words (bf16 e_2p, bf16 e_2p+1) for each
// query column, e_j = 2^(c s_j - m) (0 where masked, and for an odd last
// key's partner); correction = 2^(m_old - m), exact.
static void softmax_step_bf16(uint32_t *pw, const float *st, int nk, int masked, int off, float scale,
                              float *run_max, float *run_sum, float *correction) {
    const __m512 c = _mm512_set1_ps(scale * LOG2E), neg_inf = _mm512_set1_ps(-INFINITY);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (int i0 = 0; i0 < ATT_BQ; i0 += 16) {
        const float *col = st + i0;
        __m512i last_key = _mm512_add_epi32(lane, _mm512_set1_epi32(i0 + off)); // key j visible iff j <= i + off
        int jend = masked && i0 + 15 + off + 1 < nk ? i0 + 15 + off + 1 : nk;  // keys after it masked for all 16
        __m512 mt = neg_inf;
        for (int j = 0; j < jend; j++) {
            __mmask16 vis = masked ? _mm512_cmp_epi32_mask(_mm512_set1_epi32(j), last_key, _MM_CMPINT_LE) : 0xFFFF;
            mt = _mm512_mask_max_ps(mt, vis, mt, _mm512_loadu_ps(col + (size_t)j * ATT_BQ));
        }
        __m512 old = _mm512_loadu_ps(run_max + i0);
        __m512 m = _mm512_max_ps(old, _mm512_roundscale_ps(_mm512_mul_ps(mt, c), _MM_FROUND_TO_POS_INF | _MM_FROUND_NO_EXC));
        m = _mm512_mask_mov_ps(m, _mm512_cmp_ps_mask(m, neg_inf, _CMP_EQ_OQ), _mm512_setzero_ps());
        __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
        for (int j = 0; j < nk; j += 2) {
            __m512 p0 = _mm512_setzero_ps(), p1 = _mm512_setzero_ps();
            if (j < jend) {
                __mmask16 vis = masked ? _mm512_cmp_epi32_mask(_mm512_set1_epi32(j), last_key, _MM_CMPINT_LE) : 0xFFFF;
                p0 = _mm512_maskz_mov_ps(vis, vexp2f_avx512(_mm512_fmsub_ps(_mm512_loadu_ps(col + (size_t)j * ATT_BQ), c, m)));
            }
            if (j + 1 < jend) {
                __mmask16 vis = masked ? _mm512_cmp_epi32_mask(_mm512_set1_epi32(j + 1), last_key, _MM_CMPINT_LE) : 0xFFFF;
                p1 = _mm512_maskz_mov_ps(vis, vexp2f_avx512(_mm512_fmsub_ps(_mm512_loadu_ps(col + (size_t)(j + 1) * ATT_BQ), c, m)));
            }
            s0 = _mm512_add_ps(s0, p0);
            s1 = _mm512_add_ps(s1, p1);
            _mm512_storeu_si512(pw + (size_t)(j / 2) * ATT_BQ + i0, bf16_interleave(p0, p1));
        }
        // 2^(old - m) exactly; 0 while old is -inf
        __m512 corr = _mm512_maskz_scalef_ps(_mm512_cmp_ps_mask(old, neg_inf, _CMP_NEQ_OQ), _mm512_set1_ps(1.0f),
                                             _mm512_sub_ps(old, m));
        _mm512_storeu_ps(correction + i0, corr);
        _mm512_storeu_ps(run_sum + i0, _mm512_fmadd_ps(_mm512_loadu_ps(run_sum + i0), corr, _mm512_add_ps(s0, s1)));
        _mm512_storeu_ps(run_max + i0, m);
    }
}

static void attention_forward_bf16(float *out, float *lse, const float *qkv, int B, int T, int C, int NH, int causal) {
    int hs = C / NH, hs2 = (hs + 1) / 2;
    size_t C3 = 3 * (size_t)C;
    float scale = 1.0f / sqrtf((float)hs);
    int ntiles = (T + ATT_BQ - 1) / ATT_BQ;
    #pragma omp parallel for collapse(3) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int qt = 0; qt < ntiles; qt++) {
                uint32_t qtw[hs2 * ATT_BQ];        // the query tile, words of pairs of channels, transposed [hs2][BQ]
                uint32_t kw[ATT_BK * hs2];         // the key tile's k, words of pairs of channels [BK][hs2]
                uint32_t vw[ATT_BK / 2 * hs];      // its v, words of pairs of keys [BK/2][hs]
                uint32_t pw[ATT_BK / 2 * ATT_BQ];  // the weights, words of pairs of keys [BK/2][BQ]
                float st[ATT_BK * ATT_BQ];         // scores [BK][BQ]
                float acc[ATT_BQ * hs];            // sum of e * v, not yet divided by the sum of e [BQ][hs]
                float run_max[ATT_BQ], run_sum[ATT_BQ], correction[ATT_BQ];
                int i0 = qt * ATT_BQ, nq = T - i0 < ATT_BQ ? T - i0 : ATT_BQ;
                const float *seq = qkv + (size_t)b * T * C3;
                bf16_words_transposed(qtw, ATT_BQ, ATT_BQ, seq + (size_t)i0 * C3 + h * hs, C3, nq, hs);
                memset(acc, 0, sizeof(float) * nq * hs);
                for (int i = 0; i < ATT_BQ; i++) { run_max[i] = -INFINITY; run_sum[i] = 0.0f; }
                int kend = causal ? i0 + nq : T;
                for (int j0 = 0; j0 < kend; j0 += ATT_BK) {
                    int nk = kend - j0 < ATT_BK ? kend - j0 : ATT_BK, nk2 = (nk + 1) / 2;
                    const float *k = seq + (size_t)j0 * C3 + C + h * hs, *v = seq + (size_t)j0 * C3 + 2 * C + h * hs;
                    for (int j = 0; j < nk; j++) bf16_words(kw + (size_t)j * hs2, k + (size_t)j * C3, hs);
                    bf16_row_pairs(vw, hs, v, C3, nk, hs);
                    int masked = causal && j0 + nk - 1 > i0;
                    int off = i0 - j0;
                    if (!masked) {
                        tile_product_bf16(st, ATT_BQ, kw, hs2, 1, qtw, ATT_BQ, nk, hs2, ATT_BQ, 0, NULL); // st = k . q
                        softmax_step_bf16(pw, st, nk, 0, off, scale, run_max, run_sum, correction);
                        // acc = acc * correction + e . v (a(query, pair) = pw[pair][query])
                        tile_product_bf16(acc, hs, pw, 1, ATT_BQ, vw, hs, nq, nk2, hs, 1, correction);
                    } else { // the diagonal band by band, as in attention_forward (bands are whole pairs)
                        for (int jb = 0; jb < nk; jb += ATT_BAND) {
                            int w0 = first_band_needed(jb - off);
                            tile_product_bf16(st + (size_t)jb * ATT_BQ + w0, ATT_BQ, kw + (size_t)jb * hs2, hs2, 1, qtw + w0,
                                              ATT_BQ, imin(ATT_BAND, nk - jb), hs2, ATT_BQ - w0, 0, NULL);
                        }
                        softmax_step_bf16(pw, st, nk, 1, off, scale, run_max, run_sum, correction);
                        for (int ib = 0; ib < nq; ib += ATT_BAND)
                            tile_product_bf16(acc + (size_t)ib * hs, hs, pw + ib, 1, ATT_BQ, vw, hs, imin(ATT_BAND, nq - ib),
                                              (imin(nk, ib + ATT_BAND + off) + 1) / 2, hs, 1, correction + ib);
                    }
                }
                for (int i = 0; i < nq; i++) {
                    float *o = out + ((size_t)b * T + i0 + i) * C + h * hs;
                    float inv = 1.0f / run_sum[i];
                    for (int d = 0; d < hs; d++) o[d] = acc[(size_t)i * hs + d] * inv;
                    lse[((size_t)b * NH + h) * T + i0 + i] = run_max[i] * LN2 + logf(run_sum[i]);
                }
            }
        }
    }
}

static void attention_backward_bf16(float *dqkv, const float *dout, const float *qkv, const float *out,
                                    const float *lse, int B, int T, int C, int NH, int causal) {
    int hs = C / NH, hs2 = (hs + 1) / 2;
    size_t C3 = 3 * (size_t)C;
    float scale = 1.0f / sqrtf((float)hs);
    const int BQ = ATT_BWD_BQ, BK = ATT_BWD_BK;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            // the key tile's k and v as words of pairs of channels, transposed [hs2][BK],
            // and its k as words of pairs of keys [BK/2][hs]
            uint32_t ktw[hs2 * BK], vtw[hs2 * BK], kpw[BK / 2 * hs];
            // the query tile's q and dout as words of pairs of channels [BQ][hs2], and of pairs of queries [BQ/2][hs]
            uint32_t qw[BQ * hs2], dyw[BQ * hs2], qpw[BQ / 2 * hs], dypw[BQ / 2 * hs];
            // p and ds as words of pairs of queries [BQ/2][BK], and ds of pairs of keys [BQ][BK/2]
            uint32_t ppw[BQ / 2 * BK], dspw[BQ / 2 * BK], dsw[BQ * (BK / 2)];
            float dk[BK * hs], dv[BK * hs];  // the key tile's gradients over all query tiles [BK][hs]
            float p[BQ * BK], ds[BQ * BK];
            float D[T];
            const float *seq = qkv + (size_t)b * T * C3;
            float *dseq = dqkv + (size_t)b * T * C3;
            const float *lse_bh = lse + ((size_t)b * NH + h) * T;
            output_dots(D, dout, out, b, h, T, C, hs);
            for (int j0 = 0; j0 < T; j0 += BK) {
                int nk = T - j0 < BK ? T - j0 : BK;
                const float *k = seq + (size_t)j0 * C3 + C + h * hs;
                const float *v = seq + (size_t)j0 * C3 + 2 * C + h * hs;
                int wk = (nk + 15) / 16 * 16;
                bf16_words_transposed(ktw, BK, wk, k, C3, nk, hs);
                bf16_words_transposed(vtw, BK, wk, v, C3, nk, hs);
                bf16_row_pairs(kpw, hs, k, C3, nk, hs);
                memset(dk, 0, sizeof(float) * nk * hs);
                memset(dv, 0, sizeof(float) * nk * hs);
                int istart = causal ? (j0 / BQ) * BQ : 0;
                for (int i0 = istart; i0 < T; i0 += BQ) {
                    int nq = T - i0 < BQ ? T - i0 : BQ;
                    const float *q = seq + (size_t)i0 * C3 + h * hs;
                    const float *dy = dout + ((size_t)b * T + i0) * C + h * hs;
                    float *dq = dseq + (size_t)i0 * C3 + h * hs;
                    for (int i = 0; i < nq; i++) {
                        bf16_words(qw + (size_t)i * hs2, q + (size_t)i * C3, hs);
                        bf16_words(dyw + (size_t)i * hs2, dy + (size_t)i * C, hs);
                    }
                    bf16_row_pairs(qpw, hs, q, C3, nq, hs);
                    bf16_row_pairs(dypw, hs, dy, C, nq, hs);
                    int masked = causal && j0 + nk - 1 > i0;
                    int off = i0 - j0, nq2 = (nq + 1) / 2;
                    if (!masked) {
                        tile_product_bf16(p, BK, qw, hs2, 1, ktw, BK, nq, hs2, wk, 0, NULL);   // q . k
                        tile_product_bf16(ds, BK, dyw, hs2, 1, vtw, BK, nq, hs2, wk, 0, NULL); // dp = dout . v
                        softmax_backward_step(p, ds, nq, nk, 0, off, scale, lse_bh + i0, D + i0);
                    } else {
                        for (int ib = 0; ib < nq; ib += ATT_BAND) {
                            int n = imin(ATT_BAND, nq - ib), w = last_band_needed(imin(ib + ATT_BAND - 1 + off, nk - 1), BK);
                            tile_product_bf16(p + (size_t)ib * BK, BK, qw + (size_t)ib * hs2, hs2, 1, ktw, BK, n, hs2, w, 0, NULL);
                            tile_product_bf16(ds + (size_t)ib * BK, BK, dyw + (size_t)ib * hs2, hs2, 1, vtw, BK, n, hs2, w, 0, NULL);
                        }
                        softmax_backward_step(p, ds, nq, nk, 1, off, scale, lse_bh + i0, D + i0);
                    }
                    // p and ds are 0 wherever masked and past nk: their words are whole rows
                    bf16_row_pairs(ppw, BK, p, BK, nq, wk);
                    bf16_row_pairs(dspw, BK, ds, BK, nq, wk);
                    for (int i = 0; i < nq; i++) bf16_words(dsw + (size_t)i * (BK / 2), ds + (size_t)i * BK, wk);
                    if (!masked) {
                        // dv += p^T dout, dk += ds^T q (a(key, pair of queries) = ppw[pair][key])
                        tile_product_bf16(dv, hs, ppw, 1, BK, dypw, hs, nk, nq2, hs, 1, NULL);
                        tile_product_bf16(dk, hs, dspw, 1, BK, qpw, hs, nk, nq2, hs, 1, NULL);
                        tile_product_bf16(dq, C3, dsw, BK / 2, 1, kpw, hs, nq, (nk + 1) / 2, hs, 1, NULL); // dq += ds . k
                    } else {
                        for (int jb = 0; jb < nk; jb += ATT_BAND) {
                            int n = imin(ATT_BAND, nk - jb), i1 = first_band_needed(jb - off);
                            if (i1 >= nq) continue;
                            tile_product_bf16(dv + (size_t)jb * hs, hs, ppw + (size_t)(i1 / 2) * BK + jb, 1, BK,
                                              dypw + (size_t)(i1 / 2) * hs, hs, n, nq2 - i1 / 2, hs, 1, NULL);
                            tile_product_bf16(dk + (size_t)jb * hs, hs, dspw + (size_t)(i1 / 2) * BK + jb, 1, BK,
                                              qpw + (size_t)(i1 / 2) * hs, hs, n, nq2 - i1 / 2, hs, 1, NULL);
                        }
                        for (int ib = 0; ib < nq; ib += ATT_BAND)
                            tile_product_bf16(dq + (size_t)ib * C3, C3, dsw + (size_t)ib * (BK / 2), BK / 2, 1, kpw, hs,
                                              imin(ATT_BAND, nq - ib), (imin(nk, ib + ATT_BAND + off) + 1) / 2, hs, 1, NULL);
                    }
                }
                for (int j = 0; j < nk; j++) {
                    float *dkr = dseq + (size_t)(j0 + j) * C3 + C + h * hs;
                    float *dvr = dseq + (size_t)(j0 + j) * C3 + 2 * C + h * hs;
                    for (int d = 0; d < hs; d++) {
                        dkr[d] += dk[(size_t)j * hs + d];
                        dvr[d] += dv[(size_t)j * hs + d];
                    }
                }
            }
        }
    }
}
#endif  // ATT_BF16

// ----------------------------------------------------------------------------
// The direct attention the tiled one is tested against (and the KV-cache step)

// One query of one head: scores against keys 0..len-1, softmax into att_row,
// and the weighted sum of values into out_head [hs]. seq points at the qkv
// rows of the sequence ([T,3C]), q at the query's q slice for this head.
static void attend(float *out_head, float *att_row, const float *q, const float *seq,
                   int len, int C, int h, int hs, float scale) {
    int C3 = 3 * C;
    // scores q.k / sqrt(hs), and their max for a stable softmax
    float maxval = -INFINITY;
    for (int t2 = 0; t2 < len; t2++) {
        const float *k = seq + (size_t)t2 * C3 + C + h * hs;
        float dot = 0.0f;
        #pragma omp simd reduction(+:dot)
        for (int i = 0; i < hs; i++) dot += q[i] * k[i];
        dot *= scale;
        att_row[t2] = dot;
        if (dot > maxval) maxval = dot;
    }
    float sum = 0.0f;
    #pragma omp simd reduction(+:sum)
    for (int t2 = 0; t2 < len; t2++) {
        float e = vexpf(att_row[t2] - maxval);
        att_row[t2] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
    for (int t2 = 0; t2 < len; t2++) att_row[t2] *= inv;
    // out = sum over keys of weight * v
    for (int i = 0; i < hs; i++) out_head[i] = 0.0f;
    for (int t2 = 0; t2 < len; t2++) {
        const float *v = seq + (size_t)t2 * C3 + 2 * C + h * hs;
        float w = att_row[t2];
        #pragma omp simd
        for (int i = 0; i < hs; i++) out_head[i] += w * v[i];
    }
}

void attention_forward_ref(float *out, float *att, const float *qkv,
                           int B, int T, int C, int NH, int causal) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    #pragma omp parallel for collapse(3) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                const float *seq = qkv + (size_t)b * T * 3 * C;
                float *a = att + (((size_t)b * NH + h) * T + t) * T;
                int len = causal ? t + 1 : T; // keys this query may see
                attend(out + ((size_t)b * T + t) * C + h * hs, a, seq + (size_t)t * 3 * C + h * hs, seq,
                       len, C, h, hs, scale);
                for (int t2 = len; t2 < T; t2++) a[t2] = 0.0f; // masked: weight 0
            }
        }
    }
}

void attention_forward_last(float *out, float *att, const float *qkv, int t, int C, int NH) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    for (int h = 0; h < NH; h++)
        attend(out + h * hs, att + (size_t)h * (t + 1), qkv + (size_t)t * 3 * C + h * hs, qkv, t + 1, C, h, hs, scale);
}

void attention_backward_ref(float *dqkv, const float *dout, const float *qkv, const float *att,
                            int B, int T, int C, int NH, int causal) {
    int hs = C / NH;
    int C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    // One thread owns one (batch, head): the dk and dv of a key collect
    // contributions from every query, always in the order t = 0, 1, ...
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            float datt[T]; // gradient w.r.t. one row of attention weights
            for (int t = 0; t < T; t++) {
                const float *a = att + (((size_t)b * NH + h) * T + t) * T;
                const float *q = qkv + ((size_t)b * T + t) * C3 + h * hs;
                const float *dy = dout + ((size_t)b * T + t) * C + h * hs;
                float *dq = dqkv + ((size_t)b * T + t) * C3 + h * hs;
                int len = causal ? t + 1 : T;
                // through out = att @ v: datt = dout . v, dv += att * dout
                for (int t2 = 0; t2 < len; t2++) {
                    const float *v = qkv + ((size_t)b * T + t2) * C3 + 2 * C + h * hs;
                    float *dv = dqkv + ((size_t)b * T + t2) * C3 + 2 * C + h * hs;
                    float dot = 0.0f;
                    float w = a[t2];
                    #pragma omp simd reduction(+:dot)
                    for (int i = 0; i < hs; i++) {
                        dot += dy[i] * v[i];
                        dv[i] += w * dy[i];
                    }
                    datt[t2] = dot;
                }
                // through the softmax: dscore = att * (datt - sum(att * datt))
                float sum = 0.0f;
                for (int t2 = 0; t2 < len; t2++) sum += a[t2] * datt[t2];
                // through score = q.k * scale
                for (int t2 = 0; t2 < len; t2++) {
                    float dscore = a[t2] * (datt[t2] - sum) * scale;
                    const float *k = qkv + ((size_t)b * T + t2) * C3 + C + h * hs;
                    float *dk = dqkv + ((size_t)b * T + t2) * C3 + C + h * hs;
                    #pragma omp simd
                    for (int i = 0; i < hs; i++) {
                        dq[i] += dscore * k[i];
                        dk[i] += dscore * q[i];
                    }
                }
            }
        }
    }
}


// ----------------------------------------------------------------------------
// What the bf16 path computes (see its section above), in double: the inputs of
// every product rounded to bf16 as the conversion instruction rounds them
// (nearest, ties to even, denormals to 0), everything else exact.

static double bf16_rounded(double x) {
    float r = round_to_bf16((float)x);
    return fabsf(r) < FLT_MIN ? 0.0 : (double)r;
}

// the bf16 path's sums over one (batch, head), in double: ls [T] the
// logsumexp of each query's scores; with dout, also the gradients into
// g [T][3C] (the sequence's rows, zeroed by the caller)
static void attention_bf16_head(double *o, double *ls, double *g, const float *seq, const float *dout_seq,
                                const float *out_seq, int T, int C, int h, int hs, int causal) {
    int C3 = 3 * C;
    double scale = 1.0 / sqrt((double)hs), log2e = 1.0 / log(2.0);
    double *s = malloc((size_t)T * sizeof(double));
    if (!s) fail("attention_bf16_ref: out of memory");
    for (int t = 0; t < T; t++) {
        const float *q = seq + (size_t)t * C3 + h * hs;
        int len = causal ? t + 1 : T;
        double mx = -INFINITY; // the scores in base 2 (scale log2(e) q.k), and their max
        for (int u = 0; u < len; u++) {
            const float *k = seq + (size_t)u * C3 + C + h * hs;
            double d = 0.0;
            for (int i = 0; i < hs; i++) d += bf16_rounded(q[i]) * bf16_rounded(k[i]);
            s[u] = d * scale * log2e;
            mx = s[u] > mx ? s[u] : mx;
        }
        // the weights relative to 2^M, M a whole number: scaled by a power of
        // two, which bf16 rounding commutes with, so any such M gives the same
        double M = ceil(mx), sum = 0.0;
        for (int u = 0; u < len; u++) sum += exp2(s[u] - M);
        ls[t] = (M + log2(sum)) / log2e;
        if (o)
            for (int i = 0; i < hs; i++) {
                double acc = 0.0;
                for (int u = 0; u < len; u++)
                    acc += bf16_rounded(exp2(s[u] - M)) * bf16_rounded(seq[(size_t)u * C3 + 2 * C + h * hs + i]);
                o[(size_t)t * hs + i] = acc / sum;
            }
        if (!g) continue;
        // backward: p = exp(scale q.k - lse), D = dout . out, dp = dout . v, ds = p (dp - D) scale
        const float *dy = dout_seq + (size_t)t * C + h * hs, *y = out_seq + (size_t)t * C + h * hs;
        double D = 0.0;
        for (int i = 0; i < hs; i++) D += (double)dy[i] * y[i];
        double *dq = g + (size_t)t * C3 + h * hs;
        for (int u = 0; u < len; u++) {
            const float *k = seq + (size_t)u * C3 + C + h * hs, *v = seq + (size_t)u * C3 + 2 * C + h * hs;
            double *dk = g + (size_t)u * C3 + C + h * hs, *dv = g + (size_t)u * C3 + 2 * C + h * hs;
            double p = exp2(s[u] - ls[t] * log2e), dp = 0.0;
            for (int i = 0; i < hs; i++) dp += bf16_rounded(dy[i]) * bf16_rounded(v[i]);
            double ds = bf16_rounded(p * (dp - D) * scale), pb = bf16_rounded(p);
            for (int i = 0; i < hs; i++) {
                dv[i] += pb * bf16_rounded(dy[i]);
                dq[i] += ds * bf16_rounded(k[i]);
                dk[i] += ds * bf16_rounded(q[i]);
            }
        }
    }
    free(s);
}

void attention_forward_bf16_ref(float *out, float *lse, const float *qkv, int B, int T, int C, int NH, int causal) {
    int hs = C / NH;
    double *o = malloc((size_t)T * hs * sizeof(double)), *ls = malloc((size_t)T * sizeof(double));
    if (!o || !ls) fail("attention_forward_bf16_ref: out of memory");
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            attention_bf16_head(o, ls, NULL, qkv + (size_t)b * T * 3 * C, NULL, NULL, T, C, h, hs, causal);
            for (int t = 0; t < T; t++) {
                for (int i = 0; i < hs; i++) out[((size_t)b * T + t) * C + h * hs + i] = (float)o[(size_t)t * hs + i];
                lse[((size_t)b * NH + h) * T + t] = (float)ls[t];
            }
        }
    free(o);
    free(ls);
}

void attention_backward_bf16_ref(float *dqkv, const float *dout, const float *qkv, const float *out,
                                 int B, int T, int C, int NH, int causal) {
    int hs = C / NH;
    size_t n = (size_t)T * 3 * C;
    double *g = malloc(n * sizeof(double)), *ls = malloc((size_t)T * sizeof(double));
    if (!g || !ls) fail("attention_backward_bf16_ref: out of memory");
    for (int b = 0; b < B; b++) {
        memset(g, 0, n * sizeof(double));
        for (int h = 0; h < NH; h++)
            attention_bf16_head(NULL, ls, g, qkv + (size_t)b * n, dout + (size_t)b * T * C, out + (size_t)b * T * C,
                                T, C, h, hs, causal);
        for (size_t i = 0; i < n; i++) dqkv[(size_t)b * n + i] += (float)g[i];
    }
    free(g);
    free(ls);
}

const char *attention_precision(void) { return ATT_BF16 ? "bf16" : "fp32"; }
