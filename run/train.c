// The training loop both trainers run; see run/train.h.
#include "run/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/profile.h"
#include "common/utils.h"

cJSON *training_resume_begin(Run *run, const RunConfig *rc, char *model_path, char *optim_path, size_t len) {
    if (rc->follower) dist_barrier();
    cJSON *state = run_resume_begin(run, rc);
    if (!rc->follower) dist_barrier();
    if (state) run_checkpoint_paths(run, run->start_step, model_path, optim_path, len);
    return state;
}

OptimConfig training_plan_ranks(Dist *dist, const ParamBlock *blocks, int num_blocks, const OptimConfig *oc,
                                int ranks, int training) {
    dist_plan(dist, blocks, num_blocks);
    OptimConfig part = *oc;
    if (ranks > 1) {
        if (training) (void)optim_state_bytes_for(blocks, num_blocks, oc);
        part.blocks_are_part = 1;
    }
    return part;
}

Optimizer *training_create_optimizer(const Dist *dist, const ParamBlock *blocks, int num_blocks,
                                     const OptimConfig *oc, const OptimConfig *part_oc, int ranks,
                                     size_t *state_bytes, size_t *adamw_bytes) {
    Optimizer *opt = optim_create(dist_own_blocks(dist), dist_num_own_blocks(dist), part_oc);
    optim_print(opt);
    *state_bytes = optim_state_bytes(opt);
    *adamw_bytes = optim_adamw_state_bytes(blocks, num_blocks);
    if (ranks > 1) {
        size_t formula = dist_state_bytes(dist, dist->rank, part_oc);
        if (*state_bytes != formula)
            fail("rank %d: the optimizer allocated %zu bytes of state, its formula says %zu", dist->rank,
                 *state_bytes, formula);
        *state_bytes = optim_state_bytes_for(blocks, num_blocks, oc); // the run's figures: the whole state
    }
    char b1[32], b2[32];
    printf("  state %zu bytes (%s); AdamW would need %zu bytes (%s): %.1f%%\n", *state_bytes,
           format_bytes((double)*state_bytes, b1, sizeof(b1)), *adamw_bytes,
           format_bytes((double)*adamw_bytes, b2, sizeof(b2)), 100.0 * (double)*state_bytes / (double)*adamw_bytes);
    return opt;
}

void training_init(Training *tr, Run *run, Dist *dist, Optimizer *opt, const ParamBlock *blocks, int num_blocks,
                   const Trainer *trainer, void *self, ModelMemory *mem) {
    tr->run = run;
    tr->rc = run->rc;
    tr->dist = dist;
    tr->opt = opt;
    tr->blocks = blocks;
    tr->num_blocks = num_blocks;
    tr->trainer = trainer;
    tr->self = self;
    tr->mem = mem;
    tr->last_loss = NAN;
    tr->checkpoints = tr->rc->out_dir[0] && run_every_active(tr->rc->ckpt_every); // -n 0: none
    tr->rank_losses = calloc_or_fail(tr->rc->ranks, sizeof(double), "the ranks' losses");
    fused_init(&tr->fused, opt, mem->params_memory);
    profile_enable(tr->rc->profile);
    if (tr->rc->fused_update)
        printf("fused updates: each block steps during the backward pass%s; gradient buffer %zu floats (the model has %zu)\n",
               run_fused_measures(tr->rc) ? ", which runs twice per step (first for the norm: --clip or --nan skip)" : "",
               mem->num_grad_floats, mem->num_parameters);
}

void training_free(Training *tr) {
    fused_free(&tr->fused);
    free(tr->rank_losses);
}

double training_resume(Training *tr, cJSON *state, const char *optim_path,
                       void (*resume_data)(void *self, const Run *run, const cJSON *state, const char *path)) {
    Run *run = tr->run;
    dist_load_optimizer(tr->dist, tr->opt, optim_path);
    run_check_optimizer_step(run, tr->opt, optim_path);
    const char *path = run->state_path;
    resume_data(tr->self, run, state, path);
    double elapsed = json_get_number(state, "elapsed_s", path);
    printf("resume: continuing from step %ld of %s\n", run->start_step, tr->rc->out_dir);
    return elapsed;
}

// With several ranks every rank calls it: rank 0 writes the model (the same
// on every rank) and the optimizer file gathered from the ranks' parts.
void training_save_checkpoint(Training *tr, long step, int rewound) {
    char model_path[700], optim_path[700];
    if (tr->dist->rank == 0) {
        run_checkpoint_begin(tr->run, step, model_path, optim_path, sizeof(model_path));
        model_save_checkpoint(tr->mem, model_path);
    } else {
        run_checkpoint_paths(tr->run, step, model_path, optim_path, sizeof(model_path));
    }
    dist_save_optimizer(tr->dist, tr->opt, optim_path);
    run_checkpoint_commit(tr->run, step, tr->trainer->state_record(tr->self, rewound));
}

