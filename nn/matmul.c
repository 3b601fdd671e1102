// The linear layer (matmul_forward / matmul_backward) and the SGEMM under it.
//
// The math comes first, as plain loops: matmul_forward_ref and
// matmul_backward_ref compute what the fast versions compute, one sum at a
// time (test_matmul compares the two, and both against double precision).
// The rest of the file is the fast version.
#include "nn/matmul.h"
#include "common/profile.h"

#include "common/bf16.h"
#include "common/utils.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

// ---------------------------------------------------------------------------
// The math, plainly (llm.c's matmul_forward_naive): the references the tests
// compare the fast layer against. fp32, one sum per output in the order of k.

// out[BT,OC] = inp[BT,C] @ weight[OC,C]^T + bias[OC]        (bias may be NULL)
void matmul_forward_ref(float *out, const float *inp, const float *weight, const float *bias,
                        int BT, int C, int OC) {
    for (int b = 0; b < BT; b++)
        for (int o = 0; o < OC; o++) {
            float sum = bias ? bias[o] : 0.0f;
            for (int c = 0; c < C; c++) sum += inp[(size_t)b * C + c] * weight[(size_t)o * C + c];
            out[(size_t)b * OC + o] = sum;
        }
}

// dinp[BT,C] += dout @ weight, dweight[OC,C] += dout^T @ inp, dbias[OC] += column sums of dout
// (dinp and dbias may be NULL)
void matmul_backward_ref(float *dinp, float *dweight, float *dbias,
                         const float *dout, const float *inp, const float *weight,
                         int BT, int C, int OC) {
    for (int b = 0; b < BT; b++)
        for (int o = 0; o < OC; o++) {
            float d = dout[(size_t)b * OC + o];
            for (int c = 0; c < C; c++) {
                if (dinp) dinp[(size_t)b * C + c] += d * weight[(size_t)o * C + c];
                dweight[(size_t)o * C + c] += d * inp[(size_t)b * C + c];
            }
            if (dbias) dbias[o] += d;
        }
}

// ---------------------------------------------------------------------------
// The fast SGEMM: cache-blocked and OpenMP-parallel. Its loop nest is Goto's
// (the one behind BLIS and OpenBLAS):
//
//   for jc over N in steps of NC          B panel  [KC x NC]  (in L2/L3)
//     for pc over K in steps of KC        the only loop over K: fixed order
//       for ic over M in steps of MC      A block  [MC x KC]  (in L2)
//         for jr over the panel in NR     B sliver [KC x NR]  (in L1/L2)
//           for ir over the block in MR   A sliver [MR x KC]
//             micro-kernel: C[MR x NR] (+)= A sliver @ B sliver, in registers
//
// The micro-kernel keeps a 6 x 64 tile of C in 24 zmm registers; for each k
// it loads 64 values of B (4 vectors, contiguous) and broadcasts 6 values of
// A, one at a time. A broadcast does not care where its value lives, so A
// slivers are read in place, in either orientation. B must be contiguous along
// n: it is read in place when op(B) = B, and packed (transposed, 16x16 blocks
// in registers) into a [KC][NR] sliver when op(B) = B^T, the nn.Linear
// forward. Only slivers that stick out of the matrix (the last rows of A, the
// last columns of B) are copied into a zero-padded buffer, so one kernel
// computes every tile and only its store to C is masked.
//
// Except when a row stride is a multiple of 4 KiB (1024 floats: GPT-2's 4C =
// 3072, every width of a C = 1024 model): then the rows an operand read in
// place touches for k = 0, 1, 2, ... all fall in the same few cache sets, and
// the sliver that should stay in L1/L2 while it is reused keeps evicting
// itself (the GEMMs with a 3072-wide operand ran at half the speed of the
// others, make bench-bf16). Such a B is packed into slivers like B^T. And an
// A^T (the weight gradient's dout^T) is packed into an [MC x KC] block of
// k-major slivers when its stride aliases so, or when K spans more than one
// block: read in place, each k of a sliver is 6 floats of another cache line,
// reread by every sliver of B (packed: 124M's qkv dweight 245 -> 283 GFLOP/s
// on 2 threads). A copy changes no product and no order of the sums.
//
// At few rows (B*T = 64 at GPT-2 XL) the weights and the weight gradient
// stream from memory and are used once per product; three things keep the
// kernel fed (make bench-gemm-xl): the kernel prefetches what the next tile
// will read from memory (its C, its A rows read in place, a B sliver read in
// place for the first time); with one A block or one K block a panel spans
// all of N; with one K block the tiles go row by row, so rows of C stream.
//
// Determinism: each C element is accumulated over k = 0..K-1 in order, one
// fused multiply-add at a time, inside one KC block, and the blocks are added
// to C in order. Neither KC nor the kernel depend on the number of threads;
// threads only split the M x N output into rectangles, so 1 and 2 threads give
// bitwise identical results.

// ---------------------------------------------------------------------------
// Blocking constants (Zen 5: 48 KiB L1d, 1 MiB L2 per core).
// MR x NR is the register tile: 6 rows x 64 columns = 6 x 4 zmm accumulators
// (24 of the 32 registers), 4 more for the B row, one for the broadcast. 64
// divides every GPT-2 width (768, 2304, 3072, 50304) and the ViT's powers of
// two; 6 divides the GPT-2 output widths, and a BT of 256 wastes 2 rows of 258.
// (8 x 48 is as fast on GPT-2 but pads a 64-wide ViT layer to 96 columns.)
#ifndef MR
#define MR 6
#endif
#ifndef NR
#define NR 64
#endif
#ifndef KC
#define KC 512   // k-depth of one block: a C tile is loaded and stored K/KC times
#endif
#ifndef MC
#define MC 126   // rows of A per block (multiple of MR)
#endif
#ifndef NC
#define NC 768   // columns of B per panel (multiple of NR)
#endif
_Static_assert(MC % MR == 0 && NC % NR == 0 && NR % 16 == 0, "blocking must tile");
// A written-only C bigger than this goes to memory with non-temporal stores
// (gemm): Zen 5's L3, 32 MiB per 8-core complex
#ifndef STREAM_C_BYTES
#define STREAM_C_BYTES ((size_t)32 << 20)
#endif

static inline int min_int(int a, int b) { return a < b ? a : b; }
static inline int ceil_div(int a, int b) { return (a + b - 1) / b; }
// rows this far apart map to the same cache sets (above)
static inline int stride_aliases(int ld) { return (size_t)ld * sizeof(float) % 4096 == 0; }

// What the kernel does with a finished tile: the first KC block computes
//   C = alpha * acc + beta * C + bias      (beta == 0: C is not read)
// and later blocks add C += alpha * acc (beta = 1, no bias).
typedef struct {
    float alpha, beta;
    const float *bias;  // [NR] slice for this tile, or NULL
} Epilogue;

// What the kernel may fetch ahead for the next tile (NULL: nothing): the
// rows of the next A sliver (read in place), the next B sliver (in place,
// row stride as this one's), the next tile of C.
typedef struct {
    const float *a, *b, *c;
} Prefetch;

#ifdef __AVX512F__
static inline __mmask16 tail_mask(int n) {  // the lowest n of 16 lanes
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}
#endif

// ---------------------------------------------------------------------------
// Packing: copies into the layouts the kernel reads, zero-padded.

// A block of mc rows (a multiple of MR) when op(A) = A^T, as k-major slivers:
// dst[(r / MR) * KC * MR + k * MR + r % MR] = op(A)[i0+r, p0+k] = A[p0+k, i0+r],
// each row of A read once, along its contiguous run.
static void pack_A_block_T(float *dst, const float *A, int lda, int i0, int mc, int p0, int kc) {
    // 16 rows at a time, sliver by sliver: each sliver gets 16 x MR floats,
    // whole cache lines, before the next. (Row by row, each row's MR values
    // went to mc / MR slivers KC * MR floats apart, all in the same L1 sets,
    // and the partly written lines kept evicting each other: the copy took
    // 12% of a 124M weight gradient's time.)
    for (int k0 = 0; k0 < kc; k0 += 16)
        for (int s = 0; s < mc / MR; s++)
            for (int k = k0; k < min_int(kc, k0 + 16); k++) {
                const float *src = A + (size_t)(p0 + k) * lda + i0 + s * MR;
                float *out = dst + (size_t)s * KC * MR + k * MR;
#ifdef __AVX512F__
                const __mmask16 m = (__mmask16)((1u << MR) - 1u);  // one masked load and store
                _mm512_mask_storeu_ps(out, m, _mm512_maskz_loadu_ps(m, src));
#else
                for (int r = 0; r < MR; r++) out[r] = src[r];
#endif
            }
}

