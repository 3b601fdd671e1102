#!/usr/bin/env bash
# Data-parallel training over MPI (run/dist.c, issue 13), whole trainers:
#   1. mpirun -np 2 (one thread per rank) against one process with the same
#      global batch (-d: 2 micro-batches per step; the process accumulates
#      them, each rank runs one), 3 steps from the same checkpoint, with each
#      of the five optimizers: every step's loss, gradient norm and
#      validation loss within 1e-5 relative, step 1's loss and norm equal bit
#      for bit, and the parameters within TOL of the update (max |a-b| /
#      max |a - start| per tensor); the optimizer files have the same header
#      (blocks, layout) and states within 1e-4 of their largest value.
#      Not bitwise: one process adds the second micro-batch's gradient into
#      the first's inside the backward pass, the ranks add the two sums, so
#      the gradients differ in rounding. TOL is test_optim's 1e-4 for SGDM and
#      SGD-SaI, whose step is linear in the gradient; 1e-3 for AdamW, SinkGD
#      and SlimAdam, whose step m / (sqrt(v) + eps) has the same size for a
#      gradient entry that is mostly cancellation (large relative rounding)
#      as for any other (measured: up to 1.2e-4 on the ViT, 6e-5 on GPT-2).
#      The attention's key bias gets a gradient that is zero but for rounding;
#      see dev/mpi_compare.py.
#   2. two 2-rank runs give the same files byte for byte (a fixed order of
#      summation), and a 2-rank run resumed with 2 ranks (-y 1) ends at the
#      same bytes as the uninterrupted one
#   3. resume from a 2-rank checkpoint with 1 process and from a 1-process
#      checkpoint with 2 ranks: within the tolerance of 1.
#   4. a rank killed with SIGKILL ends the job with a non-zero exit within
#      15 seconds; -y 1 then continues from the last complete checkpoint
#   5. the optimizer state per rank: GPT-2 124M's split over 2 ranks is
#      45-55% per rank, over 4 ranks no rank holds more than a quarter or the
#      largest block (wte, 31%); what each rank allocates is checked against
#      the formula by the trainer at start-up
#   6. the ViT (AdamW, SGD-SaI): 2 ranks against one process as in 1
#   7. what data-parallel runs refuse, with one line each
# usage: dev/test_mpi.sh BUILD MPI_BUILD   (make run-test-mpi)
set -euo pipefail
BUILD=${1:?usage: dev/test_mpi.sh BUILD MPI_BUILD}
MPIB=${2:?usage: dev/test_mpi.sh BUILD MPI_BUILD}
cd "$(dirname "$0")/.."
. dev/test_lib.sh # fails, ok, bad, check
WORK=$(mktemp -d /tmp/test_mpi.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
OPTIMS="adamw sgdm sgd_sai sinkgd slimadam"
export OMP_NUM_THREADS=1
# Open MPI refuses to run as root without these; --oversubscribe lets more
# ranks than cores run, --bind-to none keeps them from sharing one core
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# a sanitizer build (SANITIZE=1) looks for leaks too; what Open MPI's
# libraries keep until exit is suppressed by dev/lsan_openmpi.supp, which names
# only them (the release build ignores these variables)
export ASAN_OPTIONS=${ASAN_OPTIONS:-fast_unwind_on_malloc=0}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/dev/lsan_openmpi.supp:print_suppressions=0}
# a hung job fails after MPI_TIMEOUT seconds (the Makefile gives a sanitizer
# build more: the ViT's evaluation over 10,000 images alone takes a minute
# under AddressSanitizer on an idle machine, and passed 300 s under load)
MPI_TIMEOUT=${MPI_TIMEOUT:-300}
MPIRUN_BARE="mpirun --oversubscribe --bind-to none -x OMP_NUM_THREADS -x ASAN_OPTIONS -x LSAN_OPTIONS"
MPIRUN="timeout $MPI_TIMEOUT $MPIRUN_BARE"
CMP="python3 dev/mpi_compare.py"
tol_for() { case "$1" in sgdm|sgd_sai) echo 1e-4 ;; *) echo 1e-3 ;; esac; }

