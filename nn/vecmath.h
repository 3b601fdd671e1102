// exp and tanh written so that gcc vectorises them inside `#pragma omp simd`
// loops (glibc's expf/tanhf are scalar calls unless the whole file is built
// with -ffast-math, which we avoid because it assumes there are no NaNs).
// test_nn.c measures their error against the references below (libm in
// double): vexpf within 2 ulp on [-87.33, 88.37], vexp2f (and its AVX-512
// form) within 2 ulp wherever 2^x is a normal float, vtanhf and verff within
// 2e-7 absolute. NaN in gives NaN out.
#ifndef NN_VECMATH_H
#define NN_VECMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

// What the four compute, plainly: the tests' references.
static inline double vexpf_ref(float x) { return exp((double)x); }
static inline double vexp2f_ref(float x) { return exp2((double)x); }
static inline double vtanhf_ref(float x) { return tanh((double)x); }
static inline double verff_ref(float x) { return erf((double)x); }

// e^x: x = n ln2 + r with |r| <= ln2/2, e^r by its Taylor series to degree 7
// (truncation error < 5e-9, below float rounding), times 2^n built from bits.
static inline float vexpf(float x) {
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693145751953125f;     // ln 2 to 16 bits: n * ln2_hi is exact
    const float ln2_lo = 1.42860682030941723e-6f; // the rest of ln 2
    const float round_magic = 12582912.0f;        // 1.5 * 2^23: adding it rounds to an integer
    // below e^-87.34 the result would be denormal: flush to 0 (expf goes on
    // into denormals down to e^-103); above 88.376 (= 127.5 ln 2, where 2^n
    // would need n = 128) return inf, though e^x only overflows at 88.72.
    // The comparisons are false for NaN, so NaN flows through to the result.
    float xc = x < -87.33654f ? -87.33654f : (x > 88.37626f ? 88.37626f : x);
    float nf = xc * log2e + round_magic;
    uint32_t nbits;
    memcpy(&nbits, &nf, sizeof(nbits));
    nf -= round_magic;                            // n as a float
    float r = xc - nf * ln2_hi - nf * ln2_lo;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    // 2^n: the low bits of nbits hold n + 2^22 (two's complement of the magic's mantissa)
    int32_t n = (int32_t)(nbits & 0x7FFFFFu) - 0x400000;
    uint32_t scale_bits = (uint32_t)(n + 127) << 23;
    float scale;
    memcpy(&scale, &scale_bits, sizeof(scale));
    float y = p * scale;
    if (x < -87.33654f) y = 0.0f;
    if (x > 88.37626f) y = __builtin_inff();
    return y;
}

// 2^x, for the attention's softmax (e^s = 2^(s log2 e), with log2 e folded
// into the scale the scores get anyway): x = n + r with n an integer and
// |r| <= 1/2, 2^r = e^(r ln 2) by its Taylor series to degree 7 (truncation
// error < 6e-9 relative), times 2^n. Fewer operations than vexpf: no
// reduction by ln 2, and on AVX-512 one vscalefps applies 2^n, overflow,
// underflow and denormals included. Results below 2^-126 are denormal, below
// 2^-149.5 zero (also for -inf); from 2^128 on inf; NaN stays NaN.
#define VEXP2_C1 0.693147180559945309f  // ln2^k / k!
#define VEXP2_C2 0.240226506959100712f
#define VEXP2_C3 0.0555041086648215800f
#define VEXP2_C4 0.00961812910762847717f
#define VEXP2_C5 0.00133335581464284434f
#define VEXP2_C6 0.000154035303933816099f
#define VEXP2_C7 1.52527338040598403e-05f
static inline float vexp2f(float x) {
    const float round_magic = 12582912.0f;        // 1.5 * 2^23: adding it rounds to an integer
    float xc = x < -150.0f ? -150.0f : (x > 128.0f ? 128.0f : x); // false for NaN: NaN flows on
    float nm = xc + round_magic;                  // its low mantissa bits hold n + 2^22
    uint32_t nbits;
    memcpy(&nbits, &nm, sizeof(nbits));
    float n = nm - round_magic;                   // the nearest integer n
    float r = xc - n;                             // exact
    // fmaf, as vexp2f_avx512's fmadd: written p * r + c, the bits depended on
    // gcc contracting it (at -O2 and above, not at the sanitizers' -O1)
    float p = VEXP2_C7;
    p = fmaf(p, r, VEXP2_C6);
    p = fmaf(p, r, VEXP2_C5);
    p = fmaf(p, r, VEXP2_C4);
    p = fmaf(p, r, VEXP2_C3);
    p = fmaf(p, r, VEXP2_C2);
    p = fmaf(p, r, VEXP2_C1);
    p = fmaf(p, r, 1.0f);
    // 2^n as two normal powers of two (n in [-150, 128]): the first product is
    // exact, the second rounds once, into a denormal or to inf where it must
    int32_t ni = (int32_t)(nbits & 0x7FFFFFu) - 0x400000, n1 = ni / 2, n2 = ni - n1;
    uint32_t b1 = (uint32_t)(n1 + 127) << 23, b2 = (uint32_t)(n2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, sizeof(s1));
    memcpy(&s2, &b2, sizeof(s2));
    return p * s1 * s2;
}

