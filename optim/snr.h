// SlimAdam's rules from data (spec section 5, the paper's SNR analysis): while
// AdamW trains, every few steps take each block's second moment v and, for
// every candidate set of dimensions K, measure how well v is described by its
// mean along K:
//     SNR_K = mean over the remaining dims of (mean_K v)^2 / var_K v
// (population variance; non-finite ratios dropped). Averaged over the
// measurements, the rule of a block is the K with the highest SNR among those
// above 1, else none; LayerNorm blocks are always none. The rules are written
// as the JSON file SlimAdam reads (--slimadam-rules).
//
// Used by the trainers' --snr-every / --snr-out flags with OPTIM=adamw; each
// measurement is also one JSON line of DIR/snr.jsonl (snr_record), and the
// averages the rules come from are kept beside the rules (snr_write_rules).
//
// Also here: the g-SNR of the current gradient during training (--gsnr-every,
// any optimizer), the value SGD-SaI would freeze if this were its first step.
#ifndef OPTIM_SNR_H
#define OPTIM_SNR_H

#include <cjson/cJSON.h>

#include "optim/optim.h"

// candidate K: (0,) = mean over fan_out, (1,) = over fan_in, (0,1) = all
enum { SNR_K0, SNR_K1, SNR_K01, SNR_NUM_K };

typedef struct {
    ParamBlock *blocks; // the model's blocks with fused qkv split into q, k, v
    int num_blocks;
    double *sum;        // [num_blocks][SNR_NUM_K] sum of the SNR over measurements
    int *count;         // [num_blocks][SNR_NUM_K] measurements where it was finite
    double *last;       // [num_blocks][SNR_NUM_K] the latest measurement (NAN: undefined)
    int measurements;
    long first_step, last_step; // steps of the first and latest measurement
} SnrStats;

void snr_init(SnrStats *s, const ParamBlock *model_blocks, int num_blocks);
// Measure the optimizer's current v after `step` (fails unless OPTIM=adamw).
void snr_measure(SnrStats *s, const Optimizer *opt, long step);
// SNR of one [rows, cols] matrix along K (exposed for tests); NAN if undefined.
double snr_of(const float *v, int rows, int cols, int k);
// The lines of snr.jsonl. Header, once: {"type": "header", "k": ["(0,)",
// "(1,)", "(0,1)"], "blocks": {name: {"role", "shape"}}}. Per measurement:
// {"step": s, "snr": {name: [K=(0,), K=(1,), K=(0,1)]}}, null where undefined
// (a vector has only K=(0,1)).
cJSON *snr_header(const SnrStats *s);
cJSON *snr_record(const SnrStats *s);
// Add one measurement read back from snr.jsonl (a resumed run rebuilds its
// averages from the lines kept up to its checkpoint, so its rules are the
// uninterrupted run's). path names the file in errors.
void snr_add_record(SnrStats *s, const cJSON *rec, const char *path);
// Print the table and write the rules JSON (atomically); with means_path,
// also the averages each rule was chosen from (snr_means_path names it).
void snr_write_rules(const SnrStats *s, const char *path, const char *means_path);
// rules.json -> rules_snr.json (any other name: + "_snr.json")
void snr_means_path(char *out, size_t len, const char *rules_path);
void snr_free(SnrStats *s);

// ----------------------------------------------------------------------------
// g-SNR over training: every block's gsnr_of_gradient (eps GSNR_PROBE_EPS)
// of the gradient the optimizer was handed at this step (accumulated and
// clipped). The blocks are the model's (a fused qkv is one block, as SGD-SaI
// sees it).
#define GSNR_PROBE_EPS 1e-8

typedef struct {
    ParamBlock *blocks; // a copy of the model's blocks
    int num_blocks;
    double *gsnr;       // [num_blocks] the latest measurement
    long step;
} GsnrProbe;

void gsnr_probe_init(GsnrProbe *p, const ParamBlock *blocks, int num_blocks);
void gsnr_probe_measure(GsnrProbe *p, const float *grads, long step);
// The lines of gsnr.jsonl. Header, once: {"type": "header", "eps": 1e-8,
// "blocks": {name: {"role", "shape", "n"}}}. Per measurement: {"step": s,
// "gsnr": {name: value}}, null where not finite.
cJSON *gsnr_probe_header(const GsnrProbe *p);
cJSON *gsnr_probe_record(const GsnrProbe *p);
void gsnr_probe_free(GsnrProbe *p);

#endif