lr_for() { case "$1" in sgdm) echo 0.1 ;; sgd_sai) echo 1e-2 ;; sinkgd) echo 2e-2 ;; *) echo 3e-3 ;; esac; }
G="-e dev/testdata/gpt2_tiny.bin -i dev/testdata/tiny_tokens.bin -j dev/testdata/tiny_tokens.bin -v 1 -m 3
   -b 4 -t 16 -d 128 -x 3 -n 1 -nk 0 -s -1 -u 0 -k cosine --seed 7"

# run a trainer (or mpirun), failing the test with its last line if it fails
run() { # OUT_FILE COMMAND...
    local out=$1; shift
    if ! "$@" >"$out" 2>&1; then bad "$* failed: $(tail -1 "$out")"; return 1; fi
}

# the records of a log: step, loss, norm, val loss
records() { python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "step" in r and "loss" in r: print("train", r["step"], repr(r["loss"]), repr(r["grad_norm"]))
    if "val_loss" in r: print("val", r["step"], repr(r["val_loss"]))' "$1"; }

# two logs: the same records within 1e-5 relative, step 1's train record equal
same_records() { # NAME LOG_A LOG_B
    python3 - "$2" "$3" <<'EOF' && ok "$1: losses, norms and validation losses agree (step 1 bit for bit)" || bad "$1: the logs differ"
import json, sys
def recs(path):
    out = []
    for line in open(path):
        r = json.loads(line)
        if "step" in r and "loss" in r: out.append(("train", r["step"], r["loss"], r["grad_norm"]))
        if "val_loss" in r: out.append(("val", r["step"], r["val_loss"], 0.0))
    return out
a, b = recs(sys.argv[1]), recs(sys.argv[2])
if len(a) != len(b) or not a: print("  %d records against %d" % (len(a), len(b))); sys.exit(1)
for x, y in zip(a, b):
    if x[:2] != y[:2]: print("  ", x, y); sys.exit(1)
    for u, v in zip(x[2:], y[2:]):
        if abs(u - v) > 1e-5 * max(abs(u), abs(v)): print("  ", x, y); sys.exit(1)
first = [r for r in a if r[0] == "train"][0], [r for r in b if r[0] == "train"][0]
if first[0] != first[1]: print("  step 1:", first); sys.exit(1)
EOF
}

ckpt() { printf "%s/%s_%08d.%s" "$1" "$2" "$3" "$4"; }
# drop the last checkpoint (step 3) of a copy, so that -y 1 redoes step 3
drop_step3() { rm -f "$(ckpt "$1" model 3 bin)" "$(ckpt "$1" optim 3 bin)" "$(ckpt "$1" state 3 json)"; }

params_close() { # NAME A B TOL
    local out
    if out=$($CMP gpt2 "$2" "$3" dev/testdata/gpt2_tiny.bin "$4"); then ok "$1: $out"; else bad "$1: $out"; fi
}
optim_close() { # NAME A B
    local out
    if out=$($CMP optim "$2" "$3" 1e-4); then ok "$1: $out"; else bad "$1: $out"; fi
}
bitwise() { # NAME DIR_A DIR_B STEP
    if cmp -s "$(ckpt "$2" model "$4" bin)" "$(ckpt "$3" model "$4" bin)" &&
       cmp -s "$(ckpt "$2" optim "$4" bin)" "$(ckpt "$3" optim "$4" bin)"; then
        ok "$1: model and optimizer files equal byte for byte"
    else
        bad "$1: the files differ"
    fi
}

# --- 1-3. GPT-2: 2 ranks against 1 process, each optimizer; resume across rank counts ---
for o in $OPTIMS; do
    W=$WORK/$o; mkdir -p "$W"
    F="$G -l $(lr_for "$o")"
    run "$W/one.out" "$BUILD/bin/train_gpt2_$o" $F -o "$W/one" || continue
    run "$W/two.out" $MPIRUN -np 2 "$MPIB/bin/train_gpt2_$o" $F -o "$W/two" || continue
    same_records "gpt2 $o: 2 ranks vs 1 process" "$W/one/log.jsonl" "$W/two/log.jsonl"
    params_close "gpt2 $o: 2 ranks vs 1 process, parameters after 3 steps" "$(ckpt "$W/one" model 3 bin)" "$(ckpt "$W/two" model 3 bin)" "$(tol_for $o)"
    optim_close "gpt2 $o: 2 ranks vs 1 process, optimizer file" "$(ckpt "$W/one" optim 3 bin)" "$(ckpt "$W/two" optim 3 bin)"
    # 2 -> 2: the same partition reads back what it wrote
    cp -r "$W/two" "$W/two_two"; drop_step3 "$W/two_two"
    run "$W/two_two.out" $MPIRUN -np 2 "$MPIB/bin/train_gpt2_$o" $F -o "$W/two_two" -y 1 &&
        bitwise "gpt2 $o: 2 ranks resumed with 2 at step 2 = uninterrupted" "$W/two" "$W/two_two" 3
    # 2 -> 1 and 1 -> 2
    cp -r "$W/two" "$W/two_one"; drop_step3 "$W/two_one"
    run "$W/two_one.out" "$BUILD/bin/train_gpt2_$o" $F -o "$W/two_one" -y 1 &&
        params_close "gpt2 $o: a 2-rank checkpoint resumed by 1 process" "$(ckpt "$W/two" model 3 bin)" "$(ckpt "$W/two_one" model 3 bin)" "$(tol_for $o)"
    cp -r "$W/one" "$W/one_two"; drop_step3 "$W/one_two"
    run "$W/one_two.out" $MPIRUN -np 2 "$MPIB/bin/train_gpt2_$o" $F -o "$W/one_two" -y 1 &&
        params_close "gpt2 $o: a 1-process checkpoint resumed by 2 ranks" "$(ckpt "$W/one" model 3 bin)" "$(ckpt "$W/one_two" model 3 bin)" "$(tol_for $o)"
done
W=$WORK/adamw
run "$W/again.out" $MPIRUN -np 2 "$MPIB/bin/train_gpt2_adamw" $G -l 3e-3 -o "$W/again" &&
    bitwise "gpt2 adamw: two 2-rank runs" "$W/two" "$W/again" 3
# 4 ranks, one micro-batch each (-d 256) against one process accumulating 4
run "$W/one4.out" "$BUILD/bin/train_gpt2_adamw" $G -d 256 -l 3e-3 -o "$W/one4" &&
run "$W/four.out" $MPIRUN -np 4 "$MPIB/bin/train_gpt2_adamw" $G -d 256 -l 3e-3 -o "$W/four" &&
    params_close "gpt2 adamw: 4 ranks (oversubscribed) vs 1 process" "$(ckpt "$W/one4" model 3 bin)" "$(ckpt "$W/four" model 3 bin)" 1e-3
# the validation batches are split over the ranks: one line of the log says so
grep -q '"ranks":2' "$WORK/adamw/two/log.jsonl" && ok "gpt2: the log's config record names 2 ranks" ||
    bad "gpt2: the log's config record does not name the ranks"

# --- 4. a killed rank ------------------------------------------------------------------
K=$WORK/kill
$MPIRUN_BARE -np 2 "$MPIB/bin/train_gpt2_adamw" -e dev/testdata/gpt2_tiny.bin -i dev/testdata/tiny_tokens.bin \
    -b 4 -t 16 -d 128 -x 1000000 -k constant -n 1 -nk 2 -s -1 -o "$K" >"$K.out" 2>&1 &
mpirun_pid=$!
# (a loaded machine can take a minute to start two ranks)
# (-nk 2 prunes older checkpoints: wait for any complete one)
have_ckpt() { compgen -G "$K/state_*.json" >/dev/null; }
for _ in $(seq 1800); do have_ckpt && break; sleep 0.1; done
victim=""
for c in $(pgrep -P "$mpirun_pid" || true); do
    if tr '\0' '\n' <"/proc/$c/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1; then victim=$c; fi
done
if [ -z "$victim" ] || ! have_ckpt; then
    bad "killed rank: could not find rank 1 of the running job (a checkpoint $(have_ckpt && echo written || echo "not written after 180 s"), children of mpirun: $(pgrep -P "$mpirun_pid" | tr '\n' ' '); $(tail -1 "$K.out"))"
    kill "$mpirun_pid" 2>/dev/null || true
    wait "$mpirun_pid" || true
else
    t0=$(date +%s.%N)
    kill -9 "$victim"
    for _ in $(seq 300); do kill -0 "$mpirun_pid" 2>/dev/null || break; sleep 0.1; done
    t1=$(date +%s.%N)
    secs=$(python3 -c "print('%.1f' % ($t1 - $t0))")
    if kill -0 "$mpirun_pid" 2>/dev/null; then
        bad "killed rank 1: the job still runs 30 s later"
        kill "$mpirun_pid" 2>/dev/null || true
        wait "$mpirun_pid" || true
    else
        rc=0
        wait "$mpirun_pid" || rc=$?
        if [ $rc != 0 ]; then ok "killed rank 1: the job ended with exit $rc after ${secs} s"
        else bad "killed rank 1: the job ended with exit 0"; fi
    fi
    last=$(ls "$K" | sed -n 's/^state_\([0-9]*\)\.json$/\1/p' | sort | tail -1)
    last=$((10#$last))
    if run "$K.resume.out" $MPIRUN -np 2 "$MPIB/bin/train_gpt2_adamw" -e dev/testdata/gpt2_tiny.bin \
            -i dev/testdata/tiny_tokens.bin -b 4 -t 16 -d 128 -x $((last + 2)) -k constant -n 1 -nk 2 -s -1 -o "$K" -y 1 &&
       grep -q "resume: continuing from step $last of" "$K.resume.out" && [ -f "$(ckpt "$K" state $((last + 2)) json)" ]; then
        ok "after the kill, -y 1 continued from the last complete checkpoint (step $last) to step $((last + 2))"
    else
        bad "after the kill, -y 1 did not continue from step $last: $(tail -1 "$K.resume.out")"
    fi
fi

# --- 5. the optimizer state per rank ---------------------------------------------------
for n in 2 4; do
    if run "$WORK/plan$n.out" $MPIRUN -np $n "$MPIB/bin/train_gpt2_adamw" -e d12 -b 1 -t 64 -s -1 --memory-plan-only 1; then
        python3 - "$WORK/plan$n.out" $n <<'EOF' && ok "GPT-2 124M, AdamW, $n ranks: $(grep -o 'rank [0-9]:.*of the whole' "$WORK/plan$n.out" | sed 's/.*state \([0-9]*\) bytes.*, \([0-9.]*%\) of the whole/\2/' | tr '\n' ' ')of the state per rank" || bad "GPT-2 124M, $n ranks: the state per rank is not about 1/$n"
import re, sys
text, n = open(sys.argv[1]).read(), int(sys.argv[2])
shares = [float(x) for x in re.findall(r"rank \d+: .* state \d+ bytes \([^,]*, ([0-9.]+)% of the whole\)", text)]
whole = int(re.search(r"whole: (\d+) bytes", text).group(1))
parts = [int(x) for x in re.findall(r"rank \d+: .* state (\d+) bytes", text)]
planned = re.search(r"optimizer state .* adamw, (\d+) bytes", text)
ok = len(shares) == n and sum(parts) == whole and planned and int(planned.group(1)) == parts[0]
ok = ok and (all(45 <= s <= 55 for s in shares) if n == 2 else max(shares) <= 31.1 and min(shares) >= 20)
sys.exit(0 if ok else 1)
EOF
    fi
done

# --- 6. the ViT ------------------------------------------------------------------------
# Fashion-MNIST (Debian's dataset-fashion-mnist), fmnist-tiny, 3 steps from a
# checkpoint of one step (so that both runs start from the same file)
V="-b 8 -d 16 -x 3 -n 1 -nk 0 -u 0 -k cosine --seed 3 -v 0 -p 1"
VSTART=$WORK/vit_start/model_00000001.bin
run "$WORK/vit_start.out" "$BUILD/vit/train_vit_adamw" -e fmnist-tiny -b 8 -x 1 -n 1 -v 0 -o "$WORK/vit_start"
for o in adamw sgd_sai; do
    W=$WORK/vit_$o; mkdir -p "$W"
    run "$W/one.out" "$BUILD/vit/train_vit_$o" -e "$VSTART" $V -o "$W/one" || continue
    run "$W/two.out" $MPIRUN -np 2 "$MPIB/vit/train_vit_$o" -e "$VSTART" $V -o "$W/two" || continue
    same_records "vit $o: 2 ranks vs 1 process" "$W/one/log.jsonl" "$W/two/log.jsonl"
    if out=$($CMP vit "$(ckpt "$W/one" model 3 bin)" "$(ckpt "$W/two" model 3 bin)" "$VSTART" "$(tol_for $o)"); then
        ok "vit $o: 2 ranks vs 1 process, parameters after 3 steps: $out"
    else bad "vit $o: 2 ranks vs 1 process, parameters: $out"; fi
    optim_close "vit $o: 2 ranks vs 1 process, optimizer file" "$(ckpt "$W/one" optim 3 bin)" "$(ckpt "$W/two" optim 3 bin)"
    cp -r "$W/two" "$W/two_one"; drop_step3 "$W/two_one"
    run "$W/two_one.out" "$BUILD/vit/train_vit_$o" -e "$VSTART" $V -o "$W/two_one" -y 1 &&
        optim_close "vit $o: a 2-rank checkpoint resumed by 1 process" "$(ckpt "$W/two" optim 3 bin)" "$(ckpt "$W/two_one" optim 3 bin)"
    cp -r "$W/two" "$W/two_two"; drop_step3 "$W/two_two"
    run "$W/two_two.out" $MPIRUN -np 2 "$MPIB/vit/train_vit_$o" -e "$VSTART" $V -o "$W/two_two" -y 1 &&
        bitwise "vit $o: 2 ranks resumed with 2 at step 2 = uninterrupted" "$W/two" "$W/two_two" 3
done

# --- 7. refused with one line ----------------------------------------------------------
refused() { # NAME EXPECTED_TEXT COMMAND...
    local name=$1 want=$2; shift 2
    if "$@" >"$WORK/refused.out" 2>&1; then bad "$name: accepted"; return; fi
    if grep -q -- "$want" "$WORK/refused.out"; then ok "$name: refused ($(grep -m1 -- "$want" "$WORK/refused.out" | cut -c1-110))"
    else bad "$name: no clear error: $(tail -1 "$WORK/refused.out")"; fi
}
T="-e dev/testdata/gpt2_tiny.bin -i dev/testdata/tiny_tokens.bin -b 4 -t 16 -x 2 -s -1"
refused "--fused-update 1 with 2 ranks" "does not work with mpirun" $MPIRUN -np 2 "$MPIB/bin/train_gpt2_adamw" $T --fused-update 1
refused "--gsnr-max-norm 1 with 2 ranks" "does not work with mpirun" $MPIRUN -np 2 "$MPIB/bin/train_gpt2_sgd_sai" $T --gsnr-max-norm 1
refused "-x 0 with 2 ranks" "without mpirun" $MPIRUN -np 2 "$MPIB/bin/train_gpt2_adamw" $T -x 0 -j dev/testdata/tiny_tokens.bin
refused "-d not a multiple of 2 ranks x B x T" "not a multiple" $MPIRUN -np 2 "$MPIB/bin/train_gpt2_adamw" $T -d 64

if [ $fails -ne 0 ]; then echo "test_mpi: $fails failed"; exit 1; fi
echo "test_mpi: all passed"
