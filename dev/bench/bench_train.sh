#!/usr/bin/env bash
# Training-step time of train_gpt2 (AdamW) next to PyTorch on the same GPT-2
# 124M, same data, same thread count, measured in the same run, at B4 T64,
# B1 T1024 and B4 T1024: median ms/step over the steps after the first two,
# by wall clock and by CPU time per thread (the process's CPU time divided by
# the thread count; on a shared machine the wall clock also counts the wait for
# a core), GFLOP/s = (6N + 6LCT) B T / time (N counts the padded vocabulary, as
# the reference table in shared/README.md) and its share of the FP32 FMA peak
# that bench_fma measures for the same threads in the same run (the CPU's name
# heads the output: the machines of this project have differed), and peak RSS.
# The PyTorch peer is tuned: tcmalloc preloaded and OpenBLAS free to use AVX-512
# (this machine sets OPENBLAS_CORETYPE=Haswell); the script checks that an
# optimised BLAS is installed (make python-deps installs libopenblas0-pthread)
# and prints the one PyTorch loaded.
# Writes the table to dev/results/bench_train.txt and its markdown form to
# dev/results/bench_train.md (dev/bench/readme_table.py puts it in the README).
#   dev/bench/bench_train.sh BIN BENCH_FMA [steps]        (make bench-train)
set -euo pipefail
BIN=${1:?usage: bench_train.sh path/to/train_gpt2_adamw path/to/bench_fma [steps]}
FMA=${2:?usage: bench_train.sh path/to/train_gpt2_adamw path/to/bench_fma [steps]}
STEPS=${3:-8}
THREADS=${OMP_NUM_THREADS:-2}
export OMP_NUM_THREADS=$THREADS
MACHINE=$("$FMA" "$THREADS")
PEAK=$(sed -n 's/^fp32 fma peak: \([0-9.]*\) GFLOP.*/\1/p' <<<"$MACHINE")
[ -n "$PEAK" ] || { echo "bench_train.sh: no peak from $FMA" >&2; exit 1; }
TCMALLOC=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
[ -e "$TCMALLOC" ] || { echo "bench_train.sh: $TCMALLOC missing (make python-deps installs libtcmalloc-minimal4)" >&2; exit 1; }
if ! ls /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 >/dev/null 2>&1; then
    echo "bench_train.sh: no optimised BLAS (libopenblas0-pthread): PyTorch would run on the reference BLAS, ~20x slower; run make python-deps" >&2
    exit 1
