// Tests for data/images.{h,c} and the prepare_images tool.
//
// References are independent of the code under test: Fashion-MNIST values
// were read with /usr/bin/python3 (gzip + numpy on the idx files, see the
// comments), resize results are hand-computed on images where the answer is
// exact, shards are also written by a hand-made writer that follows the byte
// layout documented in images.h, and augmentation is checked against a
// direct pad-crop-mirror reference written here.
//
// Bad input must end the process with a one-line error; those cases run in a
// fresh process (this binary re-executed with --child CASE ...), which also
// keeps fork away from the OpenMP runtime.
#define _GNU_SOURCE // nftw
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <malloc.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <stb/stb_image_write.h>

#include "common/utils.h"
#include "data/images.h"

extern char **environ;

#include "test.h"

static char g_tmp[256];

// path under the temp dir
static char *tp(char *buf, const char *fmt, ...) {
    char rel[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof(rel), fmt, ap);
    va_end(ap);
    snprintf(buf, 1024, "%s/%s", g_tmp, rel);
    return buf;
}

static void mkdir_or_die(const char *path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST) fail("test: cannot mkdir %s: %s", path, strerror(errno));
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen_or_fail(path, "wb");
    fwrite_or_fail(data, 1, n, f, path);
    fclose_or_fail(f, path);
}

static uint8_t *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen_or_fail(path, "rb");
    *n = file_size_or_fail(f, path);
    uint8_t *b = malloc_or_fail(*n, "test file");
    fread_or_fail(b, 1, *n, f, path);
    fclose_or_fail(f, path);
    return b;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

// ---------------------------------------------------------------------------
// expected failures in a child process

static char **g_child_env;

// run argv (argv[0] a path) with stdout discarded; returns the exit status
// (-1 if killed) and leaves its stderr in err
static int run_process(char *const argv[], char *err, size_t errlen) {
    char errpath[1024];
    tp(errpath, "child_stderr.txt");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) fail("test: fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int null = open("/dev/null", O_WRONLY);
        if (fd < 0 || null < 0) _exit(99);
        dup2(fd, 2);
        dup2(null, 1);
        execve(argv[0], argv, g_child_env);
        _exit(98);
    }
    int status;
    waitpid(pid, &status, 0);
    size_t n;
    uint8_t *b = read_bytes(errpath, &n);
    if (n >= errlen) n = errlen - 1;
    memcpy(err, b, n);
    err[n] = '\0';
    free(b);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// the stderr of a failed run must be exactly one "error: ..." line
static int one_error_line(const char *err) {
    size_t n = strlen(err);
    return n > 8 && strncmp(err, "error: ", 7) == 0 && err[n - 1] == '\n' && strchr(err, '\n') == err + n - 1;
}

// run this binary with --child name a1 a2 and expect a one-line error that
// contains want1 and want2 (when not NULL)
static void expect_fail(const char *name, const char *a1, const char *a2, const char *want1, const char *want2) {
    char *argv[] = {"/proc/self/exe", "--child", (char *)name, (char *)(a1 ? a1 : ""), (char *)(a2 ? a2 : ""), NULL};
    char err[4096];
    int rc = run_process(argv, err, sizeof(err));
    CHECK_QUIET(rc == 1, "case %s(%s, %s): exit status %d, wanted 1; stderr: %s", name, a1 ? a1 : "", a2 ? a2 : "", rc, err);
    CHECK_QUIET(one_error_line(err), "case %s(%s): stderr is not one error line: '%s'", name, a1 ? a1 : "", err);
    if (want1) CHECK_QUIET(strstr(err, want1) != NULL, "case %s: error '%s' does not mention '%s'", name, err, want1);
    if (want2) CHECK_QUIET(strstr(err, want2) != NULL, "case %s: error '%s' does not mention '%s'", name, err, want2);
}

static const char *const three_names[3] = {"zero", "one", "two"};

static int image_name_natural_cmp_ptr(const char *const *a, const char *const *b) {
    return image_name_natural_cmp(*a, *b);
}

// a tiny set whose image i is constant i and whose label is i
static void make_index_set(ImageSet *s, int n, int C, int H, int W) {
    memset(s, 0, sizeof(*s));
    s->count = n; s->channels = C; s->height = H; s->width = W; s->num_classes = n;
    s->pixels = malloc_or_fail((size_t)n * C * H * W, "test pixels");
    s->labels = malloc_or_fail((size_t)n * sizeof(int32_t), "test labels");
    s->class_names = calloc_or_fail((size_t)n, IMAGE_CLASS_NAME_LEN, "test names");
    for (int i = 0; i < n; i++) {
        memset(s->pixels + (size_t)i * C * H * W, i, (size_t)C * H * W);
        s->labels[i] = i;
        snprintf(s->class_names[i], IMAGE_CLASS_NAME_LEN, "c%d", i);
    }
}

static void free_test_set(ImageSet *s) {
    free(s->pixels); free(s->labels); free(s->class_names);
}

static int run_child(const char *name, const char *a1, const char *a2) {
    ImageSet s;
    if (!strcmp(name, "idx")) image_set_load_idx(&s, a1, a2, three_names, 3);
    else if (!strcmp(name, "fmnist")) image_set_load_fashion_mnist(&s, a1, a2);
    else if (!strcmp(name, "folder")) image_set_load_folder(&s, a1, atoi(a2), 4, 4, RESIZE_CROP);
    else if (!strcmp(name, "shard")) image_set_read_shard(&s, a1);
    else if (!strcmp(name, "stream")) image_set_open_shard(&s, a1);
    else if (!strcmp(name, "stream_read")) { // a streamed shard whose images a loader reads: a2 = batch size
        image_set_open_shard(&s, a1);
        float mean[3] = {0.5f, 0.5f, 0.5f}, std[3] = {0.25f, 0.25f, 0.25f};
        ImageLoader l;
        int B = atoi(a2);
        image_loader_init(&l, &s, B, 1, 0, 0, 0, mean, std);
        float *img = malloc_or_fail((size_t)B * image_set_image_bytes(&s) * sizeof(float), "batch");
        int *lab = malloc_or_fail((size_t)B * sizeof(int), "labels");
        for (int i = 0; i < s.count; i += B) image_loader_next(&l, img, lab);
    }
    else if (!strcmp(name, "jpeg_dirty")) {
        // the heap dirtied with byte a2 first, as a long run leaves it: freed
        // blocks are handed out again with their old contents (one thread, one
        // arena; no trimming, which would give zeroed pages back)
        omp_set_num_threads(1);
        mallopt(M_TRIM_THRESHOLD, 256 << 20);
        mallopt(M_MMAP_THRESHOLD, 64 << 20);
        static char *g[256];
        for (int k = 0; k < 256; k++) { // blocks of 1 to 64 KiB, the decoder's among them
            g[k] = malloc_or_fail((size_t)(k + 1) << 8, "test garbage");
            memset(g[k], atoi(a2), (size_t)(k + 1) << 8);
        }
        for (int k = 0; k < 256; k++) free(g[k]);
        image_set_load_folder(&s, a1, 3, 4, 4, RESIZE_CROP);
    }
    else if (!strcmp(name, "values")) { float v[3]; parse_channel_values_or_fail(a1, 3, "--mean", atoi(a2), v); }
    else if (!strcmp(name, "loader")) {
        // a1 picks the misuse
        make_index_set(&s, 10, 1, 2, 2);
        float mean[1] = {0.5f}, std[1] = {0.25f}, zero[1] = {0.0f};
        ImageLoader l;
        if (!strcmp(a1, "batch_too_big")) image_loader_init(&l, &s, 11, 1, 1, 0, 0, mean, std);
        else if (!strcmp(a1, "eval_flip")) image_loader_init(&l, &s, 4, 1, 0, 0, 1, mean, std);
        else if (!strcmp(a1, "zero_std")) image_loader_init(&l, &s, 4, 1, 1, 0, 0, mean, zero);
        else if (!strcmp(a1, "big_pad")) image_loader_init(&l, &s, 4, 1, 1, 3, 0, mean, std);
        else if (!strcmp(a1, "mix_odd") || !strcmp(a1, "rrc_eval") || !strcmp(a1, "pad_size") ||
                 !strcmp(a1, "small") || !strcmp(a1, "scale") || !strcmp(a1, "smooth_eval") || !strcmp(a1, "soft_next")) {
            ImageLoaderConfig c;
            image_loader_config_defaults(&c);
            c.B = 4; c.seed = 1; c.shuffle = 1; c.mean = mean; c.std = std;
            if (!strcmp(a1, "mix_odd")) { c.B = 3; c.mixup_alpha = 0.8; }
            if (!strcmp(a1, "rrc_eval")) { c.shuffle = 0; c.rrc = 1; }
            if (!strcmp(a1, "smooth_eval")) { c.shuffle = 0; c.smoothing = 0.1; }
            if (!strcmp(a1, "pad_size")) { c.crop_pad = 1; c.out_height = 1; c.out_width = 1; }
            if (!strcmp(a1, "small")) { c.out_height = 3; c.out_width = 2; }
            if (!strcmp(a1, "scale")) { c.rrc = 1; c.rrc_scale[0] = 0.5; c.rrc_scale[1] = 0.25; }
            if (!strcmp(a1, "soft_next")) c.smoothing = 0.1;
            image_loader_init_config(&l, &s, &c);
            float img[4 * 4];
            int lab[4];
            image_loader_next(&l, img, lab); // soft_next: soft targets need image_loader_next_targets
        }
        else if (!strcmp(a1, "bad_state")) {
            image_loader_init(&l, &s, 4, 1, 1, 0, 0, mean, std);
            ImageLoaderState st = {0, 11, 1};
            image_loader_set_state(&l, st);
        }
    } else {
        fprintf(stderr, "unknown child case %s\n", name);
        return 2;
    }
    return 0; // no error: the parent reports it
}

// ---------------------------------------------------------------------------
// Fashion-MNIST: the real files

static void test_fashion_mnist(void) {
    ImageSet tr, te;
    double t0 = now_seconds();
    image_set_load_fashion_mnist(&tr, NULL, "train");
    image_set_load_fashion_mnist(&te, NULL, "test");
    printf("  Fashion-MNIST train+test loaded in %.2f s\n", now_seconds() - t0);

    CHECK_QUIET(tr.count == 60000 && te.count == 10000, "counts %d %d", tr.count, te.count);
    CHECK_QUIET(tr.height == 28 && tr.width == 28 && tr.channels == 1 && tr.num_classes == 10, "train shape");
    CHECK_QUIET(te.height == 28 && te.width == 28 && te.channels == 1 && te.num_classes == 10, "test shape");
    CHECK_QUIET(!strcmp(tr.class_names[0], "T-shirt/top") && !strcmp(tr.class_names[9], "Ankle boot"), "class names");

    // Values below: /usr/bin/python3 with gzip + numpy reading the idx files
    // directly (np.frombuffer(gzip.open(f).read(), np.uint8, offset=16) for
    // images, offset=8 for labels).
    const int tr_first[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5}, tr_last[5] = {5, 1, 3, 0, 5};
    const int te_first[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7}, te_last[5] = {9, 1, 8, 1, 5};
    for (int i = 0; i < 10; i++) {
        CHECK_QUIET(tr.labels[i] == tr_first[i], "train label %d", i);
        CHECK_QUIET(te.labels[i] == te_first[i], "test label %d", i);
    }
    for (int i = 0; i < 5; i++) {
        CHECK_QUIET(tr.labels[59995 + i] == tr_last[i], "train label %d", 59995 + i);
        CHECK_QUIET(te.labels[9995 + i] == te_last[i], "test label %d", 9995 + i);
    }
    int counts[10] = {0};
    for (int i = 0; i < tr.count; i++) counts[tr.labels[i]]++;
    for (int k = 0; k < 10; k++) CHECK_QUIET(counts[k] == 6000, "train class %d has %d images", k, counts[k]);

#define PX(s, i, r, c) ((s).pixels[(size_t)(i) * 784 + (r) * 28 + (c)])
    const int tr_row[8] = {0, 0, 237, 226, 217, 223, 222, 219};  // train[0][14][10:18]
    const int te_row[8] = {0, 0, 98, 136, 110, 109, 110, 162};   // t10k[0][14][10:18]
    const int te_row2[8] = {17, 0, 0, 56, 80, 45, 54, 53};       // t10k[9999][10][8:16]
    for (int j = 0; j < 8; j++) {
        CHECK_QUIET(PX(tr, 0, 14, 10 + j) == tr_row[j], "train[0][14][%d]", 10 + j);
        CHECK_QUIET(PX(te, 0, 14, 10 + j) == te_row[j], "t10k[0][14][%d]", 10 + j);
        CHECK_QUIET(PX(te, 9999, 10, 8 + j) == te_row2[j], "t10k[9999][10][%d]", 8 + j);
    }
    CHECK_QUIET(PX(tr, 1, 20, 13) == 205 && PX(tr, 12345, 7, 21) == 190 && PX(te, 1, 20, 13) == 236 &&
          PX(te, 9999, 14, 14) == 132, "single pixels");
#undef PX
    long sum0 = 0, sum_last = 0;
    for (int j = 0; j < 784; j++) { sum0 += tr.pixels[j]; sum_last += tr.pixels[(size_t)59999 * 784 + j]; }
    CHECK_QUIET(sum0 == 76247 && sum_last == 16684, "pixel sums %ld %ld", sum0, sum_last);

    // numpy: x = X.astype(float64) / 255; x.mean(), x.std() (population)
    double mean, std;
    image_set_channel_stats(&tr, &mean, &std);
    CHECK_QUIET(fabs(mean - 0.286040597) < 1e-8 && fabs(std - 0.353024245) < 1e-8, "train mean %.9f std %.9f", mean, std);
    image_set_channel_stats(&te, &mean, &std);
    CHECK_QUIET(fabs(mean - 0.286849281) < 1e-8 && fabs(std - 0.352444153) < 1e-8, "test mean %.9f std %.9f", mean, std);

    // shard round trip of the test split
    char path[1024];
    tp(path, "fmnist_test.bin");
    image_set_write_shard(&te, path);
    ImageSet back;
    image_set_read_shard(&back, path);
    CHECK_QUIET(back.count == te.count && back.height == 28 && back.width == 28 && back.channels == 1 &&
          back.num_classes == 10 && !memcmp(back.pixels, te.pixels, (size_t)te.count * 784) &&
          !memcmp(back.labels, te.labels, (size_t)te.count * 4) &&
          !memcmp(back.class_names, te.class_names, 10 * IMAGE_CLASS_NAME_LEN), "Fashion-MNIST shard round trip");
    image_set_free(&back);

    // the loader's output must not depend on the thread count (batches big
    // enough to run in parallel)
    float m = 0.286f, sd = 0.353f;
    int B = 128;
    size_t n = (size_t)B * 784;
    float *a = malloc_or_fail(n * sizeof(float), "batch"), *b = malloc_or_fail(n * sizeof(float), "batch");
    int la[128], lb[128];
    int ok = 1;
    for (int round = 0; round < 2; round++) {
        ImageLoader l1, l2;
        image_loader_init(&l1, &tr, B, 7, 1, 2, 1, &m, &sd);
        image_loader_init(&l2, &tr, B, 7, 1, 2, 1, &m, &sd);
        for (int it = 0; it < 3; it++) {
            omp_set_num_threads(1);
            image_loader_next(&l1, a, la);
            omp_set_num_threads(2);
            image_loader_next(&l2, b, lb);
            ok &= !memcmp(a, b, n * sizeof(float)) && !memcmp(la, lb, sizeof(la));
        }
        image_loader_free(&l1);
        image_loader_free(&l2);
    }
    CHECK_QUIET(ok, "loader batches differ between 1 and 2 threads");
    free(a);
    free(b);
    image_set_free(&tr);
    image_set_free(&te);

    expect_fail("fmnist", g_tmp, "train", "dataset-fashion-mnist", g_tmp);
    expect_fail("fmnist", NULL, "validation", "validation", NULL);
}

