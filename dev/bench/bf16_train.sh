#!/usr/bin/env bash
# make train's run (the d4 GPT-2 on the Bible, 600 steps, AdamW, its flags
# from the Makefile) with the fp32 and with the bf16 trainer, from scratch,
# both at once, each with THREADS threads (default 1: two runs side by side on
# the 2 cores; a run is deterministic for its thread count); prints both
# validation losses at every evaluation and the final difference (the target:
# within 0.02).
#   dev/bench/bf16_train.sh BIN_FP32 BIN_BF16 "TRAIN FLAGS"     (make bench-bf16-train)
set -euo pipefail
FP32=${1:?usage: bf16_train.sh train_gpt2_fp32 train_gpt2_bf16 "flags"}
BF16=${2:?}
FLAGS=${3:?}
export OMP_NUM_THREADS=${THREADS:-1}
WORK=$(mktemp -d /tmp/bf16_train.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
echo "== bf16_train: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo ?), $OMP_NUM_THREADS thread(s) per run"
echo "== ./train_gpt2 $FLAGS -s 0 -n 0  (make train's run; no samples, no checkpoints)"
# shellcheck disable=SC2086
"$FP32" $FLAGS -s 0 -n 0 -o "$WORK/fp32" > "$WORK/fp32.out" 2>&1 &
p1=$!
# shellcheck disable=SC2086
"$BF16" $FLAGS -s 0 -n 0 -o "$WORK/bf16" > "$WORK/bf16.out" 2>&1 &
p2=$!
wait $p1 || { tail -5 "$WORK/fp32.out"; exit 1; }
wait $p2 || { tail -5 "$WORK/bf16.out"; exit 1; }
grep -h "matmuls" "$WORK/fp32.out" "$WORK/bf16.out"
python3 - "$WORK/fp32/log.jsonl" "$WORK/bf16/log.jsonl" <<'PY'
import json, sys
def vals(path):
    recs = [json.loads(l) for l in open(path)]
    return {r["step"]: r["val_loss"] for r in recs if "val_loss" in r}, max(r.get("peak_rss_bytes", 0) for r in recs)
(f, _), (b, _) = vals(sys.argv[1]), vals(sys.argv[2])
print("| step | fp32 val loss | bf16 val loss | bf16 - fp32 |")
print("|---:|---:|---:|---:|")
for s in sorted(f):
    print(f"| {s} | {f[s]:.4f} | {b[s]:.4f} | {b[s] - f[s]:+.4f} |")
last = max(f)
d = b[last] - f[last]
print(f"make train, step {last}: val_loss fp32 {f[last]:.4f}, bf16 {b[last]:.4f}, difference {d:+.4f} "
      f"({'within' if abs(d) <= 0.02 else 'NOT within'} the target 0.02)")
PY
echo "(reproduce: make bench-bf16-train)"