// The last mv < MR rows of an A block, k-major: dst[k * MR + r] = op(A)[i0+r, p0+k].
static void pack_A_edge(float *dst, const float *A, int lda, int transA, int i0, int mv, int p0, int kc) {
    for (int k = 0; k < kc; k++)
        for (int r = 0; r < MR; r++)
            dst[k * MR + r] = r >= mv ? 0.0f
                              : transA ? A[(size_t)(p0 + k) * lda + i0 + r]
                                       : A[(size_t)(i0 + r) * lda + p0 + k];
}

#ifdef __AVX512F__
// In-register transpose of a 16x16 block: on entry r[i] is row i, on exit
// r[j] is column j. Interleave 32-bit pairs, then 64-bit pairs, then gather
// 128-bit lanes twice.
static inline void transpose16x16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    // within each 128-bit lane L: t[i] = (a_4L, b_4L, a_4L+1, b_4L+1), t[i+1] = (a_4L+2, ...)
    for (int i = 0; i < 16; i += 4) {
        __m512d t0 = _mm512_castps_pd(t[i]), t1 = _mm512_castps_pd(t[i + 1]);
        __m512d t2 = _mm512_castps_pd(t[i + 2]), t3 = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    // lane L of r[4q+s] now holds column 4L+s of rows 4q..4q+3: gather lane L
    // of r[s], r[4+s], r[8+s], r[12+s] into column 4L+s
    for (int s = 0; s < 4; s++) {
        __m512 u0 = _mm512_shuffle_f32x4(r[s], r[4 + s], 0x44);
        __m512 u1 = _mm512_shuffle_f32x4(r[s], r[4 + s], 0xEE);
        __m512 v0 = _mm512_shuffle_f32x4(r[8 + s], r[12 + s], 0x44);
        __m512 v1 = _mm512_shuffle_f32x4(r[8 + s], r[12 + s], 0xEE);
        t[s] = _mm512_shuffle_f32x4(u0, v0, 0x88);
        t[4 + s] = _mm512_shuffle_f32x4(u0, v0, 0xDD);
        t[8 + s] = _mm512_shuffle_f32x4(u1, v1, 0x88);
        t[12 + s] = _mm512_shuffle_f32x4(u1, v1, 0xDD);
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}
#endif

// One B sliver, [kc][NR]: dst[k * NR + c] = op(B)[p0+k, j0+c] for c < nv, else 0.
static void pack_B_sliver(float *dst, const float *B, int ldb, int transB, int j0, int nv, int p0, int kc) {
#ifdef __AVX512F__
    if (!transB) {
        for (int k = 0; k < kc; k++)
            for (int v = 0; v < NR; v += 16)
                _mm512_store_ps(dst + k * NR + v,
                                _mm512_maskz_loadu_ps(tail_mask(nv - v), B + (size_t)(p0 + k) * ldb + j0 + v));
        return;
    }
    // op(B) = B^T: column j of op(B) is row j of B, contiguous in k; take 16
    // columns by 16 k at a time and transpose them in registers
    for (int v = 0; v < NR; v += 16)
        for (int k0 = 0; k0 < kc; k0 += 16) {
            __m512 r[16];
            __mmask16 km = tail_mask(kc - k0);
            for (int c = 0; c < 16; c++)
                r[c] = v + c < nv ? _mm512_maskz_loadu_ps(km, B + (size_t)(j0 + v + c) * ldb + p0 + k0)
                                  : _mm512_setzero_ps();
            transpose16x16(r);
            for (int kk = 0; kk < min_int(16, kc - k0); kk++) _mm512_store_ps(dst + (k0 + kk) * NR + v, r[kk]);
        }
#else
    for (int k = 0; k < kc; k++)
        for (int c = 0; c < NR; c++)
            dst[k * NR + c] = c >= nv ? 0.0f
                              : transB ? B[(size_t)(j0 + c) * ldb + p0 + k]
                                       : B[(size_t)(p0 + k) * ldb + j0 + c];
#endif
}

// ---------------------------------------------------------------------------
// The micro-kernel: acc[MR][NR] = sum over k of a(r,k) * b[k][c], then the
// epilogue writes the top-left mv x nv corner of the tile into C.
//   A sliver: a(r,k) = a[r * as + k]  (rows: op(A) = A)   when a_kmajor == 0
//                      a[k * as + r]  (op(A) = A^T, or a packed edge) when 1
//   B sliver: b(k,c) = b[k * bs + c]
#ifdef __AVX512F__
#define NV (NR / 16)

static inline __attribute__((always_inline)) void
kernel_loop(int kc, const float *a, size_t as, int a_kmajor, const float *b, size_t bs, __m512 acc[MR][NV],
            const float *pf_a, const float *pf_b) {
    for (int k0 = 0; k0 < kc; k0 += 16) {
        // every 16 k: one cache line of each row of the next A sliver, when
        // A rows stream from memory (the forward's weights)
        if (pf_a)
            for (int r = 0; r < MR; r++) _mm_prefetch((const char *)(pf_a + r * as + k0), _MM_HINT_T0);
        int k1 = min_int(kc, k0 + 16);
        for (int k = k0; k < k1; k++, b += bs) {
            // the next B sliver's row k, when B streams from memory in place
            if (pf_b)
                for (int v = 0; v < NV; v++) _mm_prefetch((const char *)(pf_b + k * bs + 16 * v), _MM_HINT_T0);
            __m512 bv[NV];
            for (int v = 0; v < NV; v++) bv[v] = _mm512_loadu_ps(b + 16 * v);
            for (int r = 0; r < MR; r++) {
                __m512 ar = _mm512_set1_ps(a_kmajor ? a[k * as + r] : a[r * as + k]);
                for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(ar, bv[v], acc[r][v]);
            }
        }
    }
}

// The epilogue: write the top-left mv x nv corner of the accumulated tile into C.
static inline __attribute__((always_inline)) void
store_tile(__m512 acc[MR][NV], float *c, size_t ldc, int mv, int nv, const Epilogue *e) {
    __m512 alpha = _mm512_set1_ps(e->alpha), beta = _mm512_set1_ps(e->beta);
    __mmask16 m[NV];
    __m512 bias[NV];
    for (int v = 0; v < NV; v++) {
        m[v] = tail_mask(nv - 16 * v);
        bias[v] = e->bias ? _mm512_maskz_loadu_ps(m[v], e->bias + 16 * v) : _mm512_setzero_ps();
    }
    for (int r = 0; r < mv; r++) {
        float *cr = c + (size_t)r * ldc;
        for (int v = 0; v < NV; v++) {
            __m512 out;
            if (e->beta == 0.0f) out = _mm512_mul_ps(alpha, acc[r][v]);
            else out = _mm512_fmadd_ps(alpha, acc[r][v],
                                       _mm512_mul_ps(beta, _mm512_maskz_loadu_ps(m[v], cr + 16 * v)));
            if (e->bias) out = _mm512_add_ps(out, bias[v]);
            _mm512_mask_storeu_ps(cr + 16 * v, m[v], out);
        }
    }
}

// store_tile for a C that is written, never read, and too big to stay in
// the caches (stream_c in gemm_block): full 16-float runs go straight to
// memory (non-temporal stores: no read for ownership of lines that are
// overwritten whole, no eviction of what the caches hold); c and ldc are
// 64-byte aligned. The values are store_tile's.
static inline __attribute__((always_inline)) void
stream_tile(__m512 acc[MR][NV], float *c, size_t ldc, int mv, int nv, float alpha) {
    __m512 alpha_v = _mm512_set1_ps(alpha);
    for (int r = 0; r < mv; r++) {
        float *cr = c + (size_t)r * ldc;
        for (int v = 0; v < NV; v++) {
            __m512 out = _mm512_mul_ps(alpha_v, acc[r][v]);
            if (nv >= 16 * (v + 1)) _mm512_stream_ps(cr + 16 * v, out);
            else _mm512_mask_storeu_ps(cr + 16 * v, tail_mask(nv - 16 * v), out);
        }
    }
}

// stream: C is written only (beta 0, no bias), with stream_tile; nothing of
// it is fetched
static void micro_kernel(int kc, const float *restrict a, size_t as, int a_kmajor, const float *restrict b,
                         size_t bs, float *c, size_t ldc, int mv, int nv, const Epilogue *e, const Prefetch *pf,
                         int stream) {
    // the next tile's C, when C streams from memory (dweight)
    if (pf->c)
        for (int r = 0; r < MR; r++) {
            const char *cr = (const char *)(pf->c + (size_t)r * ldc);
            for (int off = 0; off < 4 * NR; off += 64) _mm_prefetch(cr + off, _MM_HINT_ET0);
        }
    // C is needed only at the end: ask for its lines now (prefetchw: they will
    // be written) so that the misses, C being usually far bigger than the
    // caches, overlap the k loop
    for (int r = 0; r < (stream ? 0 : mv); r++) {
        const char *cr = (const char *)(c + (size_t)r * ldc);
        for (int off = 0; off < 4 * NR; off += 64) _mm_prefetch(cr + off, _MM_HINT_ET0);
        _mm_prefetch(cr + 4 * NR - 4, _MM_HINT_ET0);  // one more line when c is not 64-byte aligned
    }
    __m512 acc[MR][NV];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    // two copies of the loop, each with its A addressing fixed at compile time
    if (a_kmajor) kernel_loop(kc, a, as, 1, b, bs, acc, NULL, pf->b);
    else if (pf->a || pf->b) kernel_loop(kc, a, as, 0, b, bs, acc, pf->a, pf->b);
    else kernel_loop(kc, a, as, 0, b, bs, acc, NULL, NULL);

    if (stream) stream_tile(acc, c, ldc, mv, nv, e->alpha);
    else store_tile(acc, c, ldc, mv, nv, e);
}
#else
// portable version: the same arithmetic in plain C (the compiler vectorises
// the inner loop over columns where it can)
static void micro_kernel(int kc, const float *restrict a, size_t as, int a_kmajor, const float *restrict b,
                         size_t bs, float *c, size_t ldc, int mv, int nv, const Epilogue *e, const Prefetch *pf,
                         int stream) {
    (void)pf, (void)stream;
    float acc[MR][NR] = {{0}};
    for (int k = 0; k < kc; k++)
        for (int r = 0; r < MR; r++) {
            float ar = a_kmajor ? a[k * as + r] : a[r * as + k];
            for (int j = 0; j < NR; j++) acc[r][j] = fmaf(ar, b[k * bs + j], acc[r][j]);
        }
    for (int r = 0; r < mv; r++)
        for (int j = 0; j < nv; j++) {
            float *cp = c + (size_t)r * ldc + j;
            float out = e->beta == 0.0f ? e->alpha * acc[r][j] : fmaf(e->alpha, acc[r][j], e->beta * *cp);
            if (e->bias) out += e->bias[j];
            *cp = out;
        }
}
#endif

// ---------------------------------------------------------------------------
// Per-thread packing buffers, allocated on a thread's first call and kept for
// the life of the process (OpenMP reuses its threads). Thread-local rather
// than indexed by omp_get_thread_num() so that calls from inside somebody
// else's parallel region cannot share a buffer.
static __thread float *tls_pack_a, *tls_pack_b;
// matmul_forward with few rows: a chunk of the transposed output, [FWD_CHUNK][NR]
#define FWD_CHUNK 768
static __thread float *tls_fwd_chunk;


// One thread's share: rows m0..m1-1, columns n0..n1-1 of C, all of K.
//
// The tiles of one A block and B panel go column strip by column strip (jr
// outer, ir inner: a B sliver is reused by every A sliver while in L2) --
// except when all of K fits one block (the weight gradient at few rows,
// K = B*T): then C is the big operand, read and written once, and the tiles
// go row by row (ir outer) so that each row of C streams through contiguous
// memory. The order of the tiles changes no sum. stream_c (see gemm): C is
// only written, with non-temporal stores.
static void gemm_block(int transA, int transB, int m0, int m1, int n0, int n1, int K,
                       float alpha, const float *A, int lda, const float *B, int ldb,
                       float beta, float *C, int ldc, const float *bias, int stream_c) {
    if (!tls_pack_a) {
        tls_pack_a = alloc_big_floats((size_t)KC * (MC + MR), "matmul packing buffer (A block and edge)");
        tls_pack_b = alloc_big_floats((size_t)KC * NC, "matmul packing buffer (B panel)");
    }
    float *a_block = tls_pack_a, *a_edge = tls_pack_a + (size_t)KC * MC, *b_panel = tls_pack_b;
    const int rows_first = K <= KC;
    const int pack_a = transA && (stride_aliases(lda) || K > KC), pack_b = transB || stride_aliases(ldb);
    // B panels are NC wide so that a packed panel stays in L2 while every A
    // block uses it. Read in place, B needs no buffer (only its last, partial
    // sliver is copied, to slot 0), and when there is one A block nothing is
    // reused across panels: then one panel spans all of N, the longest
    // contiguous runs through the weight (dinp). With one K block (dweight)
    // every row of tiles reads the panel's all K rows of B again: a panel is
    // then as wide as keeps them in half the L2 (all of N for GPT-2 XL's
    // 64 x 1600 input; its 64 x 6400 one, read from L3 for every row of tiles,
    // ran the product at 3/4 of the others' speed), in equal parts.
    int panel = NC;
    if (!pack_b && rows_first) {
        int fit = (int)((512u << 10) / ((size_t)K * sizeof(float)) / NR * NR), ncols = n1 - n0;
        int npanels = fit >= NR ? ceil_div(ncols, fit) : ceil_div(ncols, NR);
        panel = ceil_div(ceil_div(ncols, npanels), NR) * NR;
    } else if (!pack_b && m1 - m0 <= MC) {
        panel = n1 - n0;
    }
    // With one K block, B read in place in several panels and A the bigger
    // operand (dout^T of the LM head's weight gradient: 103 MB a chunk at
    // 124M), A would come from memory once per panel: then each A block goes
    // through every panel before the next (its slivers stay in L2; the panels,
    // K x panel floats each, come from L3; logits dweight 300 -> 333 GFLOP/s).
    // The order of the tiles changes no sum.
    int rows_step = rows_first && !pack_b && panel < n1 - n0 && m1 - m0 > n1 - n0 ? MC : m1 - m0;
    for (int row0 = m0; row0 < m1; row0 += rows_step)
    for (int jc = n0; jc < n1; jc += panel) {
        int nc = min_int(panel, n1 - jc);
        for (int pc = 0; pc < K; pc += KC) {
            int kc = min_int(KC, K - pc);
            // B slivers that cannot be read in place go to the panel buffer
            for (int jr = 0; jr < nc; jr += NR)
                if (pack_b || jr + NR > nc)
                    pack_B_sliver(b_panel + (size_t)(pack_b ? jr / NR : 0) * KC * NR, B, ldb, transB, jc + jr,
                                  min_int(NR, nc - jr), pc, kc);
            Epilogue e = {alpha, pc == 0 ? beta : 1.0f, NULL};
            for (int ic = row0; ic < min_int(m1, row0 + rows_step); ic += MC) {
                int mc = min_int(MC, m1 - ic), mfull = mc / MR * MR;
                if (pack_a) pack_A_block_T(a_block, A, lda, ic, mfull, pc, kc);
                if (mfull < mc) pack_A_edge(a_edge, A, lda, transA, ic + mfull, mc - mfull, pc, kc);
                int ntiles_m = ceil_div(mc, MR), ntiles_n = ceil_div(nc, NR);
                for (int t = 0; t < ntiles_m * ntiles_n; t++) {
                    int ti = rows_first ? t / ntiles_n : t % ntiles_m;
                    int tj = rows_first ? t % ntiles_n : t / ntiles_m;
                    int ir = ti * MR, jr = tj * NR, nv = min_int(NR, nc - jr);
                    int in_place_b = !pack_b && jr + NR <= nc;
                    const float *b = in_place_b ? B + (size_t)pc * ldb + jc + jr
                                                : b_panel + (size_t)(pack_b ? jr / NR : 0) * KC * NR;
                    size_t bs = in_place_b ? (size_t)ldb : NR;
                    e.bias = pc == 0 && bias ? bias + jc + jr : NULL;
                    float *c = C + (size_t)(ic + ir) * ldc + jc + jr;
                    // what the next tile reads from memory, fetched during
                    // this one: its C, its rows of A when read in place (the
                    // forward's weights at few rows), and the next B sliver
                    // when read in place for the first time (dinp's weights)
                    Prefetch pf = {NULL, NULL, NULL};
                    if (t + 1 < ntiles_m * ntiles_n) {
                        int ni = rows_first ? (t + 1) / ntiles_n : (t + 1) % ntiles_m;
                        int nj = rows_first ? (t + 1) % ntiles_n : (t + 1) / ntiles_m;
                        if (!stream_c) pf.c = C + (size_t)(ic + ni * MR) * ldc + jc + nj * NR;
                        if (!transA && ni * MR < mfull) pf.a = A + (size_t)(ic + ni * MR) * lda + pc;
                        if (!rows_first && ic == m0 && ti == 0 && in_place_b && jr + 2 * NR <= nc) pf.b = b + NR;
                    }
                    if (ir < mfull && pack_a) {  // a full sliver of A, packed
                        micro_kernel(kc, a_block + (size_t)ti * KC * MR, MR, 1, b, bs, c, ldc, MR, nv, &e, &pf, stream_c);
                    } else if (ir < mfull) {  // a full sliver of A, in place
                        const float *a = transA ? A + (size_t)pc * lda + ic + ir : A + (size_t)(ic + ir) * lda + pc;
                        micro_kernel(kc, a, lda, transA, b, bs, c, ldc, MR, nv, &e, &pf, stream_c);
                    } else {
                        micro_kernel(kc, a_edge, MR, 1, b, bs, c, ldc, mc - mfull, nv, &e, &pf, stream_c);
                    }
                }
            }
        }
    }
#ifdef __AVX512F__
    // non-temporal stores are weakly ordered: make them visible before the
    // threads' barrier (or the return)
    if (stream_c) _mm_sfence();
#endif
}

// ---------------------------------------------------------------------------
// bf16 products (AVX-512 BF16). What they compute:
//
//   C = alpha * bf16(op(A)) @ bf16(op(B)) + beta * C (+ bias)
//
// every input rounded to bf16 (nearest, ties to even; denormals flushed to
// zero, as the conversion instruction does), the products exact in fp32 (8 x 8
// significant bits), the sums in fp32. sgemm_bf16_ref below is this definition
// written out, in double.
//
// vdpbf16ps multiplies pairs: for each of its 16 lanes it adds
// x[2j] * y[2j] + x[2j+1] * y[2j+1] to an fp32 accumulator. Both operands are
// therefore packed as 32-bit words that each hold two consecutive k values
// (k even in the low half), converted to bf16 while packing:
//   A block   [MC rows][KC/2 words]  (op(A) = A: each row converted in place order)
//             [KC/2][ASTRIDE_T words] (op(A) = A^T: two rows of A interleaved)
//   B sliver  [KC/2][NR words]       (both orientations)
// The kernel is the fp32 one with pairs for k: a 6 x 64 tile of C in 24 zmm
// registers, per pair 4 vectors of B and 6 broadcast words of A. The thread
// split and the fixed order of each sum are gemm's and gemm_block's, so the
// result does not depend on the number of threads either; the loop nest
// (gemm_block_bf16) packs A once per K block.
#ifdef __AVX512BF16__
#ifndef KC_BF16
#define KC_BF16 512  // k-depth of one block (256 pairs)
#endif
// matmul_k_block() reports KC for both precisions (the LM head's row chunks
// rely on it to give the bits of one product)
_Static_assert(KC_BF16 == KC, "matmul_k_block() must report the bf16 K block too");
#define ASTRIDE_T 128   // words per pair in a transposed A block (>= MC, a multiple of 16)
_Static_assert(ASTRIDE_T >= MC && ASTRIDE_T % 16 == 0 && KC_BF16 % 32 == 0, "bf16 packing must tile");

// One packed A block (MC rows x KC_BF16), in either orientation's layout, in words.
#define A_BLOCK_BF16_WORDS ((size_t)(MC * (KC_BF16 / 2) > (KC_BF16 / 2) * ASTRIDE_T ? MC * (KC_BF16 / 2) : (KC_BF16 / 2) * ASTRIDE_T))
// A blocks packed at once: up to A_CHUNK_BLOCKS * MC = 4158 rows, all of a
// GPT-2 product's BT = 4096 (4.1 MiB per thread, read from L3)
#define A_CHUNK_BLOCKS 33
// ... except with a shared B (SHARE_B below), which no chunk repacks: then
// chunks of 4 blocks (504 rows, 512 KiB), which stay in L2 beside the B
// sliver (see gemm_block_bf16)
#define A_CHUNK_BLOCKS_SHARED_B 4
#define PACK_A_BF16_WORDS (A_CHUNK_BLOCKS * A_BLOCK_BF16_WORDS)
// One B sliver [KC_BF16/2][NR], and the slivers packed at once: a panel of
// up to NC_BF16 columns (1.5 MiB)
#define SLIVER_BF16_WORDS ((size_t)(KC_BF16 / 2) * NR)
#define NC_BF16 1536
#define PACK_B_BF16_WORDS ((NC_BF16 / NR) * SLIVER_BF16_WORDS)

// 32 floats x[0..31] (lo = x[0..15], hi = x[16..31]) -> 16 words, word i = (bf16 x[2i], bf16 x[2i+1])
static inline __m512i bf16_pairs(__m512 lo, __m512 hi) { return (__m512i)_mm512_cvtne2ps_pbh(hi, lo); }

// two rows x (k even) and y (k+1) of 16 columns -> word c = (bf16 x[c], bf16 y[c])
static inline __m512i bf16_interleave(__m512 x, __m512 y) {
    const __m512i lo_idx = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi_idx = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    return bf16_pairs(_mm512_permutex2var_ps(x, lo_idx, y), _mm512_permutex2var_ps(x, hi_idx, y));
}

// The packers fetch their fp32 source this far ahead of the conversion
// (software prefetch): rows of op(A) = A, pairs of rows of A^T and B, groups
// of 16 rows of B^T. Left to the hardware prefetcher, they waited on memory:
// their runs are short (a K block: 2 KiB of a row) and often 4 KiB-aliased
// (GPT-2's 3072-wide operands), and the operands of a 124M step come from
// DRAM (one thread, the step's products: 3.9% less time; dinp of fc 26 -> 19
// M cycles of packing, the logits' W^T 62 -> 38 M).
#define PACK_AHEAD_ROWS 4
#define PACK_AHEAD_PAIRS 2
#define PACK_AHEAD_COLS 16

// Two rows x (an even k) and y (the next k; NULL past the last one) of n
// values, zero-padded to width (a multiple of 16): word c = (bf16 x[c], bf16 y[c])
// (ahead, if not NULL: the same columns of a later pair of rows, the same
// distance apart, fetched meanwhile)
static inline void pack_row_pair_bf16(uint32_t *dst, const float *x, const float *y, int n, int width,
                                      const float *ahead) {
    for (int c0 = 0; c0 < width; c0 += 16) {
        if (ahead) {
            _mm_prefetch((const char *)(ahead + c0), _MM_HINT_T0);
            _mm_prefetch((const char *)(ahead + (y - x) + c0), _MM_HINT_T0);
        }
        __mmask16 m = tail_mask(n - c0);
        __m512 xv = _mm512_maskz_loadu_ps(m, x + c0);
        __m512 yv = y ? _mm512_maskz_loadu_ps(m, y + c0) : _mm512_setzero_ps();
        _mm512_store_si512(dst + c0, bf16_interleave(xv, yv));
    }
}

// The A blocks of a chunk: op(A)[i0 .. i0+m-1, p0 .. p0+kc-1] as blocks of MC
// rows, A_BLOCK_BF16_WORDS apart, each block's rows padded with zeros to a
// multiple of MR (and a last odd k paired with zero). A is read along its
// rows: op(A) = A row by row, op(A) = A^T a pair of rows at a time across
// all the chunk's blocks (one long contiguous run each rather than MC-wide
// pieces of rows thousands of floats apart).
static void pack_A_chunk_bf16(uint32_t *dst, const float *A, int lda, int transA, int i0, int m, int p0, int kc) {
    int kp = ceil_div(kc, 2), nblocks = ceil_div(m, MC);
    if (!transA) {  // block word r * KC_BF16/2 + p: row r of A, 32 k at a time
        for (int blk = 0; blk < nblocks; blk++) {
            int mc = min_int(MC, m - blk * MC), mpad = ceil_div(mc, MR) * MR;
            for (int r = 0; r < mpad; r++) {
                uint32_t *d = dst + blk * A_BLOCK_BF16_WORDS + (size_t)r * (KC_BF16 / 2);
                const float *row = A + (size_t)(i0 + blk * MC + r) * lda + p0;
                for (int k0 = 0; k0 < kc; k0 += 32) {
                    if (blk * MC + r + PACK_AHEAD_ROWS < m) {
                        const char *ahead = (const char *)(row + (size_t)PACK_AHEAD_ROWS * lda + k0);
                        _mm_prefetch(ahead, _MM_HINT_T0);
                        _mm_prefetch(ahead + 64, _MM_HINT_T0);
                    }
                    __m512 lo = _mm512_setzero_ps(), hi = lo;
                    if (r < mc) {
                        lo = _mm512_maskz_loadu_ps(tail_mask(kc - k0), row + k0);
                        hi = _mm512_maskz_loadu_ps(tail_mask(kc - k0 - 16), row + k0 + 16);
                    }
                    _mm512_store_si512(d + k0 / 2, bf16_pairs(lo, hi));
                }
            }
        }
        return;
    }
    // block word p * ASTRIDE_T + r: rows 2p and 2p+1 of A interleaved
    for (int p = 0; p < kp; p++) {
        const float *x = A + (size_t)(p0 + 2 * p) * lda + i0, *y = 2 * p + 1 < kc ? x + lda : NULL;
        for (int blk = 0; blk < nblocks; blk++) {
            int mc = min_int(MC, m - blk * MC);
            pack_row_pair_bf16(dst + blk * A_BLOCK_BF16_WORDS + (size_t)p * ASTRIDE_T, x + blk * MC,
                               y ? y + blk * MC : NULL, mc, ceil_div(mc, MR) * MR,
                               2 * (p + PACK_AHEAD_PAIRS) + 1 < kc ? x + blk * MC + (size_t)2 * PACK_AHEAD_PAIRS * lda : NULL);
        }
    }
}

// A panel of B slivers: columns j0 .. j0+n-1 of op(B) as slivers of NR
// columns, SLIVER_BF16_WORDS apart, each [kc/2][NR] words: word (p, c) =
// (bf16 op(B)[p0+2p, j0+c], bf16 op(B)[p0+2p+1, j0+c]), zero past the last
// column and for the missing partner of a last odd k.
static void pack_B_panel_bf16(uint32_t *dst, const float *B, int ldb, int transB, int j0, int n, int p0, int kc) {
    int kp = ceil_div(kc, 2), nslivers = ceil_div(n, NR);
    if (!transB) {  // rows 2p and 2p+1 of B interleaved, each read across the whole panel
        for (int p = 0; p < kp; p++) {
            const float *x = B + (size_t)(p0 + 2 * p) * ldb + j0, *y = 2 * p + 1 < kc ? x + ldb : NULL;
            for (int s = 0; s < nslivers; s++)
                pack_row_pair_bf16(dst + s * SLIVER_BF16_WORDS + (size_t)p * NR, x + s * NR, y ? y + s * NR : NULL,
                                   min_int(NR, n - s * NR), NR,
                                   2 * (p + PACK_AHEAD_PAIRS) + 1 < kc ? x + s * NR + (size_t)2 * PACK_AHEAD_PAIRS * ldb
                                                                       : NULL);
        }
        return;
    }
    // op(B) = B^T: column c of op(B) is row c of B, contiguous in k, so its
    // pairs are its 32 consecutive values converted; 16 columns x 16 pairs are
    // then transposed in registers as 32-bit words
    for (int s = 0; s < nslivers; s++) {
        uint32_t *sliver = dst + s * SLIVER_BF16_WORDS;
        int nv = min_int(NR, n - s * NR);
        for (int v = 0; v < NR; v += 16)
            for (int k0 = 0; k0 < kc; k0 += 32) {
                __m512 r[16];
                __mmask16 mlo = tail_mask(kc - k0), mhi = tail_mask(kc - k0 - 16);
                if (s * NR + v + PACK_AHEAD_COLS + 16 <= n)
                    for (int c = 0; c < 16; c++) {
                        const char *ahead = (const char *)(B + (size_t)(j0 + s * NR + v + PACK_AHEAD_COLS + c) * ldb + p0 + k0);
                        _mm_prefetch(ahead, _MM_HINT_T0);
                        _mm_prefetch(ahead + 64, _MM_HINT_T0);
                    }
                for (int c = 0; c < 16; c++) {
                    const float *row = B + (size_t)(j0 + s * NR + v + c) * ldb + p0 + k0;
                    r[c] = v + c < nv ? _mm512_castsi512_ps(bf16_pairs(_mm512_maskz_loadu_ps(mlo, row),
                                                                       _mm512_maskz_loadu_ps(mhi, row + 16)))
                                      : _mm512_setzero_ps();
                }
                transpose16x16(r);
                for (int pp = 0; pp < min_int(16, kp - k0 / 2); pp++)
                    _mm512_store_ps((float *)(sliver + (size_t)(k0 / 2 + pp) * NR + v), r[pp]);
            }
    }
}

static inline __attribute__((always_inline)) void
kernel_loop_bf16(int kp, const uint32_t *a, size_t as, int a_kmajor, const uint32_t *b, __m512 acc[MR][NV]) {
    for (int p = 0; p < kp; p++, b += NR) {
        __m512bh bv[NV];
        for (int v = 0; v < NV; v++) bv[v] = (__m512bh)_mm512_load_si512(b + 16 * v);
        for (int r = 0; r < MR; r++) {
            __m512bh ar = (__m512bh)_mm512_set1_epi32((int)(a_kmajor ? a[p * as + r] : a[r * as + p]));
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], ar, bv[v]);
        }
    }
}