fi
WORK=$(mktemp -d /tmp/bench_train.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
OUT_TXT=dev/results/bench_train.txt
OUT_MD=dev/results/bench_train.md

# MemAvailable in GiB: a run that would not fit is skipped with a note, not
# left to the out-of-memory killer (which may pick another process)
avail_gib() { awk '/^MemAvailable:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo; }
fits() { awk -v need="$1" -v have="$(avail_gib)" 'BEGIN { exit !(need * 1.1 < have) }'; }

ours() { # depth B T -> "median_ms median_cpu_ms_per_thread peak_rss"
    "$BIN" -e "d$1" -b "$2" -t "$3" -x "$STEPS" -s -1 -v 0 -o "$WORK/run" --seed 1 >/dev/null
    python3 - "$WORK/run/log.jsonl" "$THREADS" <<'PY'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
steps = [r for r in recs if "ms" in r and r["step"] > 2]
rss = max([r["peak_rss_bytes"] for r in recs if "peak_rss_bytes" in r] or [0])
ms = statistics.median(r["ms"] for r in steps)
cpu = statistics.median(r["cpu_ms"] for r in steps) / int(sys.argv[2])
print(f"{ms:.1f} {cpu:.1f} {rss}")
PY
    rm -rf "$WORK/run"
}

{
echo "make bench-train: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $THREADS threads, $STEPS steps per run (median of steps 3-$STEPS), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$MACHINE"
echo "PyTorch's BLAS: $(env -u OPENBLAS_CORETYPE LD_PRELOAD=$TCMALLOC /usr/bin/python3 dev/bench/bench_gpt2_torch.py --which-blas)"
printf "%-16s %-28s %9s %9s %8s %8s %8s %10s %8s\n" config program "ms/step" "cpu ms" "GFLOP/s" "% peak" "by cpu" "peak RSS" "ours/it"
} | tee "$WORK/txt"
{ echo "On this run's CPU ($(sed -n 's/^cpu: //p' <<<"$MACHINE")) the FP32 FMA peak measured by \`bench_fma\` in the same run is $PEAK GFLOP/s with $THREADS threads."; echo; } > "$WORK/md"
echo "| 124M, shape | program | ms/step | CPU ms/step per thread | GFLOP/s | share of the ${PEAK} GFLOP/s peak | by CPU time | peak RSS | ours / PyTorch |" >> "$WORK/md"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|" >> "$WORK/md"
D=12
for cfg in "4 64" "1 1024" "4 1024"; do
    read -r B T <<<"$cfg"
    C=$((64 * D))
    # parameters with the padded vocabulary: wte 50304 C, wpe 1024 C, 12 C^2 + 13 C per layer, 2 C
    N=$((50304 * C + 1024 * C + D * (12 * C * C + 13 * C) + 2 * C))
    FLOPS=$(( (6 * N + 6 * D * C * T) * B * T ))
    # the peaks measured here before (GiB), to check the memory first
    case "$B $T" in "4 1024") need_ours=3.8 need_torch=11.2 ;; "1 1024") need_ours=2.6 need_torch=4.5 ;; *) need_ours=2.1 need_torch=3.2 ;; esac
    if ! fits "$need_ours"; then
        echo "B$B T$T: skipped, train_gpt2 needs about $need_ours GiB and $(avail_gib) GiB is available" | tee -a "$WORK/txt"; continue
    fi
    read -r om ocpu orss < <(ours "$D" "$B" "$T")
    rows=("train_gpt2 (this project)|$om|$ocpu|$orss")
    if fits "$need_torch"; then
        read -r tm tcpu trss < <(env -u OPENBLAS_CORETYPE LD_PRELOAD=$TCMALLOC /usr/bin/python3 dev/bench/bench_gpt2_torch.py \
            --depth "$D" -b "$B" -t "$T" --steps "$STEPS" --threads "$THREADS" | sed -n 's/^result: //p')
        rows+=("PyTorch + tcmalloc + AVX-512|$tm|$tcpu|$trss")
    else
        echo "B$B T$T: PyTorch skipped, it needs about $need_torch GiB and $(avail_gib) GiB is available" | tee -a "$WORK/txt"
    fi
    for row in "${rows[@]}"; do
        IFS='|' read -r prog m cpu rss <<<"$row"
        awk -v n="B$B T$T" -v p="$prog" -v m="$m" -v c="$cpu" -v f="$FLOPS" -v r="$rss" -v o="$om" -v pk="$PEAK" \
            -v txt="$WORK/txt" -v md="$WORK/md" 'BEGIN {
            g = f / (m / 1000) / 1e9; gc = f / (c / 1000) / 1e9
            line = sprintf("%-16s %-28s %9.0f %9.0f %8.1f %7.0f%% %7.0f%% %6.2f GiB %7.2fx", n, p, m, c, g, 100 * g / pk, 100 * gc / pk, r / 2^30, o / m)
            print line; print line >> txt
            printf "| %s | %s | %.0f | %.0f | %.0f | %.0f%% | %.0f%% | %.2f GiB | %s |\n", n, p, m, c, g, 100 * g / pk, 100 * gc / pk, r / 2^30, \
                (p ~ /PyTorch/ ? sprintf("**%.2fx**", o / m) : "") >> md }'
    done
done
echo "(ours/it = our median ms / that program's median ms, below 1 = we are faster; % peak by the wall clock, 'by cpu' by CPU time per thread)" | tee -a "$WORK/txt"
mkdir -p dev/results
cp "$WORK/txt" "$OUT_TXT"
cp "$WORK/md" "$OUT_MD"
echo "wrote $OUT_TXT and $OUT_MD"
