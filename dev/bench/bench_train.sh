#!/usr/bin/env bash
# Training-step time of train_gpt2 (AdamW) next to PyTorch on the same GPT-2
# 124M, same data, same thread count, measured in the same run, at B4 T64,
# B1 T1024 and B4 T1024: median ms/step over the steps after the first two of
# ROUNDS runs of each program, the two taking turns (default 3: on a shared
# virtual machine a disturbance from outside can slow a few steps by half,
# and alternating runs spreads it over both programs instead of one),
# by wall clock and by CPU time per thread (the process's CPU time divided by
# the thread count; on a shared machine the wall clock also counts the wait for
# a core), GFLOP/s = (6N + 6LCT) B T / time (N counts the padded vocabulary, as
# the reference table in shared/README.md) and its share of the FP32 FMA peak
# that bench_fma measures for the same threads in the same run, at the start
# and at the end, the higher of the two (a disturbance can only lower it; the
# CPU's name heads the output: the machines of this project have differed),
# and peak RSS.
# The PyTorch peer is tuned: tcmalloc preloaded and OpenBLAS free to use AVX-512
# (this machine sets OPENBLAS_CORETYPE=Haswell); the script checks that an
# optimised BLAS is installed (make python-deps installs libopenblas0-pthread)
# and prints the one PyTorch loaded.
# With LLMC_DIR naming a checkout of karpathy/llm.c (its train_gpt2.c and
# llmc/*.h; none of llm.c's code is in this repository), llm.c's CPU trainer is
# a third program: built here, trained on the same random 124M checkpoint and
# the same token shard (see run_llmc below). Without LLMC_DIR the table says
# it was not measured.
# Writes the table to dev/results/bench_train.txt and its markdown form to
# dev/results/bench_train.md (dev/bench/readme_table.py puts it in the README).
#   [LLMC_DIR=DIR] [SHAPES="4x64 1x1024 4x1024"] [LLMC_SHAPES=...] [ROUNDS=3] dev/bench/bench_train.sh BIN BENCH_FMA [steps]
# (make bench-train passes them on). SHAPES picks some of the three shapes (for
# a quick check; the README's table has all three); LLMC_SHAPES (default
# SHAPES) those of them llm.c runs at: it needs 2.5, 6.3 and 19.1 GiB at the
# three shapes, and runs wherever MemAvailable allows unless told otherwise.
set -euo pipefail
BIN=${1:?usage: bench_train.sh path/to/train_gpt2_adamw path/to/bench_fma [steps]}
FMA=${2:?usage: bench_train.sh path/to/train_gpt2_adamw path/to/bench_fma [steps]}
STEPS=${3:-8}
[[ "$STEPS" =~ ^[0-9]+$ && "$STEPS" -ge 3 ]] || { echo "bench_train.sh: steps must be a whole number >= 3 (the median is over steps 3..), not '$STEPS'" >&2; exit 1; }
ROUNDS=${ROUNDS:-3}
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 ]] || { echo "bench_train.sh: ROUNDS must be a whole number >= 1, not '$ROUNDS'" >&2; exit 1; }
SHAPES=${SHAPES:-4x64 1x1024 4x1024}
LLMC_SHAPES=${LLMC_SHAPES:-$SHAPES}
for shape in $SHAPES $LLMC_SHAPES; do
    case "$shape" in 4x64|1x1024|4x1024) ;; *) echo "bench_train.sh: SHAPES, LLMC_SHAPES: '$shape' is not one of 4x64 1x1024 4x1024" >&2; exit 1 ;; esac
done
LLMC_DIR=${LLMC_DIR:-}
if [ -n "$LLMC_DIR" ] && { [ ! -f "$LLMC_DIR/train_gpt2.c" ] || [ ! -f "$LLMC_DIR/llmc/dataloader.h" ]; }; then
    echo "bench_train.sh: LLMC_DIR=$LLMC_DIR has no train_gpt2.c and llmc/dataloader.h (it should be a checkout of karpathy/llm.c)" >&2
    exit 1
