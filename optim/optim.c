// What all optimizers share: parameter blocks, the state file, flags, and the
// AdamW kernel (used by AdamW itself and by SinkGD's non-matrix blocks).
#include "optim/optim.h"
#include "common/profile.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utils.h"

// ----------------------------------------------------------------------------
// parameter blocks

ParamBlock param_block(const char *name, ParamRole role, int ndim, int rows, int cols, size_t offset) {
    ParamBlock b;
    memset(&b, 0, sizeof(b));
    if (strlen(name) >= sizeof(b.name)) fail("parameter block name too long: %s", name);
    snprintf(b.name, sizeof(b.name), "%s", name);
    b.role = role;
    b.ndim = ndim;
    b.rows = rows;
    b.cols = ndim == 1 ? 1 : cols;
    b.offset = offset;
    b.decay = ndim >= 2; // nanoGPT's rule: matrices decay, vectors do not
    return b;
}

const char *role_name(ParamRole role) {
    static const char *names[NUM_ROLES] = {
        "token_embedding", "position_embedding", "patch_embedding", "cls_token", "attn_qkv",
        "attn_q", "attn_k", "attn_v", "attn_proj", "mlp_up", "mlp_down", "head", "norm", "bias"};
    return (role >= 0 && role < NUM_ROLES) ? names[role] : "?";
}

ParamBlock *optim_split_qkv(const ParamBlock *blocks, int num_blocks, int *num_out) {
    int n = 0;
    for (int i = 0; i < num_blocks; i++) n += blocks[i].role == ROLE_ATTN_QKV ? 3 : 1;
    ParamBlock *out = malloc_or_fail(n * sizeof(ParamBlock), "split parameter blocks");
    int j = 0;
    for (int i = 0; i < num_blocks; i++) {
        const ParamBlock *b = &blocks[i];
        if (b->role != ROLE_ATTN_QKV) { out[j++] = *b; continue; }
        if (b->ndim != 2 || b->rows % 3 != 0) fail("block %s: a fused qkv must have 3C rows", b->name);
        int C = b->rows / 3;
        static const char *suffix[3] = {"q", "k", "v"};
        static const ParamRole roles[3] = {ROLE_ATTN_Q, ROLE_ATTN_K, ROLE_ATTN_V};
        for (int s = 0; s < 3; s++) {
            char name[80];
            snprintf(name, sizeof(name), "%s.%s", b->name, suffix[s]);
            out[j] = param_block(name, roles[s], 2, C, b->cols, b->offset + (size_t)s * C * b->cols);
            out[j].decay = b->decay;
            j++;
        }
    }
    *num_out = n;
    return out;
}

int *optim_split_first(const ParamBlock *blocks, int num_blocks) {
    int *first = malloc_or_fail((num_blocks + 1) * sizeof(int), "split block index");
    first[0] = 0;
    for (int i = 0; i < num_blocks; i++) first[i + 1] = first[i] + (blocks[i].role == ROLE_ATTN_QKV ? 3 : 1);
    return first;
}

size_t optim_num_params(const ParamBlock *blocks, int num_blocks) {
    size_t n = 0;
    for (int i = 0; i < num_blocks; i++) n += block_numel(&blocks[i]);
    return n;
}

size_t optim_adamw_state_bytes(const ParamBlock *blocks, int num_blocks) {
    return adamw_state_floats(blocks, num_blocks) * sizeof(float);
}

// ----------------------------------------------------------------------------
// state sizes

size_t adamw_state_floats(const ParamBlock *blocks, int num_blocks) {
    return 2 * optim_num_params(blocks, num_blocks);
}

size_t sgdm_state_floats(const ParamBlock *blocks, int num_blocks) {
    return optim_num_params(blocks, num_blocks);
}

size_t sgd_sai_state_floats(const ParamBlock *blocks, int num_blocks) {
    return optim_num_params(blocks, num_blocks) + (size_t)num_blocks;
}

int sinkgd_is_hidden_matrix(ParamRole role) {
    return role == ROLE_ATTN_Q || role == ROLE_ATTN_K || role == ROLE_ATTN_V || role == ROLE_ATTN_PROJ ||
           role == ROLE_MLP_UP || role == ROLE_MLP_DOWN;
}

