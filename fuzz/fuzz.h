// What the libFuzzer harnesses share. The loaders take paths, so each input
// is written to a file first; fail() (built with -DFUZZING, common/utils.h)
// jumps back into the harness instead of exiting, after closing the files the
// loader had open, so a refused input costs nothing but the next run.
#ifndef FUZZ_FUZZ_H
#define FUZZ_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/utils.h"

// the input as a file of this process (the same path every time), in memory
// where /dev/shm exists (rewriting a file on ext4 flushes it to disk on close)
static char fuzz_path[64];
static void fuzz_remove_input(void) { remove(fuzz_path); }

static const char *fuzz_input_file(const uint8_t *data, size_t size) {
    char *path = fuzz_path;
    if (!path[0]) {
        snprintf(fuzz_path, sizeof(fuzz_path), "%s/fuzz_input_%d.bin",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
        atexit(fuzz_remove_input);
    }
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size)) abort();
    fclose(f);
    return path;
}

#endif