// acc = sum over the kp pairs of A sliver (word (r, p) at a[r * as + p], or
// a[p * as + r] when a_kmajor) times the B sliver b[p * NR + c], then the epilogue
static void micro_kernel_bf16(int kp, const uint32_t *restrict a, size_t as, int a_kmajor,
                              const uint32_t *restrict b, float *c, size_t ldc, int mv, int nv, const Epilogue *e) {
    for (int r = 0; r < mv; r++) {  // as in micro_kernel: C's lines on their way during the k loop
        const char *cr = (const char *)(c + (size_t)r * ldc);
        for (int off = 0; off < 4 * NR; off += 64) _mm_prefetch(cr + off, _MM_HINT_ET0);
        _mm_prefetch(cr + 4 * NR - 4, _MM_HINT_ET0);
    }
    __m512 acc[MR][NV];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    if (a_kmajor) kernel_loop_bf16(kp, a, as, 1, b, acc);
    else kernel_loop_bf16(kp, a, as, 0, b, acc);
    store_tile(acc, c, ldc, mv, nv, e);
}

static __thread uint32_t *tls_pack_a_bf16, *tls_pack_b_bf16;

// One operand converted once per product, shared by the team: when the
// threads split only the rows of C, each would convert all of op(B); when
// they split only the columns, all of op(A). Instead they convert a part each
// (whole B slivers or A blocks, every K block of them) into this buffer
// before the product, wait for each other once, and all read it. One wait
// per product, not one per K block: on a loaded machine a thread that waits
// for a descheduled partner at every K block lost more than the sharing
// saved (bench_gemm_bf16, 2 threads under a load average of 3).
enum { SHARE_NONE, SHARE_A, SHARE_B };
#define SHARED_BF16_WORDS ((size_t)2 << 20)  // 8 MiB: e.g. all of a 4096 x 768 op(B)
static uint32_t *shared_pack_bf16;

