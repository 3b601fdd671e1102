// SlimAdam (spec section 5; Kalra et al., "When Can You Get Away with Low
// Memory Adam?"): AdamW whose second moment is averaged over chosen dimensions
// K of each block and broadcast back in the update.
//
//   m = b1*m + (1-b1)*g                                   full size
//   v = b2*v + (1-b2)*mean_K(g*g)                         compressed shape
//   p = p*(1 - lr*wd)                                     decayed blocks only
//   p = p - (lr/(1-b1^t)) * m / (sqrt(v/(1-b2^t)) + eps)  v broadcast over K
//
// For a block [rows=fan_out, cols=fan_in]: K=(1,) keeps one v per row,
// K=(0,) one per column, K=(0,1) one for the block, K=none is plain AdamW.
// Fused qkv is treated as three blocks q, k, v.
//
// Rules: the paper's Table 1 by role, or a JSON file mapping block names to K:
//   {"wte": [1], "h0.attn.qkvw.v": [0], "h0.mlp.fcw": [0, 1], "h0.ln1w": null}
// (null or [] = none; blocks the file does not name keep the default rule).
//
// State: m (4 bytes per parameter) and the compressed v (~0.2% of the
// parameters for GPT-2 124M).
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/utils.h"
#include "optim/optim.h"

const char OPTIM_NAME[] = "slimadam";
const unsigned OPTIM_HPARAMS = HP_BETAS | HP_EPS | HP_SLIMADAM_RULES;

struct Optimizer {
    OptimBase base;    // state = [m of every split block | compressed v of every split block]
    ParamBlock *split; // blocks with fused qkv split into q, k, v
    int num_split;
    SlimRule *rule;    // per split block
    size_t *m_off;     // per split block: its m at state + m_off[i]
    size_t *v_off;     // per split block: its v at state + v_off[i]
    int32_t *layout;   // per split block: its rule, saved in the state file (OptimBase.layout)
    int *first;        // model block b is split blocks first[b] .. first[b+1]-1
    float *colsum;     // scratch: column sums of g*g, then column denominators (max cols)
};

void optim_default_config(OptimConfig *cfg) {
    *cfg = (OptimConfig){0};
    cfg->lr = 6e-4f; // same hyperparameters as AdamW
    cfg->weight_decay = 0.1f;
    cfg->beta1 = 0.9f;
    cfg->beta2 = 0.95f;
    cfg->eps = 1e-8f;
}

// The rule K of each split block, SlimRule, and the paper's Table 1 by role
// (slimadam_default_rule) are in optim.h/optim.c with the state sizes.

static const char *rule_name(SlimRule r) {
    static const char *names[] = {"none", "(1,)", "(0,)", "(0,1)"};
    return names[r];
}

// Read rules from JSON: block name -> list of dims, null or [] for none.
static void load_rules(const char *path, const ParamBlock *blocks, int n, SlimRule *rules, int blocks_are_part) {
    cJSON *root = json_read_file_or_fail(path); // no trailing text, no key twice
    if (!cJSON_IsObject(root)) fail("%s: expected a JSON object of block name -> dimensions", path);
    cJSON *item;
    cJSON_ArrayForEach(item, root) {
        const char *name = item->string;
        int idx = -1;
        for (int i = 0; i < n; i++) if (strcmp(blocks[i].name, name) == 0) idx = i;
        if (idx < 0 && blocks_are_part) continue; // another rank's block (the whole list was checked)
        if (idx < 0) fail("%s: unknown block '%s' (fused qkv blocks are named <layer>.attn.qkvw.q/.k/.v)", path, name);
        const ParamBlock *b = &blocks[idx];
        if (cJSON_IsNull(item) || (cJSON_IsArray(item) && cJSON_GetArraySize(item) == 0)) {
            rules[idx] = SLIM_NONE;
            continue;
        }
        if (!cJSON_IsArray(item)) fail("%s: block '%s': expected a list of dimensions or null", path, name);
        int has0 = 0, has1 = 0;
        cJSON *dim;
        cJSON_ArrayForEach(dim, item) {
            // compared as a double first: converting 1e300 to int is undefined (found by fuzz/fuzz_slimadam_rules)
            double v = cJSON_IsNumber(dim) ? dim->valuedouble : -1.0;
            if (!cJSON_IsNumber(dim) || v != floor(v)) fail("%s: block '%s': dimensions must be integers", path, name);
            if (v < 0 || v >= b->ndim)
                fail("%s: block '%s' has %d dimension%s, so dimension %g is impossible", path, name, b->ndim,
                     b->ndim == 1 ? "" : "s", v);
            int d = (int)v;
            if ((d == 0 && has0) || (d == 1 && has1)) fail("%s: block '%s': dimension %d repeated", path, name, d);
            if (d == 0) has0 = 1; else has1 = 1;
        }
        if (b->ndim == 1) rules[idx] = SLIM_ALL;
        else rules[idx] = has0 && has1 ? SLIM_ALL : (has1 ? SLIM_ROWS : SLIM_COLS);
    }
    cJSON_Delete(root);
}

