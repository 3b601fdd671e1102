// Image folders (root/<class>/<image>), decoded with stb_image: what only
// prepare_images (and the tests) need, apart from data/images.c so that the
// trainer links neither the folder code nor stb_image. The API is declared
// in data/images.h ("image folders").
#include "data/images.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/utils.h"

// stb_image is compiled here, static, from Debian's header (libstb-dev's
// stb/stb_image.h), not linked from libstb.so, for two settings the library
// cannot take at run time:
//  - its allocations are zeroed: a JPEG whose scan names a Huffman table that
//    no DHT segment defines was decoded with a table of whatever the heap held,
//    which failed an assert (abort) or read out of bounds, depending on the
//    heap (found by fuzz/fuzz_image_file; the inputs are in
//    fuzz/regressions/image_file/). A zeroed table decodes such a scan to a
//    flat image, the same on every run.
//  - only PNG, JPEG and BMP, the formats an image folder holds: the decoders
//    of the others (GIF, PSD, TGA, HDR, PIC, PNM) are attack surface we do not use.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#define STBI_MALLOC(bytes) calloc(1, (bytes))
#define STBI_REALLOC(p, bytes) realloc((p), (bytes))
#define STBI_FREE(p) free(p)
// (its API, declared static, is more than we use: gcc reports the unused
// functions at the end of the file, so that warning stays off for all of it)
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

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

// timm's natural_key order (see images.h). A name is text, then (digits,
// text) repeated; each text run may be empty.
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }

int image_name_natural_cmp(const char *a, const char *b) {
    const unsigned char *p = (const unsigned char *)a, *q = (const unsigned char *)b;
    for (;;) {
        // text runs: lower-cased bytes; a run that is a prefix of the other comes first
        while (*p && !is_digit(*p) && *q && !is_digit(*q)) {
            if (lower(*p) != lower(*q)) return lower(*p) < lower(*q) ? -1 : 1;
            p++, q++;
        }
        int p_text = *p && !is_digit(*p), q_text = *q && !is_digit(*q);
        if (p_text != q_text) return p_text ? 1 : -1; // the other's run ended first
        // both runs ended: at the end of the name, or at a digit run
        if (!*p || !*q) {
            if (*p || *q) return *p ? 1 : -1; // the shorter key comes first
            break;
        }
        // digit runs compare by value: without leading zeros, longer is larger
        while (*p == '0' && is_digit(p[1])) p++;
        while (*q == '0' && is_digit(q[1])) q++;
        size_t np = 0, nq = 0;
        while (is_digit(p[np])) np++;
        while (is_digit(q[nq])) nq++;
        if (np != nq) return np < nq ? -1 : 1;
        int c = memcmp(p, q, np);
        if (c) return c < 0 ? -1 : 1;
        p += np, q += nq;
    }
    int c = strcmp(a, b); // equal keys: a fixed order all the same
    return c < 0 ? -1 : (c > 0);
}

static int cmp_natural(const void *a, const void *b) {
    return image_name_natural_cmp(*(char *const *)a, *(char *const *)b);
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
    if (out->n > 1) qsort(out->items, (size_t)out->n, sizeof(char *), cmp_natural);
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

// Debian's stb_image builds a JPEG Huffman table from its 16 code counts
// without checking that they add up to at most 256, the table's size: a DHT
// segment declaring more writes past the table, over the decoder's state
// (found by fuzz/fuzz_image_file). So before stb sees a JPEG, every DHT
// segment it would read is checked here, walking the file as stb does:
// segments skipped by their length, and between them (scan data, junk) each
// 0xFF followed by a marker byte taken as the next marker (0xFF00 is stuffing,
// RSTn and fill bytes carry no length). Returns 0 with a message in err for
// a table of more than 256 codes; anything else is left to stb.
static int jpeg_huffman_counts_ok(const uint8_t *b, size_t n, const char *path, char *err, size_t errlen) {
    size_t i = 2; // after SOI
    while (i + 1 < n) {
        if (b[i] != 0xFF || b[i + 1] == 0xFF) { i++; continue; } // data, junk, fill bytes
        uint8_t m = b[i + 1];
        if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8)) { i += 2; continue; } // stuffing, TEM, RSTn, SOI
        if (m == 0xD9 || i + 4 > n) break; // EOI
        size_t len = (size_t)b[i + 2] << 8 | b[i + 3];
        if (m == 0xC4) { // DHT: tables of a class/id byte, 16 counts, then the values
            long left = (long)len - 2;
            size_t p = i + 4;
            while (left > 0 && p < n) {
                int codes = 0; // stb reads a byte past the end as 0
                for (int k = 1; k <= 16 && p + k < n; k++) codes += b[p + k];
                if (codes > 256) {
                    snprintf(err, errlen, "image %s: a JPEG Huffman table at byte %zu declares %d codes, more than the 256 "
                             "a table holds (a corrupt or crafted file)", path, p, codes);
                    return 0;
                }
                p += 17 + (size_t)codes;
                left -= 17 + codes;
            }
        }
        i += 2 + len;
    }
    return 1;
}

