// SGD-SaI: SGD with momentum whose learning rate is scaled, block by block,
// by the gradient signal-to-noise ratio measured once, at the first step
// (spec section 3; Xu et al., "No More Adam: Learning Rate Scaling at
// Initialization is All You Need").
//
// At the first step only, for each block with N entries and gradient g:
//   gsnr = ||g||_2 / (std(g) + eps)       std with N-1 (0 when N == 1); sums in double
//   (options: gsnr = sqrt(N); and/or divide every gsnr by the largest)
// Every step:
//   buf = g at the first step, else mu*buf + (1-mu)*g    (an EMA: dampening = mu)
//   p   = p * (1 - lr*wd)                                 decayed blocks only
//   p   = p - (lr*gsnr) * buf
//
// State: buf (4 bytes per parameter) and one float per block, the frozen gsnr.
// The edge cases follow from the formula: a 1-element block or a constant
// gradient has std 0, so gsnr = ||g||/eps (huge); an all-zero first gradient
// gives gsnr 0 and that block never moves again except by weight decay.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/utils.h"
#include "optim/optim.h"

const char OPTIM_NAME[] = "sgd_sai";
const unsigned OPTIM_HPARAMS = HP_EPS | HP_MOMENTUM | HP_GSNR;

struct Optimizer {
    OptimBase base; // state = [buf of every block | gsnr of every block], block i's buf at base.block_start[i]
    float *gsnr;    // = state + num_params, one per block (base.gsnr: printed after the first step)
};

void optim_default_config(OptimConfig *cfg) {
    *cfg = (OptimConfig){0};
    cfg->lr = 1e-3f; // [decision] the spec gives none; see the README for tuned values
    cfg->weight_decay = 0.1f;
    cfg->momentum = 0.9f;
    cfg->eps = 1e-8f;
    cfg->gsnr_mode = GSNR_RATIO;
    cfg->gsnr_max_norm = 0;
}

Optimizer *optim_create(const ParamBlock *blocks, int num_blocks, const OptimConfig *cfg) {
    Optimizer *opt = calloc_or_fail(1, sizeof(Optimizer), "SGD-SaI");
    size_t num_params = optim_num_params(blocks, num_blocks);
    optim_base_init(&opt->base, blocks, num_blocks, cfg, sgd_sai_state_floats(blocks, num_blocks));
    opt->gsnr = opt->base.state + num_params;
    opt->base.gsnr = opt->gsnr;
    return opt;
}

size_t optim_state_bytes_for(const ParamBlock *blocks, int num_blocks, const OptimConfig *cfg) {
    (void)cfg; // the g-SNR mode changes the values, not the size
    return sgd_sai_state_floats(blocks, num_blocks) * sizeof(float);
}

// block i's g-SNR from its first gradient
static float block_gsnr(const Optimizer *opt, int i, const float *grad) {
    const OptimConfig *c = &opt->base.cfg;
    size_t n = block_numel(&opt->base.blocks[i]);
    return c->gsnr_mode == GSNR_SQRT_N ? (float)sqrt((double)n) : (float)gsnr_of_gradient(grad, n, c->eps);
}

const char *optim_fused_unsupported(const OptimConfig *cfg) {
    if (cfg->gsnr_max_norm)
        return "--gsnr-max-norm 1 divides every block's g-SNR by the largest, so the first step needs the whole "
               "gradient before any update";
    return NULL;
}

void optim_step_begin(Optimizer *opt, const float *grads) {
    OptimBase *b = &opt->base;
    b->step++;
    if (b->step != 1 || !b->cfg.gsnr_max_norm) return; // otherwise each block measures its own
    // the paper's Algorithm 1: every g-SNR divided by the largest, before any update
    if (!grads) fail("SGD-SaI: %s", optim_fused_unsupported(&b->cfg));
    // one thread per block: each block's sums run in one fixed order
    #pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < b->num_blocks; i++) opt->gsnr[i] = block_gsnr(opt, i, grads + b->blocks[i].offset);
    float max = 0.0f;
    for (int i = 0; i < b->num_blocks; i++) if (opt->gsnr[i] > max) max = opt->gsnr[i];
    if (max > 0.0f) for (int i = 0; i < b->num_blocks; i++) opt->gsnr[i] /= max;
}

void optim_step_block(Optimizer *opt, int i, float *params, const float *g, float lr) {
    OptimBase *b = &opt->base;
    const OptimConfig *c = &b->cfg;
    int first = b->step == 1;
    if (first && !c->gsnr_max_norm) opt->gsnr[i] = block_gsnr(opt, i, g);
    float mu = c->momentum;
    const ParamBlock *blk = &b->blocks[i];
    float *p = params + blk->offset;
    float *buf = b->state + b->block_start[i];
    size_t n = block_numel(blk);
    float decay = 1.0f - lr * (blk->decay ? c->weight_decay : 0.0f);
    float step = lr * opt->gsnr[i];
    #pragma omp parallel for simd schedule(static)
    for (size_t j = 0; j < n; j++) {
        float bj = first ? g[j] : mu * buf[j] + (1.0f - mu) * g[j];
        buf[j] = bj;
        p[j] = p[j] * decay - step * bj;
    }
}

void optim_step_end(Optimizer *opt) { (void)opt; }

// [buf of every block | g-SNR of every block]
int optim_state_sections(const Optimizer *opt, size_t len[OPTIM_MAX_SECTIONS]) {
    len[1] = (size_t)opt->base.num_blocks;
    len[0] = opt->base.state_floats - len[1];
    return 2;
}

void optim_print(const Optimizer *opt) {
    optim_print_config(&opt->base.cfg);
    printf("  the g-SNR table is printed at the first step\n");
}

void optim_free(Optimizer *opt) {
    if (!opt) return;
    optim_base_free(&opt->base);
    free(opt);
}
