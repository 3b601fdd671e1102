// Data-parallel training over MPI with ZeRO-1 (see dist.h). Without USE_MPI
// the job is one rank and every exchange is a no-op.
#include "run/dist.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef USE_MPI
#include <mpi.h>
#endif

#include "common/utils.h"

// messages of at most this many floats: the owner's scratch stays small
#define DIST_CHUNK ((size_t)1 << 20)

static int g_rank = 0, g_size = 1;

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }

void dist_init(int *argc, char ***argv) {
#ifdef USE_MPI
    MPI_Init(argc, argv);
    // an MPI error anywhere ends the whole job (Open MPI's default, made explicit)
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    // only rank 0 prints: the others compute the same numbers
    if (g_rank != 0 && !freopen("/dev/null", "w", stdout)) fail("rank %d: cannot redirect stdout", g_rank);
#else
    (void)argc; (void)argv;
#endif
}

void dist_finalize(void) {
#ifdef USE_MPI
    fflush(stdout);
    MPI_Finalize();
#endif
}

// ----------------------------------------------------------------------------
// the partition

void dist_partition(const size_t *sizes, int n, int ranks, int *first) {
    double total = 0.0;
    for (int i = 0; i < n; i++) total += (double)sizes[i];
    // each rank in turn takes the blocks that bring it nearest an equal share
    // of what is left (a block larger than a share, GPT-2's wte, makes the
    // others share the rest)
    first[0] = 0;
    double prefix = 0.0;
    int i = 0;
    for (int r = 1; r < ranks; r++) {
        double target = prefix + (total - prefix) / (ranks - r + 1);
        while (i < n && prefix + (double)sizes[i] <= target) prefix += (double)sizes[i++];
        // block i straddles the target: it goes to the side that leaves the boundary nearer
        if (i < n && prefix + (double)sizes[i] - target < target - prefix) prefix += (double)sizes[i++];
        first[r] = i;
    }
    first[ranks] = n;
}

void dist_plan(Dist *d, const ParamBlock *blocks, int num_blocks) {
    memset(d, 0, sizeof(*d));
    d->rank = g_rank;
    d->size = g_size;
    d->blocks = blocks;
    d->num_blocks = num_blocks;
    size_t *sizes = malloc_or_fail(num_blocks * sizeof(size_t), "block sizes");
    for (int i = 0; i < num_blocks; i++) sizes[i] = block_numel(&blocks[i]);
    d->first_block = malloc_or_fail((g_size + 1) * sizeof(int), "the partition");
    dist_partition(sizes, num_blocks, g_size, d->first_block);
    free(sizes);
    d->own_first = d->first_block[g_rank];
    d->own_end = d->first_block[g_rank + 1];
    d->block_sumsq = malloc_or_fail(num_blocks * sizeof(double), "block sums");
#ifdef USE_MPI
    if (g_size > 1) {
        // pieces of at most DIST_CHUNK / (ranks - 1) floats (at least 64 Ki):
        // an owner's scratch for one round is about DIST_CHUNK floats
        d->piece = DIST_CHUNK / (size_t)(g_size - 1);
        if (d->piece < ((size_t)1 << 16)) d->piece = (size_t)1 << 16;
        int n = 0;
        for (int pass = 0; pass < 2; pass++) { // count, then fill
            n = 0;
            for (int r = 0; r < g_size; r++) {
                if (pass) d->piece_first[r] = n;
                for (int b = d->first_block[r]; b < d->first_block[r + 1]; b++)
                    for (size_t start = 0; start < block_numel(&blocks[b]); start += d->piece, n++) {
                        if (!pass) continue;
                        size_t left = block_numel(&blocks[b]) - start;
                        d->piece_off[n] = blocks[b].offset + start;
                        d->piece_len[n] = left < d->piece ? left : d->piece;
                    }
            }
            if (!pass) {
                d->piece_first = malloc_or_fail((g_size + 1) * sizeof(int), "pieces");
                d->piece_off = malloc_or_fail((n ? n : 1) * sizeof(size_t), "pieces");
                d->piece_len = malloc_or_fail((n ? n : 1) * sizeof(size_t), "pieces");
            }
        }
        d->piece_first[g_size] = n;
        int nreq = n > 2 * g_size ? n : 2 * g_size;
        d->requests = malloc_or_fail(nreq * sizeof(MPI_Request), "MPI requests");
        d->acc = malloc_or_fail(d->piece * sizeof(float), "reduce scratch");
        d->recv = malloc_or_fail((size_t)g_size * d->piece * sizeof(float), "reduce scratch");
    }
#endif
}

