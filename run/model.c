// Model bookkeeping shared by the trainers (see model.h).
#include "run/model.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/utils.h"

// ----------------------------------------------------------------------------
// a list of tensors in one buffer

void tensors_begin(TensorList *l, const char *what, ...) {
    l->n = 0;
    va_list ap;
    va_start(ap, what);
    vsnprintf(l->what, sizeof(l->what), what, ap);
    va_end(ap);
}

static void tensor_add_layers(TensorList *l, size_t offset, size_t rows, size_t cols, size_t layers) {
    if (l->n == MAX_TENSORS) fail("%s: more than %d tensors", l->what, MAX_TENSORS);
    l->offset[l->n] = offset;
    l->size[l->n] = mul_size_or_fail(rows, cols, l->what);
    l->layers[l->n] = layers;
    l->n++;
}

void tensor_add(TensorList *l, size_t offset, size_t rows, size_t cols) {
    tensor_add_layers(l, offset, rows, cols, 1);
}

// a tensor's floats in the model, or in the same model with one layer
static size_t tensor_size(const TensorList *l, int i, int one_layer) {
    return one_layer ? l->size[i] / l->layers[i] : l->size[i];
}

size_t tensors_total(const TensorList *l, int one_layer) {
    size_t total = 0;
    for (int i = 0; i < l->n; i++) total = add_size_or_fail(total, tensor_size(l, i, one_layer), l->what);
    return total;
}

void tensor_offsets(const TensorList *l, size_t *offsets) {
    size_t o = 0;
    for (int i = 0; i < l->n; i++) {
        offsets[i] = o;
        o += l->size[i];
    }
}

float *alloc_tensors(const TensorList *l, void *base, int one_layer, const char *what, size_t *total) {
    *total = tensors_total(l, one_layer);
    float *memory = alloc_big_floats(*total, what), *next = memory;
    for (int i = 0; i < l->n; i++) {
        size_t n = tensor_size(l, i, one_layer);
        *(float **)((char *)base + l->offset[i]) = n ? next : NULL;
        next += n;
    }
    return memory;
}

// ----------------------------------------------------------------------------
// the transformer layers both models stack

void layer_tensors_add(TensorList *l, size_t offset, size_t L, size_t C) {
    // rows and cols of one layer's tensor, in multiples of C (0: 1)
    static const struct { size_t field; int rows, cols; } t[LAYER_TENSORS] = {
        {offsetof(LayerTensors, ln1w), 1, 0},     {offsetof(LayerTensors, ln1b), 1, 0},
        {offsetof(LayerTensors, qkvw), 3, 1},     {offsetof(LayerTensors, qkvb), 3, 0},
        {offsetof(LayerTensors, attprojw), 1, 1}, {offsetof(LayerTensors, attprojb), 1, 0},
        {offsetof(LayerTensors, ln2w), 1, 0},     {offsetof(LayerTensors, ln2b), 1, 0},
        {offsetof(LayerTensors, fcw), 4, 1},      {offsetof(LayerTensors, fcb), 4, 0},
        {offsetof(LayerTensors, fcprojw), 1, 4},  {offsetof(LayerTensors, fcprojb), 1, 0},
    };
    size_t LC = mul_size_or_fail(L, C, l->what);
    for (int k = 0; k < LAYER_TENSORS; k++)
        tensor_add_layers(l, offset + t[k].field, mul_size_or_fail(t[k].rows, LC, l->what),
                          t[k].cols ? t[k].cols * C : 1, L);
}

LayerTensors layer_tensors(const LayerTensors *t, int l, int C) {
    size_t c = (size_t)C, lc = (size_t)l * c, lcc = lc * c;
    LayerTensors x = {t->ln1w + lc, t->ln1b + lc, t->qkvw + 3 * lcc, t->qkvb + 3 * lc, t->attprojw + lcc,
                      t->attprojb + lc, t->ln2w + lc, t->ln2b + lc, t->fcw + 4 * lcc, t->fcb + 4 * lc,
                      t->fcprojw + 4 * lcc, t->fcprojb + lc};
    return x;
}

void layer_tensors_init(LayerTensors *t, size_t L, size_t C, float proj_std, Rng *rng) {
    for (size_t i = 0; i < L * C; i++) { t->ln1w[i] = 1.0f; t->ln2w[i] = 1.0f; }
    for (size_t i = 0; i < L * 3 * C * C; i++) t->qkvw[i] = 0.02f * rng_normal(rng);
    for (size_t i = 0; i < L * C * C; i++) t->attprojw[i] = proj_std * rng_normal(rng);
    for (size_t i = 0; i < L * 4 * C * C; i++) t->fcw[i] = 0.02f * rng_normal(rng);
    for (size_t i = 0; i < L * 4 * C * C; i++) t->fcprojw[i] = proj_std * rng_normal(rng);
}

