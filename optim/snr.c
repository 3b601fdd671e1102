// SlimAdam's SNR analysis; see optim/snr.h.
#include "optim/snr.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/utils.h"

void snr_init(SnrStats *s, const ParamBlock *model_blocks, int num_blocks) {
    memset(s, 0, sizeof(*s));
    s->blocks = optim_split_qkv(model_blocks, num_blocks, &s->num_blocks);
    s->sum = calloc_or_fail((size_t)s->num_blocks * SNR_NUM_K, sizeof(double), "SNR sums");
    s->count = calloc_or_fail((size_t)s->num_blocks * SNR_NUM_K, sizeof(int), "SNR counts");
    s->last = calloc_or_fail((size_t)s->num_blocks * SNR_NUM_K, sizeof(double), "SNR measurement");
    for (size_t i = 0; i < (size_t)s->num_blocks * SNR_NUM_K; i++) s->last[i] = NAN;
    s->first_step = s->last_step = -1;
}

// ratio (mean^2 / population variance) of n values at stride apart, in double
static double mean_sq_over_var(const float *v, size_t n, size_t stride) {
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += v[i * stride];
    double mean = sum / (double)n, var = 0.0;
    for (size_t i = 0; i < n; i++) { double d = v[i * stride] - mean; var += d * d; }
    var /= (double)n;
    return mean * mean / var; // inf or nan when var == 0: dropped by the caller
}

double snr_of(const float *v, int rows, int cols, int k) {
    if (k == SNR_K01) {
        double r = mean_sq_over_var(v, (size_t)rows * cols, 1);
        return isfinite(r) ? r : NAN;
    }
    // K = (1,): one ratio per row (over its cols); K = (0,): one per column
    int groups = k == SNR_K1 ? rows : cols;
    double total = 0.0;
    int finite = 0;
    for (int g = 0; g < groups; g++) {
        double r = k == SNR_K1 ? mean_sq_over_var(v + (size_t)g * cols, cols, 1)
                               : mean_sq_over_var(v + g, rows, cols);
        if (isfinite(r)) { total += r; finite++; }
    }
    return finite ? total / finite : NAN;
}

void snr_measure(SnrStats *s, const Optimizer *opt, long step) {
    s->measurements++;
    if (s->first_step < 0) s->first_step = step;
    s->last_step = step;
    // blocks are independent: one thread each, every sum in a fixed order
    #pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < s->num_blocks; i++) {
        const ParamBlock *b = &s->blocks[i];
        const float *v = optim_second_moment(opt, b->offset, block_numel(b));
        if (!v) fail("the SNR analysis needs AdamW's second moment (build with OPTIM=adamw); block %s has none", b->name);
        for (int k = 0; k < SNR_NUM_K; k++) {
            // a vector has one dimension: only K = (0,), which is all of it
            if (b->ndim == 1 && k != SNR_K01) continue;
            double r = snr_of(v, b->rows, b->cols, k);
            s->last[(size_t)i * SNR_NUM_K + k] = r;
            if (isfinite(r)) {
                s->sum[(size_t)i * SNR_NUM_K + k] += r;
                s->count[(size_t)i * SNR_NUM_K + k]++;
            }
        }
    }
}

static const char *k_names[SNR_NUM_K] = {"(0,)", "(1,)", "(0,1)"};

// JSON has no NaN or Inf: those are null. The others with 17 significant
// digits, which read back as the same double: cJSON's own printing settles for
// 15 digits whenever they come back within an epsilon, and a resumed run adds
// these values up again (snr_add_record), so its means differed in the last bit
// (seen under make SANITIZE=1)
static cJSON *json_number_or_null(double x) {
    if (!isfinite(x)) return cJSON_CreateNull();
    char digits[32];
    snprintf(digits, sizeof(digits), "%.17g", x);
    return cJSON_CreateRaw(digits);
}

static cJSON *json_shape(const ParamBlock *b) {
    int shape[2] = {b->rows, b->cols};
    return cJSON_CreateIntArray(shape, b->ndim == 1 ? 1 : 2);
}

cJSON *snr_header(const SnrStats *s) {
    cJSON *h = cJSON_CreateObject();
    cJSON_AddStringToObject(h, "type", "header");
    cJSON_AddItemToObject(h, "k", cJSON_CreateStringArray(k_names, SNR_NUM_K));
    cJSON *blocks = cJSON_AddObjectToObject(h, "blocks");
    for (int i = 0; i < s->num_blocks; i++) {
        cJSON *b = cJSON_AddObjectToObject(blocks, s->blocks[i].name);
        cJSON_AddStringToObject(b, "role", role_name(s->blocks[i].role));
        cJSON_AddItemToObject(b, "shape", json_shape(&s->blocks[i]));
    }
    return h;
}

