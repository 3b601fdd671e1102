#include "common/utils.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

// paths fail() removes: temporary files being written, files of a checkpoint
// not yet complete (see fail_cleanup_add)
static char cleanup_paths[FAIL_CLEANUP_MAX][1040];

void fail_cleanup_add(const char *path) {
    for (int i = 0; i < FAIL_CLEANUP_MAX; i++) {
        if (cleanup_paths[i][0]) continue;
        if (strlen(path) >= sizeof(cleanup_paths[i])) fail("path too long: %s", path);
        snprintf(cleanup_paths[i], sizeof(cleanup_paths[i]), "%s", path);
        return;
    }
    fail("internal: more than %d files to clean up on failure", FAIL_CLEANUP_MAX);
}

void fail_cleanup_remove(const char *path) {
    for (int i = 0; i < FAIL_CLEANUP_MAX; i++)
        if (strcmp(cleanup_paths[i], path) == 0) { cleanup_paths[i][0] = '\0'; return; }
}

#ifdef FUZZING
jmp_buf *fuzz_fail_jump;
static FILE *fuzz_files[16]; // opened by fopen_or_fail, not yet closed

static void fuzz_track(FILE *f) {
    for (int i = 0; i < 16; i++) if (!fuzz_files[i]) { fuzz_files[i] = f; return; }
}

int fuzz_fclose(FILE *f) {
    for (int i = 0; i < 16; i++) if (fuzz_files[i] == f) fuzz_files[i] = NULL;
    return (fclose)(f);
}

// The live blocks of the current input: an open-addressing hash set (linear
// probing, deletion by backward shift). Keys are stored inverted so that
// LeakSanitizer does not take the set for a reference to the blocks.
static uintptr_t *fuzz_blocks;
static size_t fuzz_blocks_cap, fuzz_blocks_count;
static int fuzz_failed; // fail() ran since the input started

static size_t fuzz_slot(uintptr_t key) { return (size_t)((key >> 4) * 0x9E3779B97F4A7C15ull) & (fuzz_blocks_cap - 1); }

static void fuzz_insert(void *p) {
    if (!p) return;
    if (2 * (fuzz_blocks_count + 1) > fuzz_blocks_cap) {
        uintptr_t *old = fuzz_blocks;
        size_t old_cap = fuzz_blocks_cap;
        fuzz_blocks_cap = old_cap ? 2 * old_cap : 1024;
        fuzz_blocks = (calloc)(fuzz_blocks_cap, sizeof(uintptr_t));
        if (!fuzz_blocks) abort();
        for (size_t i = 0; i < old_cap; i++)
            if (old[i]) {
                size_t j = fuzz_slot(old[i]);
                while (fuzz_blocks[j]) j = (j + 1) & (fuzz_blocks_cap - 1);
                fuzz_blocks[j] = old[i];
            }
        (free)(old);
    }
    uintptr_t key = ~(uintptr_t)p;
    size_t j = fuzz_slot(key);
    while (fuzz_blocks[j]) j = (j + 1) & (fuzz_blocks_cap - 1);
    fuzz_blocks[j] = key;
    fuzz_blocks_count++;
}

// 1 if p was a block of the input (now removed from the set)
static int fuzz_remove(void *p) {
    if (!p || !fuzz_blocks_count) return 0;
    uintptr_t key = ~(uintptr_t)p;
    size_t mask = fuzz_blocks_cap - 1, j = fuzz_slot(key);
    while (fuzz_blocks[j] && fuzz_blocks[j] != key) j = (j + 1) & mask;
    if (!fuzz_blocks[j]) return 0;
    fuzz_blocks[j] = 0;
    fuzz_blocks_count--;
    // shift back the entries of the probe run after the hole that may belong before it
    for (size_t k = (j + 1) & mask; fuzz_blocks[k]; k = (k + 1) & mask) {
        size_t home = fuzz_slot(fuzz_blocks[k]);
        if (((k - home) & mask) >= ((k - j) & mask)) {
            fuzz_blocks[j] = fuzz_blocks[k];
            fuzz_blocks[k] = 0;
            j = k;
        }
    }
    return 1;
}