size_t dist_state_bytes(const Dist *d, int r, const OptimConfig *cfg) {
    int n = d->first_block[r + 1] - d->first_block[r];
    return n ? optim_state_bytes_for(d->blocks + d->first_block[r], n, cfg) : 0;
}

void dist_print_partition(const Dist *d, const OptimConfig *cfg) {
    OptimConfig whole_cfg = *cfg;
    whole_cfg.blocks_are_part = 0;
    size_t whole = optim_state_bytes_for(d->blocks, d->num_blocks, &whole_cfg);
    size_t params = optim_num_params(d->blocks, d->num_blocks);
    char b1[32], b2[32];
    printf("zero-1: %d ranks, the optimizer state split by blocks (whole: %zu bytes, %s)\n", d->size, whole,
           format_bytes((double)whole, b1, sizeof(b1)));
    for (int r = 0; r < d->size; r++) {
        int f = d->first_block[r], e = d->first_block[r + 1];
        size_t bytes = dist_state_bytes(d, r, cfg);
        size_t p = e > f ? optim_num_params(d->blocks + f, e - f) : 0;
        printf("  rank %d: blocks %d..%d (%s .. %s), %zu parameters (%.1f%%), state %zu bytes (%s, %.1f%% of the whole)\n",
               r, f, e - 1, e > f ? d->blocks[f].name : "-", e > f ? d->blocks[e - 1].name : "-", p,
               100.0 * (double)p / (double)params, bytes, format_bytes((double)bytes, b2, sizeof(b2)),
               whole ? 100.0 * (double)bytes / (double)whole : 0.0);
    }
}

void dist_free(Dist *d) {
    free(d->piece_first);
    free(d->piece_off);
    free(d->piece_len);
    free(d->requests);
    free(d->first_block);
    free(d->block_sumsq);
    free(d->acc);
    free(d->recv);
}


// ----------------------------------------------------------------------------
// the step's exchanges

// Every owner receives at once: the owners' ranges are cut into pieces of at
// most d->piece floats (a block's tail is a short piece), and in round k each
// rank sends its gradient of every other owner's k-th piece while receiving
// the others' of its own k-th piece; then it adds them in rank order. The
// order of every sum is fixed; the links all carry traffic together.
void dist_reduce_grads(Dist *d, float *grads) {
#ifdef USE_MPI
    if (d->size == 1) return;
    double t0 = now_seconds();
    int rounds = 0;
    for (int r = 0; r < d->size; r++)
        if (d->piece_first[r + 1] - d->piece_first[r] > rounds) rounds = d->piece_first[r + 1] - d->piece_first[r];
    MPI_Request *req = d->requests;
    for (int k = 0; k < rounds; k++) {
        int nreq = 0;
        // my k-th piece, from every other rank
        int mine = d->piece_first[d->rank] + k;
        int have_mine = mine < d->piece_first[d->rank + 1];
        if (have_mine)
            for (int s = 0; s < d->size; s++) {
                if (s == d->rank) continue;
                MPI_Irecv(d->recv + (size_t)s * d->piece, (int)d->piece_len[mine], MPI_FLOAT, s, 1, MPI_COMM_WORLD,
                          &req[nreq++]);
            }
        // every other owner's k-th piece, to it
        for (int o = 0; o < d->size; o++) {
            int p = d->piece_first[o] + k;
            if (o == d->rank || p >= d->piece_first[o + 1]) continue;
            MPI_Isend(grads + d->piece_off[p], (int)d->piece_len[p], MPI_FLOAT, o, 1, MPI_COMM_WORLD,
                      &req[nreq++]);
            d->bytes_sent += (double)d->piece_len[p] * sizeof(float);
        }
        MPI_Waitall(nreq, req, MPI_STATUSES_IGNORE);
        if (!have_mine) continue;
        // (g0 + g1) + g2 ..., the same order on any run with this many ranks
        float *g = grads + d->piece_off[mine];
        size_t len = d->piece_len[mine];
        for (int s = 0; s < d->size; s++) {
            const float *src = s == d->rank ? g : d->recv + (size_t)s * d->piece;
            if (s == 0) memcpy(d->acc, src, len * sizeof(float));
            else
                for (size_t i = 0; i < len; i++) d->acc[i] += src[i];
        }
        memcpy(g, d->acc, len * sizeof(float));
    }
    d->comm_seconds += now_seconds() - t0;
#else
    (void)d; (void)grads;
#endif
}

