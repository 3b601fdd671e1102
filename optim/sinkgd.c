// SinkGD, gradient multi-normalisation (spec section 4; Scetbon et al.,
// "Gradient Multi-Normalization for Stateless and Scalable LLM Training").
//
// Hidden matrices (attention q, k, v, output projection, MLP up and down) are
// updated without any state: their gradient G (m rows, n columns) is balanced
// by L Sinkhorn-like passes, rows first, columns last,
//   each row i:    X[i,:] = sqrt(n) * X[i,:] / max(||X[i,:]||, 1e-8)
//   each column j: X[:,j] = sqrt(m) * X[:,j] / max(||X[:,j]||, 1e-8)
// so that at the fixed point every entry has RMS 1, the size of an Adam step,
// and   p = p*(1 - a*lr*wd) - (a*lr) * X.
// Every other block (embeddings, LayerNorm, biases, a ViT's patch embedding,
// cls token and head) is updated by AdamW at the global lr.
//
// How we compute X: optim/sinkhorn.h (the scales r and c instead of a copy
// of G, one read of G per pass; the result is the spec's X up to rounding).
//
// State: m and v of the AdamW blocks only; 0 bytes for the hidden matrices.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/utils.h"
#include "optim/optim.h"
#include "optim/sinkhorn.h"

const char OPTIM_NAME[] = "sinkgd";
const unsigned OPTIM_HPARAMS = HP_BETAS | HP_EPS | HP_SINKGD;

struct Optimizer {
    OptimBase base;    // state = [m of every AdamW block | v of every AdamW block]
    ParamBlock *split; // the blocks with fused qkv split into q, k, v
    int num_split;
    int *is_hidden;    // per split block: updated by Sinkhorn normalisation
    size_t *offset;    // per AdamW block: its m at state + offset, its v at state + adam_params + offset
    size_t adam_params;
    int *first;        // model block b is split blocks first[b] .. first[b+1]-1
    float *scales;     // scratch: r (max rows), c (max cols), the slabs' column sums (max_part)
    unsigned char *sums_squares; // per model block: its update can sum its gradient's squares (OptimBase)
    double *slab_sumsq;          // scratch: those sums by slab of rows, a model block's slabs in order
    int max_rows, max_cols;
    size_t max_part;
};

void optim_default_config(OptimConfig *cfg) {
    *cfg = (OptimConfig){0};
    // the papers' setting (spec section 4): global lr 0.02 (so a*lr = 1e-3 on
    // the matrices), wd 0, Adam betas (0.9, 0.999) for the other blocks
    cfg->lr = 0.02f;
    cfg->weight_decay = 0.0f;
    cfg->beta1 = 0.9f;
    cfg->beta2 = 0.999f;
    cfg->eps = 1e-8f;
    cfg->sinkgd_iters = 5;
    cfg->sinkgd_scale = 0.05f;
}

Optimizer *optim_create(const ParamBlock *blocks, int num_blocks, const OptimConfig *cfg) {
    Optimizer *opt = calloc_or_fail(1, sizeof(Optimizer), "SinkGD");
    opt->split = optim_split_qkv(blocks, num_blocks, &opt->num_split);
    opt->is_hidden = malloc_or_fail(opt->num_split * sizeof(int), "SinkGD block kinds");
    opt->offset = malloc_or_fail(opt->num_split * sizeof(size_t), "SinkGD offsets");
    int max_rows = 0, max_cols = 0;
    for (int i = 0; i < opt->num_split; i++) {
        const ParamBlock *b = &opt->split[i];
        opt->is_hidden[i] = sinkgd_is_hidden_matrix(b->role);
        if (opt->is_hidden[i]) {
            if (b->rows > max_rows) max_rows = b->rows;
            if (b->cols > max_cols) max_cols = b->cols;
            size_t part = sinkhorn_part_floats(b->rows, b->cols);
            if (part > opt->max_part) opt->max_part = part;
            opt->offset[i] = 0;
        } else {
            opt->offset[i] = opt->adam_params;
            opt->adam_params += block_numel(b);
        }
    }
    // the base keeps the model's block list (the state file checks it)
    optim_base_init(&opt->base, blocks, num_blocks, cfg, sinkgd_state_floats(blocks, num_blocks));
    opt->max_rows = max_rows;
    opt->max_cols = max_cols;
    opt->first = optim_split_first(blocks, num_blocks);
    // fused updates: an AdamW block sums its gradient's squares in its update
    // (adamw_update_summing); a model block whose split blocks are all hidden
    // matrices and start on a slab boundary of its rows (C a multiple of 32
    // for qkv) gets it from the Sinkhorn passes' first read, slab by slab as
    // block_sum_of_squares adds it
    opt->sums_squares = calloc_or_fail(num_blocks, 1, "SinkGD norm blocks");
    int max_slabs = 0;
    for (int b = 0; b < num_blocks; b++) {
        int hidden = opt->is_hidden[opt->first[b]]; // (a split block's parts are all hidden)
        int ok = blocks[b].ndim == 2 && sum_of_squares_slab_rows(blocks[b].rows) == SINKHORN_SLAB_ROWS;
        for (int i = opt->first[b]; i < opt->first[b + 1]; i++)
            ok &= opt->is_hidden[i] && (opt->split[i].offset - blocks[b].offset) % ((size_t)SINKHORN_SLAB_ROWS * blocks[b].cols) == 0;
        opt->sums_squares[b] = (unsigned char)(ok || !hidden);
        int slabs = (blocks[b].rows + SINKHORN_SLAB_ROWS - 1) / SINKHORN_SLAB_ROWS;
        if (ok && slabs > max_slabs) max_slabs = slabs;
    }
    opt->base.sums_squares = opt->sums_squares;
    opt->slab_sumsq = malloc_or_fail(((size_t)max_slabs + 1) * sizeof(double), "SinkGD slab sums");
    // scratch, not state: r, c and the column sums, allocated once
    opt->scales = malloc_or_fail(((size_t)max_rows + (size_t)max_cols + opt->max_part + 1) * sizeof(float),
                                 "SinkGD scaling vectors");
    return opt;
}

