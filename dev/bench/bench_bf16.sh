#!/usr/bin/env bash
# PRECISION=bf16 against fp32, measured in the same run:
#  1. the GEMMs of a GPT-2 124M step at B 4 x T 1024 (bench_gemm_bf16: GFLOP/s
#     of sgemm_bf16 and sgemm per shape, fp32 and bf16 alternating);
#  2. the training step of GPT-2 124M at B 4 x T 1024 (AdamW): the fp32 and the
#     bf16 trainer alternately, ROUNDS times each (default 1), median ms of the
#     steps after the first of each run (default: steps 2 and 3), by wall clock
#     and by CPU time, and the ratio bf16 / fp32 (the target was <= 0.6).
#   dev/bench/bench_bf16.sh BIN_FP32 BIN_BF16 BENCH_GEMM [steps] [rounds]   (make bench-bf16)
#   BENCH_FMA=path/to/bench_fma names the CPU and its FP32 FMA peak first
#   GEMM_REPS=3 takes the best of 3 products per shape (default 1)
set -euo pipefail
FP32=${1:?usage: bench_bf16.sh train_gpt2_fp32 train_gpt2_bf16 bench_gemm_bf16 [steps] [rounds]}
BF16=${2:?}
GEMM=${3:?}
STEPS=${4:-3}
ROUNDS=${5:-1}
GEMM_REPS=${GEMM_REPS:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
WORK=$(mktemp -d /tmp/bench_bf16.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

echo "== bench_bf16: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo ?), $OMP_NUM_THREADS threads, load average $(cut -d' ' -f1-3 /proc/loadavg)"
[ -n "${BENCH_FMA:-}" ] && "$BENCH_FMA" | sed 's/^/== /'
echo "== GEMMs of one GPT-2 124M step at B 4 x T 1024 ($GEMM $GEMM_REPS)"
"$GEMM" "$GEMM_REPS"

# "wall_ms/cpu_ms ..." of each step after the first of one run (cpu_ms: all threads' CPU time,
# which on a shared machine does not count the waits for a core)
steps_ms() { # binary tag
    # -i named: no validation split, so no evaluation at the end either
    "$1" -e d12 -b 4 -t 1024 -x "$STEPS" -s -1 -n 0 -i 'data/bible/bible_train_*.bin' -o "$WORK/$2" --seed 1 > "$WORK/$2.out"
    python3 - "$WORK/$2/log.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
print(" ".join(f'{r["ms"]:.0f}/{r["cpu_ms"]:.0f}' for r in recs if "ms" in r and r["step"] > 1))
PY
    rm -rf "${WORK:?}/$2"
}
echo "== GPT-2 124M (d12), B 4 x T 1024, AdamW: wall ms / CPU ms (all threads) per step, steps 2..$STEPS of each run; runs alternate"
all_fp32="" all_bf16=""
for r in $(seq 1 "$ROUNDS"); do
    f=$(steps_ms "$FP32" fp32); echo "round $r fp32: $f"; all_fp32="$all_fp32 $f"
    b=$(steps_ms "$BF16" bf16); echo "round $r bf16: $b"; all_bf16="$all_bf16 $b"
done
python3 - "$all_fp32" "$all_bf16" "$OMP_NUM_THREADS" <<'PY'
import statistics, sys
def parse(s):
    pairs = [tuple(float(v) for v in x.split("/")) for x in s.split()]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs), len(pairs)
fw, fc, nf = parse(sys.argv[1])
bw, bc, nb = parse(sys.argv[2])
threads = int(sys.argv[3])
print(f"step time (medians of {nf} and {nb} steps): fp32 {fw:.0f} ms wall, {fc / threads:.0f} ms CPU per thread; "
      f"bf16 {bw:.0f} ms wall, {bc / threads:.0f} ms CPU per thread")
print(f"bf16 / fp32: {bw / fw:.2f} by wall clock, {bc / fc:.2f} by CPU time (target: 0.6)")
PY
echo "(reproduce: make bench-bf16)"
