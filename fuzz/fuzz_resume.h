// What the two resume-record harnesses (fuzz_resume_gpt2.c, fuzz_resume_vit.c)
// share: the input written as state_00000007.json, read as -y 1 reads it
// (ckpt_read_state, run/run.c) and checked against the run's flags
// (run_resume_check_state). Include after the trainer and fuzz/fuzz.h.
#ifndef FUZZ_FUZZ_RESUME_H
#define FUZZ_FUZZ_RESUME_H

// Call inside the harness's setjmp (a refused record fails). Returns the
// record for the trainer's own keys; path receives the record's path.
static cJSON *fuzz_resume_record(const uint8_t *data, size_t size, RunConfig *rc, Run *run, char *path, size_t len) {
    fuzz_write_file(path, len, "state_00000007.json", data, size);
    memset(run, 0, sizeof(*run));
    run->rc = rc;
    snprintf(run->state_path, sizeof(run->state_path), "%s", path);
    cJSON *state = ckpt_read_state(fuzz_dir(), 7);
    run_resume_check_state(run, state, 7);
    if (run->start_step != 7 || run->nan_skipped < 0 || run->nan_skipped > 7) abort();
    return state;
}

#endif
