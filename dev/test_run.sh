#!/usr/bin/env bash
# Whole-trainer tests of the run machinery on a tiny GPT-2 (dev/testdata):
#   1. gradient accumulation: B=4 x 2 micro-steps equals B=8 x 1
#   2. exact resume: a run interrupted (SIGKILL at a random point, and Ctrl-C)
#      and resumed with -y 1 ends bitwise identical to the uninterrupted run,
#      for AdamW and SGD-SaI
#   3. torn checkpoints: a crash between a checkpoint's files is ignored on resume
#   4. NaN/Inf: the run stops naming the step and keeps the last good state;
#      --nan skip skips and counts
#   5. an unwritable -o DIR is reported at start; a new run does not write
#      into a folder holding another run's checkpoints
#   6. --snr-every's snr.jsonl and --gsnr-every's gsnr.jsonl: the g-SNR of
#      step 1 is what SGD-SaI froze, the flag changes no loss or parameter
#      bit with any optimizer, the SNR lines average to what the rules came
#      from, and a resumed run's files equal the uninterrupted run's
# usage: dev/test_run.sh BIN_DIR   (BIN_DIR holds train_gpt2_<optim>; make run-test-train does this)
set -euo pipefail
BIN=${1:?usage: dev/test_run.sh BIN_DIR}
cd "$(dirname "$0")/.."
. dev/test_lib.sh # fails, ok, bad, check
WORK=$(mktemp -d /tmp/test_run.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

DATA="-e dev/testdata/gpt2_tiny.bin -i dev/testdata/tiny_tokens.bin -t 16 -s -1 --seed 7"
COMMON="$DATA -u 2 -q 0.1 -k cosine --clip 1.0"

# field of the step records of a JSONL log, one per line
steps() { python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "step" in r and "loss" in r: print(r["step"], r["loss"], r["grad_norm"])' "$1"; }

# --- 1. accumulation --------------------------------------------------------
# With SGD the parameters move by lr * gradient, so comparing the final models
# compares the gradients (AdamW's first steps are sign-like: rounding-level
# differences in a near-zero gradient would become differences of lr).
# In order (--shuffle 0): two batches of B=4 are then the halves of one of
# B=8; llm.c's shuffling permutes whole batches, which differ between B=4 and 8.
"$BIN/train_gpt2_sgdm" $COMMON --shuffle 0 -l 0.1 -c 0 -x 5 -b 4 -d 128 -o "$WORK/acc2" >/dev/null
"$BIN/train_gpt2_sgdm" $COMMON --shuffle 0 -l 0.1 -c 0 -x 5 -b 8 -d 128 -o "$WORK/acc1" >/dev/null
check "accumulation: 5 steps of B=4 x 2 micro-steps = B=8 (loss, grad norm within 1e-5)" python3 -c '
import sys
a = [l.split() for l in open(sys.argv[1])]; b = [l.split() for l in open(sys.argv[2])]
assert len(a) == len(b) == 5, (len(a), len(b))
for x, y in zip(a, b):
    for u, v in zip(x[1:], y[1:]):
        assert abs(float(u) - float(v)) <= 1e-5 * abs(float(v)), (x, y)
' <(steps "$WORK/acc2/log.jsonl") <(steps "$WORK/acc1/log.jsonl")
check "accumulation: the two final models agree to 1e-5 of the change (SGD, 5 steps)" python3 -c '
import struct, sys
def load(path):
    data = open(path, "rb").read()[1024:]
    return struct.unpack("%df" % (len(data) // 4), data)
x, y, p0 = load(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3])
d = max(abs(u - v) for u, v in zip(x, y)); change = max(abs(v - w) for v, w in zip(y, p0))
assert d <= 1e-5 * change, (d, change)
' "$WORK/acc2/model_00000005.bin" "$WORK/acc1/model_00000005.bin" dev/testdata/gpt2_tiny.bin

# --- 2. exact resume ----------------------------------------------------------
N=60
for opt in adamw sgd_sai; do
    T="$BIN/train_gpt2_$opt"
    LR=$([ $opt = adamw ] && echo 1e-2 || echo 1e-3)
    RUN="$COMMON -l $LR -c 0.1 -x $N -b 4 -d 128 -n 1"
    "$T" $RUN -o "$WORK/full_$opt" >/dev/null
    # SIGKILL once the checkpoint of step 10 exists: wherever the run then is
    "$T" $RUN -o "$WORK/kill_$opt" >/dev/null &
    pid=$!
    while [ ! -f "$WORK/kill_$opt/state_00000010.json" ] && kill -0 $pid 2>/dev/null; do sleep 0.005; done
    kill -9 $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    if [ -f "$WORK/kill_$opt/state_$(printf %08d $N).json" ]; then
        bad "$opt: the run finished before SIGKILL; the test needs a slower run"
        continue
    fi
    killed_at=$(ls "$WORK/kill_$opt" | sed -n 's/^state_0*\([0-9]*\)\.json$/\1/p' | sort -n | tail -1)
    "$T" $RUN -o "$WORK/kill_$opt" -y 1 >/dev/null
    check "$opt: killed with SIGKILL after step $killed_at, resumed: final model and optimizer state bitwise identical" \
        cmp -s "$WORK/full_$opt/model_$(printf %08d $N).bin" "$WORK/kill_$opt/model_$(printf %08d $N).bin"
    cmp -s "$WORK/full_$opt/optim_$(printf %08d $N).bin" "$WORK/kill_$opt/optim_$(printf %08d $N).bin" || bad "$opt: optimizer state differs"
    check "$opt: the resumed log has each step once, with the uninterrupted run's losses" \
        diff <(steps "$WORK/full_$opt/log.jsonl") <(steps "$WORK/kill_$opt/log.jsonl")
    # Ctrl-C: checkpoint and a clean exit, then resume
    "$T" $RUN -o "$WORK/int_$opt" > "$WORK/int_$opt.out" &
    pid=$!
    while [ ! -f "$WORK/int_$opt/state_00000005.json" ] && kill -0 $pid 2>/dev/null; do sleep 0.005; done
    kill -INT $pid 2>/dev/null || true
    status=0
    wait $pid || status=$?
    check "$opt: Ctrl-C exits with status 0 and says where the checkpoint is" \
        bash -c "[ $status = 0 ] && grep -q 'interrupted at step' '$WORK/int_$opt.out'"
    "$T" $RUN -o "$WORK/int_$opt" -y 1 >/dev/null
    check "$opt: interrupted with Ctrl-C, resumed: bitwise identical" \
        cmp -s "$WORK/full_$opt/model_$(printf %08d $N).bin" "$WORK/int_$opt/model_$(printf %08d $N).bin"
done

# --- 3. torn checkpoints ------------------------------------------------------
# As a crash in the middle of checkpoint 8 leaves it: the model written, the
# optimizer state half-written (only its temporary file), no state file.
RUN="$COMMON -l 1e-2 -c 0.1 -x 12 -b 4 -d 128 -n 4"
"$BIN/train_gpt2_adamw" $RUN -o "$WORK/torn" -x 12 >/dev/null
mkdir -p "$WORK/torn2"
"$BIN/train_gpt2_adamw" $RUN -o "$WORK/torn2" >/dev/null
rm "$WORK/torn2"/state_00000012.json "$WORK/torn2"/state_00000008.json "$WORK/torn2"/optim_00000012.bin "$WORK/torn2"/model_00000012.bin
head -c 1000 "$WORK/torn2/optim_00000008.bin" > "$WORK/torn2/optim_00000008.bin.tmp"
rm "$WORK/torn2/optim_00000008.bin"
out=$("$BIN/train_gpt2_adamw" $RUN -o "$WORK/torn2" -y 1)
check "torn checkpoint 8 is skipped: resume starts from step 4" grep -q "continuing from step 4" <<<"$out"
check "and ends bitwise identical to the uninterrupted run" cmp -s "$WORK/torn/model_00000012.bin" "$WORK/torn2/model_00000012.bin"
check "the leftovers of the torn checkpoint are gone" bash -c "! ls '$WORK/torn2' | grep -q '\.tmp$'"

# --- 4. NaN/Inf ---------------------------------------------------------------
# SGD without clipping at an absurd learning rate diverges within a few steps
NANRUN="$DATA -b 4 -x 20 -l 1e6 -c 0 --clip 0 -n 100"
status=0
"$BIN/train_gpt2_sgdm" $NANRUN -o "$WORK/nan" > "$WORK/nan.out" 2> "$WORK/nan.err" || status=$?
msg=$(cat "$WORK/nan.err")
bad_step=$(sed -n 's/^error: step \([0-9]*\): the .* is \(NaN\|infinite\); stopping.*/\1/p' "$WORK/nan.err")
check "NaN/Inf stops the run with exit status 1 and names the step: $msg" bash -c "[ $status = 1 ] && [ -n '$bad_step' ]"
if [ -n "$bad_step" ]; then
    good=$((bad_step - 1))
    check "the last good state (step $good) is kept as a complete checkpoint" \
        test -f "$WORK/nan/state_$(printf %08d $good).json" -a -f "$WORK/nan/model_$(printf %08d $good).bin"
    check "its parameters are all finite" python3 -c '
import struct, sys, math
d = open(sys.argv[1], "rb").read()[1024:]
assert all(math.isfinite(x) for x in struct.unpack(f"{len(d)//4}f", d))' "$WORK/nan/model_$(printf %08d $good).bin"
fi
"$BIN/train_gpt2_sgdm" ${NANRUN/-n 100/} --nan skip -o "$WORK/nanskip" > /dev/null 2>&1 || true
check "--nan skip runs to the end and counts the skipped steps in the log" python3 -c '
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
steps = [r for r in recs if "step" in r and "lr" in r]
skipped = [r for r in steps if r.get("skipped")]
assert len(steps) == 20 and skipped and skipped[-1]["nan_skipped"] == len(skipped), (len(steps), len(skipped))
' "$WORK/nanskip/log.jsonl"

# --- SlimAdam rules measured from an AdamW run load into SlimAdam -------------
"$BIN/train_gpt2_adamw" $COMMON -x 20 -b 4 --snr-every 5 -o "$WORK/snr" >/dev/null
status=0
"$BIN/train_gpt2_slimadam" $COMMON -x 2 -b 4 --slimadam-rules "$WORK/snr/slimadam_rules.json" > "$WORK/slim.out" || status=$?
check "SNR rules from an AdamW run (--snr-every) are a valid SlimAdam rules file" bash -c "[ $status = 0 ]"
# the per-measurement SNRs (test_optim checks their values against v): one
# line per measurement, every block in each, and the averages they give are
# the ones in slimadam_rules_snr.json; the rules are derived again here
check "snr.jsonl: a header with every block's role and shape, then one line per measurement (steps 5..20); their means are slimadam_rules_snr.json's, from which the rules follow" python3 -c '
import json, math, sys
d = sys.argv[1]
lines = [json.loads(l) for l in open(d + "/snr.jsonl")]
head, recs = lines[0], lines[1:]
means, rules = json.load(open(d + "/slimadam_rules_snr.json")), json.load(open(d + "/slimadam_rules.json"))
assert head["type"] == "header" and head["k"] == ["(0,)", "(1,)", "(0,1)"], head
assert [r["step"] for r in recs] == [5, 10, 15, 20], [r["step"] for r in recs]
names = list(head["blocks"])
assert names == list(rules) == list(means["blocks"]) and "h1.attn.qkvw.v" in names and len(names) == 2 + 2 + 14 * 2
assert means["measurements"] == 4 and (means["first_step"], means["last_step"]) == (5, 20)
for n in names:
    b = head["blocks"][n]
    assert b["role"] == means["blocks"][n]["role"] and b["shape"] == means["blocks"][n]["shape"], n
    best, best_mean = None, 1.0
    for k in range(3):
        vals = [r["snr"][n][k] for r in recs if r["snr"][n][k] is not None]
        m = means["blocks"][n]["mean"][k]
        assert means["blocks"][n]["count"][k] == len(vals), (n, k)
        if not vals: assert m is None, (n, k); continue
        mine = math.fsum(vals) / len(vals)
        assert abs(m - mine) <= 1e-12 * abs(mine), (n, k, m, mine)
        if b["role"] != "norm" and mine > best_mean: best, best_mean = k, mine
    want = None if best is None else [0] if len(b["shape"]) == 1 or best == 0 else [1] if best == 1 else [0, 1]
    assert rules[n] == want == means["blocks"][n]["rule"], (n, rules[n], want)
' "$WORK/snr"
status=0
err=$("$BIN/train_gpt2_sgdm" $COMMON -x 2 -b 4 --snr-every 5 2>&1 >/dev/null) || status=$?
if [[ $status != 0 && $err == *OPTIM=adamw* ]]; then ok "--snr-every with another optimizer is refused: $err"
else bad "--snr-every with another optimizer is refused: $err"; fi

# --- 5. an unwritable output directory ------------------------------------------
status=0
err=$("$BIN/train_gpt2_adamw" $COMMON -x 2 -b 4 -o /proc/no-such-dir 2>&1 >/dev/null) || status=$?
if [[ $status != 0 && $err == *no-such-dir* ]]; then ok "an unwritable -o is reported at start: $err"
else bad "an unwritable -o is reported at start: $err"; fi

# --- a new run into a folder that holds another run's checkpoints ---------------
before=$(cd "$WORK/torn2" && sha256sum model_* optim_* state_* | sha256sum)
status=0
err=$("$BIN/train_gpt2_adamw" $COMMON -x 2 -b 4 -o "$WORK/torn2" 2>&1 >/dev/null) || status=$?
after=$(cd "$WORK/torn2" && sha256sum model_* optim_* state_* | sha256sum)
if [[ $status != 0 && $err == *"-y 1"* && $before == "$after" ]]; then ok "a new run is refused where an earlier run's checkpoints are, which stay untouched: $err"
else bad "a new run is refused where an earlier run's checkpoints are: $err"; fi

# --- 6. g-SNR over training (--gsnr-every) -------------------------------------
# The flag only reads the gradient: with every optimizer, 6 steps of B=4 x 2
# micro-steps with clipping, the losses, norms, final model and optimizer
# state are bitwise those of the run without it.
for opt in adamw sgdm sgd_sai sinkgd slimadam; do
    RUN="$COMMON -x 6 -b 4 -d 128"
    "$BIN/train_gpt2_$opt" $RUN -o "$WORK/gs_off_$opt" >/dev/null
    "$BIN/train_gpt2_$opt" $RUN --gsnr-every 2 -o "$WORK/gs_on_$opt" > "$WORK/gs_on_$opt.out"
    steps "$WORK/gs_off_$opt/log.jsonl" > "$WORK/gs_off_$opt.steps"
    steps "$WORK/gs_on_$opt/log.jsonl" > "$WORK/gs_on_$opt.steps"
    check "$opt: --gsnr-every 2 leaves every loss and gradient norm, the final model and optimizer state bitwise unchanged" \
        bash -c "[ \$(wc -l < '$WORK/gs_on_$opt.steps') = 6 ] && cmp -s '$WORK/gs_off_$opt.steps' '$WORK/gs_on_$opt.steps' &&
                 cmp -s '$WORK/gs_off_$opt/model_00000006.bin' '$WORK/gs_on_$opt/model_00000006.bin' &&
                 cmp -s '$WORK/gs_off_$opt/optim_00000006.bin' '$WORK/gs_on_$opt/optim_00000006.bin'"
done
# gsnr.jsonl: the header names the model's blocks (fused qkv whole) with N,
# then steps 1, 2, 4, 6; step 1 holds exactly the g-SNRs SGD-SaI froze (the
# floats at the end of its state file) and printed
check "sgd_sai: gsnr.jsonl has a header (role, shape, N of each block, qkv fused) and steps 1, 2, 4, 6; step 1 = the g-SNRs SGD-SaI froze in its state, bit for bit, and printed" python3 -c '
import json, struct, sys
d, out = sys.argv[1], sys.argv[2]
lines = [json.loads(l) for l in open(d + "/gsnr.jsonl")]
head, recs = lines[0], lines[1:]
assert head["type"] == "header" and head["eps"] == 1e-8 and [r["step"] for r in recs] == [1, 2, 4, 6], [r.get("step") for r in recs]
blocks = head["blocks"]
assert blocks["h0.attn.qkvw"]["role"] == "attn_qkv" and blocks["h0.attn.qkvw"]["shape"] == [108, 36] and blocks["h0.attn.qkvw"]["n"] == 3888
assert all(list(r["gsnr"]) == list(blocks) for r in recs)
# the state file: header, block table (64-byte name, rows, cols), buf, then one g-SNR per block
raw = open(d + "/optim_00000006.bin", "rb").read()
nb = struct.unpack_from("<i", raw, 32)[0]
names = [raw[44 + 72 * i:44 + 72 * i + 64].split(b"\0")[0].decode() for i in range(nb)]
frozen = struct.unpack("<%df" % nb, raw[len(raw) - 4 * nb:])
assert names == list(blocks), (names, list(blocks))
for n, f in zip(names, frozen):
    g = recs[0]["gsnr"][n]
    assert struct.unpack("<f", struct.pack("<f", g))[0] == f, (n, g, f)
# the table SGD-SaI printed (6 digits)
table = {}
for l in open(out):
    p = l.split()
    if len(p) == 3 and p[0] in blocks and p[1] == str(blocks[p[0]]["n"]): table[p[0]] = float(p[2])
assert len(table) == nb and all(abs(table[n] - recs[0]["gsnr"][n]) <= 1e-5 * table[n] for n in names), table
' "$WORK/gs_on_sgd_sai" "$WORK/gs_on_sgd_sai.out"

# a run resumed from step 10 drops the lines after it and writes them again:
# both files end as the uninterrupted run's
RUN="$COMMON -l 1e-2 -x 20 -b 4 -d 128 -n 5 --snr-every 5 --gsnr-every 5"
"$BIN/train_gpt2_adamw" $RUN -o "$WORK/gs_full" >/dev/null
"$BIN/train_gpt2_adamw" $RUN -o "$WORK/gs_res" >/dev/null
rm "$WORK/gs_res"/state_00000015.json "$WORK/gs_res"/state_00000020.json
"$BIN/train_gpt2_adamw" $RUN -o "$WORK/gs_res" -y 1 > "$WORK/gs_res.out"
check "resumed from step 10: snr.jsonl and gsnr.jsonl equal the uninterrupted run's (one header, each step once)" \
    bash -c "grep -q 'continuing from step 10' '$WORK/gs_res.out' && cmp -s '$WORK/gs_full/snr.jsonl' '$WORK/gs_res/snr.jsonl' &&
             cmp -s '$WORK/gs_full/gsnr.jsonl' '$WORK/gs_res/gsnr.jsonl' && [ \$(wc -l < '$WORK/gs_res/gsnr.jsonl') = 6 ]"
check "resumed from step 10: the SlimAdam rules and their mean SNRs equal the uninterrupted run's (the means of steps 5 and 10 come back from snr.jsonl)" \
    bash -c "cmp -s '$WORK/gs_full/slimadam_rules.json' '$WORK/gs_res/slimadam_rules.json' &&
             cmp -s '$WORK/gs_full/slimadam_rules_snr.json' '$WORK/gs_res/slimadam_rules_snr.json'"

# bad values and a missing -o: one line, naming the flag
for args in "--gsnr-every -3 -o $WORK/gs_bad" "--gsnr-every abc -o $WORK/gs_bad" "--gsnr-every 5"; do
    status=0
    err=$("$BIN/train_gpt2_sgdm" $COMMON -x 2 -b 4 $args 2>&1 >/dev/null) || status=$?
    if [[ $status = 1 && $err == error:*--gsnr-every* && $(wc -l <<<"$err") = 1 ]]; then ok "${args%% -o*}: $err"
    else bad "${args%% -o*} is refused in one line: $err"; fi
done

if [ $fails -gt 0 ]; then echo "test_run.sh: $fails FAILED"; exit 1; fi
echo "test_run.sh: all passed"
