#!/usr/bin/env bash
# train_vit end to end, on tiny generated image shards (12x12 RGB, 3 classes):
#  1. exact resume: for each trainer given (one per optimizer), a run of N
#     steps killed with SIGKILL part-way and resumed with -y 1 ends with a
#     model and optimizer state bit-identical (cmp) to an uninterrupted run;
#     likewise after Ctrl-C (SIGINT). The runs use augmentation, gradient
#     accumulation, several epochs and evaluation, so the loader's position
#     and RNG must be restored exactly.
#  2. bad input: missing, truncated or foreign checkpoints, image sizes that
#     do not fit the patch or the model, mismatched shards and nonsense flags
#     each end with one line "error: ..." and a non-zero exit status.
#  3. --snr-every (AdamW) writes SlimAdam rules for every ViT block;
#     --snr-every and --gsnr-every write one line per measurement to
#     snr.jsonl and gsnr.jsonl and leave the training bit-identical.
#  4. timm's augmentation at a different stored size (12x12 images, an 8x8
#     model): RandomResizedCrop, flips, Mixup/CutMix and label smoothing from
#     a streamed version-2 shard, killed in the middle of an epoch and resumed,
#     ends bit-identical; the same run from version-1 shards read whole ends
#     bit-identical to it (streamed = in memory, Python's version-2 writer =
#     the format); top-5 is logged; a corrupt image stops the run when read;
#     the timm preset names and their aliases; the new flags' bad values.
#
#   bash dev/test_vit_resume.sh path/to/train_vit_adamw path/to/train_vit_sgd_sai
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 TRAIN_VIT_BINARY..." >&2; exit 2; }
PY=/usr/bin/python3
tmp=$(mktemp -d /tmp/test_vit_resume.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
ok() { printf 'ok   %s\n' "$1"; }
bad() { printf 'FAIL %s\n' "$1"; failures=$((failures + 1)); }

# Shards in the format of data/images.h, written with Python's standard
# library only: class-dependent stripes plus noise, so the model has something
# to learn. train 96 images, test 40 (a partial last batch), and a grey and a
# 10x10 set for the mismatch errors.
"$PY" - "$tmp" <<'EOF'
import math, random, struct, sys, zlib
out = sys.argv[1]
def shard(path, count, H, W, ch, K, seed, version=1, corrupt=False):
    rng = random.Random(seed)
    labels = [i % K for i in range(count)]
    rng.shuffle(labels)
    images = []
    for k in labels:
        img = bytearray()
        for c in range(ch):
            for y in range(H):
                for x in range(W):
                    stripe = 150 if (x * (k + 1) + y * (2 - k % 3) + c) % (k + 3) == 0 else 0
                    img.append(min(255, stripe + rng.randrange(90)))
        images.append(bytes(img))
    names = b"".join(f"class{k}".encode().ljust(64, b"\0") for k in range(K))
    lab = struct.pack(f"<{count}i", *labels)
    if version == 1:
        body = names + lab + b"".join(images)
        header = b"IMGSHARD" + struct.pack("<7I", 1, count, H, W, ch, K, zlib.crc32(body))
        data = header.ljust(64, b"\0") + body
    else:  # version 2 (data/images.h): a CRC per image, the channel statistics in the header
        crcs = b"".join(struct.pack("<I", zlib.crc32(img)) for img in images)
        n, plane = count * H * W, H * W
        mean, std = [0.0] * 3, [0.0] * 3
        for c in range(ch):
            vals = [v for img in images for v in img[c * plane:(c + 1) * plane]]
            m = sum(vals) / n
            mean[c] = m / 255.0
            std[c] = math.sqrt(max(sum(v * v for v in vals) / n - m * m, 0.0)) / 255.0
        head = b"IMGSHARD" + struct.pack("<6I", 2, count, H, W, ch, K)
        rest = struct.pack("<6f", *mean, *std) + bytes(4)
        crc = zlib.crc32(head + rest, zlib.crc32(names + lab + crcs))
        pixels = bytearray(b"".join(images))
        if corrupt:
            pixels[len(pixels) // 2] ^= 0x40
        data = head + struct.pack("<I", crc) + rest + names + lab + crcs + bytes(pixels)
    with open(f"{out}/{path}", "wb") as f:
        f.write(data)
shard("train.bin", 96, 12, 12, 3, 3, 1)
shard("test.bin", 40, 12, 12, 3, 3, 2)
shard("grey.bin", 20, 12, 12, 1, 3, 3)
shard("ten.bin", 20, 10, 10, 3, 3, 4)
shard("train_v2.bin", 96, 12, 12, 3, 3, 1, version=2)  # train.bin's images in format version 2
shard("test_v2.bin", 40, 12, 12, 3, 3, 2, version=2)
shard("corrupt_v2.bin", 96, 12, 12, 3, 3, 1, version=2, corrupt=True)
EOF

DATA=(--train-shard "$tmp/train.bin" --test-shard "$tmp/test.bin" -b 8)
MODEL=(-e fmnist-tiny --image-size 12 --image-channels 3 --patch 4 --embed-dim 16 --layers 2 --heads 2)
N=120
RUN=("${MODEL[@]}" "${DATA[@]}" -d 16 --crop-pad 2 --flip 1 -x $N -u 5 -v 40 -n 5 -p 1000)
lr_for() { case "$1" in *sgd_sai*) echo 1e-3 ;; *) echo 3e-3 ;; esac; }