fi
THREADS=${OMP_NUM_THREADS:-2}
export OMP_NUM_THREADS=$THREADS
MACHINE=$("$FMA" "$THREADS")
fma_peak() { sed -n 's/^fp32 fma peak: \([0-9.]*\) GFLOP.*/\1/p' <<<"$1"; }
PEAK=$(fma_peak "$MACHINE")
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

ours() { # depth B T steps_file -> "peak_rss first_loss"; appends "ms cpu_ms_per_thread" of steps 3.. to steps_file
    "$BIN" -e "d$1" -b "$2" -t "$3" -x "$STEPS" -s -1 -v 0 -o "$WORK/run" --seed 1 >/dev/null
    python3 - "$WORK/run/log.jsonl" "$THREADS" "$4" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
steps = [r for r in recs if "ms" in r and r["step"] > 2]
rss = max([r["peak_rss_bytes"] for r in recs if "peak_rss_bytes" in r] or [0])
with open(sys.argv[3], "a") as f:
    f.writelines(f"{r['ms']:.1f} {r['cpu_ms'] / int(sys.argv[2]):.1f}\n" for r in steps)
first = next(r["loss"] for r in recs if r.get("step") == 1 and "loss" in r)
print(f"{rss} {first:.6f}")
PY
    rm -rf "$WORK/run"
}
medians() { # steps_file -> "median_ms median_cpu_ms steps", over all the runs' steps
    python3 - "$1" <<'PY'
import statistics, sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
print(f"{statistics.median(r[0] for r in rows):.1f} {statistics.median(r[1] for r in rows):.1f} {len(rows)}")
PY
}

