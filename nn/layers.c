// Shared transformer layers; see nn/layers.h for the shapes and conventions.
//
// Parallelism: every function splits its work over OpenMP threads with a
// static schedule over independent pieces (rows, heads, channel chunks), so no
// two threads add into the same float and each sum runs in one fixed order.
// `#pragma omp simd reduction` lets gcc vectorise the inner sums without
// -ffast-math; the order is then fixed by the binary, not by the thread count.
#include "nn/layers.h"
#include "common/profile.h"
#include "nn/vecmath.h"

#include <math.h>
#include <stddef.h>

// ----------------------------------------------------------------------------
// LayerNorm

// one row's output from its statistics; the forward and layernorm_recompute
// share it, so that a recomputed output has the forward's bits
static inline void layernorm_row(float *o, const float *x, float m, float s, const float *weight,
                                 const float *bias, int C) {
    #pragma omp simd
    for (int c = 0; c < C; c++) o[c] = (x[c] - m) * s * weight[c] + bias[c];
}

void layernorm_forward(float *out, float *mean, float *rstd,
                       const float *inp, const float *weight, const float *bias,
                       int N, int C, float eps) {
    profile_begin(PROFILE_POINTWISE, 0);
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *o = out + (size_t)n * C;
        float sum = 0.0f;
        #pragma omp simd reduction(+:sum)
        for (int c = 0; c < C; c++) sum += x[c];
        float m = sum / C;
        // two passes (mean, then squared deviations) are accurate even when
        // |mean| >> std, unlike E[x^2] - E[x]^2
        float sq = 0.0f;
        #pragma omp simd reduction(+:sq)
        for (int c = 0; c < C; c++) { float d = x[c] - m; sq += d * d; }
        float s = 1.0f / sqrtf(sq / C + eps);
        layernorm_row(o, x, m, s, weight, bias, C);
        mean[n] = m;
        rstd[n] = s;
    }
    profile_end();
}

void layernorm_recompute(float *out, const float *inp, const float *mean, const float *rstd,
                         const float *weight, const float *bias, int N, int C) {
    profile_begin(PROFILE_POINTWISE, 0);
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        layernorm_row(out + (size_t)n * C, inp + (size_t)n * C, mean[n], rstd[n], weight, bias, C);
    profile_end();
}

// Channel chunk for the dweight/dbias sums: one thread owns a chunk of
// channels and sums it over all rows in order.
#define LN_CHUNK 64

void layernorm_backward(float *dinp, float *dweight, float *dbias,
                        const float *dout, const float *inp, const float *weight,
                        const float *mean, const float *rstd, int N, int C) {
    profile_begin(PROFILE_POINTWISE, 0);
    // pass 1, per row: dinp. With norm = (x - mean) * rstd and
    // dnorm = dout * weight, the gradient through the mean and the variance is
    // dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)).
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        const float *dy = dout + (size_t)n * C;
        float *dx = dinp + (size_t)n * C;
        float m = mean[n], s = rstd[n];
        float sum_dnorm = 0.0f, sum_dnorm_norm = 0.0f;
        #pragma omp simd reduction(+:sum_dnorm, sum_dnorm_norm)
        for (int c = 0; c < C; c++) {
            float norm = (x[c] - m) * s;
            float dnorm = dy[c] * weight[c];
            sum_dnorm += dnorm;
            sum_dnorm_norm += dnorm * norm;
        }
        float mean_dnorm = sum_dnorm / C;
        float mean_dnorm_norm = sum_dnorm_norm / C;
        #pragma omp simd
        for (int c = 0; c < C; c++) {
            float norm = (x[c] - m) * s;
            float dnorm = dy[c] * weight[c];
            dx[c] += s * (dnorm - mean_dnorm - norm * mean_dnorm_norm);
        }
    }
    // pass 2, per channel chunk: dweight += sum_n dout * norm, dbias += sum_n dout
    int num_chunks = (C + LN_CHUNK - 1) / LN_CHUNK;
    #pragma omp parallel for schedule(static)
    for (int chunk = 0; chunk < num_chunks; chunk++) {
        int c0 = chunk * LN_CHUNK;
        int width = (C - c0 < LN_CHUNK) ? C - c0 : LN_CHUNK;
        float dw[LN_CHUNK] = {0}, db[LN_CHUNK] = {0};
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C + c0;
            const float *dy = dout + (size_t)n * C + c0;
            float m = mean[n], s = rstd[n];
            #pragma omp simd
            for (int c = 0; c < width; c++) {
                dw[c] += dy[c] * ((x[c] - m) * s);
                db[c] += dy[c];
            }
        }
        for (int c = 0; c < width; c++) {
            dweight[c0 + c] += dw[c];
            dbias[c0 + c] += db[c];
        }
    }
    profile_end();
}

