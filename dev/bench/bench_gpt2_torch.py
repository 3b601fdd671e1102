"""The PyTorch peer of the training-step benchmark: the same GPT-2 (dev/gpt2_torch.py,
llm.c layout, tied LM head), the same data order and AdamW with nanoGPT's
parameter groups, fp32, on the CPU.

    /usr/bin/python3 dev/bench/bench_gpt2_torch.py --depth 12 -b 4 -t 64 --steps 12 [--threads 2]

Prints one line: "result: <median ms of the steps after the first 2> <median CPU ms per thread> <peak RSS bytes>"
(CPU time is the process's, divided by --threads). --steps-out FILE also appends "<ms> <CPU ms per thread>"
for each of those steps to FILE (bench_train.sh pools the steps of several runs). --which-blas prints the
BLAS library PyTorch loaded and stops.
"""
import argparse
import os
import resource
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from gpt2_torch import GPT2, read_shard  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("-b", type=int, default=4)
    ap.add_argument("-t", type=int, default=64)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-i", default="data/bible/bible_train_000000.bin")
    ap.add_argument("--steps-out", default=None)
    ap.add_argument("--which-blas", action="store_true")
    args = ap.parse_args()
    if args.which_blas:
        torch.ones(64, 64) @ torch.ones(64, 64)
        libs = sorted({line.split()[-1] for line in open("/proc/self/maps") if "blas" in line.lower() and "/" in line})
        print(", ".join(os.path.realpath(x) for x in libs) or "none found")
        return
    torch.set_num_threads(args.threads)
    L = args.depth
    C, NH = 64 * L, L
    model = GPT2(1024, 50257, L, NH, C, 50304)
    model.init_gpt2(1)
    decay = [p for n, p in model.named_parameters() if n in ("wte", "wpe", "qkvw", "attprojw", "fcw", "fcprojw")]
    other = [p for n, p in model.named_parameters() if n not in ("wte", "wpe", "qkvw", "attprojw", "fcw", "fcprojw")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8)
    tokens = torch.from_numpy(read_shard(args.i))
    B, T = args.b, args.t
    times, cpu_times = [], []
    pos = 0
    for step in range(args.steps):
        if pos + B * T + 1 > len(tokens):
            pos = 0
        buf = tokens[pos:pos + B * T + 1]
        pos += B * T
        x, y = buf[:-1].view(B, T), buf[1:].view(B, T)
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        times.append(1000.0 * (time.perf_counter() - t0))
        cpu_times.append(1000.0 * (time.process_time() - c0) / args.threads)
    timed = times[2:] if len(times) > 2 else times
    cpu_timed = cpu_times[2:] if len(cpu_times) > 2 else cpu_times
    if args.steps_out:
        with open(args.steps_out, "a") as f:
            f.writelines(f"{m:.1f} {c:.1f}\n" for m, c in zip(timed, cpu_timed))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"result: {np.median(timed):.1f} {np.median(cpu_timed):.1f} {rss}")


if __name__ == "__main__":
    main()