size_t sinkgd_state_floats(const ParamBlock *blocks, int num_blocks) {
    size_t adam_params = 0;
    for (int i = 0; i < num_blocks; i++) // a fused qkv splits into three hidden matrices
        if (blocks[i].role != ROLE_ATTN_QKV && !sinkgd_is_hidden_matrix(blocks[i].role))
            adam_params += block_numel(&blocks[i]);
    return 2 * adam_params;
}

// the paper's Table 1, mapped onto our roles (spec section 5)
SlimRule slimadam_default_rule(const ParamBlock *b) {
    switch (b->role) {
    case ROLE_TOKEN_EMBEDDING: case ROLE_POSITION_EMBEDDING: // one v per token / position
    case ROLE_ATTN_Q: case ROLE_ATTN_K:
    case ROLE_PATCH_EMBEDDING: case ROLE_HEAD:
    case ROLE_CLS_TOKEN: // [1,C]: the mean over C
        return SLIM_ROWS;
    case ROLE_ATTN_V: case ROLE_ATTN_PROJ: case ROLE_MLP_UP: case ROLE_MLP_DOWN:
        return SLIM_COLS;
    default: // LayerNorm gains and biases, all biases (and a fused qkv, which is always split first)
        return SLIM_NONE;
    }
}

size_t slimadam_v_floats(const ParamBlock *b, SlimRule r) {
    switch (r) {
    case SLIM_ROWS: return (size_t)b->rows;
    case SLIM_COLS: return (size_t)b->cols;
    case SLIM_ALL: return 1;
    default: return block_numel(b);
    }
}

size_t slimadam_state_floats(const ParamBlock *split, int num_split, const SlimRule *rules) {
    size_t n = optim_num_params(split, num_split);
    for (int i = 0; i < num_split; i++)
        n += slimadam_v_floats(&split[i], rules ? rules[i] : slimadam_default_rule(&split[i]));
    return n;
}

const char *const OPTIM_NAMES[NUM_OPTIMIZERS] = {"adamw", "sgdm", "sgd_sai", "sinkgd", "slimadam"};

size_t optim_state_bytes_named(const char *name, const ParamBlock *blocks, int num_blocks) {
    size_t floats;
    if (strcmp(name, "adamw") == 0) floats = adamw_state_floats(blocks, num_blocks);
    else if (strcmp(name, "sgdm") == 0) floats = sgdm_state_floats(blocks, num_blocks);
    else if (strcmp(name, "sgd_sai") == 0) floats = sgd_sai_state_floats(blocks, num_blocks);
    else if (strcmp(name, "sinkgd") == 0) floats = sinkgd_state_floats(blocks, num_blocks);
    else if (strcmp(name, "slimadam") == 0) {
        int n;
        ParamBlock *split = optim_split_qkv(blocks, num_blocks, &n);
        floats = slimadam_state_floats(split, n, NULL);
        free(split);
    } else fail("unknown optimizer '%s'", name);
    return floats * sizeof(float);
}

// ----------------------------------------------------------------------------
// the common part of every optimizer

void optim_base_init(OptimBase *base, const ParamBlock *blocks, int num_blocks,
                     const OptimConfig *cfg, size_t state_floats) {
    base->cfg = *cfg;
    base->num_blocks = num_blocks;
    base->blocks = malloc_or_fail(num_blocks * sizeof(ParamBlock), "parameter blocks");
    memcpy(base->blocks, blocks, num_blocks * sizeof(ParamBlock));
    base->state_floats = state_floats;
    base->state = state_floats ? alloc_big_floats(state_floats, "optimizer state") : NULL;
    base->step = 0;
    base->layout = NULL;
    base->layout_len = 0;
    base->layout_blocks = NULL;
    base->layout_what = "";
    base->layout_value_names = NULL;
    base->layout_num_values = 0;
    base->block_start = malloc_or_fail(((size_t)num_blocks + 1) * sizeof(size_t), "block starts");
    base->block_start[0] = 0;
    for (int i = 0; i < num_blocks; i++) base->block_start[i + 1] = base->block_start[i] + block_numel(&blocks[i]);
    base->second_moment = NULL;
    base->gsnr = NULL;
}

void optim_base_free(OptimBase *base) {
    free(base->blocks);
    free(base->block_start);
    free_big(base->state);
}

const float *optim_second_moment(const Optimizer *opt, size_t offset, size_t n) {
    const OptimBase *b = optim_base_const(opt);
    if (!b->second_moment) return NULL;
    for (int i = 0; i < b->num_blocks; i++) {
        const ParamBlock *blk = &b->blocks[i];
        if (offset >= blk->offset && offset + n <= blk->offset + block_numel(blk))
            return b->second_moment + b->block_start[i] + (offset - blk->offset);
    }
    return NULL;
}

