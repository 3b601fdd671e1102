// prepare_images: turn an image folder or Fashion-MNIST into image shards
// (format in data/images.h), so training reads one flat file instead of
// decoding images every epoch.
//
//   ./prepare_images --fashion-mnist --out data/fmnist
//   ./prepare_images --root ~/imagenette --size 64 --channels 3 --out data/imagenette
//
// Splits: the source has a training split (root/train, or root itself when it
// has no train/ subfolder, or Fashion-MNIST's train files) and maybe a
// held-out split (root/val, else root/test, or Fashion-MNIST's t10k files).
// Outputs in --out: train.bin, and val.bin from the held-out split. With
// --val-fraction F, val.bin is instead a stratified F of the training split
// and the held-out split, if any, goes to test.bin.
//
// An image folder is listed first (classes in timm's natural order, see
// images.h), then decoded and written a chunk of images at a time: memory
// stays bounded (the paths, the labels and one chunk) whatever the folder's
// size, so ImageNet's 193 GB at 224 x 224 needs no more RAM than a small set.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/utils.h"
#include "data/images.h"

static void usage(void) {
    printf(
        "usage: ./prepare_images (--fashion-mnist | --root DIR) --out DIR [options]\n"
        "\n"
        "  --fashion-mnist      use Fashion-MNIST from %s\n"
        "  --fmnist-dir DIR     ... from DIR instead (implies --fashion-mnist)\n"
        "  --root DIR           image folder: DIR/<class>/*.png|jpg|jpeg|bmp, or\n"
        "                       DIR/train/<class>/... with DIR/val (or DIR/test) beside it\n"
        "  --out DIR            output directory (created if missing): train.bin, val.bin, test.bin\n"
        "  --size N | HxW       output image size for folders (default 32)\n"
        "  --channels 1|3       output channels for folders (default 3)\n"
        "  --resize crop|stretch  keep aspect and centre-crop (default), or stretch\n"
        "  --val-fraction F     hold out a stratified fraction F of train as val.bin\n"
        "                       (the source's own held-out split then becomes test.bin)\n"
        "  --seed N             seed of the hold-out draw (default 1)\n"
        "  --max-image-side N   refuse images whose header declares a side above N pixels\n"
        "                       (default %d), before decoding them\n"
        "  --max-image-pixels N ... or more than N pixels in all (default %lld)\n"
        "  -h, --help           this text\n",
        FASHION_MNIST_DIR, IMAGE_DEFAULT_MAX_SIDE, IMAGE_DEFAULT_MAX_PIXELS);
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void parse_size_or_fail(const char *text, int *h, int *w) {
    long hh, ww;
    const char *x = strchr(text, 'x');
    if (!x) {
        hh = ww = parse_long_or_fail(text, "--size");
    } else {
        char first[32];
        size_t n = (size_t)(x - text);
        if (n == 0 || n >= sizeof(first)) fail("--size: expected N or HxW, got '%s'", text);
        memcpy(first, text, n);
        first[n] = '\0';
        hh = parse_long_or_fail(first, "--size");
        ww = parse_long_or_fail(x + 1, "--size");
    }
    if (hh < 1 || ww < 1 || hh > IMAGE_MAX_SIDE || ww > IMAGE_MAX_SIDE)
        fail("--size: each side must be in 1..%d, got '%s'", IMAGE_MAX_SIDE, text);
    *h = (int)hh;
    *w = (int)ww;
}

// the class counts of a split
static void report(const char *name, const int32_t *labels, int count, const char (*names)[IMAGE_CLASS_NAME_LEN],
                   int num_classes, int channels, int height, int width) {
    int *per_class = calloc_or_fail((size_t)num_classes, sizeof(int), "class counts");
    for (int i = 0; i < count; i++) per_class[labels[i]]++;
    printf("%s: %d images, %d x %d x %d (CHW), %d classes\n", name, count, channels, height, width, num_classes);
    for (int k = 0; k < num_classes; k++)
        printf("  %4d %-24s %d\n", k, names[k], per_class[k]);
    free(per_class);
}

static void report_set(const char *name, const ImageSet *s) {
    report(name, s->labels, s->count, (const char (*)[IMAGE_CLASS_NAME_LEN])s->class_names, s->num_classes,
           s->channels, s->height, s->width);
}

static void split_path(char *path, size_t len, const char *out_dir, const char *file) {
    if (snprintf(path, len, "%s/%s", out_dir, file) >= (int)len) fail("--out: path too long: %s", out_dir);
}

static void write_split(const char *out_dir, const char *file, const ImageSet *s) {
    char path[1024];
    split_path(path, sizeof(path), out_dir, file);
    image_set_write_shard(s, path);
    printf("wrote %s\n", path);
}

// The images indices[0..n) of a listed folder into the shard out_dir/file, a
// chunk at a time (at most 256 images or 64 MiB); mean and std get the
// written images' statistics.
static void write_folder_split(const char *out_dir, const char *file, const char *name, const ImageFolderList *list,
                               const int32_t *indices, int n, int channels, int height, int width, ResizeMode mode,
                               double *mean, double *std) {
    char path[1024];
    split_path(path, sizeof(path), out_dir, file);
    int32_t *labels = malloc_or_fail((size_t)n * sizeof(int32_t), "labels");
    for (int i = 0; i < n; i++) labels[i] = list->labels[indices[i]];
    report(name, labels, n, (const char (*)[IMAGE_CLASS_NAME_LEN])list->class_names, list->num_classes, channels,
           height, width);
    size_t bytes = (size_t)channels * height * width;
    int chunk = (int)((64u << 20) / bytes);
    if (chunk > 256) chunk = 256;
    if (chunk < 1) chunk = 1;
    uint8_t *buf = malloc_or_fail((size_t)chunk * bytes, "decoded images");
    ImageShardWriter w;
    image_shard_writer_open(&w, path, n, channels, height, width, list->num_classes,
                            (const char (*)[IMAGE_CLASS_NAME_LEN])list->class_names, labels);
    double t0 = now_seconds(), shown = t0;
    for (int i = 0; i < n; i += chunk) {
        int m = n - i < chunk ? n - i : chunk;
        image_folder_decode(list, indices + i, m, channels, height, width, mode, buf);
        image_shard_writer_put(&w, buf, m);
        if (now_seconds() - shown > 10.0) {
            shown = now_seconds();
            printf("  %s: %d of %d images (%.0f/s)\n", file, i + m, n, (i + m) / (shown - t0));
            fflush(stdout);
        }
    }
    image_shard_writer_close(&w, mean, std);
    free(buf);
    free(labels);
    printf("wrote %s\n", path);
}

static int32_t *all_indices(int n) {
    int32_t *idx = malloc_or_fail((size_t)n * sizeof(int32_t), "indices");
    for (int i = 0; i < n; i++) idx[i] = i;
    return idx;
}

static void same_classes_or_fail(const ImageFolderList *a, const ImageFolderList *b, const char *a_dir,
                                 const char *b_dir) {
    int same = a->num_classes == b->num_classes;
    for (int k = 0; same && k < a->num_classes; k++) same = strcmp(a->class_names[k], b->class_names[k]) == 0;
    if (!same) fail("%s and %s have different class folders; they must match for labels to agree", a_dir, b_dir);
}

static void print_stats(const double *mean, const double *std, int channels) {
    // normalisation statistics come from the training images only
    printf("train per-channel mean (pixel/255):");
    for (int c = 0; c < channels; c++) printf("%s%.6f", c ? "," : " ", mean[c]);
    printf("\ntrain per-channel std  (pixel/255):");
    for (int c = 0; c < channels; c++) printf("%s%.6f", c ? "," : " ", std[c]);
    printf("\n");
}

// Fashion-MNIST (60000 + 10000 small images) is loaded whole, as before
static void prepare_fashion_mnist(const char *fmnist_dir, const char *out, double val_fraction, uint64_t seed) {
    double t0 = now_seconds();
    ImageSet train = {0}, held = {0};
    image_set_load_fashion_mnist(&train, fmnist_dir, "train");
    image_set_load_fashion_mnist(&held, fmnist_dir, "test");
    printf("loaded in %.2f s\n", now_seconds() - t0);
    if (val_fraction > 0.0) {
        ImageSet tr, va;
        image_set_split_holdout(&train, val_fraction, seed, &tr, &va);
        image_set_free(&train);
        report_set("train", &tr);
        report_set("val (held out of train)", &va);
        write_split(out, "train.bin", &tr);
        write_split(out, "val.bin", &va);
        report_set("test (t10k)", &held);
        write_split(out, "test.bin", &held);
        train = tr;
        image_set_free(&va);
    } else {
        report_set("train", &train);
        write_split(out, "train.bin", &train);
        report_set("test (t10k)", &held);
        write_split(out, "val.bin", &held);
    }
    double mean[IMAGE_MAX_CHANNELS], std[IMAGE_MAX_CHANNELS];
    image_set_channel_stats(&train, mean, std);
    print_stats(mean, std, train.channels);
    image_set_free(&train);
    image_set_free(&held);
}

static void prepare_folder(const char *root, const char *out, int channels, int height, int width, ResizeMode mode,
                           double val_fraction, uint64_t seed) {
    double t0 = now_seconds();
    size_t len = strlen(root) + 8;
    char *train_dir = malloc_or_fail(len, "path"), *held_dir = malloc_or_fail(len, "path");
    const char *held_name = "val";
    ImageFolderList train, held = {0};
    int have_held = 0;
    snprintf(train_dir, len, "%s/train", root);
    if (is_dir(train_dir)) {
        image_folder_list(&train, train_dir);
        snprintf(held_dir, len, "%s/val", root);
        if (!is_dir(held_dir)) { snprintf(held_dir, len, "%s/test", root); held_name = "test"; }
        if (is_dir(held_dir)) {
            image_folder_list(&held, held_dir);
            same_classes_or_fail(&train, &held, train_dir, held_dir);
            have_held = 1;
        }
    } else {
        image_folder_list(&train, root);
    }
    printf("listed %d images", train.count);
    if (have_held) printf(" and %d in %s", held.count, held_name);
    printf(" in %.2f s\n", now_seconds() - t0);

    double mean[IMAGE_MAX_CHANNELS], std[IMAGE_MAX_CHANNELS];
    if (val_fraction > 0.0) {
        uint8_t *in_val = malloc_or_fail((size_t)train.count, "hold-out marks");
        int nv = image_holdout_marks(train.labels, train.count, train.num_classes, val_fraction, seed, in_val);
        int32_t *ti = malloc_or_fail((size_t)train.count * sizeof(int32_t), "indices");
        int32_t *vi = malloc_or_fail((size_t)nv * sizeof(int32_t), "indices");
        int nt = 0, k = 0;
        for (int i = 0; i < train.count; i++) {
            if (in_val[i]) vi[k++] = i;
            else ti[nt++] = i;
        }
        write_folder_split(out, "train.bin", "train", &train, ti, nt, channels, height, width, mode, mean, std);
        write_folder_split(out, "val.bin", "val (held out of train)", &train, vi, nv, channels, height, width, mode,
                           NULL, NULL);
        if (have_held) {
            int32_t *hi = all_indices(held.count);
            write_folder_split(out, "test.bin", held_name, &held, hi, held.count, channels, height, width, mode,
                               NULL, NULL);
            free(hi);
        }
        free(ti);
        free(vi);
        free(in_val);
    } else {
        int32_t *idx = all_indices(train.count);
        write_folder_split(out, "train.bin", "train", &train, idx, train.count, channels, height, width, mode, mean,
                           std);
        free(idx);
        if (have_held) {
            idx = all_indices(held.count);
            write_folder_split(out, "val.bin", held_name, &held, idx, held.count, channels, height, width, mode,
                               NULL, NULL);
            free(idx);
        }
    }
    printf("prepared in %.2f s\n", now_seconds() - t0);
    print_stats(mean, std, channels);
    image_folder_list_free(&train);
    if (have_held) image_folder_list_free(&held);
    free(train_dir);
    free(held_dir);
}

int main(int argc, char **argv) {
    const char *root = NULL, *out = NULL, *fmnist_dir = NULL;
    int fmnist = 0, height = 32, width = 32, channels = 3, folder_opts = 0;
    ResizeMode mode = RESIZE_CROP;
    double val_fraction = 0.0;
    uint64_t seed = 1;
    int max_side = IMAGE_DEFAULT_MAX_SIDE;
    long long max_pixels = IMAGE_DEFAULT_MAX_PIXELS;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        if (!strcmp(a, "--fashion-mnist")) { fmnist = 1; continue; }
        // every other flag takes a value
        static const char *const with_value[] = {"--fmnist-dir", "--root", "--out", "--size", "--channels",
                                                 "--resize", "--val-fraction", "--seed", "--max-image-side",
                                                 "--max-image-pixels"};
        int known = 0;
        for (size_t k = 0; k < sizeof(with_value) / sizeof(with_value[0]); k++) known |= !strcmp(a, with_value[k]);
        if (!known) {
            if (a[0] == '-') fail("unknown flag %s (see ./prepare_images -h)", a);
            fail("unexpected argument '%s' (see ./prepare_images -h)", a);
        }
        if (i + 1 >= argc) fail("%s needs a value (see ./prepare_images -h)", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--fmnist-dir")) { fmnist = 1; fmnist_dir = v; }
        else if (!strcmp(a, "--root")) root = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--size")) { parse_size_or_fail(v, &height, &width); folder_opts = 1; }
        else if (!strcmp(a, "--channels")) {
            long c = parse_long_or_fail(v, "--channels");
            if (c != 1 && c != 3) fail("--channels must be 1 or 3, got '%s'", v);
            channels = (int)c;
            folder_opts = 1;
        } else if (!strcmp(a, "--resize")) {
            if (!strcmp(v, "crop")) mode = RESIZE_CROP;
            else if (!strcmp(v, "stretch")) mode = RESIZE_STRETCH;
            else fail("--resize must be crop or stretch, got '%s'", v);
            folder_opts = 1;
        } else if (!strcmp(a, "--val-fraction")) {
            val_fraction = parse_double_or_fail(v, "--val-fraction");
            if (!(val_fraction > 0.0 && val_fraction < 1.0))
                fail("--val-fraction must be between 0 and 1 (exclusive), got '%s'", v);
        } else if (!strcmp(a, "--max-image-side")) {
            max_side = (int)parse_int_flag_or_fail(v, a, 1, 1 << 24);
            folder_opts = 1;
        } else if (!strcmp(a, "--max-image-pixels")) {
            max_pixels = parse_int_flag_or_fail(v, a, 1, 1LL << 40);
            folder_opts = 1;
        } else if (!strcmp(a, "--seed")) {
            long s = parse_long_or_fail(v, "--seed");
            if (s < 0) fail("--seed must be non-negative, got '%s'", v);
            seed = (uint64_t)s;
        }
    }
    if (fmnist && root) fail("--fashion-mnist and --root exclude each other");
    if (!fmnist && !root) fail("missing --root DIR or --fashion-mnist (see ./prepare_images -h)");
    if (!out) fail("missing --out DIR (see ./prepare_images -h)");
    if (fmnist && folder_opts)
        fail("--size, --channels, --resize and the image limits apply to image folders; Fashion-MNIST is stored as "
             "is (28x28, 1 channel)");
    image_set_decode_limits(max_side, max_pixels);
    if (mkdir(out, 0755) != 0 && errno != EEXIST) fail("--out: cannot create %s: %s", out, strerror(errno));
    if (!is_dir(out)) fail("--out: %s is not a directory", out);

    if (fmnist) prepare_fashion_mnist(fmnist_dir, out, val_fraction, seed);
    else prepare_folder(root, out, channels, height, width, mode, val_fraction, seed);
    return 0;
}