// The words one K block of the shared operand takes: all of op(A)'s row
// blocks, or all of op(B)'s slivers
static size_t shared_block_words(int share, int M, int N) {
    return share == SHARE_A ? (size_t)ceil_div(M, MC) * A_BLOCK_BF16_WORDS : (size_t)ceil_div(N, NR) * SLIVER_BF16_WORDS;
}

// Which operand a tm x tn split of C[M,N] (K deep) shares: the one every
// thread would otherwise convert in full, if all its K blocks fit the buffer
// (and, for A, are one chunk of rows)
static int bf16_share(int tm, int tn, int M, int N, int K) {
    int share = tm == 1 && tn > 1 && M <= A_CHUNK_BLOCKS * MC ? SHARE_A : tn == 1 && tm > 1 ? SHARE_B : SHARE_NONE;
    if (share != SHARE_NONE && (size_t)ceil_div(K, KC_BF16) * shared_block_words(share, M, N) > SHARED_BF16_WORDS)
        share = SHARE_NONE;
    return share;
}

// gemm_block with both operands packed as bf16 pairs. Unlike gemm_block, the
// loop nest packs every A block of a chunk of rows (all of a thread's rows,
// up to 4158) once per K block, and then sweeps the chunk's rows for each B
// sliver:
//
//   (shared operand: each thread of the team packs its part of all K blocks; barrier)
//   for pc over K in steps of KC_BF16
//     for each chunk of up to A_CHUNK_BLOCKS blocks of MC rows: pack them (bf16 pairs)
//       for jc over the columns in NC_BF16: pack a panel of B slivers [KC_BF16/2][NR]
//         for jr over the panel in NR (the sliver, 64 KiB, stays in L2)
//           for every MR rows of the chunk: micro-kernel
//
// A is converted once per K block instead of once per NC-wide panel of B
// (the logits' forward has 33 panels per thread); B once per chunk, for 2 x
// 4158 flops per value. Both are read along their rows (see the packers). An
// A sliver is 6 KiB, read from L3 in the order it was written while the
// kernel computes 393 kflops on it: the A block need not stay in L2 as in
// the fp32 nest. With share = SHARE_A (this thread is `t` of a team of `nt`
// that splits only columns, so its rows are all of M, one chunk) the chunk is
// the team's shared buffer instead; with SHARE_B (the team splits only rows,
// so its columns are all of N) the panels are views of it. Blocks and slivers
// start at multiples of MC and NR from 0 either way, so a shared one holds
// the same words the thread would have packed. The sums are gemm_block's
// (each element over the K blocks in order, the pairs in order within one),
// so the bits depend neither on the chunks, the panels, nor the sharing.
//
// With SHARE_B no chunk repacks B, so the chunks are small instead
// (A_CHUNK_BLOCKS_SHARED_B): the chunk then stays in L2 while the kernel
// sweeps it for every sliver. Read from L3, it did not survive a C that
// streams through the caches: the logits' weight gradient (C 50304 x 768,
// 154 MB per product) ran 14-24% faster on 2 threads in 504-row chunks.
static void gemm_block_bf16(int share, int t, int nt, int transA, int transB, int m0, int m1, int n0, int n1,
                            int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                            float beta, float *C, int ldc, const float *bias) {
    if (!tls_pack_a_bf16) {
        tls_pack_a_bf16 = alloc_big(PACK_A_BF16_WORDS * sizeof(uint32_t), "matmul bf16 packing buffer (A blocks)");
        tls_pack_b_bf16 = alloc_big(PACK_B_BF16_WORDS * sizeof(uint32_t), "matmul bf16 packing buffer (B panel)");
    }
    size_t shared_words = share == SHARE_NONE ? 0 : shared_block_words(share, M, N);
    if (share != SHARE_NONE) {
        int units = share == SHARE_A ? ceil_div(M, MC) : ceil_div(N, NR);
        int u0 = (int)((long)units * t / nt), u1 = (int)((long)units * (t + 1) / nt);
        for (int pc = 0; u0 < u1 && pc < K; pc += KC_BF16) {
            uint32_t *dst = shared_pack_bf16 + (size_t)(pc / KC_BF16) * shared_words;
            int kc = min_int(KC_BF16, K - pc);
            if (share == SHARE_A)
                pack_A_chunk_bf16(dst + (size_t)u0 * A_BLOCK_BF16_WORDS, A, lda, transA, u0 * MC,
                                  min_int(M, u1 * MC) - u0 * MC, pc, kc);
            else
                pack_B_panel_bf16(dst + (size_t)u0 * SLIVER_BF16_WORDS, B, ldb, transB, u0 * NR,
                                  min_int(N, u1 * NR) - u0 * NR, pc, kc);
        }
        #pragma omp barrier  // every part is packed
    }
    const int chunk_rows = (share == SHARE_B ? A_CHUNK_BLOCKS_SHARED_B : A_CHUNK_BLOCKS) * MC;
    for (int pc = 0; pc < K; pc += KC_BF16) {
        int kc = min_int(KC_BF16, K - pc), kp = ceil_div(kc, 2);
        Epilogue e = {alpha, pc == 0 ? beta : 1.0f, NULL};
        const uint32_t *shared = share == SHARE_NONE ? NULL : shared_pack_bf16 + (size_t)(pc / KC_BF16) * shared_words;
        for (int cs = m0; cs < m1; cs += chunk_rows) {
            int ce = min_int(m1, cs + chunk_rows);
            const uint32_t *a_chunk = tls_pack_a_bf16;
            if (share == SHARE_A) a_chunk = shared;
            else pack_A_chunk_bf16(tls_pack_a_bf16, A, lda, transA, cs, ce - cs, pc, kc);
            for (int jc = n0; jc < n1; jc += NC_BF16) {
                int nc = min_int(NC_BF16, n1 - jc);
                const uint32_t *b_panel = tls_pack_b_bf16;
                if (share == SHARE_B) b_panel = shared + (size_t)(jc / NR) * SLIVER_BF16_WORDS;
                else pack_B_panel_bf16(tls_pack_b_bf16, B, ldb, transB, jc, nc, pc, kc);
                for (int jr = 0; jr < nc; jr += NR) {
                    const uint32_t *b = b_panel + (size_t)(jr / NR) * SLIVER_BF16_WORDS;
                    int nv = min_int(NR, nc - jr);
                    e.bias = pc == 0 && bias ? bias + jc + jr : NULL;
                    for (int ic = cs; ic < ce; ic += MC) {
                        const uint32_t *a_block = a_chunk + (size_t)((ic - cs) / MC) * A_BLOCK_BF16_WORDS;
                        int mc = min_int(MC, ce - ic);
                        for (int ir = 0; ir < mc; ir += MR) {
                            float *c = C + (size_t)(ic + ir) * ldc + jc + jr;
                            int mv = min_int(MR, mc - ir);
                            if (transA) micro_kernel_bf16(kp, a_block + ir, ASTRIDE_T, 1, b, c, ldc, mv, nv, &e);
                            else micro_kernel_bf16(kp, a_block + (size_t)ir * (KC_BF16 / 2), KC_BF16 / 2, 0, b, c, ldc, mv, nv, &e);
                        }
                    }
                }
            }
        }
    }
}
#endif  // __AVX512BF16__

