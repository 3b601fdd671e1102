// What the libFuzzer harnesses share. The loaders take paths, so each input
// is written to a file first; fail() (built with -DFUZZING, common/utils.h)
// jumps back into the harness instead of exiting, after closing the files the
// loader had open, so a refused input costs nothing but the next run.
#ifndef FUZZ_FUZZ_H
#define FUZZ_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/utils.h"

// the input as a file of this process (the same path every time), in memory
// where /dev/shm exists (rewriting a file on ext4 flushes it to disk on close)
static char fuzz_path[64];
static void fuzz_remove_input(void) { remove(fuzz_path); }

static const char *fuzz_input_file(const uint8_t *data, size_t size) {
    fuzz_new_input(); // free what a refused input before this one left
    char *path = fuzz_path;
    if (!path[0]) {
        snprintf(fuzz_path, sizeof(fuzz_path), "%s/fuzz_input_%d.bin",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
        atexit(fuzz_remove_input);
        atexit(fuzz_new_input); // the last input's, before LeakSanitizer looks at exit
    }
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size)) abort();
    fclose(f);
    return path;
}

// A folder of this process for loaders that read several files (a
// tokenizer folder, an idx pair), created once, in memory where /dev/shm
// exists, removed with its files at exit.
static char fuzz_folder[64];
static void fuzz_remove_folder(void) {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fuzz_folder);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", fuzz_folder);
}
static const char *fuzz_dir(void) {
    if (!fuzz_folder[0]) {
        snprintf(fuzz_folder, sizeof(fuzz_folder), "%s/fuzz_dir_%d",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
        if (mkdir(fuzz_folder, 0700) != 0) abort();
        atexit(fuzz_remove_folder);
    }
    return fuzz_folder;
}

// bytes as the file fuzz_dir()/name; path receives its path
static void fuzz_write_file(char *path, size_t len, const char *name, const uint8_t *data, size_t size) {
    static int first = 1;
    if (first) atexit(fuzz_new_input);
    first = 0;
    fuzz_new_input(); // free what a refused input before this one left
    snprintf(path, len, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size)) abort();
    fclose(f);
}

// Two files from one input: its first two bytes (little-endian) give the
// length of the first file, clamped to what follows; the rest is the second.
static void fuzz_split2(const uint8_t *data, size_t size, const uint8_t **a, size_t *na, const uint8_t **b,
                        size_t *nb) {
    size_t head = size < 2 ? size : 2, body = size - head;
    size_t len = size >= 2 ? ((size_t)data[0] | (size_t)data[1] << 8) : 0;
    if (len > body) len = body;
    *a = data + head;
    *na = len;
    *b = *a + len;
    *nb = body - len;
}

#endif