void *fuzz_malloc(size_t n) {
    void *p = (malloc)(n);
    if (fuzz_fail_jump) fuzz_insert(p);
    return p;
}
void *fuzz_calloc(size_t count, size_t n) {
    void *p = (calloc)(count, n);
    if (fuzz_fail_jump) fuzz_insert(p);
    return p;
}
void *fuzz_realloc(void *p, size_t n) {
    int ours = fuzz_remove(p);
    void *q = (realloc)(p, n);
    if (!q && n) { if (ours) fuzz_insert(p); return q; } // p is still live
    if (ours || (!p && fuzz_fail_jump)) fuzz_insert(q);
    return q;
}
void fuzz_free(void *p) {
    fuzz_remove(p);
    (free)(p);
}
void fuzz_new_input(void) {
    // files still open are a loader's long-lived ones (fail() closed those of a refused input)
    for (int i = 0; i < 16; i++) fuzz_files[i] = NULL;
    for (size_t i = 0; i < fuzz_blocks_cap; i++) {
        if (fuzz_blocks[i] && fuzz_failed) (free)((void *)~fuzz_blocks[i]);
        fuzz_blocks[i] = 0;
    }
    fuzz_blocks_count = 0;
    fuzz_failed = 0;
}
static void fuzz_cjson_free(void *p) { fuzz_free(p); }
static void *fuzz_cjson_malloc(size_t n) { return fuzz_malloc(n); }
__attribute__((constructor)) static void fuzz_cjson_hooks(void) {
    cJSON_Hooks hooks = {fuzz_cjson_malloc, fuzz_cjson_free};
    cJSON_InitHooks(&hooks);
}

static struct { void *p; void (*release)(void *); } fuzz_held[16];
void fuzz_hold(void *p, void (*release)(void *)) {
    for (int i = 0; i < 16; i++)
        if (!fuzz_held[i].p) { fuzz_held[i].p = p; fuzz_held[i].release = release; return; }
    abort(); // a harness holding more than 16 things at once is a bug of the harness
}
void fuzz_let_go(void *p) {
    for (int i = 0; i < 16; i++) if (fuzz_held[i].p == p) fuzz_held[i].p = NULL;
}
#endif

void fail(const char *fmt, ...) {
#ifdef FUZZING
    static int verbose = -1; // FUZZ_VERBOSE=1 prints why an input was refused (for seeds and crashes)
    if (verbose < 0) verbose = getenv("FUZZ_VERBOSE") != NULL;
    if (verbose) {
        va_list vp;
        va_start(vp, fmt);
        fputs("refused: ", stderr);
        vfprintf(stderr, fmt, vp);
        fputc('\n', stderr);
        va_end(vp);
    }
    for (int i = 0; i < 16; i++) if (fuzz_files[i]) { (fclose)(fuzz_files[i]); fuzz_files[i] = NULL; }
    for (int i = 0; i < 16; i++)
        if (fuzz_held[i].p) { fuzz_held[i].release(fuzz_held[i].p); fuzz_held[i].p = NULL; }
    for (int i = 0; i < FAIL_CLEANUP_MAX; i++) cleanup_paths[i][0] = '\0';
    fuzz_failed = 1;
    if (fuzz_fail_jump) longjmp(*fuzz_fail_jump, 1);
#endif
    fflush(stdout);
    va_list ap;
    va_start(ap, fmt);
    fputs("error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    for (int i = 0; i < FAIL_CLEANUP_MAX; i++) {
        if (!cleanup_paths[i][0]) continue;
        char path[sizeof(cleanup_paths[i])];
        memcpy(path, cleanup_paths[i], sizeof(path));
        cleanup_paths[i][0] = '\0';
        remove(path);
    }
    exit(1);
}