// ---------------------------------------------------------------------------
// Matrix-vector products (M == 1, e.g. sampling one token at a time): there
// is nothing to reuse, so skip packing and stream op(B) once, in parallel
// over output columns.

// dot product in a fixed order: 64 lanes of partial sums, then a fixed tree
static float dot(const float *x, const float *y, int n) {
#ifdef __AVX512F__
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int k = 0;
    for (; k + 64 <= n; k += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + k), _mm512_loadu_ps(y + k), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + k + 16), _mm512_loadu_ps(y + k + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + k + 32), _mm512_loadu_ps(y + k + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + k + 48), _mm512_loadu_ps(y + k + 48), s3);
    }
    for (; k < n; k += 16) {
        __mmask16 m = tail_mask(n - k);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + k), _mm512_maskz_loadu_ps(m, y + k), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
#else
    float s[8] = {0};
    int k = 0;
    for (; k + 8 <= n; k += 8)
        for (int l = 0; l < 8; l++) s[l] = fmaf(x[k + l], y[k + l], s[l]);
    for (; k < n; k++) s[0] = fmaf(x[k], y[k], s[0]);
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
#endif
}

static inline float finish(float acc, float alpha, float beta, const float *c, const float *bias, int j) {
    float out = beta == 0.0f ? alpha * acc : fmaf(alpha, acc, beta * *c);
    return bias ? out + bias[j] : out;
}

