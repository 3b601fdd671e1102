// The memory plan: before any large allocation a trainer lists what its run
// will hold resident at its peak (parameters, gradients, optimizer state,
// activations, scratch, data), compares the total with the memory the machine
// or its cgroup has available, and stops with one line that says what would
// fit when it does not (unless --force-memory 1). The model files supply
// their sizes through a builder; everything else is here, once.
//
// Every item is what really becomes resident: a buffer from alloc_big counts
// its whole pages (alloc_big_footprint) because every page of it is written;
// a buffer that a run never touches (the gradients of -x 0, a KV cache
// without samples) is not resident and is not counted. The first item is the
// process's resident set when the plan is made (the binary, libgomp, libc,
// cJSON, the tokenizer...), measured rather than guessed.
#ifndef RUN_MEMPLAN_H
#define RUN_MEMPLAN_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "common/utils.h"
#include "optim/optim.h"

#define MEMPLAN_MAX_ITEMS 16

typedef struct {
    char name[32];
    size_t bytes;
    char note[128];
} MemPlanItem;

typedef struct {
    MemPlanItem items[MEMPLAN_MAX_ITEMS];
    int num_items;
    size_t total;
    size_t resident_now; // the first item: what the process holds already
    int B, T;            // the batch it was made for (T = 0: no sequence length, the ViT)
    char optim[16];      // the optimizer it was made for
    int fused;           // with --fused-update 1 (no whole gradient)
} MemPlan;

// Start a plan for micro-batch B, sequence length T (0 for the ViT), an
// optimizer and the update mode; its first item is the process's resident set now.
void memplan_begin(MemPlan *p, int B, int T, const char *optim, int fused, size_t resident_now,
                   const char *resident_note);
// add one item; bytes 0 is listed (e.g. "not touched") but adds nothing
__attribute__((format(printf, 4, 5)))
void memplan_add(MemPlan *p, const char *name, size_t bytes, const char *note_fmt, ...);
// Parameters, gradients and the state of p->optim for this parameter storage
// (param_floats, padding included), a gradient buffer of grad_floats (the
// parameters' with whole gradients, one layer's with fused updates;
// grad_note says which) and these blocks. The state of this build's
// optimizer is optim_state_bytes_for with cfg; another one's is
// optim_state_bytes_named (its defaults). training 0 (-x 0): gradients and
// state are never touched, so they are listed as 0.
typedef struct {
    const ParamBlock *blocks; // this rank's
    int num_blocks;
    const OptimConfig *cfg;   // the optimizer configuration of this rank's part
    int training;             // -x != 0: gradients and optimizer state
} MemPlanModel;
void memplan_add_model(MemPlan *p, size_t param_floats, size_t grad_floats, const char *grad_note,
                       const MemPlanModel *m);
// The matmul packing buffers of every OpenMP thread.
void memplan_add_threads(MemPlan *p);

// A trainer's plan for another batch, optimizer or update mode (for "what would fit").
typedef void (*MemPlanBuilder)(MemPlan *out, const void *ctx, int B, int T, const char *optim, int fused);

// The memory available: memory_available (common/utils.h), which alloc_big
// also checks each big buffer against.

// Print the plan and compare it with the memory available (limit > 0: plan
// against that many bytes instead). If the run does not fit, fail with one
// line: what it needs, what is available, and what would fit (the largest
// smaller B, or T, the optimizers whose plans fit, and --fused-update 1 when
// the run is not fused and that fits), unless force is set
// (a warning then). build and ctx make the other plans.
void memplan_check(const MemPlan *p, MemPlanBuilder build, const void *ctx, size_t limit, int force);

// the plan as JSON (for the log's config record)
cJSON *memplan_json(const MemPlan *p);
// At the end of a run: the peak resident set next to the plan.
void memplan_print_peak(const MemPlan *p);

#endif