void warn(const char *fmt, ...) {
    fflush(stdout);
    va_list ap;
    va_start(ap, fmt);
    fputs("warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

// open(2) with flags, then make sure it is a regular file before anything is
// read or written: O_NONBLOCK keeps the open of a FIFO from waiting for the
// other end, and a file is only truncated once it is known to be regular
static int open_regular(const char *path, int flags, int truncate, char *err, size_t errlen) {
    int fd = open(path, flags | O_NONBLOCK | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s for %s: %s", path,
                 (flags & O_ACCMODE) == O_RDONLY ? "reading" : "writing", strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        snprintf(err, errlen, "%s is not a regular file", path);
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0 || (truncate && ftruncate(fd, 0) != 0)) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int open_regular_for_reading(const char *path, char *err, size_t errlen) {
    return open_regular(path, O_RDONLY, 0, err, errlen);
}

FILE *fopen_or_fail(const char *path, const char *mode) {
    int plus = strchr(mode, '+') != NULL, flags, truncate = 0;
    if (mode[0] == 'r') flags = plus ? O_RDWR : O_RDONLY;
    else if (mode[0] == 'w') { flags = (plus ? O_RDWR : O_WRONLY) | O_CREAT; truncate = 1; }
    else if (mode[0] == 'a') flags = (plus ? O_RDWR : O_WRONLY) | O_CREAT | O_APPEND;
    else fail("internal: fopen mode '%s'", mode);
    char err[1200];
    int fd = open_regular(path, flags, truncate, err, sizeof(err));
    if (fd < 0) fail("%s", err);
    FILE *f = fdopen(fd, mode);
    if (!f) fail("cannot open %s: %s", path, strerror(errno));
#ifdef FUZZING
    fuzz_track(f);
#endif
    return f;
}

void fread_or_fail(void *dst, size_t size, size_t count, FILE *f, const char *path) {
    size_t got = fread(dst, size, count, f);
    if (got != count) {
        if (ferror(f)) fail("reading %s: %s", path, strerror(errno));
        fail("%s is truncated (wanted %zu more items of %zu bytes, got %zu)", path, count, size, got);
    }
}

void fwrite_or_fail(const void *src, size_t size, size_t count, FILE *f, const char *path) {
    if (fwrite(src, size, count, f) != count) {
        fail("writing %s: %s", path, strerror(errno));
    }
}

void fclose_or_fail(FILE *f, const char *path) {
    if (fclose(f) != 0) fail("closing %s: %s", path, strerror(errno));
}

size_t file_size_or_fail(FILE *f, const char *path) {
    struct stat st;
    if (fstat(fileno(f), &st) != 0) fail("cannot stat %s: %s", path, strerror(errno));
    return (size_t)st.st_size;
}

int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

size_t mul_size_or_fail(size_t a, size_t b, const char *what) {
    size_t r;
    if (__builtin_mul_overflow(a, b, &r)) fail("%s: too big for memory (the size overflows: %zu x %zu)", what, a, b);
    return r;
}

size_t mul4_size_or_fail(size_t a, size_t b, size_t c, size_t d, const char *what) {
    return mul_size_or_fail(mul_size_or_fail(a, b, what), mul_size_or_fail(c, d, what), what);
}

size_t add_size_or_fail(size_t a, size_t b, const char *what) {
    size_t r;
    if (__builtin_add_overflow(a, b, &r)) fail("%s: too big for memory (the size overflows: %zu + %zu)", what, a, b);
    return r;
}

void check_range_or_fail(const char *file, const char *field, long long value, long long lo, long long hi) {
    if (value < lo || value > hi) fail("%s: %s is %lld, outside [%lld, %lld]", file, field, value, lo, hi);
}

void *malloc_or_fail(size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) fail("out of memory allocating %zu bytes for %s", bytes, what);
    return p;
}

void *calloc_or_fail(size_t count, size_t size, const char *what) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) fail("out of memory allocating %zu x %zu bytes for %s", count, size, what);
    return p;
}

// ---------------------------------------------------------------------------
// the memory available

static int read_u64(const char *path, unsigned long long *out) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int ok = fscanf(f, "%llu", out) == 1; // "max" (cgroup v2: no limit) does not parse
    fclose(f);
    return ok;
}

// The cgroup at root+path and every one above it up to root: where a limit
// is set, what it leaves (limit - usage) replaces *avail when smaller.
static void cgroup_walk(const char *root, const char *path, const char *limit_name, const char *usage_name,
                        size_t *avail, char *source, size_t len) {
    char rel[512];
    snprintf(rel, sizeof(rel), "%s", path);
    for (;;) {
        char limit_path[1100], usage_path[1100];
        snprintf(limit_path, sizeof(limit_path), "%s%s/%s", root, strcmp(rel, "/") == 0 ? "" : rel, limit_name);
        snprintf(usage_path, sizeof(usage_path), "%s%s/%s", root, strcmp(rel, "/") == 0 ? "" : rel, usage_name);
        unsigned long long limit, usage;
        // v1 writes "no limit" as a huge number (PAGE_COUNTER_MAX pages)
        if (read_u64(limit_path, &limit) && limit < (1ULL << 60) && read_u64(usage_path, &usage)) {
            size_t left = limit > usage ? (size_t)(limit - usage) : 0;
            if (left < *avail) {
                *avail = left;
                char a[32], b[32];
                snprintf(source, len, "%s %s minus %s %s", limit_path, format_bytes((double)limit, a, sizeof(a)),
                         usage_name, format_bytes((double)usage, b, sizeof(b)));
            }
        }
        char *slash = strrchr(rel, '/');
        if (!slash || strcmp(rel, "/") == 0) break;
        if (slash == rel) slash[1] = '\0'; else *slash = '\0';
    }
}