# wait until checkpoint `step` of dir is complete, or the process is gone
wait_for_state() {
  local pid=$1 dir=$2 step=$3
  while kill -0 "$pid" 2>/dev/null; do
    [ -f "$dir/state_$(printf %08d "$step").json" ] && return 0
    sleep 0.005
  done
  return 1
}

# run, interrupt with signal sig after checkpoint 10, resume, compare with ref
interrupted_run() {
  local bin=$1 sig=$2 ref=$3 dir=$4 name=$5
  local lr
  lr=$(lr_for "$bin")
  "$bin" "${RUN[@]}" -l "$lr" -o "$dir" >"$dir.log1" 2>&1 &
  local pid=$!
  if ! wait_for_state "$pid" "$dir" 10; then
    wait "$pid" || true
    bad "$name: the run ended before it could be interrupted (see below)"; tail -3 "$dir.log1"; return
  fi
  kill -"$sig" "$pid"
  local status=0
  { wait "$pid"; } 2>/dev/null || status=$?
  if [ "$sig" = INT ] && { [ $status -ne 0 ] || ! grep -q "^interrupted at step" "$dir.log1"; }; then
    bad "$name: Ctrl-C did not stop the run cleanly (status $status)"; tail -3 "$dir.log1"; return
  fi
  if [ -f "$dir/model_$(printf %08d $N).bin" ]; then
    bad "$name: the run finished before the signal arrived"; return
  fi
  "$bin" "${RUN[@]}" -l "$lr" -o "$dir" -y 1 >"$dir.log2" 2>&1 || { bad "$name: resume failed"; tail -3 "$dir.log2"; return; }
  local from
  from=$(sed -n 's/^resume: continuing from step \([0-9]*\).*/\1/p' "$dir.log2")
  if [ -z "$from" ] || [ "$from" -ge $N ]; then bad "$name: did not resume part-way (from '${from}')"; return; fi
  local last
  last=$(printf %08d $N)
  if cmp -s "$ref/model_$last.bin" "$dir/model_$last.bin" && cmp -s "$ref/optim_$last.bin" "$dir/optim_$last.bin"; then
    ok "$name: killed after step >= 10, resumed from step $from: model and optimizer state bit-identical"
  else
    bad "$name: resumed from step $from, but the final model or optimizer state differs"
  fi
}

for bin in "$@"; do
  name=$(basename "$bin")
  lr=$(lr_for "$bin")
  mkdir -p "$tmp/$name"
  ref="$tmp/$name/ref"
  "$bin" "${RUN[@]}" -l "$lr" -o "$ref" >"$ref.log" 2>&1 || { bad "$name: the reference run failed"; tail -5 "$ref.log"; continue; }
  acc=$(sed -n 's/^step [0-9]*: test_acc \([0-9.]*\)$/\1/p' "$ref.log" | tail -1)
  [ -n "$acc" ] && grep -q "^confusion matrix" "$ref.log" && ok "$name: $N steps, test accuracy $acc, confusion matrix printed" \
    || bad "$name: no final accuracy or confusion matrix"
  interrupted_run "$bin" KILL "$ref" "$tmp/$name/kill" "$name SIGKILL"
  interrupted_run "$bin" INT "$ref" "$tmp/$name/int" "$name Ctrl-C"
