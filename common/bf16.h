// bfloat16 <-> float, one value at a time.
//
// bf16 is the top half of an IEEE float: sign, the 8 exponent bits, 7 mantissa
// bits. Widening is exact (append 16 zero bits). Narrowing rounds to nearest,
// ties to even, as the AVX-512 BF16 conversion (vcvtne2ps2bf16) and PyTorch's
// .to(torch.bfloat16) do; a NaN stays a (quiet) NaN. Unlike the instruction,
// which flushes denormals to zero, denormals are rounded like any other value.
#ifndef COMMON_BF16_H
#define COMMON_BF16_H

#include <stdint.h>
#include <string.h>

static inline float float_from_bf16(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

static inline uint16_t bf16_from_float(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x007FFFFFu))  // NaN: keep the sign, set the quiet bit
        return (uint16_t)((bits >> 16) | 0x0040u);
    // add 0x7FFF plus the lowest kept bit: halfway cases round to an even kept part
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

// x rounded to the nearest bf16, as a float
static inline float round_to_bf16(float x) { return float_from_bf16(bf16_from_float(x)); }

#endif