// ---------------------------------------------------------------------------
// idx files, hand-made

static void put_be32(uint8_t *b, uint32_t v) {
    b[0] = (uint8_t)(v >> 24); b[1] = (uint8_t)(v >> 16); b[2] = (uint8_t)(v >> 8); b[3] = (uint8_t)v;
}

// images file: magic, count, rows, cols, then pixels i*50 + j*3 (count_real
// images actually written)
static size_t make_idx_images(uint8_t *buf, uint32_t magic, uint32_t count, uint32_t rows, uint32_t cols, int count_real) {
    put_be32(buf, magic); put_be32(buf + 4, count); put_be32(buf + 8, rows); put_be32(buf + 12, cols);
    size_t n = 16;
    for (int i = 0; i < count_real; i++)
        for (uint32_t j = 0; j < rows * cols; j++) buf[n++] = (uint8_t)(i * 50 + j * 3);
    return n;
}

static size_t make_idx_labels(uint8_t *buf, uint32_t magic, uint32_t count, const uint8_t *labels, int nreal) {
    put_be32(buf, magic); put_be32(buf + 4, count);
    memcpy(buf + 8, labels, (size_t)nreal);
    return 8 + (size_t)nreal;
}

static void write_gz(const char *path, const void *data, size_t n) {
    gzFile g = gzopen(path, "wb");
    if (!g || gzwrite(g, data, (unsigned)n) != (int)n || gzclose(g) != Z_OK) fail("test: cannot write %s", path);
}

static void test_idx(void) {
    char dir[1024], img[1024], lab[1024], p[1024], q[1024];
    mkdir_or_die(tp(dir, "idx"));
    uint8_t buf[256];
    const uint8_t good_labels[3] = {1, 0, 2};

    // valid, both gzip'd and plain
    write_gz(tp(img, "idx/img.gz"), buf, make_idx_images(buf, 2051, 3, 2, 4, 3));
    write_gz(tp(lab, "idx/lab.gz"), buf, make_idx_labels(buf, 2049, 3, good_labels, 3));
    write_bytes(tp(p, "idx/img.raw"), buf, make_idx_images(buf, 2051, 3, 2, 4, 3));
    write_bytes(tp(q, "idx/lab.raw"), buf, make_idx_labels(buf, 2049, 3, good_labels, 3));
    for (int v = 0; v < 2; v++) {
        ImageSet s;
        if (v == 0) image_set_load_idx(&s, img, lab, three_names, 3);
        else image_set_load_idx(&s, p, q, three_names, 3);
        CHECK_QUIET(s.count == 3 && s.height == 2 && s.width == 4 && s.channels == 1 && s.num_classes == 3, "idx shape");
        CHECK_QUIET(s.labels[0] == 1 && s.labels[1] == 0 && s.labels[2] == 2, "idx labels");
        int ok = 1;
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 8; j++) ok &= s.pixels[i * 8 + j] == i * 50 + j * 3;
        CHECK_QUIET(ok, "idx pixels");
        CHECK_QUIET(!strcmp(s.class_names[2], "two"), "idx class names");
        image_set_free(&s);
    }

    // wrong magic in either file (the images file given as labels and back)
    write_gz(tp(p, "idx/img_magic.gz"), buf, make_idx_images(buf, 2049, 3, 2, 4, 3));
    expect_fail("idx", p, lab, p, "magic");
    write_gz(tp(p, "idx/lab_magic.gz"), buf, make_idx_labels(buf, 2051, 3, good_labels, 3));
    expect_fail("idx", img, p, p, "magic");
    // truncated pixels (plain and gzip), truncated header
    write_bytes(tp(p, "idx/img_short.raw"), buf, make_idx_images(buf, 2051, 3, 2, 4, 3) - 5);
    expect_fail("idx", p, lab, p, "truncated");
    write_gz(tp(p, "idx/img_short.gz"), buf, make_idx_images(buf, 2051, 3, 2, 4, 2));
    expect_fail("idx", p, lab, p, "truncated");
    write_bytes(tp(p, "idx/img_hdr.raw"), buf, 10);
    expect_fail("idx", p, lab, p, "truncated");
    write_gz(tp(p, "idx/lab_short.gz"), buf, make_idx_labels(buf, 2049, 3, good_labels, 2));
    expect_fail("idx", img, p, p, "truncated");
    // a gzip stream cut in the middle
    {
        size_t n;
        char big[1024];
        uint8_t *raw = malloc_or_fail(16 + 200 * 64, "big idx");
        put_be32(raw, 2051); put_be32(raw + 4, 200); put_be32(raw + 8, 8); put_be32(raw + 12, 8);
        uint32_t x = 12345;
        for (int i = 16; i < 16 + 200 * 64; i++) { x = x * 1103515245u + 12345u; raw[i] = (uint8_t)(x >> 24); }
        write_gz(tp(big, "idx/big.gz"), raw, 16 + 200 * 64);
        uint8_t *gz = read_bytes(big, &n);
        write_bytes(tp(p, "idx/big_cut.gz"), gz, n / 2);
        uint8_t labs[200] = {0};
        write_gz(tp(q, "idx/big_lab.gz"), buf, make_idx_labels(buf, 2049, 200, labs, 0));
        gzFile g = gzopen(q, "wb");
        gzwrite(g, buf, 8);
        gzwrite(g, labs, 200);
        gzclose(g);
        expect_fail("idx", p, q, p, NULL);
        free(gz);
        free(raw);
    }
    // trailing bytes
    {
        size_t n = make_idx_images(buf, 2051, 3, 2, 4, 3);
        buf[n++] = 7;
        write_gz(tp(p, "idx/img_long.gz"), buf, n);
        expect_fail("idx", p, lab, p, "trailing");
    }
    // counts that disagree: the message names both files
    write_gz(tp(p, "idx/lab_4.gz"), buf, make_idx_labels(buf, 2049, 4, (const uint8_t *)"\1\0\2\1", 4));
    expect_fail("idx", img, p, p, img);
    // label out of range
    write_gz(tp(p, "idx/lab_range.gz"), buf, make_idx_labels(buf, 2049, 3, (const uint8_t *)"\1\3\0", 3));
    expect_fail("idx", img, p, p, "out of range");
    // zero rows, zero count
    write_gz(tp(p, "idx/img_rows.gz"), buf, make_idx_images(buf, 2051, 3, 0, 4, 0));
    expect_fail("idx", p, lab, p, "dimensions");
    write_gz(tp(p, "idx/img_zero.gz"), buf, make_idx_images(buf, 2051, 0, 2, 4, 0));
    expect_fail("idx", p, lab, p, "count");
    // missing file
    expect_fail("idx", tp(p, "idx/nope.gz"), lab, p, "cannot open");
}

// ---------------------------------------------------------------------------
// resampling, hand-computed

// weight of source pixel i (of n) in output pixel o (of m) along one axis,
// straight from the definitions in images.h
static double ref_axis_weight(int n, int m, int o, int i) {
    double scale = (double)n / m;
    if (scale >= 1.0) {
        double lo = o * scale, hi = lo + scale;
        double overlap = fmin(hi, i + 1.0) - fmax(lo, (double)i);
        return overlap > 0.0 ? overlap / scale : 0.0;
    }
    double x = (o + 0.5) * scale - 0.5;
    if (x < 0.0) x = 0.0;            // clamped edges: beyond the first/last
    if (x > n - 1.0) x = n - 1.0;    // centre the nearest pixel takes all
    double d = fabs(x - i);
    return d < 1.0 ? 1.0 - d : 0.0;
}