void optim_print_gsnr(const Optimizer *opt) {
    const OptimBase *b = optim_base_const(opt);
    const OptimConfig *c = &b->cfg;
    if (!b->gsnr) return;
    printf("SGD-SaI g-SNR (%s%s), frozen from the first gradient:\n",
           c->gsnr_mode == GSNR_SQRT_N ? "sqrt(N)" : "||g|| / (std + eps)", c->gsnr_max_norm ? ", / max" : "");
    printf("  %-24s %12s %14s\n", "block", "N", "g-SNR");
    for (int i = 0; i < b->num_blocks; i++)
        printf("  %-24s %12zu %14.6g\n", b->blocks[i].name, block_numel(&b->blocks[i]), b->gsnr[i]);
}

// The whole step is the block-by-block step over the blocks in model order:
// one definition of the update, whichever way a trainer steps. After the
// first step, the g-SNRs an optimizer froze are printed.
void optim_step(Optimizer *opt, float *params, const float *grads, float lr) {
    const OptimBase *b = optim_base(opt);
    profile_begin(PROFILE_OPTIMIZER, 0);
    optim_step_begin(opt, grads);
    for (int i = 0; i < b->num_blocks; i++) optim_step_block(opt, i, params, grads + b->blocks[i].offset, lr);
    optim_step_end(opt);
    profile_end();
    if (b->step == 1) optim_print_gsnr(opt);
}

size_t optim_state_bytes(const Optimizer *opt) {
    return optim_base_const(opt)->state_floats * sizeof(float);
}

// ----------------------------------------------------------------------------
// the state file
//
//   int32 magic 20261123, int32 version 2
//   char  optimizer[16]      "adamw", ...
//   int64 step               optimizer steps taken
//   int32 num_blocks
//   int64 state_floats
//   num_blocks x { char name[64]; int32 rows; int32 cols; }   checked on load
//   int32 layout_len, int32 layout[layout_len]                 checked on load
//   float state[state_floats]
// Version 1 (no layout) is still read; its layout cannot be checked.

#define OPTIM_STATE_MAGIC 20261123
#define OPTIM_STATE_VERSION 2
#define OPTIM_MAX_LAYOUT (1 << 24)

void optim_write_header(FILE *f, const char *path, int64_t step, const ParamBlock *blocks, int num_blocks,
                        int64_t state_floats, const int32_t *layout, int layout_len) {
    int32_t head[2] = {OPTIM_STATE_MAGIC, OPTIM_STATE_VERSION};
    char name[16] = {0};
    snprintf(name, sizeof(name), "%s", OPTIM_NAME);
    int32_t nb = num_blocks;
    fwrite_or_fail(head, sizeof(head), 1, f, path);
    fwrite_or_fail(name, sizeof(name), 1, f, path);
    fwrite_or_fail(&step, sizeof(step), 1, f, path);
    fwrite_or_fail(&nb, sizeof(nb), 1, f, path);
    fwrite_or_fail(&state_floats, sizeof(state_floats), 1, f, path);
    for (int i = 0; i < num_blocks; i++) {
        int32_t shape[2] = {blocks[i].rows, blocks[i].cols};
        fwrite_or_fail(blocks[i].name, sizeof(blocks[i].name), 1, f, path);
        fwrite_or_fail(shape, sizeof(shape), 1, f, path);
    }
    int32_t nl = layout_len;
    fwrite_or_fail(&nl, sizeof(nl), 1, f, path);
    if (nl) fwrite_or_fail(layout, sizeof(int32_t), (size_t)nl, f, path);
}

void optim_save(const Optimizer *opt, const char *path) {
    const OptimBase *b = optim_base_const(opt);
    AtomicFile af;
    atomic_open(&af, path);
    optim_write_header(af.f, af.tmp_path, b->step, b->blocks, b->num_blocks, (int64_t)b->state_floats, b->layout,
                       b->layout_len);
    if (b->state_floats) fwrite_or_fail(b->state, sizeof(float), b->state_floats, af.f, af.tmp_path);
    atomic_commit(&af);
}

static const char *layout_value_name(const OptimBase *b, int32_t v) {
    return v >= 0 && v < b->layout_num_values ? b->layout_value_names[v] : "?";
}