static float *layer_slice(float *stack, int l, size_t n) { return stack ? stack + (size_t)l * n : NULL; }

LayerActivations layer_activations(const LayerActivations *a, int l, size_t B, size_t T, size_t C, size_t NH) {
    size_t BT = B * T;
    LayerActivations x = {layer_slice(a->ln1, l, BT * C),       layer_slice(a->ln1_mean, l, BT),
                          layer_slice(a->ln1_rstd, l, BT),      layer_slice(a->qkv, l, BT * 3 * C),
                          layer_slice(a->atty, l, BT * C),      layer_slice(a->lse, l, B * NH * T),
                          layer_slice(a->residual2, l, BT * C), layer_slice(a->ln2, l, BT * C),
                          layer_slice(a->ln2_mean, l, BT),      layer_slice(a->ln2_rstd, l, BT),
                          layer_slice(a->fch, l, BT * 4 * C),   layer_slice(a->fch_gelu, l, BT * 4 * C),
                          layer_slice(a->residual3, l, BT * C)};
    return x;
}

void layer_activations_add(TensorList *l, size_t offset, size_t L, size_t B, size_t T, size_t C, size_t NH,
                           int keep_outputs) {
    size_t LBT = mul_size_or_fail(L, mul_size_or_fail(B, T, l->what), l->what), kept = keep_outputs ? C : 0;
#define ADD(field, cols) tensor_add_layers(l, offset + offsetof(LayerActivations, field), LBT, cols, L)
    ADD(ln1, kept);
    ADD(ln1_mean, 1);
    ADD(ln1_rstd, 1);
    ADD(qkv, 3 * C);
    ADD(atty, C);
    tensor_add_layers(l, offset + offsetof(LayerActivations, lse), mul_size_or_fail(L, B, l->what),
                      mul_size_or_fail(NH, T, l->what), L);
    ADD(residual2, C);
    ADD(ln2, kept);
    ADD(ln2_mean, 1);
    ADD(ln2_rstd, 1);
    ADD(fch, 4 * C);
    ADD(fch_gelu, 4 * kept);
    ADD(residual3, C);
#undef ADD
}

void layer_scratch_add(TensorList *l, size_t offset, size_t BT, size_t C, int keep_outputs) {
    size_t cols[] = {C, C, C, 3 * C, keep_outputs ? 0 : 4 * C, 4 * C, C, keep_outputs ? 0 : C};
    size_t fields[] = {offsetof(LayerScratch, dresidual), offsetof(LayerScratch, dln), offsetof(LayerScratch, datty),
                       offsetof(LayerScratch, dqkv), offsetof(LayerScratch, fch_gelu), offsetof(LayerScratch, dfch_gelu),
                       offsetof(LayerScratch, scratch), offsetof(LayerScratch, ln)};
    for (int k = 0; k < 8; k++) tensor_add(l, offset + fields[k], BT, cols[k]);
}

void check_layer_config(const char *source, int from_header, int L, int C, int NH) {
    check_config_field(source, from_header, "L", L, 1, MODEL_MAX_LAYERS);
    check_config_field(source, from_header, "C", C, 1, MODEL_MAX_CHANNELS);
    check_config_field(source, from_header, "NH", NH, 1, C);
    if (C % NH != 0) fail("%s: channels %d are not divisible by heads %d", source, C, NH);
}

// ----------------------------------------------------------------------------
// the parameter blocks the optimizer sees

int add_param_block(ParamBlock *out, int n, const char *name, ParamRole role, int ndim, int rows, int cols,
                    size_t offset) {
    if (out) out[n] = param_block(name, role, ndim, rows, cols, offset);
    return n + 1;
}

int add_layer_param_blocks(ParamBlock *out, int n, int l, int C, const size_t off[LAYER_TENSORS]) {
    static const struct { const char *suffix; ParamRole role; int ndim, rows, cols; } layer[LAYER_TENSORS] = {
        // rows and cols in multiples of C (0: 1)
        {"ln1w", ROLE_NORM, 1, 1, 0},          {"ln1b", ROLE_NORM, 1, 1, 0},
        {"attn.qkvw", ROLE_ATTN_QKV, 2, 3, 1}, {"attn.qkvb", ROLE_BIAS, 1, 3, 0},
        {"attn.projw", ROLE_ATTN_PROJ, 2, 1, 1}, {"attn.projb", ROLE_BIAS, 1, 1, 0},
        {"ln2w", ROLE_NORM, 1, 1, 0},          {"ln2b", ROLE_NORM, 1, 1, 0},
        {"mlp.fcw", ROLE_MLP_UP, 2, 4, 1},     {"mlp.fcb", ROLE_BIAS, 1, 4, 0},
        {"mlp.projw", ROLE_MLP_DOWN, 2, 1, 4}, {"mlp.projb", ROLE_BIAS, 1, 1, 0},
    };
    char name[64];
    for (int k = 0; k < LAYER_TENSORS; k++) {
        int rows = layer[k].rows * C, cols = layer[k].cols ? layer[k].cols * C : 1;
        snprintf(name, sizeof(name), "h%d.%s", l, layer[k].suffix);
        // the tensor holds L layers of rows x cols each
        n = add_param_block(out, n, name, layer[k].role, layer[k].ndim, rows, cols,
                            off[k] + (size_t)l * (size_t)rows * (size_t)cols);
    }
    return n;
}