static void test_resize(void) {
    // 2x downscale: each 2x2 block holds v-3, v-1, v+1, v+3 -> exactly v
    {
        uint8_t src[4 * 4], dst[2 * 2];
        const int v[2][2] = {{10, 100}, {200, 52}};
        const int d[2][2] = {{-3, -1}, {1, 3}};
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++) src[y * 4 + x] = (uint8_t)(v[y / 2][x / 2] + d[y % 2][x % 2]);
        image_resize_hwc(src, 4, 4, 1, dst, 2, 2, RESIZE_STRETCH);
        CHECK_QUIET(dst[0] == 10 && dst[1] == 100 && dst[2] == 200 && dst[3] == 52, "2x area downscale %d %d %d %d",
              dst[0], dst[1], dst[2], dst[3]);
    }
    // 3 -> 2 pixels: output 0 covers [0, 1.5): (0 + 0.5*90) / 1.5 = 30;
    // output 1 covers [1.5, 3): (0.5*90 + 180) / 1.5 = 150
    {
        uint8_t src[3] = {0, 90, 180}, dst[2];
        image_resize_hwc(src, 3, 1, 1, dst, 2, 1, RESIZE_STRETCH);
        CHECK_QUIET(dst[0] == 30 && dst[1] == 150, "3->2 area: %d %d", dst[0], dst[1]);
    }
    // bilinear 2 -> 4 with half-pixel centres: source x = (o + 0.5)/2 - 0.5
    // = -0.25, 0.25, 0.75, 1.25 -> 0, 0.75*0 + 0.25*200, 0.25*0 + 0.75*200, 200
    {
        uint8_t src[2] = {0, 200}, dst[4];
        image_resize_hwc(src, 2, 1, 1, dst, 4, 1, RESIZE_STRETCH);
        CHECK_QUIET(dst[0] == 0 && dst[1] == 50 && dst[2] == 150 && dst[3] == 200, "bilinear 2->4: %d %d %d %d",
              dst[0], dst[1], dst[2], dst[3]);
    }
    // constant colours survive any scale, per channel
    {
        uint8_t src[10 * 7 * 3], dst[3 * 5 * 3];
        for (int i = 0; i < 10 * 7; i++) { src[3 * i] = 255; src[3 * i + 1] = 1; src[3 * i + 2] = 128; }
        int ok = 1;
        for (int mode = 0; mode < 2; mode++) {
            image_resize_hwc(src, 10, 7, 3, dst, 3, 5, (ResizeMode)mode);
            for (int i = 0; i < 15; i++) ok &= dst[3 * i] == 255 && dst[3 * i + 1] == 1 && dst[3 * i + 2] == 128;
            image_resize_hwc(src, 2, 3, 3, dst, 5, 3, (ResizeMode)mode); // grows
            for (int i = 0; i < 15; i++) ok &= dst[3 * i] == 255 && dst[3 * i + 1] == 1 && dst[3 * i + 2] == 128;
        }
        CHECK_QUIET(ok, "constant colour changed by resizing");
    }
    // same size is the identity
    {
        uint8_t src[5 * 3], dst[5 * 3];
        for (int i = 0; i < 15; i++) src[i] = (uint8_t)(i * 17);
        image_resize_hwc(src, 5, 3, 1, dst, 5, 3, RESIZE_CROP);
        CHECK_QUIET(!memcmp(src, dst, 15), "same-size resize is not the identity");
    }
    // 16 wide x 8 tall: columns 0-3 = 10, 4-11 = 20, 12-15 = 30. Crop to 4x4
    // takes the centre 8 x 8 (all 20); stretch averages 4 columns per output.
    {
        uint8_t src[16 * 8], dst[16];
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 16; x++) src[y * 16 + x] = x < 4 ? 10 : (x < 12 ? 20 : 30);
        image_resize_hwc(src, 16, 8, 1, dst, 4, 4, RESIZE_CROP);
        int ok = 1;
        for (int i = 0; i < 16; i++) ok &= dst[i] == 20;
        CHECK_QUIET(ok, "centre crop");
        image_resize_hwc(src, 16, 8, 1, dst, 4, 4, RESIZE_STRETCH);
        ok = 1;
        for (int y = 0; y < 4; y++) ok &= dst[y * 4] == 10 && dst[y * 4 + 1] == 20 && dst[y * 4 + 2] == 20 && dst[y * 4 + 3] == 30;
        CHECK_QUIET(ok, "stretch");
    }
    // PyTorch 1.13 (/usr/bin/python3), F.interpolate on the float image
    // src[y][x] = (13 x^2 + 29 y + 7) % 251: bilinear (align_corners=False)
    // 5x4 -> 13x9, and area 8x6 -> 4x3. Ours rounds to uint8, so it must be
    // within half a level of PyTorch's value.
    {
        uint8_t src[8 * 6], dst[13 * 9];
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 5; x++) src[y * 5 + x] = (uint8_t)((x * x * 13 + y * 29 + 7) % 251);
        image_resize_hwc(src, 5, 4, 1, dst, 13, 9, RESIZE_STRETCH);
        const int pts[10][2] = {{0, 0}, {0, 6}, {1, 3}, {2, 12}, {4, 5}, {5, 9}, {7, 1}, {8, 12}, {3, 7}, {6, 10}};
        const double torch_bilinear[10] = {7.0, 59.000003814697266, 22.83333396911621, 232.72222900390625, 87.5,
                                           157.91879272460938, 90.16666412353516, 51.0, 114.61111450195312,
                                           107.12391662597656};
        for (int i = 0; i < 10; i++) {
            int v = dst[pts[i][0] * 13 + pts[i][1]];
            CHECK_QUIET(fabs(v - torch_bilinear[i]) <= 0.501, "bilinear (%d,%d): %d vs PyTorch %.4f", pts[i][0], pts[i][1], v, torch_bilinear[i]);
        }
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 8; x++) src[y * 8 + x] = (uint8_t)((x * x * 13 + y * 29 + 7) % 251);
        image_resize_hwc(src, 8, 6, 1, dst, 4, 3, RESIZE_STRETCH);
        const double torch_area[12] = {28.0, 106.0, 162.5, 134.75, 86.0, 164.0, 95.0, 130.0, 144.0, 159.25, 153.0, 62.5};
        for (int i = 0; i < 12; i++)
            CHECK_QUIET(fabs(dst[i] - torch_area[i]) <= 0.501, "area %d: %d vs PyTorch %.2f", i, dst[i], torch_area[i]);
    }
    // random sizes and contents against a naive double-precision reference:
    // out = sum_y sum_x wy(oy, y) wx(ox, x) src(y, x), per-axis weights from
    // the definitions (fractional pixel overlap / scale when an axis shrinks,
    // tent around (o + 0.5) * scale - 0.5 with clamped edges when it grows)
    {
        Rng r;
        rng_seed(&r, 2024);
        int exact = 0, total = 0, within1 = 1;
        for (int trial = 0; trial < 40; trial++) {
            int sw = 1 + (int)rng_below(&r, 23), sh = 1 + (int)rng_below(&r, 23);
            int dw = 1 + (int)rng_below(&r, 23), dh = 1 + (int)rng_below(&r, 23), C = trial % 2 ? 3 : 1;
            uint8_t *src = malloc_or_fail((size_t)sw * sh * C, "src"), *dst = malloc_or_fail((size_t)dw * dh * C, "dst");
            for (int i = 0; i < sw * sh * C; i++) src[i] = (uint8_t)rng_below(&r, 256);
            image_resize_hwc(src, sw, sh, C, dst, dw, dh, RESIZE_STRETCH);
            for (int oy = 0; oy < dh; oy++)
                for (int ox = 0; ox < dw; ox++)
                    for (int c = 0; c < C; c++) {
                        double acc = 0.0;
                        for (int y = 0; y < sh; y++) {
                            double wy = ref_axis_weight(sh, dh, oy, y);
                            if (wy == 0.0) continue;
                            for (int x = 0; x < sw; x++) acc += wy * ref_axis_weight(sw, dw, ox, x) * src[(y * sw + x) * C + c];
                        }
                        int want = (int)floor(acc + 0.5), got = dst[(oy * dw + ox) * C + c];
                        exact += got == want;
                        within1 &= abs(got - want) <= 1;
                        total++;
                    }
            free(src);
            free(dst);
        }
        // float vs double can only differ on values that sit at a .5 tie
        CHECK_QUIET(within1 && exact >= total - total / 100, "resize vs double reference: %d of %d exact", exact, total);
    }
    // 15 wide x 8 tall to 8 x 8: the centre window of 8 whole columns starts
    // at round(3.5) = 4, so output column x is source column x + 4, unblurred
    {
        uint8_t src[15 * 8], dst[64];
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 15; x++) src[y * 15 + x] = (uint8_t)(x * 10);
        image_resize_hwc(src, 15, 8, 1, dst, 8, 8, RESIZE_CROP);
        int ok = 1;
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++) ok &= dst[y * 8 + x] == (x + 4) * 10;
        CHECK_QUIET(ok, "whole-pixel centre crop");
    }
}

// ---------------------------------------------------------------------------
// image folders

static void write_png_or_die(const char *path, int w, int h, int comp, const uint8_t *data) {
    if (!stbi_write_png(path, w, h, comp, data, w * comp)) fail("test: cannot write %s", path);
}

static void fill_rgb(uint8_t *img, int n, int r, int g, int b) {
    for (int i = 0; i < n; i++) { img[3 * i] = (uint8_t)r; img[3 * i + 1] = (uint8_t)g; img[3 * i + 2] = (uint8_t)b; }
}

// the colour block pattern of c.png: an 8x8 image whose 2x2 blocks average to
// block_value(by, bx, c) exactly
static int block_value(int by, int bx, int c) { return 20 + 10 * (by * 4 + bx) + 40 * c; }

// root/a_plain:  x.jpg 16x16 (200,100,50); y.png 4x4 grey 77; z.PNG 2x2 RGBA
//                (1,2,3, alpha 0); notes.txt and .hidden.png are ignored
// root/b_shapes: a.bmp 6x6 (10,20,30); c.png 8x8 blocks; d.png 16x8 bands
// root/.git:     hidden folder, ignored
static void make_folder(const char *root) {
    char p[1024];
    uint8_t img[16 * 16 * 4];
    mkdir_or_die(root);
    snprintf(p, sizeof(p), "%s/a_plain", root); mkdir_or_die(p);
    snprintf(p, sizeof(p), "%s/b_shapes", root); mkdir_or_die(p);
    snprintf(p, sizeof(p), "%s/.git", root); mkdir_or_die(p);

    fill_rgb(img, 256, 200, 100, 50);
    snprintf(p, sizeof(p), "%s/a_plain/x.jpg", root);
    if (!stbi_write_jpg(p, 16, 16, 3, img, 100)) fail("test: cannot write %s", p);
    memset(img, 77, 16);
    snprintf(p, sizeof(p), "%s/a_plain/y.png", root);
    write_png_or_die(p, 4, 4, 1, img);
    for (int i = 0; i < 4; i++) { img[4 * i] = 1; img[4 * i + 1] = 2; img[4 * i + 2] = 3; img[4 * i + 3] = 0; }
    snprintf(p, sizeof(p), "%s/a_plain/z.PNG", root);
    write_png_or_die(p, 2, 2, 4, img);
    snprintf(p, sizeof(p), "%s/a_plain/.hidden.png", root);
    write_png_or_die(p, 2, 2, 4, img);
    snprintf(p, sizeof(p), "%s/a_plain/notes.txt", root);
    write_bytes(p, "not an image", 12);

    fill_rgb(img, 36, 10, 20, 30);
    snprintf(p, sizeof(p), "%s/b_shapes/a.bmp", root);
    if (!stbi_write_bmp(p, 6, 6, 3, img)) fail("test: cannot write %s", p);
    const int d[2][2] = {{-3, -1}, {1, 3}};
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++)
            for (int c = 0; c < 3; c++) img[(y * 8 + x) * 3 + c] = (uint8_t)(block_value(y / 2, x / 2, c) + d[y % 2][x % 2]);
    snprintf(p, sizeof(p), "%s/b_shapes/c.png", root);
    write_png_or_die(p, 8, 8, 3, img);
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 16; x++) {
            uint8_t *px = img + (y * 16 + x) * 3;
            px[0] = x < 4 ? 255 : 0;
            px[1] = (x >= 4 && x < 12) ? 255 : 0;
            px[2] = x >= 12 ? 255 : 0;
        }
    snprintf(p, sizeof(p), "%s/b_shapes/d.png", root);
    write_png_or_die(p, 16, 8, 3, img);
}

// every pixel of image i, channel c equals v (within tol)
static int image_is(const ImageSet *s, int i, int c, int v, int tol) {
    size_t plane = (size_t)s->height * s->width;
    const uint8_t *p = s->pixels + (size_t)i * image_set_image_bytes(s) + (size_t)c * plane;
    for (size_t j = 0; j < plane; j++)
        if (abs((int)p[j] - v) > tol) return 0;
    return 1;
}

static int sets_equal(const ImageSet *a, const ImageSet *b) {
    return a->count == b->count && a->channels == b->channels && a->height == b->height &&
           a->width == b->width && a->num_classes == b->num_classes &&
           !memcmp(a->pixels, b->pixels, (size_t)a->count * image_set_image_bytes(a)) &&
           !memcmp(a->labels, b->labels, (size_t)a->count * sizeof(int32_t)) &&
           !memcmp(a->class_names, b->class_names, (size_t)a->num_classes * IMAGE_CLASS_NAME_LEN);
}

// JPEGs whose scan names a Huffman table no DHT segment defines
// (fuzz/regressions/image_file/: one made by fuzz/make_seeds.py, one the
// fuzzer found): stb_image decoded them with a table of whatever the heap
// held, so that they aborted on an assert or read out of bounds depending on
// the heap (libjpeg-turbo decodes JPEGs now). Decoded after the heap is dirtied with three different bytes,
// each must end the same way every time (it decodes, or one error line),
// never killed by a signal.
static void test_jpeg_undefined_table(void) {
    const char *files[2] = {"fuzz/regressions/image_file/crafted_undefined_huffman.jpg",
                            "fuzz/regressions/image_file/fuzzer_assert_huffman.jpg"};
    for (int f = 0; f < 2; f++) { // the first aborted with the old decoding on a heap of 255s

        char root[1024], dir[1100], path[1200];
        snprintf(root, sizeof(root), "%s/undefined_huffman_%d", g_tmp, f);
        snprintf(dir, sizeof(dir), "%s/c", root);
        snprintf(path, sizeof(path), "%s/u.jpg", dir);
        mkdir_or_die(root);
        mkdir_or_die(dir);
        size_t n;
        uint8_t *bytes = read_bytes(files[f], &n);
        write_bytes(path, bytes, n);
        free(bytes);
        int first = -2;
        const char *fills[3] = {"165", "255", "90"};
        for (int k = 0; k < 3; k++) {
            char *argv[] = {"/proc/self/exe", "--child", "jpeg_dirty", root, (char *)fills[k], NULL};
            char err[4096];
            int rc = run_process(argv, err, sizeof(err));
            CHECK_QUIET(rc == 0 || (rc == 1 && one_error_line(err)), "%s, heap of byte %s: exit status %d (-1: killed), stderr '%s'",
                  files[f], fills[k], rc, err);
            if (first == -2) first = rc;
            CHECK_QUIET(rc == first, "%s: exit status %d with a heap of byte %s, %d with byte %s", files[f], rc, fills[k], first,
                  fills[0]);
        }
    }
}

