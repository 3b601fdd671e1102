#!/bin/bash
# The executions each harness has run, summed over the runs recorded in
# fuzz/runs.tsv (fuzz/run.sh) that ended cleanly (exit 0): printed, and
# written as the table fuzz/counts.md. Runs that did not end cleanly are
# counted apart: a run stopped from outside (libFuzzer's 72, or a signal,
# >= 128) and one that found a crash, hang, leak or OOM (any other status:
# ASan's 1, libFuzzer's 70 and 77; its input goes to fuzz/regressions/ once fixed).
cd "$(dirname "$0")/.."
[ -f fuzz/runs.tsv ] || { echo "no fuzz runs recorded yet (fuzz/runs.tsv)"; exit 0; }
table=$(awk -F'\t' 'NR > 1 && $6 == 0 { n[$3] += $4; r[$3]++; s[$3] += $5; c[$3] = $2 }
    NR > 1 && $6 != 0 && ($6 == 72 || $6 >= 128) { stop[$3]++ }
    NR > 1 && $6 != 0 && $6 != 72 && $6 < 128 { bad[$3]++ }
    END { for (h in n) printf "| `%s` | %d | %d | %d | %d | %d | %s |\n", h, n[h], r[h], s[h], bad[h], stop[h], c[h] }' fuzz/runs.tsv | sort)
{
    echo "Executions of each libFuzzer harness under ASan + UBSan, summed over its clean runs in"
    echo "\`fuzz/runs.tsv\` (written by \`fuzz/counts.sh\`, \`make fuzz-counts\`)."
    echo
    echo "| harness | executions | clean runs | seconds | runs that found a crash | runs stopped | last commit |"
    echo "|---|---:|---:|---:|---:|---:|---|"
    echo "$table"
} > fuzz/counts.md
cat fuzz/counts.md
