// Image datasets, shards and the batch loader (see images.h).
#include "data/images.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/utils.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the shard format stores labels as little-endian int32 straight from memory");

const char *const fashion_mnist_class_names[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
};

void image_set_free(ImageSet *set) {
    free_big(set->pixels);
    free(set->labels);
    free(set->class_names);
    free(set->image_crcs);
    if (set->file) fclose(set->file);
    memset(set, 0, sizeof(*set));
}

size_t image_set_resident_bytes(const ImageSet *set, int streamed) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pixels = mul_size_or_fail((size_t)set->count, image_set_image_bytes(set), "the image pixels");
    size_t small = (size_t)set->count * sizeof(int32_t) + (size_t)set->num_classes * IMAGE_CLASS_NAME_LEN;
    if (streamed) // labels, names and (version 2) the image CRCs; no pixels
        return (small + (set->version == 2 ? (size_t)set->count * sizeof(uint32_t) : 0) + page - 1) / page * page;
    return alloc_big_footprint(pixels) + (small + page - 1) / page * page;
}

// allocate the labels and class names of a set whose sizes are filled in,
// and the pixels too unless it is streamed (what image_set_resident_bytes counts)
static void image_set_alloc_meta(ImageSet *set) {
    set->labels = malloc_or_fail((size_t)set->count * sizeof(int32_t), "image labels");
    set->class_names = calloc_or_fail((size_t)set->num_classes, IMAGE_CLASS_NAME_LEN, "class names");
}

void image_set_alloc(ImageSet *set) {
    set->pixels = alloc_big(mul_size_or_fail((size_t)set->count, image_set_image_bytes(set), "the image pixels"),
                            "image pixels");
    image_set_alloc_meta(set);
}

void image_set_class_name(char (*names)[IMAGE_CLASS_NAME_LEN], int k, const char *name, const char *where) {
    if (strlen(name) >= IMAGE_CLASS_NAME_LEN)
        fail("class name '%s' in %s is longer than %d bytes", name, where, IMAGE_CLASS_NAME_LEN - 1);
    snprintf(names[k], IMAGE_CLASS_NAME_LEN, "%s", name);
}

void image_set_subset(ImageSet *dst, const ImageSet *src, const int32_t *indices, int n) {
    if (n < 1) fail("an image subset needs at least one image");
    if (!src->pixels) fail("internal: a subset of a streamed shard");
    memset(dst, 0, sizeof(*dst));
    dst->count = n;
    dst->channels = src->channels;
    dst->height = src->height;
    dst->width = src->width;
    dst->num_classes = src->num_classes;
    image_set_alloc(dst);
    memcpy(dst->class_names, src->class_names, (size_t)src->num_classes * IMAGE_CLASS_NAME_LEN);
    size_t bytes = image_set_image_bytes(src);
    for (int i = 0; i < n; i++) {
        int j = indices[i];
        if (j < 0 || j >= src->count) fail("image subset index %d is out of range (%d images)", j, src->count);
        dst->labels[i] = src->labels[j];
        memcpy(dst->pixels + (size_t)i * bytes, src->pixels + (size_t)j * bytes, bytes);
    }
}

int image_holdout_marks(const int32_t *labels, int n, int num_classes, double fraction, uint64_t seed,
                        uint8_t *in_val) {
    if (!(fraction > 0.0 && fraction < 1.0)) fail("hold-out fraction must be in (0, 1), got %g", fraction);
    memset(in_val, 0, (size_t)n);
    int32_t *members = malloc_or_fail((size_t)n * sizeof(int32_t), "hold-out indices");
    Rng r;
    rng_seed(&r, seed);
    int nv = 0;
    for (int k = 0; k < num_classes; k++) {
        int m = 0;
        for (int i = 0; i < n; i++) if (labels[i] == k) members[m++] = i;
        for (int i = m - 1; i > 0; i--) {
            int j = (int)rng_below(&r, (uint32_t)i + 1);
            int32_t t = members[i]; members[i] = members[j]; members[j] = t;
        }
        int take = (int)floor(fraction * m + 0.5);
        if (take > m - 1) take = m - 1;
        for (int i = 0; i < take; i++) in_val[members[i]] = 1;
        nv += take > 0 ? take : 0;
    }
    free(members);
    if (nv == 0) fail("hold-out fraction %g of %d images leaves no validation images", fraction, n);
    return nv;
}

void image_set_split_holdout(const ImageSet *src, double fraction, uint64_t seed,
                             ImageSet *train, ImageSet *val) {
    int n = src->count;
    uint8_t *in_val = malloc_or_fail((size_t)n, "hold-out marks");
    image_holdout_marks(src->labels, n, src->num_classes, fraction, seed, in_val);
    int32_t *ti = malloc_or_fail((size_t)n * sizeof(int32_t), "hold-out indices");
    int32_t *vi = malloc_or_fail((size_t)n * sizeof(int32_t), "hold-out indices");
    int nv = 0, nt = 0;
    for (int i = 0; i < n; i++) {
        if (in_val[i]) vi[nv++] = i;
        else ti[nt++] = i;
    }
    image_set_subset(train, src, ti, nt);
    image_set_subset(val, src, vi, nv);
    free(vi);
    free(ti);
    free(in_val);
}

// ---------------------------------------------------------------------------
// idx files through zlib (gzread passes plain files through unchanged)

static void gz_read_exact(gzFile g, void *dst, size_t n, const char *path) {
    char *p = dst;
    while (n > 0) {
        unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        int got = gzread(g, p, chunk);
        if (got < 0 || (unsigned)got < chunk) {
            int err = Z_OK;
            const char *msg = gzerror(g, &err);
            if (err != Z_OK && err != Z_STREAM_END && err != Z_BUF_ERROR)
                fail("reading %s: %s", path, msg);
            fail("%s is truncated (%zu bytes missing)", path, n - (got > 0 ? (size_t)got : 0));
        }
        p += got;
        n -= (size_t)got;
    }
}

static void gz_expect_end(gzFile g, const char *path) {
    char extra;
    if (gzread(g, &extra, 1) > 0) fail("%s has trailing bytes after the data its header describes", path);
}

#ifdef FUZZING
static void gz_release(void *g) { gzclose((gzFile)g); }
#endif

// a regular file only (a FIFO would block gzopen); *size gets its size in bytes
static gzFile gz_open_or_fail(const char *path, size_t *size) {
    char err[1200];
    int fd = open_regular_for_reading(path, err, sizeof(err));
    if (fd < 0) fail("%s", err);
    struct stat st;
    if (fstat(fd, &st) != 0) fail("cannot stat %s: %s", path, strerror(errno));
    *size = (size_t)st.st_size;
    errno = 0;
    gzFile g = gzdopen(fd, "rb");
    if (!g) fail("cannot open %s for reading: %s", path, errno ? strerror(errno) : "zlib error");
    FUZZ_HOLD(g, gz_release);
    return g;
}

static void gz_close(gzFile g) {
    FUZZ_LET_GO(g);
    gzclose(g);
}

// deflate expands at most 1032:1, and a plain file holds what it holds: a
// header announcing more than that is corrupt (and must not be allocated)
#define GZIP_MAX_RATIO 1032
static void idx_check_fits(const char *path, size_t file_size, uint64_t bytes, const char *what) {
    if (bytes / GZIP_MAX_RATIO > file_size)
        fail("%s: its header announces %s (%llu bytes), more than a %zu-byte file can hold", path, what,
             (unsigned long long)bytes, file_size);
}

