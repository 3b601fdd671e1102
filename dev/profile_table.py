"""The table `--profile 1` prints at the end of a run, read back: one reader
for the test (dev/test_fused.sh) and the benchmarks (dev/bench/bench_xl.sh,
dev/bench/bench_xl_layer.sh). The table (run/train.c, common/profile.c):

    profile: N steps after the first, per step:
      phase                                CPU ms  CPU %     wall ms  GFLOP/CPU s
      GEMM forward                       7036.631  24.5%    6229.310        143.9
      ...
      total                             28672.491 100.0%   25369.177
"""
import re

ROW = re.compile(r"  (.+?)\s+([\d.]+)\s+([\d.]+)%\s+([\d.]+)(?:\s+([\d.]+))?$")


def read_profile(lines):
    """The heading line ('profile: ...') and the rows in order, phase name ->
    {cpu_ms, cpu_pct, wall_ms, gflops (None where not printed)}, 'total' last."""
    start = next(i for i, line in enumerate(lines) if line.startswith("profile:"))
    rows = {}
    for line in lines[start + 2:]:
        m = ROW.match(line)
        if not m:
            break
        rows[m.group(1)] = {"cpu_ms": float(m.group(2)), "cpu_pct": float(m.group(3)),
                            "wall_ms": float(m.group(4)), "gflops": float(m.group(5)) if m.group(5) else None}
    return lines[start], rows
