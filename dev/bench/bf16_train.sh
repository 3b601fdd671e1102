#!/usr/bin/env bash
# make train's run (the d4 GPT-2 on the Bible, 600 steps, AdamW) with the fp32
# and with the bf16 build, from scratch, each in a folder of its own; prints
# both final validation losses and their difference (the target: within 0.02).
#   dev/bench/bf16_train.sh          (make bench-bf16-train; about 10 minutes)
set -euo pipefail
WORK=$(mktemp -d /tmp/bf16_train.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
MAKE=${MAKE:-make}
for p in fp32 bf16; do
    $MAKE -s train PRECISION=$p OPTIM=adamw TRAIN_FLAGS="-o $WORK/$p -s 0" > "$WORK/$p.out"
    grep -E '^step [0-9]+: val_loss|^done:' "$WORK/$p.out" | sed "s/^/$p: /"
done
python3 - "$WORK/fp32/log.jsonl" "$WORK/bf16/log.jsonl" <<'PY'
import json, sys
def last_val(path):
    recs = [json.loads(l) for l in open(path)]
    return [r for r in recs if "val_loss" in r][-1]
f, b = last_val(sys.argv[1]), last_val(sys.argv[2])
print(f"make train, step {f['step']}: val_loss fp32 {f['val_loss']:.4f}, bf16 {b['val_loss']:.4f}, "
      f"difference {b['val_loss'] - f['val_loss']:+.4f} (target: within 0.02)")
PY
echo "(reproduce: make bench-bf16-train)"
