// SGD with momentum, PyTorch's torch.optim.SGD (spec section 2): the papers'
// baseline. Coupled L2 weight decay, dampening 0, optional Nesterov.
//
//   g   = g + wd*p                     decayed blocks only
//   buf = g                            at the first step
//   buf = mu*buf + g                   afterwards
//   d   = nesterov ? g + mu*buf : buf
//   p   = p - lr*d
//
// State: buf, 4 bytes per parameter.
#include <stdio.h>
#include <stdlib.h>

#include "common/utils.h"
#include "optim/optim.h"

const char OPTIM_NAME[] = "sgdm";
const unsigned OPTIM_HPARAMS = HP_MOMENTUM | HP_NESTEROV;

struct Optimizer {
    OptimBase base; // state = [buf of every block], block i's at base.block_start[i]
};

void optim_default_config(OptimConfig *cfg) {
    *cfg = (OptimConfig){0};
    cfg->lr = 0.01f;          // [decision] the spec gives none; PyTorch requires one
    cfg->weight_decay = 0.0f; // PyTorch's default
    cfg->momentum = 0.9f;
    cfg->nesterov = 0;
}

Optimizer *optim_create(const ParamBlock *blocks, int num_blocks, const OptimConfig *cfg) {
    Optimizer *opt = calloc_or_fail(1, sizeof(Optimizer), "SGDM");
    optim_base_init(&opt->base, blocks, num_blocks, cfg, sgdm_state_floats(blocks, num_blocks));
    return opt;
}

size_t optim_state_bytes_for(const ParamBlock *blocks, int num_blocks, const OptimConfig *cfg) {
    (void)cfg; // nesterov or not, one buffer
    return sgdm_state_floats(blocks, num_blocks) * sizeof(float);
}

static void sgdm_update(float *p, const float *g, float *buf, size_t n, float lr, float mu, float wd,
                        int nesterov, int first_step) {
    #pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + wd * p[i];
        float b = first_step ? d : mu * buf[i] + d;
        buf[i] = b;
        if (nesterov) d = d + mu * b; else d = b;
        p[i] = p[i] - lr * d;
    }
}

void optim_step_begin(Optimizer *opt, const float *grads) {
    (void)grads; // every block's update needs only its own gradient
    opt->base.step++;
}

void optim_step_block(Optimizer *opt, int i, float *params, const float *grad, float lr) {
    OptimBase *b = &opt->base;
    const OptimConfig *c = &b->cfg;
    const ParamBlock *blk = &b->blocks[i];
    sgdm_update(params + blk->offset, grad, b->state + b->block_start[i], block_numel(blk), lr, c->momentum,
                blk->decay ? c->weight_decay : 0.0f, c->nesterov, b->step == 1);
}

void optim_step_end(Optimizer *opt) { (void)opt; }

const char *optim_fused_unsupported(const OptimConfig *cfg) {
    (void)cfg;
    return NULL;
}

// [buf], the blocks' parts in block order
int optim_state_sections(const Optimizer *opt, size_t len[OPTIM_MAX_SECTIONS]) {
    len[0] = opt->base.state_floats;
    return 1;
}

void optim_print(const Optimizer *opt) {
    optim_print_config(&opt->base.cfg);
    printf("  weight decay is coupled (L2 added to the gradient), as in torch.optim.SGD\n");
}

void optim_free(Optimizer *opt) {
    if (!opt) return;
    optim_base_free(&opt->base);
    free(opt);
}
