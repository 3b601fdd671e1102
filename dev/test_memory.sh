#!/usr/bin/env bash
# The memory plan against what the trainers really hold:
#   1. the planned total is within 5% of the peak resident set (getrusage,
#      the "memory: peak resident ..." line) after 1-2 steps of GPT-2 124M at
#      B 4 x T 64 with each optimizer, at B 1 x T 1024 (activations, the
#      attention weights above all), ViT fmnist-tiny, ViT-Ti/16 at B 8 (its
#      shard streamed and in memory), ViT-S/16 at B 8 with 1000 classes,
#      streamed and augmented as the paper-scale recipe
#      (and fused: AdamW and SinkGD at 124M, ViT-Ti/16 AdamW)
#   2. AdamW at GPT-2 XL (d48, B 1 x T 64) stops at start-up with one line
#      naming the optimizers that fit (here, and against --memory-limit 23G
#      on any machine); --force-memory 1 goes past the check; with
#      --fused-update 1 its plan fits (gradients of one layer, counted by hand)
#   3. the smaller -b and -t the refusal proposes are the largest that fit:
#      their plans fit, one more does not (--memory-plan-only 1)
# One thread (OMP_NUM_THREADS=1: spinning OpenMP threads on a busy 2-core
# machine make small models 50x slower; the plan counts the threads it gets).
# The larger models' figures are make repro-memory's.
# Under the sanitizers (third argument 1) part 1 is skipped: ASan's shadow
# memory and quarantine are resident too, and no plan counts them.
# usage: dev/test_memory.sh BIN_DIR VIT_BIN_DIR [SANITIZE]   (make run-test-memory)
set -euo pipefail
BIN=${1:?usage: dev/test_memory.sh BIN_DIR VIT_BIN_DIR}
VIT=${2:?usage: dev/test_memory.sh BIN_DIR VIT_BIN_DIR}
SANITIZE=${3:-0}
cd "$(dirname "$0")/.."
. dev/test_lib.sh # fails, ok, bad, check
export OMP_NUM_THREADS=1
WORK=$(mktemp -d /tmp/test_memory.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# run a trainer; check "memory: peak resident P bytes ..., planned Q bytes" within 5%
plan_matches() { # NAME BINARY FLAGS...
    local name=$1; shift
    local out="$WORK/run.out"
    if ! "$@" >"$out" 2>&1; then bad "$name: the run failed: $(tail -1 "$out")"; return; fi
    local line
    line=$(grep '^memory: peak resident' "$out" || true)
    if python3 -c '
import re, sys
m = re.match(r"memory: peak resident (\d+) bytes .* planned (\d+) bytes", sys.argv[1])
peak, plan = int(m.group(1)), int(m.group(2))
sys.exit(0 if abs(peak - plan) <= 0.05 * plan else 1)' "$line" 2>/dev/null; then
        ok "$name: ${line#memory: }"
    else
        bad "$name: ${line:-no memory line} (more than 5% apart)"
    fi
}

# --- 1. plan against peak ------------------------------------------------------
if [ "$SANITIZE" = 1 ]; then
    echo "skip the plan against the peak resident set: a sanitizer build holds shadow memory besides"
else
GPT2_RUN="-x 1 -s -1 -i dev/testdata/tiny_tokens.bin" # no validation, no sample, no checkpoint
for o in adamw sgdm sgd_sai sinkgd slimadam; do
    plan_matches "GPT-2 124M B 4 x T 64 $o" "$BIN/train_gpt2_$o" -e d12 -b 4 -t 64 $GPT2_RUN
done
plan_matches "GPT-2 124M B 1 x T 1024 sinkgd" "$BIN/train_gpt2_sinkgd" -e d12 -b 1 -t 1024 $GPT2_RUN
for o in adamw sinkgd; do # one layer's gradients instead of the model's
    plan_matches "GPT-2 124M B 4 x T 64 $o --fused-update 1" "$BIN/train_gpt2_$o" -e d12 -b 4 -t 64 $GPT2_RUN --fused-update 1
done
plan_matches "ViT fmnist-tiny B 128 adamw (Fashion-MNIST in memory, evaluation)" \
    "$VIT/train_vit_adamw" -e fmnist-tiny -b 128 -x 2 -v 0 -p 1
# ViT-Ti/16 takes 224 x 224 x 3 images: a shard of 8 noise images (no evaluation)
python3 - "$WORK/noise224.bin" <<'EOF'
import random, struct, sys, zlib
n, h, w, c, k = 8, 224, 224, 3, 10
rng = random.Random(1)
body = b"".join(("class%d" % i).encode().ljust(64, b"\0") for i in range(k))
body += struct.pack("<%di" % n, *[i % k for i in range(n)])
body += bytes(rng.getrandbits(8) for _ in range(n * c * h * w))
hdr = b"IMGSHARD" + struct.pack("<7I", 1, n, h, w, c, k, zlib.crc32(body)) + bytes(28)
open(sys.argv[1], "wb").write(hdr + body)
EOF
plan_matches "ViT-Ti/16 B 8 sgd_sai (shard streamed)" "$VIT/train_vit_sgd_sai" -e vit-ti16 -b 8 -x 2 -p 1 --train-shard "$WORK/noise224.bin"
plan_matches "ViT-Ti/16 B 8 sgd_sai (shard in memory)" "$VIT/train_vit_sgd_sai" -e vit_tiny_patch16_224 -b 8 -x 2 -p 1 \
    --train-shard "$WORK/noise224.bin" --shard-in-memory 1
# ViT-S/16 with ImageNet's 1000 classes, trained as the paper-scale recipe does: 256 x 256 images
# streamed, RandomResizedCrop to 224, flips, Mixup/CutMix and label smoothing (soft targets)
python3 - "$WORK/noise256.bin" <<'EOF'
import random, struct, sys, zlib
n, h, w, c, k = 8, 256, 256, 3, 1000
rng = random.Random(2)
body = b"".join(("n%08d" % i).encode().ljust(64, b"\0") for i in range(k))
body += struct.pack("<%di" % n, *[(i * 97) % k for i in range(n)])
body += bytes(rng.getrandbits(8) for _ in range(n * c * h * w))
hdr = b"IMGSHARD" + struct.pack("<7I", 1, n, h, w, c, k, zlib.crc32(body)) + bytes(28)
open(sys.argv[1], "wb").write(hdr + body)
EOF
plan_matches "ViT-S/16 B 8 adamw, 256 px streamed, RandomResizedCrop, Mixup/CutMix, smoothing" \
    "$VIT/train_vit_adamw" -e vit_small_patch16_224 -b 8 -x 2 -p 1 --train-shard "$WORK/noise256.bin" \
    --rrc 1 --flip 1 --mixup 0.8 --cutmix 1.0 --smoothing 0.1 --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225
plan_matches "ViT-Ti/16 B 8 adamw --fused-update 1" "$VIT/train_vit_adamw" -e vit-ti16 -b 8 -x 2 -p 1 \
    --train-shard "$WORK/noise224.bin" --fused-update 1
fi

# --- 2. AdamW at GPT-2 XL --------------------------------------------------------
XL="-e d48 -b 1 -t 64 -x 3 -s -1 -i dev/testdata/tiny_tokens.bin"
refused() { # NAME ALTERNATIVES FLAGS...: status 1, one line on stderr (naming what fits, when
    # ALTERNATIVES is "all": the list depends on the memory available, fixed only under --memory-limit), no model built
    local name=$1 alternatives=$2; shift 2
    local status=0
    "$BIN/train_gpt2_adamw" "$@" >"$WORK/xl.out" 2>"$WORK/xl.err" || status=$?
    local err
    err=$(cat "$WORK/xl.err")
    if [ "$status" = 1 ] && [ "$(grep -c . "$WORK/xl.err")" = 1 ] && [[ "$err" == "error: this run needs "* ]] &&
       { [ "$alternatives" != all ] ||
         [[ "$err" == *"what would fit: OPTIM=sgdm ("*"OPTIM=sgd_sai ("*"OPTIM=sinkgd ("*"OPTIM=slimadam ("* ]]; } &&
       ! grep -q '^optimizer:' "$WORK/xl.out"; then
        ok "$name: $err"
    else
        bad "$name: status $status, stderr: $err"
    fi
}
refused "AdamW d48 refused against --memory-limit 23G" all $XL --memory-limit 23G
total_kb=$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo)
if [ $((total_kb * 1024)) -lt 25289987332 ]; then # AdamW's XL plan (23.55 GiB) is more than the machine has
    refused "AdamW d48 refused here (MemTotal $total_kb kB)" any $XL