float dist_clip_grad_norm(Dist *d, float *grads, float clip) {
    // the owners' per-block sums (block_sum_of_squares, as clip_grad_norm), then
    // every block's added in block order, as one process adds them
    for (int b = 0; b < d->num_blocks; b++) d->block_sumsq[b] = 0.0;
    for (int b = d->own_first; b < d->own_end; b++)
        d->block_sumsq[b] = block_sum_of_squares(grads + d->blocks[b].offset, &d->blocks[b]);
    double t0 = now_seconds();
    dist_share_doubles(d->block_sumsq, d->num_blocks);
    d->comm_seconds += now_seconds() - t0;
    double total = 0.0;
    for (int b = 0; b < d->num_blocks; b++) total += d->block_sumsq[b];
    float norm = (float)sqrt(total);
    float coef = clip_coef(norm, clip);
    if (coef < 1.0f)
        for (int b = d->own_first; b < d->own_end; b++)
            scale_floats(grads + d->blocks[b].offset, block_numel(&d->blocks[b]), coef);
    return norm;
}

// every block's pieces broadcast from their owner, all started at once
// (non-blocking broadcasts, issued in the same order on every rank)
void dist_gather_params(Dist *d, float *params) {
#ifdef USE_MPI
    if (d->size == 1) return;
    double t0 = now_seconds();
    MPI_Request *req = d->requests;
    for (int r = 0; r < d->size; r++)
        for (int p = d->piece_first[r]; p < d->piece_first[r + 1]; p++) {
            MPI_Ibcast(params + d->piece_off[p], (int)d->piece_len[p], MPI_FLOAT, r, MPI_COMM_WORLD, &req[p]);
            if (d->rank == r) d->bytes_sent += (double)d->piece_len[p] * sizeof(float) * (d->size - 1);
        }
    MPI_Waitall(d->piece_first[d->size], req, MPI_STATUSES_IGNORE);
    d->comm_seconds += now_seconds() - t0;
#else
    (void)d; (void)params;
#endif
}

void dist_share_doubles(double *x, int n) {
#ifdef USE_MPI
    if (g_size > 1) MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#else
    (void)x; (void)n;
#endif
}

int dist_any(int flag) {
#ifdef USE_MPI
    int any = flag != 0;
    if (g_size > 1) MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return any;
#else
    return flag != 0;
#endif
}

void dist_barrier(void) {
#ifdef USE_MPI
    if (g_size > 1) MPI_Barrier(MPI_COMM_WORLD);
#endif
}

double dist_take_comm_seconds(Dist *d, double *bytes_sent) {
    double s = d->comm_seconds;
    if (bytes_sent) *bytes_sent = d->bytes_sent;
    d->comm_seconds = 0.0;
    d->bytes_sent = 0.0;
    return s;
}

// ----------------------------------------------------------------------------
// the optimizer state file

// every rank's section lengths and layout length, rank by rank
typedef struct {
    int num_sections;
    uint64_t (*len)[OPTIM_MAX_SECTIONS]; // [size]
    int *layout_len;                     // [size]
} StateParts;

static void state_parts(const Dist *d, const Optimizer *opt, StateParts *p) {
    size_t len[OPTIM_MAX_SECTIONS] = {0};
    p->num_sections = optim_state_sections(opt, len);
    p->len = calloc_or_fail(d->size, sizeof(*p->len), "state parts");
    p->layout_len = calloc_or_fail(d->size, sizeof(int), "state parts");
    for (int s = 0; s < p->num_sections; s++) p->len[d->rank][s] = len[s];
    p->layout_len[d->rank] = optim_base_const(opt)->layout_len;
#ifdef USE_MPI
    if (d->size > 1) {
        MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, p->len, OPTIM_MAX_SECTIONS, MPI_UINT64_T, MPI_COMM_WORLD);
        MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, p->layout_len, 1, MPI_INT, MPI_COMM_WORLD);
    }