void optim_load(Optimizer *opt, const char *path) {
    const OptimBase *b = optim_base_const(opt);
    size_t len[OPTIM_MAX_SECTIONS], first[OPTIM_MAX_SECTIONS] = {0};
    int n = optim_state_sections(opt, len);
    (void)n;
    optim_load_part(opt, path, b->blocks, b->num_blocks, 0, b->layout_len, first, len, (int64_t)b->state_floats);
}

void optim_load_part(Optimizer *opt, const char *path, const ParamBlock *model_blocks, int num_model_blocks,
                     int layout_first, int layout_total, const size_t *section_first, const size_t *section_total,
                     int64_t state_floats_total) {
    OptimBase *b = optim_base(opt);
    FILE *f = fopen_or_fail(path, "rb");
    int32_t head[2];
    fread_or_fail(head, sizeof(head), 1, f, path);
    if (head[0] != OPTIM_STATE_MAGIC) fail("%s is not an optimizer state file (bad magic %d)", path, head[0]);
    if (head[1] != 1 && head[1] != OPTIM_STATE_VERSION)
        fail("%s: optimizer state version %d, expected 1 or %d", path, head[1], OPTIM_STATE_VERSION);
    char name[16];
    int64_t step, nf;
    int32_t nb;
    fread_or_fail(name, sizeof(name), 1, f, path);
    name[15] = '\0';
    if (strcmp(name, OPTIM_NAME) != 0)
        fail("%s holds %s state, but this program was built with OPTIM=%s", path, name, OPTIM_NAME);
    fread_or_fail(&step, sizeof(step), 1, f, path);
    fread_or_fail(&nb, sizeof(nb), 1, f, path);
    fread_or_fail(&nf, sizeof(nf), 1, f, path);
    if (nb != num_model_blocks) fail("%s: state for %d parameter blocks, the model has %d", path, nb, num_model_blocks);
    if (step < 0) fail("%s: negative step count", path);
    for (int i = 0; i < nb; i++) {
        char bname[64];
        int32_t shape[2];
        fread_or_fail(bname, sizeof(bname), 1, f, path);
        fread_or_fail(shape, sizeof(shape), 1, f, path);
        bname[63] = '\0';
        const ParamBlock *mb = &model_blocks[i];
        if (strcmp(bname, mb->name) != 0 || shape[0] != mb->rows || shape[1] != mb->cols)
            fail("%s: block %d is %s [%d,%d], the model's is %s [%d,%d]", path, i, bname, shape[0], shape[1],
                 mb->name, mb->rows, mb->cols);
    }
    if (head[1] == 1) {
        if (layout_total > 0)
            warn("%s is a version 1 state file, which does not record the %s: they cannot be checked", path,
                 b->layout_what);
    } else {
        int32_t nl;
        fread_or_fail(&nl, sizeof(nl), 1, f, path);
        check_range_or_fail(path, "the layout length", nl, 0, OPTIM_MAX_LAYOUT);
        if (nl != layout_total)
            fail("%s: the state records a layout of %d entries, this optimizer and model have %d (other %s?)", path,
                 nl, layout_total, layout_total ? b->layout_what : "optimizer settings");
        // this optimizer's entries are [layout_first, layout_first + layout_len) of the model's
        for (int i = 0; i < nl; i++) {
            int32_t v;
            fread_or_fail(&v, sizeof(v), 1, f, path);
            int j = i - layout_first;
            if (j < 0 || j >= b->layout_len) continue;
            if (v != b->layout[j])
                fail("%s: the state was saved with other %s: block %s has %s there, %s here", path, b->layout_what,
                     b->layout_blocks[j].name, layout_value_name(b, v), layout_value_name(b, b->layout[j]));
        }
    }
    if (nf != state_floats_total)
        fail("%s: %lld state floats, this optimizer and model need %lld (other optimizer settings?)", path,
             (long long)nf, (long long)state_floats_total);
    // the file's state is each section of the whole model in turn; this
    // optimizer's part of section s starts section_first[s] floats into it
    long data_start = ftell(f);
    if (data_start < 0) fail("%s: cannot tell the file position", path);
    if (fseek(f, 0, SEEK_END) != 0) fail("%s: cannot seek", path);
    long size = ftell(f);
    if (size < data_start || (uint64_t)(size - data_start) != (uint64_t)nf * sizeof(float)) {
        if (size >= data_start && (uint64_t)(size - data_start) > (uint64_t)nf * sizeof(float))
            fail("%s has trailing bytes after the optimizer state", path);
        fail("%s: truncated (%ld bytes of state, %lld expected)", path, size - data_start,
             (long long)nf * (long long)sizeof(float));
    }
    size_t len[OPTIM_MAX_SECTIONS];
    int num_sections = optim_state_sections(opt, len);
    size_t before = 0, mine = 0;
    for (int s = 0; s < num_sections; s++) {
        if (len[s]) {
            if (fseek(f, data_start + (long)((before + section_first[s]) * sizeof(float)), SEEK_SET) != 0)
                fail("%s: cannot seek", path);
            fread_or_fail(b->state + mine, sizeof(float), len[s], f, path);
        }
        before += section_total[s];
        mine += len[s];
    }
    fclose(f);
    b->step = step;
}