// JPEGs the fuzzer found to break Debian's stb_image (fuzz/regressions/image_file/),
// which no longer decodes JPEGs (libjpeg-turbo does): Huffman tables of more
// than 256 codes (stb wrote past the table), one behind a file starting
// FF FF D8 (stb skips 0xFF fill bytes before SOI; libjpeg and we do not), and a
// scan that ends early (stb's bit count went negative, a shift by 36). Each
// must end in one line naming the file.
static void test_jpeg_fuzzer_finds(void) {
    char root[1024], dir[1100], path[1200];
    snprintf(root, sizeof(root), "%s/jpeg_finds", g_tmp);
    snprintf(dir, sizeof(dir), "%s/c", root);
    snprintf(path, sizeof(path), "%s/u.jpg", dir);
    mkdir_or_die(root);
    mkdir_or_die(dir);
    const char *cases[5][2] = {
        // the DHT marker is at byte 43; its table at 47 counts 0+1+5+1+1+1+1+1+1+0+0+0+50+50+255+192 codes
        {"fuzzer_dht_over_256_codes.jpg", "u.jpg: Bogus Huffman table definition"},
        // a table whose counts run past the end of the file
        {"fuzzer_dht_counts_past_end.jpg", "u.jpg: Bogus Huffman table definition"},
        // its table at byte 79 counts 369 codes; not a JPEG file to libjpeg, and stb reads only PNG and BMP
        {"fuzzer_dht_after_fill_bytes.jpg", "u.jpg: unknown image type"},
        // the second component names quantization table 1, which no DQT defines
        {"fuzzer_truncated_scan.jpg", "u.jpg: Quantization table 0x01 was not defined"},
        // made by fuzz/make_seeds.py: a progressive 16x16 JPEG with its last scan repeated 600 times
        {"crafted_600_scans.jpg", "u.jpg: more than 500 progressive scans"},
    };
    for (int k = 0; k < 5; k++) {
        char src[1024];
        snprintf(src, sizeof(src), "fuzz/regressions/image_file/%s", cases[k][0]);
        size_t n;
        uint8_t *bytes = read_bytes(src, &n);
        write_bytes(path, bytes, n);
        free(bytes);
        expect_fail("folder", root, "3", "cannot decode image", cases[k][1]);
    }
}

// A legal PNG whose first IDAT chunk is empty (the image data is the
// concatenation of all IDAT chunks; another empty one sits between the two
// that hold the data): Debian's stb_image copied the zero bytes to NULL + 0
// (UBSan; fuzz/regressions/image_file/crafted_empty_first_idat.png, made by
// fuzz/make_seeds.py). The empty chunks are dropped before stb reads the
// file; the image must decode to the pixels the script wrote and decoded back
// with its own inflate-and-unfilter (dev/testdata/empty_first_idat_7x5.rgb, HWC).
static void test_png_empty_first_idat(void) {
    char root[1024], dir[1100], path[1200];
    snprintf(root, sizeof(root), "%s/empty_idat", g_tmp);
    snprintf(dir, sizeof(dir), "%s/c", root);
    snprintf(path, sizeof(path), "%s/e.png", dir);
    mkdir_or_die(root);
    mkdir_or_die(dir);
    size_t n, nref;
    uint8_t *bytes = read_bytes("fuzz/regressions/image_file/crafted_empty_first_idat.png", &n);
    write_bytes(path, bytes, n);
    free(bytes);
    uint8_t *ref = read_bytes("dev/testdata/empty_first_idat_7x5.rgb", &nref);
    const int w = 7, h = 5;
    CHECK(nref == (size_t)3 * w * h, "empty_first_idat_7x5.rgb has %zu bytes", nref);
    if (nref != (size_t)3 * w * h) {
        free(ref);
        return;
    }
    ImageSet s;
    image_set_load_folder(&s, root, 3, h, w, RESIZE_CROP); // the image's own size: no resizing
    int bad = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                bad += s.pixels[(size_t)c * h * w + y * w + x] != ref[((size_t)y * w + x) * 3 + c];
    CHECK(s.count == 1 && bad == 0, "PNG with an empty first IDAT: %d images, %d of %d bytes differ from the reference",
          s.count, bad, 3 * w * h);
    image_set_free(&s);
    free(ref);
    // a top-down BMP (negative height) declaring 25000 x -25000: stb reports the height as -25000, which
    // passed the limits (the fuzzer's was 179 x -48769); 54 bytes: file header, BITMAPINFOHEADER, no pixels
    uint8_t bmp[54] = {'B', 'M', 54, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0, 40, 0, 0, 0};
    int32_t bw = 25000, bh = -25000;
    memcpy(bmp + 18, &bw, 4);
    memcpy(bmp + 22, &bh, 4);
    bmp[26] = 1;  // planes
    bmp[28] = 24; // bits per pixel
    char bmp_path[1300];
    snprintf(bmp_path, sizeof(bmp_path), "%s/b.bmp", dir);
    remove(path);
    write_bytes(bmp_path, bmp, sizeof(bmp));
    expect_fail("folder", root, "3", "b.bmp declares 25000x25000 pixels", "more than the limit of 16384 per side");
    remove(bmp_path);
    // the fuzzer's find: an empty IDAT at the end of the file, cut off before its CRC (stb read it all the same)
    bytes = read_bytes("fuzz/regressions/image_file/fuzzer_empty_idat_cut_before_crc.png", &n);
    write_bytes(path, bytes, n);
    free(bytes);
    expect_fail("folder", root, "3", "e.png", "corrupt or truncated file");
}

static void test_folder(void) {
    char root[1024], p[1024];
    make_folder(tp(root, "fold"));

    ImageSet s;
    image_set_load_folder(&s, root, 3, 4, 4, RESIZE_CROP);
    CHECK_QUIET(s.count == 6 && s.num_classes == 2 && s.channels == 3 && s.height == 4 && s.width == 4,
          "folder: %d images, %d classes", s.count, s.num_classes);
    CHECK_QUIET(!strcmp(s.class_names[0], "a_plain") && !strcmp(s.class_names[1], "b_shapes"), "folder class names");
    const int want_labels[6] = {0, 0, 0, 1, 1, 1};
    for (int i = 0; i < 6 && i < s.count; i++) CHECK_QUIET(s.labels[i] == want_labels[i], "folder label %d", i);
    if (s.count == 6) {
        // x.jpg: JPEG rounds a flat colour by a level or two
        CHECK_QUIET(image_is(&s, 0, 0, 200, 3) && image_is(&s, 0, 1, 100, 3) && image_is(&s, 0, 2, 50, 3), "jpg colour");
        CHECK_QUIET(image_is(&s, 1, 0, 77, 0) && image_is(&s, 1, 1, 77, 0) && image_is(&s, 1, 2, 77, 0), "grey as 3 channels");
        CHECK_QUIET(image_is(&s, 2, 0, 1, 0) && image_is(&s, 2, 1, 2, 0) && image_is(&s, 2, 2, 3, 0), "RGBA upscaled, alpha dropped");
        CHECK_QUIET(image_is(&s, 3, 0, 10, 0) && image_is(&s, 3, 1, 20, 0) && image_is(&s, 3, 2, 30, 0), "bmp 6->4");
        int ok = 1;
        const uint8_t *c_img = s.pixels + 4 * image_set_image_bytes(&s);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 4; y++)
                for (int x = 0; x < 4; x++) ok &= c_img[c * 16 + y * 4 + x] == block_value(y, x, c);
        CHECK_QUIET(ok, "2x downscale of c.png (CHW order)");
        CHECK_QUIET(image_is(&s, 5, 0, 0, 0) && image_is(&s, 5, 1, 255, 0) && image_is(&s, 5, 2, 0, 0), "centre crop of d.png");
    }

    // stretch: d.png's bands become columns red, green, green, blue
    ImageSet st;
    image_set_load_folder(&st, root, 3, 4, 4, RESIZE_STRETCH);
    {
        const uint8_t *d = st.pixels + 5 * image_set_image_bytes(&st);
        int ok = 1;
        for (int y = 0; y < 4; y++) {
            ok &= d[0 * 16 + y * 4 + 0] == 255 && d[1 * 16 + y * 4 + 0] == 0;
            ok &= d[1 * 16 + y * 4 + 1] == 255 && d[1 * 16 + y * 4 + 2] == 255 && d[0 * 16 + y * 4 + 1] == 0;
            ok &= d[2 * 16 + y * 4 + 3] == 255 && d[1 * 16 + y * 4 + 3] == 0;
        }
        CHECK_QUIET(ok, "stretch of d.png");
    }
    image_set_free(&st);

    // one channel: stb_image's luminance (77 r + 150 g + 29 b) >> 8
    ImageSet g;
    image_set_load_folder(&g, root, 1, 4, 4, RESIZE_CROP);
    CHECK_QUIET(g.channels == 1 && g.count == 6, "grey load shape");
    CHECK_QUIET(image_is(&g, 1, 0, 77, 0), "grey png stays grey");
    CHECK_QUIET(image_is(&g, 3, 0, (77 * 10 + 150 * 20 + 29 * 30) >> 8, 0), "bmp as grey");
    CHECK_QUIET(image_is(&g, 5, 0, (150 * 255) >> 8, 0), "green as grey");
    image_set_free(&g);

    // shard round trip
    tp(p, "fold.bin");
    image_set_write_shard(&s, p);
    ImageSet back;
    image_set_read_shard(&back, p);
    CHECK_QUIET(sets_equal(&s, &back), "folder shard round trip");
    CHECK_QUIET(!file_exists(tp(p, "fold.bin.tmp")), "atomic writer left its temporary file");
    image_set_free(&back);

    // the tool: same images as the library, and the statistics printed
    {
        char out[1024], tool_out[1024];
        char *argv[] = {"./prepare_images", "--root", root, "--size", "4", "--channels", "3",
                        "--out", tp(out, "tool_out"), NULL};
        char err[4096];
        int rc = run_process(argv, err, sizeof(err));
        CHECK_QUIET(rc == 0, "prepare_images on a folder: exit %d, stderr %s", rc, err);
        image_set_read_shard(&back, tp(tool_out, "tool_out/train.bin"));
        CHECK_QUIET(sets_equal(&s, &back), "prepare_images shard differs from the library's load");
        image_set_free(&back);
        CHECK_QUIET(!file_exists(tp(tool_out, "tool_out/val.bin")), "val.bin written without a val split");
    }
    image_set_free(&s);

    // train/val splits, and a hold-out fraction
    {
        char r2[1024], out[1024];
        mkdir_or_die(tp(r2, "split"));
        make_folder(tp(p, "split/train"));
        make_folder(tp(p, "split/val"));
        char *argv[] = {"./prepare_images", "--root", r2, "--size", "2x3", "--out", tp(out, "split_out"), NULL};
        char err[4096];
        CHECK_QUIET(run_process(argv, err, sizeof(err)) == 0, "prepare_images with splits: %s", err);
        ImageSet a, b;
        image_set_read_shard(&a, tp(p, "split_out/train.bin"));
        image_set_read_shard(&b, tp(p, "split_out/val.bin"));
        CHECK_QUIET(a.count == 6 && b.count == 6 && a.height == 2 && a.width == 3 && sets_equal(&a, &b), "train/val shards");
        image_set_free(&a);
        image_set_free(&b);

        char *argv2[] = {"./prepare_images", "--root", r2, "--size", "2", "--val-fraction", "0.4",
                         "--out", tp(out, "split_out2"), NULL};
        CHECK_QUIET(run_process(argv2, err, sizeof(err)) == 0, "prepare_images --val-fraction: %s", err);
        ImageSet t, v, te;
        image_set_read_shard(&t, tp(p, "split_out2/train.bin"));
        image_set_read_shard(&v, tp(p, "split_out2/val.bin"));
        image_set_read_shard(&te, tp(p, "split_out2/test.bin"));
        // 3 per class, round(0.4 * 3) = 1 held out per class
        CHECK_QUIET(t.count == 4 && v.count == 2 && te.count == 6, "hold-out counts %d %d %d", t.count, v.count, te.count);
        CHECK_QUIET(v.count == 2 && v.labels[0] == 0 && v.labels[1] == 1, "hold-out is stratified");
        image_set_free(&t);
        image_set_free(&v);
        image_set_free(&te);

        // val with other classes than train
        snprintf(p, sizeof(p), "%s/split/val/c_extra", g_tmp);
        mkdir_or_die(p);
        snprintf(p, sizeof(p), "%s/split/val/c_extra/one.png", g_tmp);
        uint8_t px[4] = {1, 2, 3, 4};
        write_png_or_die(p, 2, 2, 1, px);
        CHECK_QUIET(run_process(argv, err, sizeof(err)) == 1 && one_error_line(err) && strstr(err, "different class"),
              "mismatched split classes: %s", err);
    }

    // bad flags of the tool: one line naming the flag
    {
        char err[4096];
        char *a1[] = {"./prepare_images", "--root", root, "--out", p, "--size", "0", NULL};
        CHECK_QUIET(run_process(a1, err, sizeof(err)) == 1 && one_error_line(err) && strstr(err, "--size"), "bad --size: %s", err);
        char *a2[] = {"./prepare_images", "--frobnicate", NULL};
        CHECK_QUIET(run_process(a2, err, sizeof(err)) == 1 && one_error_line(err) && strstr(err, "--frobnicate"), "unknown flag: %s", err);
        char *a3[] = {"./prepare_images", "--root", root, "--out", p, "--channels", "2", NULL};
        CHECK_QUIET(run_process(a3, err, sizeof(err)) == 1 && one_error_line(err) && strstr(err, "--channels"), "bad --channels: %s", err);
        char *a4[] = {"./prepare_images", "--root", root, NULL};
        CHECK_QUIET(run_process(a4, err, sizeof(err)) == 1 && one_error_line(err) && strstr(err, "--out"), "missing --out: %s", err);
        char *a5[] = {"./prepare_images", "--root", root, "--out", p, "--val-fraction", "1.5", NULL};
        CHECK_QUIET(run_process(a5, err, sizeof(err)) == 1 && one_error_line(err) && strstr(err, "--val-fraction"), "bad fraction: %s", err);
        char *a6[] = {"./prepare_images", "-h", NULL};
        CHECK_QUIET(run_process(a6, err, sizeof(err)) == 0, "-h exits 0");
    }

    // broken folders
    char r[1024], f[1024];
    uint8_t px[16 * 16 * 3];
    fill_rgb(px, 256, 9, 9, 9);
    mkdir_or_die(tp(r, "bad1"));
    mkdir_or_die(tp(p, "bad1/cls"));
    write_png_or_die(tp(f, "bad1/cls/good.png"), 4, 4, 3, px);
    write_bytes(tp(f, "bad1/cls/broken.png"), "\x89PNG but not really", 19);
    expect_fail("folder", r, "3", f, "cannot decode");

    // many files, two broken: the first in order is named whatever the threads do
    mkdir_or_die(tp(r, "bad2"));
    mkdir_or_die(tp(p, "bad2/cls"));
    for (int i = 0; i < 40; i++) {
        tp(f, "bad2/cls/%02d.png", i);
        if (i == 13 || i == 27) write_bytes(f, "garbage", 7);
        else write_png_or_die(f, 16, 16, 3, px);
    }
    expect_fail("folder", r, "3", "13.png", "cannot decode");

    mkdir_or_die(tp(r, "bad3"));
    mkdir_or_die(tp(p, "bad3/cls"));
    write_bytes(tp(f, "bad3/cls/empty.jpg"), "", 0);
    expect_fail("folder", r, "3", f, "empty");

    mkdir_or_die(tp(r, "bad4"));
    mkdir_or_die(tp(p, "bad4/a"));
    mkdir_or_die(tp(p, "bad4/b"));
    write_png_or_die(tp(f, "bad4/a/ok.png"), 4, 4, 3, px);
    write_bytes(tp(f, "bad4/b/readme.txt"), "x", 1);
    expect_fail("folder", r, "3", p, "no images");

    mkdir_or_die(tp(r, "bad5"));
    write_png_or_die(tp(f, "bad5/loose.png"), 4, 4, 3, px);
    expect_fail("folder", r, "3", r, "no class");

    expect_fail("folder", tp(r, "no_such_dir"), "3", r, "cannot open");
    expect_fail("folder", root, "2", "channels", NULL);
}

