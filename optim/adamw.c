// AdamW, PyTorch's definition (spec section 1).
//
//   p = p * (1 - lr*wd)                                    decayed blocks only
//   m = b1*m + (1-b1)*g
//   v = b2*v + (1-b2)*g*g
//   p = p - (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
//
// State: m and v for every parameter, 8 bytes per parameter.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utils.h"
#include "optim/optim.h"

const char OPTIM_NAME[] = "adamw";
const unsigned OPTIM_HPARAMS = HP_BETAS | HP_EPS;

struct Optimizer {
    OptimBase base;   // state = [m of every block | v of every block], block i's at base.block_start[i]
    size_t num_params;
    unsigned char *sums_squares; // every block: its update can sum its gradient's squares (OptimBase)
};

void optim_default_config(OptimConfig *cfg) {
    *cfg = (OptimConfig){0};
    cfg->lr = 6e-4f;
    cfg->weight_decay = 0.1f;
    cfg->beta1 = 0.9f;
    cfg->beta2 = 0.95f;
    cfg->eps = 1e-8f;
}

Optimizer *optim_create(const ParamBlock *blocks, int num_blocks, const OptimConfig *cfg) {
    Optimizer *opt = calloc_or_fail(1, sizeof(Optimizer), "AdamW");
    opt->num_params = optim_num_params(blocks, num_blocks);
    optim_base_init(&opt->base, blocks, num_blocks, cfg, adamw_state_floats(blocks, num_blocks));
    opt->base.second_moment = opt->base.state + opt->num_params;
    opt->sums_squares = malloc_or_fail(num_blocks, "AdamW norm blocks");
    memset(opt->sums_squares, 1, num_blocks);
    opt->base.sums_squares = opt->sums_squares;
    return opt;
}

size_t optim_state_bytes_for(const ParamBlock *blocks, int num_blocks, const OptimConfig *cfg) {
    (void)cfg; // the state's size does not depend on the hyperparameters
    return adamw_state_floats(blocks, num_blocks) * sizeof(float);
}

void optim_step_begin(Optimizer *opt, const float *grads) {
    (void)grads; // every block's update needs only its own gradient
    opt->base.step++;
}

void optim_step_block(Optimizer *opt, int i, float *params, const float *grad, float lr) {
    OptimBase *b = &opt->base;
    const OptimConfig *c = &b->cfg;
    const ParamBlock *blk = &b->blocks[i];
    float *m = b->state + b->block_start[i], *v = b->state + opt->num_params + b->block_start[i];
    float wd = blk->decay ? c->weight_decay : 0.0f;
    if (b->block_sumsq) // (fused updates: the norm's sum too)
        *b->block_sumsq = adamw_update_summing(params + blk->offset, grad, m, v, blk, lr, c->beta1, c->beta2, c->eps, wd, b->step);
    else
        adamw_update(params + blk->offset, grad, m, v, block_numel(blk), lr, c->beta1, c->beta2, c->eps, wd, b->step);
}

void optim_step_end(Optimizer *opt) { (void)opt; }

const char *optim_fused_unsupported(const OptimConfig *cfg) {
    (void)cfg;
    return NULL;
}

// [m | v], each the blocks' parts in block order
int optim_state_sections(const Optimizer *opt, size_t len[OPTIM_MAX_SECTIONS]) {
    len[0] = len[1] = opt->num_params;
    return 2;
}

void optim_print(const Optimizer *opt) {
    optim_print_config(&opt->base.cfg);
}

void optim_free(Optimizer *opt) {
    if (!opt) return;
    optim_base_free(&opt->base);
    free(opt->sums_squares);
    free(opt);
}