// each split block's rule: Table 1, then the rules file
static SlimRule *resolve_rules(const ParamBlock *split, int n, const OptimConfig *cfg) {
    SlimRule *rules = malloc_or_fail(n * sizeof(SlimRule), "SlimAdam rules");
    for (int i = 0; i < n; i++) rules[i] = slimadam_default_rule(&split[i]);
    if (cfg->slimadam_rules[0]) load_rules(cfg->slimadam_rules, split, n, rules, cfg->blocks_are_part);
    return rules;
}

size_t optim_state_bytes_for(const ParamBlock *blocks, int num_blocks, const OptimConfig *cfg) {
    int n;
    ParamBlock *split = optim_split_qkv(blocks, num_blocks, &n);
    SlimRule *rules = resolve_rules(split, n, cfg);
    size_t floats = slimadam_state_floats(split, n, rules);
    free(rules);
    free(split);
    return floats * sizeof(float);
}

Optimizer *optim_create(const ParamBlock *blocks, int num_blocks, const OptimConfig *cfg) {
    Optimizer *opt = calloc_or_fail(1, sizeof(Optimizer), "SlimAdam");
    opt->split = optim_split_qkv(blocks, num_blocks, &opt->num_split);
    int n = opt->num_split;
    opt->rule = resolve_rules(opt->split, n, cfg);
    opt->m_off = malloc_or_fail(n * sizeof(size_t), "SlimAdam offsets");
    opt->v_off = malloc_or_fail(n * sizeof(size_t), "SlimAdam offsets");
    size_t num_params = 0, v_floats = 0;
    int max_cols = 1;
    for (int i = 0; i < n; i++) {
        opt->m_off[i] = num_params;
        num_params += block_numel(&opt->split[i]);
        if (opt->split[i].cols > max_cols) max_cols = opt->split[i].cols;
    }
    for (int i = 0; i < n; i++) {
        opt->v_off[i] = num_params + v_floats;
        v_floats += slimadam_v_floats(&opt->split[i], opt->rule[i]);
    }
    optim_base_init(&opt->base, blocks, num_blocks, cfg, slimadam_state_floats(opt->split, n, opt->rule));
    // v of a square block has the same size per row and per column: only the
    // rules say which it is, so the state file records them
    static const char *const k_names[] = {"K=none", "K=(1,)", "K=(0,)", "K=(0,1)"};
    opt->layout = malloc_or_fail(n * sizeof(int32_t), "SlimAdam rules");
    for (int i = 0; i < n; i++) opt->layout[i] = (int32_t)opt->rule[i];
    opt->base.layout = opt->layout;
    opt->base.layout_len = n;
    opt->base.layout_blocks = opt->split;
    opt->base.layout_what = "SlimAdam rules";
    opt->base.layout_value_names = k_names;
    opt->base.layout_num_values = 4;
    opt->first = optim_split_first(blocks, num_blocks);
    opt->colsum = malloc_or_fail(max_cols * sizeof(float), "SlimAdam column sums");
    return opt;
}

// Column sums of g*g over the rows of a [rows, cols] block: threads own
// chunks of columns and add the rows in order, so the result is deterministic.
static void column_sums_of_squares(float *out, const float *g, int rows, int cols) {
    #pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < cols; c0 += 64) {
        int c1 = c0 + 64 < cols ? c0 + 64 : cols;
        float acc[64] = {0};
        for (int r = 0; r < rows; r++) {
            const float *row = g + (size_t)r * cols;
            #pragma omp simd
            for (int c = c0; c < c1; c++) acc[c - c0] += row[c] * row[c];
        }
        for (int c = c0; c < c1; c++) out[c] = acc[c - c0];
    }
}