void step_layer_blocks(FusedStep *fused, int first, const LayerTensors *g) {
    float *grad_of[LAYER_TENSORS] = {g->ln1w, g->ln1b, g->qkvw, g->qkvb, g->attprojw, g->attprojb,
                                     g->ln2w, g->ln2b, g->fcw,  g->fcb,  g->fcprojw,  g->fcprojb};
    for (int k = 0; k < LAYER_TENSORS; k++) step_block(fused, first + k, grad_of[k]);
}

// ----------------------------------------------------------------------------
// configuration and checkpoints

void check_config_field(const char *source, int from_header, const char *name, long long value, long long lo,
                        long long hi) {
    char field[64];
    snprintf(field, sizeof(field), "%s%s", from_header ? "header field " : "", name);
    check_range_or_fail(source, field, value, lo, hi);
}

FILE *checkpoint_open(const char *path, int header[CHECKPOINT_HEADER_INTS], int magic, const char *kind) {
    FILE *f = fopen_or_fail(path, "rb");
    fread_or_fail(header, sizeof(int), CHECKPOINT_HEADER_INTS, f, path);
    if (header[0] != magic) fail("%s is not a %s checkpoint (magic %d, expected %d)", path, kind, header[0], magic);
    return f;
}

void checkpoint_header_write(int header[CHECKPOINT_HEADER_INTS], int magic, int version, int *const *fields, int n) {
    memset(header, 0, CHECKPOINT_HEADER_INTS * sizeof(int));
    header[0] = magic;
    header[1] = version;
    for (int i = 0; i < n; i++) header[2 + i] = *fields[i];
}

void checkpoint_header_read(const int header[CHECKPOINT_HEADER_INTS], int *const *fields, int n) {
    for (int i = 0; i < n; i++) *fields[i] = header[2 + i];
}

void checkpoint_check_size(FILE *f, const char *path, size_t n, size_t value_bytes) {
    size_t expected = add_size_or_fail(CHECKPOINT_HEADER_INTS * sizeof(int), mul_size_or_fail(n, value_bytes, path),
                                       path);
    size_t actual = file_size_or_fail(f, path);
    if (actual != expected)
        fail("%s has %zu bytes; its header describes a model of %zu bytes%s", path, actual, expected,
             actual < expected ? " (truncated?)" : "");
}

void checkpoint_save(const char *path, const int header[CHECKPOINT_HEADER_INTS], const float *values, size_t n) {
    AtomicFile af;
    atomic_open(&af, path);
    fwrite_or_fail(header, sizeof(int), CHECKPOINT_HEADER_INTS, af.f, af.tmp_path);
    fwrite_or_fail(values, sizeof(float), n, af.f, af.tmp_path);
    atomic_commit(&af);
}

// ----------------------------------------------------------------------------
// a model's buffers

void model_alloc_params(ModelMemory *m, void *params, const char *name) {
    char what[64];
    snprintf(what, sizeof(what), "%s parameters", name);
    m->params_memory = alloc_tensors(&m->param_list, params, 0, what, &m->num_parameters);
}

void model_alloc_grads(ModelMemory *m, void *grads, int fused, const char *name) {
    char what[64];
    snprintf(what, sizeof(what), "%s gradients", name);
    m->fused = fused;
    m->grads_memory = alloc_tensors(&m->param_list, grads, fused, what, &m->num_grad_floats);
}

void model_alloc_activations(ModelMemory *m, void *model, const TensorList *acts, const TensorList *scratch,
                             const char *name, const char *scratch_what) {
    char what[64];
    snprintf(what, sizeof(what), "%s activations", name);
    m->acts_memory = alloc_tensors(acts, model, 0, what, &m->num_activations);
    m->scratch_memory = alloc_tensors(scratch, model, 0, scratch_what, &m->num_scratch_floats);
}

void model_zero_grad(ModelMemory *m) {
    memset(m->grads_memory, 0, m->num_grad_floats * sizeof(float));
}

void model_save_checkpoint(const ModelMemory *m, const char *path) {
    checkpoint_save(path, m->header, m->params_memory, m->num_parameters);
}

void model_memory_free(ModelMemory *m) {
    free_big(m->params_memory);
    free_big(m->grads_memory);
    free_big(m->acts_memory);
    free_big(m->scratch_memory);
}
