// The memory plan; see run/memplan.h.
#include "run/memplan.h"

#include <omp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/utils.h"
#include "nn/matmul.h"

void memplan_begin(MemPlan *p, int B, int T, const char *optim, int fused, size_t resident_now,
                   const char *resident_note) {
    memset(p, 0, sizeof(*p));
    p->B = B;
    p->T = T;
    p->fused = fused;
    snprintf(p->optim, sizeof(p->optim), "%s", optim);
    p->resident_now = resident_now;
    memplan_add(p, "process now", resident_now, "%s", resident_note);
}

void memplan_add(MemPlan *p, const char *name, size_t bytes, const char *note_fmt, ...) {
    if (p->num_items == MEMPLAN_MAX_ITEMS) fail("internal: more than %d items in the memory plan", MEMPLAN_MAX_ITEMS);
    MemPlanItem *it = &p->items[p->num_items++];
    snprintf(it->name, sizeof(it->name), "%s", name);
    it->bytes = bytes;
    va_list ap;
    va_start(ap, note_fmt);
    vsnprintf(it->note, sizeof(it->note), note_fmt, ap);
    va_end(ap);
    p->total = add_size_or_fail(p->total, bytes, "the memory plan");
}

void memplan_add_model(MemPlan *p, size_t param_floats, size_t grad_floats, const char *grad_note,
                       const ParamBlock *blocks, int num_blocks, const OptimConfig *cfg, int training) {
    size_t param_bytes = mul_size_or_fail(param_floats, sizeof(float), "the parameters");
    memplan_add(p, "parameters", alloc_big_footprint(param_bytes), "%zu floats", param_floats);
    if (!training) {
        memplan_add(p, "gradients", 0, "never touched without training steps");
        memplan_add(p, "optimizer state", 0, "never touched without training steps");
        return;
    }
    size_t grad_bytes = mul_size_or_fail(grad_floats, sizeof(float), "the gradients");
    if (grad_floats == param_floats) memplan_add(p, "gradients", alloc_big_footprint(grad_bytes), "%s", grad_note);
    else memplan_add(p, "gradients", alloc_big_footprint(grad_bytes), "%s: %zu floats", grad_note, grad_floats);
    size_t state = strcmp(p->optim, OPTIM_NAME) == 0 ? optim_state_bytes_for(blocks, num_blocks, cfg)
                                                     : optim_state_bytes_named(p->optim, blocks, num_blocks);
    // optim_create maps no buffer for a state of 0 floats
    memplan_add(p, "optimizer state", state ? alloc_big_footprint(state) : 0, "%s, %zu bytes", p->optim, state);
}

void memplan_add_threads(MemPlan *p) {
    int threads = omp_get_max_threads();
    size_t each = matmul_thread_buffer_bytes();
    memplan_add(p, "matmul buffers", mul_size_or_fail((size_t)threads, each, "the matmul buffers"),
                "%d thread%s x %zu bytes of packing buffers", threads, threads == 1 ? "" : "s", each);
}

// ----------------------------------------------------------------------------
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

// ----------------------------------------------------------------------------
// printing and checking

// append to a string of cap bytes, cutting what does not fit
__attribute__((format(printf, 3, 4)))
static void append(char *buf, size_t cap, const char *fmt, ...) {
    size_t n = strlen(buf);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
}

