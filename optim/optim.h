// The optimizer interface: one small API, one file per optimizer
// (optim/adamw.c, sgdm.c, sgd_sai.c, sinkgd.c, slimadam.c). A trainer is
// linked with exactly one of them (make ... OPTIM=name), so every optimizer
// file defines the same functions (optim_create, optim_step, ...).
// The algorithms follow docs/optimizers_spec.md (the project's copy of the
// specification) to the letter.
//
// A model describes its parameters as a list of blocks: one block per tensor
// per layer (h3.attn.qkvw), with its shape, its offset into the model's one
// flat parameter buffer (the gradient buffer has the same layout), and its
// role. Nothing here knows which model it is training.
#ifndef OPTIM_OPTIM_H
#define OPTIM_OPTIM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    ROLE_TOKEN_EMBEDDING,    // GPT-2 wte [V,C], also the tied LM head
    ROLE_POSITION_EMBEDDING, // GPT-2 wpe [maxT,C]; ViT position embedding [N+1,C]
    ROLE_PATCH_EMBEDDING,    // ViT patch projection [C, channels*P*P]
    ROLE_CLS_TOKEN,          // ViT cls token [1,C]
    ROLE_ATTN_QKV,           // fused q,k,v projection [3C,C] (see optim_split_qkv)
    ROLE_ATTN_Q,             // row blocks of a fused qkv, once split
    ROLE_ATTN_K,
    ROLE_ATTN_V,
    ROLE_ATTN_PROJ,          // attention output projection [C,C]
    ROLE_MLP_UP,             // [4C,C]
    ROLE_MLP_DOWN,           // [C,4C]
    ROLE_HEAD,               // ViT classification head [classes,C]
    ROLE_NORM,               // LayerNorm gain or bias [C]
    ROLE_BIAS,               // bias of a linear layer [out]
    NUM_ROLES
} ParamRole;

typedef struct {
    char name[64];   // "h3.attn.qkvw", "wte", "vit.patch.w"...
    ParamRole role;
    int ndim;        // 1 or 2
    int rows, cols;  // 2-D: [rows=fan_out, cols=fan_in]; 1-D: [rows] and cols = 1
    size_t offset;   // first element in the flat parameter and gradient buffers
    int decay;       // in the weight-decay group (nanoGPT's rule: ndim >= 2)
} ParamBlock;

// Fill a block. The weight-decay group is decided here, in one visible place:
// every matrix (ndim 2: weights, embeddings, cls token) is decayed, vectors
// (biases, LayerNorm gains and biases) are not.
ParamBlock param_block(const char *name, ParamRole role, int ndim, int rows, int cols, size_t offset);
static inline size_t block_numel(const ParamBlock *b) { return (size_t)b->rows * (size_t)b->cols; }
const char *role_name(ParamRole role);

// Fused qkv blocks become three [C,C] blocks named <name>.q, .k, .v with
// roles ATTN_Q/K/V (SinkGD and SlimAdam treat them as separate projections).
// Returns a newly allocated list; *num_out receives its length.
ParamBlock *optim_split_qkv(const ParamBlock *blocks, int num_blocks, int *num_out);
// Where each model block's split blocks start in that list: block b became
// split blocks first[b] .. first[b+1]-1 (three for a fused qkv, else one).
// Returns a newly allocated array of num_blocks + 1.
int *optim_split_first(const ParamBlock *blocks, int num_blocks);

// ----------------------------------------------------------------------------
// Hyperparameters of every optimizer. Each optimizer reads the fields it uses;
// optim_default_config fills in its defaults (the spec's, section by section).
typedef enum { GSNR_RATIO, GSNR_SQRT_N } GsnrMode;

