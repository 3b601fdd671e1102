// The run machinery both trainers share: flags, the learning-rate schedule,
// gradient clipping, the JSON-lines log and the progress line, checkpoints
// with exact resume, Ctrl-C, and NaN handling. The trainers keep the model and
// the data; everything about *how a run goes* lives here, once.
#ifndef RUN_RUN_H
#define RUN_RUN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "optim/optim.h"
#include "run/flags.h"
#include "optim/snr.h"

// The ranges of the integer flags (a value outside fails naming the flag and
// the range): wide enough for any run this program can do, small enough that
// no size computed from them can overflow.
#define RUN_MAX_BATCH (1 << 20)          // -b
#define RUN_MAX_TOTAL_BATCH (1LL << 50)  // -d
#define RUN_MAX_ACCUM (1 << 20)          // -d / micro-batch: accumulation steps
#define RUN_MAX_STEPS 1000000000000LL    // -x, -u, and every "every N steps" flag
#define RUN_MAX_KEEP (1 << 20)           // -nk

// -n (and the GPT-2 trainer's -s) by default act only at the end of the run; 0 (or -1) never, as in llm.c
#define RUN_AT_END_ONLY (-2)
// -x -1: one epoch of the training data
#define RUN_ONE_EPOCH (-1)

typedef enum { SCHED_COSINE, SCHED_LINEAR, SCHED_CONSTANT, SCHED_WSD } ScheduleKind;

typedef struct {
    // batch
    int B;                 // -b micro-batch size (sequences or images)
    long total_batch;      // -d tokens (GPT-2) or images (ViT) per optimizer step; 0 = one micro-batch
    int grad_accum;        // micro-batches per step (derived from -d)
    long max_steps;        // -x optimizer steps (RUN_ONE_EPOCH until the trainer knows its data)
    int steps_given;       // -x was on the command line
    // learning rate schedule
    ScheduleKind schedule; // -k cosine|linear|constant|wsd
    long warmup;           // -u warmup steps
    float final_frac;      // -q final lr as a fraction of the peak
    float wsd_decay_frac;  // --wsd-decay: fraction of the steps spent decaying (wsd)
    float clip;            // --clip global-norm clipping threshold, 0 = off
    // evaluation
    long val_every;        // -v steps between evaluations (0 = only at the end)
    int val_every_given;   // -v was on the command line (-x 0 then evaluates)
    // output
    char out_dir[512];     // -o directory for the log and checkpoints ("" = none)
    long ckpt_every;       // -n steps between checkpoints and at the end (<= 0 never; RUN_AT_END_ONLY, the default)
    int keep_last;         // -nk checkpoints kept (0 = all)
    long keep_major;       // -nm checkpoints of steps that are multiples of this are never pruned (0 = none)
    int resume;            // -y 1: continue from the latest complete checkpoint in -o
    int nan_skip;          // --nan skip|stop
    long print_every;      // -p steps between progress lines (0 = automatic)
    uint64_t seed;         // --seed
    // SlimAdam rules from AdamW's second moments (optim/snr.h), OPTIM=adamw only
    long snr_every;        // --snr-every: measure every N steps (0 = off)
    char snr_out[512];     // --snr-out: rules JSON written at the end
    int snr_out_default;   // snr_out is the default DIR/slimadam_rules.json
    // g-SNR of the gradient during training (optim/snr.h), any optimizer
    long gsnr_every;       // --gsnr-every: measure at step 1 and every N steps (0 = off)
    // the memory plan (run/memplan.h)
    int force_memory;      // --force-memory 1: run even when the plan does not fit
    size_t memory_limit;   // --memory-limit: plan against this many bytes (0 = the memory available)
    int memory_plan_only;  // --memory-plan-only 1: print the plan, check it, and stop
    // updates fused into the backward pass (optim/optim.h, FusedStep)
    int fused_update;      // --fused-update 1: each block steps when its gradient is complete; no gradient buffer
    int profile;           // --profile 1: at the end, the CPU and wall time per step of each phase (common/profile.h)
    // data-parallel runs (run/dist.h): set by the trainer, not by flags
    int ranks;             // processes sharing each step (mpirun -np); grad_accum is per rank
    int follower;          // a rank other than 0: reads the run folder, writes nothing to it
} RunConfig;