// ----------------------------------------------------------------------------
// GELU

#define SQRT_2_OVER_PI 0.7978845608028654f
#define INV_SQRT_2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

void gelu_forward(float *out, const float *inp, int N, GeluKind kind) {
    profile_begin(PROFILE_POINTWISE, 0);
    if (kind == GELU_TANH) {
        #pragma omp parallel for simd schedule(static)
        for (int i = 0; i < N; i++) {
            float x = inp[i];
            float u = SQRT_2_OVER_PI * (x + 0.044715f * x * x * x);
            out[i] = 0.5f * x * (1.0f + vtanhf(u));
        }
    } else {
        #pragma omp parallel for simd schedule(static)
        for (int i = 0; i < N; i++) {
            float x = inp[i];
            out[i] = 0.5f * x * (1.0f + verff(x * INV_SQRT_2));
        }
    }
    profile_end();
}

// d gelu(x) / dx
static inline float gelu_grad(float x, GeluKind kind) {
    if (kind == GELU_TANH) {
        float u = SQRT_2_OVER_PI * (x + 0.044715f * x * x * x);
        float th = vtanhf(u);
        float sech2 = 1.0f - th * th;
        float du_dx = SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * x * x);
        return 0.5f * (1.0f + th) + 0.5f * x * sech2 * du_dx;
    }
    float cdf = 0.5f * (1.0f + verff(x * INV_SQRT_2));
    float pdf = INV_SQRT_2PI * vexpf(-0.5f * x * x);
    return cdf + x * pdf;
}

// write 0: dinp += grad * dout; 1: dinp = grad * dout (dinp may be dout): the
// sum starts from 0 instead of dinp, the bits of adding into zeros
static void gelu_backward_to(float *dinp, const float *inp, const float *dout, int N, GeluKind kind, int write) {
    profile_begin(PROFILE_POINTWISE, 0);
    // one loop per kind, so that each vectorises with its own function inlined
    if (kind == GELU_TANH) {
        #pragma omp parallel for simd schedule(static)
        for (int i = 0; i < N; i++) dinp[i] = (write ? 0.0f : dinp[i]) + gelu_grad(inp[i], GELU_TANH) * dout[i];
    } else {
        #pragma omp parallel for simd schedule(static)
        for (int i = 0; i < N; i++) dinp[i] = (write ? 0.0f : dinp[i]) + gelu_grad(inp[i], GELU_ERF) * dout[i];
    }
    profile_end();
}

void gelu_backward(float *dinp, const float *inp, const float *dout, int N, GeluKind kind) {
    gelu_backward_to(dinp, inp, dout, N, kind, 0);
}

void gelu_backward_inplace(float *dout_to_dinp, const float *inp, int N, GeluKind kind) {
    gelu_backward_to(dout_to_dinp, inp, dout_to_dinp, N, kind, 1);
}

// ----------------------------------------------------------------------------
// Residual

void residual_forward(float *out, const float *a, const float *b, int N) {
    profile_begin(PROFILE_POINTWISE, 0);
    #pragma omp parallel for simd schedule(static)
    for (int i = 0; i < N; i++) out[i] = a[i] + b[i];
    profile_end();
}

void residual_backward(float *da, float *db, const float *dout, int N) {
    profile_begin(PROFILE_POINTWISE, 0);
    #pragma omp parallel for simd schedule(static)
    for (int i = 0; i < N; i++) {
        da[i] += dout[i];
        db[i] += dout[i];
    }
    profile_end();
}

// ----------------------------------------------------------------------------
// Softmax + cross-entropy

// The largest of row[0..V): the softmax is computed around it, so no exp overflows.
static inline float row_max(const float *row, int V) {
    float maxval = -INFINITY;
    #pragma omp simd reduction(max:maxval)
    for (int v = 0; v < V; v++) maxval = row[v] > maxval ? row[v] : maxval;
    return maxval;
}

// Turns a row of V logits in place into their softmax, around their max, and
// zeroes the padding V..Vp-1; returns sum_v exp(logit[v] - max), whose log
// the losses need. Summed in double: a float sum of V terms would round
// differently in the 16 lanes of the vectorised loop than one by one (as under
// the sanitizers, which keep gcc from vectorising it), up to ~V ulp apart; in
// double the order no longer shows in the float result.
static inline double softmax_row(float *row, float maxval, int V, int Vp) {
    // (two loops: gcc does not vectorise vexpf in a loop with a double reduction)
    #pragma omp simd
    for (int v = 0; v < V; v++) row[v] = vexpf(row[v] - maxval);
    double sum = 0.0;
    #pragma omp simd reduction(+:sum)
    for (int v = 0; v < V; v++) sum += row[v];
    float inv = (float)(1.0 / sum);
    #pragma omp simd
    for (int v = 0; v < V; v++) row[v] *= inv;
    for (int v = V; v < Vp; v++) row[v] = 0.0f;
    return sum;
}

