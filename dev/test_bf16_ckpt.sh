#!/usr/bin/env bash
# llm.c's bf16 checkpoints (version 5: the header and tensor order of version
# 3, every parameter as 2 bytes of bf16), against an independent writer:
# dev/testdata/gpt2_tiny_bf16.bin is dev/testdata/gpt2_tiny.bin written by
# PyTorch (dev/gpt2_ref_bf16.py: tensor.to(torch.bfloat16), nearest-even).
#   1. --save-bf16 of gpt2_tiny.bin = PyTorch's file byte for byte (our rounding and layout)
#   2. reading it: after a training step with lr 0 the fp32 checkpoint holds
#      exactly the file's bf16 values widened, decoded here with struct
#   3. round trip: version 5 read, written again = the same bytes
#   4. refusals, one line each, nothing overwritten: an existing --save-bf16
#      file, a truncated version 5 file, version 4
# usage: dev/test_bf16_ckpt.sh BIN   (make run-test-bf16-ckpt; BIN = a train_gpt2 of either precision)
set -uo pipefail
BIN=${1:?usage: dev/test_bf16_ckpt.sh path/to/train_gpt2}
cd "$(dirname "$0")/.."
. dev/test_lib.sh # fails, ok, bad, check
REF=dev/testdata/gpt2_tiny_bf16.bin
FLAGS=(-i dev/testdata/tiny_tokens.bin -s 0 -b 2 -t 16)
export OMP_NUM_THREADS=1
W=$(mktemp -d /tmp/test_bf16_ckpt.XXXXXX)
trap 'rm -rf "$W"' EXIT
run() { "$BIN" "$@" "${FLAGS[@]}" > "$W/out.txt" 2>&1 || { cat "$W/out.txt"; return 1; }; }
# expect_error WHAT PATTERN CMD...: exit status 1, one line on stderr matching PATTERN
expect_error() {
    local what=$1 pattern=$2
    shift 2
    local status=0 err
    err=$(timeout 30 "$@" "${FLAGS[@]}" 2>&1 >/dev/null) || status=$?
    if [[ $status == 1 && $(printf '%s\n' "$err" | wc -l) == 1 && "$err" == $pattern ]]; then ok "$what: $err"
    else bad "$what: status $status, stderr: $err"; fi
}

# 1. our writer against PyTorch's
check "--save-bf16 runs (-x 0)" run -e dev/testdata/gpt2_tiny.bin -x 0 --save-bf16 "$W/ours.bin"
check "--save-bf16 of gpt2_tiny.bin = PyTorch's version 5 file byte for byte" cmp "$W/ours.bin" "$REF"

# 2. our reader: one step at lr 0 (AdamW's update and decay vanish) writes the loaded values as fp32
check "a version 5 file trains (-e, 1 step, lr 0)" run -e "$REF" -x 1 -l 0 -n 1 -o "$W/run"
check "... and says it widened bf16 parameters" grep -q "holds bf16 parameters (version 5), widened to fp32" "$W/out.txt"
check "the fp32 checkpoint holds the version 5 file's values exactly" python3 - "$REF" "$W/run/model_00000001.bin" <<'PY'
import struct, sys
bf, fp = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
hb, hf = struct.unpack("<256i", bf[:1024]), struct.unpack("<256i", fp[:1024])
assert hb[0] == hf[0] == 20240326 and hb[1] == 5 and hf[1] == 3, (hb[:2], hf[:2])
assert hb[2:8] == hf[2:8] and not any(hb[8:]) and not any(hf[8:]), "headers differ"
n = (len(bf) - 1024) // 2
assert len(fp) - 1024 == 4 * n, "sizes differ"
b = struct.unpack(f"<{n}H", bf[1024:])
f = struct.unpack(f"<{n}I", fp[1024:])
bad = [i for i in range(n) if f[i] != b[i] << 16]
assert not bad, f"{len(bad)} of {n} values differ, first at {bad[0]}"
PY

# 3. round trip
check "version 5 read and written again (-x 0 --save-bf16)" run -e "$REF" -x 0 --save-bf16 "$W/again.bin"
check "... is the same file byte for byte" cmp "$W/again.bin" "$REF"

# 4. refusals
cp "$W/ours.bin" "$W/keep.bin"
expect_error "--save-bf16 to an existing file" "error: flag --save-bf16: $W/ours.bin exists; it must name a new file*" \
    "$BIN" -e dev/testdata/gpt2_tiny.bin -x 0 --save-bf16 "$W/ours.bin"
check "... and the file is untouched" cmp "$W/ours.bin" "$W/keep.bin"
head -c -1 "$REF" > "$W/short.bin"
expect_error "a truncated version 5 file" "error: $W/short.bin has * bytes; its header describes a model of * bytes (truncated?)" \
    "$BIN" -e "$W/short.bin" -x 0
python3 -c 'import sys; d = bytearray(open(sys.argv[1], "rb").read()); d[4] = 4; open(sys.argv[2], "wb").write(d)' "$REF" "$W/v4.bin"
expect_error "version 4" "error: $W/v4.bin has version 4; this trainer reads versions 3 (fp32) and 5 (bf16)" "$BIN" -e "$W/v4.bin" -x 0

if ((fails)); then echo "test_bf16_ckpt: $fails FAILED"; exit 1; fi
echo "test_bf16_ckpt: all passed"
