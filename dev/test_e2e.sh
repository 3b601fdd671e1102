#!/usr/bin/env bash
# End to end against PyTorch: a few train_gpt2 steps with each optimizer, from
# the same checkpoint and data as dev/train_gpt2_ref.py's committed runs
# (dev/testdata/e2e_<optim>.json: the PyTorch trainer with optim_torch.py).
# The C run replays the reference's own command line; loss, lr and gradient
# norm of every step must agree (dev/compare_logs.py). Any difference in the
# optimizer's update shows in the loss of the following steps.
#   dev/test_e2e.sh BIN_DIR        (make run-test-e2e; needs build/.../train_gpt2_<optim>)
set -euo pipefail
BIN=${1:?usage: test_e2e.sh BIN_DIR}
TOL=${E2E_TOL:-1e-5}   # the runs agree to ~4e-7; float lr vs double gives 6e-8
WORK=$(mktemp -d /tmp/test_e2e.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# the flags of a reference run, minus its --optim (compiled in here) and its -o
ref_args() {
    python3 -c '
import json, sys
argv = json.load(open(sys.argv[1]))["argv"][1:]
out, i = [], 0
while i < len(argv):
    if argv[i] in ("--optim", "-o"): i += 2; continue
    out.append(argv[i]); i += 1
print(" ".join(out))' "$1"
}
for o in adamw sgdm sgd_sai sinkgd slimadam; do
    ref=dev/testdata/e2e_$o.json
    read -r -a args < <(ref_args "$ref")
    # the reference reads its batches in order (llm.c shuffles them: --shuffle 1, our default)
    if ! "$BIN/train_gpt2_$o" "${args[@]}" --shuffle 0 -s -1 -o "$WORK/$o" > "$WORK/$o.out" 2>&1; then
        cat "$WORK/$o.out"; echo "test_e2e: train_gpt2_$o failed"; exit 1
    fi
    if ! python3 dev/compare_logs.py "$ref" "$WORK/$o/log.jsonl" --tol "$TOL" > "$WORK/$o.cmp"; then
        cat "$WORK/$o.cmp"; echo "test_e2e: $o differs from the PyTorch trainer"; exit 1
    fi
    echo "test_e2e: $o: $(grep worst "$WORK/$o.cmp")"
done
# the comparison must be able to fail: SinkGD with 4 Sinkhorn iterations
# instead of 5 changes the updates by little, and must be caught
read -r -a args < <(ref_args dev/testdata/e2e_sinkgd.json)
"$BIN/train_gpt2_sinkgd" "${args[@]}" --shuffle 0 --sinkgd-iters 4 -s -1 -o "$WORK/control" > "$WORK/control.out" 2>&1
if python3 dev/compare_logs.py dev/testdata/e2e_sinkgd.json "$WORK/control/log.jsonl" --tol "$TOL" > "$WORK/control.cmp"; then
    cat "$WORK/control.cmp"; echo "test_e2e: a run with 4 Sinkhorn iterations passed as 5: the check cannot fail"; exit 1
fi
echo "test_e2e: control: SinkGD with 4 iterations instead of 5 is caught ($(grep worst "$WORK/control.cmp"))"
echo "test_e2e: all five optimizers match the PyTorch trainer step by step"