// ----------------------------------------------------------------------------
// flags

typedef struct {
    const char *flag;
    const char *arg; // what its value is, as --help names it
    unsigned needs;  // HP_* bit
    const char *help;
} OptimFlag;

static const OptimFlag optim_flags[] = {
    {"--beta1", "F", HP_BETAS, "first-moment decay (AdamW, SlimAdam, SinkGD's AdamW blocks)"},
    {"--beta2", "F", HP_BETAS, "second-moment decay (AdamW, SlimAdam, SinkGD's AdamW blocks)"},
    {"--eps", "F", HP_EPS, "AdamW/SlimAdam/SinkGD: added to sqrt(v); SGD-SaI: added to the gradient std"},
    {"--momentum", "F", HP_MOMENTUM, "momentum (SGDM) / EMA coefficient of the gradient (SGD-SaI)"},
    {"--nesterov", "0|1", HP_NESTEROV, "Nesterov momentum (SGDM)"},
    {"--gsnr", "ratio|sqrtn", HP_GSNR, "SGD-SaI's scale: norm/std of the first gradient, or sqrt(N)"},
    {"--gsnr-max-norm", "0|1", HP_GSNR, "divide every g-SNR by the largest (the paper's Algorithm 1)"},
    {"--sinkgd-iters", "L", HP_SINKGD, "Sinkhorn iterations (SinkGD)"},
    {"--sinkgd-scale", "A", HP_SINKGD, "the hidden matrices step with A*lr (SinkGD)"},
    {"--slimadam-rules", "FILE", HP_SLIMADAM_RULES, "JSON file of block name -> dimensions to average v over"},
};
#define NUM_OPTIM_FLAGS ((int)(sizeof(optim_flags) / sizeof(optim_flags[0])))

static int parse_bool(const char *value, const char *flag) {
    if (strcmp(value, "0") == 0) return 0;
    if (strcmp(value, "1") == 0) return 1;
    fail("flag %s takes 0 or 1, not '%s'", flag, value);
}

int optim_parse_flag(OptimConfig *cfg, const char *flag, const char *value) {
    const OptimFlag *f = NULL;
    for (int i = 0; i < NUM_OPTIM_FLAGS; i++)
        if (strcmp(flag, optim_flags[i].flag) == 0) f = &optim_flags[i];
    if (!f) return 0;
    if (!(OPTIM_HPARAMS & f->needs))
        fail("flag %s does not apply to %s (built with OPTIM=%s; rebuild with another OPTIM to use it)", flag,
             OPTIM_NAME, OPTIM_NAME);
    if (!value) fail("flag %s needs a value", flag);
    if (strcmp(flag, "--beta1") == 0 || strcmp(flag, "--beta2") == 0) {
        double v = parse_double_or_fail(value, flag);
        if (v < 0.0 || v >= 1.0) fail("flag %s must be in [0, 1), got %s", flag, value);
        if (flag[6] == '1') cfg->beta1 = (float)v; else cfg->beta2 = (float)v;
    } else if (strcmp(flag, "--eps") == 0) {
        double v = parse_double_or_fail(value, flag);
        if (v < 0.0) fail("flag --eps must be >= 0, got %s", value);
        cfg->eps = (float)v;
    } else if (strcmp(flag, "--momentum") == 0) {
        double v = parse_double_or_fail(value, flag);
        if (v < 0.0 || v >= 1.0) fail("flag --momentum must be in [0, 1), got %s", value);
        cfg->momentum = (float)v;
    } else if (strcmp(flag, "--nesterov") == 0) {
        cfg->nesterov = parse_bool(value, flag);
    } else if (strcmp(flag, "--gsnr") == 0) {
        if (strcmp(value, "ratio") == 0) cfg->gsnr_mode = GSNR_RATIO;
        else if (strcmp(value, "sqrtn") == 0) cfg->gsnr_mode = GSNR_SQRT_N;
        else fail("flag --gsnr takes ratio or sqrtn, not '%s'", value);
    } else if (strcmp(flag, "--gsnr-max-norm") == 0) {
        cfg->gsnr_max_norm = parse_bool(value, flag);
    } else if (strcmp(flag, "--sinkgd-iters") == 0) {
        long v = parse_long_or_fail(value, flag);
        if (v < 1 || v > 1000) fail("flag --sinkgd-iters must be in [1, 1000], got %s", value);
        cfg->sinkgd_iters = (int)v;
    } else if (strcmp(flag, "--sinkgd-scale") == 0) {
        double v = parse_double_or_fail(value, flag);
        if (v <= 0.0) fail("flag --sinkgd-scale must be > 0, got %s", value);
        cfg->sinkgd_scale = (float)v;
    } else if (strcmp(flag, "--slimadam-rules") == 0) {
        if (strlen(value) >= sizeof(cfg->slimadam_rules)) fail("flag --slimadam-rules: path too long");
        snprintf(cfg->slimadam_rules, sizeof(cfg->slimadam_rules), "%s", value);
    }
    return 1;
}