cJSON *snr_record(const SnrStats *s) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "step", (double)s->last_step);
    cJSON *snr = cJSON_AddObjectToObject(r, "snr");
    for (int i = 0; i < s->num_blocks; i++) {
        cJSON *a = cJSON_CreateArray();
        for (int k = 0; k < SNR_NUM_K; k++) cJSON_AddItemToArray(a, json_number_or_null(s->last[(size_t)i * SNR_NUM_K + k]));
        cJSON_AddItemToObject(snr, s->blocks[i].name, a);
    }
    return r;
}

void snr_add_record(SnrStats *s, const cJSON *rec, const char *path) {
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(rec, "step");
    const cJSON *snr = cJSON_GetObjectItemCaseSensitive(rec, "snr");
    if (!cJSON_IsNumber(step) || !cJSON_IsObject(snr)) fail("%s: a measurement line lacks \"step\" or \"snr\"", path);
    double at = step->valuedouble; // checked before the conversion, which is undefined for 1e300
    if (!(at >= 0 && at <= 1e15 && at == floor(at)))
        fail("%s: a measurement line's \"step\" is %g, not a step number", path, at);
    s->measurements++;
    if (s->first_step < 0) s->first_step = (long)at;
    s->last_step = (long)at;
    for (int i = 0; i < s->num_blocks; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(snr, s->blocks[i].name);
        if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != SNR_NUM_K)
            fail("%s: step %ld has no SNRs for block %s (another model's file?)", path, s->last_step, s->blocks[i].name);
        for (int k = 0; k < SNR_NUM_K; k++) {
            const cJSON *x = cJSON_GetArrayItem(a, k);
            // the line holds what snr_measure summed: adding it again in the same
            // order gives the uninterrupted run's sums bit for bit (the values
            // are printed with 17 digits, json_number_or_null)
            double r = cJSON_IsNumber(x) ? x->valuedouble : NAN;
            s->last[(size_t)i * SNR_NUM_K + k] = r;
            if (isfinite(r)) {
                s->sum[(size_t)i * SNR_NUM_K + k] += r;
                s->count[(size_t)i * SNR_NUM_K + k]++;
            }
        }
    }
}

void snr_means_path(char *out, size_t len, const char *rules_path) {
    size_t n = strlen(rules_path);
    if (n >= 5 && strcmp(rules_path + n - 5, ".json") == 0) n -= 5;
    if (snprintf(out, len, "%.*s_snr.json", (int)n, rules_path) >= (int)len) fail("path too long: %s", rules_path);
}

