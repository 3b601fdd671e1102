// Small helpers used everywhere: errors that name the file or flag, checked
// file I/O, big-buffer allocation, time and memory measurement.
//
// Every error in this project is one line on stderr, starting with "error: ",
// naming what was wrong (a file, a flag, a value) and, where it helps, a hint.
// The process then exits with status 1. Nothing is half-written: files that
// matter are written to a temporary name and renamed (see atomic_open / atomic_commit below).
#ifndef COMMON_UTILS_H
#define COMMON_UTILS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

// print "error: <formatted message>" and exit(1)
__attribute__((noreturn, format(printf, 1, 2)))
void fail(const char *fmt, ...);

#ifdef FUZZING
// The libFuzzer harnesses (fuzz/) build everything with -DFUZZING: fail()
// then prints nothing, closes the files fopen_or_fail opened and jumps to
// *fuzz_fail_jump (when set) instead of exiting, so that a refused input is
// just the next input (FUZZ_VERBOSE=1 prints the message first). fclose goes
// through fuzz_fclose to keep the count.
//
// What a refused input allocated is freed when the next input starts
// (fuzz_new_input, called by fuzz/fuzz.h): while *fuzz_fail_jump is set,
// malloc, calloc, realloc and free of our code and cJSON's go through the
// fuzz_ functions, which keep the live blocks of the input; after a fail()
// they are freed, after an accepted input forgotten (a block still live then
// is a real leak, for LeakSanitizer to report at exit). So are the files:
// one still open when the next input starts is a loader's long-lived file,
// which a later fail() must not close behind its back.
#include <setjmp.h>
#include <stdlib.h>
extern jmp_buf *fuzz_fail_jump;
int fuzz_fclose(FILE *f);
#define fclose(f) fuzz_fclose(f)
void *fuzz_malloc(size_t n);
void *fuzz_calloc(size_t count, size_t n);
void *fuzz_realloc(void *p, size_t n);
void fuzz_free(void *p);
void fuzz_new_input(void);
#define malloc(n) fuzz_malloc(n)
#define calloc(c, n) fuzz_calloc(c, n)
#define realloc(p, n) fuzz_realloc(p, n)
#define free(p) fuzz_free(p)
// Other things a loader holds while it may fail (a gzFile...): fail()
// releases what is held.
void fuzz_hold(void *p, void (*release)(void *));
void fuzz_let_go(void *p);
#define FUZZ_HOLD(p, release) fuzz_hold((p), (release))
#define FUZZ_LET_GO(p) fuzz_let_go(p)
#else
#define FUZZ_HOLD(p, release) ((void)0)
#define FUZZ_LET_GO(p) ((void)0)
#endif

// print "warning: <formatted message>"
__attribute__((format(printf, 1, 2)))
void warn(const char *fmt, ...);

// fopen that fails with "error: cannot open <path> for reading: <strerror>".
// Only regular files: a FIFO, device or directory fails with "<path> is not a
// regular file" instead of blocking or reading garbage (the file is opened
// with O_NONBLOCK and checked with fstat before anything is read or written).
FILE *fopen_or_fail(const char *path, const char *mode);
// The same check without failing: a file descriptor open for reading, or -1
// with a one-line message naming the file in err.
int open_regular_for_reading(const char *path, char *err, size_t errlen);
// fread of exactly count items; a short read fails with "<path> is truncated"
void fread_or_fail(void *dst, size_t size, size_t count, FILE *f, const char *path);
// fwrite of exactly count items; a short write (disk full...) fails naming the path
void fwrite_or_fail(const void *src, size_t size, size_t count, FILE *f, const char *path);
// fclose that reports write-back errors (a full disk often only shows up here)
void fclose_or_fail(FILE *f, const char *path);
// size of an open file in bytes
size_t file_size_or_fail(FILE *f, const char *path);
int file_exists(const char *path);

// Sizes computed from file headers and flags: a product or sum that does not
// fit size_t fails with "<what>: too big for memory (the size overflows: ...)"
// instead of wrapping around.
size_t mul_size_or_fail(size_t a, size_t b, const char *what);
size_t mul4_size_or_fail(size_t a, size_t b, size_t c, size_t d, const char *what); // a*b*c*d
size_t add_size_or_fail(size_t a, size_t b, const char *what);