void optim_print_flags_help(void) {
    printf("optimizer flags (this build: OPTIM=%s):\n", OPTIM_NAME);
    char name[64];
    for (int i = 0; i < NUM_OPTIM_FLAGS; i++) {
        if (!(OPTIM_HPARAMS & optim_flags[i].needs)) continue;
        snprintf(name, sizeof(name), "%s %s", optim_flags[i].flag, optim_flags[i].arg);
        printf("  %-22s %s\n", name, optim_flags[i].help);
    }
}

const char *optim_flag_name(int i, const char **arg, const char **help) {
    if (i < 0 || i >= NUM_OPTIM_FLAGS) return NULL;
    *arg = optim_flags[i].arg;
    *help = optim_flags[i].help;
    return optim_flags[i].flag;
}

void optim_print_config(const OptimConfig *c) {
    printf("optimizer: %s\n", OPTIM_NAME);
    printf("  lr %g, weight decay %g (matrices and embeddings only)\n", c->lr, c->weight_decay);
    if (OPTIM_HPARAMS & HP_BETAS) printf("  betas (%g, %g)\n", c->beta1, c->beta2);
    if (OPTIM_HPARAMS & HP_EPS) printf("  eps %g\n", c->eps);
    if (OPTIM_HPARAMS & HP_MOMENTUM) printf("  momentum %g\n", c->momentum);
    if (OPTIM_HPARAMS & HP_NESTEROV) printf("  nesterov %d\n", c->nesterov);
    if (OPTIM_HPARAMS & HP_GSNR)
        printf("  g-SNR %s, max-normalised %d\n", c->gsnr_mode == GSNR_RATIO ? "norm/std (ratio)" : "sqrt(N)",
               c->gsnr_max_norm);
    if (OPTIM_HPARAMS & HP_SINKGD) printf("  Sinkhorn iterations %d, matrix step scale a %g\n", c->sinkgd_iters, c->sinkgd_scale);
    if (OPTIM_HPARAMS & HP_SLIMADAM_RULES)
        printf("  rules %s\n", c->slimadam_rules[0] ? c->slimadam_rules : "(default: the paper's Table 1)");
}

// ----------------------------------------------------------------------------
// the g-SNR of a gradient block (SGD-SaI, and the --gsnr-every analysis)

double gsnr_of_gradient(const float *g, size_t n, double eps) {
    // two passes (mean, then squared deviations) keep the std exact for a
    // constant gradient
    double sum = 0.0, sumsq = 0.0;
    #pragma omp simd reduction(+:sum, sumsq)
    for (size_t i = 0; i < n; i++) {
        double x = g[i];
        sum += x;
        sumsq += x * x;
    }
    double mean = sum / (double)n;
    double dev = 0.0;
    #pragma omp simd reduction(+:dev)
    for (size_t i = 0; i < n; i++) {
        double d = (double)g[i] - mean;
        dev += d * d;
    }
    double std = n > 1 ? sqrt(dev / (double)(n - 1)) : 0.0;
    return sqrt(sumsq) / (std + eps);
}