void snr_write_rules(const SnrStats *s, const char *path, const char *means_path) {
    printf("SlimAdam SNR of AdamW's second moment, mean over %d measurements (rule: highest > 1, else none)\n",
           s->measurements);
    printf("  %-24s %12s %12s %12s  %s\n", "block", "K=(0,)", "K=(1,)", "K=(0,1)", "rule");
    cJSON *rules = cJSON_CreateObject();
    // the averages and counts each rule was chosen from
    cJSON *means = cJSON_CreateObject();
    cJSON_AddNumberToObject(means, "measurements", s->measurements);
    cJSON_AddNumberToObject(means, "first_step", (double)s->first_step);
    cJSON_AddNumberToObject(means, "last_step", (double)s->last_step);
    cJSON_AddItemToObject(means, "k", cJSON_CreateStringArray(k_names, SNR_NUM_K));
    cJSON_AddNumberToObject(means, "threshold", 1.0);
    cJSON *mblocks = cJSON_AddObjectToObject(means, "blocks");
    for (int i = 0; i < s->num_blocks; i++) {
        const ParamBlock *b = &s->blocks[i];
        double mean[SNR_NUM_K];
        int count[SNR_NUM_K];
        int best = -1;
        for (int k = 0; k < SNR_NUM_K; k++) {
            count[k] = s->count[(size_t)i * SNR_NUM_K + k];
            mean[k] = count[k] ? s->sum[(size_t)i * SNR_NUM_K + k] / count[k] : NAN;
            if (b->role != ROLE_NORM && isfinite(mean[k]) && mean[k] > 1.0 && (best < 0 || mean[k] > mean[best])) best = k;
        }
        cJSON *dims;
        if (best < 0) dims = cJSON_CreateNull();
        else if (b->ndim == 1) { int d[1] = {0}; dims = cJSON_CreateIntArray(d, 1); }
        else if (best == SNR_K01) { int d[2] = {0, 1}; dims = cJSON_CreateIntArray(d, 2); }
        else { int d[1] = {best == SNR_K0 ? 0 : 1}; dims = cJSON_CreateIntArray(d, 1); }
        cJSON *mb = cJSON_AddObjectToObject(mblocks, b->name);
        cJSON_AddStringToObject(mb, "role", role_name(b->role));
        cJSON_AddItemToObject(mb, "shape", json_shape(b));
        cJSON *ma = cJSON_AddArrayToObject(mb, "mean");
        for (int k = 0; k < SNR_NUM_K; k++) cJSON_AddItemToArray(ma, json_number_or_null(mean[k]));
        cJSON_AddItemToObject(mb, "count", cJSON_CreateIntArray(count, SNR_NUM_K));
        cJSON_AddItemToObject(mb, "rule", cJSON_Duplicate(dims, 1));
        cJSON_AddItemToObject(rules, b->name, dims);
        char cols[SNR_NUM_K][16];
        for (int k = 0; k < SNR_NUM_K; k++) {
            if (isfinite(mean[k])) snprintf(cols[k], sizeof(cols[k]), "%.4g", mean[k]);
            else snprintf(cols[k], sizeof(cols[k]), "-");
        }
        printf("  %-24s %12s %12s %12s  %s\n", b->name, cols[0], cols[1], cols[2],
               best < 0 ? "none" : (b->ndim == 1 ? "(0,)" : k_names[best]));
    }
    json_write_file_atomic(rules, path);
    cJSON_Delete(rules);
    if (means_path) json_write_file_atomic(means, means_path);
    cJSON_Delete(means);
    printf("SlimAdam rules written to %s (use with OPTIM=slimadam --slimadam-rules %s)\n", path, path);
    if (means_path) printf("the mean SNRs they were chosen from: %s\n", means_path);
}

void snr_free(SnrStats *s) {
    free(s->blocks);
    free(s->sum);
    free(s->count);
    free(s->last);
}

// ----------------------------------------------------------------------------
// g-SNR over training

void gsnr_probe_init(GsnrProbe *p, const ParamBlock *blocks, int num_blocks) {
    memset(p, 0, sizeof(*p));
    p->num_blocks = num_blocks;
    p->blocks = malloc_or_fail(num_blocks * sizeof(ParamBlock), "g-SNR blocks");
    memcpy(p->blocks, blocks, num_blocks * sizeof(ParamBlock));
    p->gsnr = calloc_or_fail(num_blocks, sizeof(double), "g-SNR values");
    p->step = -1;
}

void gsnr_probe_measure(GsnrProbe *p, const float *grads, long step) {
    p->step = step;
    // one thread per block, as SGD-SaI: each block's sums run in one fixed order
    #pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < p->num_blocks; i++)
        p->gsnr[i] = gsnr_of_gradient(grads + p->blocks[i].offset, block_numel(&p->blocks[i]), GSNR_PROBE_EPS);
}

cJSON *gsnr_probe_header(const GsnrProbe *p) {
    cJSON *h = cJSON_CreateObject();
    cJSON_AddStringToObject(h, "type", "header");
    cJSON_AddNumberToObject(h, "eps", GSNR_PROBE_EPS);
    cJSON *blocks = cJSON_AddObjectToObject(h, "blocks");
    for (int i = 0; i < p->num_blocks; i++) {
        cJSON *b = cJSON_AddObjectToObject(blocks, p->blocks[i].name);
        cJSON_AddStringToObject(b, "role", role_name(p->blocks[i].role));
        cJSON_AddItemToObject(b, "shape", json_shape(&p->blocks[i]));
        cJSON_AddNumberToObject(b, "n", (double)block_numel(&p->blocks[i]));
    }
    return h;
}

cJSON *gsnr_probe_record(const GsnrProbe *p) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "step", (double)p->step);
    cJSON *g = cJSON_AddObjectToObject(r, "gsnr");
    for (int i = 0; i < p->num_blocks; i++) cJSON_AddItemToObject(g, p->blocks[i].name, json_number_or_null(p->gsnr[i]));
    return r;
}

void gsnr_probe_free(GsnrProbe *p) {
    free(p->blocks);
    free(p->gsnr);
}