# llm.c's CPU trainer. Its main() has no flags: it reads gpt2_124M.bin and
# dev/data/tinyshakespeare/tiny_shakespeare_{train,val}.bin from the current
# folder and fixes B = 4, T = 64 and 41 steps in the source. So the run folder
# gets those names as links to our files, and the source is compiled from a
# temporary edited copy in $WORK, made here at bench time and never kept: four
# lines change (B, T, the number of steps, and 5 -> 1 validation batches before
# the first step, which is not timed); nothing else. llm.c prints
# "step N: train loss L (took X ms)" per step (0-based), timed around its
# batch load, forward, backward and AdamW update.
LLMC_CFLAGS="-Ofast -Wno-unused-result -Wno-ignored-pragmas -Wno-unknown-attributes -march=native -fopenmp -DOMP"
LLMC_LDLIBS="-lm -lgomp" # llm.c's Makefile for train_gpt2 on Linux with OpenMP (its CC is make's cc)
llmc_setup() { # the checkpoint and data llm.c reads, once
    # the model our runs start from (-e d12 --seed 1), saved by our trainer
    # after one step at learning rate 0, which changes no parameter: llm.c's
    # fp32 checkpoint layout (version 3)
    "$BIN" -e d12 --seed 1 -x 1 -l 0 -b 1 -t 64 -s 0 -v 0 -o "$WORK/ckpt" >/dev/null
    rm -f "$WORK"/ckpt/optim_*
    mkdir -p "$WORK/llmc_run/dev/data/tinyshakespeare"
    ln -s "$WORK/ckpt/model_00000001.bin" "$WORK/llmc_run/gpt2_124M.bin"
    # our default data (data/bible, llm.c's shard format); llm.c reads one file
    # per split, and shuffles it with its seed 42 as our loader does, so both
    # programs' first batch is the same while the Bible is one shard
    local train=(data/bible/bible_train_*.bin) val=(data/bible/bible_val_*.bin)
    ln -s "$PWD/${train[0]}" "$WORK/llmc_run/dev/data/tinyshakespeare/tiny_shakespeare_train.bin"
    ln -s "$PWD/${val[0]}" "$WORK/llmc_run/dev/data/tinyshakespeare/tiny_shakespeare_val.bin"
}
LLMC_STEPS=$(( STEPS < 20 ? STEPS : 20 )) # at most 20: its loop prints a sample at step 20
llmc_build() { # B T -> the path of llm.c's train_gpt2 built for them
    local src="$WORK/llmc_train_gpt2_B$1_T$2.c" exe="$WORK/llmc_train_gpt2_B$1_T$2"
    local line
    for line in '^    int B = 4; ' '^    int T = 64; ' 'for (int step = 0; step <= 40; step++)' '^    int val_num_batches = 5;'; do
        if [ "$(grep -c "$line" "$LLMC_DIR/train_gpt2.c")" != 1 ]; then
            echo "bench_train.sh: $LLMC_DIR/train_gpt2.c does not have the line '$line' once, which this script edits: another version of llm.c?" >&2
            exit 1
        fi
    done
    sed -e "s/^    int B = 4; /    int B = $1; /" -e "s/^    int T = 64; /    int T = $2; /" \
        -e "s/for (int step = 0; step <= 40; step++)/for (int step = 0; step < $LLMC_STEPS; step++)/" \
        -e "s/^    int val_num_batches = 5;/    int val_num_batches = 1;/" "$LLMC_DIR/train_gpt2.c" > "$src"
    # -I: its #include "llmc/..." lines read the checkout's headers
    # shellcheck disable=SC2086
    cc $LLMC_CFLAGS -I"$LLMC_DIR" "$src" $LLMC_LDLIBS -o "$exe"
    echo "$exe"
}
run_llmc() { # B T -> "median_ms median_cpu_ms_per_thread peak_rss first_loss"
    local exe
    exe=$(llmc_build "$1" "$2")
    # line-buffered (stdbuf) so that each step line arrives when printed: the
    # process's CPU time is read from /proc at every step line, a step's CPU
    # time is the difference to the previous line's; peak RSS from wait4
    python3 - "$exe" "$WORK/llmc_run" "$THREADS" <<'PY'
import os, re, statistics, subprocess, sys
exe, rundir, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
tick = os.sysconf("SC_CLK_TCK")
proc = subprocess.Popen(["stdbuf", "-oL", exe], cwd=rundir, stdout=subprocess.PIPE, text=True)
def cpu_ms():  # utime + stime of all its threads, fields 14 and 15 of /proc/PID/stat
    with open(f"/proc/{proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / tick
steps, out = [], []
for line in proc.stdout:
    out.append(line)
    m = re.match(r"step (\d+): train loss (\S+) \(took ([0-9.]+) ms\)", line)
    if m:
        steps.append((int(m.group(1)), float(m.group(2)), float(m.group(3)), cpu_ms()))
_, status, usage = os.wait4(proc.pid, 0)
proc.returncode = os.waitstatus_to_exitcode(status)
if proc.returncode != 0 or len(steps) < 3:
    sys.exit(f"bench_train.sh: {exe} exited with {proc.returncode} after {len(steps)} steps; its last lines:\n" + "".join(out[-5:]))
later = [s for s in steps if s[0] >= 2]  # steps 3.. counted from 1, as ours
ms = statistics.median(s[2] for s in later)
# the CPU between two step lines is one step, except where the loop
# evaluates before the step (every 10th): those are left out
cpu = [b[3] - a[3] for a, b in zip(steps, steps[1:]) if b[0] >= 2 and b[0] % 10 != 0]
print(f"{ms:.1f} {statistics.median(cpu) / threads:.1f} {usage.ru_maxrss * 1024} {steps[0][1]:.6f}")
PY
}
# llm.c's memory in GiB at B T, from its allocations: parameters, gradients,
# AdamW's m and v (4 N floats) and the activations twice (values and
# gradients): per layer 18 BTC + 4 BT + 2 B NH T^2 (preatt and att), then
# 2 BTC + 3 BT + 2 BT Vp (the LM head's logits and probabilities)
llmc_need_gib() { # N L C B T
    awk -v n="$1" -v l="$2" -v c="$3" -v b="$4" -v t="$5" 'BEGIN {
        nh = c / 64; vp = 50304
        acts = l * (18 * b * t * c + 4 * b * t + 2 * b * nh * t * t) + 2 * b * t * c + 3 * b * t + 2 * b * t * vp
        printf "%.1f", (4 * n + 2 * acts) * 4 / 2^30 + 0.1 }'
}