typedef struct {
    float lr;            // peak learning rate (the schedule scales it per step)
    float weight_decay;
    float beta1, beta2;  // AdamW, SlimAdam, and SinkGD's AdamW blocks
    float eps;           // AdamW/SlimAdam/SinkGD: added to sqrt(v); SGD-SaI: added to the std
    float momentum;      // SGDM, SGD-SaI
    int nesterov;        // SGDM
    GsnrMode gsnr_mode;  // SGD-SaI: norm/std (default) or sqrt(N)
    int gsnr_max_norm;   // SGD-SaI: divide every g-SNR by the largest (paper's Algorithm 1)
    int sinkgd_iters;    // SinkGD: Sinkhorn iterations L
    float sinkgd_scale;  // SinkGD: a, the hidden matrices' step is a*lr
    char slimadam_rules[512]; // SlimAdam: rules JSON path ("" = the paper's Table 1)
    // The blocks given to optim_create are a part of the model's (one rank's
    // under ZeRO-1): a rules file may name blocks of the other parts. The
    // caller checks the file against the whole model (optim_state_bytes_for).
    int blocks_are_part;
} OptimConfig;

// Which hyperparameters an optimizer uses (for flag checking and printing).
enum {
    HP_BETAS = 1 << 0, HP_EPS = 1 << 1, HP_MOMENTUM = 1 << 2, HP_NESTEROV = 1 << 3,
    HP_GSNR = 1 << 4, HP_SINKGD = 1 << 5, HP_SLIMADAM_RULES = 1 << 6,
};

// ----------------------------------------------------------------------------
// Every optimizer file defines these.
typedef struct Optimizer Optimizer;

extern const char OPTIM_NAME[];       // "adamw", "sgdm", "sgd_sai", "sinkgd", "slimadam"
extern const unsigned OPTIM_HPARAMS;  // HP_* flags of the hyperparameters it uses
void optim_default_config(OptimConfig *cfg);
// blocks: the model's blocks (copied). Allocates all state once.
Optimizer *optim_create(const ParamBlock *blocks, int num_blocks, const OptimConfig *cfg);
// One step: t = (steps so far) + 1. grads has the layout of params; only the
// blocks are read and written (e.g. padding rows of wte are left alone).
// Defined once in optim.c as the block-by-block step below, run over the
// blocks in order, so both ways of stepping give the same bits.
void optim_step(Optimizer *opt, float *params, const float *grads, float lr);
// The same step block by block, for updates fused into the backward pass
// (the trainers' --fused-update 1): optim_step_begin, then optim_step_block
// once for every block b of the model, in any order, with grad pointing at
// that block's block_numel floats wherever they are (a gradient buffer of
// one layer, say), then optim_step_end. grads is the whole gradient when the
// caller has it, NULL when it does not (then optim_fused_unsupported must
// have allowed the configuration).
void optim_step_begin(Optimizer *opt, const float *grads);
void optim_step_block(Optimizer *opt, int b, float *params, const float *grad, float lr);
void optim_step_end(Optimizer *opt);
// Why this optimizer with these settings needs the whole gradient before its
// first update (a one-line reason naming the flag), or NULL when it can step
// block by block without it.
const char *optim_fused_unsupported(const OptimConfig *cfg);
void optim_free(Optimizer *opt);
// Print hyperparameters and anything else users of this optimizer want to
// see at start-up (e.g. SlimAdam's rules).
void optim_print(const Optimizer *opt);