static uint32_t read_be32(const uint8_t *b) {
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

// Open an idx image file and its label file and check their headers; set
// gets the sizes (nothing allocated), *gi and *gl are left at the data.
static void idx_open(ImageSet *set, const char *images_path, const char *labels_path, int num_classes,
                     gzFile *gi_out, gzFile *gl_out) {
    memset(set, 0, sizeof(*set));
    uint8_t hdr[16];

    size_t isize, lsize;
    gzFile gi = gz_open_or_fail(images_path, &isize);
    gz_read_exact(gi, hdr, 16, images_path);
    uint32_t magic = read_be32(hdr), n = read_be32(hdr + 4);
    uint32_t rows = read_be32(hdr + 8), cols = read_be32(hdr + 12);
    if (magic != 2051)
        fail("%s is not an idx image file (magic %u, expected 2051)", images_path, magic);
    if (n == 0 || n > INT_MAX) fail("%s has a bad image count %u", images_path, n);
    if (rows == 0 || cols == 0 || rows > IMAGE_MAX_SIDE || cols > IMAGE_MAX_SIDE)
        fail("%s has bad image dimensions %u x %u", images_path, rows, cols);
    char what[96];
    snprintf(what, sizeof(what), "%u images of %ux%u pixels", n, rows, cols);
    idx_check_fits(images_path, isize, 16 + (uint64_t)n * rows * cols, what);

    gzFile gl = gz_open_or_fail(labels_path, &lsize);
    gz_read_exact(gl, hdr, 8, labels_path);
    uint32_t lmagic = read_be32(hdr), ln = read_be32(hdr + 4);
    if (lmagic != 2049)
        fail("%s is not an idx label file (magic %u, expected 2049)", labels_path, lmagic);
    if (ln != n)
        fail("%s has %u labels but %s has %u images", labels_path, ln, images_path, n);
    snprintf(what, sizeof(what), "%u labels", n);
    idx_check_fits(labels_path, lsize, 8 + (uint64_t)n, what);

    set->count = (int)n;
    set->channels = 1;
    set->height = (int)rows;
    set->width = (int)cols;
    set->num_classes = num_classes;
    *gi_out = gi;
    *gl_out = gl;
}

void image_set_load_idx(ImageSet *set, const char *images_path, const char *labels_path,
                        const char *const *class_names, int num_classes) {
    gzFile gi, gl;
    idx_open(set, images_path, labels_path, num_classes, &gi, &gl);
    uint32_t n = (uint32_t)set->count, rows = (uint32_t)set->height, cols = (uint32_t)set->width;
    image_set_alloc(set);
    for (int k = 0; k < num_classes; k++) image_set_class_name(set->class_names, k, class_names[k], labels_path);

    // idx stores images row-major, which is CHW for one channel
    gz_read_exact(gi, set->pixels, (size_t)n * rows * cols, images_path);
    gz_expect_end(gi, images_path);
    gz_close(gi);

    uint8_t *raw = malloc_or_fail(n, "idx labels");
    gz_read_exact(gl, raw, n, labels_path);
    gz_expect_end(gl, labels_path);
    gz_close(gl);
    for (uint32_t i = 0; i < n; i++) {
        if (raw[i] >= num_classes)
            fail("%s: label %u of image %u is out of range (%d classes)", labels_path, raw[i], i, num_classes);
        set->labels[i] = raw[i];
    }
    free(raw);
}

static void fashion_mnist_paths(const char *dir, const char *split, char *images, char *labels, size_t len) {
    if (!dir) dir = FASHION_MNIST_DIR;
    const char *stem;
    if (strcmp(split, "train") == 0) stem = "train";
    else if (strcmp(split, "test") == 0) stem = "t10k";
    else fail("unknown Fashion-MNIST split '%s' (expected train or test)", split);
    snprintf(images, len, "%s/%s-images-idx3-ubyte.gz", dir, stem);
    snprintf(labels, len, "%s/%s-labels-idx1-ubyte.gz", dir, stem);
    if (!file_exists(images) || !file_exists(labels))
        fail("%s not found (Debian package dataset-fashion-mnist; `make setup` installs it)",
             file_exists(images) ? labels : images);
}

void image_set_load_fashion_mnist(ImageSet *set, const char *dir, const char *split) {
    char images[1024], labels[1024];
    fashion_mnist_paths(dir, split, images, labels, sizeof(images));
    image_set_load_idx(set, images, labels, fashion_mnist_class_names, 10);
}

void image_set_fashion_mnist_header(ImageSet *set, const char *dir, const char *split) {
    char images[1024], labels[1024];
    fashion_mnist_paths(dir, split, images, labels, sizeof(images));
    gzFile gi, gl;
    idx_open(set, images, labels, 10, &gi, &gl);
    gz_close(gi);
    gz_close(gl);
}

// ---------------------------------------------------------------------------
// resampling

// One output pixel along one axis reads taps source pixels from first,
// with weights w[0..taps). Shapes: first[m], ntaps[m], w[m][max_taps].
typedef struct {
    int m, max_taps;
    int *first, *ntaps;
    float *w;
} AxisWeights;

static int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// taps one output pixel can need when a window of len pixels maps onto m
static int axis_taps_needed(double len, int m) {
    double scale = len / m;
    return scale >= 1.0 ? (int)ceil(scale) + 2 : 2;
}

// Fill weights mapping the source window [a, a + len) of an axis of n pixels
// onto m output pixels: area averaging when shrinking, bilinear when growing.
// aw's arrays are the caller's, with room for m outputs of aw->max_taps taps
// (at least axis_taps_needed).
static void axis_weights_fill(AxisWeights *aw, int n, double a, double len, int m) {
    double scale = len / m;
    aw->m = m;
    for (int o = 0; o < m; o++) {
        float *w = aw->w + (size_t)o * aw->max_taps;
        if (scale >= 1.0) {
            double lo = a + o * scale, hi = lo + scale;
            int i0 = clamp_int((int)floor(lo), 0, n - 1);
            int i1 = clamp_int((int)ceil(hi) - 1, i0, n - 1);
            // rounding can leave a sliver of a pixel at either end; drop it
            while (i1 > i0 && fmin(hi, i1 + 1.0) - fmax(lo, (double)i1) < 1e-9) i1--;
            while (i0 < i1 && fmin(hi, i0 + 1.0) - fmax(lo, (double)i0) < 1e-9) i0++;
            aw->first[o] = i0;
            aw->ntaps[o] = i1 - i0 + 1;
            for (int i = i0; i <= i1; i++) {
                double overlap = fmin(hi, i + 1.0) - fmax(lo, (double)i);
                w[i - i0] = (float)(fmax(overlap, 0.0) / scale);
            }
        } else {
            double x = a + (o + 0.5) * scale - 0.5;
            double fx = floor(x);
            float t = (float)(x - fx);
            int i0 = (int)fx;
            int lo = clamp_int(i0, 0, n - 1), hi = clamp_int(i0 + 1, 0, n - 1);
            if (lo == hi) {
                aw->first[o] = lo; aw->ntaps[o] = 1; w[0] = 1.0f;
            } else {
                aw->first[o] = lo; aw->ntaps[o] = 2; w[0] = 1.0f - t; w[1] = t;
            }
        }
    }
}

static void axis_weights(AxisWeights *aw, int n, double a, double len, int m) {
    aw->max_taps = axis_taps_needed(len, m);
    aw->first = malloc_or_fail((size_t)m * sizeof(int), "resize taps");
    aw->ntaps = malloc_or_fail((size_t)m * sizeof(int), "resize taps");
    aw->w = calloc_or_fail((size_t)m * aw->max_taps, sizeof(float), "resize weights");
    axis_weights_fill(aw, n, a, len, m);
}

static void axis_weights_free(AxisWeights *aw) {
    free(aw->first); free(aw->ntaps); free(aw->w);
}

// The two passes of the separable resample. src: rows of `stride` values
// with C channels interleaved; dst [ay.m][ax.m][C] uint8; tmp holds the
// horizontal pass of the rows ay reads, indexed by source row ([rows][ax.m][C]).
static void resample_passes(const uint8_t *src, size_t stride, int C, const AxisWeights *ax,
                            const AxisWeights *ay, float *tmp, uint8_t *dst) {
    int dst_w = ax->m, dst_h = ay->m;
    int y_lo = ay->first[0], y_hi = ay->first[dst_h - 1] + ay->ntaps[dst_h - 1] - 1;
    for (int y = y_lo; y <= y_hi; y++) {
        const uint8_t *row = src + (size_t)y * stride;
        float *out = tmp + (size_t)y * dst_w * C;
        for (int ox = 0; ox < dst_w; ox++) {
            const float *w = ax->w + (size_t)ox * ax->max_taps;
            for (int c = 0; c < C; c++) {
                float acc = 0.0f;
                for (int k = 0; k < ax->ntaps[ox]; k++)
                    acc += w[k] * row[(size_t)(ax->first[ox] + k) * C + c];
                out[(size_t)ox * C + c] = acc;
            }
        }
    }
    for (int oy = 0; oy < dst_h; oy++) {
        const float *w = ay->w + (size_t)oy * ay->max_taps;
        for (int i = 0; i < dst_w * C; i++) {
            float acc = 0.0f;
            for (int k = 0; k < ay->ntaps[oy]; k++)
                acc += w[k] * tmp[(size_t)(ay->first[oy] + k) * dst_w * C + i];
            int v = (int)(acc + 0.5f);
            dst[(size_t)oy * dst_w * C + i] = (uint8_t)clamp_int(v, 0, 255);
        }
    }
}

// start of a centred window of len pixels in n; a whole-pixel window starts
// on a whole pixel (round half up) so a plain crop does not blur
static double crop_offset(int n, double len) {
    double a = (n - len) / 2;
    return fabs(len - round(len)) < 1e-9 ? floor(a + 0.5) : a;
}

void image_resize_hwc(const uint8_t *src, int src_w, int src_h, int C,
                      uint8_t *dst, int dst_w, int dst_h, ResizeMode mode) {
    // source window: the whole image, or for RESIZE_CROP the centred part
    // with the output's aspect ratio
    double win_w = src_w, win_h = src_h;
    if (mode == RESIZE_CROP) {
        double s = fmax((double)dst_w / src_w, (double)dst_h / src_h);
        win_w = dst_w / s;
        win_h = dst_h / s;
    }
    AxisWeights ax, ay;
    axis_weights(&ax, src_w, crop_offset(src_w, win_w), win_w, dst_w);
    axis_weights(&ay, src_h, crop_offset(src_h, win_h), win_h, dst_h);
    float *tmp = malloc_or_fail((size_t)src_h * dst_w * C * sizeof(float), "resize buffer");
    resample_passes(src, (size_t)src_w * C, C, &ax, &ay, tmp, dst);
    free(tmp);
    axis_weights_free(&ax);
    axis_weights_free(&ay);
}

// ---------------------------------------------------------------------------
// shards

static void put_le32(uint8_t *b, uint32_t v) {
    b[0] = (uint8_t)v; b[1] = (uint8_t)(v >> 8); b[2] = (uint8_t)(v >> 16); b[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *b) {
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}

static void put_f32(uint8_t *b, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    put_le32(b, u);
}

static float get_f32(const uint8_t *b) {
    uint32_t u = get_le32(b);
    float v;
    memcpy(&v, &u, 4);
    return v;
}

static uint32_t crc_bytes(uint32_t crc, const void *p, size_t n) {
    return (uint32_t)crc32_z(crc, (const Bytef *)p, n);
}

// the header CRC of version 2: after names, labels and image CRCs, the
// header without its CRC field
static uint32_t crc_header_v2(uint32_t crc, const uint8_t *hdr) {
    crc = crc_bytes(crc, hdr, 32);
    return crc_bytes(crc, hdr + 36, IMAGE_SHARD_HEADER_BYTES - 36);
}

// exact per-channel sums of one image ([C][plane]) for the statistics
static void stats_add(const uint8_t *img, int C, size_t plane, uint64_t *sum, uint64_t *sqsum) {
    for (int c = 0; c < C; c++) {
        const uint8_t *p = img + (size_t)c * plane;
        uint64_t si = 0, qi = 0;
        for (size_t j = 0; j < plane; j++) {
            si += p[j];
            qi += (uint32_t)p[j] * p[j];
        }
        sum[c] += si;
        sqsum[c] += qi;
    }
}

static void stats_finish(const uint64_t *sum, const uint64_t *sqsum, int C, double values, double *mean, double *std) {
    for (int c = 0; c < C; c++) {
        double m = (double)sum[c] / values;
        double var = (double)sqsum[c] / values - m * m;
        mean[c] = m / 255.0;
        std[c] = sqrt(var > 0.0 ? var : 0.0) / 255.0;
    }
}

void image_shard_writer_open(ImageShardWriter *w, const char *path, int count, int channels, int height, int width,
                             int num_classes, const char (*class_names)[IMAGE_CLASS_NAME_LEN], const int32_t *labels) {
    memset(w, 0, sizeof(*w));
    if (count < 1 || (channels != 1 && channels != 3) || height < 1 || width < 1 || height > IMAGE_MAX_SIDE ||
        width > IMAGE_MAX_SIDE || num_classes < 1)
        fail("internal: a shard of %d images of %dx%dx%d, %d classes", count, height, width, channels, num_classes);
    for (int i = 0; i < count; i++)
        if (labels[i] < 0 || labels[i] >= num_classes)
            fail("internal: label %d of image %d is out of range for %s", labels[i], i, path);
    w->count = count;
    w->channels = channels;
    w->height = height;
    w->width = width;
    w->num_classes = num_classes;
    w->crcs = calloc_or_fail((size_t)count, sizeof(uint32_t), "image CRCs");
    atomic_open(&w->af, path);
    uint8_t hdr[IMAGE_SHARD_HEADER_BYTES] = {0}; // written for real by close
    fwrite_or_fail(hdr, 1, sizeof(hdr), w->af.f, w->af.tmp_path);
    fwrite_or_fail(class_names, IMAGE_CLASS_NAME_LEN, (size_t)num_classes, w->af.f, w->af.tmp_path);
    fwrite_or_fail(labels, sizeof(int32_t), (size_t)count, w->af.f, w->af.tmp_path);
    fwrite_or_fail(w->crcs, sizeof(uint32_t), (size_t)count, w->af.f, w->af.tmp_path);
    uint32_t crc = crc_bytes(0, NULL, 0);
    crc = crc_bytes(crc, class_names, (size_t)num_classes * IMAGE_CLASS_NAME_LEN);
    w->meta_crc = crc_bytes(crc, labels, (size_t)count * sizeof(int32_t));
}

void image_shard_writer_put(ImageShardWriter *w, const uint8_t *pixels, int n) {
    if (n < 0 || n > w->count - w->written)
        fail("internal: %d more images for %s, which holds %d of %d", n, w->af.path, w->written, w->count);
    size_t bytes = (size_t)w->channels * w->height * w->width, plane = (size_t)w->height * w->width;
    for (int i = 0; i < n; i++) {
        const uint8_t *img = pixels + (size_t)i * bytes;
        w->crcs[w->written + i] = crc_bytes(crc_bytes(0, NULL, 0), img, bytes);
        stats_add(img, w->channels, plane, w->sum, w->sqsum);
    }
    fwrite_or_fail(pixels, 1, (size_t)n * bytes, w->af.f, w->af.tmp_path);
    w->written += n;
}

void image_shard_writer_close(ImageShardWriter *w, double *mean_out, double *std_out) {
    if (w->written != w->count)
        fail("internal: %s got %d of its %d images", w->af.path, w->written, w->count);
    double mean[IMAGE_MAX_CHANNELS] = {0}, std[IMAGE_MAX_CHANNELS] = {0};
    stats_finish(w->sum, w->sqsum, w->channels, (double)w->count * w->height * w->width, mean, std);
    uint8_t hdr[IMAGE_SHARD_HEADER_BYTES] = {0};
    memcpy(hdr, IMAGE_SHARD_MAGIC, 8);
    put_le32(hdr + 8, IMAGE_SHARD_VERSION);
    put_le32(hdr + 12, (uint32_t)w->count);
    put_le32(hdr + 16, (uint32_t)w->height);
    put_le32(hdr + 20, (uint32_t)w->width);
    put_le32(hdr + 24, (uint32_t)w->channels);
    put_le32(hdr + 28, (uint32_t)w->num_classes);
    for (int c = 0; c < w->channels; c++) {
        put_f32(hdr + 36 + 4 * c, (float)mean[c]);
        put_f32(hdr + 48 + 4 * c, (float)std[c]);
    }
    uint32_t crc = crc_bytes(w->meta_crc, w->crcs, (size_t)w->count * sizeof(uint32_t));
    put_le32(hdr + 32, crc_header_v2(crc, hdr));
    // the image CRCs, then the header, over the placeholders open wrote
    long crc_at = IMAGE_SHARD_HEADER_BYTES + (long)w->num_classes * IMAGE_CLASS_NAME_LEN + (long)w->count * 4;
    if (fseek(w->af.f, crc_at, SEEK_SET) != 0) fail("cannot seek in %s: %s", w->af.tmp_path, strerror(errno));
    fwrite_or_fail(w->crcs, sizeof(uint32_t), (size_t)w->count, w->af.f, w->af.tmp_path);
    if (fseek(w->af.f, 0, SEEK_SET) != 0) fail("cannot seek in %s: %s", w->af.tmp_path, strerror(errno));
    fwrite_or_fail(hdr, 1, sizeof(hdr), w->af.f, w->af.tmp_path);
    atomic_commit(&w->af);
    free(w->crcs);
    w->crcs = NULL;
    for (int c = 0; c < w->channels; c++) {
        if (mean_out) mean_out[c] = mean[c];
        if (std_out) std_out[c] = std[c];
    }
}

void image_set_write_shard(const ImageSet *set, const char *path) {
    ImageShardWriter w;
    image_shard_writer_open(&w, path, set->count, set->channels, set->height, set->width, set->num_classes,
                            (const char (*)[IMAGE_CLASS_NAME_LEN])set->class_names, set->labels);
    if (set->pixels) {
        image_shard_writer_put(&w, set->pixels, set->count);
    } else { // a streamed shard, one image at a time
        uint8_t *buf = malloc_or_fail(image_set_image_bytes(set), "image");
        char err[1400];
        for (int i = 0; i < set->count; i++) {
            const uint8_t *img = image_set_image(set, i, buf, err, sizeof(err));
            if (!img) fail("%s", err);
            image_shard_writer_put(&w, img, 1);
        }
        free(buf);
    }
    image_shard_writer_close(&w, NULL, NULL);
}

// pread of exactly n bytes at off; 0 with errno (0 for a short file) on failure
static int pread_exact(int fd, void *dst, size_t n, uint64_t off) {
    uint8_t *p = dst;
    while (n > 0) {
        ssize_t got = pread(fd, p, n, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            if (got == 0) errno = 0;
            return 0;
        }
        p += got;
        n -= (size_t)got;
        off += (uint64_t)got;
    }
    return 1;
}

// Open a shard and check its header against its size; set gets the sizes,
// the version, the statistics and the path (nothing allocated), *crc the
// stored CRC, hdr the header bytes; the file is left at the class names.
static FILE *shard_open(ImageSet *set, const char *path, uint32_t *crc_out, uint8_t *hdr) {
    memset(set, 0, sizeof(*set));
    FILE *f = fopen_or_fail(path, "rb");
    size_t size = file_size_or_fail(f, path);
    if (size < IMAGE_SHARD_HEADER_BYTES)
        fail("%s is truncated (%zu bytes, the header alone is %d)", path, size, IMAGE_SHARD_HEADER_BYTES);
    fread_or_fail(hdr, 1, IMAGE_SHARD_HEADER_BYTES, f, path);
    if (memcmp(hdr, IMAGE_SHARD_MAGIC, 8) != 0) fail("%s is not an image shard (bad magic)", path);
    uint32_t version = get_le32(hdr + 8);
    if (version != 1 && version != 2)
        fail("%s has image shard version %u, this build reads versions 1 and 2", path, version);
    uint32_t count = get_le32(hdr + 12), height = get_le32(hdr + 16), width = get_le32(hdr + 20);
    uint32_t channels = get_le32(hdr + 24), num_classes = get_le32(hdr + 28), crc = get_le32(hdr + 32);
    if (count == 0 || count > INT_MAX) fail("%s has a bad image count %u", path, count);
    if (height == 0 || width == 0 || height > IMAGE_MAX_SIDE || width > IMAGE_MAX_SIDE)
        fail("%s has bad image dimensions %u x %u", path, height, width);
    if (channels != 1 && channels != 3) fail("%s has %u channels (expected 1 or 3)", path, channels);
    if (num_classes == 0 || num_classes > 1000000) fail("%s has a bad class count %u", path, num_classes);
    for (int i = version == 1 ? 36 : 60; i < IMAGE_SHARD_HEADER_BYTES; i++)
        if (hdr[i] != 0) fail("%s has non-zero reserved header bytes", path);
    if (version == 2) {
        for (int c = 0; c < IMAGE_MAX_CHANNELS; c++) {
            float m = get_f32(hdr + 36 + 4 * c), sd = get_f32(hdr + 48 + 4 * c);
            int used = c < (int)channels;
            if (!(m >= 0.0f && m <= 1.0f && sd >= 0.0f && sd <= 1.0f) || (!used && (m != 0.0f || sd != 0.0f)))
                fail("%s has bad channel statistics in its header (channel %d: mean %g, std %g)", path, c, m, sd);
            set->stats_mean[c] = m;
            set->stats_std[c] = sd;
        }
        set->has_stats = 1;
    }

    uint64_t expect = IMAGE_SHARD_HEADER_BYTES + (uint64_t)num_classes * IMAGE_CLASS_NAME_LEN
                    + (uint64_t)count * (version == 2 ? 8 : 4) + (uint64_t)count * channels * height * width;
    if (size < expect) fail("%s is truncated (%zu bytes, the header describes %llu)", path, size, (unsigned long long)expect);
    if (size > expect) fail("%s has %llu trailing bytes after the data its header describes", path,
                            (unsigned long long)(size - expect));

    set->count = (int)count;
    set->height = (int)height;
    set->width = (int)width;
    set->channels = (int)channels;
    set->num_classes = (int)num_classes;
    set->version = (int)version;
    set->pixel_offset = expect - (uint64_t)count * channels * height * width;
    if (strlen(path) >= sizeof(set->path)) fail("path too long: %s", path);
    snprintf(set->path, sizeof(set->path), "%s", path);
    *crc_out = crc;
    return f;
}

void image_set_read_shard_header(ImageSet *set, const char *path) {
    uint32_t crc;
    uint8_t hdr[IMAGE_SHARD_HEADER_BYTES];
    fclose(shard_open(set, path, &crc, hdr));
}

// names, labels and (version 2) image CRCs from f, at the class names
static void shard_read_meta(ImageSet *set, FILE *f) {
    const char *path = set->path;
    fread_or_fail(set->class_names, IMAGE_CLASS_NAME_LEN, (size_t)set->num_classes, f, path);
    fread_or_fail(set->labels, sizeof(int32_t), (size_t)set->count, f, path);
    if (set->version == 2) {
        set->image_crcs = malloc_or_fail((size_t)set->count * sizeof(uint32_t), "image CRCs");
        fread_or_fail(set->image_crcs, sizeof(uint32_t), (size_t)set->count, f, path);
    }
}

// what a CRC cannot catch: names without their NUL, labels out of range
static void shard_check_meta(const ImageSet *set) {
    for (int k = 0; k < set->num_classes; k++)
        if (set->class_names[k][IMAGE_CLASS_NAME_LEN - 1] != 0)
            fail("%s: class name %d is not NUL-terminated", set->path, k);
    for (int i = 0; i < set->count; i++)
        if (set->labels[i] < 0 || set->labels[i] >= set->num_classes)
            fail("%s: label %d of image %d is out of range (%d classes)", set->path, set->labels[i], i,
                 set->num_classes);
}

// the running CRC of names and labels, where both versions start
static uint32_t crc_names_labels(const ImageSet *set) {
    uint32_t crc = crc_bytes(0, NULL, 0);
    crc = crc_bytes(crc, set->class_names, (size_t)set->num_classes * IMAGE_CLASS_NAME_LEN);
    return crc_bytes(crc, set->labels, (size_t)set->count * sizeof(int32_t));
}

static void corrupt(const char *path) { fail("%s is corrupt (CRC-32 mismatch)", path); }

void image_set_read_shard(ImageSet *set, const char *path) {
    uint32_t crc;
    uint8_t hdr[IMAGE_SHARD_HEADER_BYTES];
    FILE *f = shard_open(set, path, &crc, hdr);
    image_set_alloc(set);
    shard_read_meta(set, f);
    size_t bytes = image_set_image_bytes(set);
    fread_or_fail(set->pixels, 1, (size_t)set->count * bytes, f, path);
    fclose_or_fail(f, path);

    uint32_t c = crc_names_labels(set);
    if (set->version == 1) {
        if (crc_bytes(c, set->pixels, (size_t)set->count * bytes) != crc) corrupt(path);
    } else {
        c = crc_bytes(c, set->image_crcs, (size_t)set->count * sizeof(uint32_t));
        if (crc_header_v2(c, hdr) != crc) corrupt(path);
        for (int i = 0; i < set->count; i++)
            if (crc_bytes(crc_bytes(0, NULL, 0), set->pixels + (size_t)i * bytes, bytes) != set->image_crcs[i])
                fail("%s: image %d is corrupt (CRC-32 mismatch)", path, i);
        free(set->image_crcs); // in memory, checked once
        set->image_crcs = NULL;
    }
    shard_check_meta(set);
}

// Reading a version-1 shard's pixels through once, in 4 MiB pieces, for its
// CRC: the only check it has, and it covers the whole file.
#define SHARD_CHECK_CHUNK (4u << 20)
static uint32_t crc_pixels_streamed(const ImageSet *set, uint32_t crc) {
    uint8_t *buf = malloc_or_fail(SHARD_CHECK_CHUNK, "shard check buffer");
    uint64_t left = (uint64_t)set->count * image_set_image_bytes(set), off = set->pixel_offset;
    while (left > 0) {
        size_t n = left < SHARD_CHECK_CHUNK ? (size_t)left : SHARD_CHECK_CHUNK;
        if (!pread_exact(fileno(set->file), buf, n, off))
            fail("reading %s: %s", set->path, errno ? strerror(errno) : "the file shrank");
        crc = crc_bytes(crc, buf, n);
        off += n;
        left -= n;
    }
    free(buf);
    return crc;
}

void image_set_open_shard(ImageSet *set, const char *path) {
    uint32_t crc;
    uint8_t hdr[IMAGE_SHARD_HEADER_BYTES];
    FILE *f = shard_open(set, path, &crc, hdr);
    image_set_alloc_meta(set);
    set->file = f;
    shard_read_meta(set, f);
    uint32_t c = crc_names_labels(set);
    if (set->version == 1) {
        if (crc_pixels_streamed(set, c) != crc) corrupt(path);
    } else {
        c = crc_bytes(c, set->image_crcs, (size_t)set->count * sizeof(uint32_t));
        if (crc_header_v2(c, hdr) != crc) corrupt(path);
    }
    shard_check_meta(set);
}

const uint8_t *image_set_image(const ImageSet *set, int i, uint8_t *dst, char *err, size_t errlen) {
    size_t bytes = image_set_image_bytes(set);
    if (set->pixels) return set->pixels + (size_t)i * bytes;
    if (!pread_exact(fileno(set->file), dst, bytes, set->pixel_offset + (uint64_t)i * bytes)) {
        snprintf(err, errlen, "reading image %d of %s: %s", i, set->path, errno ? strerror(errno) : "the file shrank");
        return NULL;
    }
    if (set->image_crcs && crc_bytes(crc_bytes(0, NULL, 0), dst, bytes) != set->image_crcs[i]) {
        snprintf(err, errlen, "%s: image %d is corrupt (CRC-32 mismatch)", set->path, i);
        return NULL;
    }
    return dst;
}

// ---------------------------------------------------------------------------
// statistics and flags

void image_set_channel_stats(const ImageSet *set, double *mean, double *std) {
    size_t plane = (size_t)set->height * set->width, bytes = image_set_image_bytes(set);
    uint64_t sum[IMAGE_MAX_CHANNELS] = {0}, sqsum[IMAGE_MAX_CHANNELS] = {0};
    if (set->pixels) {
        for (int c = 0; c < set->channels; c++) {
            // exact integer sums: the order of addition cannot matter
            uint64_t s = 0, q = 0;
            #pragma omp parallel for reduction(+:s, q) schedule(static)
            for (int i = 0; i < set->count; i++) {
                uint64_t si = 0, qi = 0;
                stats_add(set->pixels + (size_t)i * bytes + (size_t)c * plane, 1, plane, &si, &qi);
                s += si;
                q += qi;
            }
            sum[c] = s;
            sqsum[c] = q;
        }
    } else { // streamed: one image at a time, each checked
        uint8_t *buf = malloc_or_fail(bytes, "image");
        char err[1400];
        for (int i = 0; i < set->count; i++) {
            const uint8_t *img = image_set_image(set, i, buf, err, sizeof(err));
            if (!img) fail("%s", err);
            stats_add(img, set->channels, plane, sum, sqsum);
        }
        free(buf);
    }
    stats_finish(sum, sqsum, set->channels, (double)set->count * (double)plane, mean, std);
}

void parse_channel_values_or_fail(const char *text, int channels, const char *flag,
                                  int positive, float *out) {
    float vals[IMAGE_MAX_CHANNELS];
    int n = 0;
    const char *p = text;
    for (;;) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno != 0 || !isfinite(v) || n == IMAGE_MAX_CHANNELS || (*end != ',' && *end != '\0'))
            fail("%s: expected 1 or %d comma-separated numbers, got '%s'", flag, channels, text);
        if (positive && !(v > 0.0)) fail("%s: values must be positive, got '%s'", flag, text);
        vals[n++] = (float)v;
        if (*end == '\0') break;
        p = end + 1;
    }
    if (n != 1 && n != channels)
        fail("%s: expected 1 or %d comma-separated numbers, got '%s'", flag, channels, text);
    for (int c = 0; c < channels; c++) out[c] = vals[n == 1 ? 0 : c];
}