// decode one image file into its CHW slot; on failure writes a message to err
// and returns 0
static int decode_image(const char *path, int channels, int height, int width, ResizeMode mode,
                        uint8_t *chw, char *err, size_t errlen) {
    size_t size;
    uint8_t *file = read_image_file(path, &size, err, errlen);
    if (!file) return 0;
    if (size >= 2 && file[0] == 0xFF && file[1] == 0xD8 && !jpeg_huffman_counts_ok(file, size, path, err, errlen)) {
        free(file);
        return 0;
    }
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

static void check_folder_image_format(int channels, int height, int width) {
    if (channels != 1 && channels != 3) fail("image channels must be 1 or 3, got %d", channels);
    if (height < 1 || width < 1 || height > IMAGE_MAX_SIDE || width > IMAGE_MAX_SIDE)
        fail("image size %d x %d is out of range (1..%d)", height, width, IMAGE_MAX_SIDE);
}

void image_folder_list(ImageFolderList *list, const char *root) {
    memset(list, 0, sizeof(*list));
    StrList classes = {0};
    list_dir(&classes, root, 1);
    if (classes.n == 0) fail("image folder %s has no class subfolders", root);
    list->class_names = calloc_or_fail((size_t)classes.n, IMAGE_CLASS_NAME_LEN, "class names");
    for (int k = 0; k < classes.n; k++) image_set_class_name(list->class_names, k, classes.items[k], root);
    list->num_classes = classes.n;

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
    strlist_free(&classes);
    list->count = paths.n;
    list->paths = paths.items;
    list->labels = labels;
}

void image_folder_list_free(ImageFolderList *list) {
    for (int i = 0; i < list->count; i++) free(list->paths[i]);
    free(list->paths);
    free(list->labels);
    free(list->class_names);
    memset(list, 0, sizeof(*list));
}

void image_folder_decode(const ImageFolderList *list, const int32_t *indices, int n, int channels,
                         int height, int width, ResizeMode mode, uint8_t *pixels) {
    check_folder_image_format(channels, height, width);
    // decode in parallel; report the failing image with the lowest index so
    // the message does not depend on thread timing
    size_t bytes = (size_t)channels * height * width;
    int first_bad = n;
    char bad_msg[1400] = "";
    #pragma omp parallel for schedule(dynamic, 4)
    for (int i = 0; i < n; i++) {
        int skip;
        #pragma omp atomic read
        skip = first_bad;
        if (i > skip) continue;
        int idx = indices ? indices[i] : i;
        char err[1400];
        if (idx < 0 || idx >= list->count) {
            snprintf(err, sizeof(err), "internal: image %d of a folder of %d", idx, list->count);
        } else if (decode_image(list->paths[idx], channels, height, width, mode, pixels + (size_t)i * bytes,
                                err, sizeof(err))) {
            continue;
        }
        #pragma omp critical(image_decode_error)
        if (i < first_bad) {
            snprintf(bad_msg, sizeof(bad_msg), "%s", err);
            #pragma omp atomic write
            first_bad = i;
        }
    }
    if (first_bad < n) fail("%s", bad_msg);
}

void image_set_load_folder(ImageSet *set, const char *root, int channels,
                           int height, int width, ResizeMode mode) {
    memset(set, 0, sizeof(*set));
    check_folder_image_format(channels, height, width);
    ImageFolderList list;
    image_folder_list(&list, root);
    set->count = list.count;
    set->channels = channels;
    set->height = height;
    set->width = width;
    set->num_classes = list.num_classes;
    image_set_alloc(set);
    memcpy(set->class_names, list.class_names, (size_t)list.num_classes * IMAGE_CLASS_NAME_LEN);
    memcpy(set->labels, list.labels, (size_t)list.count * sizeof(int32_t));
    image_folder_decode(&list, NULL, list.count, channels, height, width, mode, set->pixels);
    image_folder_list_free(&list);
}