// ---------------------------------------------------------------------------
// shards by hand, following the layout in images.h

typedef struct {
    const char *magic;
    uint32_t version, count, height, width, channels, num_classes;
    int label_of_first;   // labels are {label_of_first, 0}
    int unterminated_name;
    int bad_crc;
    int cut, extra;       // bytes removed from / added to the end
} HandShard;

// Version 1 and 2 by hand from the layout in images.h. Version 2's
// statistics: mean = sum / (n 255), std = sqrt(sum of squares / n - (sum / n)^2) / 255
// over the n values of each channel, stored as float32.
static size_t hand_shard_bytes(HandShard h, uint8_t *buf) {
    memset(buf, 0, 64);
    memcpy(buf, h.magic, 8);
    uint32_t fields[7] = {h.version, h.count, h.height, h.width, h.channels, h.num_classes, 0};
    for (int i = 0; i < 7; i++)
        for (int b = 0; b < 4; b++) buf[8 + 4 * i + b] = (uint8_t)(fields[i] >> (8 * b));
    size_t n = 64;
    for (uint32_t k = 0; k < h.num_classes; k++) {
        memset(buf + n, 0, 64);
        if (h.unterminated_name && k == 1) memset(buf + n, 'x', 64);
        else snprintf((char *)buf + n, 64, "class-%u", k);
        n += 64;
    }
    for (uint32_t i = 0; i < h.count; i++) {
        uint32_t lab = i == 0 ? (uint32_t)h.label_of_first : 0;
        for (int b = 0; b < 4; b++) buf[n++] = (uint8_t)(lab >> (8 * b));
    }
    size_t table = n, img = (size_t)h.channels * h.height * h.width;
    if (h.version == 2) n += 4 * (size_t)h.count;
    size_t pix = n;
    for (uint32_t i = 0; i < h.count * img; i++) buf[n++] = (uint8_t)(i * 7);
    uint32_t crc;
    if (h.version == 2) {
        for (uint32_t i = 0; i < h.count; i++) {
            uint32_t c = (uint32_t)crc32(0L, buf + pix + i * img, (uInt)img);
            for (int b = 0; b < 4; b++) buf[table + 4 * i + b] = (uint8_t)(c >> (8 * b));
        }
        size_t plane = (size_t)h.height * h.width;
        for (uint32_t c = 0; c < h.channels; c++) {
            double sum = 0, sq = 0, values = (double)h.count * plane;
            for (uint32_t i = 0; i < h.count; i++)
                for (size_t j = 0; j < plane; j++) {
                    double v = buf[pix + i * img + c * plane + j];
                    sum += v;
                    sq += v * v;
                }
            double m = sum / values;
            float mean = (float)(m / 255.0), sd = (float)(sqrt(sq / values - m * m) / 255.0);
            memcpy(buf + 36 + 4 * c, &mean, 4);
            memcpy(buf + 48 + 4 * c, &sd, 4);
        }
        crc = (uint32_t)crc32(0L, buf + 64, (uInt)(pix - 64));     // names, labels, image CRCs
        crc = (uint32_t)crc32(crc, buf, 32);                        // then the header around the CRC field
        crc = (uint32_t)crc32(crc, buf + 36, 28);
    } else {
        crc = (uint32_t)crc32(0L, buf + 64, (uInt)(n - 64));
    }
    if (h.bad_crc) crc ^= 1;
    for (int b = 0; b < 4; b++) buf[32 + b] = (uint8_t)(crc >> (8 * b));
    return n;
}

static void write_hand_shard(const char *path, HandShard h) {
    uint8_t buf[4096];
    size_t n = hand_shard_bytes(h, buf);
    n += (size_t)h.extra;
    n -= (size_t)h.cut;
    write_bytes(path, buf, n);
}

static void test_shards(void) {
    char p[1024];
    const HandShard good2 = {"IMGSHARD", 2, 2, 2, 3, 1, 2, 1, 0, 0, 0, 0};
    write_hand_shard(tp(p, "hand2.bin"), good2);
    for (int version = 1; version <= 2; version++) {
        const HandShard good = {"IMGSHARD", (uint32_t)version, 2, 2, 3, 1, 2, 1, 0, 0, 0, 0};
        write_hand_shard(tp(p, "hand%d.bin", version), good);
        ImageSet s;
        image_set_read_shard(&s, p);
        CHECK_QUIET(s.count == 2 && s.height == 2 && s.width == 3 && s.channels == 1 && s.num_classes == 2 &&
              s.version == version, "hand shard v%d shape", version);
        CHECK_QUIET(s.labels[0] == 1 && s.labels[1] == 0 && !strcmp(s.class_names[1], "class-1"), "hand shard labels/names");
        int ok = 1;
        for (int i = 0; i < 12; i++) ok &= s.pixels[i] == (uint8_t)(i * 7);
        CHECK_QUIET(ok, "hand shard pixels");
        // our writer (version 2) produces the bytes of the hand-made version 2
        char q[1024];
        image_set_write_shard(&s, tp(q, "hand%d_rewritten.bin", version));
        size_t na, nb;
        uint8_t *a = read_bytes(tp(p, "hand2.bin"), &na), *b = read_bytes(q, &nb);
        CHECK_QUIET(na == nb && !memcmp(a, b, na), "writer output (from a v%d shard) differs from the documented layout", version);
        free(a);
        free(b);
        // the header's statistics are image_set_channel_stats' values
        ImageSet back;
        image_set_read_shard(&back, q);
        double m, sd;
        image_set_channel_stats(&s, &m, &sd);
        CHECK_QUIET(back.has_stats && back.stats_mean[0] == (float)m && back.stats_std[0] == (float)sd,
              "stored statistics %g %g, computed %g %g", back.stats_mean[0], back.stats_std[0], m, sd);
        image_set_free(&back);
        // streamed: the same metadata, the same pixels image by image
        ImageSet st;
        image_set_open_shard(&st, p);
        uint8_t img[6];
        char err[1400];
        ok = st.pixels == NULL && st.count == 2 && st.labels[0] == 1 && !strcmp(st.class_names[1], "class-1");
        for (int i = 0; i < 2; i++) {
            const uint8_t *got = image_set_image(&st, i, img, err, sizeof(err));
            ok &= got == img && !memcmp(img, s.pixels + 6 * i, 6);
        }
        CHECK_QUIET(ok, "streamed v%d shard: labels, names or pixels differ from the whole read", version);
        double m2, sd2;
        image_set_channel_stats(&st, &m2, &sd2);
        CHECK_QUIET(m2 == m && sd2 == sd, "streamed statistics differ");
        image_set_free(&st);
        image_set_free(&s);

        HandShard h;
        h = good; h.magic = "IMGSHARX"; write_hand_shard(tp(p, "s%d_magic.bin", version), h);
        expect_fail("shard", p, NULL, p, "magic");
        h = good; h.version = 3; write_hand_shard(tp(p, "s%d_version.bin", version), h);
        expect_fail("shard", p, NULL, p, "version");
        h = good; h.cut = 1; write_hand_shard(tp(p, "s%d_cut.bin", version), h);
        expect_fail("shard", p, NULL, p, "truncated");
        h = good; h.cut = 100; write_hand_shard(tp(p, "s%d_cut_hdr.bin", version), h);
        expect_fail("shard", p, NULL, p, "truncated");
        h = good; h.extra = 1; write_hand_shard(tp(p, "s%d_extra.bin", version), h);
        expect_fail("shard", p, NULL, p, "trailing");
        h = good; h.bad_crc = 1; write_hand_shard(tp(p, "s%d_crc.bin", version), h);
        expect_fail("shard", p, NULL, p, "CRC");
        expect_fail("stream", p, NULL, p, "CRC");
        h = good; h.label_of_first = 2; write_hand_shard(tp(p, "s%d_label.bin", version), h);
        expect_fail("shard", p, NULL, p, "out of range");
        expect_fail("stream", p, NULL, p, "out of range");
        h = good; h.label_of_first = -1; write_hand_shard(tp(p, "s%d_label_neg.bin", version), h);
        expect_fail("shard", p, NULL, p, "out of range");
        h = good; h.channels = 2; h.count = 1; write_hand_shard(tp(p, "s%d_channels.bin", version), h);
        expect_fail("shard", p, NULL, p, "channels");
        h = good; h.unterminated_name = 1; write_hand_shard(tp(p, "s%d_name.bin", version), h);
        expect_fail("shard", p, NULL, p, "NUL");
        h = good; h.count = 0; write_hand_shard(tp(p, "s%d_zero.bin", version), h);
        expect_fail("shard", p, NULL, p, "count");

        // a flipped pixel byte: version 1 streamed is caught by the pass at
        // start-up; version 2 opens (its header CRC is fine) and the image is
        // caught when read, whole or streamed
        uint8_t buf[4096];
        size_t n = hand_shard_bytes(good, buf);
        buf[n - 4] ^= 0x10; // image 1
        write_bytes(tp(p, "s%d_pixel.bin", version), buf, n);
        if (version == 1) {
            expect_fail("shard", p, NULL, p, "CRC");
            expect_fail("stream", p, NULL, p, "CRC");
        } else {
            expect_fail("shard", p, NULL, "image 1 is corrupt", p);
            expect_fail("stream_read", p, "1", "image 1 is corrupt", p);
            ImageSet t;
            image_set_open_shard(&t, p); // opens: only the read of image 1 fails
            CHECK_QUIET(image_set_image(&t, 0, img, err, sizeof(err)) != NULL && image_set_image(&t, 1, img, err, sizeof(err)) == NULL &&
                  strstr(err, "image 1 is corrupt"), "v2 image CRC checked on read: %s", err);
            image_set_free(&t);
            // a flipped byte in the statistics, the image CRC table or a label: the header CRC
            const size_t at[3] = {37, 64 + 2 * 64 + 8 + 1, 64 + 2 * 64};
            for (int k = 0; k < 3; k++) {
                n = hand_shard_bytes(good, buf);
                buf[at[k]] ^= 0x01;
                write_bytes(tp(p, "s2_meta%d.bin", k), buf, n);
                expect_fail("stream", p, NULL, p, "CRC");
                expect_fail("shard", p, NULL, p, "CRC");
            }
            // statistics out of range are refused before the CRC
            n = hand_shard_bytes(good, buf);
            float bad = 2.0f;
            memcpy(buf + 36, &bad, 4);
            write_bytes(tp(p, "s2_stats.bin"), buf, n);
            expect_fail("stream", p, NULL, p, "statistics");
        }
    }
    expect_fail("shard", tp(p, "s_missing.bin"), NULL, p, "cannot open");
    expect_fail("stream", p, NULL, p, "cannot open");
}

// ---------------------------------------------------------------------------
// loader

// reference augmentation: pad with k zeros, take the H x W window at (dy,
// dx), mirror it if flip; src and out are [C][H][W] uint8
static void ref_augment(const uint8_t *src, int C, int H, int W, int k, int dy, int dx, int flip, uint8_t *out) {
    int PH = H + 2 * k, PW = W + 2 * k;
    uint8_t *padded = calloc_or_fail((size_t)C * PH * PW, 1, "padded");
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) padded[(c * PH + y + k) * PW + x + k] = src[(c * H + y) * W + x];
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                uint8_t v = padded[(c * PH + y + dy) * PW + x + dx];
                out[(c * H + y) * W + (flip ? W - 1 - x : x)] = v;
            }
    free(padded);
}

