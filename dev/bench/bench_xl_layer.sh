#!/usr/bin/env bash
# Where a GPT-2 XL step's time goes, per layer, without XL's memory: two
# stand-in models with XL's shapes (C 1600, NH 25, the padded vocabulary of
# 50304, max T 1024) but 2 and 4 layers, random weights (numpy), trained at
# B 1 x T 64 with --profile 1. Per phase, the 4-layer model's CPU time per
# step minus the 2-layer model's, halved, is one layer's; the 2-layer time
# less two layers is what does not grow with depth (the LM head, wte's update,
# the embedding). An XL step's CPU time is then extrapolated as 48 layers plus
# that: an estimate, not a measurement (make bench-xl measures XL itself; it
# needs up to 18.2 GiB, this needs under 3 GiB). CPU time, so the figures
# hold when other jobs share the machine, apart from their pressure on the
# caches and memory: each model runs REPEAT times (BENCH_REPEAT, default 2)
# and each phase keeps its least disturbed (lowest) figure.
#   bash dev/bench/bench_xl_layer.sh BIN_DIR [THREADS] [STEPS]   (make bench-xl-layer)
# Writes dev/results/bench_xl_layer.txt (everything printed) and .md (the table).
set -euo pipefail
BIN=${1:?usage: dev/bench/bench_xl_layer.sh BIN_DIR [THREADS] [STEPS]}
THREADS=${2:-1}
STEPS=${3:-5}
PYTHON=${PYTHON:-/usr/bin/python3}
cd "$(dirname "$0")/../.."
WORK=$(mktemp -d /tmp/bench_xl_layer.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=$THREADS
OUT=${BENCH_OUT:-dev/results}/bench_xl_layer
mkdir -p "$(dirname "$OUT")"
rm -f "$OUT.md"
exec > >(tee "$OUT.txt")
echo "bash dev/bench/bench_xl_layer.sh $BIN $THREADS $STEPS${BENCH_CONFIGS:+ (BENCH_CONFIGS=\"$BENCH_CONFIGS\")}"
echo "bench_xl_layer: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD), $THREADS threads, load $(cut -d' ' -f1-3 /proc/loadavg)"

# llm.c's checkpoint layout: a 256-int header, then each tensor for all layers
for L in 2 4; do
    "$PYTHON" - "$L" "$WORK/c1600_l$L.bin" <<'EOF'
import sys
import numpy as np
L, path = int(sys.argv[1]), sys.argv[2]
C, NH, V, Vp, maxT = 1600, 25, 50257, 50304, 1024
rng = np.random.default_rng(L)
header = np.zeros(256, np.int32)
header[:8] = [20240326, 3, maxT, V, L, NH, C, Vp]
def normal(n, std): return rng.standard_normal(n, dtype=np.float32) * np.float32(std)
with open(path, "wb") as f:
    f.write(header.tobytes())
    wte = normal(Vp * C, 0.02)
    wte[V * C:] = 0.0  # padding rows
    f.write(wte.tobytes())
    f.write(normal(maxT * C, 0.01).tobytes())
    # ln1w ln1b qkvw qkvb attprojw attprojb ln2w ln2b fcw fcb fcprojw fcprojb, each (L, ...)
    for n, kind in [(C, 1), (C, 0), (3 * C * C, 2), (3 * C, 0), (C * C, 2), (C, 0),
                    (C, 1), (C, 0), (4 * C * C, 2), (4 * C, 0), (4 * C * C, 2), (C, 0)]:
        for _ in range(L):
            x = np.ones(n, np.float32) if kind == 1 else np.zeros(n, np.float32) if kind == 0 else normal(n, 0.02)
            f.write(x.tobytes())
    f.write(np.ones(C, np.float32).tobytes())   # lnfw
    f.write(np.zeros(C, np.float32).tobytes())  # lnfb
EOF
done

IFS=';' read -r -a CONFIGS <<<"${BENCH_CONFIGS:-sinkgd --fused-update 1 --clip 0;adamw --fused-update 1 --clip 0}"
echo "| configuration (XL layers, B 1, T 64, $THREADS thread$([ "$THREADS" = 1 ] || echo s)) | phase | CPU ms per layer | CPU ms not per layer | XL step CPU ms (48 layers, extrapolated) |" >"$WORK/table.md"
echo "|---|---|---|---|---|" >>"$WORK/table.md"
ran=0
for cfg in "${CONFIGS[@]}"; do
    set -- $cfg
    optim=$1; shift
    if [ ! -x "$BIN/train_gpt2_$optim" ]; then echo "FAIL $optim $*: no $BIN/train_gpt2_$optim"; continue; fi
    ok=1
    for L in 2 4; do
        for r in $(seq 1 "${BENCH_REPEAT:-2}"); do
            "$BIN/train_gpt2_$optim" -e "$WORK/c1600_l$L.bin" -b 1 -t 64 -x "$STEPS" -s -1 -v 0 -m 1 -p 1 --profile 1 "$@" \
                >"$WORK/out_${L}_$r.txt" 2>&1 || { echo "FAIL $optim $* (L $L): $(tail -1 "$WORK/out_${L}_$r.txt")"; ok=0; break 2; }
        done
    done
    [ "$ok" = 1 ] || continue
    ran=1
    "$PYTHON" - "$WORK" "$optim $*" "$WORK/table.md" <<'EOF'
import glob, sys
sys.path.insert(0, "dev")
from profile_table import read_profile
def phases(path):
    return {name: row["cpu_ms"] for name, row in read_profile(open(path).read().splitlines())[1].items()}
def least(L):  # each phase's lowest figure over the repeats; the total is their sum
    runs = [phases(p) for p in sorted(glob.glob(f"{sys.argv[1]}/out_{L}_*.txt"))]
    rows = {ph: min(r[ph] for r in runs) for ph in runs[0] if ph != "total"}
    rows["total"] = sum(rows.values())
    return rows
two, four = least(2), least(4)
name, table = sys.argv[2], sys.argv[3]
print(f"{name}: CPU ms per step (profile of steps after the first)")
print(f"  {'phase':34s} {'L 2':>9s} {'L 4':>9s} {'per layer':>10s} {'not per layer':>14s} {'XL (48 layers)':>15s}")
with open(table, "a") as t:
    for ph in two:
        layer = (four[ph] - two[ph]) / 2
        fixed = two[ph] - 2 * layer
        xl = 48 * layer + fixed
        print(f"  {ph:34s} {two[ph]:9.1f} {four[ph]:9.1f} {layer:10.1f} {fixed:14.1f} {xl:15.0f}")
        t.write(f"| {name} | {ph} | {layer:.1f} | {fixed:.1f} | {xl:.0f} |\n")
EOF
done
if [ "$ran" = 1 ]; then
    cp "$WORK/table.md" "$OUT.md"
    echo "bench_xl_layer: wrote $OUT.txt and $OUT.md"
else
    echo "bench_xl_layer: no configuration ran; wrote only $OUT.txt"
    exit 1
fi
