#!/usr/bin/env bash
# GPT-2 XL (d48) at B 1 x T 64: the step time against what this machine
# allows (README, "GPT-2 XL step time"). Runs bench_stream for the memory
# bandwidth, then train_gpt2 on d48 for STEPS steps in the configurations
# below, and prints for each the first step (which also faults every buffer
# in), the median wall and CPU time of the later steps, and the bound:
#   compute: 6 N B T FLOPs (N parameters with the padded vocabulary; the
#            attention at T 64 adds under 0.1%) at the FP32 FMA peak that
#            bench_fma measures for the same threads in the same run
#   memory:  the bytes the step must move: the weights read by the forward
#            and again by the backward (8 bytes per parameter), plus the
#            optimizer's reads and writes of parameters and state (AdamW:
#            p, m, v read and written, 24 bytes) -- the fused mode keeps the
#            gradient of one layer, which the caches hold; the normal mode
#            also writes, clears, reads for the norm and reads for the update
#            a whole gradient (another 4 x 4 bytes at least)
# SinkGD fused goes first: 7.2 GiB, it runs when AdamW's 18.2 GiB do not fit.
# Each run is one process at a time and needs up to 18.2 GiB: the script
# checks MemAvailable first. Other jobs may share the machine: the CPU time
# (cpu N ms on the progress line, all threads) shows the work apart from the waiting.
# Each run has --profile 1: the first configuration's phases (where its step
# time goes) are printed after its line.
# Writes dev/results/bench_xl.txt (everything printed), bench_xl.md (one row
# per configuration: the step against both bounds, and which bound binds) and
# bench_xl_profile.md (the first configuration's phases); make bench-xl puts
# the two tables into the README (dev/bench/readme_table.py). A run where no
# configuration fits in memory exits 1 (and leaves the README alone).
#   bash dev/bench/bench_xl.sh BIN_DIR [THREADS] [STEPS]    (make bench-xl)
set -euo pipefail
BIN=${1:?usage: dev/bench/bench_xl.sh BIN_DIR [THREADS] [STEPS]}
THREADS=${2:-2}
STEPS=${3:-5}
cd "$(dirname "$0")/../.."
WORK=$(mktemp -d /tmp/bench_xl.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=$THREADS
OUT=${BENCH_OUT:-dev/results}/bench_xl # .txt, .md, _profile.md
mkdir -p "$(dirname "$OUT")"
rm -f "$OUT.md" "${OUT}_profile.md" # an older run's tables must not stand beside this run's
exec > >(tee "$OUT.txt") # everything below
echo "bash dev/bench/bench_xl.sh $BIN $THREADS $STEPS${BENCH_CONFIGS:+ (BENCH_CONFIGS=\"$BENCH_CONFIGS\")}${BENCH_MODEL:+ (BENCH_MODEL=$BENCH_MODEL)}"
echo "bench_xl: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD), $THREADS threads, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$BIN/bench_fma" "$THREADS" | tee "$WORK/fma.txt"
PEAK=$(sed -n 's/^fp32 fma peak: \([0-9.]*\) .*/\1/p' "$WORK/fma.txt")
"$BIN/bench_stream" ${BENCH_STREAM_GIB:-1} | tee "$WORK/stream.txt"
# the README's table: one row per configuration (the python below appends)
{
    echo "| configuration (B 1, T 64) | step 1 s | later steps: wall s | CPU s | compute bound s | memory bound s | binds | wall / bound | CPU per thread / bound | peak RSS GiB |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
} >"$WORK/table.md"
first=1

MODEL=${BENCH_MODEL:-d48} # another model only to try the script out
# optimizer and flags per run; BENCH_CONFIGS="adamw --fused-update 1 --clip 0;sgd_sai" picks others
IFS=';' read -r -a CONFIGS <<<"${BENCH_CONFIGS:-sinkgd --fused-update 1 --clip 0;adamw --fused-update 1 --clip 0;adamw --fused-update 1 --clip 1;sgd_sai --clip 1;sgd_sai --fused-update 1 --clip 0}"
for cfg in "${CONFIGS[@]}"; do
    set -- $cfg
    optim=$1; shift
    if [ ! -x "$BIN/train_gpt2_$optim" ]; then echo "FAIL $optim $*: no $BIN/train_gpt2_$optim (make bench-xl builds it)"; continue; fi
    # the run's plan and half a GiB more must be available (other jobs allocate too);
    # BENCH_WAIT_MINUTES=N waits up to N minutes for it
    plan=$("$BIN/train_gpt2_$optim" -e "$MODEL" -b 1 -t 64 -x "$STEPS" -s -1 "$@" --memory-plan-only 1 --force-memory 1 2>/dev/null |
           sed -n 's/^  total .* \([0-9]*\) bytes$/\1/p')
    avail=$(awk '/^MemAvailable/ {print $2}' /proc/meminfo)
    for wait in $(seq 1 "${BENCH_WAIT_MINUTES:-0}"); do
        [ $((avail * 1024)) -ge $((plan + 536870912)) ] && break
        sleep 60
        avail=$(awk '/^MemAvailable/ {print $2}' /proc/meminfo)
    done
    if [ $((avail * 1024)) -lt $((plan + 536870912)) ]; then
        echo "skip $optim $*: MemAvailable $((avail / 1024)) MiB, the plan $((plan / 1048576)) MiB + 512 MiB"
        continue
    fi
    "$BIN/train_gpt2_$optim" -e "$MODEL" -b 1 -t 64 -x "$STEPS" -s -1 -v 0 -m 1 -p 1 --profile 1 "$@" >"$WORK/out.txt" 2>&1 || { echo "FAIL $optim $*: $(tail -1 "$WORK/out.txt")"; continue; }
    N=$(sed -n 's/.* parameters (\([0-9]*\) with padding).*/\1/p' "$WORK/out.txt")
    python3 - "$WORK/out.txt" "$WORK/stream.txt" "$N" "$THREADS" "$MODEL $optim $*" "$WORK/table.md" "$PEAK" <<'EOF'
import json, re, statistics, sys
log, stream, N, threads, name, table = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
# the progress lines: "step 2/5 | ... | 8383 ms | cpu 2701 ms | ..."
steps = [{"ms": int(m.group(1)), "cpu_ms": int(m.group(2))} for m in
         (re.match(r"^step \d+/\d+ \|.*\| (\d+) ms \| cpu (\d+) ms \|", l) for l in open(log)) if m]
later = steps[1:]
wall = statistics.median(s["ms"] for s in later) / 1000
cpu = statistics.median(s["cpu_ms"] for s in later) / 1000
bw = {}
for ln in open(stream):
    # the rates by CPU time: what the memory delivers while we run (the machine may be shared)
    m = re.match(r"threads (\d+) by CPU time: read ([\d.]+) GB/s, write ([\d.]+) GB/s, copy ([\d.]+) GB/s, triad ([\d.]+) GB/s, AdamW update ([\d.]+)", ln)
    if m: bw[int(m.group(1))] = [float(x) for x in m.groups()[1:]]
read, write, copy, triad, adam = bw[max(k for k in bw if k <= threads)]
fused = "--fused-update 1" in name
adamw = " adamw " in name
measure = fused and "--clip 0" not in name  # fused with clipping runs the backward twice
flops = (10.0 if measure else 6.0) * N * 64
peak = float(sys.argv[7]) * 1e9 # the FP32 FMA peak of these threads, measured by bench_fma in this run
sinkgd = " sinkgd " in name
# p, m, v or p, buf: read and written; SinkGD keeps no state for the hidden
# matrices (almost all of N); fused, the gradient's passes are counted as if they
# stayed in the caches (so a bound on the low side: a layer's gradient, 123 MB at
# XL, fits the Xeon's 260 MiB L3 but not a Zen 5 CCD's 32 MiB)
state_bytes = 24 if adamw else 8 if sinkgd else 16
opt_bytes = N * (state_bytes + (0 if fused else 4))  # + the gradient read, when it is in memory
weight_bytes = (12.0 if measure else 8.0) * N  # forward and backward(s) read every weight
grad_bytes = 0 if fused else 12.0 * N       # normal: clear, += (read and write) the whole gradient
# every byte at the AdamW kernel's rate, the fastest stream measured: a bound on the low side
mem_s = (weight_bytes + opt_bytes + grad_bytes) / (adam * 1e9)
comp_s = flops / peak
bound = max(comp_s, mem_s)
binds = "compute" if comp_s >= mem_s else "memory"
rss = re.search(r"peak resident (\d+) bytes", open(log).read())
rss_gib = f"{int(rss.group(1)) / 2**30:.1f}" if rss else "?"
print(f"{name}: step 1 {steps[0]['ms'] / 1000:.1f} s; steps 2-{len(steps)} median {wall:.2f} s wall, {cpu:.2f} s CPU "
      f"({cpu / threads:.2f} s per thread); bound: compute {comp_s:.2f} s ({flops / 1e9:.0f} GFLOP at "
      f"{peak / 1e9:.0f} GFLOP/s), memory {mem_s:.2f} s ({(weight_bytes + opt_bytes + grad_bytes) / 1e9:.1f} GB at "
      f"{adam:.1f} GB/s) -> {bound:.2f} s, {binds} binds; wall / bound {wall / bound:.2f}x, CPU per thread / bound "
      f"{cpu / threads / bound:.2f}x; peak RSS {rss_gib} GiB")
with open(table, "a") as t:
    t.write(f"| {name} | {steps[0]['ms'] / 1000:.1f} | {wall:.2f} | {cpu:.2f} | {comp_s:.2f} | {mem_s:.2f} | {binds} | "
            f"{wall / bound:.2f}x | {cpu / threads / bound:.2f}x | {rss_gib} |\n")
EOF
    if [ "$first" = 1 ]; then # where the first configuration's step goes
        first=0
        sed -n '/^profile:/,/^  total/p' "$WORK/out.txt"
        python3 - "$WORK/out.txt" "$MODEL $optim $*" >"$WORK/profile.md" <<'EOF'
import sys
sys.path.insert(0, "dev")
from profile_table import read_profile
heading, rows = read_profile(open(sys.argv[1]).read().splitlines())
print(f"{sys.argv[2]}, {heading[len('profile: '):].rstrip(':')} (`--profile 1`):\n")
print("| phase | CPU ms | CPU % | wall ms | GFLOP per CPU second |")
print("|---|---|---|---|---|")
for name, r in rows.items():
    print(f"| {name} | {r['cpu_ms']:.0f} | {r['cpu_pct']:.1f} | {r['wall_ms']:.0f} | {'' if r['gflops'] is None else r['gflops']} |")
EOF
    fi
done
if [ -s "$WORK/profile.md" ]; then
    # the verdict under the table, from its rows: which configurations are within 2x of their bound
    python3 - "$WORK/table.md" >>"$WORK/table.md" <<'EOF'
import sys
rows = [l.split("|")[1:-1] for l in open(sys.argv[1]) if l.startswith("| d")]
ratio = lambda r: float(r[7].strip().rstrip("x"))
within = [f"{r[0].strip()} ({r[7].strip()})" for r in rows if ratio(r) <= 2.0]
above = [f"{r[0].strip()} ({r[7].strip()})" for r in rows if ratio(r) > 2.0]
print()
print("Within 2x of the bound by wall clock: " + ("; ".join(within) or "none") + ".")
print("Above 2x: " + ("; ".join(above) or "none") + ".")
EOF
    cp "$WORK/table.md" "$OUT.md"
    cp "$WORK/profile.md" "${OUT}_profile.md"
    echo "bench_xl: wrote $OUT.txt, $OUT.md and ${OUT}_profile.md"
else
    echo "bench_xl: no configuration ran (see the skip and FAIL lines above); wrote only $OUT.txt"
    exit 1
fi