if [ -n "$LLMC_DIR" ]; then
    llmc_version=$(git -C "$LLMC_DIR" rev-parse --short HEAD 2>/dev/null || echo "no git")
    LLMC_LINE="llm.c: $LLMC_DIR/train_gpt2.c (sha256 $(sha256sum "$LLMC_DIR/train_gpt2.c" | cut -c1-12), $llmc_version), built with $(cc --version | head -n 1) $LLMC_CFLAGS $LLMC_LDLIBS (its Makefile's CPU flags); one run of $LLMC_STEPS steps (median of steps 3-$LLMC_STEPS)"
    llmc_setup
else
    LLMC_LINE="llm.c: not measured (set LLMC_DIR to a checkout of karpathy/llm.c)"
fi
NOTES=() # lines under the markdown table

{
echo "make bench-train: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $THREADS threads, $ROUNDS runs of each program taking turns, $STEPS steps per run (median of steps 3-$STEPS of all runs), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$MACHINE"
echo "PyTorch's BLAS: $(env -u OPENBLAS_CORETYPE LD_PRELOAD=$TCMALLOC /usr/bin/python3 dev/bench/bench_gpt2_torch.py --which-blas)"
echo "$LLMC_LINE"
} | tee "$WORK/txt"
RESULTS=() # "config|program|ms|cpu ms|flops|rss|our ms", printed once the peak is known
D=12
for shape in $SHAPES; do
    B=${shape%x*} T=${shape#*x}
    C=$((64 * D))
    # parameters with the padded vocabulary: wte 50304 C, wpe 1024 C, 12 C^2 + 13 C per layer, 2 C
    N=$((50304 * C + 1024 * C + D * (12 * C * C + 13 * C) + 2 * C))
    FLOPS=$(( (6 * N + 6 * D * C * T) * B * T ))
    # the peaks measured here before (GiB), to check the memory first
    case "$B $T" in "4 1024") need_ours=3.8 need_torch=11.2 ;; "1 1024") need_ours=2.6 need_torch=4.5 ;; *) need_ours=2.1 need_torch=3.2 ;; esac
    if ! fits "$need_ours"; then
        echo "B$B T$T: skipped, train_gpt2 needs about $need_ours GiB and $(avail_gib) GiB is available" | tee -a "$WORK/txt"; continue
    fi
    # ROUNDS runs of each program, taking turns; the medians pool all their steps
    torch_fits=1
    fits "$need_torch" || torch_fits=0
    [ "$torch_fits" = 1 ] || echo "B$B T$T: PyTorch skipped, it needs about $need_torch GiB and $(avail_gib) GiB is available" | tee -a "$WORK/txt"
    : > "$WORK/ours_steps"; : > "$WORK/torch_steps"
    orss=0 trss=0
    for ((round = 1; round <= ROUNDS; round++)); do
        read -r rss oloss < <(ours "$D" "$B" "$T" "$WORK/ours_steps")
        orss=$(( rss > orss ? rss : orss ))
        if [ "$torch_fits" = 1 ]; then
            read -r _ _ rss < <(env -u OPENBLAS_CORETYPE LD_PRELOAD=$TCMALLOC /usr/bin/python3 dev/bench/bench_gpt2_torch.py \
                --depth "$D" -b "$B" -t "$T" --steps "$STEPS" --threads "$THREADS" --steps-out "$WORK/torch_steps" | sed -n 's/^result: //p')
            trss=$(( rss > trss ? rss : trss ))
        fi
    done
    read -r om ocpu _ < <(medians "$WORK/ours_steps")
    rows=("train_gpt2 (this project)|$om|$ocpu|$orss")
    if [ "$torch_fits" = 1 ]; then
        read -r tm tcpu _ < <(medians "$WORK/torch_steps")
        rows+=("PyTorch + tcmalloc + AVX-512|$tm|$tcpu|$trss")
    fi
    if [ -n "$LLMC_DIR" ] && [[ " $LLMC_SHAPES " != *" $shape "* ]]; then
        NOTES+=("B$B T$T: llm.c not run here (LLMC_SHAPES=$LLMC_SHAPES)")
    elif [ -n "$LLMC_DIR" ]; then
        need_llmc=$(llmc_need_gib "$N" "$D" "$C" "$B" "$T")
        if fits "$need_llmc"; then
            read -r lm lcpu lrss lloss < <(run_llmc "$B" "$T")
            rows+=("llm.c train_gpt2.c (CPU)|$lm|$lcpu|$lrss")
            # the same model and the same first batch: a check that llm.c was fed what we train on
            NOTES+=("B$B T$T: first step's loss, same checkpoint and batch: train_gpt2 $oloss, llm.c $lloss")
        else
            NOTES+=("B$B T$T: llm.c skipped, it needs about $need_llmc GiB (its B x 12 x T x T attention buffers per layer, values and gradients) and $(avail_gib) GiB is available")
        fi
    fi
    for row in "${rows[@]}"; do
        IFS='|' read -r prog m cpu rss <<<"$row"
        RESULTS+=("B$B T$T|$prog|$m|$cpu|$FLOPS|$rss|$om")
        echo "B$B T$T $prog: $m ms/step, $cpu CPU ms/step per thread" >&2
    done
