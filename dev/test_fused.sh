#!/usr/bin/env bash
# --fused-update 1 against the normal mode, whole trainers:
#   1. GPT-2 (dev/testdata/gpt2_tiny.bin: C 36, a tied wte with padding rows)
#      and a ViT (C 24) with each of the five optimizers, 4 steps from the
#      same start, fused and not: the final model and optimizer state files
#      are identical byte for byte (cmp), and so are every step's loss and
#      gradient norm in the logs; with --clip 0.05 (every step clipped: the
#      measuring backward, then the updates with the clip factor) and with
#      --clip 0 (one backward, the norm summed as the blocks go by)
#   2. one thread gives the same bytes as two
#   3. --nan stop keeps the same last good state, --nan skip skips the same
#      steps and ends at the same model as the normal mode
#   4. the combinations that need the whole gradient first are refused with
#      one line: accumulation (-d), --gsnr-every, SGD-SaI's --gsnr-max-norm 1
# Bitwise, not within a tolerance: each block's gradient is computed by the
# same code in the same order (the layer's gradient buffer only moves where
# it is written), the global norm adds the same per-block sums in block
# order, and each block's update is the same function (optim_step is the
# block-by-block step over the blocks in order).
# usage: dev/test_fused.sh BIN_DIR VIT_BIN_DIR   (make run-test-fused)
set -euo pipefail
BIN=${1:?usage: dev/test_fused.sh BIN_DIR VIT_BIN_DIR}
VIT=${2:?usage: dev/test_fused.sh BIN_DIR VIT_BIN_DIR}
cd "$(dirname "$0")/.."
. dev/test_lib.sh # fails, ok, bad, check
WORK=$(mktemp -d /tmp/test_fused.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
OPTIMS="adamw sgdm sgd_sai sinkgd slimadam"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

# the step records of a log: step, loss, grad norm, skipped (exact text)
steps() { python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "step" in r and "loss" in r: print(r["step"], repr(r["loss"]), repr(r["grad_norm"]), r.get("skipped"))' "$1"; }

# the last checkpoint of two runs: the same files, the same step records
same_run() { # NAME DIR_A DIR_B STEP
    local name=$1 a=$2 b=$3 s
    s=$(printf %08d "$4")
    if cmp -s "$a/model_$s.bin" "$b/model_$s.bin" && cmp -s "$a/optim_$s.bin" "$b/optim_$s.bin" &&
       [ -n "$(steps "$a/log.jsonl")" ] && diff <(steps "$a/log.jsonl") <(steps "$b/log.jsonl") >/dev/null; then
        ok "$name"
    else
        bad "$name: $(cmp "$a/model_$s.bin" "$b/model_$s.bin" 2>&1 | head -1)"
    fi
}

# run a trainer, failing the test with its last line if it fails
run() { # OUT_DIR BINARY FLAGS...
    local dir=$1; shift
    if ! "$@" -o "$dir" >"$dir.out" 2>&1; then bad "$* failed: $(tail -1 "$dir.out")"; fi
}

# --- 1. GPT-2 and ViT, each optimizer, fused and not --------------------------------
G="-e dev/testdata/gpt2_tiny.bin -i dev/testdata/tiny_tokens.bin -b 4 -t 16 -x 4 -s -1 -u 2 -k cosine --seed 7"
lr_for() { case "$1" in sgdm) echo 0.1 ;; sgd_sai) echo 1e-2 ;; sinkgd) echo 2e-2 ;; *) echo 3e-3 ;; esac; }
for o in $OPTIMS; do
    for clip in 0.05 0; do
        for f in 0 1; do run "$WORK/g_${o}_${clip}_$f" "$BIN/train_gpt2_$o" $G -l "$(lr_for $o)" --clip $clip --fused-update $f; done
        same_run "GPT-2 $o --clip $clip: fused = normal (model, state, losses, norms)" \
            "$WORK/g_${o}_${clip}_0" "$WORK/g_${o}_${clip}_1" 4
    done
done
# B*T 640 runs the LM head in two chunks of rows (matmul_k_block 512), whose
# dwte the fused mode writes instead of adding
for clip in 0.05 0; do
    for f in 0 1; do
        run "$WORK/gc_${clip}_$f" "$BIN/train_gpt2_adamw" ${G/-b 4/-b 40} -x 2 -l 3e-3 --clip $clip --fused-update $f
    done
    same_run "GPT-2 adamw B*T 640 (a chunked LM head) --clip $clip: fused = normal" "$WORK/gc_${clip}_0" "$WORK/gc_${clip}_1" 2
done
# the clipped runs did clip: every norm is above 0.05
if python3 -c '
import json, sys
n = [json.loads(l)["grad_norm"] for l in open(sys.argv[1]) if "\"loss\"" in l]
sys.exit(0 if len(n) == 4 and min(n) > 0.05 else 1)' "$WORK/g_adamw_0.05_1/log.jsonl"; then
    ok "the --clip 0.05 runs clip every step (norms above 0.05)"
