// Image folders (root/<class>/<image>), decoded with stb_image: what only
// prepare_images (and the tests) need, apart from data/images.c so that the
// trainer links neither the folder code nor stb_image. The API is declared
// in data/images.h ("image folders").
#include "data/images.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
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
//  - its allocations are zeroed, so that a decoder reading memory it never
//    wrote reads zeros, the same on every run (its JPEG decoder, no longer
//    used, decoded a scan with an undefined Huffman table from the heap's leftovers)
//  - only PNG and BMP: the decoders of the others (GIF, PSD, TGA, HDR, PIC,
//    PNM) are attack surface we do not use, and JPEGs go to libjpeg (below).
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
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
#include <jpeglib.h> // after stdio.h, which it needs

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

// A PNG's image data is the concatenation of its IDAT chunks, so an IDAT of
// length zero carries nothing and may be dropped. Debian's stb_image must not
// see one first: with no data buffer yet it copies the zero bytes to NULL + 0
// (undefined behaviour, reported by UBSan; found by fuzz_image_file, kept in
// fuzz/regressions/image_file/). Removes every empty IDAT chunk in place (its
// length and type, and its CRC unless the file ends first: stb reads a chunk
// before its CRC), leaves all other bytes as they were, and returns the new
// size. Chunks after one that runs past the end are left to stb.
static size_t png_drop_empty_idat(uint8_t *file, size_t size) {
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (size < 8 || memcmp(file, signature, 8)) return size;
    size_t pos = 8; // start of a chunk: length (4 bytes, big-endian), type (4), data, CRC (4)
    while (size - pos >= 8) {
        uint32_t len = (uint32_t)file[pos] << 24 | (uint32_t)file[pos + 1] << 16 | (uint32_t)file[pos + 2] << 8 |
                       file[pos + 3];
        if (len == 0 && !memcmp(file + pos + 4, "IDAT", 4)) {
            size_t drop = size - pos < 12 ? size - pos : 12;
            memmove(file + pos, file + pos + drop, size - pos - drop);
            size -= drop;
        } else if ((size_t)len + 4 > size - pos - 8) {
            break;
        } else {
            pos += 12 + (size_t)len;
        }
    }
    return size;
}

// stb_image's reason for refusing a file, fit for one line: for an unknown
// critical PNG chunk stb gives the chunk's 4-byte type itself, which may be
// empty or hold control characters (a newline, say)
static const char *stb_reason(void) {
    const char *reason = stbi_failure_reason();
    if (!reason || !*reason) return "corrupt or truncated file";
    for (const char *p = reason; *p; p++)
        if (*p < 0x20 || *p > 0x7E) return "an unknown critical PNG chunk";
    return reason;
}

// 0 with a message in err if an image's declared size is over the limits
static int declared_size_ok(const char *path, long long w, long long h, char *err, size_t errlen) {
    if (w > max_image_side || h > max_image_side) {
        snprintf(err, errlen, "image %s declares %lldx%lld pixels, more than the limit of %d per side "
                 "(--max-image-side raises it)", path, w, h, max_image_side);
        return 0;
    }
    if (w * h > max_image_pixels) {
        snprintf(err, errlen, "image %s declares %lldx%lld = %lld pixels, more than the limit of %lld "
                 "(--max-image-pixels raises it)", path, w, h, w * h, (long long)max_image_pixels);
        return 0;
    }
    return 1;
}

// JPEGs are decoded by libjpeg-turbo (Debian's libjpeg62-turbo), not by
// stb_image: the JPEG decoder of Debian's stb (2.27) let a Huffman table of
// more than 256 codes write past its array, decoded a scan with a table no DHT
// segment defined, and on a truncated scan ran its bit count negative and
// shifted by more than 31 bits (all found by fuzz_image_file, the inputs kept
// in fuzz/regressions/image_file/); the last cannot be ruled out without
// decoding the scan. libjpeg's fatal errors come back here through a longjmp
// (jpeg_error_exit); its warnings about corrupt data are not printed and the
// image decodes as libjpeg leaves it, as PIL and torchvision do.
typedef struct {
    struct jpeg_error_mgr mgr; // first: libjpeg hands back a pointer to it
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX + 64];
} JpegErrors;

static void jpeg_error_exit(j_common_ptr cinfo) {
    JpegErrors *e = (JpegErrors *)cinfo->err;
    e->mgr.format_message(cinfo, e->message);
    longjmp(e->jump, 1);
}

static void jpeg_no_output(j_common_ptr cinfo) { (void)cinfo; }

// Each scan of a progressive JPEG is a pass over the whole image, and nothing
// bounds their number: a small file could keep the decoder busy for minutes.
// Real encoders write about 10 (libjpeg-turbo's own tools stop at 500).
#define JPEG_MAX_SCANS 500
static void jpeg_count_scans(j_common_ptr cinfo) {
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > JPEG_MAX_SCANS) {
        JpegErrors *e = (JpegErrors *)cinfo->err;
        snprintf(e->message, sizeof(e->message), "more than %d progressive scans", JPEG_MAX_SCANS);
        longjmp(e->jump, 1);
    }
}

