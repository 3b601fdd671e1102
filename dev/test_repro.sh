#!/usr/bin/env bash
# The reproduction driver (repro/repro.py) on a two-run smoke experiment:
# it trains and records both runs, a second invocation trains nothing, a
# recorded command rerun at its commit gives the recorded metric bit for bit,
# and a record whose metric was altered is caught (the negative control).
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" out/test_repro' EXIT
export REPRO_RECORDS="$tmp/records" REPRO_OUT=out/test_repro
PY=/usr/bin/python3
fail() { echo "test_repro: FAIL: $*" >&2; exit 1; }

$PY repro/repro.py run smoke > "$tmp/first.txt" || { cat "$tmp/first.txt"; fail "the first run failed"; }
n=$(ls "$REPRO_RECORDS/smoke"/*.json | wc -l)
[ "$n" = 2 ] || fail "expected 2 records, found $n"
$PY - "$REPRO_RECORDS/smoke/adamw_smoke.json" <<'P' || fail "a record lacks a field"
import json, sys
r = json.load(open(sys.argv[1]))
for k in ("optimizer", "hp", "run", "steps_done", "images", "final", "wall_s", "peak_rss_bytes", "log", "command", "git_commit", "threads"):
    assert k in r and r[k] is not None, k
assert r["steps_done"] == 30 and r["images"] == 30 * 64, (r["steps_done"], r["images"])
assert 0.1 < r["final"]["test_acc"] <= 1.0, r["final"]
assert r["command"].startswith("make build/release/vit/train_vit_adamw && OMP_NUM_THREADS=1 "), r["command"]
P
$PY repro/repro.py run smoke > "$tmp/second.txt"
grep -q "2 of 2 runs recorded, 0 to train" "$tmp/second.txt" || { cat "$tmp/second.txt"; fail "the second invocation did not skip the recorded runs"; }
$PY repro/repro.py check "$REPRO_RECORDS/smoke/sgd_sai_smoke.json" > "$tmp/check.txt" \
    || { cat "$tmp/check.txt"; fail "rerunning a recorded command gave another metric"; }
grep -q "^same:" "$tmp/check.txt" || fail "check printed no verdict"
# negative control: a record whose accuracy was changed in the last bit must not pass
$PY - "$REPRO_RECORDS/smoke/sgd_sai_smoke.json" <<'P'
import json, struct, sys
p = sys.argv[1]; r = json.load(open(p))
a = r["final"]["test_acc"]
r["final"]["test_acc"] = struct.unpack("<d", struct.pack("<Q", struct.unpack("<Q", struct.pack("<d", a))[0] + 1))[0]
json.dump(r, open(p, "w"))
P
if $PY repro/repro.py check "$REPRO_RECORDS/smoke/sgd_sai_smoke.json" > "$tmp/check2.txt"; then
    cat "$tmp/check2.txt"; fail "check accepted an altered record"
fi
grep -q "^DIFFERENT:" "$tmp/check2.txt" || fail "check did not say DIFFERENT"
echo "test_repro: ok (2 runs recorded, skipped on rerun, reproduced bit for bit, an altered record caught)"