// ---------------------------------------------------------------------------
// batch loader

// the permutation of one epoch, from (seed, epoch) alone
static void loader_make_order(ImageLoader *l, int64_t epoch) {
    int n = l->set->count;
    for (int i = 0; i < n; i++) l->order[i] = i;
    if (l->cfg.shuffle) {
        Rng r;
        rng_seed(&r, l->cfg.seed);
        rng_seed(&r, r.state ^ ((uint64_t)epoch * 0xD1B54A32D192ED03ull));
        for (int i = n - 1; i > 0; i--) {
            int j = (int)rng_below(&r, (uint32_t)i + 1);
            int32_t t = l->order[i]; l->order[i] = l->order[j]; l->order[j] = t;
        }
    }
    l->order_epoch = epoch;
}

static void loader_seed_aug(ImageLoader *l) {
    // a stream separate from the permutations'
    rng_seed(&l->aug_rng, l->cfg.seed ^ 0x6A09E667F3BCC909ull);
}

void image_loader_config_defaults(ImageLoaderConfig *c) {
    memset(c, 0, sizeof(*c));
    c->rrc_scale[0] = 0.08;
    c->rrc_scale[1] = 1.0;
    c->rrc_ratio[0] = 3.0 / 4.0;
    c->rrc_ratio[1] = 4.0 / 3.0;
    c->mix_prob = 1.0;
    c->switch_prob = 0.5;
}