// A header field or other stored value must lie in [lo, hi]: fails with
// "<file>: <field> is <value>, outside [lo, hi]".
void check_range_or_fail(const char *file, const char *field, long long value, long long lo, long long hi);

// malloc/calloc that fail with the number of bytes and what they were for
void *malloc_or_fail(size_t bytes, const char *what);
void *calloc_or_fail(size_t count, size_t size, const char *what);

// Memory this process may still take, in bytes, into *bytes: /proc/meminfo's
// MemAvailable, or a memory cgroup's limit minus its usage (v1
// memory.limit_in_bytes, v2 memory.max, at every level up from ours) when that
// is smaller. source receives where the figure came from. Returns 0 when
// nothing could be read.
int memory_available(size_t *bytes, char *source, size_t len);
// The same from other files (for tests): a meminfo file, a /proc/<pid>/cgroup
// file, and where the v1 memory hierarchy and the v2 one are mounted.
int memory_available_from(size_t *bytes, const char *meminfo, const char *cgroups, const char *v1_root,
                          const char *v2_root, char *source, size_t len);

// Allocation for big long-lived buffers (parameters, gradients, optimizer
// state, activations): 64-byte aligned, zeroed, and backed by transparent huge
// pages where the kernel allows (first touch of a 4 KiB page costs ~11 us on
// this machine; a 2 MiB page amortises it). Its pages are committed (written)
// before it returns, each chunk checked against memory_available first: a
// buffer that does not fit fails with one line naming `what` rather than an
// OOM kill later. Free with free_big.
float *alloc_big_floats(size_t count, const char *what);
void *alloc_big(size_t bytes, const char *what);
void free_big(void *p);
// What alloc_big(bytes) maps, in bytes: the request and its header in whole
// pages. Once every page is touched, that is what it adds to the resident set
// (huge pages only ever cover 2 MiB-aligned stretches inside the mapping).
size_t alloc_big_footprint(size_t bytes);

// Atomic file writing: open "<path>.tmp", write, then commit renames it over
// <path> after fflush + fsync, so a crash leaves either the old or the new
// file, never a torn one.
// While a temporary file is open, fail() removes it: an error (a full disk,
// a bad value) never leaves a .tmp file behind.
typedef struct {
    FILE *f;
    char path[1024];
    char tmp_path[1040];
} AtomicFile;
void atomic_open(AtomicFile *af, const char *path);
void atomic_commit(AtomicFile *af);
// abandon: close and remove the temporary file
void atomic_abort(AtomicFile *af);

// Files this process wrote and must not leave behind if it fails (e.g. the
// model file of a checkpoint whose optimizer state could not be written):
// fail() removes every path registered here. At most FAIL_CLEANUP_MAX at once.
#define FAIL_CLEANUP_MAX 16
void fail_cleanup_add(const char *path);
void fail_cleanup_remove(const char *path);

// wall-clock seconds from a monotonic clock
double now_seconds(void);
// CPU time of the whole process (all threads), in seconds: on a shared
// machine it separates the work a step did from the time it waited
double cpu_seconds(void);
// peak resident set size of this process, in bytes
size_t peak_rss_bytes(void);
// resident set size now (/proc/self/statm), in bytes; 0 if unknown
size_t current_rss_bytes(void);

// parse helpers for command-line values: fail naming the flag on bad input
long parse_long_or_fail(const char *text, const char *flag);
// An integer flag in [min, max]; anything else (not a number, out of range,
// too big for 64 bits) fails with
// "flag <flag> must be an integer in [min, max], got '<text>'".
long long parse_int_flag_or_fail(const char *text, const char *flag, long long min, long long max);
double parse_double_or_fail(const char *text, const char *flag);

// A whole JSON file (cJSON): fails naming the file on malformed JSON, on text
// after the value, and on a key that appears twice in one object.
struct cJSON;
struct cJSON *json_read_file_or_fail(const char *path);
// the same checks on a text already in memory (NUL-terminated); name is the
// file it came from, for messages
struct cJSON *json_parse_or_fail(const char *text, const char *name);
// Write obj as formatted JSON plus a newline, atomically (temporary file, rename).
void json_write_file_atomic(const struct cJSON *obj, const char *path);

// human-readable byte count ("1.23 GiB") into buf
const char *format_bytes(double bytes, char *buf, size_t buflen);

#endif
