// Model bookkeeping shared by the trainers (see model.h).
#include "run/model.h"

#include <stdio.h>
#include <string.h>

#include "common/utils.h"

// ----------------------------------------------------------------------------
// a list of tensors in one buffer

size_t tensors_total(const size_t *sizes, int n, const char *what) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total = add_size_or_fail(total, sizes[i], what);
    return total;
}

void point_tensors(float **const *ptrs, const size_t *sizes, int n, float *memory) {
    for (int i = 0; i < n; i++) {
        *ptrs[i] = memory;
        memory += sizes[i];
    }
}

float *alloc_tensors(float **const *ptrs, const size_t *sizes, int n, const char *what, size_t *total) {
    *total = tensors_total(sizes, n, what);
    float *memory = alloc_big_floats(*total, what);
    point_tensors(ptrs, sizes, n, memory);
    return memory;
}

void tensor_offsets(const size_t *sizes, int n, size_t *offsets) {
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        offsets[i] = o;
        o += sizes[i];
    }
}

// ----------------------------------------------------------------------------
// the transformer layers both models stack

void layer_tensor_sizes(size_t sizes[LAYER_TENSORS], size_t L, size_t C, const char *what) {
    size_t LC = mul_size_or_fail(L, C, what), LCC = mul_size_or_fail(LC, C, what);
    size_t s[LAYER_TENSORS] = {LC, LC, mul_size_or_fail(3, LCC, what), mul_size_or_fail(3, LC, what), LCC, LC,
                               LC, LC, mul_size_or_fail(4, LCC, what), mul_size_or_fail(4, LC, what),
                               mul_size_or_fail(4, LCC, what), LC};
    for (int i = 0; i < LAYER_TENSORS; i++) sizes[i] = s[i];
}

void layer_tensor_pointers(LayerTensors *t, float **ptrs[LAYER_TENSORS]) {
    float **p[LAYER_TENSORS] = {&t->ln1w, &t->ln1b, &t->qkvw,   &t->qkvb,  &t->attprojw, &t->attprojb,
                                &t->ln2w, &t->ln2b, &t->fcw,    &t->fcb,   &t->fcprojw,  &t->fcprojb};
    for (int i = 0; i < LAYER_TENSORS; i++) ptrs[i] = p[i];
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
