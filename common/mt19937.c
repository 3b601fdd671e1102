// MT19937. See mt19937.h; the algorithm is the one of Matsumoto and Nishimura's
// paper (ACM TOMACS 8(1), 1998) and their mt19937ar.c reference.
#include "common/mt19937.h"

#define MT_M 397
#define MT_MATRIX_A 0x9908B0DFu
#define MT_UPPER 0x80000000u
#define MT_LOWER 0x7FFFFFFFu

void mt19937_seed(Mt19937 *g, uint32_t seed) {
    g->mt[0] = seed;
    for (int i = 1; i < MT19937_N; i++)
        g->mt[i] = 1812433253u * (g->mt[i - 1] ^ (g->mt[i - 1] >> 30)) + (uint32_t)i;
    g->next = MT19937_N;
}

// the twist: mt[i] from the top bit of mt[i], the low 31 bits of mt[i+1] and mt[i+M]
static void mt19937_twist(Mt19937 *g) {
    for (int i = 0; i < MT19937_N; i++) {
        uint32_t y = (g->mt[i] & MT_UPPER) | (g->mt[(i + 1) % MT19937_N] & MT_LOWER);
        g->mt[i] = g->mt[(i + MT_M) % MT19937_N] ^ (y >> 1) ^ ((y & 1u) ? MT_MATRIX_A : 0u);
    }
    g->next = 0;
}

uint32_t mt19937_u32(Mt19937 *g) {
    if (g->next >= MT19937_N) mt19937_twist(g);
    uint32_t y = g->mt[g->next++];
    // tempering
    y ^= y >> 11;
    y ^= (y << 7) & 0x9D2C5680u;
    y ^= (y << 15) & 0xEFC60000u;
    y ^= y >> 18;
    return y;
}

void mt19937_shuffle(Mt19937 *g, uint32_t *a, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(mt19937_u32(g) % (uint32_t)(i + 1));
        uint32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}