static void test_augment(int k, int flip) {
    // one 3-channel 4x4 image with distinct values
    ImageSet s;
    make_index_set(&s, 1, 3, 4, 4);
    for (int i = 0; i < 48; i++) s.pixels[i] = (uint8_t)(1 + i);
    float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
    ImageLoader l;
    image_loader_init(&l, &s, 1, 42, 1, k, flip, mean, std);
    int n_cand = (2 * k + 1) * (2 * k + 1) * (flip ? 2 : 1);
    uint8_t *cand = malloc_or_fail((size_t)n_cand * 48, "candidates");
    int idx = 0;
    for (int dy = 0; dy <= 2 * k; dy++)
        for (int dx = 0; dx <= 2 * k; dx++)
            for (int f = 0; f <= flip; f++) ref_augment(s.pixels, 3, 4, 4, k, dy, dx, f, cand + 48 * idx++);
    int hits[64] = {0}, unmatched = 0, shape_ok = 1;
    float out[49];
    int lab;
    const int trials = 3000;
    for (int t = 0; t < trials; t++) {
        out[48] = 12345.0f; // canary: nothing written past one image
        int n = image_loader_next(&l, out, &lab);
        shape_ok &= n == 1 && lab == 0 && out[48] == 12345.0f;
        int found = -1;
        for (int c = 0; c < n_cand && found < 0; c++) {
            int eq = 1;
            for (int j = 0; j < 48; j++) eq &= out[j] == (float)cand[48 * c + j] / 255.0f;
            if (eq) found = c;
        }
        if (found < 0) unmatched++;
        else hits[found]++;
    }
    CHECK_QUIET(shape_ok, "augmented batches: count, label or size wrong (k=%d flip=%d)", k, flip);
    CHECK_QUIET(unmatched == 0, "%d augmented images are no pad-crop-flip of the source (k=%d flip=%d)", unmatched, k, flip);
    // each transform is equally likely: expected trials / n_cand, binomial
    // sd under 12 here; allow 5 sd
    double expect = (double)trials / n_cand;
    int spread_ok = 1;
    for (int c = 0; c < n_cand; c++) spread_ok &= fabs(hits[c] - expect) < 5 * sqrt(expect);
    CHECK_QUIET(spread_ok, "augmentation draws are not uniform over the %d transforms (k=%d flip=%d)", n_cand, k, flip);
    free(cand);
    image_loader_free(&l);
    free_test_set(&s);
}

static void test_loader(void) {
    ImageSet s;
    make_index_set(&s, 10, 1, 2, 3);
    const int chw = 6;
    float mean = 0.5f, std = 0.25f;
    float img[5 * 6];
    int lab[5];

    // a shuffled epoch is a permutation; batches per epoch = 10 / 5
    ImageLoader l;
    image_loader_init(&l, &s, 5, 123, 1, 0, 0, &mean, &std);
    CHECK_QUIET(image_loader_batches_per_epoch(&l) == 2, "training batches per epoch");
    int epoch_labels[4][10];
    for (int e = 0; e < 4; e++)
        for (int b = 0; b < 2; b++) {
            int n = image_loader_next(&l, img, lab);
            CHECK_QUIET(n == 5, "training batch has %d images", n);
            for (int i = 0; i < 5; i++) {
                epoch_labels[e][b * 5 + i] = lab[i];
                // the image is the one its label says (image i is constant i)
                float want = ((float)lab[i] / 255.0f - 0.5f) / 0.25f;
                int ok = 1;
                for (int j = 0; j < chw; j++) ok &= img[i * chw + j] == want;
                CHECK_QUIET(ok, "image does not match its label");
            }
        }
    for (int e = 0; e < 4; e++) {
        int seen[10] = {0}, ok = 1;
        for (int i = 0; i < 10; i++) seen[epoch_labels[e][i]]++;
        for (int i = 0; i < 10; i++) ok &= seen[i] == 1;
        CHECK_QUIET(ok, "epoch %d is not a permutation", e);
    }
    int differ = 0, shuffled = 0;
    for (int i = 0; i < 10; i++) {
        differ += epoch_labels[0][i] != epoch_labels[1][i];
        shuffled += epoch_labels[0][i] != i;
    }
    CHECK_QUIET(differ > 0 && shuffled > 0, "epochs 0 and 1 have the same order, or epoch 0 is not shuffled");
    ImageLoaderState st = image_loader_get_state(&l);
    CHECK_QUIET(st.epoch == 3 && st.pos == 10, "state after 8 batches: epoch %lld pos %lld", (long long)st.epoch, (long long)st.pos);

    // same seed, same order; another seed, another order; the order of an
    // epoch depends on (seed, epoch) only
    ImageLoader l2, l3;
    image_loader_init(&l2, &s, 5, 123, 1, 0, 0, &mean, &std);
    image_loader_init(&l3, &s, 5, 124, 1, 0, 0, &mean, &std);
    ImageLoaderState jump = {2, 0, image_loader_get_state(&l2).rng_state};
    int same = 1, other = 0;
    for (int b = 0; b < 2; b++) {
        image_loader_next(&l2, img, lab);
        for (int i = 0; i < 5; i++) same &= lab[i] == epoch_labels[0][b * 5 + i];
        image_loader_next(&l3, img, lab);
        for (int i = 0; i < 5; i++) other += lab[i] != epoch_labels[0][b * 5 + i];
    }
    CHECK_QUIET(same, "same seed gave another order");
    CHECK_QUIET(other > 0, "another seed gave the same order");
    image_loader_set_state(&l2, jump);
    same = 1;
    for (int b = 0; b < 2; b++) {
        image_loader_next(&l2, img, lab);
        for (int i = 0; i < 5; i++) same &= lab[i] == epoch_labels[2][b * 5 + i];
    }
    CHECK_QUIET(same, "jumping to epoch 2 did not give epoch 2's order");
    // reset: back to the start
    image_loader_reset(&l2);
    image_loader_next(&l2, img, lab);
    same = 1;
    for (int i = 0; i < 5; i++) same &= lab[i] == epoch_labels[0][i];
    CHECK_QUIET(same, "reset did not restart epoch 0");
    image_loader_free(&l);
    image_loader_free(&l2);
    image_loader_free(&l3);

    // B = 3 over 10 images: 3 batches, one image skipped, then a new epoch
    image_loader_init(&l, &s, 3, 5, 1, 0, 0, &mean, &std);
    CHECK_QUIET(image_loader_batches_per_epoch(&l) == 3, "batches per epoch with a partial batch");
    int seen[10] = {0}, ok = 1;
    for (int b = 0; b < 3; b++) {
        ok &= image_loader_next(&l, img, lab) == 3;
        for (int i = 0; i < 3; i++) seen[lab[i]]++;
    }
    int total = 0;
    for (int i = 0; i < 10; i++) { ok &= seen[i] <= 1; total += seen[i]; }
    CHECK_QUIET(ok && total == 9, "partial training epoch");
    image_loader_next(&l, img, lab);
    st = image_loader_get_state(&l);
    CHECK_QUIET(st.epoch == 1 && st.pos == 3, "after the rollover: epoch %lld pos %lld", (long long)st.epoch, (long long)st.pos);
    image_loader_free(&l);

    // exact resume with augmentation: save the state, go on, restore into a
    // fresh loader, the next batches are identical
    {
        ImageSet big;
        make_index_set(&big, 10, 3, 5, 4);
        for (size_t i = 0; i < (size_t)10 * 60; i++) big.pixels[i] = (uint8_t)(i * 31 + 7);
        float m3[3] = {0.4f, 0.5f, 0.6f}, s3[3] = {0.2f, 0.3f, 0.4f};
        ImageLoader a, b;
        image_loader_init(&a, &big, 3, 99, 1, 2, 1, m3, s3);
        float x[3 * 60], y[8][3 * 60];
        int lx[3], ly[8][3];
        for (int i = 0; i < 7; i++) image_loader_next(&a, x, lx);
        ImageLoaderState saved = image_loader_get_state(&a);
        for (int i = 0; i < 8; i++) image_loader_next(&a, y[i], ly[i]);
        image_loader_init(&b, &big, 3, 99, 1, 2, 1, m3, s3);
        image_loader_set_state(&b, saved);
        int eq = 1;
        for (int i = 0; i < 8; i++) {
            image_loader_next(&b, x, lx);
            eq &= !memcmp(x, y[i], sizeof(x)) && !memcmp(lx, ly[i], sizeof(lx));
        }
        CHECK_QUIET(eq, "resumed loader diverged");
        image_loader_free(&a);
        image_loader_free(&b);
        free_test_set(&big);
    }

    // evaluation: stored order, last batch partial, then 0, then a new pass
    image_loader_init(&l, &s, 4, 5, 0, 0, 0, &mean, &std);
    CHECK_QUIET(image_loader_batches_per_epoch(&l) == 3, "eval batches per epoch");
    int counts[5];
    int order_ok = 1, next_label = 0;
    for (int b = 0; b < 5; b++) {
        for (int i = 0; i < 4 * chw; i++) img[i] = 99.0f;
        counts[b] = image_loader_next(&l, img, lab);
        for (int i = 0; i < counts[b]; i++) order_ok &= lab[i] == next_label++ % 10;
        if (b == 2) {
            int pad_ok = 1;
            for (int i = 2; i < 4; i++) {
                pad_ok &= lab[i] == -1;
                for (int j = 0; j < chw; j++) pad_ok &= img[i * chw + j] == 0.0f;
            }
            CHECK_QUIET(pad_ok, "partial eval batch is not padded with zeros and label -1");
        }
    }
    CHECK_QUIET(counts[0] == 4 && counts[1] == 4 && counts[2] == 2 && counts[3] == 0 && counts[4] == 4,
          "eval counts %d %d %d %d %d", counts[0], counts[1], counts[2], counts[3], counts[4]);
    CHECK_QUIET(order_ok, "eval order is not the stored order");
    image_loader_free(&l);
    free_test_set(&s);

    // normalisation by hand: (v/255 - mean) / std
    {
        ImageSet n3;
        make_index_set(&n3, 3, 3, 1, 2);
        const uint8_t vals[3] = {0, 51, 255};
        for (int i = 0; i < 3; i++) memset(n3.pixels + i * 6, vals[i], 6);
        float m[3] = {0.1f, 0.2f, 0.3f}, sd[3] = {0.5f, 1.0f, 2.0f};
        // v = 0: -0.2, -0.2, -0.15; v = 51 (0.2): 0.2, 0, -0.05; v = 255: 1.8, 0.8, 0.35
        const float want[3][3] = {{-0.2f, -0.2f, -0.15f}, {0.2f, 0.0f, -0.05f}, {1.8f, 0.8f, 0.35f}};
        ImageLoader e;
        image_loader_init(&e, &n3, 3, 0, 0, 0, 0, m, sd);
        float out[18];
        int lo[3];
        image_loader_next(&e, out, lo);
        int good = 1;
        for (int i = 0; i < 3; i++)
            for (int c = 0; c < 3; c++)
                for (int j = 0; j < 2; j++) good &= fabsf(out[i * 6 + c * 2 + j] - want[i][c]) < 1e-6f;
        CHECK_QUIET(good, "normalisation");
        image_loader_free(&e);
        free_test_set(&n3);
    }

    test_augment(1, 1);
    test_augment(2, 0);
    test_augment(0, 1);

    expect_fail("loader", "batch_too_big", NULL, "batch size", NULL);
    expect_fail("loader", "eval_flip", NULL, "augmented", NULL);
    expect_fail("loader", "zero_std", NULL, "std", NULL);
    expect_fail("loader", "big_pad", NULL, "padding", NULL);
    expect_fail("loader", "bad_state", NULL, "state", NULL);
    expect_fail("loader", "mix_odd", NULL, "must be even", NULL);
    expect_fail("loader", "rrc_eval", NULL, "never augmented", NULL);
    expect_fail("loader", "smooth_eval", NULL, "no soft targets", NULL);
    expect_fail("loader", "pad_size", NULL, "crop padding needs", NULL);
    expect_fail("loader", "small", NULL, "smaller than the model's", NULL);
    expect_fail("loader", "scale", NULL, "scale", NULL);
    expect_fail("loader", "soft_next", NULL, "image_loader_next_targets", NULL);
}

// ---------------------------------------------------------------------------
// hold-out split and flag values

static void test_holdout_and_values(void) {
    ImageSet s;
    make_index_set(&s, 30, 1, 1, 1);
    s.num_classes = 3;
    for (int i = 0; i < 30; i++) s.labels[i] = i % 3;
    ImageSet t, v;
    image_set_split_holdout(&s, 0.2, 5, &t, &v);
    CHECK_QUIET(t.count == 24 && v.count == 6, "hold-out sizes %d %d", t.count, v.count);
    int per[3] = {0}, seen[30] = {0}, sorted = 1;
    for (int i = 0; i < v.count; i++) { per[v.labels[i]]++; seen[v.pixels[i]]++; if (i) sorted &= v.pixels[i] > v.pixels[i - 1]; }
    for (int i = 0; i < t.count; i++) { seen[t.pixels[i]]++; if (i) sorted &= t.pixels[i] > t.pixels[i - 1]; }
    int once = 1;
    for (int i = 0; i < 30; i++) once &= seen[i] == 1;
    CHECK_QUIET(per[0] == 2 && per[1] == 2 && per[2] == 2, "hold-out not stratified");
    CHECK_QUIET(once && sorted, "hold-out split is not a partition in stored order");
    for (int i = 0; i < t.count; i++) CHECK_QUIET(t.labels[i] == t.pixels[i] % 3, "hold-out labels follow images");
    image_set_free(&t);
    image_set_free(&v);
    free_test_set(&s);

    float out[3];
    parse_channel_values_or_fail("0.5", 3, "--mean", 0, out);
    CHECK_QUIET(out[0] == 0.5f && out[1] == 0.5f && out[2] == 0.5f, "one value for all channels");
    parse_channel_values_or_fail("0.1,0.2,-3e-1", 3, "--mean", 0, out);
    CHECK_QUIET(out[0] == 0.1f && out[1] == 0.2f && out[2] == -0.3f, "three values");
    expect_fail("values", "0.1,0.2", "0", "--mean", "0.1,0.2");
    expect_fail("values", "abc", "0", "--mean", "abc");
    expect_fail("values", "0.1,,0.3", "0", "--mean", NULL);
    expect_fail("values", "0.1,0.2,0.3,0.4", "0", "--mean", NULL);
    expect_fail("values", "0.1,0,0.3", "1", "--mean", "positive");
}