int memory_available(size_t *bytes, char *source, size_t len) {
    // cgroup v2 alone is mounted on /sys/fs/cgroup; beside v1, on /sys/fs/cgroup/unified
    const char *v2 = file_exists("/sys/fs/cgroup/cgroup.controllers") ? "/sys/fs/cgroup" : "/sys/fs/cgroup/unified";
    return memory_available_from(bytes, "/proc/meminfo", "/proc/self/cgroup", "/sys/fs/cgroup/memory", v2, source, len);
}

int memory_available_from(size_t *bytes, const char *meminfo, const char *cgroups, const char *v1_root,
                          const char *v2_root, char *source, size_t len) {
    size_t avail = SIZE_MAX; // unknown until a figure is read
    snprintf(source, len, "unknown");
    FILE *f = fopen(meminfo, "r");
    if (f) {
        char line[256];
        unsigned long long kb;
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
                avail = (size_t)kb * 1024;
                snprintf(source, len, "MemAvailable");
            }
        fclose(f);
    }
    f = fopen(cgroups, "r");
    if (f) {
        char line[1024];
        while (fgets(line, sizeof(line), f)) {
            line[strcspn(line, "\n")] = '\0';
            char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
            if (!c2) continue;
            *c2 = '\0';
            const char *controllers = c1 + 1, *path = c2 + 1;
            if (controllers[0] == '\0') { // v2
                cgroup_walk(v2_root, path, "memory.max", "memory.current", &avail, source, len);
                continue;
            }
            char list[256];
            snprintf(list, sizeof(list), ",%s,", controllers);
            if (strstr(list, ",memory,"))
                cgroup_walk(v1_root, path, "memory.limit_in_bytes", "memory.usage_in_bytes", &avail, source, len);
        }
        fclose(f);
    }
    *bytes = avail;
    return avail != SIZE_MAX;
}

// Big buffers: mmap gives page-aligned zeroed memory; MADV_HUGEPAGE asks for
// 2 MiB pages (THP is in madvise mode here). We keep the mapping length in a
// 64-byte header so free_big can munmap it.
//
// The pages are committed at once, a chunk at a time: each chunk is checked
// against what the machine or our memory cgroup still has (memory_available),
// keeping BIG_COMMIT_RESERVE free for stacks, small allocations and page
// tables, then populated (MADV_POPULATE_WRITE; a write per page where the
// kernel lacks it). A run that cannot fit thus stops with one line naming the
// buffer instead of being killed without a word (SIGKILL, exit 137) by the OOM
// killer when a page is first written mid-run. The fuzz harnesses (FUZZING)
// leave the pages uncommitted: a crafted header may declare gigabytes that
// the loader then refuses.
#define BIG_HEADER 64
#define BIG_COMMIT_CHUNK ((size_t)64 << 20)
#define BIG_COMMIT_RESERVE ((size_t)16 << 20)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 // Linux 5.14
#endif
static void commit_pages(char *base, size_t total, const char *what) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t at = 0; at < total; at += BIG_COMMIT_CHUNK) {
        size_t n = total - at < BIG_COMMIT_CHUNK ? total - at : BIG_COMMIT_CHUNK;
        size_t avail;
        char source[1400];
        if (memory_available(&avail, source, sizeof(source)) && avail < add_size_or_fail(n, BIG_COMMIT_RESERVE, what)) {
            munmap(base, total);
            char a[32], b[32], c[32];
            fail("out of memory: %s (%s) does not fit: %s of it still to commit but %s available (%s), of which "
                 "%s is kept free; the memory plan (--memory-plan-only 1) says what fits",
                 what, format_bytes((double)total, a, sizeof(a)), format_bytes((double)(total - at), b, sizeof(b)),
                 format_bytes((double)avail, c, sizeof(c)), source, "16 MiB");
        }
        if (madvise(base + at, n, MADV_POPULATE_WRITE) != 0)
            for (size_t i = 0; i < n; i += page) ((volatile char *)base)[at + i] = 0;
    }
}

void *alloc_big(size_t bytes, const char *what) {
    size_t total = add_size_or_fail(bytes, BIG_HEADER, what);
    void *base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) fail("out of memory mapping %zu bytes for %s", bytes, what);
#ifdef MADV_HUGEPAGE
    if (total >= (2u << 20)) madvise(base, total, MADV_HUGEPAGE);
#endif
#ifndef FUZZING
    commit_pages(base, total, what);
#endif
    *(size_t *)base = total;
    return (char *)base + BIG_HEADER;
}

size_t alloc_big_footprint(size_t bytes) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (bytes + BIG_HEADER + page - 1) / page * page;
}

float *alloc_big_floats(size_t count, const char *what) {
    return (float *)alloc_big(mul_size_or_fail(count, sizeof(float), what), what);
}