else
    bad "the --clip 0.05 runs do not clip every step"
fi
# the fused run holds one layer's gradients: the plan's line names them
if grep -q '^  gradients .* fused updates: wte, wpe, lnf and one layer' "$WORK/g_adamw_0_1.out"; then
    ok "the fused run plans one layer's gradient buffer"
else
    bad "the fused run's plan: $(grep '^  gradients' "$WORK/g_adamw_0_1.out")"
fi

# ViT shards: 12x12 RGB noise with class stripes, 3 classes
python3 - "$WORK" <<'EOF'
import random, struct, sys, zlib
out = sys.argv[1]
rng = random.Random(3)
n, H, W, ch, K = 48, 12, 12, 3, 3
labels = [i % K for i in range(n)]
pixels = bytearray()
for k in labels:
    for i in range(ch * H * W):
        pixels.append(min(255, (120 if i % (k + 2) == 0 else 0) + rng.randrange(100)))
names = b"".join(f"class{k}".encode().ljust(64, b"\0") for k in range(K))
body = names + struct.pack(f"<{n}i", *labels) + bytes(pixels)
header = b"IMGSHARD" + struct.pack("<7I", 1, n, H, W, ch, K, zlib.crc32(body))
open(f"{out}/train.bin", "wb").write(header.ljust(64, b"\0") + body)
EOF
V="-e fmnist-tiny --image-size 12 --image-channels 3 --patch 4 --embed-dim 24 --layers 2 --heads 2
   --train-shard $WORK/train.bin -b 8 -x 4 -u 2 -v 0 -p 1000 --seed 5"
for o in $OPTIMS; do
    for clip in 0.05 0; do
        for f in 0 1; do run "$WORK/v_${o}_${clip}_$f" "$VIT/train_vit_$o" $V -l "$(lr_for $o)" --clip $clip --fused-update $f; done
        same_run "ViT $o --clip $clip: fused = normal (model, state, losses, norms)" \
            "$WORK/v_${o}_${clip}_0" "$WORK/v_${o}_${clip}_1" 4
    done
done

# --- 2. threads -------------------------------------------------------------------
OMP_NUM_THREADS=1 run "$WORK/g_slimadam_1thread" "$BIN/train_gpt2_slimadam" $G -l 3e-3 --clip 0.05 --fused-update 1
same_run "GPT-2 slimadam fused: 1 thread = $OMP_NUM_THREADS threads" "$WORK/g_slimadam_1thread" "$WORK/g_slimadam_0.05_1" 4

# --- 3. NaN -----------------------------------------------------------------------
# read in order (--shuffle 0) at lr 1e12: the loss itself turns NaN at step 2,
# in the forward pass, so both modes stop alike. (At lr 1e6 the weights reach
# ~1e16 and a gradient overflows while the loss is still finite: in the
# shuffled order, and with the tiled attention's backward in either order; the
# fused run, which has updated the blocks before it, then stops with its own
# documented message.)
N="-e dev/testdata/gpt2_tiny.bin -i dev/testdata/tiny_tokens.bin --shuffle 0 -b 4 -t 16 -x 12 -s -1 -l 1e12 -c 0 -n 100"
for f in 0 1; do
    "$BIN/train_gpt2_sgdm" $N --clip 0 --fused-update $f -o "$WORK/nan_$f" >/dev/null 2>"$WORK/nan_$f.err" && bad "NaN run $f did not stop"
    "$BIN/train_gpt2_sgdm" $N --clip 0 --nan skip --fused-update $f -o "$WORK/skip_$f" >/dev/null 2>&1 || true
done
good=$(ls "$WORK/nan_0" | sed -n 's/^state_\([0-9]*\)\.json$/\1/p' | tail -1)
if [ -n "$good" ] && cmp -s "$WORK/nan_0/model_$good.bin" "$WORK/nan_1/model_$good.bin" &&
   [ "$(sed 's/nan_0/DIR/' "$WORK/nan_0.err")" = "$(sed 's/nan_1/DIR/' "$WORK/nan_1.err")" ]; then
    ok "--nan stop: the same error and the same last good state (step $((10#$good))): $(cat "$WORK/nan_1.err")"
else
    bad "--nan stop: fused differs: $(cat "$WORK/nan_0.err") / $(cat "$WORK/nan_1.err")"
fi
same_run "--nan skip: the same steps skipped, the same final model" "$WORK/skip_0" "$WORK/skip_1" 12