// ---------------------------------------------------------------------------
// natural order (timm's natural_key), against a hand-written list

static void test_natural_order(void) {
    // the order below, written by hand from the rule: text runs lower-cased,
    // digit runs by value, a prefix first, ties (equal keys) by strcmp
    const char *want[] = {"007", "7", "9", "10", "a", "a2", "ab1", "B", "b", "Class1", "class01", "class1b",
                          "class2", "class10", "img1", "img.1", "img_9", "img_10", "n1", "n01440764",
                          "n01443537", "x"};
    const int n = (int)(sizeof(want) / sizeof(want[0]));
    const int scramble[] = {13, 5, 0, 21, 8, 17, 2, 11, 19, 3, 15, 7, 1, 20, 9, 4, 16, 12, 6, 18, 10, 14};
    const char *names[64];
    for (int i = 0; i < n; i++) names[i] = want[scramble[i]];
    qsort(names, (size_t)n, sizeof(char *), (int (*)(const void *, const void *))image_name_natural_cmp_ptr);
    int ok = 1;
    for (int i = 0; i < n; i++) ok &= !strcmp(names[i], want[i]);
    CHECK_QUIET(ok, "natural order of %d names differs from the hand-written list", n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            int c = image_name_natural_cmp(want[i], want[j]);
            if ((i < j && c >= 0) || (i > j && c <= 0) || (i == j && c != 0)) {
                CHECK_QUIET(0, "natural_cmp(%s, %s) = %d", want[i], want[j], c);
                return;
            }
        }
    // a folder: classes c10, c2, C1 are labelled C1 = 0, c2 = 1, c10 = 2 (strcmp: C1, c10, c2)
    char root[1024], p[1024];
    mkdir_or_die(tp(root, "natural"));
    const char *cls[3] = {"c10", "c2", "C1"};
    uint8_t px[4] = {10, 20, 30, 40};
    for (int k = 0; k < 3; k++) {
        mkdir_or_die(tp(p, "natural/%s", cls[k]));
        px[0] = (uint8_t)(100 + k); // tells the images apart
        write_png_or_die(tp(p, "natural/%s/img10.png", cls[k]), 2, 2, 1, px);
        px[0] = (uint8_t)(200 + k);
        write_png_or_die(tp(p, "natural/%s/img9.png", cls[k]), 2, 2, 1, px);
    }
    ImageSet s;
    image_set_load_folder(&s, root, 1, 2, 2, RESIZE_STRETCH);
    CHECK_QUIET(s.num_classes == 3 && !strcmp(s.class_names[0], "C1") && !strcmp(s.class_names[1], "c2") &&
          !strcmp(s.class_names[2], "c10"), "folder classes in natural order: %s %s %s", s.class_names[0],
          s.class_names[1], s.class_names[2]);
    // files too: img9 before img10; C1's images first
    CHECK_QUIET(s.count == 6 && s.pixels[0] == 202 && s.pixels[4] == 102 && s.pixels[8] == 201 && s.labels[0] == 0 &&
          s.labels[2] == 1 && s.labels[5] == 2, "folder images in natural order");
    image_set_free(&s);
}

// ---------------------------------------------------------------------------
// augmentation against dev/aug_ref.py (torchvision's RandomResizedCrop, timm's Mixup)

static void read_ref(void *dst, size_t size, size_t count, FILE *f) { fread_or_fail(dst, size, count, f, "dev/testdata/aug_ref.bin"); }

static void test_augmentation_reference(void) {
    const char *path = "dev/testdata/aug_ref.bin";
    FILE *f = fopen_or_fail(path, "rb");
    int32_t hdr[4];
    read_ref(hdr, 4, 4, f);
    if (hdr[0] != 20261203 || hdr[1] != 1) fail("%s: bad magic or version", path);
    for (int c = 0; c < hdr[2]; c++) {
        uint64_t seed, state;
        int32_t dims[4];
        double sr[4];
        read_ref(&seed, 8, 1, f);
        read_ref(dims, 4, 4, f);
        read_ref(sr, 8, 4, f);
        int H = dims[0], W = dims[1], count = dims[2];
        int32_t *boxes = malloc_or_fail((size_t)count * 16, "boxes");
        read_ref(boxes, 4, (size_t)count * 4, f);
        read_ref(&state, 8, 1, f);
        Rng r;
        rng_seed(&r, seed);
        int same = 0;
        for (int i = 0; i < count; i++) {
            ImageAugDraw d;
            image_rrc_box(&r, H, W, sr, sr + 2, &d);
            same += d.y == boxes[4 * i] && d.x == boxes[4 * i + 1] && d.h == boxes[4 * i + 2] && d.w == boxes[4 * i + 3];
        }
        CHECK_QUIET(same == count && r.state == state, "RandomResizedCrop %dx%d scale (%g, %g) ratio (%g, %g): %d of %d boxes "
              "equal to torchvision's on the same draws%s", H, W, sr[0], sr[1], sr[2], sr[3], same, count,
              r.state == state ? "" : ", and the RNG ends elsewhere");
        free(boxes);
    }
    for (int c = 0; c < hdr[3]; c++) {
        int32_t d8[8];
        double lam_sm[2], lam_out;
        int32_t box[4];
        read_ref(d8, 4, 8, f);
        read_ref(lam_sm, 8, 2, f);
        int B = d8[0], C = d8[1], H = d8[2], W = d8[3], K = d8[4], cut = d8[5];
        size_t n = (size_t)B * C * H * W;
        int *labels = malloc_or_fail((size_t)B * sizeof(int), "labels");
        float *x = malloc_or_fail(n * sizeof(float), "images"), *want = malloc_or_fail(n * sizeof(float), "images");
        float *tw = malloc_or_fail((size_t)B * K * sizeof(float), "targets"), *t = malloc_or_fail((size_t)B * K * sizeof(float), "targets");
        read_ref(labels, 4, (size_t)B, f);
        read_ref(x, 4, n, f);
        read_ref(box, 4, 4, f);
        read_ref(&lam_out, 8, 1, f);
        read_ref(want, 4, n, f);
        read_ref(tw, 4, (size_t)B * K, f);
        ImageMixDraw d = {0};
        if (cut) image_cutmix_box(H, W, lam_sm[0], d8[6], d8[7], &d);
        else { d.mixed = 1; d.lam = lam_sm[0]; }
        int box_ok = !cut || (d.yl == box[0] && d.yh == box[1] && d.xl == box[2] && d.xh == box[3]);
        image_mix_batch(x, B, C, H, W, &d);
        image_mix_targets(t, labels, B, K, lam_sm[1], &d);
        double ex = 0, et = 0, mx = 0;
        for (size_t i = 0; i < n; i++) { ex = fmax(ex, fabs(x[i] - want[i])); mx = fmax(mx, fabs(want[i])); }
        for (size_t i = 0; i < (size_t)B * K; i++) et = fmax(et, fabs(t[i] - tw[i]));
        CHECK_QUIET(box_ok && d.lam == lam_out && ex <= (cut ? 0.0 : 1.2e-7 * mx) && et <= 1.2e-7,
              "%s B %d lam %g: box (%d %d %d %d) vs timm's (%d %d %d %d), lam %.9f vs %.9f, images off by %.2e, "
              "targets by %.2e", cut ? "CutMix" : "mixup", B, lam_sm[0], d.yl, d.yh, d.xl, d.xh, box[0], box[1],
              box[2], box[3], d.lam, lam_out, ex, et);
        free(labels); free(x); free(want); free(tw); free(t);
    }
    fclose(f);
}

// Beta(alpha, alpha): moments against the formulas, the distribution against
// the closed-form CDFs of alpha 1/2 (arcsine), 1 (uniform), 2 (3x^2 - 2x^3)
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_beta(void) {
    const int n = 200000;
    double *v = malloc_or_fail((size_t)n * sizeof(double), "samples");
    const double alphas[5] = {0.2, 0.5, 0.8, 1.0, 2.0};
    for (int a = 0; a < 5; a++) {
        double al = alphas[a];
        Rng r;
        rng_seed(&r, 99 + a);
        double sum = 0, sq = 0;
        int inside = 1;
        for (int i = 0; i < n; i++) {
            v[i] = image_beta_sample(&r, al);
            inside &= v[i] >= 0.0 && v[i] <= 1.0;
            sum += v[i];
            sq += v[i] * v[i];
        }
        double mean = sum / n, var = sq / n - mean * mean, want_var = 1.0 / (4.0 * (2.0 * al + 1.0));
        // the sample mean's sd is sqrt(var / n); the variance's, roughly var sqrt(2 / n)
        CHECK_QUIET(inside && fabs(mean - 0.5) < 5 * sqrt(want_var / n) && fabs(var - want_var) < 5 * want_var * sqrt(3.0 / n),
              "Beta(%g, %g): mean %.4f (0.5), variance %.5f (%.5f)", al, al, mean, var, want_var);
        if (al == 0.5 || al == 1.0 || al == 2.0) {
            qsort(v, (size_t)n, sizeof(double), cmp_double);
            double ks = 0;
            for (int i = 0; i < n; i++) {
                double x = v[i], F = al == 1.0 ? x : (al == 2.0 ? 3 * x * x - 2 * x * x * x : 2.0 / M_PI * asin(sqrt(x)));
                ks = fmax(ks, fmax(fabs(F - (double)i / n), fabs(F - (double)(i + 1) / n)));
            }
            // 1.95 / sqrt(n): the 0.1% critical value of the Kolmogorov-Smirnov statistic
            CHECK_QUIET(ks < 1.95 / sqrt(n), "Beta(%g, %g) against its CDF: KS statistic %.5f (limit %.5f)", al, al, ks, 1.95 / sqrt(n));
        }
    }
    free(v);
}

// a set of n images [C][H][W] with varied pixels; labels = index (n classes)
static void make_noise_set(ImageSet *s, int n, int C, int H, int W, uint64_t seed) {
    make_index_set(s, n, C, H, W);
    Rng r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < (size_t)n * C * H * W; i++) s->pixels[i] = (uint8_t)rng_below(&r, 256);
}

static float norm_ref(int v, float mean, float std) { return ((float)v / 255.0f - mean) / std; }

// RandomResizedCrop and flip in the loader: each output image is the box of
// its draw cut from the stored image, resized by image_resize_hwc (STRETCH),
// mirrored if drawn, normalised
static void test_loader_rrc(int out_h, int out_w) {
    ImageSet s;
    make_noise_set(&s, 6, 3, 13, 11, 5);
    float mean[3] = {0.4f, 0.5f, 0.6f}, std[3] = {0.2f, 0.25f, 0.3f};
    ImageLoaderConfig c;
    image_loader_config_defaults(&c);
    c.B = 3; c.seed = 17; c.shuffle = 1; c.rrc = 1; c.flip = 1; c.out_height = out_h; c.out_width = out_w;
    c.mean = mean; c.std = std;
    ImageLoader l;
    image_loader_init_config(&l, &s, &c);
    size_t out = (size_t)3 * out_h * out_w;
    float *img = malloc_or_fail(3 * out * sizeof(float), "batch");
    uint8_t *hwc = malloc_or_fail((size_t)13 * 11 * 3, "crop"), *res = malloc_or_fail(out, "resized");
    int lab[3], ok = 1, flips = 0, boxes_differ = 0, prev_h = -1;
    for (int it = 0; it < 40; it++) {
        image_loader_next(&l, img, lab);
        for (int b = 0; b < 3; b++) {
            const ImageAugDraw *d = &l.draws[b];
            ok &= d->y >= 0 && d->x >= 0 && d->y + d->h <= 13 && d->x + d->w <= 11 && d->h > 0 && d->w > 0;
            const uint8_t *src = s.pixels + (size_t)lab[b] * 3 * 13 * 11;
            for (int y = 0; y < d->h; y++)
                for (int x = 0; x < d->w; x++)
                    for (int ch = 0; ch < 3; ch++) hwc[(y * d->w + x) * 3 + ch] = src[(ch * 13 + d->y + y) * 11 + d->x + x];
            image_resize_hwc(hwc, d->w, d->h, 3, res, out_w, out_h, RESIZE_STRETCH);
            for (int ch = 0; ch < 3; ch++)
                for (int y = 0; y < out_h; y++)
                    for (int x = 0; x < out_w; x++) {
                        int sx = d->flip ? out_w - 1 - x : x;
                        ok &= img[(size_t)b * out + (ch * out_h + y) * out_w + x] ==
                              norm_ref(res[(y * out_w + sx) * 3 + ch], mean[ch], std[ch]);
                    }
            flips += d->flip;
            boxes_differ += prev_h >= 0 && d->h != prev_h;
            prev_h = d->h;
        }
    }
    CHECK_QUIET(ok && flips > 30 && flips < 90 && boxes_differ > 20,
          "RandomResizedCrop to %dx%d: images = resized boxes (flipped %d of 120, %d box sizes changed)", out_h, out_w,
          flips, boxes_differ);
    free(img); free(hwc); free(res);
    image_loader_free(&l);
    free_test_set(&s);
}