#if defined(__AVX512F__)
// vexp2f on 16 floats at once; the same steps, with vscalefps for 2^n.
static inline __m512 vexp2f_avx512(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(-150.0f), x); // x last: a NaN x is returned as is
    __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_sub_ps(x, n);
    __m512 p = _mm512_set1_ps(VEXP2_C7);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VEXP2_C6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VEXP2_C5));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VEXP2_C4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VEXP2_C3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VEXP2_C2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(VEXP2_C1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}
#endif

// tanh(x) = 1 - 2 / (e^{2x} + 1): absolute error ~1e-7, which is what GELU
// needs (it uses 1 + tanh); saturates to +-1, NaN stays NaN.
static inline float vtanhf(float x) {
    float e = vexpf(2.0f * x);
    return 1.0f - 2.0f / (e + 1.0f);
}

// erf(x) for exact GELU: |x| <= 1.2 as x P(x^2), 1.2 < |x| < 3.92 as
// 1 - e^{-x^2} Q(|x|), and +-1 beyond (erfc(3.92) is below half a float ulp
// of 1). P and Q are least-squares fits on Chebyshev nodes (dev/fit_erf.py);
// absolute error <= 2e-7, which is what GELU's 1 + erf needs. Both branches
// are computed and one is selected, so the loop stays vectorised.
static inline float verff(float x) {
    float a = x < 0.0f ? -x : x;
    float t = x * x;
    float p = 6.573305394e-05f;
    p = p * t - 7.582255289e-04f;
    p = p * t + 5.134570429e-03f;
    p = p * t - 2.682267678e-02f;
    p = p * t + 1.128277207e-01f;
    p = p * t - 3.761254867e-01f;
    p = p * t + 1.128379154e+00f;
    float small = p * x;
    float ac = a > 3.92f ? 3.92f : a;             // Q is fitted on [1.2, 4]
    float u = ac - 2.6f;
    float q = 1.183947362e-06f;
    q = q * u - 4.619487671e-06f;
    q = q * u + 1.176876825e-05f;
    q = q * u - 4.466052169e-05f;
    q = q * u + 1.748383153e-04f;
    q = q * u - 6.210097156e-04f;
    q = q * u + 2.129523405e-03f;
    q = q * u - 7.083194181e-03f;
    q = q * u + 2.267858821e-02f;
    q = q * u - 6.959036988e-02f;
    q = q * u + 2.036132454e-01f;
    float large = 1.0f - q * vexpf(-ac * ac);
    if (a >= 3.92f) large = 1.0f;
    large = x < 0.0f ? -large : large;
    return a <= 1.2f ? small : large;             // NaN takes the second branch and stays NaN
}

#endif
