#!/bin/bash
# Run libFuzzer harnesses (built by fuzz/fuzz.mk) and record what they did.
#   fuzz/run.sh HARNESS...      with FUZZ_SECONDS (default 60) per harness, or
#                               FUZZ_RUNS executions per harness when FUZZ_RUNS > 0
# Each starts from fuzz/seeds/<name>/ and the corpus it grew before
# (build/fuzz/corpus/<name>/); a crash, hang, leak or OOM goes to
# build/fuzz/crashes/<name>-*, and the run stops with exit 1. Every run appends
# one line to fuzz/runs.tsv (UTC time, the commit the harness was built from,
# harness, executions, seconds, exit status); fuzz/counts.sh sums them per harness.
#
# FUZZ_RUNS is run in processes of at most FUZZ_CHUNK executions (default
# 250000): a refused input jumps out of the loader (fail() under FUZZING)
# and leaves its small allocations behind, which must not add up to the RSS limit.
set -u
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-60}
runs=${FUZZ_RUNS:-0}
chunk=${FUZZ_CHUNK:-250000}
mkdir -p build/fuzz/crashes
[ -f fuzz/runs.tsv ] || printf 'utc\tcommit\tharness\texecutions\tseconds\texit\n' > fuzz/runs.tsv

max_len() {
    case $1 in
        bpe) echo 8192 ;;
        optim_state_*) echo 8192 ;;
        *) echo 4096 ;;
    esac
}

for f in "$@"; do
    bin=build/fuzz/fuzz_$f
    [ -x "$bin" ] || { echo "error: $bin not built (make build/fuzz/fuzz_$f)"; exit 1; }
    mkdir -p build/fuzz/corpus/$f
    commit=$(cat "$bin.commit" 2>/dev/null || echo unknown) # the commit it was built from (fuzz/fuzz.mk)
    total=0
    t0=$(date +%s)
    status=0
    left=$runs
    while :; do
        if [ "$runs" -gt 0 ]; then
            n=$(( left < chunk ? left : chunk ))
            limit="-runs=$n"
        else
            limit="-max_total_time=$seconds"
        fi
        OMP_NUM_THREADS=1 "$bin" $limit -max_len=$(max_len $f) -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
            -detect_leaks=0 -close_fd_mask=3 -print_final_stats=1 -artifact_prefix=build/fuzz/crashes/$f- \
            build/fuzz/corpus/$f fuzz/seeds/$f > build/fuzz/$f.log 2>&1
        status=$?
        done_now=$(sed -n 's/^stat::number_of_executed_units: *//p' build/fuzz/$f.log | tail -1)
        total=$(( total + ${done_now:-0} ))
        [ $status = 0 ] || break
        [ "$runs" -gt 0 ] || break
        left=$(( runs - total ))
        [ $left -gt 0 ] || break
    done
    secs=$(( $(date +%s) - t0 ))
    printf '%s\t%s\t%s\t%d\t%d\t%d\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$commit" "$f" "$total" "$secs" "$status" >> fuzz/runs.tsv
    echo "fuzz $f: $total executions in $secs s, corpus $(ls build/fuzz/corpus/$f | wc -l) inputs, exit $status" \
         "(log: build/fuzz/$f.log)"
    if [ $status != 0 ]; then
        grep -E "^(==|SUMMARY|artifact_prefix|Test unit written)|ERROR" build/fuzz/$f.log | head -20
        exit 1
    fi
done