void run_config_defaults(RunConfig *rc);
// Parse argv[*i] (and its value) if it is a run or optimizer flag (incl. -l lr
// and -c weight decay, which go to the optimizer config). Returns 1 if it was
// one (advancing *i past its value), 0 otherwise. The flags are a table
// (run/flags.h) in run/run.c, which also prints their help.
int run_parse_flag(RunConfig *rc, OptimConfig *oc, int argc, char **argv, int *i);
// The whole command line: each flag from the trainer's table (its fields in
// the struct at base), else the run's and the optimizer's. An unknown flag
// fails with "unknown flag F (<help> lists the flags)", or, when the other
// trainer's table has it, "flag F is for <other_name>; <name> does not take
// it (...)" (other NULL: no such check). Returns FLAG_HELP or
// FLAG_HELP_MARKDOWN when a flag asks for the help (the caller prints it), else 0.
int run_parse_args(const FlagTable *own, void *base, RunConfig *rc, OptimConfig *oc, int argc, char **argv,
                   const char *name, const char *help, const FlagTable *other, const char *other_name);
void run_print_flags_help(void);
// Is flag in the run's table (its own, or one of llm.c's it accepts or refuses by name)?
int run_flag_known(const char *flag);
// The same as the README's markdown (flags_print_markdown): the run's table
// and every optimizer's flags.
void run_print_flags_markdown(void);
// Derive the accumulation steps: items_per_micro = B*T (GPT-2) or B (ViT), times the ranks.
// With -x -1 the checks that need the run's length wait for run_set_epoch_steps.
void run_finalize_config(RunConfig *rc, const OptimConfig *oc, long items_per_micro, const char *unit);
// -x -1: the run is one epoch of micro_batches_per_epoch micro-batches (at
// grad_accum per step); fails naming `data` when that is not one step.
void run_set_epoch_steps(RunConfig *rc, long micro_batches_per_epoch, const char *data);
// Does the run act every `every` steps at all (-s, -n: > 0, or the default at the end)?
int run_every_active(long every);
// run_finalize_config also refuses, one line each, the combinations --fused-update 1 cannot do.
// mpirun -np N > 1: refuses what data-parallel runs do not do (yet), one line
// each: evaluation only (training 0), fused updates, the SNR measurements,
// SGD-SaI's max-normalised g-SNR.
void run_refuse_data_parallel_gaps(const RunConfig *rc, const OptimConfig *oc, int training);
// Does this step need a measuring backward before the fused updates? With
// --clip > 0 the clip factor, with --nan skip the finiteness of the whole
// gradient must be known before the first block moves.
int run_fused_measures(const RunConfig *rc);

// learning rate of step (0-based) out of rc->max_steps
float lr_at_step(const RunConfig *rc, float peak_lr, long step);
const char *schedule_name(ScheduleKind k);

// Global L2 norm of the gradient over the blocks (padding rows excluded),
// accumulated in double in a fixed order; then, if clip > 0 and the norm
// exceeds it, scale the gradients by clip / (norm + 1e-6) as
// torch.nn.utils.clip_grad_norm_ does. Returns the norm before clipping.
float clip_grad_norm(float *grads, const ParamBlock *blocks, int num_blocks, float clip);

// ----------------------------------------------------------------------------
// the log (DIR/log.jsonl, one JSON object per line, flushed as it goes)
typedef struct {
    FILE *f;
    char path[600];
} RunLog;

