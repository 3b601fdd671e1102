// MT19937, the Mersenne Twister of Matsumoto and Nishimura (1998), 32-bit
// outputs, seeded by their init_genrand (the seeding of numpy's
// RandomState(seed), PyTorch's manual_seed and llm.c's manual_seed). llm.c's
// data loader shuffles with it, so the same seed gives the same data order as
// llm.c. The whole state is 624 words and an index: a run that needs the
// stream again after a restart replays it from the seed (token_loader_set_pos).
#ifndef COMMON_MT19937_H
#define COMMON_MT19937_H

#include <stdint.h>

#define MT19937_N 624

typedef struct {
    uint32_t mt[MT19937_N];
    int next; // index of the next word to temper; MT19937_N: regenerate first
} Mt19937;

void mt19937_seed(Mt19937 *g, uint32_t seed);
// the next 32-bit output (genrand_int32)
uint32_t mt19937_u32(Mt19937 *g);

// llm.c's random_permutation: Fisher-Yates from the end, j = u32 % (i + 1),
// applied in place to whatever order a[] holds (n - 1 draws)
void mt19937_shuffle(Mt19937 *g, uint32_t *a, int64_t n);

#endif