// ----------------------------------------------------------------------------
// gradient sums and clipping

double row_sum_of_squares_d(const float *g, int n) {
    double acc[16] = {0};
    int j = 0;
    for (; j + 16 <= n; j += 16)
        for (int l = 0; l < 16; l++) acc[l] += (double)g[j + l] * (double)g[j + l];
    for (int l = 0; j + l < n; l++) acc[l] += (double)g[j + l] * (double)g[j + l];
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    return acc[0];
}

#define SUMSQ_MAX_SLABS 4096
int sum_of_squares_slab_rows(int rows) {
    return rows <= 32 * SUMSQ_MAX_SLABS ? 32 : (rows + SUMSQ_MAX_SLABS - 1) / SUMSQ_MAX_SLABS;
}

// An AdamW update to apply to each row while the sum reads it (slab_sums).
typedef struct {
    float *p, *m, *v;
    float beta1, beta2, eps, step_size, bc2_sqrt, decay;
} RowUpdate;
static void row_update(const RowUpdate *u, const float *g, size_t at, int cols);

// The sum of squares of a [rows, cols] gradient in its fixed order: each
// slab's rows in order, then the slabs in order. With u, each row also gets
// its AdamW update while it is in L1 (the fused updates' norm for free).
static double slab_sums(const float *g, int rows, int cols, const RowUpdate *u) {
    int slab = sum_of_squares_slab_rows(rows), nslabs = (rows + slab - 1) / slab;
    double partial[SUMSQ_MAX_SLABS];
    #pragma omp parallel for schedule(static) if (nslabs > 1)
    for (int s = 0; s < nslabs; s++) {
        int i1 = (s + 1) * slab < rows ? (s + 1) * slab : rows;
        double sum = 0.0;
        for (int i = s * slab; i < i1; i++) {
            sum += row_sum_of_squares_d(g + (size_t)i * cols, cols);
            if (u) row_update(u, g, (size_t)i * cols, cols);
        }
        partial[s] = sum;
    }
    double total = 0.0;
    for (int s = 0; s < nslabs; s++) total += partial[s];
    return total;
}

double sum_of_squares_rows(const float *g, int rows, int cols) { return slab_sums(g, rows, cols, NULL); }

double block_sum_of_squares(const float *g, const ParamBlock *blk) {
    return blk->ndim == 2 ? sum_of_squares_rows(g, blk->rows, blk->cols) : sum_of_squares_rows(g, 1, blk->rows);
}

void scale_floats(float *g, size_t n, float coef) {
    #pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) g[i] *= coef;
}

float clip_coef(float norm, float clip) {
    if (!(clip > 0.0f) || !isfinite(norm)) return 1.0f;
    float coef = clip / (norm + 1e-6f);
    return coef < 1.0f ? coef : 1.0f;
}

// ----------------------------------------------------------------------------
// updates during the backward pass

void fused_init(FusedStep *f, Optimizer *opt, float *params) {
    memset(f, 0, sizeof(*f));
    f->opt = opt;
    f->params = params;
    f->num_blocks = optim_base(opt)->num_blocks;
    f->sumsq = calloc_or_fail(f->num_blocks, sizeof(double), "per-block gradient sums");
}

void fused_free(FusedStep *f) { free(f->sumsq); }

void fused_begin(FusedStep *f, long step, float lr, int measure) {
    f->step = step;
    f->lr = lr;
    f->coef = 1.0f;
    f->measuring = measure;
    f->measured = 0;
}

// the global norm: the blocks' sums in block order, as clip_grad_norm adds them
static float fused_total_norm(const FusedStep *f) {
    double total = 0.0;
    for (int b = 0; b < f->num_blocks; b++) total += f->sumsq[b];
    return (float)sqrt(total);
}

static void fused_check_finite(const FusedStep *f, int b) {
    if (!isfinite(f->sumsq[b]))
        fail("step %ld: the gradient of %s is not finite; with --fused-update 1 the blocks before it are already "
             "updated, so this state cannot be kept (the newest checkpoint in -o is intact; --clip > 0 or --nan "
             "skip check the whole gradient before any update)", f->step, optim_base(f->opt)->blocks[b].name);
}