// Open a JSON-lines file: new (truncating), or, when resuming from
// resume_step, keep the records of steps <= resume_step and those without a
// step (atomically; a torn last line is dropped) and append after them.
// Returns the number of records kept.
long run_jsonl_open(RunLog *log, const char *path, long resume_step);
// DIR/log.jsonl, opened as above
void run_log_open(RunLog *log, const char *dir, long resume_step);
// Write one record and flush. Takes ownership of obj.
void run_log_write(RunLog *log, cJSON *obj);
void run_log_close(RunLog *log);
// the record opening a run: config, model and optimizer details
cJSON *run_config_json(const RunConfig *rc, const OptimConfig *oc, const char *model_name, int argc, char **argv);
// The model's part of that record: the matmul precision, an object `name` of
// the model's n configuration values under their keys, and what the model
// was started from (init: a checkpoint or a new model's name).
void run_config_add_model(cJSON *config, const char *precision, const char *name, const char *const *keys,
                          const double *values, int n, const char *init);

// ----------------------------------------------------------------------------
// the progress line
typedef struct {
    double start_time;     // now_seconds() when this process started training
    double elapsed_before; // seconds spent before a resume
    long first_step;       // step this process started at
    double last_print;
} Progress;

void progress_start(Progress *p, long first_step, double elapsed_before);
double progress_elapsed(const Progress *p);
// Print a line for step (1-based) of total if due (or force). val < 0: none yet.
void progress_print(Progress *p, const RunConfig *rc, long step, float loss, float val, const char *val_name,
                    float lr, float norm, double step_ms, double cpu_ms, double items_per_s, const char *unit,
                    int force);

// ----------------------------------------------------------------------------
// checkpoints: DIR/model_<step>.bin, DIR/optim_<step>.bin, DIR/state_<step>.json.
// The state file is written last: a checkpoint is complete when it exists.
void ckpt_path(char *out, size_t len, const char *dir, const char *kind, long step, const char *ext);
// The highest step with a complete checkpoint in dir, or -1.
long ckpt_latest(const char *dir);
// Write DIR/state_<step>.json atomically (takes ownership of state), then
// delete checkpoints beyond the newest keep_last (0 = keep all) except those
// of steps that are multiples of keep_major (0 = none are kept for that), and
// the temporary files of interrupted writes.
void ckpt_commit(const char *dir, long step, cJSON *state, int keep_last, long keep_major);
// Read DIR/state_<step>.json (caller deletes the result).
cJSON *ckpt_read_state(const char *dir, long step);
// Make sure dir exists and is writable; fail at start-up if not.
void ensure_output_dir(const char *dir);

// JSON helpers for the state file: 64-bit values as strings, exactly
void json_add_u64(cJSON *obj, const char *key, uint64_t v);
uint64_t json_get_u64(const cJSON *obj, const char *key, const char *file);
double json_get_number(const cJSON *obj, const char *key, const char *file);

// ----------------------------------------------------------------------------
// A training run as the trainers' loops see it: resume, the log, the step and
// evaluation records, checkpoints. The trainer keeps its model and data; these
// calls keep the bookkeeping in one place.
typedef struct {
    const RunConfig *rc;
    RunLog log;
    Progress progress;
    long start_step;          // steps completed before this process (resume), else 0
    long nan_skipped;         // steps skipped for a non-finite loss or gradient
    double step_t0;           // start of the current step
    double step_cpu0;         // the process's CPU time then
    float last_eval;          // the latest evaluation (< 0: none yet)
    const char *eval_name;    // "val" (GPT-2 loss) or "acc" (ViT accuracy)
    const char *unit;         // "tok" or "img"
    size_t optim_state_bytes;
    char state_path[700];     // the state file resumed from ("" when not resuming)
    long log_keep_step;       // the JSON-lines files keep their records up to this step (-1: new files)
    double comm_ms;           // data-parallel runs: the step's time in communication (logged as comm_ms)
} Run;