done

# ----------------------------------------------------------------------------
# bad input: one line on stderr starting with "error: " and containing the
# expected words, and a non-zero exit status
bin=$1
expect_error() {
  local what=$1 pattern=$2
  shift 2
  local err status=0
  err=$("$bin" "$@" 2>&1 >/dev/null) || status=$?
  local lines
  lines=$(printf '%s\n' "$err" | grep -c . || true)
  if [ $status -ne 0 ] && [ "$lines" -eq 1 ] && [[ "$err" == error:* ]] && grep -q -- "$pattern" <<<"$err"; then
    ok "$what: $err"
  else
    bad "$what: status $status, stderr: $err"
  fi
}
SMALL=("${MODEL[@]}" "${DATA[@]}" -x 2)
ckpt="$tmp/$(basename "$bin")/ref/model_$(printf %08d $N).bin"
head -c 3000 "$ckpt" >"$tmp/truncated.bin"
cp "$ckpt" "$tmp/version2.bin"
printf '\002' | dd of="$tmp/version2.bin" bs=1 seek=4 conv=notrunc status=none
expect_error "missing checkpoint" "neither a checkpoint file nor a preset" -e "$tmp/nope.bin" "${DATA[@]}"
expect_error "truncated checkpoint" "truncated" -e "$tmp/truncated.bin" "${DATA[@]}"
expect_error "foreign checkpoint" "is not a ViT checkpoint" -e dev/testdata/gpt2_tiny.bin "${DATA[@]}"
expect_error "wrong version" "has version 2" -e "$tmp/version2.bin" "${DATA[@]}"
expect_error "model flags with a checkpoint" "describe a new model" -e "$ckpt" --layers 3 "${DATA[@]}"
expect_error "checkpoint vs data" "the model takes 9x6x2" -e dev/testdata/vit_tiny.bin "${DATA[@]}"
expect_error "patch does not divide the image" "not divisible by the patch size 5" "${SMALL[@]}" --patch 5
expect_error "heads do not divide C" "not divisible by heads 3" "${SMALL[@]}" --heads 3
expect_error "shard vs model" "holds 12x12x3 images; the model takes 28x28x1" -e fmnist-tiny "${DATA[@]}"
expect_error "test shard channels" "grey.bin holds 12x12x1" "${MODEL[@]}" -b 8 --train-shard "$tmp/train.bin" --test-shard "$tmp/grey.bin"
expect_error "test shard size" "ten.bin holds 10x10x3" "${MODEL[@]}" -b 8 --train-shard "$tmp/train.bin" --test-shard "$tmp/ten.bin"
expect_error "missing shard" "nope.bin" "${MODEL[@]}" --train-shard "$tmp/nope.bin"
expect_error "unknown flag" "unknown flag --frobnicate" "${SMALL[@]}" --frobnicate 1
expect_error "a GPT-2 flag" "flag -t is for train_gpt2" "${SMALL[@]}" -t 64
expect_error "--flip 2" "flag --flip takes 0 or 1" "${SMALL[@]}" --flip 2
expect_error "--epochs -1" "flag --epochs must be a positive number" "${SMALL[@]}" --epochs -1
expect_error "-x with --epochs" "give one" "${SMALL[@]}" --epochs 1
expect_error "--mean count" "expected 1 or 3" "${SMALL[@]}" --mean 0.5,0.5
expect_error "--std 0" "positive" "${SMALL[@]}" --std 0
expect_error "-b 0" "flag -b must be an integer in \[1, 1048576\], got '0'" "${SMALL[@]}" -b 0
expect_error "batch larger than the data" "larger than the training set" "${SMALL[@]}" -b 200
expect_error "crop padding too large" "crop padding 13 is out of range" "${SMALL[@]}" --crop-pad 13
expect_error "-d not a multiple" "not a multiple of the micro-batch" "${SMALL[@]}" -d 12
expect_error "--patch 0" "flag --patch must be an integer in \[1, 65536\], got '0'" "${SMALL[@]}" --patch 0
expect_error "resume with other -b" "resume with the same ones" "${RUN[@]}" -b 4 -o "$tmp/$(basename "$bin")/ref" -y 1