static int config_mixes(const ImageLoaderConfig *c) { return c->mixup_alpha > 0.0 || c->cutmix_alpha > 0.0; }

// the output size of a configuration (0 means the stored size)
static void loader_out_size(const ImageSet *set, const ImageLoaderConfig *c, int *h, int *w) {
    *h = c->out_height ? c->out_height : set->height;
    *w = c->out_width ? c->out_width : set->width;
}

// the per-thread work space of a configuration: what each array holds
typedef struct {
    size_t src, tmp, resized, xtaps, ytaps, xw, yw;
} ScratchSizes;

static int loader_xcap(const ImageSet *set, int w) { return axis_taps_needed(set->width, w); }
static int loader_ycap(const ImageSet *set, int h) { return axis_taps_needed(set->height, h); }

static ScratchSizes scratch_sizes(const ImageSet *set, const ImageLoaderConfig *c, int streamed) {
    ScratchSizes z = {0};
    int h, w;
    loader_out_size(set, c, &h, &w);
    if (streamed) z.src = image_set_image_bytes(set);
    if (c->rrc) {
        z.tmp = (size_t)set->height * w * sizeof(float);
        z.resized = (size_t)h * w;
        z.xtaps = (size_t)w * sizeof(int);
        z.ytaps = (size_t)h * sizeof(int);
        z.xw = (size_t)w * loader_xcap(set, w) * sizeof(float);
        z.yw = (size_t)h * loader_ycap(set, h) * sizeof(float);
    }
    return z;
}

