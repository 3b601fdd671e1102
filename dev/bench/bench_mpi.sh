#!/usr/bin/env bash
# Data-parallel step time on this machine (make bench-mpi): GPT-2 at a fixed
# global batch (BENCH_SEQS sequences of T tokens per step) and micro-batch,
#   1 process, 2 threads       (the single-process build: the peer)
#   2 ranks, 1 thread each     (mpirun -np 2)
#   4 ranks, 1 thread each     (mpirun -np 4 --oversubscribe: 4 threads on 2 cores)
# each the median over the steps after the first, with the communication time
# per step the trainer logs (comm_ms: the gradient's reduction into the
# owners, the norm's exchange and the parameters' broadcast, waiting for the
# slowest rank included). Then what a network implies: the bytes each rank
# sends per step for GPT-2 124M and XL, and that time at 10 and 100 Gbit/s
# when the links are the limit (a ring reduce-scatter + all-gather).
#   dev/bench/bench_mpi.sh MPI_BUILD        (make bench-mpi; BENCH_DEPTH, BENCH_SEQS, BENCH_STEPS)
set -euo pipefail
MPIB=${1:?usage: bench_mpi.sh MPI_BUILD (e.g. build/release-mpi)}
BUILD=${MPIB%-mpi}
cd "$(dirname "$0")/../.."
DEPTH=${BENCH_DEPTH:-8}
SEQS=${BENCH_SEQS:-8}
STEPS=${BENCH_STEPS:-8}
B=2
T=64
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
WORK=$(mktemp -d /tmp/bench_mpi.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
FLAGS="-e d$DEPTH -b $B -t $T -d $((SEQS * T)) -x $STEPS -s -1 -v 0 -m 1 -n 0 --seed 1"

# median ms and comm_ms over the steps after the first
medians() {
    python3 - "$1" <<'PY'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
steps = [r for r in recs if "ms" in r and r["step"] > 1]
ms = statistics.median(r["ms"] for r in steps)
comm = statistics.median(r.get("comm_ms", 0.0) for r in steps)
print(f"{ms:.1f} {comm:.1f}")
PY
}

echo "make bench-mpi: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) (other jobs on this machine slow every row, threads more than processes)"
echo "GPT-2 d$DEPTH (C $((64 * DEPTH))), global batch $SEQS x $T tokens, micro-batch $B x $T, $STEPS steps, median of steps 2..$STEPS"
echo "commands:"
printf "  %-28s %s\n" "1 process, 2 threads" "OMP_NUM_THREADS=2 $BUILD/bin/train_gpt2_adamw $FLAGS -o DIR"
printf "  %-28s %s\n" "N ranks, 1 thread each" "OMP_NUM_THREADS=1 mpirun --oversubscribe --bind-to none -x OMP_NUM_THREADS -np N $MPIB/bin/train_gpt2_adamw $FLAGS -o DIR"
OMP_NUM_THREADS=2 "$BUILD/bin/train_gpt2_adamw" $FLAGS -o "$WORK/one" >/dev/null
read -r one_ms one_comm < <(medians "$WORK/one/log.jsonl")
printf "%-30s %10s %12s %10s %14s\n" run "ms/step" "comm ms" "comm %" "vs 1 process"
printf "%-30s %10s %12s %10s %14s\n" "1 process, 2 threads" "$one_ms" "-" "-" "1.00"
for n in 2 4; do
    OMP_NUM_THREADS=1 mpirun --oversubscribe --bind-to none -x OMP_NUM_THREADS -np $n \
        "$MPIB/bin/train_gpt2_adamw" $FLAGS -o "$WORK/r$n" >/dev/null
    read -r ms comm < <(medians "$WORK/r$n/log.jsonl")
    label="$n ranks x 1 thread"
    [ $n -gt 2 ] && label="$label (oversub.)"
    python3 -c "import sys; ms, comm, one = map(float, sys.argv[2:5]); print('%-30s %10.1f %12.1f %9.1f%% %14.2f' % (sys.argv[1], ms, comm, 100 * comm / ms, one / ms))" \
        "$label" "$ms" "$comm" "$one_ms"
done

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "On a cluster: bytes each rank sends per step (fp32 gradients in, parameters out) and their time"
python3 - <<'PY'
# parameters with the padded vocabulary (50304) and 1024 positions
def params(L, C):
    return 50304 * C + 1024 * C + L * (12 * C * C + 13 * C) + 2 * C
models = [("GPT-2 124M", params(12, 768)), ("GPT-2 XL", params(48, 1600))]
print("%-11s %6s %4s %16s %12s %12s" % ("model", "params", "N", "bytes per rank", "10 Gbit/s", "100 Gbit/s"))
for name, P in models:
    for N in (2, 8, 64):
        # ZeRO-1 as a ring (reduce-scatter, then all-gather) moves (N-1)/N of
        # the 4P bytes through every rank's link twice, all links at once;
        # run/dist.c sends the same bytes per rank, all owners at once
        ring = 2 * (N - 1) / N * 4 * P
        t = lambda b, gbit: b * 8 / (gbit * 1e9)
        print("%-11s %5.0fM %4d %13.2f GB %10.2f s %10.3f s" % (name, P / 1e6, N, ring / 1e9, t(ring, 10), t(ring, 100)))
PY