// c[N] = alpha * a[K] @ op(B) + beta * c (+ bias)
static void gemv(int transB, int N, int K, float alpha, const float *a, const float *B, int ldb,
                 float beta, float *c, const float *bias, int nthreads) {
    if (transB) {
        // c[j] = a . B[j, :]: one dot product per stored row of B
        #pragma omp parallel for schedule(static) num_threads(nthreads)
        for (int j = 0; j < N; j++)
            c[j] = finish(dot(a, B + (size_t)j * ldb, K), alpha, beta, c + j, bias, j);
    } else {
        // c[j] = sum_k a[k] B[k, j]: sweep the rows of B, accumulating a chunk
        // of columns that stays in L1
        enum { CHUNK = 512 };
        int nchunks = ceil_div(N, CHUNK);
        #pragma omp parallel for schedule(static) num_threads(nthreads)
        for (int ch = 0; ch < nchunks; ch++) {
            float acc[CHUNK];
            int j0 = ch * CHUNK, nj = min_int(CHUNK, N - j0);
            for (int j = 0; j < nj; j++) acc[j] = 0.0f;
            for (int k = 0; k < K; k++) {
                const float *row = B + (size_t)k * ldb + j0;
                float ak = a[k];
                for (int j = 0; j < nj; j++) acc[j] = fmaf(ak, row[j], acc[j]);
            }
            for (int j = 0; j < nj; j++) c[j0 + j] = finish(acc[j], alpha, beta, c + j0 + j, bias, j0 + j);
        }
    }
}

// ---------------------------------------------------------------------------
// The driver: checks, trivial cases, and the split of C between threads.