void fused_block(FusedStep *f, int b, float *grad) {
    const ParamBlock *blk = &optim_base(f->opt)->blocks[b];
    size_t n = block_numel(blk);
    OptimBase *base = optim_base(f->opt);
    // the update sums the squares itself (one read of the gradient fewer): the
    // same sum, checked right after; a non-finite one fails as below, and this
    // block's moved parameters go with the process like the earlier blocks'
    int update_sums = !f->measuring && !f->measured && base->sums_squares && base->sums_squares[b];
    if ((f->measuring || !f->measured) && !update_sums) {
        profile_begin(PROFILE_GRAD_NORM, 0);
        f->sumsq[b] = block_sum_of_squares(grad, blk);
        profile_end();
        if (f->measuring) return;
        fused_check_finite(f, b);
    }
    profile_begin(PROFILE_OPTIMIZER, 0);
    if (f->coef < 1.0f) scale_floats(grad, n, f->coef);
    if (update_sums) base->block_sumsq = &f->sumsq[b];
    optim_step_block(f->opt, b, f->params, grad, f->lr);
    base->block_sumsq = NULL;
    profile_end();
    if (update_sums) fused_check_finite(f, b);
}

float fused_measured(FusedStep *f, float clip) {
    float norm = fused_total_norm(f);
    f->coef = clip_coef(norm, clip);
    f->measuring = 0;
    f->measured = 1;
    return norm;
}

void fused_update_begin(FusedStep *f) {
    f->measuring = 0;
    profile_begin(PROFILE_OPTIMIZER, 0);
    optim_step_begin(f->opt, NULL);
    profile_end();
}

float fused_end(FusedStep *f) {
    profile_begin(PROFILE_OPTIMIZER, 0);
    optim_step_end(f->opt);
    profile_end();
    if (optim_base(f->opt)->step == 1) optim_print_gsnr(f->opt);
    return fused_total_norm(f);
}

// ----------------------------------------------------------------------------
// the AdamW kernel (spec section 1, PyTorch's torch.optim.AdamW)

// the AdamW update of n entries, its step's constants worked out (adamw_update)
static inline void adamw_span(float *p, const float *g, float *m, float *v, size_t n, float beta1, float beta2,
                              float eps, float step_size, float bc2_sqrt, float decay) {
    #pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = p[i] * decay - step_size * (mi / denom);
    }
}

// bias corrections in double, then used as fp32 scalars, as PyTorch does
static void adamw_constants(float lr, float beta1, float beta2, float wd, int64_t t, float *step_size,
                            float *bc2_sqrt, float *decay) {
    double bc1 = 1.0 - pow((double)beta1, (double)t);
    double bc2 = 1.0 - pow((double)beta2, (double)t);
    *step_size = (float)((double)lr / bc1);
    *bc2_sqrt = (float)sqrt(bc2);
    *decay = 1.0f - lr * wd;
}

void adamw_update(float *p, const float *g, float *m, float *v, size_t n,
                  float lr, float beta1, float beta2, float eps, float wd, int64_t t) {
    float step_size, bc2_sqrt, decay;
    adamw_constants(lr, beta1, beta2, wd, t, &step_size, &bc2_sqrt, &decay);
    // in pieces of 4096 entries (elementwise: the same bits however split)
    size_t pieces = (n + 4095) / 4096;
    #pragma omp parallel for schedule(static)
    for (size_t k = 0; k < pieces; k++) {
        size_t lo = k * 4096, len = n - lo < 4096 ? n - lo : 4096;
        adamw_span(p + lo, g + lo, m + lo, v + lo, len, beta1, beta2, eps, step_size, bc2_sqrt, decay);
    }
}

double adamw_update_summing(float *p, const float *g, float *m, float *v, const ParamBlock *blk,
                            float lr, float beta1, float beta2, float eps, float wd, int64_t t) {
    float step_size, bc2_sqrt, decay;
    adamw_constants(lr, beta1, beta2, wd, t, &step_size, &bc2_sqrt, &decay);
    int rows = blk->ndim == 2 ? blk->rows : 1, cols = blk->ndim == 2 ? blk->cols : blk->rows;
    RowUpdate u = {p, m, v, beta1, beta2, eps, step_size, bc2_sqrt, decay};
    return slab_sums(g, rows, cols, &u);
}

static void row_update(const RowUpdate *u, const float *g, size_t at, int cols) {
    adamw_span(u->p + at, g + at, u->m + at, u->v + at, cols, u->beta1, u->beta2, u->eps, u->step_size, u->bc2_sqrt,
               u->decay);
}