size_t image_loader_resident_bytes(const ImageSet *set, const ImageLoaderConfig *c, int streamed, int threads) {
    ScratchSizes z = scratch_sizes(set, c, streamed);
    size_t per_thread = z.src + z.tmp + z.resized + 2 * z.xtaps + 2 * z.ytaps + z.xw + z.yw;
    return (size_t)set->count * sizeof(int32_t) + (size_t)c->B * sizeof(ImageAugDraw) +
           (size_t)threads * (sizeof(ImageLoaderScratch) + per_thread);
}

static void *alloc_or_null(size_t bytes, const char *what) { return bytes ? malloc_or_fail(bytes, what) : NULL; }

void image_loader_init_config(ImageLoader *l, const ImageSet *set, const ImageLoaderConfig *c) {
    memset(l, 0, sizeof(*l));
    int B = c->B, H, W;
    loader_out_size(set, c, &H, &W);
    if (B < 1) fail("batch size must be at least 1, got %d", B);
    if (set->channels < 1 || set->channels > IMAGE_MAX_CHANNELS) fail("image set has %d channels", set->channels);
    if (H < 1 || W < 1 || H > IMAGE_MAX_SIDE || W > IMAGE_MAX_SIDE)
        fail("the loader's image size %d x %d is out of range (1..%d)", H, W, IMAGE_MAX_SIDE);
    if (c->shuffle && B > set->count)
        fail("batch size %d is larger than the training set (%d images)", B, set->count);
    if (!c->shuffle && (c->crop_pad || c->flip || c->rrc))
        fail("evaluation batches are never augmented (crop padding %d, flip %d, RandomResizedCrop %d requested)",
             c->crop_pad, c->flip, c->rrc);
    if (!c->shuffle && (c->smoothing > 0.0 || config_mixes(c)))
        fail("evaluation batches have no soft targets (label smoothing, Mixup or CutMix requested)");
    if (c->crop_pad < 0 || c->crop_pad > set->height || c->crop_pad > set->width)
        fail("crop padding %d is out of range for %d x %d images", c->crop_pad, set->height, set->width);
    if (c->crop_pad && c->rrc) fail("crop padding and RandomResizedCrop exclude each other");
    if (c->crop_pad && (H != set->height || W != set->width))
        fail("crop padding needs the model's image size (%dx%d) to be the stored size (%dx%d)", H, W, set->height,
             set->width);
    if (!c->rrc && (H > set->height || W > set->width))
        fail("images of %dx%d are smaller than the model's %dx%d: only RandomResizedCrop resizes (evaluation "
             "takes a centre crop)", set->height, set->width, H, W);
    if (c->rrc && !(c->rrc_scale[0] > 0.0 && c->rrc_scale[0] <= c->rrc_scale[1] && c->rrc_scale[1] <= 1.0))
        fail("RandomResizedCrop scale (%g, %g) must satisfy 0 < low <= high <= 1", c->rrc_scale[0], c->rrc_scale[1]);
    if (c->rrc && !(c->rrc_ratio[0] > 0.0 && c->rrc_ratio[0] <= c->rrc_ratio[1] && isfinite(c->rrc_ratio[1])))
        fail("RandomResizedCrop ratio (%g, %g) must satisfy 0 < low <= high", c->rrc_ratio[0], c->rrc_ratio[1]);
    if (!(c->smoothing >= 0.0 && c->smoothing < 1.0)) fail("label smoothing must be in [0, 1), got %g", c->smoothing);
    if (!(c->mixup_alpha >= 0.0 && c->cutmix_alpha >= 0.0 && isfinite(c->mixup_alpha) && isfinite(c->cutmix_alpha)))
        fail("Mixup and CutMix alphas must be finite and >= 0, got %g and %g", c->mixup_alpha, c->cutmix_alpha);
    if (!(c->mix_prob >= 0.0 && c->mix_prob <= 1.0 && c->switch_prob >= 0.0 && c->switch_prob <= 1.0))
        fail("Mixup probabilities must be in [0, 1], got %g and %g", c->mix_prob, c->switch_prob);
    if (config_mixes(c) && B % 2 != 0)
        fail("Mixup and CutMix mix image b with image B-1-b of a batch: the batch size must be even, got %d", B);
    l->set = set;
    l->cfg = *c;
    l->B = B;
    l->out_height = H;
    l->out_width = W;
    l->soft = c->smoothing > 0.0 || config_mixes(c);
    for (int ch = 0; ch < set->channels; ch++) {
        if (!(c->std[ch] > 0.0f) || !isfinite(c->std[ch]) || !isfinite(c->mean[ch]))
            fail("normalisation of channel %d needs a finite mean and std > 0 (got %g, %g)", ch, c->mean[ch], c->std[ch]);
        for (int v = 0; v < 256; v++) l->lut[ch][v] = ((float)v / 255.0f - c->mean[ch]) / c->std[ch];
    }
    l->cfg.mean = l->cfg.std = NULL;
    // image_loader_resident_bytes counts these
    l->order = malloc_or_fail((size_t)set->count * sizeof(int32_t), "loader order");
    l->draws = calloc_or_fail((size_t)B, sizeof(ImageAugDraw), "loader augmentation draws");
    l->threads = omp_get_max_threads();
    l->xcap = loader_xcap(set, W);
    l->ycap = loader_ycap(set, H);
    l->scratch = calloc_or_fail((size_t)l->threads, sizeof(ImageLoaderScratch), "loader work space");
    ScratchSizes z = scratch_sizes(set, c, set->pixels == NULL);
    for (int t = 0; t < l->threads; t++) {
        ImageLoaderScratch *sc = &l->scratch[t];
        sc->src = alloc_or_null(z.src, "loader image");
        sc->tmp = alloc_or_null(z.tmp, "loader resampling");
        sc->resized = alloc_or_null(z.resized, "loader resampling");
        sc->xfirst = alloc_or_null(z.xtaps, "loader resampling");
        sc->xtaps = alloc_or_null(z.xtaps, "loader resampling");
        sc->yfirst = alloc_or_null(z.ytaps, "loader resampling");
        sc->ytaps = alloc_or_null(z.ytaps, "loader resampling");
        sc->xw = alloc_or_null(z.xw, "loader resampling");
        sc->yw = alloc_or_null(z.yw, "loader resampling");
    }
    image_loader_reset(l);
}

