// The training loop both trainers run, once: the optimizer's creation, the
// resume of its state, the step (micro-batches, gradient accumulation over
// ranks, clipping, the fused updates), the NaN policy with its save of the
// last good state, the checkpoints' framing, Ctrl-C. What is the model's and
// the data's (a forward and backward pass, the data position, evaluations and
// samples) the trainer hands in as a Trainer.
#ifndef RUN_TRAIN_H
#define RUN_TRAIN_H

#include <cjson/cJSON.h>

#include "optim/optim.h"
#include "run/dist.h"
#include "run/model.h"
#include "run/run.h"

typedef struct {
    // the next training micro-batch: read it and, when mine (this rank's
    // share of the global batch), run it through the forward pass; returns its
    // mean loss (0 when not mine: the loader still advances the same on every
    // rank). first: the step's first, before which the trainer remembers its
    // data position (a NaN save rewinds to it)
    float (*forward_next)(void *self, int mine, int first);
    // backward of the last forward; fused: the per-block updates (NULL: none)
    void (*backward)(void *self, float loss_scale, FusedStep *fused);
    // the trainer's keys of the state record: the data position now, or
    // (rewound) the one before this step
    cJSON *(*state_record)(const void *self, int rewound);
    // after step `step`: the evaluations and samples that are due (run_due)
    void (*after_step)(void *self, Run *run, long step);
} Trainer;

typedef struct {
    Run *run;
    const RunConfig *rc;
    Dist *dist;
    Optimizer *opt;
    FusedStep fused;
    const ParamBlock *blocks; // all of the model's (each rank steps its own, dist)
    int num_blocks;
    const Trainer *trainer;
    void *self;               // the trainer's own state, handed to every hook
    ModelMemory *mem;         // the model's buffers and checkpoint header (run/model.h)
    RunAnalyses analyses;     // --snr-every, --gsnr-every: measurements written as JSON lines
    double *rank_losses;      // [ranks] the micro-batch losses each rank summed
    float last_loss;          // of the last step not skipped
    int checkpoints;          // -o with -n not 0
} Training;

// The start of a run with -o DIR (run_resume_begin; rank 0 makes, locks and
// checks the folder before the other ranks read it). Returns the state record
// of the checkpoint -y 1 resumes from (NULL when none), and its model and
// optimizer files in model_path, optim_path.
cJSON *training_resume_begin(Run *run, const RunConfig *rc, char *model_path, char *optim_path, size_t len);
// ZeRO-1: this rank's optimizer holds the state of its range of blocks (all
// of them in one process); a rules file is checked against them all. Returns
// the optimizer configuration of this rank's part.
OptimConfig training_plan_ranks(Dist *dist, const ParamBlock *blocks, int num_blocks, const OptimConfig *oc,
                                int ranks, int training);
// The optimizer over this rank's blocks (all of them in one process), and its
// line on the state's size against AdamW's. *state_bytes is the run's whole
// state (every rank's), *adamw_bytes AdamW's for the model.
Optimizer *training_create_optimizer(const Dist *dist, const ParamBlock *blocks, int num_blocks,
                                     const OptimConfig *oc, const OptimConfig *part_oc, int ranks,
                                     size_t *state_bytes, size_t *adamw_bytes);
// Set up a training over the trainer's model (mem, its gradients allocated),
// the hooks called with self. With --fused-update 1 says how the updates go.
void training_init(Training *tr, Run *run, Dist *dist, Optimizer *opt, const ParamBlock *blocks, int num_blocks,
                   const Trainer *trainer, void *self, ModelMemory *mem);
void training_free(Training *tr);
// -y 1: the optimizer's state from optim_path (each rank its part) checked
// against the checkpoint's step; the trainer's resume_data reads its own keys;
// returns the seconds the run had taken before.
double training_resume(Training *tr, cJSON *state, const char *optim_path,
                       void (*resume_data)(void *self, const Run *run, const cJSON *state, const char *path));
// Checkpoint `step`: the model (rank 0), the optimizer state (each rank's
// part, gathered), then the state record with the trainer's keys.
void training_save_checkpoint(Training *tr, long step, int rewound);
// After run_open: from run->start_step to -x (or Ctrl-C) the steps, their
// records, the trainer's evaluations, the checkpoints; then run_finish.
// Returns the last step.
long training_loop(Training *tr, float peak_lr);
// The measurements' end (the SlimAdam rules) and, with checkpoints, how to
// use the last: "checkpoint: DIR/model_<step>.bin; <what> with\n  <command>".
void training_finish(Training *tr, long step, const char *what, const char *program, const char *more_flags);

#endif