// The gradient of a step's micro-batches, summed over the ranks into each
// block's owner, and clipped; sets *loss to the global mean loss. Returns the
// norm before clipping.
static float accumulate_gradient(Training *tr, float *loss) {
    const RunConfig *rc = tr->rc;
    const Trainer *t = tr->trainer;
    int rank = tr->dist->rank;
    profile_begin(PROFILE_GRAD_CLEAR, 0);
    model_zero_grad(tr->mem);
    profile_end();
    // every rank reads the whole global batch and trains on its share:
    // micro-batch r of every `ranks` consecutive ones (so the loader's
    // position is the same everywhere, whatever the number of ranks)
    int micro_total = rc->grad_accum * rc->ranks;
    double loss_sum = 0.0;
    for (int micro = 0; micro < micro_total; micro++) {
        int mine = micro % rc->ranks == rank;
        float micro_loss = t->forward_next(tr->self, mine, micro == 0);
        if (!mine) continue;
        t->backward(tr->self, 1.0f / micro_total, NULL);
        loss_sum += micro_loss;
    }
    float norm;
    if (rc->ranks > 1) {
        // the global mean loss, the ranks' sums added in rank order; the
        // gradient summed into the owners; the global norm
        for (int r = 0; r < rc->ranks; r++) tr->rank_losses[r] = r == rank ? loss_sum : 0.0;
        dist_share_doubles(tr->rank_losses, rc->ranks);
        loss_sum = 0.0;
        for (int r = 0; r < rc->ranks; r++) loss_sum += tr->rank_losses[r];
        dist_reduce_grads(tr->dist, tr->mem->grads_memory);
        profile_begin(PROFILE_GRAD_NORM, 0);
        norm = dist_clip_grad_norm(tr->dist, tr->mem->grads_memory, rc->clip);
        profile_end();
    } else {
        profile_begin(PROFILE_GRAD_NORM, 0);
        norm = clip_grad_norm(tr->mem->grads_memory, tr->blocks, tr->num_blocks, rc->clip);
        profile_end();
    }
    *loss = (float)(loss_sum / micro_total);
    return norm;
}

long training_loop(Training *tr, float peak_lr) {
    Run *run = tr->run;
    const RunConfig *rc = tr->rc;
    const Trainer *t = tr->trainer;
    run_analyses_open(&tr->analyses, run, tr->blocks, tr->num_blocks);
    long step = run->start_step;
    while (step < rc->max_steps) {
        step++; // 1-based: the optimizer's t after this step
        run_step_begin(run);
        profile_step_begin(step > run->start_step + 1); // the first step faults every buffer in
        float lr = lr_at_step(rc, peak_lr, step - 1);
        float loss, norm = 0.0f;
        if (!rc->fused_update) {
            norm = accumulate_gradient(tr, &loss);
        } else {
            // one micro-batch; its updates happen in the backward below, after
            // a measuring backward when the norm is needed first
            loss = t->forward_next(tr->self, 1, 1);
            if (!isfinite(loss)) norm = NAN; // not measured: the step stops or is skipped below
            int measure = run_fused_measures(rc) && isfinite(loss);
            fused_begin(&tr->fused, step, lr, measure);
            if (measure) {
                t->backward(tr->self, 1.0f, &tr->fused);
                norm = fused_measured(&tr->fused, rc->clip);
            }
        }
        char note[800] = "";
        if ((!isfinite(loss) || !isfinite(norm)) && !rc->nan_skip && tr->checkpoints) {
            // keep the last good state: parameters and optimizer are still those
            // after step-1, and the data position is rewound to match
            training_save_checkpoint(tr, step - 1, 1);
            snprintf(note, sizeof(note), "; the last good state (step %ld) is in %s", step - 1, rc->out_dir);
        }
        int skipped = run_check_finite(run, step, loss, norm, note);
        if (!skipped && !rc->fused_update) {
            optim_step(tr->opt, tr->mem->params_memory, tr->mem->grads_memory, lr); // this rank's blocks
            dist_gather_params(tr->dist, tr->mem->params_memory);
        }
        if (!skipped && rc->fused_update) {
            fused_update_begin(&tr->fused);
            t->backward(tr->self, 1.0f, &tr->fused);
            norm = fused_end(&tr->fused);
        }
        if (!skipped) tr->last_loss = loss;
        if (rc->ranks > 1) run->comm_ms = 1000.0 * dist_take_comm_seconds(tr->dist, NULL);
        profile_step_end();
        run_step_end(run, step, loss, lr, norm, skipped, (double)rc->total_batch);
        // every rank stops at the same step after a Ctrl-C or SIGTERM on any
        if (rc->ranks > 1) run_agree_interrupted(dist_any(run_signal_received()));
        run_analyses_step(&tr->analyses, step, tr->opt, rc->fused_update ? NULL : tr->mem->grads_memory); // reads only

        t->after_step(tr->self, run, step);
        if (tr->checkpoints && run_due(run, step, rc->ckpt_every)) training_save_checkpoint(tr, step, 0);
        if (run_interrupted()) {
            printf("interrupted at step %ld%s%s\n", step, tr->checkpoints ? "; checkpoint written to " : "",
                   tr->checkpoints ? rc->out_dir : "");
            break;
        }
    }
    run_finish(run, step, tr->last_loss);
    if (rc->profile && tr->dist->rank == 0) profile_print();
    return step;
}

void training_finish(Training *tr, long step, const char *what, const char *program, const char *more_flags) {
    run_analyses_finish(&tr->analyses);
    const char *dir = tr->rc->out_dir;
    if (tr->checkpoints)
        printf("checkpoint: %s/model_%08ld.bin; %s with\n  %s -e %s/model_%08ld.bin -x 0%s\n", dir, step, what,
               program, dir, step, more_flags);
}