void image_loader_init(ImageLoader *l, const ImageSet *set, int B, uint64_t seed, int shuffle,
                       int crop_pad, int flip, const float *mean, const float *std) {
    ImageLoaderConfig c;
    image_loader_config_defaults(&c);
    c.B = B;
    c.seed = seed;
    c.shuffle = shuffle;
    c.crop_pad = crop_pad;
    c.flip = flip;
    c.mean = mean;
    c.std = std;
    image_loader_init_config(l, set, &c);
}

void image_loader_reset(ImageLoader *l) {
    l->epoch = 0;
    l->pos = 0;
    loader_seed_aug(l);
    loader_make_order(l, 0);
}

int64_t image_loader_batches_per_epoch(const ImageLoader *l) {
    int64_t n = l->set->count;
    return l->cfg.shuffle ? n / l->B : (n + l->B - 1) / l->B;
}

ImageLoaderState image_loader_get_state(const ImageLoader *l) {
    ImageLoaderState st = { l->epoch, l->pos, l->aug_rng.state };
    return st;
}

void image_loader_set_state(ImageLoader *l, ImageLoaderState st) {
    if (st.epoch < 0 || st.pos < 0 || st.pos > l->set->count || st.rng_state == 0)
        fail("loader state (epoch %lld, position %lld) does not fit a set of %d images",
             (long long)st.epoch, (long long)st.pos, l->set->count);
    l->epoch = st.epoch;
    l->pos = st.pos;
    l->aug_rng.state = st.rng_state;
    if (l->order_epoch != l->epoch) loader_make_order(l, l->epoch);
}