size_t optim_state_bytes_for(const ParamBlock *blocks, int num_blocks, const OptimConfig *cfg) {
    (void)cfg; // iterations and scale change no size
    return sinkgd_state_floats(blocks, num_blocks) * sizeof(float);
}

void optim_step_begin(Optimizer *opt, const float *grads) {
    (void)grads; // every block's update needs only its own gradient
    opt->base.step++;
}

// split block i, its gradient G; slab_sumsq: NULL, or where its slabs' sums of squares go
static void sinkgd_update(Optimizer *opt, int i, float *params, const float *G, float lr, double *slab_sumsq) {
    OptimBase *b = &opt->base;
    const OptimConfig *c = &b->cfg;
    const ParamBlock *blk = &opt->split[i];
    float wd = blk->decay ? c->weight_decay : 0.0f;
    if (!opt->is_hidden[i]) { // AdamW (and with base.block_sumsq, the block's sum of squares)
        float *m = b->state + opt->offset[i], *v = b->state + opt->adam_params + opt->offset[i];
        if (b->block_sumsq)
            *b->block_sumsq = adamw_update_summing(params + blk->offset, G, m, v, blk, lr, c->beta1, c->beta2, c->eps, wd, b->step);
        else
            adamw_update(params + blk->offset, G, m, v, block_numel(blk), lr, c->beta1, c->beta2, c->eps, wd, b->step);
        return;
    }
    // a hidden matrix: X = diag(r) G diag(c), p = p*(1 - a*lr*wd) - (a*lr) X
    int rows = blk->rows, cols = blk->cols;
    float *r = opt->scales, *cs = r + opt->max_rows, *part = cs + opt->max_cols;
    float step = c->sinkgd_scale * lr;
    sinkhorn_update(params + blk->offset, G, rows, cols, c->sinkgd_iters, step, 1.0f - step * wd, r, cs, part,
                    slab_sumsq);
}

// a fused qkv is three split blocks, each normalised on its own
// (and with base.block_sumsq set, the block's sum of squares: its slabs' in order)
void optim_step_block(Optimizer *opt, int b, float *params, const float *grad, float lr) {
    const ParamBlock *mb = &opt->base.blocks[b];
    int sums = opt->base.block_sumsq && opt->sums_squares[b] && opt->is_hidden[opt->first[b]];
    for (int i = opt->first[b]; i < opt->first[b + 1]; i++) {
        size_t at = opt->split[i].offset - mb->offset; // a multiple of 32 rows when sums
        sinkgd_update(opt, i, params, grad + at, lr, sums ? opt->slab_sumsq + at / ((size_t)SINKHORN_SLAB_ROWS * mb->cols) : NULL);
    }
    if (sums) {
        double total = 0.0;
        for (int s = 0; s < (mb->rows + SINKHORN_SLAB_ROWS - 1) / SINKHORN_SLAB_ROWS; s++) total += opt->slab_sumsq[s];
        *opt->base.block_sumsq = total;
    }
}

void optim_step_end(Optimizer *opt) { (void)opt; }

const char *optim_fused_unsupported(const OptimConfig *cfg) {
    (void)cfg;
    return NULL;
}

// [m | v] of the AdamW blocks, each in block order (the hidden matrices have none)
int optim_state_sections(const Optimizer *opt, size_t len[OPTIM_MAX_SECTIONS]) {
    len[0] = len[1] = opt->adam_params;
    return 2;
}

void optim_print(const Optimizer *opt) {
    optim_print_config(&opt->base.cfg);
    int hidden = 0;
    size_t hidden_params = 0;
    for (int i = 0; i < opt->num_split; i++)
        if (opt->is_hidden[i]) { hidden++; hidden_params += block_numel(&opt->split[i]); }
    printf("  %d hidden matrices (%zu parameters) are normalised without state; %d blocks (%zu parameters) use AdamW\n",
           hidden, hidden_params, opt->num_split - hidden, opt->adam_params);
}

void optim_free(Optimizer *opt) {
    if (!opt) return;
    optim_base_free(&opt->base);
    free(opt->split);
    free(opt->is_hidden);
    free(opt->offset);
    free(opt->first);
    free(opt->scales);
    free(opt->sums_squares);
    free(opt->slab_sumsq);
    free(opt);
}
