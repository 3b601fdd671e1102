// Per-phase CPU and wall time of the training steps; see common/profile.h.
#include "common/profile.h"

#include <omp.h>
#include <stdio.h>

#include "common/utils.h"

static const char *const PHASE_NAMES[PROFILE_NUM_PHASES] = {
    "other (data, loop, logs, clears)", "embedding (fwd, bwd)", "GEMM forward", "GEMM backward",
    "attention forward", "attention backward", "LayerNorm, GELU, residual", "softmax + cross-entropy",
    "clearing gradients", "gradient norm", "optimizer update",
};

#define MAX_DEPTH 8

int profile_timing;
static struct {
    int enabled;
    long steps;                   // counted steps so far
    int depth;                    // open phases; stack[depth - 1] is the innermost
    ProfilePhase stack[MAX_DEPTH];
    double cpu0, wall0;           // the last mark
    double cpu[PROFILE_NUM_PHASES], wall[PROFILE_NUM_PHASES], flops[PROFILE_NUM_PHASES];
} prof;

void profile_enable(int on) { prof.enabled = on; }

// charge the time since the last mark to the innermost open phase
static void mark(void) {
    double cpu = cpu_seconds(), wall = now_seconds();
    ProfilePhase ph = prof.depth > 0 ? prof.stack[prof.depth - 1] : PROFILE_OTHER;
    prof.cpu[ph] += cpu - prof.cpu0;
    prof.wall[ph] += wall - prof.wall0;
    prof.cpu0 = cpu;
    prof.wall0 = wall;
}

void profile_step_begin(int counted) {
    profile_timing = prof.enabled && counted;
    prof.depth = 0;
    if (profile_timing) { prof.cpu0 = cpu_seconds(); prof.wall0 = now_seconds(); }
}

void profile_step_end(void) {
    if (!profile_timing) return;
    mark();
    if (prof.depth != 0) fail("profile: %d phase(s) still open at the end of a step", prof.depth);
    prof.steps++;
    profile_timing = 0;
}

void profile_begin_timed(ProfilePhase phase, double flops) {
    if (omp_in_parallel()) return;
    mark();
    if (prof.depth == MAX_DEPTH) fail("profile: phases nested deeper than %d", MAX_DEPTH);
    prof.stack[prof.depth++] = phase;
    prof.flops[phase] += flops;
}

void profile_end_timed(void) {
    if (omp_in_parallel()) return;
    if (prof.depth == 0) fail("profile: profile_end without profile_begin");
    mark();
    prof.depth--;
}

long profile_steps(void) { return prof.steps; }

void profile_print(void) {
    if (prof.steps == 0) { printf("profile: no step after the first was run\n"); return; }
    double n = (double)prof.steps, cpu_total = 0.0, wall_total = 0.0;
    for (int i = 0; i < PROFILE_NUM_PHASES; i++) cpu_total += prof.cpu[i], wall_total += prof.wall[i];
    printf("profile: %ld step%s after the first, per step:\n", prof.steps, prof.steps == 1 ? "" : "s");
    printf("  %-34s %11s %6s %11s %12s\n", "phase", "CPU ms", "CPU %", "wall ms", "GFLOP/CPU s");
    for (int i = 0; i < PROFILE_NUM_PHASES; i++) {
        printf("  %-34s %11.3f %5.1f%% %11.3f", PHASE_NAMES[i], 1e3 * prof.cpu[i] / n,
               100.0 * prof.cpu[i] / (cpu_total > 0.0 ? cpu_total : 1.0), 1e3 * prof.wall[i] / n);
        if (prof.flops[i] > 0.0 && prof.cpu[i] > 0.0) printf(" %12.1f", prof.flops[i] / prof.cpu[i] / 1e9);
        printf("\n");
    }
    printf("  %-34s %11.3f %5.1f%% %11.3f\n", "total", 1e3 * cpu_total / n, 100.0, 1e3 * wall_total / n);
}