// ----------------------------------------------------------------------------
// Common to all optimizers (optim/optim.c). Each optimizer's struct begins with
// an OptimBase, so these work on any of them.
typedef struct {
    OptimConfig cfg;
    ParamBlock *blocks;    // the model's blocks, in the model's order
    int num_blocks;
    float *state;          // all optimizer state, one buffer, saved and loaded as is
    size_t state_floats;
    int64_t step;          // optimizer steps taken (the spec's t after a step)
    // What the meaning of the state depends on beyond the blocks' shapes
    // (SlimAdam: the rule K of each split block, which decides whether a v
    // float is a row's or a column's), saved in the state file and checked on
    // load; NULL/0 for the optimizers whose layout the shapes fix. Set by
    // optim_create; the arrays belong to the optimizer.
    const int32_t *layout;            // [layout_len] one value per entry
    int layout_len;
    const ParamBlock *layout_blocks;  // [layout_len] the entry's block (its name, for messages)
    const char *layout_what;          // e.g. "SlimAdam rules"
    const char *const *layout_value_names; // name of each value, for messages
    int layout_num_values;
    // block_start[i]: the sizes of blocks 0..i-1 summed, where block i's part
    // of a state section with one float per parameter begins (AdamW's m and v,
    // the momentum buffers)
    size_t *block_start;
    // What an optimizer may offer to analyses, NULL when it has none (set by
    // optim_create): a full-size second moment v, one float per parameter in
    // block_start's order (AdamW); the g-SNR of each block (SGD-SaI, frozen
    // at the first step and printed after it by optim_step and fused_end).
    const float *second_moment;
    const float *gsnr;
    // Fused updates (fused_block): sums_squares[b] is 1 for the blocks whose
    // optim_step_block can also sum the squares of their gradient, in
    // block_sum_of_squares's order, while it reads it anyway (SinkGD's hidden
    // matrices: in the first Sinkhorn pass), so the norm needs no pass of its
    // own; NULL when there are none. The caller asks by pointing block_sumsq at
    // a double before that optim_step_block (and back to NULL after).
    const unsigned char *sums_squares;
    double *block_sumsq;
} OptimBase;

static inline OptimBase *optim_base(Optimizer *opt) { return (OptimBase *)opt; }
static inline const OptimBase *optim_base_const(const Optimizer *opt) { return (const OptimBase *)opt; }

void optim_base_init(OptimBase *base, const ParamBlock *blocks, int num_blocks,
                     const OptimConfig *cfg, size_t state_floats);
void optim_base_free(OptimBase *base);
// Bytes of optimizer state: exact, what optim_create allocated.
size_t optim_state_bytes(const Optimizer *opt);
// The same before anything is allocated (the memory plan, run/memplan.h):
// exactly what optim_create(blocks, num_blocks, cfg) will allocate. Every
// optimizer file defines it with the formula its optim_create uses.
size_t optim_state_bytes_for(const ParamBlock *blocks, int num_blocks, const OptimConfig *cfg);
// What AdamW would need for the same blocks: 2 floats per parameter.
size_t optim_adamw_state_bytes(const ParamBlock *blocks, int num_blocks);
size_t optim_num_params(const ParamBlock *blocks, int num_blocks);
// The second moment v of the parameters [offset, offset + n) (a block or a
// row block of one), for analyses such as SlimAdam's SNR rules (optim/snr.h);
// NULL if this optimizer keeps no full-size second moment there.
const float *optim_second_moment(const Optimizer *opt, size_t offset, size_t n);
// The table of g-SNRs SGD-SaI froze (nothing for the other optimizers)
void optim_print_gsnr(const Optimizer *opt);