else
    echo "skip AdamW d48 refused here: this machine has $total_kb kB"
fi
# with fused updates AdamW's XL plan drops the 5.8 GiB of gradients for one
# layer's (plus wte's and wpe's), 18.17 GiB: it fits the 23 GiB limit
status=0
"$BIN/train_gpt2_adamw" $XL --memory-limit 23G --memory-plan-only 1 --fused-update 1 >"$WORK/fused.out" 2>"$WORK/fused.err" || status=$?
if [ "$status" = 0 ] && [ ! -s "$WORK/fused.err" ] &&
   grep -q '^  gradients .* fused updates: wte, wpe, lnf and one layer: 112868800 floats' "$WORK/fused.out"; then
    ok "AdamW d48 --fused-update 1 fits --memory-limit 23G: $(grep '^  total' "$WORK/fused.out")"
else
    bad "AdamW d48 --fused-update 1 against 23G: status $status, $(cat "$WORK/fused.err")"
fi
status=0
"$BIN/train_gpt2_adamw" $XL --memory-limit 23G --force-memory 1 --memory-plan-only 1 >"$WORK/force.out" 2>"$WORK/force.err" || status=$?
if [ "$status" = 0 ] && grep -q '^warning: this run needs .* running anyway (--force-memory 1)' "$WORK/force.err"; then
    ok "--force-memory 1 passes the check with a warning"