#endif
}

static void state_parts_free(StateParts *p) {
    free(p->len);
    free(p->layout_len);
}

void dist_save_optimizer(const Dist *d, const Optimizer *opt, const char *path) {
    if (d->size == 1) { optim_save(opt, path); return; }
#ifdef USE_MPI
    const OptimBase *b = optim_base_const(opt);
    StateParts p;
    state_parts(d, opt, &p);
    int64_t total = 0;
    int layout_total = 0;
    for (int r = 0; r < d->size; r++) {
        for (int s = 0; s < p.num_sections; s++) total += (int64_t)p.len[r][s];
        layout_total += p.layout_len[r];
    }
    // the layout of the whole model: the parts' entries in rank order
    int32_t *layout = NULL;
    int *displs = NULL;
    if (d->rank == 0) {
        layout = malloc_or_fail((layout_total ? layout_total : 1) * sizeof(int32_t), "state layout");
        displs = malloc_or_fail(d->size * sizeof(int), "state layout");
        for (int r = 0, at = 0; r < d->size; r++) { displs[r] = at; at += p.layout_len[r]; }
    }
    MPI_Gatherv(b->layout, b->layout_len, MPI_INT32_T, layout, p.layout_len, displs, MPI_INT32_T, 0, MPI_COMM_WORLD);
    if (d->rank == 0) {
        AtomicFile af;
        atomic_open(&af, path);
        optim_write_header(af.f, af.tmp_path, b->step, d->blocks, d->num_blocks, total, layout, layout_total);
        // each section: rank 0's slice, then each other rank's, a chunk at a time
        float *buf = malloc_or_fail(DIST_CHUNK * sizeof(float), "state chunk");
        const float *mine = b->state;
        for (int s = 0; s < p.num_sections; s++) {
            for (int r = 0; r < d->size; r++) {
                size_t n = (size_t)p.len[r][s];
                if (r == 0) {
                    if (n) fwrite_or_fail(mine, sizeof(float), n, af.f, af.tmp_path);
                    mine += n;
                    continue;
                }
                for (size_t start = 0; start < n; start += DIST_CHUNK) {
                    size_t len = n - start < DIST_CHUNK ? n - start : DIST_CHUNK;
                    MPI_Recv(buf, (int)len, MPI_FLOAT, r, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                    fwrite_or_fail(buf, sizeof(float), len, af.f, af.tmp_path);
                }
            }
        }
        free(buf);
        atomic_commit(&af);
        free(layout);
        free(displs);
    } else {
        const float *mine = b->state;
        for (int s = 0; s < p.num_sections; s++) {
            size_t n = (size_t)p.len[d->rank][s];
            for (size_t start = 0; start < n; start += DIST_CHUNK) {
                size_t len = n - start < DIST_CHUNK ? n - start : DIST_CHUNK;
                MPI_Send(mine + start, (int)len, MPI_FLOAT, 0, 2, MPI_COMM_WORLD);
            }
            mine += n;
        }
    }
    state_parts_free(&p);
#endif
}

void dist_load_optimizer(const Dist *d, Optimizer *opt, const char *path) {
    if (d->size == 1) { optim_load(opt, path); return; }
    StateParts p;
    state_parts(d, opt, &p);
    size_t first[OPTIM_MAX_SECTIONS] = {0}, total[OPTIM_MAX_SECTIONS] = {0};
    int layout_first = 0, layout_total = 0;
    int64_t nf = 0;
    for (int r = 0; r < d->size; r++) {
        for (int s = 0; s < p.num_sections; s++) {
            if (r < d->rank) first[s] += (size_t)p.len[r][s];
            total[s] += (size_t)p.len[r][s];
            nf += (int64_t)p.len[r][s];
        }
        if (r < d->rank) layout_first += p.layout_len[r];
        layout_total += p.layout_len[r];
    }
    optim_load_part(opt, path, d->blocks, d->num_blocks, layout_first, layout_total, first, total, nf);
    state_parts_free(&p);
}