done
# the peak again, after the runs: the higher of the two measurements counts
MACHINE_END=$("$FMA" "$THREADS")
PEAK_START=$PEAK PEAK_END=$(fma_peak "$MACHINE_END")
[ -n "$PEAK_END" ] || { echo "bench_train.sh: no peak from $FMA" >&2; exit 1; }
PEAK=$(awk -v a="$PEAK_START" -v b="$PEAK_END" 'BEGIN { print (b > a ? b : a) }')
{
echo "fp32 fma peak at the start $PEAK_START, at the end $PEAK_END GFLOP/s: shares of $PEAK"
printf "%-16s %-28s %9s %9s %8s %8s %8s %10s %8s\n" config program "ms/step" "cpu ms" "GFLOP/s" "% peak" "by cpu" "peak RSS" "ours/it"
} | tee -a "$WORK/txt"
{ echo "On this run's CPU ($(sed -n 's/^cpu: //p' <<<"$MACHINE")) the FP32 FMA peak measured by \`bench_fma\` in the same run is $PEAK GFLOP/s with $THREADS threads (the higher of its measurements before and after the runs: $PEAK_START and $PEAK_END). Each program ran $ROUNDS times, taking turns, $STEPS steps a run; the times are the medians of steps 3-$STEPS of all its runs."; echo; } > "$WORK/md"
echo "| 124M, shape | program | ms/step | CPU ms/step per thread | GFLOP/s | share of the ${PEAK} GFLOP/s peak | by CPU time | peak RSS | ours / that program |" >> "$WORK/md"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|" >> "$WORK/md"
for result in "${RESULTS[@]}"; do
    IFS='|' read -r n prog m cpu flops rss om <<<"$result"
    awk -v n="$n" -v p="$prog" -v m="$m" -v c="$cpu" -v f="$flops" -v r="$rss" -v o="$om" -v pk="$PEAK" \
        -v txt="$WORK/txt" -v md="$WORK/md" 'BEGIN {
        g = f / (m / 1000) / 1e9; gc = f / (c / 1000) / 1e9
        line = sprintf("%-16s %-28s %9.0f %9.0f %8.1f %7.0f%% %7.0f%% %6.2f GiB %7.2fx", n, p, m, c, g, 100 * g / pk, 100 * gc / pk, r / 2^30, o / m)
        print line; print line >> txt
        printf "| %s | %s | %.0f | %.0f | %.0f | %.0f%% | %.0f%% | %.2f GiB | %s |\n", n, p, m, c, g, 100 * g / pk, 100 * gc / pk, r / 2^30, \
            (p ~ /PyTorch/ ? sprintf("**%.2fx**", o / m) : p ~ /llm.c/ ? sprintf("%.2fx", o / m) : "") >> md }'
done
{ echo; echo "$LLMC_LINE."; } >> "$WORK/md"
for note in "${NOTES[@]}"; do
    echo "$note" | tee -a "$WORK/txt"; { echo; echo "$note."; } >> "$WORK/md"
done
echo "(ours/it = our median ms / that program's median ms, below 1 = we are faster; % peak by the wall clock, 'by cpu' by CPU time per thread)" | tee -a "$WORK/txt"
mkdir -p dev/results
cp "$WORK/txt" "$OUT_TXT"
cp "$WORK/md" "$OUT_MD"
echo "wrote $OUT_TXT and $OUT_MD"
