// Image datasets, shards and the batch loader (see images.h).
#include "data/images.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <stb/stb_image.h>

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
    memset(set, 0, sizeof(*set));
}

size_t image_set_resident_bytes(const ImageSet *set) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pixels = mul_size_or_fail((size_t)set->count, image_set_image_bytes(set), "the image pixels");
    size_t small = (size_t)set->count * sizeof(int32_t) + (size_t)set->num_classes * IMAGE_CLASS_NAME_LEN;
    return alloc_big_footprint(pixels) + (small + page - 1) / page * page;
}

// allocate the arrays of a set whose sizes are already filled in (what
// image_set_resident_bytes counts)
static void image_set_alloc(ImageSet *set) {
    set->pixels = alloc_big(mul_size_or_fail((size_t)set->count, image_set_image_bytes(set), "the image pixels"),
                            "image pixels");
    set->labels = malloc_or_fail((size_t)set->count * sizeof(int32_t), "image labels");
    set->class_names = calloc_or_fail((size_t)set->num_classes, IMAGE_CLASS_NAME_LEN, "class names");
}

static void set_class_name(ImageSet *set, int k, const char *name, const char *where) {
    if (strlen(name) >= IMAGE_CLASS_NAME_LEN)
        fail("class name '%s' in %s is longer than %d bytes", name, where, IMAGE_CLASS_NAME_LEN - 1);
    snprintf(set->class_names[k], IMAGE_CLASS_NAME_LEN, "%s", name);
}

