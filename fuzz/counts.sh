#!/bin/bash
# The executions each harness has run, summed over the runs of fuzz/runs.tsv
# that ended cleanly (exit 0), with the number of such runs and the last commit.
cd "$(dirname "$0")/.."
awk -F'\t' 'NR > 1 && $6 == 0 { n[$3] += $4; r[$3]++; s[$3] += $5; c[$3] = $2 }
            END { printf "%-22s %14s %6s %8s  %s\n", "harness", "executions", "runs", "seconds", "last commit";
                  for (h in n) printf "%-22s %14d %6d %8d  %s\n", h, n[h], r[h], s[h], c[h] }' fuzz/runs.tsv |
    (read -r header; echo "$header"; sort)
