#!/usr/bin/env bash
# Smoke check of the paper-scale scripts: every script starts, builds its
# trainer, prepares its stand-in data, trains 2 optimizer steps at the full
# run's model size and sequence length / image size, writes a checkpoint, and
# prints the time the full run would take on this machine. Exits non-zero if
# any run fails. About 10 minutes on 2 cores with one thread.
#
#   repro/paper_scale/smoke.sh                       # 5 x GPT-2 124M + 5 x ViT-S/16
#   GPT2_OPTIMS="adamw" VIT_OPTIMS="adamw sgd_sai" repro/paper_scale/smoke.sh   # "" runs none of a kind
#   OMP_NUM_THREADS=2 repro/paper_scale/smoke.sh     # the estimate for two threads
#
# One thread by default (OMP_NUM_THREADS=1), so that the check can run beside
# other jobs; the estimates it prints are then one thread's. Each run's output
# is in out/paper_scale_smoke/<script>_<optim>.txt.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ALL="adamw sgdm sgd_sai sinkgd slimadam"
GPT2_OPTIMS=${GPT2_OPTIMS-$ALL}
VIT_OPTIMS=${VIT_OPTIMS-$ALL}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# the smoke runs use their stand-ins and the recipes' own hyperparameters, whatever the caller's environment says
unset TRAIN VAL OUT IMAGENET SHARDS LR WD SEED EXTRA_FLAGS DRY_RUN KEEP
LOGDIR="$ROOT/out/paper_scale_smoke"
mkdir -p "$LOGDIR"
# made afresh, so that the check also covers writing the stand-in images and ./prepare_images
rm -rf "$LOGDIR/standin_images" "$LOGDIR/standin_224" "$LOGDIR/standin_256"

results=()
failed=0
run_one() { # SCRIPT OPTIM
    local name out status eta peak step2
    name="$(basename "$1" .sh)_$2"
    out="$LOGDIR/$name.txt"
    echo "smoke: $name (log: $out)"
    if SMOKE=1 "$HERE/$1" "$2" >"$out" 2>&1 && grep -q "^estimated full run on this machine" "$out"; then
        status=ok
    else
        status=FAILED
        failed=1
        tail -5 "$out" | sed 's/^/    /'
    fi
    step2=$(sed -n 's/^smoke: step 2 took .*-> \([0-9.]* s\) per micro-step.*/\1/p' "$out")
    eta=$(sed -n 's/^estimated full run on this machine: \(.*\) (training.*/\1/p' "$out")
    peak=$(sed -n 's/^done: .*peak memory \([0-9.]* [KMG]iB\).*/\1/p' "$out")
    results+=("$(printf '%-28s %-7s %-16s %-10s %s' "$name" "$status" "${step2:--}" "${peak:--}" "${eta:--}")")
}

for o in $GPT2_OPTIMS; do run_one gpt2_124m.sh "$o"; done
for o in $VIT_OPTIMS; do run_one vit_s16_imagenet.sh "$o"; done

# the table, on the terminal and as the record the paper-scale README points to (with what reproduces it)
RESULT="$ROOT/repro/results/paper_scale_smoke.md"
table() {
    echo "threads $OMP_NUM_THREADS, load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
    printf '%-28s %-7s %-16s %-10s %s\n' run status "smoke micro-step" "peak RSS" "estimated full run on this machine"
    printf '%s\n' "${results[@]}"
}
echo
table
if [ "$GPT2_OPTIMS" = "$ALL" ] && [ "$VIT_OPTIMS" = "$ALL" ]; then
    commit=$(git -C "$ROOT" rev-parse --short=12 HEAD)
    dirty=$(git -C "$ROOT" status --porcelain --untracked-files=no | grep -qv 'repro/results/' && echo " (with uncommitted changes)" || true)
    {
        echo "# Paper-scale smoke check: the last full run"
        echo
        echo "Written by \`repro/paper_scale/smoke.sh\` (\`make repro-paper-scale-smoke\`) on $(date -u '+%Y-%m-%d %H:%M UTC'),"
        echo "at commit $commit$dirty, $(nproc --all) cores, in $((SECONDS / 60)) min $((SECONDS % 60)) s. See README.md beside the scripts for how to read it."
        echo
        echo '```'
        table
        echo '```'
    } > "$RESULT.tmp" && mv "$RESULT.tmp" "$RESULT"
    echo "smoke: wrote $RESULT"
fi
if [ "$failed" != 0 ]; then
    echo "smoke: FAILED (see the logs above)" >&2
    exit 1
fi
echo "smoke: all passed"
