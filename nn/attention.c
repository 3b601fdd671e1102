// Tiled attention: nn/attention.h. See the file's header for the idea.
//
// Tiles: ATT_BQ queries x ATT_BK keys. With hs = 64 a query tile, a key tile
// (transposed), the score tile and the output accumulator are 16 KiB each, so
// one tile's working set stays in the 48 KiB L1 and 1 MiB L2 of this CPU, and
// each small product below streams one tile from L1.
//
// Determinism: every output element is summed in one fixed order that does
// not depend on the number of threads. The forward splits the work over
// (batch, head, query tile), each writing its own rows; the backward over
// (batch, head), one thread owning all the dq, dk, dv rows of a head, which
// collect their tiles' contributions in increasing tile order.
#include "nn/attention.h"
#include "common/profile.h"
#include "nn/vecmath.h"

#include <math.h>
#include <stddef.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define ATT_BQ 64
#define ATT_BK 64

// ----------------------------------------------------------------------------
// The one small product every step below is made of:
//   c[m][0:W] (+)= sum_{k<K} a(m, k) * b[k][0:W]   for m < M,
// with a(m, k) = a[m*am + k*ak] (any strides: a product with a transposed
// tile is the same loop), b rows ldb apart, c rows ldc apart. The sum over k
// runs in increasing k for every element, on every path.