// The start of a run with -o DIR: creates DIR, checks it is writable, locks
// it (DIR/.lock: a second run on DIR fails) and removes the temporary files of
// our own names a crash left. A new run refuses a DIR holding another run's
// checkpoints or logs, or a file with a checkpoint's name.
// -y 1: find the newest complete checkpoint in -o. Returns its state record
// (the trainer reads its own keys, e.g. data positions, then deletes it), or
// NULL when there is nothing to resume. Checks that it was made with the same
// optimizer and batch flags. Sets run->start_step, nan_skipped, state_path.
cJSON *run_resume_begin(Run *run, const RunConfig *rc);
// The checks of a resume record (state_<step>.json, already read as a JSON
// object; run->state_path names it) against run->rc: its optimizer, step and
// batch flags, and run->start_step, nan_skipped, log_keep_step from it.
void run_resume_check_state(Run *run, const cJSON *state, long step);
// optim_load, and the optimizer's step must be the checkpoint's (minus the
// skipped steps): fails naming both files otherwise.
void run_resume_optimizer(const Run *run, Optimizer *opt, const char *path);
// The step check of run_resume_optimizer alone, for a state loaded otherwise
// (a rank's part, run/dist.h).
void run_check_optimizer_step(const Run *run, const Optimizer *opt, const char *path);
// Paths of the model and optimizer files of checkpoint `step`.
void run_checkpoint_paths(const Run *run, long step, char *model_path, char *optim_path, size_t len);
// The same, for writing checkpoint `step`: until run_checkpoint_commit, a
// failure (fail()) removes the files written so far.
void run_checkpoint_begin(const Run *run, long step, char *model_path, char *optim_path, size_t len);
// Start: open the log (continuing it on resume) with the config record
// (ownership taken; may be NULL without -o), Ctrl-C handling, the clock.
void run_open(Run *run, cJSON *config_record, const char *unit, const char *eval_name, size_t optim_state_bytes,
              double elapsed_before);
void run_step_begin(Run *run);
// The step's record and progress line. skipped: the update was skipped (--nan skip).
void run_step_end(Run *run, long step, float loss, float lr, float norm, int skipped, double items);
// Is an action every `every` steps due at step? (Always at the last step or after Ctrl-C.)
int run_due(const Run *run, long step, long every);
// An evaluation result (val loss, accuracy): logged with memory figures.
void run_eval_end(Run *run, long step, const char *key, float value, cJSON *extra);
// Complete checkpoint `step` (the model and optimizer files are written):
// the state record = the trainer's keys (extra, ownership taken) + the run's.
void run_checkpoint_commit(Run *run, long step, cJSON *extra);
// A non-finite loss or gradient norm at step: fails with one line (after the
// trainer saved the last good state, described by saved_note), unless --nan skip.
// Returns 1 if the step must be skipped.
int run_check_finite(Run *run, long step, float loss, float norm, const char *saved_note);
void run_finish(Run *run, long step, float last_loss);

// ----------------------------------------------------------------------------
// Measurements during training, each one JSON line (the files are kept to the
// resumed step on -y 1, like the log):
//   --snr-every N   DIR/snr.jsonl, SNRs of AdamW's v (not written without
//                   -o); at the end the SlimAdam rules and their mean SNRs
//   --gsnr-every N  DIR/gsnr.jsonl, every block's g-SNR (needs -o)
// They only read the optimizer state and the gradients: training is unchanged.
typedef struct {
    const RunConfig *rc;
    SnrStats snr;
    RunLog snr_log;
    GsnrProbe gsnr;
    RunLog gsnr_log;
} RunAnalyses;

// After run_open; allocates everything the measurements need.
void run_analyses_open(RunAnalyses *a, const Run *run, const ParamBlock *blocks, int num_blocks);
// After step `step` (its gradient, clipped, still in grads): the measurements due.
void run_analyses_step(RunAnalyses *a, long step, const Optimizer *opt, const float *grads);
// At the end: the SlimAdam rules; closes the files.
void run_analyses_finish(RunAnalyses *a);

// ----------------------------------------------------------------------------
// Ctrl-C: the first SIGINT or SIGTERM asks the loop to checkpoint and stop; a
// second one kills the process as usual.
void run_install_sigint(void);
int run_interrupted(void);
// Data-parallel runs: every rank must stop at the same step, so the loop asks
// all ranks whether any received the signal (run_signal_received) and hands
// the answer to run_agree_interrupted; run_interrupted (and run_due) then
// return the agreed answer.
int run_signal_received(void);
void run_agree_interrupted(int interrupted);

#endif