void memplan_check(const MemPlan *p, MemPlanBuilder build, const void *ctx, size_t limit, int force) {
    char a[32], b[32], c[32], source[1400];
    if (p->T > 0) printf("memory plan (B %d, T %d, %s):\n", p->B, p->T, p->optim);
    else printf("memory plan (B %d, %s):\n", p->B, p->optim);
    for (int i = 0; i < p->num_items; i++)
        printf("  %-18s %11s  %s\n", p->items[i].name, format_bytes((double)p->items[i].bytes, a, sizeof(a)),
               p->items[i].note);
    printf("  %-18s %11s  %zu bytes\n", "total", format_bytes((double)p->total, a, sizeof(a)), p->total);

    // the budget is the whole process's: what it holds now plus what it may still take
    size_t budget;
    if (limit) {
        budget = limit;
        snprintf(source, sizeof(source), "--memory-limit");
    } else {
        size_t avail;
        if (!memory_available(&avail, source, sizeof(source))) {
            printf("  available: unknown (no /proc/meminfo nor memory cgroup); not checked\n");
            return;
        }
        budget = add_size_or_fail(avail, p->resident_now, "the memory budget");
    }
    printf("  available %s (%s, with what the process holds now): %.1f%% of it planned\n",
           format_bytes((double)budget, a, sizeof(a)), source, 100.0 * (double)p->total / (double)budget);
    if (p->total <= budget) return;

    // what would fit: the largest smaller B (then T) with this optimizer, and the other optimizers
    char fits[1024] = "";
    int searched = 0, smaller = 0; // -b or -t could be smaller; a smaller one fits
    MemPlan q;
    const char *dims[2] = {"-b", "-t"};
    for (int d = 0; d < 2; d++) {
        int cur = d == 0 ? p->B : p->T, lo = 0, hi = cur - 1; // the largest value in [1, hi] that fits, 0 if none
        if (cur <= 1) continue;
        searched = 1;
        while (lo < hi) { // activations grow with B and T
            int mid = lo + (hi - lo + 1) / 2;
            build(&q, ctx, d == 0 ? mid : p->B, d == 0 ? p->T : mid, p->optim, p->fused);
            if (q.total <= budget) lo = mid; else hi = mid - 1;
        }
        if (lo == 0) continue;
        smaller = 1;
        build(&q, ctx, d == 0 ? lo : p->B, d == 0 ? p->T : lo, p->optim, p->fused);
        append(fits, sizeof(fits), "%s%s %d (%s)", fits[0] ? ", " : "", dims[d], lo,
               format_bytes((double)q.total, b, sizeof(b)));
    }
    for (int i = 0; i < NUM_OPTIMIZERS; i++) {
        if (strcmp(OPTIM_NAMES[i], p->optim) == 0) continue;
        build(&q, ctx, p->B, p->T, OPTIM_NAMES[i], p->fused);
        if (q.total <= budget)
            append(fits, sizeof(fits), "%sOPTIM=%s (%s)", fits[0] ? ", " : "", OPTIM_NAMES[i],
                   format_bytes((double)q.total, b, sizeof(b)));
    }
    if (!p->fused) { // the same run without a whole gradient
        build(&q, ctx, p->B, p->T, p->optim, 1);
        if (q.total <= budget)
            append(fits, sizeof(fits), "%s--fused-update 1 (%s)", fits[0] ? ", " : "",
                   format_bytes((double)q.total, b, sizeof(b)));
    }
    if (fits[0] && searched && !smaller) append(fits, sizeof(fits), " (no smaller -b or -t fits with %s)", p->optim);
    if (force) {
        warn("this run needs %s of memory but %s is available (%s); running anyway (--force-memory 1)",
             format_bytes((double)p->total, a, sizeof(a)), format_bytes((double)budget, c, sizeof(c)), source);
        return;
    }
    fail("this run needs %s of memory (the plan above) but %s is available (%s); %s%s; --force-memory 1 runs it anyway",
         format_bytes((double)p->total, a, sizeof(a)), format_bytes((double)budget, c, sizeof(c)), source,
         fits[0] ? "what would fit: " : "no smaller -b or -t and no other optimizer fits", fits);
}

cJSON *memplan_json(const MemPlan *p) {
    cJSON *j = cJSON_CreateObject();
    for (int i = 0; i < p->num_items; i++) cJSON_AddNumberToObject(j, p->items[i].name, (double)p->items[i].bytes);
    cJSON_AddNumberToObject(j, "total", (double)p->total);
    return j;
}

void memplan_print_peak(const MemPlan *p) {
    size_t peak = peak_rss_bytes();
    char a[32], b[32];
    printf("memory: peak resident %zu bytes (%s), planned %zu bytes (%s): %+.2f%%\n", peak,
           format_bytes((double)peak, a, sizeof(a)), p->total, format_bytes((double)p->total, b, sizeof(b)),
           100.0 * ((double)peak - (double)p->total) / (double)p->total);
}