// C = beta * C (beta == 0: zero, without reading C)
static void scale_c(int M, int N, float beta, float *C, int ldc, const float *bias) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float *c = C + (size_t)i * ldc + j;
            float out = beta == 0.0f ? 0.0f : beta * *c;
            *c = bias ? out + bias[j] : out;
        }
}

static int threads_for(double flops) {
    if (omp_in_parallel()) return 1;   // already inside a parallel region
    if (flops < 1e6) return 1;         // a parallel region costs a few microseconds
    return omp_get_max_threads();
}

// The split of C[M,N] between nthreads threads: a tm x tn grid of rectangles
// on tile boundaries; thread t's is rows [m0, m1), columns [n0, n1).
typedef struct { int tm, tn; } Split;

// Minimise the tiles of the busiest thread, then the operand traffic
// repeated across threads (the tn threads of a row band all read its rows of
// A, the tm threads of a column band its columns of B).
// bf16 also counts what the busiest thread converts: its rows of A once per
// K block, its columns of B once per chunk of rows (gemm_block_bf16), about 2
// cycles a value against 6 for a tile's step of k, and of an operand the team
// shares (bf16_share) its part only.
static Split split_threads(int bf16, int M, int N, int K, int nthreads) {
    int mtiles = ceil_div(M, MR), ntiles = ceil_div(N, NR);
    Split sp = {1, 1};
    double best_tiles = 1e300, best_traffic = 1e300;
    for (int a = 1; a <= nthreads && a <= mtiles; a++) {
        int b = min_int(nthreads / a, ntiles);
        double tiles = (double)ceil_div(mtiles, a) * ceil_div(ntiles, b);
        double traffic = (double)b * M + (double)a * N;
#ifdef __AVX512BF16__
        if (bf16) {
            int rows = ceil_div(mtiles, a) * MR, cols = ceil_div(ntiles, b) * NR, share = bf16_share(a, b, M, N, K);
            double rows_converted = share == SHARE_A ? (double)rows / b : rows;
            double cols_converted = share == SHARE_B ? (double)cols / a : (double)cols * ceil_div(rows, A_CHUNK_BLOCKS * MC);
            tiles += (rows_converted + cols_converted) / 3.0;
        }
#else
        (void)bf16, (void)K;
#endif
        if (tiles < best_tiles || (tiles == best_tiles && traffic < best_traffic))
            best_tiles = tiles, best_traffic = traffic, sp.tm = a, sp.tn = b;
    }
    return sp;
}

static void split_rect(Split sp, int M, int N, int t, int *m0, int *m1, int *n0, int *n1) {
    int mtiles = ceil_div(M, MR), ntiles = ceil_div(N, NR), ti = t / sp.tn, tj = t % sp.tn;
    *m0 = min_int(M, (int)((long)mtiles * ti / sp.tm) * MR);
    *m1 = min_int(M, (int)((long)mtiles * (ti + 1) / sp.tm) * MR);
    *n0 = min_int(N, (int)((long)ntiles * tj / sp.tn) * NR);
    *n1 = min_int(N, (int)((long)ntiles * (tj + 1) / sp.tn) * NR);
}

// C = alpha * op(A) @ op(B) + beta * C, plus bias[N] on every row if non-NULL
// (bf16: the inputs rounded to bf16 first, see sgemm_bf16)
static void gemm(int bf16, int transA, int transB, int M, int N, int K, float alpha,
                 const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc, const float *bias) {
    if (M < 0 || N < 0 || K < 0) fail("sgemm: negative size M=%d N=%d K=%d", M, N, K);
    if (lda < (transA ? M : K) || lda < 1 || ldb < (transB ? K : N) || ldb < 1 || ldc < N || ldc < 1)
        fail("sgemm: leading dimension too small (M=%d N=%d K=%d lda=%d ldb=%d ldc=%d transA=%d transB=%d)",
             M, N, K, lda, ldb, ldc, transA, transB);
    if (M == 0 || N == 0) return;
    if (K == 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc, bias);
        return;
    }
    int nthreads = threads_for(2.0 * M * N * K);
    if (!bf16 && M == 1 && (!transA || lda == 1)) {
        gemv(transB, N, K, alpha, A, B, ldb, beta, C, bias, nthreads);
        return;
    }

    Split sp = split_threads(bf16, M, N, K, nthreads);
    // A C that is only written (beta 0, no bias), in one K block (each tile
    // stored once) and bigger than the last-level cache cannot stay there
    // for whoever reads it next: its tiles go to memory with non-temporal
    // stores (the weight gradient at few rows, written by the fused updates:
    // otherwise every line of it is first read from memory, then written
    // back). Same values, only the route to memory changes.
    int stream_c = !bf16 && beta == 0.0f && !bias && K <= KC && (size_t)M * N * sizeof(float) > STREAM_C_BYTES &&
                   (uintptr_t)C % 64 == 0 && ldc % 16 == 0;
#ifdef __AVX512BF16__
    int share = bf16 ? bf16_share(sp.tm, sp.tn, M, N, K) : SHARE_NONE;
    if (share != SHARE_NONE && !shared_pack_bf16)
        shared_pack_bf16 = alloc_big(SHARED_BF16_WORDS * sizeof(uint32_t), "matmul bf16 packing buffer (shared operand)");
#endif
    #pragma omp parallel num_threads(sp.tm * sp.tn)
    {
        // The team can be smaller than asked for (OMP_THREAD_LIMIT, OMP_DYNAMIC,
        // a busy runtime): then each thread takes every nt-th rectangle in
        // turn, none shared. A rectangle's sums do not depend on which thread
        // computes it, so the bits are the same.
        int nt = omp_get_num_threads(), rects = sp.tm * sp.tn;
        for (int t = omp_get_thread_num(); t < rects; t += nt) {
            int m0, m1, n0, n1;
            split_rect(sp, M, N, t, &m0, &m1, &n0, &n1);
#ifdef __AVX512BF16__
            // with a shared operand every thread of the team takes part in its
            // packing (and barriers), even one with no tiles
            int sh = nt == rects ? share : SHARE_NONE;
            if (bf16 && (sh != SHARE_NONE || (m0 < m1 && n0 < n1)))
                gemm_block_bf16(sh, t, nt, transA, transB, m0, m1, n0, n1, M, N, K,
                                alpha, A, lda, B, ldb, beta, C, ldc, bias);
            else if (!bf16 && m0 < m1 && n0 < n1)
#else
            if (m0 < m1 && n0 < n1)
#endif
                gemm_block(transA, transB, m0, m1, n0, n1, K, alpha, A, lda, B, ldb, beta, C, ldc, bias, stream_c);
        }
    }
}

void sgemm(int transA, int transB, int M, int N, int K, float alpha,
           const float *A, int lda, const float *B, int ldb,
           float beta, float *C, int ldc) {
    gemm(0, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL);
}