// ---------------------------------------------------------------------------
// augmentation draws

// Python's round(): half to even (the default rounding mode)
static int round_half_even(double x) { return (int)nearbyint(x); }

void image_rrc_box(Rng *r, int H, int W, const double scale[2], const double ratio[2], ImageAugDraw *box) {
    double area = (double)H * (double)W;
    // torch.log(torch.tensor(ratio)) is float32
    float log_lo = (float)log((double)(float)ratio[0]), log_hi = (float)log((double)(float)ratio[1]);
    for (int attempt = 0; attempt < 10; attempt++) {
        float u1 = rng_uniform(r); // the area's draw first, then the ratio's, as torchvision
        float u2 = rng_uniform(r);
        // torch.empty(1).uniform_(a, b): a float32 value
        float s = (float)(scale[0] + (scale[1] - scale[0]) * (double)u1);
        float log_ratio = (float)((double)log_lo + ((double)log_hi - (double)log_lo) * (double)u2);
        double target_area = area * (double)s;
        double aspect = (double)(float)exp((double)log_ratio); // torch.exp of a float32 tensor
        int w = round_half_even(sqrt(target_area * aspect));
        int h = round_half_even(sqrt(target_area / aspect));
        if (0 < w && w <= W && 0 < h && h <= H) {
            box->y = (int32_t)rng_below(r, (uint32_t)(H - h + 1));
            box->x = (int32_t)rng_below(r, (uint32_t)(W - w + 1));
            box->h = h;
            box->w = w;
            return;
        }
    }
    // fall back to the centre crop of the whole image clamped to the ratio range
    double in_ratio = (double)W / (double)H;
    double rmin = fmin(ratio[0], ratio[1]), rmax = fmax(ratio[0], ratio[1]);
    int w, h;
    if (in_ratio < rmin) {
        w = W;
        h = round_half_even(w / rmin);
    } else if (in_ratio > rmax) {
        h = H;
        w = round_half_even(h * rmax);
    } else {
        w = W;
        h = H;
    }
    box->y = (H - h) / 2;
    box->x = (W - w) / 2;
    box->h = h;
    box->w = w;
}

// uniform in (0, 1): never 0, for logs and powers
static double uniform_open(Rng *r) { return ((double)(rng_u32(r) >> 8) + 0.5) / 16777216.0; }

// Gamma(a, 1) by Marsaglia and Tsang (2000); a < 1 through Gamma(a + 1) U^(1/a)
static double gamma_sample(Rng *r, double a) {
    if (a < 1.0) {
        double u = uniform_open(r);
        return gamma_sample(r, a + 1.0) * pow(u, 1.0 / a);
    }
    double d = a - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = rng_normal(r);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        double u = uniform_open(r);
        if (u < 1.0 - 0.0331 * (x * x) * (x * x)) return d * v;
        if (log(u) < 0.5 * x * x + d * (1.0 - v + log(v))) return d * v;
    }
}

double image_beta_sample(Rng *r, double alpha) {
    double x = gamma_sample(r, alpha), y = gamma_sample(r, alpha);
    return x + y > 0.0 ? x / (x + y) : 0.5; // both underflow only for tiny alpha
}

void image_cutmix_box(int H, int W, double lam, int cy, int cx, ImageMixDraw *d) {
    double ratio = sqrt(1.0 - lam);
    int cut_h = (int)(H * ratio), cut_w = (int)(W * ratio);
    d->yl = clamp_int(cy - cut_h / 2, 0, H);
    d->yh = clamp_int(cy + cut_h / 2, 0, H);
    d->xl = clamp_int(cx - cut_w / 2, 0, W);
    d->xh = clamp_int(cx + cut_w / 2, 0, W);
    d->mixed = 1;
    d->cutmix = 1;
    d->lam = 1.0 - (double)((d->yh - d->yl) * (d->xh - d->xl)) / (double)(H * W); // correct_lam
}

void image_mix_batch(float *images, int B, int C, int H, int W, const ImageMixDraw *d) {
    if (!d->mixed) return;
    size_t n = (size_t)C * H * W;
    float lam = (float)d->lam, rest = (float)(1.0 - d->lam);
    for (int b = 0; b < B / 2; b++) { // b and its partner B-1-b, each from the other's original
        float *x = images + (size_t)b * n, *y = images + (size_t)(B - 1 - b) * n;
        if (d->cutmix) {
            for (int c = 0; c < C; c++)
                for (int r = d->yl; r < d->yh; r++)
                    for (int col = d->xl; col < d->xh; col++) {
                        size_t i = ((size_t)c * H + r) * W + col;
                        float t = x[i]; x[i] = y[i]; y[i] = t;
                    }
        } else {
            for (size_t i = 0; i < n; i++) {
                float a = x[i], e = y[i];
                x[i] = a * lam + e * rest;
                y[i] = e * lam + a * rest;
            }
        }
    }
}

void image_mix_targets(float *targets, const int *labels, int B, int K, double smoothing, const ImageMixDraw *d) {
    float off = (float)(smoothing / K), on = (float)(1.0 - smoothing + smoothing / K);
    float lam = (float)d->lam, rest = (float)(1.0 - d->lam);
    for (int b = 0; b < B; b++) {
        float *row = targets + (size_t)b * K;
        int partner = labels[B - 1 - b];
        for (int k = 0; k < K; k++) {
            float y1 = k == labels[b] ? on : off;
            row[k] = d->mixed ? y1 * lam + (k == partner ? on : off) * rest : y1;
        }
        if (labels[b] < 0) memset(row, 0, (size_t)K * sizeof(float)); // a padding row of an evaluation batch
    }
}