void image_set_subset(ImageSet *dst, const ImageSet *src, const int32_t *indices, int n) {
    if (n < 1) fail("an image subset needs at least one image");
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

void image_set_split_holdout(const ImageSet *src, double fraction, uint64_t seed,
                             ImageSet *train, ImageSet *val) {
    if (!(fraction > 0.0 && fraction < 1.0)) fail("hold-out fraction must be in (0, 1), got %g", fraction);
    int n = src->count;
    uint8_t *in_val = calloc_or_fail((size_t)n, 1, "hold-out marks");
    int32_t *members = malloc_or_fail((size_t)n * sizeof(int32_t), "hold-out indices");
    Rng r;
    rng_seed(&r, seed);
    for (int k = 0; k < src->num_classes; k++) {
        int m = 0;
        for (int i = 0; i < n; i++) if (src->labels[i] == k) members[m++] = i;
        for (int i = m - 1; i > 0; i--) {
            int j = (int)rng_below(&r, (uint32_t)i + 1);
            int32_t t = members[i]; members[i] = members[j]; members[j] = t;
        }
        int take = (int)floor(fraction * m + 0.5);
        if (take > m - 1) take = m - 1;
        for (int i = 0; i < take; i++) in_val[members[i]] = 1;
    }
    int nv = 0, nt = 0;
    int32_t *vi = malloc_or_fail((size_t)n * sizeof(int32_t), "hold-out indices");
    for (int i = 0; i < n; i++) {
        if (in_val[i]) vi[nv++] = i;
        else members[nt++] = i;
    }
    if (nv == 0) fail("hold-out fraction %g of %d images leaves no validation images", fraction, n);
    image_set_subset(train, src, members, nt);
    image_set_subset(val, src, vi, nv);
    free(vi);
    free(members);
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
    return g;
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
    for (int k = 0; k < num_classes; k++) set_class_name(set, k, class_names[k], labels_path);

    // idx stores images row-major, which is CHW for one channel
    gz_read_exact(gi, set->pixels, (size_t)n * rows * cols, images_path);
    gz_expect_end(gi, images_path);
    gzclose(gi);

    uint8_t *raw = malloc_or_fail(n, "idx labels");
    gz_read_exact(gl, raw, n, labels_path);
    gz_expect_end(gl, labels_path);
    gzclose(gl);
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
    gzclose(gi);
    gzclose(gl);
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

// weights mapping the source window [a, a + len) of an axis of n pixels onto m
// output pixels: area averaging when shrinking, bilinear when growing
static void axis_weights(AxisWeights *aw, int n, double a, double len, int m) {
    double scale = len / m;
    aw->m = m;
    aw->max_taps = scale >= 1.0 ? (int)ceil(scale) + 2 : 2;
    aw->first = malloc_or_fail((size_t)m * sizeof(int), "resize taps");
    aw->ntaps = malloc_or_fail((size_t)m * sizeof(int), "resize taps");
    aw->w = calloc_or_fail((size_t)m * aw->max_taps, sizeof(float), "resize weights");
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

static void axis_weights_free(AxisWeights *aw) {
    free(aw->first); free(aw->ntaps); free(aw->w);
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

    // horizontal pass over the rows the vertical pass reads: tmp[src_h][dst_w][C]
    float *tmp = malloc_or_fail((size_t)src_h * dst_w * C * sizeof(float), "resize buffer");
    int y_lo = ay.first[0], y_hi = ay.first[dst_h - 1] + ay.ntaps[dst_h - 1] - 1;
    for (int y = y_lo; y <= y_hi; y++) {
        const uint8_t *row = src + (size_t)y * src_w * C;
        float *out = tmp + (size_t)y * dst_w * C;
        for (int ox = 0; ox < dst_w; ox++) {
            const float *w = ax.w + (size_t)ox * ax.max_taps;
            for (int c = 0; c < C; c++) {
                float acc = 0.0f;
                for (int k = 0; k < ax.ntaps[ox]; k++)
                    acc += w[k] * row[(size_t)(ax.first[ox] + k) * C + c];
                out[(size_t)ox * C + c] = acc;
            }
        }
    }
    for (int oy = 0; oy < dst_h; oy++) {
        const float *w = ay.w + (size_t)oy * ay.max_taps;
        for (int i = 0; i < dst_w * C; i++) {
            float acc = 0.0f;
            for (int k = 0; k < ay.ntaps[oy]; k++)
                acc += w[k] * tmp[(size_t)(ay.first[oy] + k) * dst_w * C + i];
            int v = (int)(acc + 0.5f);
            dst[(size_t)oy * dst_w * C + i] = (uint8_t)clamp_int(v, 0, 255);
        }
    }
    free(tmp);
    axis_weights_free(&ax);
    axis_weights_free(&ay);
}

// ---------------------------------------------------------------------------
// image folders

typedef struct {
    char **items;
    int n, cap;
} StrList;

static void strlist_push(StrList *l, const char *s) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->items = realloc(l->items, (size_t)l->cap * sizeof(char *));
        if (!l->items) fail("out of memory listing files");
    }
    size_t len = strlen(s) + 1;
    l->items[l->n] = malloc_or_fail(len, "file name");
    memcpy(l->items[l->n++], s, len);
}

static void strlist_free(StrList *l) {
    for (int i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof(*l));
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *path_join(const char *dir, const char *name) {
    size_t len = strlen(dir) + strlen(name) + 2;
    char *p = malloc_or_fail(len, "path");
    snprintf(p, len, "%s/%s", dir, name);
    return p;
}

static int has_image_extension(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    const char *ext = dot + 1;
    return !strcasecmp(ext, "png") || !strcasecmp(ext, "jpg") || !strcasecmp(ext, "jpeg") ||
           !strcasecmp(ext, "bmp");
}

// sorted names of the entries of dir that are directories (want_dirs) or
// image files, skipping dot-files
static void list_dir(StrList *out, const char *dir, int want_dirs) {
    DIR *d = opendir(dir);
    if (!d) fail("cannot open image folder %s: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *p = path_join(dir, e->d_name);
        struct stat st;
        int ok = stat(p, &st) == 0;
        free(p);
        if (!ok) continue; // a dangling symlink is not an image
        if (want_dirs ? S_ISDIR(st.st_mode) : (S_ISREG(st.st_mode) && has_image_extension(e->d_name)))
            strlist_push(out, e->d_name);
    }
    closedir(d);
    if (out->n > 1) qsort(out->items, (size_t)out->n, sizeof(char *), cmp_str);
}

// The largest image decode_image accepts, by the dimensions its header
// declares, checked before decoding: a few bytes can declare 25000 x 25000
// pixels and cost gigabytes (a decompression bomb).
static int max_image_side = IMAGE_DEFAULT_MAX_SIDE;
static int64_t max_image_pixels = IMAGE_DEFAULT_MAX_PIXELS;

void image_set_decode_limits(int max_side, int64_t max_pixels) {
    if (max_side < 1 || max_pixels < 1) fail("image decode limits must be positive (%d, %lld)", max_side, (long long)max_pixels);
    max_image_side = max_side;
    max_image_pixels = max_pixels;
}

// the whole file (a regular one) in memory; NULL with a message in err
static uint8_t *read_image_file(const char *path, size_t *size, char *err, size_t errlen) {
    int fd = open_regular_for_reading(path, err, errlen);
    if (fd < 0) return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "cannot read image %s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (st.st_size == 0 || st.st_size > INT_MAX) {
        snprintf(err, errlen, st.st_size ? "image %s is larger than 2 GiB" : "image %s is an empty file", path);
        close(fd);
        return NULL;
    }
    size_t n = (size_t)st.st_size, got = 0;
    uint8_t *buf = malloc(n);
    if (!buf) {
        snprintf(err, errlen, "out of memory reading image %s (%zu bytes)", path, n);
        close(fd);
        return NULL;
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) {
            snprintf(err, errlen, "cannot read image %s: %s", path, r < 0 ? strerror(errno) : "the file shrank");
            free(buf);
            close(fd);
            return NULL;
        }
        got += (size_t)r;
    }
    close(fd);
    *size = n;
    return buf;
}