# --snr-every with AdamW: SlimAdam rules for the ViT's blocks (the SNR maths is
# tested in test_optim; here: every block gets a rule and the file is JSON);
# with --gsnr-every too, the per-measurement files (their values are tested
# in test_run, test_optim and dev/test_run.sh) for the ViT's blocks
if [[ "$(basename "$bin")" == *adamw* ]]; then
  if "$bin" "${SMALL[@]}" -x 6 --snr-every 2 --gsnr-every 4 -o "$tmp/snr" >"$tmp/snr.log" 2>&1 &&
     "$PY" - "$tmp/snr" <<'EOF'
import json, sys
d = sys.argv[1]
rules = json.load(open(d + "/slimadam_rules.json"))
need = {"patch.w", "cls", "pos", "h0.attn.qkvw.q", "h0.attn.qkvw.k", "h0.attn.qkvw.v", "h0.mlp.fcw", "head.w"}
assert need <= set(rules), sorted(need - set(rules))
assert rules["h0.ln1w"] is None and all(v is None or v in ([0], [1], [0, 1]) for v in rules.values())
snr = [json.loads(l) for l in open(d + "/snr.jsonl")]
assert list(snr[0]["blocks"]) == list(rules) and [r["step"] for r in snr[1:]] == [2, 4, 6]
assert all(list(r["snr"]) == list(rules) and all(len(v) == 3 for v in r["snr"].values()) for r in snr[1:])
g = [json.loads(l) for l in open(d + "/gsnr.jsonl")]
blocks = g[0]["blocks"]
assert blocks["h0.attn.qkvw"] == {"role": "attn_qkv", "shape": [48, 16], "n": 768} and "h0.attn.qkvw.q" not in blocks
assert [r["step"] for r in g[1:]] == [1, 4] and all(list(r["gsnr"]) == list(blocks) for r in g[1:])
assert all(v > 0 for r in g[1:] for v in r["gsnr"].values())
EOF
  then ok "--snr-every, --gsnr-every: rules for every ViT block, snr.jsonl at steps 2, 4, 6 and gsnr.jsonl at 1, 4 (fused qkv whole)"
  else bad "--snr-every, --gsnr-every on the ViT"; tail -3 "$tmp/snr.log"; fi
  "$bin" "${SMALL[@]}" -x 6 -o "$tmp/plain" >/dev/null 2>&1
  if cmp -s "$tmp/snr/model_00000006.bin" "$tmp/plain/model_00000006.bin" &&
     cmp -s "$tmp/snr/optim_00000006.bin" "$tmp/plain/optim_00000006.bin"; then
    ok "--snr-every, --gsnr-every: the model and optimizer state are bit-identical to the run without them"
  else bad "--snr-every, --gsnr-every changed the ViT's training"; fi
fi

