// Data-parallel training over MPI with the optimizer state sharded across
// ranks (ZeRO-1). This is the only part of the project that includes mpi.h:
// built with MPI=1 (mpicc, -DUSE_MPI) it talks to the other ranks; built
// without, every call is the single-process case (one rank, nothing to send).
//
// One step with N ranks:
//   each rank: forward/backward on its own micro-batches of the global batch
//   dist_reduce_grads   block b's gradient summed over the ranks into the rank
//                       that owns b, in rank order (g0 + g1) + g2 ..., with
//                       point-to-point messages (all owners receiving at
//                       once): the sum's order is fixed, so a run is
//                       deterministic for a given N and thread count
//   dist_clip_grad_norm the global norm from the owners' per-block sums, added
//                       in block order (the same bits as clip_grad_norm on the
//                       summed gradient), clipping the owned blocks
//   optim_step          the rank's optimizer holds only its blocks' state
//   dist_gather_params  each owner broadcasts its updated blocks (MPI_Ibcast)
// The blocks are split into N contiguous ranges balanced by size, so each
// rank's optimizer state is a slice of every section of the whole model's
// (optim_state_sections) and the state file is written from the slices in
// rank order: the same file one process writes, resumable with any N.
#ifndef RUN_DIST_H
#define RUN_DIST_H

#include <stddef.h>

#include "optim/optim.h"

// The process's place in the job: rank 0 of 1 without MPI.
int dist_rank(void);
int dist_size(void);
// MPI_Init (errors abort the job: MPI_ERRORS_ARE_FATAL); ranks other than 0
// send their standard output to /dev/null (errors still go to stderr).
void dist_init(int *argc, char ***argv);
void dist_finalize(void);

typedef struct {
    int rank, size;
    const ParamBlock *blocks; // the model's blocks (not owned)
    int num_blocks;
    int *first_block;         // [size+1] rank r owns blocks first_block[r] .. first_block[r+1]-1
    int own_first, own_end;   // this rank's range
    double *block_sumsq;      // [num_blocks] sums of squared gradients (the norm)
    // the owners' ranges in pieces of at most `piece` floats (no piece spans
    // two blocks): rank r's are piece_first[r] .. piece_first[r+1]-1, each
    // piece_len[p] floats at piece_off[p] in the flat buffers
    size_t piece;
    int *piece_first;
    size_t *piece_off, *piece_len;
    void *requests;           // MPI_Request[max(pieces, 2 * size)]
    float *acc, *recv;        // [piece], [size x piece] scratch of the ordered sum
    double comm_seconds;      // time spent communicating since the last dist_take_comm_seconds
    double bytes_sent;        // payload bytes this rank sent since then
} Dist;

// Split blocks [0, num_blocks) into contiguous ranges, one per rank,
// balanced by their number of parameters.
void dist_plan(Dist *d, const ParamBlock *blocks, int num_blocks);
void dist_free(Dist *d);
static inline const ParamBlock *dist_own_blocks(const Dist *d) { return d->blocks + d->own_first; }
static inline int dist_num_own_blocks(const Dist *d) { return d->own_end - d->own_first; }
// Bytes of optimizer state rank r's optimizer allocates (cfg: the part's
// configuration), from the optimizer's formula; and the table of every rank's
// blocks and state beside the whole model's, printed at start-up.
size_t dist_state_bytes(const Dist *d, int r, const OptimConfig *cfg);
void dist_print_partition(const Dist *d, const OptimConfig *cfg);
// The partition of n blocks of the given sizes into `ranks` contiguous
// ranges (first[ranks+1]); exposed for the tests.
void dist_partition(const size_t *sizes, int n, int ranks, int *first);

// Each owned block of grads becomes the sum over the ranks, in rank order.
void dist_reduce_grads(Dist *d, float *grads);
// The global gradient norm after dist_reduce_grads; clips the owned blocks.
float dist_clip_grad_norm(Dist *d, float *grads, float clip);
// Every rank receives each block from its owner.
void dist_gather_params(Dist *d, float *params);
// x[0..n) summed over the ranks when each entry is nonzero on at most one
// rank (the rest pass 0): adding zeros is exact, so the result is the same
// bits in any order and on every rank.
void dist_share_doubles(double *x, int n);
// Did any rank pass a nonzero flag? The same answer on every rank.
int dist_any(int flag);
void dist_barrier(void);
// Seconds spent communicating (and bytes sent) since the last call.
double dist_take_comm_seconds(Dist *d, double *bytes_sent);

// The optimizer state file of the whole model from the ranks' parts, written
// by rank 0 atomically (every rank must call it); and read back by every rank,
// each reading its part.
void dist_save_optimizer(const Dist *d, const Optimizer *opt, const char *path);
void dist_load_optimizer(const Dist *d, Optimizer *opt, const char *path);

#endif