// torchvision's CenterCrop: offsets round((stored - out) / 2), half to even
static void test_loader_center(void) {
    ImageSet s;
    make_noise_set(&s, 2, 1, 6, 9, 8);
    float mean = 0.5f, std = 0.25f;
    ImageLoaderConfig c;
    image_loader_config_defaults(&c);
    c.B = 2; c.out_height = 3; c.out_width = 4; c.mean = &mean; c.std = &std;
    ImageLoader l;
    image_loader_init_config(&l, &s, &c);
    float img[2 * 12];
    int lab[2];
    image_loader_next(&l, img, lab);
    // rows: (6 - 3) / 2 = 1.5 -> 2; columns: (9 - 4) / 2 = 2.5 -> 2
    int ok = 1;
    for (int b = 0; b < 2; b++)
        for (int y = 0; y < 3; y++)
            for (int x = 0; x < 4; x++) ok &= img[b * 12 + y * 4 + x] == norm_ref(s.pixels[b * 54 + (y + 2) * 9 + x + 2], mean, std);
    CHECK_QUIET(ok && lab[0] == 0 && lab[1] == 1, "evaluation centre crop 6x9 -> 3x4 at row 2, column 2");
    image_loader_free(&l);
    free_test_set(&s);
}

// Mixup/CutMix in the loader: the images of a batch are drawn before the
// batch's Mixup draws, so a loader without Mixup (same seed) makes the same
// images, which a direct reference mixes by the draws recorded; targets by
// hand from the definition
static void test_loader_mixup(void) {
    ImageSet s;
    make_noise_set(&s, 10, 2, 5, 4, 9);
    float mean[2] = {0.5f, 0.4f}, std[2] = {0.3f, 0.2f};
    const int B = 4, K = 10, n = 2 * 5 * 4;
    int cut_count = 0, mixed_count = 0, ok_images = 1, ok_targets = 1;
    double lam_sum = 0;
    const int runs = 400;
    for (int run = 0; run < runs; run++) {
        ImageLoaderConfig c;
        image_loader_config_defaults(&c);
        c.B = B; c.seed = 1000 + run; c.shuffle = 1; c.flip = 1; c.mean = mean; c.std = std;
        ImageLoader plain, mix;
        image_loader_init_config(&plain, &s, &c);
        c.mixup_alpha = 0.8; c.cutmix_alpha = 1.0; c.smoothing = 0.1;
        c.mix_prob = 0.9;
        image_loader_init_config(&mix, &s, &c);
        // heap buffers: gcc 12 vectorised the checks below with aligned loads
        // from stack arrays it had not aligned (a crash at -O3 only)
        float *a = malloc_or_fail(4 * 40 * sizeof(float), "batch"), *b = malloc_or_fail(4 * 40 * sizeof(float), "batch");
        float *t = malloc_or_fail(4 * 10 * sizeof(float), "targets");
        int la[4], lb[4];
        image_loader_next(&plain, a, la);
        image_loader_next_targets(&mix, b, lb, t);
        const ImageMixDraw *d = &mix.mix;
        for (int i = 0; i < B; i++) {
            int p = B - 1 - i;
            for (int j = 0; j < n; j++) {
                int r = (j % 20) / 4, col = j % 4;
                float want = a[i * n + j];
                if (d->mixed && d->cutmix) {
                    if (r >= d->yl && r < d->yh && col >= d->xl && col < d->xh) want = a[p * n + j];
                } else if (d->mixed) {
                    want = a[i * n + j] * (float)d->lam + a[p * n + j] * (float)(1.0 - d->lam);
                }
                ok_images &= fabsf(b[i * n + j] - want) <= 1e-6f * (1.0f + fabsf(want));
            }
            for (int k = 0; k < K; k++) {
                double y1 = k == lb[i] ? 0.9 + 0.01 : 0.01, y2 = k == lb[p] ? 0.9 + 0.01 : 0.01;
                double want = d->mixed ? d->lam * y1 + (1.0 - d->lam) * y2 : y1;
                ok_targets &= fabs(t[i * K + k] - want) < 1e-6 && la[i] == lb[i];
            }
        }
        if (d->mixed) {
            mixed_count++;
            cut_count += d->cutmix;
            if (d->cutmix) {
                double area = (double)(d->yh - d->yl) * (d->xh - d->xl);
                ok_images &= d->lam == 1.0 - area / 20.0;
            } else {
                lam_sum += d->lam;
            }
        }
        image_loader_free(&plain);
        image_loader_free(&mix);
        free(a);
        free(b);
        free(t);
    }
    // mix_prob 0.9 of 400 runs: 360 expected, sd 6; switch_prob 0.5: half CutMix
    CHECK_QUIET(ok_images && ok_targets, "Mixup/CutMix batches and targets from the recorded draws (images %d, targets %d)",
          ok_images, ok_targets);
    CHECK_QUIET(abs(mixed_count - 360) < 30 && abs(cut_count - mixed_count / 2) < 40 &&
          fabs(lam_sum / (mixed_count - cut_count) - 0.5) < 0.1,
          "Mixup drawn in %d of %d batches (mix_prob 0.9), CutMix in %d of them (switch_prob 0.5), mean mixup lam %.3f",
          mixed_count, runs, cut_count, lam_sum / (mixed_count - cut_count));
    free_test_set(&s);
}

// A streamed shard gives the loader exactly what the same shard read whole
// gives: training with every augmentation over epochs, with a resume in the
// middle, on one and two threads; evaluation
static void test_stream_equals_memory(void) {
    ImageSet src;
    make_noise_set(&src, 21, 3, 12, 10, 77);
    for (int i = 0; i < 21; i++) src.labels[i] = i % 5;
    src.num_classes = 5;
    char p1[1024], p2[1024];
    image_set_write_shard(&src, tp(p2, "stream_v2.bin"));
    // a version 1 copy by hand: CRC of names, labels and pixels; zero after it
    {
        size_t nb;
        uint8_t *b = read_bytes(p2, &nb);
        size_t meta = 64 + 21 * 64 + 21 * 4, table = 21 * 4;
        uint8_t *v1 = malloc_or_fail(nb - table, "v1");
        memcpy(v1, b, meta);
        memcpy(v1 + meta, b + meta + table, nb - meta - table);
        memset(v1 + 36, 0, 28);
        v1[8] = 1;
        uint32_t crc = (uint32_t)crc32(0L, v1 + 64, (uInt)(nb - table - 64));
        for (int k = 0; k < 4; k++) v1[32 + k] = (uint8_t)(crc >> (8 * k));
        write_bytes(tp(p1, "stream_v1.bin"), v1, nb - table);
        free(v1);
        free(b);
    }
    free_test_set(&src);
    const char *paths[2] = {p1, p2};
    float mean[3] = {0.45f, 0.5f, 0.55f}, std[3] = {0.25f, 0.3f, 0.2f};
    for (int v = 0; v < 2; v++) {
        ImageSet mem, st;
        image_set_read_shard(&mem, paths[v]);
        image_set_open_shard(&st, paths[v]);
        ImageLoaderConfig c;
        image_loader_config_defaults(&c);
        c.B = 4; c.seed = 3; c.shuffle = 1; c.rrc = 1; c.flip = 1; c.out_height = 8; c.out_width = 8;
        c.mixup_alpha = 0.8; c.cutmix_alpha = 1.0; c.smoothing = 0.1; c.mean = mean; c.std = std;
        ImageLoader a, b, r;
        image_loader_init_config(&a, &mem, &c);
        image_loader_init_config(&b, &st, &c);
        size_t img_n = (size_t)4 * 3 * 8 * 8;
        float *ia = malloc_or_fail(img_n * sizeof(float), "a"), *ib = malloc_or_fail(img_n * sizeof(float), "b");
        float ta[4 * 5], tb[4 * 5];
        int la[4], lb[4], same = 1;
        ImageLoaderState mid = {0};
        for (int it = 0; it < 16; it++) { // 5 batches per epoch: over three epochs
            if (it == 7) mid = image_loader_get_state(&b); // in the middle of epoch 1
            omp_set_num_threads(1 + it % 2);
            image_loader_next_targets(&a, ia, la, ta);
            omp_set_num_threads(2 - it % 2);
            image_loader_next_targets(&b, ib, lb, tb);
            same &= !memcmp(ia, ib, img_n * sizeof(float)) && !memcmp(la, lb, sizeof(la)) && !memcmp(ta, tb, sizeof(ta));
        }
        omp_set_num_threads(2);
        CHECK_QUIET(same, "streamed v%d shard = the shard in memory, 16 training batches with RandomResizedCrop, flips, "
              "Mixup/CutMix and smoothing, on 1 and 2 threads", v + 1);
        // resume the streamed loader mid-epoch in a fresh loader: the same batches as the uninterrupted one
        image_loader_init_config(&r, &st, &c);
        image_loader_set_state(&r, mid);
        image_loader_reset(&a);
        for (int it = 0; it < 7; it++) image_loader_next_targets(&a, ia, la, ta);
        same = mid.pos > 0;
        for (int it = 7; it < 16; it++) {
            image_loader_next_targets(&a, ia, la, ta);
            image_loader_next_targets(&r, ib, lb, tb);
            same &= !memcmp(ia, ib, img_n * sizeof(float)) && !memcmp(la, lb, sizeof(la)) && !memcmp(ta, tb, sizeof(ta));
        }
        CHECK_QUIET(same, "streamed v%d loader resumed mid-epoch (position %lld) = uninterrupted", v + 1, (long long)mid.pos);
        image_loader_free(&a);
        image_loader_free(&b);
        image_loader_free(&r);
        // evaluation: centre crop, stored order, a partial last batch
        ImageLoaderConfig e;
        image_loader_config_defaults(&e);
        e.B = 4; e.out_height = 8; e.out_width = 8; e.mean = mean; e.std = std;
        image_loader_init_config(&a, &mem, &e);
        image_loader_init_config(&b, &st, &e);
        same = 1;
        for (int it = 0; it < 6; it++) {
            int na = image_loader_next(&a, ia, la), nb = image_loader_next(&b, ib, lb);
            same &= na == nb && !memcmp(ia, ib, img_n * sizeof(float)) && !memcmp(la, lb, sizeof(la));
        }
        CHECK_QUIET(same, "streamed v%d shard = in memory, evaluation pass", v + 1);
        image_loader_free(&a);
        image_loader_free(&b);
        free(ia);
        free(ib);
        image_set_free(&mem);
        image_set_free(&st);
    }
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "--child"))
        return run_child(argv[2], argc > 3 && argv[3][0] ? argv[3] : NULL, argc > 4 && argv[4][0] ? argv[4] : NULL);

    // children skip the leak check: a failing loader exits through fail()
    // with its buffers still allocated, by design
    int nenv = 0;
    while (environ[nenv]) nenv++;
    g_child_env = malloc_or_fail((size_t)(nenv + 2) * sizeof(char *), "environment");
    g_child_env[0] = "LSAN_OPTIONS=detect_leaks=0"; // first, so it wins over an inherited one
    memcpy(g_child_env + 1, environ, (size_t)nenv * sizeof(char *));
    g_child_env[nenv + 1] = NULL;

    snprintf(g_tmp, sizeof(g_tmp), "/tmp/test_images.XXXXXX");
    if (!mkdtemp(g_tmp)) fail("test: cannot create a temporary directory: %s", strerror(errno));
    if (!file_exists("./prepare_images")) fail("test: ./prepare_images is missing (make prepare_images)");

    double t0 = now_seconds();
    printf("test_images: resize\n");
    test_resize();
    printf("test_images: idx files\n");
    test_idx();
    printf("test_images: image folders and prepare_images\n");
    test_folder();
    test_jpeg_undefined_table();
    test_jpeg_fuzzer_finds();
    test_png_empty_first_idat();
    printf("test_images: shards\n");
    test_shards();
    printf("test_images: loader\n");
    test_loader();
    printf("test_images: natural order\n");
    test_natural_order();
    printf("test_images: augmentation against torchvision's and timm's definitions\n");
    test_augmentation_reference();
    test_beta();
    test_loader_rrc(8, 6);
    test_loader_rrc(20, 17); // larger than stored: bilinear
    test_loader_center();
    test_loader_mixup();
    printf("test_images: streamed shards\n");
    test_stream_equals_memory();
    printf("test_images: hold-out and flag values\n");
    test_holdout_and_values();
    printf("test_images: Fashion-MNIST\n");
    test_fashion_mnist();

    nftw(g_tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(g_child_env);
    printf("test_images: %.2f s\n", now_seconds() - t0);
    printf("%d passed, %d failed\n", checks_passed, failures);
    return failures ? 1 : 0;
}