// a JPEG file as `channels` (1 or 3) interleaved 8-bit components, HWC in a
// malloc'd buffer, its size in *w, *h; NULL with a message in err. CMYK
// (Adobe's inverted storage, as libjpeg returns it) becomes RGB as
// R = C K / 255 and so on; grey is libjpeg's luma Y (or, from CMYK, stb's
// (77 R + 150 G + 29 B) / 256).
static uint8_t *decode_jpeg(const uint8_t *file, size_t size, const char *path, int channels, int *w, int *h,
                            char *err, size_t errlen) {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_progress_mgr progress = {.progress_monitor = jpeg_count_scans};
    JpegErrors errors;
    uint8_t *volatile pixels = NULL, *volatile row = NULL; // volatile: read after the longjmp
    cinfo.err = jpeg_std_error(&errors.mgr);
    errors.mgr.error_exit = jpeg_error_exit;
    errors.mgr.output_message = jpeg_no_output;
    if (setjmp(errors.jump)) {
        // a size over the limits is said first, also when the file breaks off
        // after its SOF segment (libjpeg's header reading wants an SOS too);
        // jpeg_create_decompress zeroed the size
        if (!cinfo.image_width || declared_size_ok(path, cinfo.image_width, cinfo.image_height, err, errlen))
            snprintf(err, errlen, "cannot decode image %s: %s", path, errors.message);
        free(pixels);
        free(row);
        jpeg_destroy_decompress(&cinfo);
        return NULL;
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &progress;
    jpeg_mem_src(&cinfo, file, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if (!declared_size_ok(path, cinfo.image_width, cinfo.image_height, err, errlen)) {
        jpeg_destroy_decompress(&cinfo);
        return NULL;
    }
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    size_t width = cinfo.output_width, height = cinfo.output_height, comps = (size_t)cinfo.output_components;
    pixels = malloc(width * height * (size_t)channels);
    row = malloc(width * comps);
    if (!pixels || !row) {
        snprintf(errors.message, sizeof(errors.message), "out of memory for %zux%zu pixels", width, height);
        longjmp(errors.jump, 1);
    }
    while (cinfo.output_scanline < height) {
        uint8_t *out = pixels + (size_t)cinfo.output_scanline * width * channels;
        JSAMPROW rows[1] = {row};
        jpeg_read_scanlines(&cinfo, rows, 1);
        if (!cmyk) {
            memcpy(out, row, width * comps); // comps == channels
            continue;
        }
        for (size_t x = 0; x < width; x++) {
            const uint8_t *p = row + 4 * x;
            int r = p[0] * p[3] / 255, g = p[1] * p[3] / 255, b = p[2] * p[3] / 255;
            if (channels == 3) {
                out[3 * x] = (uint8_t)r;
                out[3 * x + 1] = (uint8_t)g;
                out[3 * x + 2] = (uint8_t)b;
            } else {
                out[x] = (uint8_t)((r * 77 + g * 150 + b * 29) >> 8);
            }
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    *w = (int)width;
    *h = (int)height;
    return pixels;
}

// decode one image file into its CHW slot; on failure writes a message to err
// and returns 0
static int decode_image(const char *path, int channels, int height, int width, ResizeMode mode,
                        uint8_t *chw, char *err, size_t errlen) {
    size_t size;
    uint8_t *file = read_image_file(path, &size, err, errlen);
    if (!file) return 0;
    int w, h, n;
    uint8_t *img;
    if (size >= 2 && file[0] == 0xFF && file[1] == 0xD8) { // a JPEG's SOI marker
        img = decode_jpeg(file, size, path, channels, &w, &h, err, errlen);
        free(file);
        if (!img) return 0;
    } else {
        size = png_drop_empty_idat(file, size);
        if (!stbi_info_from_memory(file, (int)size, &w, &h, &n)) {
            snprintf(err, errlen, "cannot decode image %s: %s", path, stb_reason());
            free(file);
            return 0;
        }
        // stb's BMP header reading gives a top-down BMP's height negative: the
        // limits hold for its size (the fuzzer's -48769 passed them, 8.7M pixels)
        if (!declared_size_ok(path, llabs(w), llabs(h), err, errlen)) {
            free(file);
            return 0;
        }
        img = stbi_load_from_memory(file, (int)size, &w, &h, &n, channels);
        free(file);
        if (!img) {
            snprintf(err, errlen, "cannot decode image %s: %s", path, stb_reason());
            return 0;
        }
    }
    if (w <= 0 || h <= 0) {
        free(img); // from decode_jpeg or stb (STBI_FREE is free)
        snprintf(err, errlen, "image %s has zero size", path);
        return 0;
    }
    uint8_t *hwc = malloc_or_fail((size_t)height * width * channels, "resized image");
    image_resize_hwc(img, w, h, channels, hwc, width, height, mode);
    free(img);
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