// decode one image file into its CHW slot; on failure writes a message to err
// and returns 0
static int decode_image(const char *path, int channels, int height, int width, ResizeMode mode,
                        uint8_t *chw, char *err, size_t errlen) {
    size_t size;
    uint8_t *file = read_image_file(path, &size, err, errlen);
    if (!file) return 0;
    int w, h, n;
    if (!stbi_info_from_memory(file, (int)size, &w, &h, &n)) {
        snprintf(err, errlen, "cannot decode image %s: %s", path, stbi_failure_reason());
        free(file);
        return 0;
    }
    if (w > max_image_side || h > max_image_side) {
        snprintf(err, errlen, "image %s declares %dx%d pixels, more than the limit of %d per side "
                 "(--max-image-side raises it)", path, w, h, max_image_side);
        free(file);
        return 0;
    }
    if ((int64_t)w * h > max_image_pixels) {
        snprintf(err, errlen, "image %s declares %dx%d = %lld pixels, more than the limit of %lld "
                 "(--max-image-pixels raises it)", path, w, h, (long long)w * h, (long long)max_image_pixels);
        free(file);
        return 0;
    }
    uint8_t *img = stbi_load_from_memory(file, (int)size, &w, &h, &n, channels);
    free(file);
    if (!img) {
        snprintf(err, errlen, "cannot decode image %s: %s", path, stbi_failure_reason());
        return 0;
    }
    if (w <= 0 || h <= 0) {
        stbi_image_free(img);
        snprintf(err, errlen, "image %s has zero size", path);
        return 0;
    }
    uint8_t *hwc = malloc_or_fail((size_t)height * width * channels, "resized image");
    image_resize_hwc(img, w, h, channels, hwc, width, height, mode);
    stbi_image_free(img);
    for (int c = 0; c < channels; c++)
        for (int i = 0; i < height * width; i++)
            chw[(size_t)c * height * width + i] = hwc[(size_t)i * channels + c];
    free(hwc);
    return 1;
}

void image_set_load_folder(ImageSet *set, const char *root, int channels,
                           int height, int width, ResizeMode mode) {
    memset(set, 0, sizeof(*set));
    if (channels != 1 && channels != 3) fail("image channels must be 1 or 3, got %d", channels);
    if (height < 1 || width < 1 || height > IMAGE_MAX_SIDE || width > IMAGE_MAX_SIDE)
        fail("image size %d x %d is out of range (1..%d)", height, width, IMAGE_MAX_SIDE);

    StrList classes = {0};
    list_dir(&classes, root, 1);
    if (classes.n == 0) fail("image folder %s has no class subfolders", root);

    // every image path with its label, classes in order
    StrList paths = {0};
    int32_t *labels = NULL;
    for (int k = 0; k < classes.n; k++) {
        char *cdir = path_join(root, classes.items[k]);
        StrList files = {0};
        list_dir(&files, cdir, 0);
        if (files.n == 0) fail("class folder %s has no images (.png .jpg .jpeg .bmp)", cdir);
        labels = realloc(labels, (size_t)(paths.n + files.n) * sizeof(int32_t));
        if (!labels) fail("out of memory listing %s", cdir);
        for (int i = 0; i < files.n; i++) {
            char *p = path_join(cdir, files.items[i]);
            labels[paths.n] = k;
            strlist_push(&paths, p);
            free(p);
        }
        strlist_free(&files);
        free(cdir);
    }

    set->count = paths.n;
    set->channels = channels;
    set->height = height;
    set->width = width;
    set->num_classes = classes.n;
    image_set_alloc(set);
    for (int k = 0; k < classes.n; k++) set_class_name(set, k, classes.items[k], root);
    memcpy(set->labels, labels, (size_t)paths.n * sizeof(int32_t));
    free(labels);

    // decode in parallel; report the failing image with the lowest index so
    // the message does not depend on thread timing
    size_t bytes = image_set_image_bytes(set);
    int first_bad = set->count;
    char bad_msg[1400] = "";
    #pragma omp parallel for schedule(dynamic, 4)
    for (int i = 0; i < set->count; i++) {
        int skip;
        #pragma omp atomic read
        skip = first_bad;
        if (i > skip) continue;
        char err[1400];
        if (!decode_image(paths.items[i], channels, height, width, mode,
                          set->pixels + (size_t)i * bytes, err, sizeof(err))) {
            #pragma omp critical(image_decode_error)
            if (i < first_bad) {
                snprintf(bad_msg, sizeof(bad_msg), "%s", err);
                #pragma omp atomic write
                first_bad = i;
            }
        }
    }
    if (first_bad < set->count) fail("%s", bad_msg);
    strlist_free(&paths);
    strlist_free(&classes);
}

