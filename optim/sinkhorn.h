// SinkGD's update of one hidden matrix (spec section 4): the Sinkhorn passes
// and the step, a fast kernel and the plain reference it must equal bit for
// bit (test_optim checks both, at shapes with every kind of remainder).
//
// Every pass only rescales rows or columns, so after any number of passes
// X = diag(r) G diag(c); we iterate on the vectors r (m) and c (n) instead of
// on an m x n copy of G:
//   row pass:    ||X[i,:]|| = r_i * sqrt(sum_j G_ij^2 c_j^2)
//   column pass: ||X[:,j]|| = c_j * sqrt(sum_i r_i^2 G_ij^2)
// and read G once per iteration: a row's new scale r_i needs only its own row
// and the c of the previous iteration, so each row is scaled and at once,
// while it is in L1, added into the column sums of this iteration. Those sums
// are split by slabs of SINKHORN_SLAB_ROWS rows: each slab sums its rows in
// order into its own part[slab][n], and the parts are added in slab order,
// so the result depends neither on the number of threads nor on the order
// the slabs are visited in. (An all-zero row or column keeps its scale: X has
// zeros there in both forms, and its scale would otherwise grow by
// sqrt(n)/1e-8 per pass into inf.)
#ifndef OPTIM_SINKHORN_H
#define OPTIM_SINKHORN_H

#include <stddef.h>

#define SINKHORN_SLAB_ROWS 32

// The scratch one m x n matrix needs: r (m), c (n) and the slabs' column
// sums, ceil(m / SINKHORN_SLAB_ROWS) * n floats.
size_t sinkhorn_part_floats(int m, int n);

// P[m,n] = P*decay - step * X, X = diag(r) G diag(c) after `iters`
// row-then-column passes over G[m,n]; r [m], c [n] and part
// [sinkhorn_part_floats] are scratch (r and c hold the final scales after).
// With slab_sumsq (else NULL), the first pass also sums the squares of G:
// slab_sumsq[s] = the rows of slab s in order, each by row_sum_of_squares_d
// (optim.h), the parts of block_sum_of_squares when its slabs are these.
// One parallel region. Each thread keeps the same slabs in every pass and
// visits them in the opposite order of its previous pass, first downwards
// (whatever went over G just before, the GEMM that wrote it or a separate
// norm pass, most likely went upwards): what it read last is
// still in the caches when the next pass starts, which matters for matrices
// a little larger than the L3 (GPT-2 XL's MLP: 41 MB).
void sinkhorn_update(float *P, const float *G, int m, int n, int iters, float step, float decay,
                     float *r, float *c, float *part, double *slab_sumsq);

// The same in plain C, one row at a time and the slabs in order: the
// reference for the test, and the kernel on CPUs without AVX-512.
void sinkhorn_update_reference(float *P, const float *G, int m, int n, int iters, float step, float decay,
                               float *r, float *c, float *part, double *slab_sumsq);

#endif