// ----------------------------------------------------------------------------
// State sizes in floats, one formula per optimizer (spec section 6). They are
// here rather than in each optimizer's file because a trainer links one
// optimizer but its memory plan says which others would fit; each
// optim_create sizes its state with its own, so the two cannot disagree.
size_t adamw_state_floats(const ParamBlock *blocks, int num_blocks);    // m, v: 2 per parameter
size_t sgdm_state_floats(const ParamBlock *blocks, int num_blocks);     // buf: 1 per parameter
size_t sgd_sai_state_floats(const ParamBlock *blocks, int num_blocks);  // buf, and one g-SNR per block
// SinkGD: m and v of the blocks that are not hidden matrices (fused qkv counts as hidden)
size_t sinkgd_state_floats(const ParamBlock *blocks, int num_blocks);
int sinkgd_is_hidden_matrix(ParamRole role);
// SlimAdam: m of every parameter, and v compressed by each split block's rule
// K (SlimRule); rules NULL means the paper's Table 1 (slimadam_default_rule).
typedef enum {
    SLIM_NONE, // K = none: v has the block's shape (AdamW)
    SLIM_ROWS, // K = (1,): mean over fan_in, one v per row
    SLIM_COLS, // K = (0,): mean over fan_out, one v per column
    SLIM_ALL,  // K = (0,1) (or (0,) of a 1-D block): one v for the block
} SlimRule;
SlimRule slimadam_default_rule(const ParamBlock *split_block);
size_t slimadam_v_floats(const ParamBlock *split_block, SlimRule rule);
size_t slimadam_state_floats(const ParamBlock *split, int num_split, const SlimRule *rules);
// The state bytes of the optimizer called name (OPTIM_NAME of any of the
// five) with its default settings; fails on an unknown name.
size_t optim_state_bytes_named(const char *name, const ParamBlock *blocks, int num_blocks);
#define NUM_OPTIMIZERS 5
extern const char *const OPTIM_NAMES[NUM_OPTIMIZERS]; // "adamw", "sgdm", "sgd_sai", "sinkgd", "slimadam"

// The state file (documented in the README): magic, version, optimizer name,
// step, the block table (names and shapes, checked on load), the layout
// (version 2; checked on load), the state floats.
// optim_save writes atomically (temp file + rename). optim_load fails with a
// one-line error when the file does not belong to this optimizer and model.
void optim_save(const Optimizer *opt, const char *path);
void optim_load(Optimizer *opt, const char *path);

// The state as sections, for optimizers that hold a part of the model's
// blocks (ZeRO-1, run/dist.h). Every optimizer's state buffer is one or two
// sections (AdamW: m, then v), each the concatenation of its blocks' parts in
// block order; so the state of a contiguous range of the model's blocks is a
// slice of each section of the whole model's state, and a state file written
// from the parts in rank order is the one optim_save writes for the whole.
// Returns the number of sections and their lengths in floats.
#define OPTIM_MAX_SECTIONS 2
int optim_state_sections(const Optimizer *opt, size_t len[OPTIM_MAX_SECTIONS]);
// The state file's header (everything before the state floats).
void optim_write_header(FILE *f, const char *path, int64_t step, const ParamBlock *blocks, int num_blocks,
                        int64_t state_floats, const int32_t *layout, int layout_len);
// optim_load for an optimizer of a part of the model: the file's header is
// checked against the model's blocks (its layout entries layout_first ..
// layout_first + this optimizer's layout_len against this optimizer's), and
// section s is read from section_first[s] floats into that section, whose
// length in the whole model's state is section_total[s].
void optim_load_part(Optimizer *opt, const char *path, const ParamBlock *model_blocks, int num_model_blocks,
                     int layout_first, int layout_total, const size_t *section_first, const size_t *section_total,
                     int64_t state_floats_total);

// Parse one optimizer flag (--beta1 0.9 ...). Returns 1 if `flag` is an
// optimizer flag (and consumed value), 0 if it is not one. A flag of another
// optimizer fails with a one-line error naming it.
int optim_parse_flag(OptimConfig *cfg, const char *flag, const char *value);
void optim_print_flags_help(void);
// The i-th of every optimizer's flags (whatever this build's OPTIM), with
// what its value is and its help, for the README's table; NULL past the last.
const char *optim_flag_name(int i, const char **arg, const char **help);
void optim_print_config(const OptimConfig *cfg);

// The gradient signal-to-noise ratio of one block of n entries (spec section
// 3): ||g||_2 / (std(g) + eps), std the sample std (n-1; 0 when n == 1), sums
// in double. SGD-SaI freezes it at the first step; --gsnr-every measures it
// during training with any optimizer (optim/snr.h). One copy, so both agree.
double gsnr_of_gradient(const float *g, size_t n, double eps);

// ----------------------------------------------------------------------------
// Gradient sums and clipping, shared by run/'s clip_grad_norm and the fused
// step below, so that both produce the same bits.