void free_big(void *p) {
    if (!p) return;
    char *base = (char *)p - BIG_HEADER;
    munmap(base, *(size_t *)base);
}

void atomic_open(AtomicFile *af, const char *path) {
    if (strlen(path) >= sizeof(af->path)) fail("path too long: %s", path);
    snprintf(af->path, sizeof(af->path), "%s", path);
    snprintf(af->tmp_path, sizeof(af->tmp_path), "%s.tmp", path);
    af->f = fopen_or_fail(af->tmp_path, "wb");
    fail_cleanup_add(af->tmp_path);
}

void atomic_commit(AtomicFile *af) {
    if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0) {
        int e = errno;
        fclose(af->f);
        remove(af->tmp_path);
        fail("writing %s: %s", af->tmp_path, strerror(e));
    }
    if (fclose(af->f) != 0) {
        int e = errno;
        remove(af->tmp_path);
        fail("writing %s: %s", af->tmp_path, strerror(e));
    }
    af->f = NULL;
    if (rename(af->tmp_path, af->path) != 0) {
        int e = errno;
        remove(af->tmp_path);
        fail("cannot rename %s to %s: %s", af->tmp_path, af->path, strerror(e));
    }
    fail_cleanup_remove(af->tmp_path);
}

void atomic_abort(AtomicFile *af) {
    if (af->f) fclose(af->f);
    af->f = NULL;
    remove(af->tmp_path);
    fail_cleanup_remove(af->tmp_path);
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

size_t peak_rss_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (size_t)ru.ru_maxrss * 1024; // Linux reports KiB
}

size_t current_rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long size, resident;
    int ok = fscanf(f, "%lu %lu", &size, &resident) == 2;
    fclose(f);
    return ok ? (size_t)resident * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

long parse_long_or_fail(const char *text, const char *flag) {
    if (!text || !*text) fail("flag %s needs an integer value", flag);
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0') fail("flag %s: '%s' is not an integer", flag, text);
    return v;
}

long long parse_int_flag_or_fail(const char *text, const char *flag, long long min, long long max) {
    char *end = NULL;
    errno = 0;
    long long v = text && *text ? strtoll(text, &end, 10) : 0;
    if (!text || !*text || errno != 0 || *end != '\0' || v < min || v > max)
        fail("flag %s must be an integer in [%lld, %lld], got '%s'", flag, min, max, text ? text : "");
    return v;
}

double parse_double_or_fail(const char *text, const char *flag) {
    if (!text || !*text) fail("flag %s needs a number", flag);
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v)) fail("flag %s: '%s' is not a finite number", flag, text);
    return v;
}

// every object of the tree, at any depth, has each key once
static void json_check_keys(const cJSON *item, const char *name) {
    for (const cJSON *c = item->child; c; c = c->next) {
        if (cJSON_IsObject(item))
            for (const cJSON *d = c->next; d; d = d->next)
                if (strcmp(c->string, d->string) == 0) fail("%s: key \"%s\" appears twice in one object", name, c->string);
        json_check_keys(c, name);
    }
}

cJSON *json_parse_or_fail(const char *text, const char *name) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        fail("%s: malformed JSON near byte %ld", name, at ? (long)(at - text) : -1L);
    }
    while (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r') end++;
    if (*end) fail("%s: unexpected text after the JSON value at byte %ld", name, (long)(end - text));
    json_check_keys(root, name);
    return root;
}

void json_write_file_atomic(const cJSON *obj, const char *path) {
    char *text = cJSON_Print(obj);
    if (!text) fail("out of memory formatting %s", path);
    AtomicFile af;
    atomic_open(&af, path);
    fwrite_or_fail(text, 1, strlen(text), af.f, af.tmp_path);
    fwrite_or_fail("\n", 1, 1, af.f, af.tmp_path);
    atomic_commit(&af);
    free(text);
}

cJSON *json_read_file_or_fail(const char *path) {
    FILE *f = fopen_or_fail(path, "rb");
    size_t size = file_size_or_fail(f, path);
    char *text = malloc_or_fail(add_size_or_fail(size, 1, path), path);
    if (size) fread_or_fail(text, 1, size, f, path);
    text[size] = '\0';
    fclose(f);
    if (strlen(text) != size) fail("%s: a NUL byte at byte %zu; a JSON file is text", path, strlen(text));
    cJSON *root = json_parse_or_fail(text, path);
    free(text);
    return root;
}

const char *format_bytes(double bytes, char *buf, size_t buflen) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024.0 && u < 4) { bytes /= 1024.0; u++; }
    snprintf(buf, buflen, u == 0 ? "%.0f %s" : "%.2f %s", bytes, units[u]);
    return buf;
}