else
    bad "--force-memory 1: status $status, $(cat "$WORK/force.err")"
fi

# --- 3. what would fit ------------------------------------------------------------
# A rerun's "process now" differs from the refused run's by some 100 KiB (the
# libraries' pages it happens to map), so the proposal must fit 1 MiB above the
# limit and one more must not fit 1 MiB below it.
fits() { "$@" --memory-plan-only 1 >/dev/null 2>&1; }
status=0
"$BIN/train_gpt2_sgdm" -e d12 -b 4 -t 1024 -s -1 --memory-limit 3072M --memory-plan-only 1 >/dev/null 2>"$WORK/fit.err" || status=$?
err=$(cat "$WORK/fit.err")
b=$(sed -n 's/.*what would fit: -b \([0-9]*\) .*/\1/p' <<<"$err")
t=$(sed -n 's/.*, -t \([0-9]*\) .*/\1/p' <<<"$err")
G="$BIN/train_gpt2_sgdm -e d12 -s -1"
if [ "$status" = 1 ] && [ -n "$b" ] && [ -n "$t" ] &&
   fits $G -b "$b" -t 1024 --memory-limit 3073M && ! fits $G -b $((b + 1)) -t 1024 --memory-limit 3071M &&
   fits $G -b 4 -t "$t" --memory-limit 3073M &&
   ! fits $G -b 4 -t $((t + 1)) --memory-limit 3071M; then
    ok "GPT-2 124M B 4 x T 1024 in 3 GiB: -b $b and -t $t the largest that fit ($err)"
else
    bad "GPT-2 124M B 4 x T 1024 in 3 GiB: status $status, -b '$b', -t '$t': $err"
fi
status=0
"$VIT/train_vit_adamw" -e fmnist-tiny -b 128 --memory-limit 80M --memory-plan-only 1 >/dev/null 2>"$WORK/vfit.err" || status=$?
err=$(cat "$WORK/vfit.err")
b=$(sed -n 's/.*what would fit: -b \([0-9]*\) .*/\1/p' <<<"$err")
V="$VIT/train_vit_adamw -e fmnist-tiny"
if [ "$status" = 1 ] && [ -n "$b" ] && [[ "$err" != *" -t "* ]] &&
   fits $V -b "$b" --memory-limit 81M && ! fits $V -b $((b + 1)) --memory-limit 79M; then
    ok "ViT fmnist-tiny B 128 in 80 MiB: -b $b the largest that fits ($err)"
else
    bad "ViT fmnist-tiny B 128 in 80 MiB: status $status, -b '$b': $err"
fi

if [ "$fails" -ne 0 ]; then echo "test_memory: $fails FAILED"; exit 1; fi
echo "test_memory: all passed"
