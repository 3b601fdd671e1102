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
    if (g_size > 1) {
        d->acc = malloc_or_fail(DIST_CHUNK * sizeof(float), "reduce scratch");
        d->recv = malloc_or_fail(DIST_CHUNK * sizeof(float), "reduce scratch");
    }
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
    free(d->first_block);
    free(d->block_sumsq);
    free(d->acc);
    free(d->recv);
}

#ifdef USE_MPI
static int owner_of(const Dist *d, int b) {
    int r = 0;
    while (b >= d->first_block[r + 1]) r++;
    return r;
}
#endif

// ----------------------------------------------------------------------------
// the step's exchanges

void dist_reduce_grads(Dist *d, float *grads) {
#ifdef USE_MPI
    if (d->size == 1) return;
    double t0 = now_seconds();
    // every rank walks the blocks in the same order: for each chunk, the
    // others send theirs to the owner, which adds them in rank order
    for (int b = 0; b < d->num_blocks; b++) {
        int owner = owner_of(d, b);
        size_t n = block_numel(&d->blocks[b]);
        for (size_t start = 0; start < n; start += DIST_CHUNK) {
            size_t len = n - start < DIST_CHUNK ? n - start : DIST_CHUNK;
            float *g = grads + d->blocks[b].offset + start;
            if (d->rank != owner) {
                MPI_Send(g, (int)len, MPI_FLOAT, owner, 1, MPI_COMM_WORLD);
                d->bytes_sent += (double)len * sizeof(float);
                continue;
            }
            for (int s = 0; s < d->size; s++) {
                const float *src = g;
                if (s != d->rank) {
                    MPI_Recv(d->recv, (int)len, MPI_FLOAT, s, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                    src = d->recv;
                }
                if (s == 0) memcpy(d->acc, src, len * sizeof(float));
                else
                    for (size_t i = 0; i < len; i++) d->acc[i] += src[i];
            }
            memcpy(g, d->acc, len * sizeof(float));
        }
    }
    d->comm_seconds += now_seconds() - t0;
#else
    (void)d; (void)grads;
#endif
}

float dist_clip_grad_norm(Dist *d, float *grads, float clip) {
    // the owners' per-block sums (sum_of_squares, as clip_grad_norm), then
    // every block's added in block order, as one process adds them
    for (int b = 0; b < d->num_blocks; b++) d->block_sumsq[b] = 0.0;
    for (int b = d->own_first; b < d->own_end; b++)
        d->block_sumsq[b] = sum_of_squares(grads + d->blocks[b].offset, block_numel(&d->blocks[b]));
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

void dist_gather_params(Dist *d, float *params) {
#ifdef USE_MPI
    if (d->size == 1) return;
    double t0 = now_seconds();
    for (int b = 0; b < d->num_blocks; b++) {
        int owner = owner_of(d, b);
        size_t n = block_numel(&d->blocks[b]);
        for (size_t start = 0; start < n; start += DIST_CHUNK) {
            size_t len = n - start < DIST_CHUNK ? n - start : DIST_CHUNK;
            MPI_Bcast(params + d->blocks[b].offset + start, (int)len, MPI_FLOAT, owner, MPI_COMM_WORLD);
            if (d->rank == owner) d->bytes_sent += (double)len * sizeof(float) * (d->size - 1);
        }
    }
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