// ---------------------------------------------------------------------------
// shards

static void put_le32(uint8_t *b, uint32_t v) {
    b[0] = (uint8_t)v; b[1] = (uint8_t)(v >> 8); b[2] = (uint8_t)(v >> 16); b[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *b) {
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}

// CRC-32 of the payload: names, labels, pixels in file order
static uint32_t shard_crc(const ImageSet *set) {
    uLong crc = crc32_z(0L, Z_NULL, 0);
    crc = crc32_z(crc, (const Bytef *)set->class_names, (size_t)set->num_classes * IMAGE_CLASS_NAME_LEN);
    crc = crc32_z(crc, (const Bytef *)set->labels, (size_t)set->count * sizeof(int32_t));
    crc = crc32_z(crc, set->pixels, (size_t)set->count * image_set_image_bytes(set));
    return (uint32_t)crc;
}

void image_set_write_shard(const ImageSet *set, const char *path) {
    uint8_t hdr[IMAGE_SHARD_HEADER_BYTES] = {0};
    memcpy(hdr, IMAGE_SHARD_MAGIC, 8);
    put_le32(hdr + 8, IMAGE_SHARD_VERSION);
    put_le32(hdr + 12, (uint32_t)set->count);
    put_le32(hdr + 16, (uint32_t)set->height);
    put_le32(hdr + 20, (uint32_t)set->width);
    put_le32(hdr + 24, (uint32_t)set->channels);
    put_le32(hdr + 28, (uint32_t)set->num_classes);
    put_le32(hdr + 32, shard_crc(set));

    AtomicFile af;
    atomic_open(&af, path);
    fwrite_or_fail(hdr, 1, sizeof(hdr), af.f, af.tmp_path);
    fwrite_or_fail(set->class_names, IMAGE_CLASS_NAME_LEN, (size_t)set->num_classes, af.f, af.tmp_path);
    fwrite_or_fail(set->labels, sizeof(int32_t), (size_t)set->count, af.f, af.tmp_path);
    fwrite_or_fail(set->pixels, 1, (size_t)set->count * image_set_image_bytes(set), af.f, af.tmp_path);
    atomic_commit(&af);
}

// Open a shard and check its header against its size; set gets the sizes
// (nothing allocated), *crc the stored CRC, and the file is left at the data.
static FILE *shard_open(ImageSet *set, const char *path, uint32_t *crc_out) {
    memset(set, 0, sizeof(*set));
    FILE *f = fopen_or_fail(path, "rb");
    size_t size = file_size_or_fail(f, path);
    uint8_t hdr[IMAGE_SHARD_HEADER_BYTES];
    if (size < sizeof(hdr)) fail("%s is truncated (%zu bytes, the header alone is %d)", path, size, IMAGE_SHARD_HEADER_BYTES);
    fread_or_fail(hdr, 1, sizeof(hdr), f, path);
    if (memcmp(hdr, IMAGE_SHARD_MAGIC, 8) != 0) fail("%s is not an image shard (bad magic)", path);
    uint32_t version = get_le32(hdr + 8);
    if (version != IMAGE_SHARD_VERSION)
        fail("%s has image shard version %u, this build reads version %d", path, version, IMAGE_SHARD_VERSION);
    uint32_t count = get_le32(hdr + 12), height = get_le32(hdr + 16), width = get_le32(hdr + 20);
    uint32_t channels = get_le32(hdr + 24), num_classes = get_le32(hdr + 28), crc = get_le32(hdr + 32);
    if (count == 0 || count > INT_MAX) fail("%s has a bad image count %u", path, count);
    if (height == 0 || width == 0 || height > IMAGE_MAX_SIDE || width > IMAGE_MAX_SIDE)
        fail("%s has bad image dimensions %u x %u", path, height, width);
    if (channels != 1 && channels != 3) fail("%s has %u channels (expected 1 or 3)", path, channels);
    if (num_classes == 0 || num_classes > 1000000) fail("%s has a bad class count %u", path, num_classes);
    for (int i = 36; i < IMAGE_SHARD_HEADER_BYTES; i++)
        if (hdr[i] != 0) fail("%s has non-zero reserved header bytes", path);

    uint64_t expect = IMAGE_SHARD_HEADER_BYTES + (uint64_t)num_classes * IMAGE_CLASS_NAME_LEN
                    + (uint64_t)count * 4 + (uint64_t)count * channels * height * width;
    if (size < expect) fail("%s is truncated (%zu bytes, the header describes %llu)", path, size, (unsigned long long)expect);
    if (size > expect) fail("%s has %llu trailing bytes after the data its header describes", path,
                            (unsigned long long)(size - expect));

    set->count = (int)count;
    set->height = (int)height;
    set->width = (int)width;
    set->channels = (int)channels;
    set->num_classes = (int)num_classes;
    *crc_out = crc;
    return f;
}

void image_set_read_shard_header(ImageSet *set, const char *path) {
    uint32_t crc;
    fclose(shard_open(set, path, &crc));
}

void image_set_read_shard(ImageSet *set, const char *path) {
    uint32_t crc;
    FILE *f = shard_open(set, path, &crc);
    uint32_t count = (uint32_t)set->count, num_classes = (uint32_t)set->num_classes;
    image_set_alloc(set);
    fread_or_fail(set->class_names, IMAGE_CLASS_NAME_LEN, num_classes, f, path);
    fread_or_fail(set->labels, sizeof(int32_t), count, f, path);
    fread_or_fail(set->pixels, 1, (size_t)count * image_set_image_bytes(set), f, path);
    fclose_or_fail(f, path);

    if (shard_crc(set) != crc) fail("%s is corrupt (CRC-32 mismatch)", path);
    for (uint32_t k = 0; k < num_classes; k++)
        if (set->class_names[k][IMAGE_CLASS_NAME_LEN - 1] != 0)
            fail("%s: class name %u is not NUL-terminated", path, k);
    for (uint32_t i = 0; i < count; i++)
        if (set->labels[i] < 0 || set->labels[i] >= (int32_t)num_classes)
            fail("%s: label %d of image %u is out of range (%u classes)", path, set->labels[i], i, num_classes);
}

// ---------------------------------------------------------------------------
// statistics and flags

void image_set_channel_stats(const ImageSet *set, double *mean, double *std) {
    size_t plane = (size_t)set->height * set->width;
    for (int c = 0; c < set->channels; c++) {
        // exact integer sums: the order of addition cannot matter
        uint64_t s = 0, q = 0;
        #pragma omp parallel for reduction(+:s, q) schedule(static)
        for (int i = 0; i < set->count; i++) {
            const uint8_t *p = set->pixels + (size_t)i * image_set_image_bytes(set) + (size_t)c * plane;
            uint64_t si = 0, qi = 0;
            for (size_t j = 0; j < plane; j++) {
                si += p[j];
                qi += (uint32_t)p[j] * p[j];
            }
            s += si;
            q += qi;
        }
        double n = (double)set->count * (double)plane;
        double m = (double)s / n;
        double var = (double)q / n - m * m;
        mean[c] = m / 255.0;
        std[c] = sqrt(var > 0.0 ? var : 0.0) / 255.0;
    }
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
    if (l->shuffle) {
        Rng r;
        rng_seed(&r, l->seed);
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
    rng_seed(&l->aug_rng, l->seed ^ 0x6A09E667F3BCC909ull);
}

void image_loader_init(ImageLoader *l, const ImageSet *set, int B, uint64_t seed, int shuffle,
                       int crop_pad, int flip, const float *mean, const float *std) {
    memset(l, 0, sizeof(*l));
    if (B < 1) fail("batch size must be at least 1, got %d", B);
    if (set->channels < 1 || set->channels > IMAGE_MAX_CHANNELS) fail("image set has %d channels", set->channels);
    if (shuffle && B > set->count)
        fail("batch size %d is larger than the training set (%d images)", B, set->count);
    if (!shuffle && (crop_pad || flip))
        fail("evaluation batches are never augmented (crop padding %d, flip %d requested)", crop_pad, flip);
    if (crop_pad < 0 || crop_pad > set->height || crop_pad > set->width)
        fail("crop padding %d is out of range for %d x %d images", crop_pad, set->height, set->width);
    l->set = set;
    l->B = B;
    l->shuffle = shuffle;
    l->crop_pad = crop_pad;
    l->flip = flip;
    l->seed = seed;
    for (int c = 0; c < set->channels; c++) {
        if (!(std[c] > 0.0f) || !isfinite(std[c]) || !isfinite(mean[c]))
            fail("normalisation of channel %d needs a finite mean and std > 0 (got %g, %g)", c, mean[c], std[c]);
        for (int v = 0; v < 256; v++) l->lut[c][v] = ((float)v / 255.0f - mean[c]) / std[c];
    }
    // image_loader_resident_bytes counts these
    l->order = malloc_or_fail((size_t)set->count * sizeof(int32_t), "loader order");
    l->aug = calloc_or_fail((size_t)B * 3, sizeof(int32_t), "loader augmentation draws");
    image_loader_reset(l);
}

size_t image_loader_resident_bytes(int count, int B) {
    return (size_t)count * sizeof(int32_t) + (size_t)B * 3 * sizeof(int32_t);
}

void image_loader_reset(ImageLoader *l) {
    l->epoch = 0;
    l->pos = 0;
    loader_seed_aug(l);
    loader_make_order(l, 0);
}

int64_t image_loader_batches_per_epoch(const ImageLoader *l) {
    int64_t n = l->set->count;
    return l->shuffle ? n / l->B : (n + l->B - 1) / l->B;
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

// one image of the batch: crop offsets (dy, dx) into the zero-padded image,
// then an optional mirror; out is [C][H][W]
static void fill_image(const ImageLoader *l, const uint8_t *src, int dy, int dx, int flip, float *out) {
    const ImageSet *s = l->set;
    int H = s->height, W = s->width, k = l->crop_pad;
    for (int c = 0; c < s->channels; c++) {
        const float *lut = l->lut[c];
        const uint8_t *plane = src + (size_t)c * H * W;
        float *o = out + (size_t)c * H * W;
        for (int y = 0; y < H; y++) {
            int sy = y + dy - k;
            float *orow = o + (size_t)y * W;
            if (sy < 0 || sy >= H) {
                for (int x = 0; x < W; x++) orow[x] = lut[0];
                continue;
            }
            const uint8_t *srow = plane + (size_t)sy * W;
            for (int x = 0; x < W; x++) {
                int sx = (flip ? W - 1 - x : x) + dx - k;
                orow[x] = (sx >= 0 && sx < W) ? lut[srow[sx]] : lut[0];
            }
        }
    }
}

int image_loader_next(ImageLoader *l, float *images, int *labels) {
    const ImageSet *s = l->set;
    size_t bytes = image_set_image_bytes(s);
    int n;
    if (l->shuffle) {
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

    // draw augmentation sequentially so the stream is thread-independent
    for (int b = 0; b < n; b++) {
        int32_t *a = l->aug + 3 * b;
        a[0] = a[1] = l->crop_pad;  // centred: no shift
        a[2] = 0;
        if (l->crop_pad > 0) {
            a[0] = (int32_t)rng_below(&l->aug_rng, 2u * l->crop_pad + 1);
            a[1] = (int32_t)rng_below(&l->aug_rng, 2u * l->crop_pad + 1);
        }
        if (l->flip) a[2] = rng_uniform(&l->aug_rng) < 0.5f;
    }
    const int32_t *order = l->order + l->pos;
    #pragma omp parallel for schedule(static) if ((size_t)n * bytes >= (1u << 16))
    for (int b = 0; b < n; b++) {
        int idx = order[b];
        const int32_t *a = l->aug + 3 * b;
        fill_image(l, s->pixels + (size_t)idx * bytes, a[0], a[1], a[2], images + (size_t)b * bytes);
        labels[b] = s->labels[idx];
    }
    if (n < l->B) {
        memset(images + (size_t)n * bytes, 0, (size_t)(l->B - n) * bytes * sizeof(float));
        for (int b = n; b < l->B; b++) labels[b] = -1;
    }
    l->pos += n;
    return n;
}

void image_loader_free(ImageLoader *l) {
    free(l->order);
    free(l->aug);
    memset(l, 0, sizeof(*l));
}
