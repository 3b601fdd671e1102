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
                       const MemPlanModel *m) {
    const ParamBlock *blocks = m->blocks;
    int num_blocks = m->num_blocks;
    size_t param_bytes = mul_size_or_fail(param_floats, sizeof(float), "the parameters");
    memplan_add(p, "parameters", alloc_big_footprint(param_bytes), "%zu floats", param_floats);
    if (!m->training) {
        memplan_add(p, "gradients", 0, "never touched without training steps");
        memplan_add(p, "optimizer state", 0, "never touched without training steps");
        return;
    }
    size_t grad_bytes = mul_size_or_fail(grad_floats, sizeof(float), "the gradients");
    if (grad_floats == param_floats) memplan_add(p, "gradients", alloc_big_footprint(grad_bytes), "%s", grad_note);
    else memplan_add(p, "gradients", alloc_big_footprint(grad_bytes), "%s: %zu floats", grad_note, grad_floats);
    size_t state = strcmp(p->optim, OPTIM_NAME) == 0 ? optim_state_bytes_for(blocks, num_blocks, m->cfg)
                                                     : optim_state_bytes_named(p->optim, blocks, num_blocks);
    // optim_create maps no buffer for a state of 0 floats
    memplan_add(p, "optimizer state", state ? alloc_big_footprint(state) : 0, "%s, %zu bytes", p->optim, state);
}

void memplan_add_threads(MemPlan *p) {
    int threads = omp_get_max_threads();
    size_t each = matmul_thread_buffer_bytes(), shared = threads > 1 ? matmul_shared_buffer_bytes() : 0;
    memplan_add(p, "matmul buffers", mul_size_or_fail((size_t)threads, each, "the matmul buffers") + shared,
                "%d thread%s x %zu bytes of packing buffers%s", threads, threads == 1 ? "" : "s", each,
                shared ? " + one shared" : "");
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