// One row of each pass: logits -> probabilities, returning the loss; probabilities -> dlogits.
static inline float crossentropy_row_forward(float *row, int target, int V, int Vp) {
    float maxval = row_max(row, V);
    float target_logit = row[target];
    double sum = softmax_row(row, maxval, V, Vp);
    // -log softmax[target] = log(sum) - (logit[target] - max): no log of a
    // probability that may have underflowed to 0
    return (float)(log(sum) - (double)(target_logit - maxval));
}

static inline void crossentropy_row_backward(float *row, int target, float dloss, int V, int Vp) {
    #pragma omp simd
    for (int v = 0; v < V; v++) row[v] *= dloss;
    row[target] -= dloss;
    for (int v = V; v < Vp; v++) row[v] = 0.0f;
}

void softmax_crossentropy_forward(float *losses, float *logits_to_probs, const int *targets,
                                  int N, int V, int Vp) {
    profile_begin(PROFILE_LOSS, 0);
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) losses[n] = crossentropy_row_forward(logits_to_probs + (size_t)n * Vp, targets[n], V, Vp);
    profile_end();
}

void softmax_crossentropy_backward(float *probs_to_dlogits, const int *targets,
                                   float dloss, int N, int V, int Vp) {
    profile_begin(PROFILE_LOSS, 0);
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) crossentropy_row_backward(probs_to_dlogits + (size_t)n * Vp, targets[n], dloss, V, Vp);
    profile_end();
}

void softmax_crossentropy_forward_backward(float *losses, float *logits_to_dlogits, const int *targets,
                                           float dloss, int N, int V, int Vp) {
    profile_begin(PROFILE_LOSS, 0);
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *row = logits_to_dlogits + (size_t)n * Vp;
        losses[n] = crossentropy_row_forward(row, targets[n], V, Vp);
        crossentropy_row_backward(row, targets[n], dloss, V, Vp);  // the row is still in L2
    }
    profile_end();
}

// ----------------------------------------------------------------------------
// Softmax + cross-entropy against a target distribution

void softmax_crossentropy_soft_forward(float *losses, float *logits_to_probs, const float *targets,
                                       int N, int V, int Vp) {
    profile_begin(PROFILE_LOSS, 0);
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *row = logits_to_probs + (size_t)n * Vp;
        const float *t = targets + (size_t)n * V;
        float maxval = row_max(row, V);
        // -log p[v] = log(sum) + (max - x[v]): both terms >= 0, so the
        // weighted sum below never cancels; with a one-hot t it is exactly
        // the hard-label loss above. The sums are in double, as there.
        double tsum = 0.0, tgap = 0.0;
        #pragma omp simd reduction(+:tsum, tgap)
        for (int v = 0; v < V; v++) {
            tsum += t[v];
            tgap += (double)t[v] * (maxval - row[v]);
        }
        double sum = softmax_row(row, maxval, V, Vp);
        losses[n] = (float)(tsum * log(sum) + tgap);
    }
    profile_end();
}

void softmax_crossentropy_soft_backward(float *probs_to_dlogits, const float *targets,
                                        float dloss, int N, int V, int Vp) {
    profile_begin(PROFILE_LOSS, 0);
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *row = probs_to_dlogits + (size_t)n * Vp;
        const float *t = targets + (size_t)n * V;
        double tsum_d = 0.0; // in double, as in the forward pass
        #pragma omp simd reduction(+:tsum_d)
        for (int v = 0; v < V; v++) tsum_d += t[v];
        float tsum = (float)tsum_d;
        #pragma omp simd
        for (int v = 0; v < V; v++) row[v] = (row[v] * tsum - t[v]) * dloss;
        for (int v = V; v < Vp; v++) row[v] = 0.0f;
    }
    profile_end();
}

void softmax_crossentropy_soft_reference(double *losses, double *dlogits, const float *logits,
                                         const float *targets, double dloss, int N, int V, int Vp) {
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * Vp;
        const float *t = targets + (size_t)n * V;
        double maxval = -INFINITY, sum = 0.0, tsum = 0.0, loss = 0.0;
        for (int v = 0; v < V; v++) maxval = fmax(maxval, (double)x[v]);
        for (int v = 0; v < V; v++) sum += exp((double)x[v] - maxval);
        double lse = maxval + log(sum);
        for (int v = 0; v < V; v++) {
            loss += (double)t[v] * (lse - (double)x[v]); // -t log softmax
            tsum += t[v];
        }
        losses[n] = loss;
        if (dlogits)
            for (int v = 0; v < V; v++)
                dlogits[(size_t)n * V + v] = (exp((double)x[v] - lse) * tsum - (double)t[v]) * dloss;
    }
}