// reference: plain loops
static void tile_product_ref(float *c, size_t ldc, const float *a, size_t am, size_t ak,
                             const float *b, size_t ldb, int M, int K, int W, int accumulate) {
    for (int m = 0; m < M; m++) {
        for (int w = 0; w < W; w++) {
            float s = accumulate ? c[(size_t)m * ldc + w] : 0.0f;
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
                  int K, int mr, int nv, int accumulate) {
    __m512 acc[6][4];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++)
            acc[r][v] = accumulate ? _mm512_loadu_ps(c + (size_t)r * ldc + 16 * v) : _mm512_setzero_ps();
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

static void tile_product(float *c, size_t ldc, const float *a, size_t am, size_t ak,
                         const float *b, size_t ldb, int M, int K, int W, int accumulate) {
#if defined(__AVX512F__)
    if (W % 16 == 0) {
        for (int w0 = 0; w0 < W; w0 += 64) {
            int nv = (W - w0) / 16 < 4 ? (W - w0) / 16 : 4;
            for (int m0 = 0; m0 < M; m0 += 6) {
                int mr = M - m0 < 6 ? M - m0 : 6;
                float *cc = c + (size_t)m0 * ldc + w0;
                const float *aa = a + (size_t)m0 * am;
                const float *bb = b + w0;
                switch (mr * 8 + nv) {
#define ATT_CASE(MR, NV) case MR * 8 + NV: tile_block_avx512(cc, ldc, aa, am, ak, bb, ldb, K, MR, NV, accumulate); break;
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
    tile_product_ref(c, ldc, a, am, ak, b, ldb, M, K, W, accumulate);
}

// dst [n][hs] = the hs-wide slices of rows 0..n-1 (ld apart), packed: the
// rows of a head sit 3C floats apart in qkv, a stride that maps a tile's rows
// onto a few L1 sets; packed, a tile streams without conflict misses.
static void pack_rows(float *dst, const float *rows, size_t ld, int n, int hs) {
    for (int j = 0; j < n; j++) {
        const float *src = rows + (size_t)j * ld;
        float *d = dst + (size_t)j * hs;
        int i = 0;
#if defined(__AVX512F__)
        // by hand: gcc turns the plain loop into a call to memcpy, slow for 256 bytes
        for (; i + 16 <= hs; i += 16) _mm512_storeu_ps(d + i, _mm512_loadu_ps(src + i));
#endif
        for (; i < hs; i++) d[i] = src[i];
    }
}

// dst [hs][width] = src [n][hs] (packed rows) transposed; columns n..width-1
// are zero, so a partial tile multiplies like a full one.
static void transpose_tile(float *dst, int width, const float *src, int n, int hs) {
    for (int d = 0; d < hs; d++) {
        float *drow = dst + (size_t)d * width;
        for (int j = 0; j < n; j++) drow[j] = src[(size_t)j * hs + d];
        for (int j = n; j < width; j++) drow[j] = 0.0f;
    }
}

// How many keys of the tile starting at j0 (n of them) query i may see.
static inline int visible_keys(int i, int j0, int n, int causal) {
    if (!causal) return n;
    int v = i - j0 + 1;
    return v < 0 ? 0 : (v < n ? v : n);
}

// ----------------------------------------------------------------------------
// forward

// The scores are computed transposed, st[key][query] = k . q, so that the
// query tile is transposed once for all key tiles (its columns are then the
// vectors), and the softmax's running max and sum per query are vector
// operations down the columns.
void attention_forward(float *out, float *lse, const float *qkv,
                       int B, int T, int C, int NH, int causal) {
    profile_begin(PROFILE_ATTN_FWD, 0);
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
                float kp[ATT_BK * hs], vp[ATT_BK * hs]; // the key tile's k and v, packed [BK][hs]
                float acc[ATT_BQ * hs];     // sum of p * v, not yet divided by the sum of p [BQ][hs]
                float run_max[ATT_BQ], run_sum[ATT_BQ], new_max[ATT_BQ], correction[ATT_BQ];
                int i0 = qt * ATT_BQ, nq = T - i0 < ATT_BQ ? T - i0 : ATT_BQ;
                const float *seq = qkv + (size_t)b * T * C3;
                pack_rows(acc, seq + (size_t)i0 * C3 + h * hs, C3, nq, hs); // acc as scratch for a moment
                transpose_tile(q_t, ATT_BQ, acc, nq, hs);
                memset(acc, 0, sizeof(float) * nq * hs);
                for (int i = 0; i < ATT_BQ; i++) { run_max[i] = -INFINITY; run_sum[i] = 0.0f; }
                int kend = causal ? i0 + nq : T; // keys any query of the tile may see
                for (int j0 = 0; j0 < kend; j0 += ATT_BK) {
                    int nk = kend - j0 < ATT_BK ? kend - j0 : ATT_BK;
                    pack_rows(kp, seq + (size_t)j0 * C3 + C + h * hs, C3, nk, hs);
                    pack_rows(vp, seq + (size_t)j0 * C3 + 2 * C + h * hs, C3, nk, hs);
                    // st = k . q, scaled; masked (key after query) to -inf
                    tile_product(st, ATT_BQ, kp, hs, 1, q_t, ATT_BQ, nk, hs, ATT_BQ, 0);
                    int diagonal = causal && j0 + nk - 1 > i0; // some key of the tile is after some query
                    for (int j = 0; j < nk; j++) {
                        float *row = st + (size_t)j * ATT_BQ;
                        int first_visible = diagonal ? j0 + j - i0 : 0; // queries i >= this see key j0+j
                        #pragma omp simd
                        for (int i = 0; i < ATT_BQ; i++) row[i] = i >= first_visible ? row[i] * scale : -INFINITY;
                    }
                    // online softmax: the new running max; exp against it; the
                    // old sum and accumulator rescaled to it
                    #pragma omp simd
                    for (int i = 0; i < ATT_BQ; i++) new_max[i] = run_max[i];
                    for (int j = 0; j < nk; j++) {
                        const float *row = st + (size_t)j * ATT_BQ;
                        #pragma omp simd
                        for (int i = 0; i < ATT_BQ; i++) new_max[i] = row[i] > new_max[i] ? row[i] : new_max[i];
                    }
                    float sum[ATT_BQ];
                    #pragma omp simd
                    for (int i = 0; i < ATT_BQ; i++) {
                        // a query that has seen no key yet keeps max -inf: its terms are all 0
                        float m = new_max[i] == -INFINITY ? 0.0f : new_max[i];
                        correction[i] = vexpf(run_max[i] - m);
                        sum[i] = 0.0f;
                        new_max[i] = m;
                    }
                    for (int j = 0; j < nk; j++) {
                        float *row = st + (size_t)j * ATT_BQ;
                        #pragma omp simd
                        for (int i = 0; i < ATT_BQ; i++) { float e = vexpf(row[i] - new_max[i]); row[i] = e; sum[i] += e; }
                    }
                    for (int i = 0; i < nq; i++) {
                        run_sum[i] = run_sum[i] * correction[i] + sum[i];
                        run_max[i] = new_max[i];
                        if (correction[i] != 1.0f) {
                            float *ar = acc + (size_t)i * hs;
                            float c = correction[i];
                            #pragma omp simd
                            for (int d = 0; d < hs; d++) ar[d] *= c;
                        }
                    }
                    // acc += p . v, with p[query][key] = st[key][query]
                    tile_product(acc, hs, st, 1, ATT_BQ, vp, hs, nq, nk, hs, 1);
                }
                for (int i = 0; i < nq; i++) {
                    float *o = out + ((size_t)b * T + i0 + i) * C + h * hs;
                    float inv = 1.0f / run_sum[i];
                    for (int d = 0; d < hs; d++) o[d] = acc[(size_t)i * hs + d] * inv;
                    lse[((size_t)b * NH + h) * T + i0 + i] = run_max[i] + logf(run_sum[i]);
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
// p is recomputed from the saved logsumexp: p = exp(s - lse).

void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                        const float *lse, int B, int T, int C, int NH, int causal) {
    profile_begin(PROFILE_ATTN_BWD, 0);
    int hs = C / NH;
    size_t C3 = 3 * (size_t)C;
    float scale = 1.0f / sqrtf((float)hs);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            float kt[hs * ATT_BK], vt[hs * ATT_BK]; // the key tile's k and v, transposed [hs][BK]
            float dk[ATT_BK * hs], dv[ATT_BK * hs]; // their gradients over all query tiles [BK][hs]
            float kp[ATT_BK * hs];                  // the key tile's k, packed [BK][hs]
            float qp[ATT_BQ * hs], dyp[ATT_BQ * hs]; // the query tile's q and dout, packed [BQ][hs]
            float p[ATT_BQ * ATT_BK], ds[ATT_BQ * ATT_BK];
            float D[T];
            const float *seq = qkv + (size_t)b * T * C3;
            float *dseq = dqkv + (size_t)b * T * C3;
            const float *lse_bh = lse + ((size_t)b * NH + h) * T;
            for (int t = 0; t < T; t++) {
                const float *dy = dout + ((size_t)b * T + t) * C + h * hs;
                const float *y = out + ((size_t)b * T + t) * C + h * hs;
                float s = 0.0f;
                #pragma omp simd reduction(+:s)
                for (int d = 0; d < hs; d++) s += dy[d] * y[d];
                D[t] = s;
            }
            for (int j0 = 0; j0 < T; j0 += ATT_BK) {
                int nk = T - j0 < ATT_BK ? T - j0 : ATT_BK;
                const float *k = seq + (size_t)j0 * C3 + C + h * hs;
                const float *v = seq + (size_t)j0 * C3 + 2 * C + h * hs;
                pack_rows(kp, k, C3, nk, hs);
                transpose_tile(kt, ATT_BK, kp, nk, hs);
                pack_rows(dv, v, C3, nk, hs); // dv as scratch before it is zeroed
                transpose_tile(vt, ATT_BK, dv, nk, hs);
                memset(dk, 0, sizeof(float) * nk * hs);
                memset(dv, 0, sizeof(float) * nk * hs);
                // causal: the first query tile that sees any of these keys
                int istart = causal ? (j0 / ATT_BQ) * ATT_BQ : 0;
                for (int i0 = istart; i0 < T; i0 += ATT_BQ) {
                    int nq = T - i0 < ATT_BQ ? T - i0 : ATT_BQ;
                    const float *q = seq + (size_t)i0 * C3 + h * hs;
                    const float *dy = dout + ((size_t)b * T + i0) * C + h * hs;
                    pack_rows(qp, q, C3, nq, hs);
                    pack_rows(dyp, dy, C, nq, hs);
                    tile_product(p, ATT_BK, qp, hs, 1, kt, ATT_BK, nq, hs, ATT_BK, 0);   // q . k
                    tile_product(ds, ATT_BK, dyp, hs, 1, vt, ATT_BK, nq, hs, ATT_BK, 0); // dp = dout . v
                    for (int r = 0; r < nq; r++) {
                        float *pr = p + (size_t)r * ATT_BK, *dsr = ds + (size_t)r * ATT_BK;
                        int n = visible_keys(i0 + r, j0, nk, causal);
                        float l = lse_bh[i0 + r], Dr = D[i0 + r];
                        #pragma omp simd
                        for (int j = 0; j < n; j++) {
                            float pj = vexpf(pr[j] * scale - l);
                            pr[j] = pj;
                            dsr[j] = pj * (dsr[j] - Dr) * scale; // scale: ds here is d(q.k)
                        }
                        for (int j = n; j < nk; j++) { pr[j] = 0.0f; dsr[j] = 0.0f; }
                    }
                    // dv += p^T dout, dk += ds^T q (a(m=key, k=query) = p[query][key])
                    tile_product(dv, hs, p, 1, ATT_BK, dyp, hs, nk, nq, hs, 1);
                    tile_product(dk, hs, ds, 1, ATT_BK, qp, hs, nk, nq, hs, 1);
                    // dq += ds . k, straight into dqkv: this thread owns the head
                    tile_product(dseq + (size_t)i0 * C3 + h * hs, C3, ds, ATT_BK, 1, kp, hs, nq, nk, hs, 1);
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

