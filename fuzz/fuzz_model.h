// A one-layer GPT-2 of width 4 (vocabulary 8, context 4) as a block table,
// for the harnesses of the optimizer files: every role the optimizers treat
// differently (embeddings, fused qkv, matrices, vectors) in 300 floats.
#ifndef FUZZ_FUZZ_MODEL_H
#define FUZZ_FUZZ_MODEL_H

#include "optim/optim.h"

#define FUZZ_NUM_BLOCKS 16
#define FUZZ_NUM_PARAMS 300

static void fuzz_model_blocks(ParamBlock *b) {
    const int C = 4, V = 8, T = 4;
    size_t at = 0;
    int n = 0;
#define ADD(name, role, ndim, rows, cols) (b[n++] = param_block(name, role, ndim, rows, cols, at), at += (size_t)(rows) * (cols))
    ADD("wte", ROLE_TOKEN_EMBEDDING, 2, V, C);
    ADD("wpe", ROLE_POSITION_EMBEDDING, 2, T, C);
    ADD("h0.ln1w", ROLE_NORM, 1, C, 1);
    ADD("h0.ln1b", ROLE_NORM, 1, C, 1);
    ADD("h0.attn.qkvw", ROLE_ATTN_QKV, 2, 3 * C, C);
    ADD("h0.attn.qkvb", ROLE_BIAS, 1, 3 * C, 1);
    ADD("h0.attn.projw", ROLE_ATTN_PROJ, 2, C, C);
    ADD("h0.attn.projb", ROLE_BIAS, 1, C, 1);
    ADD("h0.ln2w", ROLE_NORM, 1, C, 1);
    ADD("h0.ln2b", ROLE_NORM, 1, C, 1);
    ADD("h0.mlp.fcw", ROLE_MLP_UP, 2, 4 * C, C);
    ADD("h0.mlp.fcb", ROLE_BIAS, 1, 4 * C, 1);
    ADD("h0.mlp.projw", ROLE_MLP_DOWN, 2, C, 4 * C);
    ADD("h0.mlp.projb", ROLE_BIAS, 1, C, 1);
    ADD("lnfw", ROLE_NORM, 1, C, 1);
    ADD("lnfb", ROLE_NORM, 1, C, 1);
#undef ADD
    if (n != FUZZ_NUM_BLOCKS || at != FUZZ_NUM_PARAMS) abort();
}

// parameters and a gradient that are the same for every input
static void fuzz_model_values(float *params, float *grads) {
    for (int i = 0; i < FUZZ_NUM_PARAMS; i++) {
        params[i] = 0.01f * (float)((i * 37) % 23 - 11);
        grads[i] = 0.001f * (float)((i * 53) % 29 - 14);
    }
}

#endif