int sgemm_bf16_available(void) {
#ifdef __AVX512BF16__
    return __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

void sgemm_bf16(int transA, int transB, int M, int N, int K, float alpha,
                const float *A, int lda, const float *B, int ldb,
                float beta, float *C, int ldc) {
    if (!sgemm_bf16_available())
        fail("sgemm_bf16: %s", BF16_UNAVAILABLE);
    gemm(1, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL);
}

// The definition, plainly: round each input to bf16 (flushing denormals, as
// the instruction does), multiply exactly, sum in double.
static double bf16_value(float x) {
    float r = round_to_bf16(x);
    return fabsf(r) < FLT_MIN ? 0.0 : (double)r;
}

void sgemm_bf16_ref(int transA, int transB, int M, int N, int K, float alpha,
                    const float *A, int lda, const float *B, int ldb,
                    float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double sum = 0.0;
            for (int k = 0; k < K; k++) {
                float a = transA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                float b = transB ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                sum += bf16_value(a) * bf16_value(b);
            }
            float *c = C + (size_t)i * ldc + j;
            *c = (float)(alpha * sum + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
}

int matmul_k_block(void) { return KC; }

size_t matmul_thread_buffer_bytes(void) {
    size_t bytes = alloc_big_footprint((size_t)KC * MR * sizeof(float)) + alloc_big_footprint((size_t)KC * NC * sizeof(float)) +
                   alloc_big_footprint((size_t)FWD_CHUNK * NR * sizeof(float));
#if defined(PRECISION_BF16) && defined(__AVX512BF16__)
    bytes += alloc_big_footprint(PACK_A_BF16_WORDS * sizeof(uint32_t)) + alloc_big_footprint(PACK_B_BF16_WORDS * sizeof(uint32_t));
#endif
    return bytes;
}

size_t matmul_shared_buffer_bytes(void) {
#if defined(PRECISION_BF16) && defined(__AVX512BF16__)
    return alloc_big_footprint(SHARED_BF16_WORDS * sizeof(uint32_t));
#else
    return 0;
#endif
}

// ---------------------------------------------------------------------------
// The precision of the linear layers, fixed when this file is compiled:
// -DPRECISION_BF16 (make PRECISION=bf16) makes matmul_forward and
// matmul_backward use sgemm_bf16's arithmetic; sgemm itself stays fp32.
#ifdef PRECISION_BF16
#define LINEAR_BF16 1
const char *matmul_precision(void) { return "bf16"; }
// A binary built for bf16 stops before main on a CPU that lacks the
// instructions, rather than dying of SIGILL in its first product.
__attribute__((constructor)) static void require_bf16_cpu(void) {
    if (!sgemm_bf16_available()) {
        fprintf(stderr, "error: %s\n", BF16_UNAVAILABLE);
        exit(1);
    }
}
#else
#define LINEAR_BF16 0
const char *matmul_precision(void) { return "fp32"; }
#endif

// ---------------------------------------------------------------------------
// The linear layer.

// out[i * ldo + o] = t[o * BT + i] for o < no, i < BT: a chunk of the
// transposed output put back, 16 x 16 blocks transposed in registers (a
// plain loop reads t a float at a time, 256 bytes apart)
static void transpose_chunk(float *out, int ldo, const float *t, int no, int BT) {
#ifdef __AVX512F__
    for (int o0 = 0; o0 < no; o0 += 16)
        for (int i0 = 0; i0 < BT; i0 += 16) {
            __m512 r[16];
            __mmask16 im = tail_mask(BT - i0), om = tail_mask(no - o0);
            for (int j = 0; j < 16; j++)
                r[j] = o0 + j < no ? _mm512_maskz_loadu_ps(im, t + (size_t)(o0 + j) * BT + i0) : _mm512_setzero_ps();
            transpose16x16(r);
            for (int j = 0; j < min_int(16, BT - i0); j++) _mm512_mask_storeu_ps(out + (size_t)(i0 + j) * ldo + o0, om, r[j]);
        }
#else
    for (int i = 0; i < BT; i++)
        for (int o = 0; o < no; o++) out[(size_t)i * ldo + o] = t[(size_t)o * BT + i];
#endif
}

// Few rows (BT <= NR: one sequence of 64 tokens, say) use every weight only
// BT times, so packing weight^T (what gemm does with op(B) = B^T) would cost
// about as much as the product. Instead each thread takes chunks of
// FWD_CHUNK output features and computes out^T = weight @ inp^T there: the
// weight rows are read in place (as A, broadcast), only inp is packed, and
// the chunk, which stays in L2, is transposed into out. Every output is the
// same sum in the same order as gemm's (the bias first, beta 1 on the bias
// standing in for gemm's epilogue, then the KC blocks), so the two paths give
// the same bits (test_matmul checks).
static void forward_few_rows(float *out, const float *inp, const float *weight, const float *bias,
                             int BT, int C, int OC) {
    // equal chunks, a whole number per thread, at most FWD_CHUNK wide, a
    // multiple of MR: with chunks of FWD_CHUNK, OC 1600 on 2 threads would
    // split 1536 / 64 and one thread would wait most of the time
    int nthreads = threads_for(2.0 * BT * OC * C);
    int nchunks = nthreads * ceil_div(OC, FWD_CHUNK * nthreads);
    int width = min_int(FWD_CHUNK, ceil_div(ceil_div(OC, nchunks), MR) * MR);
    nchunks = ceil_div(OC, width);
    if (nthreads > nchunks) nthreads = nchunks;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int ch = 0; ch < nchunks; ch++) {
        if (!tls_fwd_chunk) tls_fwd_chunk = alloc_big_floats((size_t)FWD_CHUNK * NR, "matmul forward chunk");
        float *t = tls_fwd_chunk; // [no][BT]: t[o * BT + i] = out[i, o0 + o]
        int o0 = ch * width, no = min_int(width, OC - o0);
        if (bias)
            for (int o = 0; o < no; o++)
                for (int i = 0; i < BT; i++) t[(size_t)o * BT + i] = bias[o0 + o];
        gemm_block(0, 1, 0, no, 0, BT, C, 1.0f, weight + (size_t)o0 * C, C, inp, C, bias ? 1.0f : 0.0f, t, BT, NULL, 0);
        transpose_chunk(out + o0, OC, t, no, BT);
    }
}

void matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                    int BT, int C, int OC) {
    profile_begin(PROFILE_GEMM_FWD, 2.0 * BT * C * OC);
    if (!LINEAR_BF16 && BT > 1 && BT <= NR && C > 0 && OC > 0) {
        forward_few_rows(out, inp, weight, bias, BT, C, OC);
    } else {
        // out = inp @ weight^T + bias: weight [OC,C] is op(B) = B^T
        gemm(LINEAR_BF16, 0, 1, BT, OC, C, 1.0f, inp, C, weight, C, 0.0f, out, OC, bias);
    }
    profile_end();
}

// dbias[OC] += column sums of dout[BT,OC]. Threads own chunks of columns
// and sum each column over all rows in order, in registers, so the result
// does not depend on the chunk width or the number of threads.
#ifdef __AVX512F__
static inline __attribute__((always_inline)) void
sum_columns(float *dbias, const float *dout, int BT, int OC, int o0, int cw) {
    __m512 acc[16];
    __mmask16 m[16];
    for (int v = 0; v < cw / 16; v++) {
        acc[v] = _mm512_setzero_ps();
        m[v] = tail_mask(OC - o0 - 16 * v);
    }
    for (int b = 0; b < BT; b++) {
        const float *row = dout + (size_t)b * OC + o0;
        for (int v = 0; v < cw / 16; v++) acc[v] = _mm512_add_ps(acc[v], _mm512_maskz_loadu_ps(m[v], row + 16 * v));
    }
    for (int v = 0; v < cw / 16; v++) {
        float *d = dbias + o0 + 16 * v;
        _mm512_mask_storeu_ps(d, m[v], _mm512_add_ps(_mm512_maskz_loadu_ps(m[v], d), acc[v]));
    }
}
#else
static void sum_columns(float *dbias, const float *dout, int BT, int OC, int o0, int cw) {
    float acc[256] = {0};
    int no = min_int(cw, OC - o0);
    for (int b = 0; b < BT; b++)
        for (int o = 0; o < no; o++) acc[o] += dout[(size_t)b * OC + o0 + o];
    for (int o = 0; o < no; o++) dbias[o0 + o] += acc[o];
}
#endif

static void bias_backward(float *dbias, const float *dout, int BT, int OC) {
    int nthreads = threads_for(4.0 * BT * OC);
    // wide chunks (long contiguous reads per row) unless that leaves threads idle
    int cw = ceil_div(OC, 256) >= 4 * nthreads ? 256 : 64;
    int nchunks = ceil_div(OC, cw);
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int ch = 0; ch < nchunks; ch++) {
        if (cw == 256) sum_columns(dbias, dout, BT, OC, ch * 256, 256);
        else sum_columns(dbias, dout, BT, OC, ch * 64, 64);
    }
}

// write_*: the gradient is written (gemm's beta 0: never read), else added into (beta 1)
void matmul_backward_into(float *dinp, float *dweight, float *dbias,
                          const float *dout, const float *inp, const float *weight,
                          int BT, int C, int OC, int write_dinp, int write_dweight) {
    profile_begin(PROFILE_GEMM_BWD, 2.0 * BT * C * OC * (dinp ? 2 : 1));
    // dinp[BT,C] (+)= dout[BT,OC] @ weight[OC,C]
    if (dinp) gemm(LINEAR_BF16, 0, 0, BT, C, OC, 1.0f, dout, OC, weight, C, write_dinp ? 0.0f : 1.0f, dinp, C, NULL);
    // dweight[OC,C] (+)= dout^T @ inp[BT,C]: op(A) = dout^T, read in place k-major
    gemm(LINEAR_BF16, 1, 0, OC, C, BT, 1.0f, dout, OC, inp, C, write_dweight ? 0.0f : 1.0f, dweight, C, NULL);
    if (dbias) bias_backward(dbias, dout, BT, OC);
    profile_end();
}

void matmul_backward(float *dinp, float *dweight, float *dbias,
                     const float *dout, const float *inp, const float *weight,
                     int BT, int C, int OC) {
    matmul_backward_into(dinp, dweight, dbias, dout, inp, weight, BT, C, OC, 0, 0);
}