# ----------------------------------------------------------------------------
# 4. timm's augmentation, streamed shards, mid-epoch resume
if [[ "$(basename "$bin")" == *adamw* ]]; then
  AUG=(-e fmnist-tiny --image-size 8 --image-channels 3 --patch 4 --embed-dim 16 --layers 2 --heads 2 -b 8 -d 16
       --rrc 1 --flip 1 --mixup 0.8 --cutmix 1.0 --smoothing 0.1 -x 40 -u 5 -v 20 -n 5 -p 1000 -l 3e-3)
  V2=(--train-shard "$tmp/train_v2.bin" --test-shard "$tmp/test_v2.bin")
  aug="$tmp/aug"
  mkdir -p "$aug"
  if "$bin" "${AUG[@]}" "${V2[@]}" -o "$aug/ref" >"$aug/ref.log" 2>&1; then
    acc=$(sed -n 's/^step 40: test_acc \([0-9.]*\)$/\1/p' "$aug/ref.log")
    acc5=$(sed -n 's/^step 40: test_acc5 \([0-9.]*\)$/\1/p' "$aug/ref.log")
    if [ -n "$acc" ] && [ -n "$acc5" ] && grep -q '"test_acc5"' "$aug/ref/log.jsonl" &&
       grep -q "streamed" "$aug/ref.log" && grep -q "RandomResizedCrop 1" "$aug/ref.log" &&
       awk -v a="$acc" -v b="$acc5" 'BEGIN { exit !(b >= a && b <= 1) }'; then
      ok "augmented run (8x8 model from 12x12 streamed images): top-1 $acc, top-5 $acc5 logged"
    else bad "augmented run: no top-1/top-5 line or log record"; tail -3 "$aug/ref.log"; fi
    # killed after the checkpoint of step 10 (epoch 1, 64 of 96 images), resumed
    "$bin" "${AUG[@]}" "${V2[@]}" -o "$aug/kill" >"$aug/kill.log1" 2>&1 &
    pid=$!
    if wait_for_state "$pid" "$aug/kill" 10; then
      kill -KILL "$pid"; { wait "$pid"; } 2>/dev/null || true
      pos=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["train_loader"]["pos"])' "$aug/kill/state_00000010.json")
      if "$bin" "${AUG[@]}" "${V2[@]}" -o "$aug/kill" -y 1 >"$aug/kill.log2" 2>&1 &&
         [ "$pos" -gt 0 ] && [ "$pos" -lt 96 ] && ! [ -f "$aug/kill/model_00000040.bin.tmp" ] &&
         cmp -s "$aug/ref/model_00000040.bin" "$aug/kill/model_00000040.bin" &&
         cmp -s "$aug/ref/optim_00000040.bin" "$aug/kill/optim_00000040.bin"; then
        ok "augmented run killed mid-epoch (a checkpoint at image $pos of 96) and resumed: bit-identical"
      else bad "augmented run resumed mid-epoch (checkpoint at image $pos) differs or failed"; tail -3 "$aug/kill.log2"; fi
    else
      bad "augmented run ended before it could be killed"
    fi
    # version 1, read whole: the same bits
    if "$bin" "${AUG[@]}" --train-shard "$tmp/train.bin" --test-shard "$tmp/test.bin" --shard-in-memory 1 \
         -o "$aug/mem" >"$aug/mem.log" 2>&1 && cmp -s "$aug/ref/model_00000040.bin" "$aug/mem/model_00000040.bin"; then
      ok "the same run from version-1 shards read whole: bit-identical to the streamed version-2 run"
    else bad "version-1 shards in memory and version-2 shards streamed trained differently"; tail -3 "$aug/mem.log"; fi
  else
    bad "augmented run failed"; tail -5 "$aug/ref.log"
  fi
  AUGX=("${AUG[@]}" -x 14)
  expect_error "a corrupt image in a streamed shard" "corrupt_v2.bin: image .* is corrupt (CRC-32 mismatch)" \
    "${AUGX[@]}" --train-shard "$tmp/corrupt_v2.bin"
  expect_error "--rrc-scale" "flag --rrc-scale: expected 0 < LO <= HI <= 1" "${SMALL[@]}" --rrc 1 --rrc-scale 0.5,0.2
  expect_error "--rrc-ratio" "flag --rrc-ratio: expected LO,HI" "${SMALL[@]}" --rrc 1 --rrc-ratio 0.75
  expect_error "--smoothing 1" "flag --smoothing must be in \[0, 1)" "${SMALL[@]}" --smoothing 1
  expect_error "--mixup -1" "flag --mixup must be in \[0, 1e+06\]" "${SMALL[@]}" --mixup -1
  expect_error "Mixup with an odd micro-batch" "must be even" "${SMALL[@]}" --mixup 0.8 -b 7
  expect_error "--rrc with --crop-pad" "give one" "${SMALL[@]}" --rrc 1 --crop-pad 2
  expect_error "--shard-in-memory without shards" "flag --shard-in-memory is for --train-shard" -e fmnist-tiny -x 1 --shard-in-memory 1
  expect_error "images smaller than the model" "holds 12x12x3 images; the model takes 16x16x3" \
    "${MODEL[@]}" "${DATA[@]}" -x 2 --image-size 16
  # timm's preset names and the short aliases
  for name in vit_small_patch16_224 vit-s16; do
    if "$bin" -e "$name" --image-size 12 --patch 4 "${DATA[@]}" -x 1 --memory-plan-only 1 >"$tmp/preset.log" 2>&1 &&
       grep -q "^model: new ViT vit_small_patch16_224 (ViT-S/16, with flags)" "$tmp/preset.log" &&
       grep -q "L 12, NH 6, C 384" "$tmp/preset.log"; then
      ok "-e $name: timm's vit_small_patch16_224 (C 384, 12 layers, 6 heads)"
    else bad "-e $name"; tail -3 "$tmp/preset.log"; fi
  done
fi

if [ $failures -ne 0 ]; then echo "test_vit_resume: $failures FAILED"; exit 1; fi
echo "test_vit_resume: all passed"