// The sum of squares of a block's gradient in double, in an order that
// depends on the block's shape alone: each row's sum (row_sum_of_squares_d),
// the rows of each slab of sum_of_squares_slab_rows rows added in order, then
// the slabs in order; threads take whole slabs. A 1-D block is one row.
// SinkGD computes the same sums in its first pass (ParamBlock's sums_squares).
double block_sum_of_squares(const float *g, const ParamBlock *blk);
// the same for a row-major [rows, cols] array
double sum_of_squares_rows(const float *g, int rows, int cols);
// rows per slab: 32, or more for over 131072 rows (at most 4096 slabs)
int sum_of_squares_slab_rows(int rows);
// One row: 16 lanes in double, lane l adding g[j]^2 for j = l mod 16 in
// order of j, then the lanes in a fixed tree (l += l + w for w = 8, 4, 2, 1).
double row_sum_of_squares_d(const float *g, int n);
// g[0..n) *= coef (clipping: torch.nn.utils.clip_grad_norm_'s multiply)
void scale_floats(float *g, size_t n, float coef);
// The factor clip_grad_norm_ scales by: clip / (norm + 1e-6) when clip > 0,
// the norm is finite and the factor is below 1; else 1 (no scaling).
float clip_coef(float norm, float clip);

// ----------------------------------------------------------------------------
// Updates during the backward pass (the trainers' --fused-update 1). The
// backward hands each block's gradient to fused_block as soon as it is
// complete and then reuses that memory, so the whole gradient never exists.
// A step gives the same bits as clip_grad_norm + optim_step: the norm is the
// same per-block sums added in block order, and each block is clipped and
// updated by the same code. Clipping needs the norm before the first update,
// so then the trainer runs the backward twice: a measuring pass (fused_block
// only sums squares), fused_measured, and the updating pass.
typedef struct {
    Optimizer *opt;
    float *params;   // the model's flat parameter buffer
    int num_blocks;
    double *sumsq;   // [num_blocks] this step's sums of squared gradients
    int measuring;   // the current pass only measures
    int measured;    // a measuring pass completed this step: sumsq and coef are set
    float lr, coef;  // this step's lr; the clip factor of its updates
    long step;       // for messages
} FusedStep;

void fused_init(FusedStep *f, Optimizer *opt, float *params);
void fused_free(FusedStep *f);
// A new step; the next backward measures when measure is 1, else updates.
void fused_begin(FusedStep *f, long step, float lr, int measure);
// Called by backward: block b's gradient (block_numel floats at grad) is
// complete. Measuring: its sum of squares. Updating: its sum of squares
// unless measured (a non-finite one fails: earlier blocks have moved, so
// the step can be neither skipped nor saved), clip, optim_step_block.
void fused_block(FusedStep *f, int b, float *grad);
// After the measuring pass: the global norm, and the clip factor (clip > 0)
// for the updating pass. The trainer may still skip the step (--nan skip).
float fused_measured(FusedStep *f, float clip);
// Before the updating pass (optim_step_begin).
void fused_update_begin(FusedStep *f);
// After the updating pass (optim_step_end): the global norm of the step.
float fused_end(FusedStep *f);

// The AdamW update of one block (section 1 of the spec), shared by AdamW and
// by SinkGD's non-matrix blocks. t is the step number starting at 1.
void adamw_update(float *p, const float *g, float *m, float *v, size_t n,
                  float lr, float beta1, float beta2, float eps, float wd, int64_t t);
// The same update of block blk (its block_numel entries at p, g, m, v), row
// by row in block_sum_of_squares's slabs, returning the block's sum of
// squares of g with block_sum_of_squares's bits: each row is summed and then
// updated while it is in L1 (fused updates: no read of the gradient for the
// norm alone).
double adamw_update_summing(float *p, const float *g, float *m, float *v, const ParamBlock *blk,
                            float lr, float beta1, float beta2, float eps, float wd, int64_t t);

#endif
