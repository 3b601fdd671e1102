#!/usr/bin/env bash
# Too little memory must end in one clear line and exit 1, never a silent OOM
# kill (issue 15, item 4). Each run is put in a memory cgroup of its own
# (v2: /sys/fs/cgroup/<name> when the root delegates the memory controller;
# v1: a child of our own memory cgroup), which the kernel enforces by killing:
#   1. GPT-2 124M at B 4 x T 64 (2.1 GiB planned) in 400 MiB: refused at
#      start-up by the memory plan, one line
#   2. the same with --force-memory 1: past the plan (a warning), then the
#      first big buffer that cannot be committed fails with one line naming
#      it ("out of memory: GPT-2 parameters ..."), exit 1 and not 137
#   3. the same with --memory-limit 3G (the plan is told 3 GiB, so it passes):
#      caught in the same way when the buffers are committed
#   4. the ViT (fmnist-tiny) in 40 MiB with --force-memory 1: the same
# Needs root and a writable cgroup hierarchy; without them each case is
# skipped with a line saying so (the test does not fail).
# usage: dev/test_oom.sh BUILD_DIR   (make run-test-oom)
set -uo pipefail
BUILD=${1:?usage: dev/test_oom.sh BUILD_DIR}
cd "$(dirname "$0")/.."
. dev/test_lib.sh # fails, ok, bad, check
export OMP_NUM_THREADS=1
WORK=$(mktemp -d /tmp/test_oom.XXXXXX)
CG=""
cleanup() { [ -n "$CG" ] && rmdir "$CG" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# a new memory cgroup of LIMIT bytes in $CG, or return 1
make_cgroup() {
    local limit=$1 name="memopt_test_oom_$$"
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then # v2 alone
        grep -qw memory /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || return 1
        CG=/sys/fs/cgroup/$name
        mkdir "$CG" 2>/dev/null || { CG=""; return 1; }
        echo "$limit" > "$CG/memory.max" && echo 0 > "$CG/memory.swap.max" 2>/dev/null
    else # v1: beside our own cgroup's processes, below them
        local ours
        ours=$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)
        [ -n "$ours" ] && [ -d "/sys/fs/cgroup/memory$ours" ] || return 1
        CG=/sys/fs/cgroup/memory${ours%/}/$name
        mkdir "$CG" 2>/dev/null || { CG=""; return 1; }
        echo "$limit" > "$CG/memory.limit_in_bytes" &&
            { [ ! -f "$CG/memory.memsw.limit_in_bytes" ] || echo "$limit" > "$CG/memory.memsw.limit_in_bytes"; }
    fi || { rmdir "$CG"; CG=""; return 1; }
}

# NAME LIMIT EXPECT_LINE_PREFIX COMMAND...: run COMMAND in a new cgroup of LIMIT
# bytes; it must exit 1 with its last stderr line starting with the prefix and
# no other error line
in_cgroup() {
    local name=$1 limit=$2 prefix=$3; shift 3
    if ! make_cgroup "$limit"; then
        echo "skip $name: cannot create a memory cgroup here (needs root and cgroup v1 or a v2 root delegating memory)"
        return
    fi
    local status=0
    bash -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG" "$@" >"$WORK/out" 2>"$WORK/err" || status=$?
    rmdir "$CG" 2>/dev/null
    CG=""
    local last errors
    last=$(tail -1 "$WORK/err")
    errors=$(grep -c '^error: ' "$WORK/err")
    if [ "$status" = 1 ] && [ "$errors" = 1 ] && [[ "$last" == "$prefix"* ]] && ! grep -qv '^\(error\|warning\): ' "$WORK/err"; then
        ok "$name: exit 1, ${last:0:150}..."
    else
        bad "$name: exit $status (137 = killed), stderr: $(head -c 600 "$WORK/err")"
    fi
}

G="$BUILD/bin/train_gpt2_adamw -e d12 -b 4 -t 64 -x 2 -s -1 -i dev/testdata/tiny_tokens.bin"
M400=$((400 << 20))
in_cgroup "d12 B 4 x T 64 in 400 MiB" $M400 "error: this run needs " $G
in_cgroup "d12 B 4 x T 64 in 400 MiB, --force-memory 1" $M400 "error: out of memory: GPT-2 " $G --force-memory 1
in_cgroup "d12 B 4 x T 64 in 400 MiB, --memory-limit 3G" $M400 "error: out of memory: GPT-2 " $G --memory-limit 3G

# the ViT (the default fmnist-tiny on Fashion-MNIST, 106 MiB planned): its
# images are the first big buffer that does not fit
V="$BUILD/vit/train_vit_adamw -x 2"
in_cgroup "ViT fmnist-tiny in 40 MiB, --force-memory 1" $((40 << 20)) "error: out of memory: image pixels " $V --force-memory 1

[ "$fails" = 0 ] && echo "test_oom: all passed" || { echo "test_oom: $fails failed"; exit 1; }