// the draws of one image, in batch order: the crop window, then the mirror
static void draw_image(ImageLoader *l, ImageAugDraw *d) {
    const ImageSet *s = l->set;
    const ImageLoaderConfig *c = &l->cfg;
    if (c->rrc) {
        image_rrc_box(&l->aug_rng, s->height, s->width, c->rrc_scale, c->rrc_ratio, d);
    } else {
        // torchvision's CenterCrop (nothing to crop at the stored size)
        d->h = l->out_height;
        d->w = l->out_width;
        d->y = round_half_even((s->height - l->out_height) / 2.0);
        d->x = round_half_even((s->width - l->out_width) / 2.0);
        if (c->crop_pad > 0) { // the window's corner in the padded image, as an offset into the stored one
            int k = c->crop_pad;
            d->y = (int32_t)rng_below(&l->aug_rng, 2u * k + 1) - k;
            d->x = (int32_t)rng_below(&l->aug_rng, 2u * k + 1) - k;
        }
    }
    d->flip = c->flip ? rng_uniform(&l->aug_rng) < 0.5f : 0;
}

// timm's Mixup._params_per_batch, then the CutMix box
static void draw_mix(ImageLoader *l) {
    const ImageLoaderConfig *c = &l->cfg;
    ImageMixDraw *d = &l->mix;
    memset(d, 0, sizeof(*d));
    d->lam = 1.0;
    if (!(rng_uniform(&l->aug_rng) < c->mix_prob)) return;
    int cut;
    double alpha;
    if (c->mixup_alpha > 0.0 && c->cutmix_alpha > 0.0) {
        cut = rng_uniform(&l->aug_rng) < c->switch_prob;
        alpha = cut ? c->cutmix_alpha : c->mixup_alpha;
    } else if (c->mixup_alpha > 0.0) {
        cut = 0;
        alpha = c->mixup_alpha;
    } else {
        cut = 1;
        alpha = c->cutmix_alpha;
    }
    double lam = image_beta_sample(&l->aug_rng, alpha);
    if (lam == 1.0) return; // timm leaves the batch as it is
    d->mixed = 1;
    d->lam = lam;
    if (cut) {
        int cy = (int)rng_below(&l->aug_rng, (uint32_t)l->out_height);
        int cx = (int)rng_below(&l->aug_rng, (uint32_t)l->out_width);
        image_cutmix_box(l->out_height, l->out_width, lam, cy, cx, d);
    }
}

// ---------------------------------------------------------------------------
// making a batch

// One image of the batch from its stored pixels src ([C][H][W]) and its
// draws: out is [C][out_h][out_w], normalised.
static void fill_image(const ImageLoader *l, ImageLoaderScratch *sc, const uint8_t *src, const ImageAugDraw *d,
                       float *out) {
    const ImageSet *s = l->set;
    int Hs = s->height, Ws = s->width, Ho = l->out_height, Wo = l->out_width;
    size_t plane = (size_t)Hs * Ws;
    if (l->cfg.rrc) {
        // the box resampled like image_resize_hwc(box, RESIZE_STRETCH), one channel at a time
        AxisWeights ax = {0, l->xcap, sc->xfirst, sc->xtaps, sc->xw};
        AxisWeights ay = {0, l->ycap, sc->yfirst, sc->ytaps, sc->yw};
        axis_weights_fill(&ax, d->w, 0.0, d->w, Wo);
        axis_weights_fill(&ay, d->h, 0.0, d->h, Ho);
        for (int c = 0; c < s->channels; c++) {
            const float *lut = l->lut[c];
            resample_passes(src + c * plane + (size_t)d->y * Ws + d->x, (size_t)Ws, 1, &ax, &ay, sc->tmp, sc->resized);
            float *o = out + (size_t)c * Ho * Wo;
            for (int y = 0; y < Ho; y++) {
                const uint8_t *row = sc->resized + (size_t)y * Wo;
                for (int x = 0; x < Wo; x++) o[(size_t)y * Wo + x] = lut[row[d->flip ? Wo - 1 - x : x]];
            }
        }
        return;
    }
    // the window of the output's size at (d->y, d->x); zero padding outside the image
    for (int c = 0; c < s->channels; c++) {
        const float *lut = l->lut[c];
        const uint8_t *p = src + (size_t)c * plane;
        float *o = out + (size_t)c * Ho * Wo;
        for (int y = 0; y < Ho; y++) {
            int sy = y + d->y;
            float *orow = o + (size_t)y * Wo;
            if (sy < 0 || sy >= Hs) {
                for (int x = 0; x < Wo; x++) orow[x] = lut[0];
                continue;
            }
            const uint8_t *srow = p + (size_t)sy * Ws;
            for (int x = 0; x < Wo; x++) {
                int sx = (d->flip ? Wo - 1 - x : x) + d->x;
                orow[x] = (sx >= 0 && sx < Ws) ? lut[srow[sx]] : lut[0];
            }
        }
    }
}

int image_loader_next(ImageLoader *l, float *images, int *labels) {
    return image_loader_next_targets(l, images, labels, NULL);
}

int image_loader_next_targets(ImageLoader *l, float *images, int *labels, float *targets) {
    const ImageSet *s = l->set;
    if (l->soft && !targets)
        fail("internal: this loader makes soft targets (label smoothing, Mixup): use image_loader_next_targets");
    size_t out_bytes = (size_t)s->channels * l->out_height * l->out_width;
    int n;
    if (l->cfg.shuffle) {
        if (l->pos + l->B > s->count) { l->epoch++; l->pos = 0; }
        n = l->B;
    } else {
        if (l->pos >= s->count) {
            // end of the pass: say so once, and be ready for the next one
            l->epoch++;
            l->pos = 0;
            n = 0;
        } else {
            n = (int)((s->count - l->pos) < l->B ? s->count - l->pos : l->B);
        }
    }
    if (l->order_epoch != l->epoch) loader_make_order(l, l->epoch);

    // draw the augmentation sequentially so the stream is thread-independent
    for (int b = 0; b < n; b++) draw_image(l, &l->draws[b]);
    const int32_t *order = l->order + l->pos;
    // a failed read or CRC is reported for the lowest batch index, whatever the threads did
    int first_bad = n;
    char bad_msg[1400] = "";
    int parallel = !s->pixels || (size_t)n * out_bytes >= (1u << 16) || l->cfg.rrc;
    #pragma omp parallel for schedule(static) num_threads(l->threads) if (parallel)
    for (int b = 0; b < n; b++) {
        ImageLoaderScratch *sc = &l->scratch[omp_get_thread_num()];
        int idx = order[b];
        char err[1400];
        const uint8_t *src = image_set_image(s, idx, sc->src, err, sizeof(err));
        if (!src) {
            #pragma omp critical(image_loader_error)
            if (b < first_bad) {
                first_bad = b;
                snprintf(bad_msg, sizeof(bad_msg), "%s", err);
            }
            continue;
        }
        fill_image(l, sc, src, &l->draws[b], images + (size_t)b * out_bytes);
        labels[b] = s->labels[idx];
    }
    if (first_bad < n) fail("%s", bad_msg);
    if (n < l->B) {
        memset(images + (size_t)n * out_bytes, 0, (size_t)(l->B - n) * out_bytes * sizeof(float));
        for (int b = n; b < l->B; b++) labels[b] = -1;
    }
    memset(&l->mix, 0, sizeof(l->mix));
    l->mix.lam = 1.0;
    if (l->cfg.shuffle && config_mixes(&l->cfg)) {
        draw_mix(l);
        image_mix_batch(images, l->B, s->channels, l->out_height, l->out_width, &l->mix);
    }
    if (targets) image_mix_targets(targets, labels, l->B, s->num_classes, l->cfg.smoothing, &l->mix);
    l->pos += n;
    return n;
}

void image_loader_free(ImageLoader *l) {
    for (int t = 0; t < l->threads && l->scratch; t++) {
        ImageLoaderScratch *sc = &l->scratch[t];
        free(sc->src); free(sc->tmp); free(sc->resized);
        free(sc->xfirst); free(sc->xtaps); free(sc->yfirst); free(sc->ytaps);
        free(sc->xw); free(sc->yw);
    }
    free(l->scratch);
    free(l->order);
    free(l->draws);
    memset(l, 0, sizeof(*l));
}