# --- 4. refused ---------------------------------------------------------------------
refused() { # NAME EXPECTED_TEXT BINARY FLAGS...
    local name=$1 expect=$2; shift 2
    local status=0
    "$@" --fused-update 1 >/dev/null 2>"$WORK/err" || status=$?
    if [ "$status" = 1 ] && [ "$(grep -c . "$WORK/err")" = 1 ] && grep -q "^error: .*$expect" "$WORK/err"; then
        ok "$name: $(cat "$WORK/err")"
    else
        bad "$name: status $status, $(cat "$WORK/err")"
    fi
}
refused "gradient accumulation" "cannot accumulate gradients over micro-batches (-d 128 is 2 micro-batches" \
    "$BIN/train_gpt2_adamw" $G -d 128
refused "--gsnr-every" "reads the whole gradient" "$BIN/train_gpt2_adamw" $G --gsnr-every 2 -o "$WORK/gsnr"
refused "SGD-SaI --gsnr-max-norm 1" "does not work with sgd_sai: --gsnr-max-norm 1" \
    "$BIN/train_gpt2_sgd_sai" $G --gsnr-max-norm 1
refused "ViT gradient accumulation" "cannot accumulate" "$VIT/train_vit_adamw" $V -d 16

# --- 5. --profile 1 ----------------------------------------------------------------
# The phase timers (common/profile.h) change no result: the same model and
# state as the runs above, normal and fused, GPT-2 and ViT. They account for
# the step: every phase listed, the rows add up to the total, the total is the
# log's CPU time of the same steps (2-4) within 20% + 5 ms (a tiny model's
# step is a few ms), and the work lands where it is done (GEMMs, the
# optimizer, the clip norm; the gradient clear only in the normal mode).
check_profile() { # NAME RUN_DIR FUSED
    python3 - "$2.out" "$2/log.jsonl" "$3" <<'EOF2'
import json, statistics, sys
sys.path.insert(0, "dev")
from profile_table import read_profile
fused = sys.argv[3] == "1"
cpu = [r["cpu_ms"] for r in map(json.loads, open(sys.argv[2])) if "cpu_ms" in r and r["step"] >= 2]
heading, table = read_profile(open(sys.argv[1]).read().splitlines())
rows = {name: row["cpu_ms"] for name, row in table.items()}
total = rows.pop("total")
want = {"other (data, loop, logs, clears)", "embedding (fwd, bwd)", "GEMM forward", "GEMM backward",
        "attention forward", "attention backward", "LayerNorm, GELU, residual", "softmax + cross-entropy",
        "clearing gradients", "gradient norm", "optimizer update"}
problems = []
if not heading.startswith("profile: 3 steps after the first"): problems.append(f"heading '{heading}'")
if set(rows) != want: problems.append(f"phases {sorted(set(rows) ^ want)}")
if abs(sum(rows.values()) - total) > 0.01: problems.append(f"rows add to {sum(rows.values()):.3f}, total {total:.3f} ms")
step_cpu = statistics.mean(cpu)
if len(cpu) != 3 or abs(total - step_cpu) > 0.2 * step_cpu + 5:
    problems.append(f"total {total:.3f} ms, steps {step_cpu:.1f} ms CPU")
for name in ("GEMM forward", "GEMM backward", "attention forward", "attention backward", "optimizer update",
             "gradient norm") + (() if fused else ("clearing gradients",)):
    if rows[name] <= 0: problems.append(f"{name} is 0")
if fused and rows["clearing gradients"] != 0: problems.append("a fused run cleared the gradient buffer")
print("; ".join(problems) or f"total {total:.2f} ms of {step_cpu:.2f} ms CPU per step")
sys.exit(1 if problems else 0)
EOF2
}
for f in 0 1; do
    run "$WORK/gp_$f" "$BIN/train_gpt2_sinkgd" $G -l "$(lr_for sinkgd)" --clip 0.05 --fused-update $f --profile 1
    same_run "GPT-2 --profile 1 --fused-update $f changes no result" "$WORK/g_sinkgd_0.05_$f" "$WORK/gp_$f" 4
    if why=$(check_profile GPT-2 "$WORK/gp_$f" $f); then ok "GPT-2 --profile 1 --fused-update $f accounts for the step: $why"
    else bad "GPT-2 --profile 1 --fused-update $f: $why"; fi
    run "$WORK/vp_$f" "$VIT/train_vit_sinkgd" $V -l "$(lr_for sinkgd)" --clip 0.05 --fused-update $f --profile 1
    same_run "ViT --profile 1 --fused-update $f changes no result" "$WORK/v_sinkgd_0.05_$f" "$WORK/vp_$f" 4
    if why=$(check_profile ViT "$WORK/vp_$f" $f); then ok "ViT --profile 1 --fused-update $f accounts for the step: $why"
    else bad "ViT --profile 1 --fused-update $f: $why"; fi
done

if [ "$fails" -ne 0 ]; then echo "test_fused: $fails FAILED"; exit 1; fi
echo "test_fused: all passed"
