// --profile 1: where a training step's time goes.
//
// The kernels charge themselves: each wraps its work in profile_begin(phase)
// ... profile_end(), and the training loop marks the steps. The time between
// two marks goes to the innermost open phase, or to PROFILE_OTHER outside
// any, so the phases add up to the step exactly. Two clocks are read at each
// mark: the CPU time of all threads (which counts a thread spinning at a
// barrier, but not a wait for a core that another job holds) and the wall
// time. Off (the default), a mark is one test of a global flag. Marks made
// inside a parallel region are ignored (only the serial caller times).
#ifndef COMMON_PROFILE_H
#define COMMON_PROFILE_H

typedef enum {
    PROFILE_OTHER,        // outside every kernel: data, the loop, logs, activation-gradient clears
    PROFILE_EMBEDDING,    // token + position (or patch) embedding, forward and backward
    PROFILE_GEMM_FWD,     // matmul_forward
    PROFILE_GEMM_BWD,     // matmul_backward(_write)
    PROFILE_ATTN_FWD,     // attention_forward
    PROFILE_ATTN_BWD,     // attention_backward
    PROFILE_POINTWISE,    // LayerNorm, GELU, residual, forward and backward
    PROFILE_LOSS,         // softmax + cross-entropy, forward and backward
    PROFILE_GRAD_CLEAR,   // clearing the parameter gradients before a step
    PROFILE_GRAD_NORM,    // the gradient norm (clipping, fused updates' checks)
    PROFILE_OPTIMIZER,    // the optimizer's update
    PROFILE_NUM_PHASES
} ProfilePhase;

extern int profile_timing; // a counted step is running (read by the inline marks)

void profile_enable(int on);                                   // --profile 1
void profile_step_begin(int counted);                          // counted 0: the step is not timed
void profile_step_end(void);
void profile_begin_timed(ProfilePhase phase, double flops);
void profile_end_timed(void);
long profile_steps(void);                                      // counted steps so far
// the table, per counted step: CPU ms, share, wall ms, GFLOP per CPU second
void profile_print(void);

// open a phase (flops: the floating-point operations it will do, 0 if not counted)
static inline void profile_begin(ProfilePhase phase, double flops) {
    if (profile_timing) profile_begin_timed(phase, flops);
}
static inline void profile_end(void) {
    if (profile_timing) profile_end_timed();
}

#endif
