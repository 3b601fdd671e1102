// test_nn: the vectorisable math of nn/vecmath.h against double precision.
// (The layers themselves are tested against PyTorch by test_gpt2 and test_vit.)
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "nn/vecmath.h"

static int failures = 0;
#define CHECK(cond, ...) do { int ok_ = (cond); printf("%-4s ", ok_ ? "ok" : "FAIL"); printf(__VA_ARGS__); printf("\n"); if (!ok_) failures++; } while (0)

// distance in units in the last place between a float and the exact value
static double ulps(float got, double exact) {
    float e = (float)exact;
    float next = nextafterf(e, INFINITY);
    return fabs((double)got - exact) / ((double)next - (double)e);
}

int main(void) {
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
        double u = ulps(vexpf(x), exp((double)x));
        if (u > worst) { worst = u; worst_x = x; }
    }
    for (uint32_t b = 0; b <= hi_bits; b += 64) { // positive values, 0 up to hi
        float x;
        memcpy(&x, &b, 4);
        double u = ulps(vexpf(x), exp((double)x));
        if (u > worst) { worst = u; worst_x = x; }
    }
    CHECK(worst <= 2.0, "vexpf within 2 ulp on [-87.33, 88.37] (worst %.2f ulp at %.9g)", worst, worst_x);
    CHECK(vexpf(-100.0f) == 0.0f && isinf(vexpf(100.0f)) && vexpf(0.0f) == 1.0f, "vexpf: underflow 0, overflow inf, e^0 = 1");
    CHECK(isnan(vexpf(NAN)) && isnan(vtanhf(NAN)), "NaN in, NaN out");
    double worst_t = 0.0;
    for (int i = -2000000; i <= 2000000; i++) {
        float x = (float)i * 1e-5f; // [-20, 20]
        double d = fabs((double)vtanhf(x) - tanh((double)x));
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
            double d = fabs((double)verff(x) - erf((double)x));
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