// split block i, its gradient g
static void slimadam_update(Optimizer *opt, int i, float *params, const float *g, float lr) {
    const OptimConfig *c = &opt->base.cfg;
    const ParamBlock *blk = &opt->split[i];
    int rows = blk->rows, cols = blk->cols;
    float *p = params + blk->offset;
    float *m = opt->base.state + opt->m_off[i];
    float *v = opt->base.state + opt->v_off[i];
    float b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    int64_t t = opt->base.step;
    float step_size = (float)((double)lr / (1.0 - pow((double)b1, (double)t)));
    float bc2 = (float)(1.0 - pow((double)b2, (double)t));
    float decay = 1.0f - lr * (blk->decay ? c->weight_decay : 0.0f);
    SlimRule rule = opt->rule[i];

    // 1. update the compressed second moment
    if (rule == SLIM_ROWS) {
        #pragma omp parallel for schedule(static)
        for (int r = 0; r < rows; r++) {
            const float *gr = g + (size_t)r * cols;
            float s = 0.0f;
            #pragma omp simd reduction(+:s)
            for (int j = 0; j < cols; j++) s += gr[j] * gr[j];
            v[r] = b2 * v[r] + (1.0f - b2) * (s / (float)cols);
        }
    } else if (rule == SLIM_COLS || rule == SLIM_ALL) {
        column_sums_of_squares(opt->colsum, g, rows, cols);
        if (rule == SLIM_COLS) {
            for (int j = 0; j < cols; j++) v[j] = b2 * v[j] + (1.0f - b2) * (opt->colsum[j] / (float)rows);
        } else {
            float s = 0.0f;
            for (int j = 0; j < cols; j++) s += opt->colsum[j];
            v[0] = b2 * v[0] + (1.0f - b2) * (s / ((float)rows * (float)cols));
        }
    }
    // 2. the denominators sqrt(v/(1-b2^t)) + eps, once per v entry; column
    //    denominators go to the scratch (the column sums are no longer needed)
    float *col_denom = opt->colsum;
    if (rule == SLIM_COLS)
        for (int j = 0; j < cols; j++) col_denom[j] = sqrtf(v[j] / bc2) + eps;
    float all_denom = rule == SLIM_ALL ? sqrtf(v[0] / bc2) + eps : 0.0f;
    // 3. update m and the parameters, v broadcast over K
    #pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        float *pr = p + (size_t)r * cols, *mr = m + (size_t)r * cols;
        const float *gr = g + (size_t)r * cols;
        if (rule == SLIM_NONE) { // plain AdamW (in SlimAdam's form)
            float *vr = v + (size_t)r * cols;
            #pragma omp simd
            for (int j = 0; j < cols; j++) {
                float mk = b1 * mr[j] + (1.0f - b1) * gr[j];
                float vk = b2 * vr[j] + (1.0f - b2) * gr[j] * gr[j];
                mr[j] = mk;
                vr[j] = vk;
                pr[j] = pr[j] * decay - step_size * (mk / (sqrtf(vk / bc2) + eps));
            }
        } else if (rule == SLIM_COLS) {
            #pragma omp simd
            for (int j = 0; j < cols; j++) {
                float mk = b1 * mr[j] + (1.0f - b1) * gr[j];
                mr[j] = mk;
                pr[j] = pr[j] * decay - step_size * (mk / col_denom[j]);
            }
        } else { // one denominator for the row (K=(1,)) or the block (K=(0,1))
            float denom = rule == SLIM_ROWS ? sqrtf(v[r] / bc2) + eps : all_denom;
            #pragma omp simd
            for (int j = 0; j < cols; j++) {
                float mk = b1 * mr[j] + (1.0f - b1) * gr[j];
                mr[j] = mk;
                pr[j] = pr[j] * decay - step_size * (mk / denom);
            }
        }
    }
}

void optim_step_begin(Optimizer *opt, const float *grads) {
    (void)grads; // every block's update needs only its own gradient
    opt->base.step++;
}

// a fused qkv is three split blocks with their own rules
void optim_step_block(Optimizer *opt, int b, float *params, const float *grad, float lr) {
    size_t base = opt->base.blocks[b].offset;
    for (int i = opt->first[b]; i < opt->first[b + 1]; i++)
        slimadam_update(opt, i, params, grad + (opt->split[i].offset - base), lr);
}

void optim_step_end(Optimizer *opt) { (void)opt; }

const char *optim_fused_unsupported(const OptimConfig *cfg) {
    (void)cfg;
    return NULL;
}

// Layer numbers become '*', so a 12-layer model prints one line per kind of block.
static void name_pattern(const char *name, char *out, size_t outlen) {
    size_t o = 0;
    for (const char *s = name; *s && o + 1 < outlen; s++) {
        if (isdigit((unsigned char)*s)) {
            out[o++] = '*';
            while (isdigit((unsigned char)s[1])) s++;
        } else {
            out[o++] = *s;
        }
    }
    out[o] = '\0';
}

// [m of every split block | compressed v of every split block]
int optim_state_sections(const Optimizer *opt, size_t len[OPTIM_MAX_SECTIONS]) {
    len[0] = optim_num_params(opt->split, opt->num_split);
    len[1] = opt->base.state_floats - len[0];
    return 2;
}

void optim_print(const Optimizer *opt) {
    optim_print_config(&opt->base.cfg);
    printf("  %-24s %-6s %7s %14s\n", "blocks", "K", "count", "v floats");
    int n = opt->num_split;
    int *done = calloc_or_fail(n, sizeof(int), "print");
    for (int i = 0; i < n; i++) {
        if (done[i]) continue;
        char pat[80], other[80];
        name_pattern(opt->split[i].name, pat, sizeof(pat));
        int count = 0;
        size_t vf = 0;
        for (int j = i; j < n; j++) {
            name_pattern(opt->split[j].name, other, sizeof(other));
            if (!done[j] && opt->rule[j] == opt->rule[i] && strcmp(pat, other) == 0) {
                done[j] = 1;
                count++;
                vf += slimadam_v_floats(&opt->split[j], opt->rule[j]);
            }
        }
        printf("  %-24s %-6s %7d %14zu\n", pat, rule_name(opt->rule[i]), count, vf);
    }
    free(done);
}

void optim_free(Optimizer *opt) {
    if (!opt) return;
    optim_base_free(&opt->base);
    free(opt->split);
    free(opt->rule);
    free(opt->m_off);
    free(opt->v_off);
    free(opt->layout);
    free(opt->first);
    free(opt->colsum);
    free(opt);
}
