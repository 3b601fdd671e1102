#!/usr/bin/env bash
# At home beside llm.c (issue 14, items 1, 2 and 4): run the trainers as a
# user coming from llm.c would, and check what they do against values
# computed here by hand or by the PyTorch reference (dev/eval_ref.py, whose
# output is committed in dev/testdata/eval_ref.json).
#   1. llm.c's checkpoint folder (model_00000003.bin + DONE_00000003, its
#      state_<step>_<rank>.bin and main.log) is refused, new run or -y 1, and
#      left byte for byte; a model file with neither our state file nor our
#      log beside it is refused by -y 1 (it could be written over)
#   2. llm.c's flag meanings: -h alone or --help prints help, -h 1 is HellaSwag;
#      -x -1 one epoch (the step count from the shard's size); -m -1 the whole
#      validation split; -s 0 never samples, the default samples at the end
#      only, -s N every N and at the end; -n 0 writes no checkpoint, -n N every
#      N and at the end; -nm keeps major checkpoints from -nk's pruning;
#      llm.c's GPU flags (-f -w -ge -r) change nothing; -sl -sg -a -z -p* are
#      refused by name; train_vit: -h alone is help, -h 1 refused, -x -1
#   4. evaluation mode: -x 0 -j SHARD -m -1 gives PyTorch's validation loss and
#      perplexity; -x 0 -h 1 scores an eval file in llm.c's format (written by
#      dev/evalfile.py from the reference's examples) with PyTorch's per-ending
#      losses and predictions, whatever the packing of rows (-b 4 and -b 1);
#      the same HellaSwag at the end of a training run; bad eval files refused
# usage: dev/test_llmc.sh BUILD_DIR   (make run-test-llmc)
set -uo pipefail
BUILD=${1:?usage: dev/test_llmc.sh BUILD_DIR}
cd "$(dirname "$0")/.."
. dev/test_lib.sh # fails, ok, bad, check
GPT=$BUILD/bin/train_gpt2_adamw
VIT=$BUILD/vit/train_vit_adamw
export OMP_NUM_THREADS=1
W=$(mktemp -d /tmp/test_llmc.XXXXXX)
trap 'rm -rf "$W"' EXIT
# expect_error WHAT LINE CMD...: exit status 1 and stderr exactly "error: LINE"
expect_error() {
    local what=$1 want="error: $2"
    shift 2
    local status=0 err
    err=$(timeout 30 "$@" 2>&1 >/dev/null) || status=$?
    if [[ $status == 1 && "$err" == "$want" ]]; then ok "$what"
    else bad "$what: status $status (want 1), stderr:
$err
     wanted:
$want"; fi
}
# the log's records as JSON for python one-liners
py() { python3 -c "import json, sys, math
recs = [json.loads(l) for l in open(sys.argv[1])]
$1" "${@:2}"; }

D=(-e dev/testdata/gpt2_tiny.bin -i dev/testdata/tiny_tokens.bin -t 16 -b 4 -p 1000)
# tiny_tokens.bin: 7168 bytes = 1024 of header + 3072 tokens; at B 4 x T 16 a
# pass is (3072 - 1) / 64 = 47 batches (each batch reads 65 tokens)
tokens=$(( ($(stat -c %s dev/testdata/tiny_tokens.bin) - 1024) / 2 ))
batches=$(( (tokens - 1) / 64 ))

# --- 1. llm.c's checkpoint folder ------------------------------------------------------
L="$W/llmc"
mkdir -p "$L"
echo "llm.c's model of step 3" > "$L/model_00000003.bin"
: > "$L/DONE_00000003"
echo "llm.c's state" > "$L/state_00000003_00000.bin"
echo "step 3 loss 4.5" > "$L/main.log"
cp -r "$L" "$W/llmc_before"
want="$L holds llm.c's checkpoints (DONE_00000003: step 3), which this program neither resumes nor writes over: start from its weights with -e $L/model_00000003.bin and another -o DIR"
expect_error "a new run in llm.c's -o folder is refused" "$want" "$GPT" "${D[@]}" -x 4 -n 1 -o "$L"
expect_error "-y 1 in llm.c's -o folder is refused (it wrote over model_00000003.bin at step 3)" "$want" \
    "$GPT" "${D[@]}" -x 4 -n 1 -o "$L" -y 1
check "llm.c's folder is left as it was, nothing added" diff -r "$L" "$W/llmc_before"
M="$W/llmc_nodone"
mkdir -p "$M"
echo "step 3 loss 4.5" > "$M/main.log"
expect_error "a folder with llm.c's main.log alone is refused" \
    "$M holds llm.c's files (main.log), which this program neither resumes nor writes over: choose another -o DIR" \
    "$GPT" "${D[@]}" -x 2 -o "$M" -y 1
O="$W/orphan"
mkdir -p "$O"
echo "someone's model" > "$O/model_00000003.bin"
expect_error "-y 1 where a model file has neither our state file nor our log (llm.c stopped before its DONE file)" \
    "$O/model_00000003.bin was not written by this program (no state file of its step, no log.jsonl of ours beside it), and -y 1 could write over it: choose another -o DIR" \
    "$GPT" "${D[@]}" -x 4 -n 1 -o "$O" -y 1
check "and that file is unchanged" bash -c "[ \"\$(cat '$O/model_00000003.bin')\" = \"someone's model\" ]"
# the way out the message names: llm.c's model (the same fp32 format) as -e of a new run elsewhere
mkdir -p "$W/llmc_real"
cp dev/testdata/gpt2_tiny.bin "$W/llmc_real/model_00000003.bin"
: > "$W/llmc_real/DONE_00000003"
status=0
"$GPT" -e "$W/llmc_real/model_00000003.bin" -i dev/testdata/tiny_tokens.bin -t 16 -b 4 -x 2 -s 0 -o "$W/from_llmc" > /dev/null 2>&1 || status=$?
check "a new run in another folder starts from llm.c's model_00000003.bin with -e" \
    bash -c "[ $status = 0 ] && [ -f '$W/from_llmc/state_00000002.json' ] && cmp -s '$W/llmc_real/model_00000003.bin' dev/testdata/gpt2_tiny.bin"

# --- 2. llm.c's flag meanings --------------------------------------------------------
for h in "-h" "--help" "-x 3 -h" "-h -x 3"; do
    status=0
    out=$("$GPT" $h 2>&1) || status=$?
    check "train_gpt2 $h prints the help, exit 0" bash -c "[ $status = 0 ] && [[ \"\$1\" == usage:* ]]" _ "$out"
done
expect_error "-h 2: llm.c's -h takes 0 or 1" "flag -h takes 0 or 1 (HellaSwag evaluation, as in llm.c), or nothing (help), not '2'" \
    "$GPT" "${D[@]}" -x 1 -h 2
status=0
out=$("$VIT" -h 2>&1) || status=$?
check "train_vit -h prints the help" bash -c "[ $status = 0 ] && [[ \"\$1\" == usage:* ]]" _ "$out"
expect_error "train_vit -h 1: HellaSwag is GPT-2's" \
    "flag -h 1: -h 0|1 is llm.c's HellaSwag evaluation, which is for train_gpt2 (-h alone or --help prints the help)" "$VIT" -h 1

# -x -1: one epoch = 47 batches; with -d 128 (2 micro-batches a step) 23 steps
"$GPT" "${D[@]}" -x -1 -s 0 -d 128 -o "$W/epoch" > "$W/epoch.out" 2>&1
check "-x -1 -d 128: one epoch of $batches batches is $((batches / 2)) steps (config and log)" py '
steps = [r["step"] for r in recs if "loss" in r]
cfg = recs[0]["run"]
assert steps == list(range(1, int(sys.argv[2]) + 1)) and cfg["steps"] == int(sys.argv[2]), (steps[-1:], cfg)' \
    "$W/epoch/log.jsonl" $((batches / 2))
expect_error "-x -1 on data of less than one step" \
    "flag -x -1: one epoch of dev/testdata/tiny_tokens.bin is $batches micro-batches, less than one step of 64" \
    "$GPT" "${D[@]}" -x -1 -d 4096
expect_error "-x -2" "flag -x must be an integer in [-1, 1000000000000], got '-2'" "$GPT" "${D[@]}" -x -2
expect_error "-m 0" "flag -m must be -1 (the whole validation split) or a number of batches, not 0" "$GPT" "${D[@]}" -m 0

# -s: 0 never, default at the end only, N every N and at the end
"$GPT" "${D[@]}" -x 5 -s 0 -o "$W/s0" > "$W/s0.out" 2>&1
"$GPT" "${D[@]}" -x 5 -o "$W/sdef" > /dev/null 2>&1
"$GPT" "${D[@]}" -x 5 -s 2 -g 4 -o "$W/s2" > /dev/null 2>&1
samples() { py 'print(" ".join(str(r["step"]) for r in recs if "sample_ids" in r))' "$1/log.jsonl"; }
check "-s 0 never samples (llm.c); no KV cache planned" bash -c "[ -z '$(samples "$W/s0")' ] && ! grep -q '^--- sample' '$W/s0.out' && grep -q 'KV cache *0 B' '$W/s0.out'"
check "no -s: one sample, at the end" [ "$(samples "$W/sdef")" = "5" ]
check "-s 2 -x 5: samples at steps 2, 4 and the end" [ "$(samples "$W/s2")" = "2 4 5" ]

# -n: 0 never, default at the end only, N every N and at the end; -nm
ckpts() { ls "$1" | sed -n 's/^state_0*\([0-9][0-9]*\)\.json$/\1/p' | sort -n | tr '\n' ' ' | sed 's/ $//'; }
"$GPT" "${D[@]}" -x 5 -s 0 -n 0 -o "$W/n0" > /dev/null 2>&1
"$GPT" "${D[@]}" -x 5 -s 0 -o "$W/ndef" > /dev/null 2>&1
"$GPT" "${D[@]}" -x 5 -s 0 -n 2 -o "$W/n2" > /dev/null 2>&1
"$GPT" "${D[@]}" -x 7 -s 0 -n 1 -nk 1 -nm 3 -o "$W/nm" > /dev/null 2>&1
check "-n 0 writes no checkpoint (llm.c)" bash -c "! ls '$W/n0' | grep -q '^\(model\|optim\|state\)_'"
check "no -n: one checkpoint, at the end" [ "$(ckpts "$W/ndef")" = "5" ]
check "-n 2 -x 5: checkpoints 2, 4 and the end" [ "$(ckpts "$W/n2")" = "2 4 5" ]
check "-n 1 -nk 1 -nm 3 -x 7: the major checkpoints 3 and 6 stay beside the newest" [ "$(ckpts "$W/nm")" = "3 6 7" ]
check "and their model files too" bash -c "[ -f '$W/nm/model_00000003.bin' ] && [ -f '$W/nm/model_00000006.bin' ] && [ ! -f '$W/nm/model_00000005.bin' ]"

# llm.c's GPU settings are accepted and change nothing
"$GPT" "${D[@]}" -x 3 -s 0 -n 0 -f 1 -w 1 -ge 2 -r 1 -o "$W/gpu" > "$W/gpu.out" 2>&1
"$GPT" "${D[@]}" -x 3 -s 0 -n 0 -o "$W/nogpu" > /dev/null 2>&1
losses() { py 'print([r["loss"] for r in recs if "loss" in r])' "$1/log.jsonl"; }
"$GPT" "${D[@]}" -x 3 -s 0 -n 0 -d -1 -o "$W/dm1" > /dev/null 2>&1
check "-d -1 (llm.c's default): one micro-batch a step, the same losses bit for bit" [ "$(losses "$W/dm1")" = "$(losses "$W/nogpu")" ]
check "-f 1 -w 1 -ge 2 -r 1: a note each, the same losses bit for bit" bash -c "[ \"\$(grep -c '^note: flag -\(f\|w\|ge\|r\) ' '$W/gpu.out')\" = 4 ] && [ '$(losses "$W/gpu")' = '$(losses "$W/nogpu")' ]"
for f in "-sl 3.0:skipping updates whose loss is an outlier" "-sg 3.0:skipping updates whose gradient norm is an outlier" \
         "-a 1:overfitting a single batch" "-z 1:ZeRO sharding across GPUs" "-pn 2:multi-process training"; do
    flag=${f%%:*}; what=${f#*:}
    expect_error "llm.c's $flag is refused by name" \
        "flag ${flag%% *} is llm.c's $what, which this program does not do (the README's flag table lists llm.c's flags)" \
        "$GPT" "${D[@]}" -x 1 $flag
done

# train_vit -x -1: one epoch of an image shard of 8 images at -b 2 is 4 steps
python3 - "$W" <<'PYEOF'
import random, struct, sys, zlib
out = sys.argv[1]
rng = random.Random(1)
count, H, W, ch, K = 8, 8, 8, 1, 2
labels = [i % K for i in range(count)]
pixels = bytes(rng.randrange(256) for _ in range(count * ch * H * W))
names = b"".join(f"c{k}".encode().ljust(64, b"\0") for k in range(K))
body = names + struct.pack(f"<{count}i", *labels) + pixels
open(f"{out}/imgs.bin", "wb").write((b"IMGSHARD" + struct.pack("<7I", 1, count, H, W, ch, K, zlib.crc32(body))).ljust(64, b"\0") + body)
PYEOF
"$VIT" --train-shard "$W/imgs.bin" -e fmnist-tiny --image-size 8 --image-channels 1 --patch 4 -b 2 -x -1 -n 0 -o "$W/vit" > "$W/vit.out" 2>&1
check "train_vit -x -1 -b 2 on 8 images: 4 steps" py 'assert [r["step"] for r in recs if "loss" in r] == [1, 2, 3, 4], open(sys.argv[2]).read()[-500:]' \
    "$W/vit/log.jsonl" "$W/vit.out"

# --- 4. evaluation mode ----------------------------------------------------------------
REF=dev/testdata/eval_ref.json
"$GPT" "${D[@]}" -x 0 -j dev/testdata/tiny_tokens.bin -m -1 -s 0 -o "$W/val" > "$W/val.out" 2>&1
check "-x 0 -j SHARD -m -1: PyTorch's validation loss (1e-5) over all $batches batches, perplexity exp(loss)" py '
ref = json.load(open(sys.argv[2]))["val"]
v = [r for r in recs if "val_loss" in r]
assert len(v) == 1 and v[0]["step"] == 0 and v[0]["val_batches"] == ref["batches"] == int(sys.argv[3]), v
assert abs(v[0]["val_loss"] - ref["loss"]) < 1e-5, (v[0]["val_loss"], ref["loss"])
assert abs(v[0]["val_perplexity"] - math.exp(v[0]["val_loss"])) < 1e-9 * v[0]["val_perplexity"]
assert not [r for r in recs if "loss" in r or "sample_ids" in r]' "$W/val/log.jsonl" "$REF" "$batches"
check "and prints it" grep -q "^val: loss 4.9559, perplexity 142.0" "$W/val.out"
"$GPT" "${D[@]}" -x 0 -j dev/testdata/tiny_tokens.bin -m 3 -s 0 -o "$W/val3" > /dev/null 2>&1
check "-x 0 -m 3: the mean of PyTorch's first 3 batch losses" py '
ref = json.load(open(sys.argv[2]))["val"]
v = [r for r in recs if "val_loss" in r][0]
assert abs(v["val_loss"] - sum(ref["batch_losses"][:3]) / 3) < 1e-5 and v["val_batches"] == 3, v' "$W/val3/log.jsonl" "$REF"
mkdir -p "$W/empty" && cd "$W/empty"
expect_error "-x 0 -v 1 without -j where the default validation split is missing" \
    "flag -v with -x 0 evaluates the validation loss, but data/bible/bible_val_*.bin matches no file: name the shards with -j PATTERN" \
    "$OLDPWD/$GPT" -e "$OLDPWD/dev/testdata/gpt2_tiny.bin" -x 0 -v 1 -s 0
cd "$OLDPWD"
expect_error "-x 0 -s 0 without an evaluation: nothing to do" \
    "flag -x 0 trains nothing and -s 0 samples nothing: nothing to do (-j PATTERN or -v N evaluates the validation loss, -h 1 HellaSwag)" \
    "$GPT" "${D[@]}" -x 0 -s 0

# HellaSwag in llm.c's eval file format
python3 dev/evalfile.py "$REF" "$W/hs.bin"
check "dev/evalfile.py's file: 1024 header bytes + the examples' uint16 fields (counted here)" python3 -c '
import json, os, sys
n = sum(6 + len(e["ctx"]) + sum(1 + len(x) for x in e["endings"]) for e in json.load(open(sys.argv[1]))["examples"])
assert os.path.getsize(sys.argv[2]) == 1024 + 2 * n' "$REF" "$W/hs.bin"
hs_check() { python3 - "$1" "$REF" <<'PYEOF'
import json, sys
ref = json.load(open(sys.argv[2]))["hellaswag"]
recs = [json.loads(l) for l in open(sys.argv[1] + "/hellaswag.jsonl")]
assert [r["example"] for r in recs] == list(range(ref["examples"])), "examples"
for r, ml, sl in zip(recs, ref["mean_losses"], ref["sum_losses"]):
    assert all(abs(a - b) < 1e-4 for a, b in zip(r["mean_losses"], ml)), (r, ml)
    assert all(abs(a - b) < 1e-4 for a, b in zip(r["sum_losses"], sl)), (r, sl)
assert [r["pred"] for r in recs] == ref["pred"] and [r["pred_norm"] for r in recs] == ref["pred_norm"]
log = [json.loads(l) for l in open(sys.argv[1] + "/log.jsonl")]
h = [r for r in log if "hellaswag_acc_norm" in r]
assert len(h) == 1 and h[0]["hellaswag_correct_norm"] == ref["correct_norm"] and h[0]["hellaswag_correct"] == ref["correct"], h
assert h[0]["hellaswag_acc_norm"] == ref["correct_norm"] / ref["examples"] and h[0]["hellaswag_examples"] == ref["examples"]
PYEOF
}
"$GPT" -e dev/testdata/gpt2_tiny.bin -x 0 -h 1 --hellaswag "$W/hs.bin" -t 24 -b 4 -s 0 -o "$W/hs4" > "$W/hs4.out" 2>&1
check "-x 0 -h 1, -b 4 -t 24 (5 rows of 16 per pass): PyTorch's losses (1e-4), predictions and counts" hs_check "$W/hs4"
"$GPT" -e dev/testdata/gpt2_tiny.bin -x 0 -h 1 --hellaswag "$W/hs.bin" -t 16 -b 1 -s 0 -o "$W/hs1" > /dev/null 2>&1
check "-x 0 -h 1, -b 1 -t 16 (one row per pass): the same" hs_check "$W/hs1"
read -r cn c n < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["hellaswag"]; print(r["correct_norm"], r["correct"], r["examples"])' "$REF")
check "and prints llm.c's acc_norm and hellaswag.py's acc" grep -q "^step 0: hellaswag acc_norm .* ($cn/$n), acc .* ($c/$n)$" "$W/hs4.out"
expect_error "-t shorter than the longest example" \
    "$W/hs.bin: its longest example (context + completion) needs 16 positions: run with -t 16 or more (-t is 8)" \
    "$GPT" -e dev/testdata/gpt2_tiny.bin -x 0 -h 1 --hellaswag "$W/hs.bin" -t 8 -s 0
# during training, at every -v and at the end, as llm.c does
"$GPT" "${D[@]}" -x 4 -v 2 -s 0 -n 0 -h 1 --hellaswag "$W/hs.bin" -o "$W/hstrain" > /dev/null 2>&1
check "training with -h 1 -v 2 -x 4: HellaSwag at steps 2 and 4" py '
assert [r["step"] for r in recs if "hellaswag_acc_norm" in r] == [2, 4]' "$W/hstrain/log.jsonl"
mkdir -p "$W/nohs" && cd "$W/nohs"
status=0
"$OLDPWD/$GPT" -e "$OLDPWD/dev/testdata/gpt2_tiny.bin" -i "$OLDPWD/dev/testdata/tiny_tokens.bin" -t 16 -b 4 -x 2 -s 0 -h 1 > "$W/nohs.out" 2>&1 || status=$?
cd "$OLDPWD"
check "training with -h 1 and no data/hellaswag/hellaswag_val.bin: a note, and the run goes on (as llm.c)" \
    bash -c "[ $status = 0 ] && grep -q '^note: -h 1: data/hellaswag/hellaswag_val.bin does not exist' '$W/nohs.out'"
expect_error "-x 0 -h 1 with a missing --hellaswag file" "cannot open $W/none.bin for reading: No such file or directory" \
    "$GPT" -e dev/testdata/gpt2_tiny.bin -x 0 -h 1 --hellaswag "$W/none.bin" -t 24

# bad eval files: each field checked, one line naming the file
python3 - "$W" "$REF" <<'PYEOF'
import json, struct, sys
sys.path.insert(0, "dev")
import evalfile
out, ref = sys.argv[1], json.load(open(sys.argv[2]))["examples"][:3]
def save(name, data): open(f"{out}/{name}", "wb").write(data)
evalfile.write(f"{out}/good.bin", ref)
good = open(f"{out}/good.bin", "rb").read()
save("magic.bin", struct.pack("<i", 20240520) + good[4:])
save("trunc.bin", good[:-2])
save("extra.bin", good + b"\0\0")
save("longest.bin", good[:12] + struct.pack("<i", 2) + good[16:])
ex = [dict(e) for e in ref]
ex[1] = dict(ex[1], label=4)
evalfile.write(f"{out}/label.bin", ex)
ex = [dict(e) for e in ref]
ex[2] = dict(ex[2], ctx=[200] + ex[2]["ctx"][1:])
evalfile.write(f"{out}/token.bin", ex)
# example 1's index field says 5
b = bytearray(good)
off = 1024 + evalfile.example_stream(0, ref[0]["label"], ref[0]["ctx"], ref[0]["endings"])[1]  # example 1's first byte
struct.pack_into("<H", b, off + 4, 5)
save("index.bin", bytes(b))
PYEOF
E=(-e dev/testdata/gpt2_tiny.bin -x 0 -h 1 -t 24 -s 0 --hellaswag)
expect_error "eval file: wrong magic" "$W/magic.bin: not an llm.c eval file such as hellaswag_val.bin (magic 20240520, expected 20240522)" "$GPT" "${E[@]}" "$W/magic.bin"
bytes2=$(python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["examples"][2]; print(2*(6+len(e["ctx"])+sum(1+len(x) for x in e["endings"])))' "$REF")
expect_error "eval file: truncated" "$W/trunc.bin: example 2 says it is $bytes2 bytes, but $((bytes2 - 2)) bytes are left in the file" "$GPT" "${E[@]}" "$W/trunc.bin"
expect_error "eval file: bytes after the last example" "$W/extra.bin: 2 bytes after the last of its 3 examples" "$GPT" "${E[@]}" "$W/extra.bin"
longest=$(python3 -c 'import json,sys; print(max(2*(6+len(e["ctx"])+sum(1+len(x) for x in e["endings"])) for e in json.load(open(sys.argv[1]))["examples"][:3]))' "$REF")
expect_error "eval file: a wrong longest-example field" "$W/longest.bin: the header says the longest example is 2 bytes, it is $longest" "$GPT" "${E[@]}" "$W/longest.bin"
expect_error "eval file: label beyond the completions" "$W/label.bin: example 1 has label 4 but 4 completions" "$GPT" "${E[@]}" "$W/label.bin"
expect_error "eval file: a token outside the model's vocabulary" "$W/token.bin: example 2: context token 0 is 200, outside the model's vocabulary of 113" "$GPT" "${E[@]}" "$W/token.bin"
expect_error "eval file: an example's index out of order" "$W/index.bin: example 1 has index 5" "$GPT" "${E[@]}" "$W/index.bin"

echo "test_llmc: $fails failed"
[ $fails = 0 ]
