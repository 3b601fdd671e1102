"""The markdown tables of make bench-optim, bench-matmul and bench-tokenizer,
read from their text outputs in dev/results/ (dev/bench/readme_table.py then
puts each into the README between its markers, under the output's first two
lines: make bench-* puts bench_fma's line naming the CPU first):

    python3 dev/bench/bench_md.py optim|matmul|tokenizer dev/results/bench_X.txt > dev/results/bench_X.md
"""
import re
import sys

NAMES = {"adamw": "AdamW", "sgdm": "SGDM", "sgd_sai": "SGD-SaI", "sinkgd": "SinkGD", "slimadam": "SlimAdam"}


def optim(lines):
    # "adamw   37.41   1.00x   1276.1   995518464   100.0%"
    rows = [l.split() for l in lines if l.split() and l.split()[0] in NAMES]
    out = ["| optimizer | ms/step | vs AdamW | first step | state bytes | vs AdamW |",
           "|---|---:|---:|---:|---:|---:|"]
    for o, ms, ratio, first, state, pct in rows:
        bold = f"**{ratio}**" if o == "sgd_sai" else ratio
        out.append(f"| {NAMES[o]} | {float(ms):.1f} | {bold} | {float(first):.0f} ms | {int(state):,} | {pct} |")
    return out


def matmul(lines):
    out = [f"All linear layers of one GPT-2 124M step (forward and both backward products):", "",
           "| tokens per step | ours | OpenBLAS AVX-512 | OpenBLAS AVX2 | ours / AVX-512 | ours / AVX2 |",
           "|---|---:|---:|---:|---:|---:|"]
    for l in lines:
        m = re.match(r"\s*BT=(\d+)\s+ours\s+([\d.]+) ms\s+OB-env\s+([\d.]+) ms\s+OB-native\s+([\d.]+) ms", l)
        if m:
            bt, ours, env, nat = m.group(1), *map(float, m.groups()[1:])
            out.append(f"| {bt} | {ours:.0f} ms | {nat:.0f} ms | {env:.0f} ms | **{ours / nat:.2f}x** | {ours / env:.2f}x |")
    # per shape: the range of our GFLOP/s at each BT, and GB/s for one token
    per = {}
    for l in lines:
        m = re.match(r"BT=(\d+) .*\|\s+([\d.]+)\s+([\d.]+)\s+([\d.]+) \|\s+([\d.]+)\s+([\d.]+)$", l)
        if m:
            per.setdefault(m.group(1), []).append((float(m.group(2)), float(m.group(6))))
    out.append("")
    for bt, v in per.items():
        unit = "GB/s (bound by memory)" if bt == "1" else "GFLOP/s"
        lo, hi = min(x for x, _ in v), max(x for x, _ in v)
        rlo, rhi = min(r for _, r in v), max(r for _, r in v)
        out.append(f"Per shape at {bt} token{'s' if bt != '1' else ''} per step: {lo:.0f}-{hi:.0f} {unit}, "
                   f"{1 / rhi:.2f}-{1 / rlo:.2f}x OpenBLAS AVX-512's time.  ")
    return out


def tokenizer(lines):
    ours = next(l for l in lines if l.startswith("bible:"))
    js = next(l for l in lines if l.startswith("js "))
    cold, warm = map(float, re.search(r"([\d.]+) MB/s cold cache, ([\d.]+) MB/s warm", ours).groups())
    jcold, jwarm = map(float, re.search(r"first \(cold cache\) ([\d.]+) MB/s, best of 3 \(warm\) ([\d.]+) MB/s", js).groups())
    size = re.search(r"([\d.]+ MB), (\d+) tokens", ours)
    return [f"The Bible ({size.group(1)}, {int(size.group(2)):,} tokens), one thread:", "",
            "| | ours (C) | gpt-3-encoder (JavaScript, node) | ours / it |",
            "|---|---:|---:|---:|",
            f"| cold cache | {cold} MB/s | {jcold} MB/s | **{cold / jcold:.0f}x** faster |",
            f"| warm, best of 3 | {warm} MB/s | {jwarm} MB/s | **{warm / jwarm:.0f}x** faster |"]


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("optim", "matmul", "tokenizer"):
        sys.exit(__doc__)
    lines = open(sys.argv[2]).read().splitlines()
    print("\n".join({"optim": optim, "matmul": matmul, "tokenizer": tokenizer}[sys.argv[1]](lines)))
