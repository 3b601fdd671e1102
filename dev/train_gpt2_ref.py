"""The PyTorch training loop the C trainer (train_gpt2.c) is compared with end
to end: same data order, loss, clipping, schedule and optimizer (optim_torch.py).

    /usr/bin/python3 dev/train_gpt2_ref.py -e dev/testdata/gpt2_tiny.bin -i dev/testdata/tiny_tokens.bin \\
        -b 2 -t 16 -d 64 -x 6 -l 1e-3 -c 0.1 -u 2 -q 0.1 -k cosine --clip 1.0 --optim adamw -o out.json
    /usr/bin/python3 dev/train_gpt2_ref.py --regen     rewrite dev/testdata/tiny_tokens.bin and e2e_<optim>.json

Semantics:
- data: micro-batch j (counting from 0 over the whole run) reads the B*T+1 tokens
  at a position that advances by B*T per micro-batch, starting at 0; when fewer
  than B*T+1 tokens remain, the position wraps to 0. inputs = the first B*T
  tokens as (B,T), targets = the B*T tokens after them (shifted by one).
- one step: zero grads; per micro-batch: loss = mean cross-entropy over its B*T
  tokens, backward of loss/grad_accum; logged loss = mean of the micro losses;
  grad_norm = global L2 norm of all gradients before clipping; clipping as
  torch.nn.utils.clip_grad_norm_(params, clip) unless clip == 0; the lr of the
  step from the schedule; the optimizer step.
- schedule (step = 0..N-1, lr_min = lr*q): warmup lr*(step+1)/W for step < W; then
  r = (step-W)/max(1, N-W): cosine lr_min + 0.5*(1+cos(pi*r))*(lr-lr_min),
  linear lr - (lr-lr_min)*r, constant lr, wsd: lr while step < N-D with
  D = round(0.2*N), then lr - (lr-lr_min)*(step-(N-D)+1)/D.

Output JSON: {"argv": [...], "command": "...", "optimizer": name, "config": {...},
"B", "T", "grad_accum", "steps": [{"step": k, "loss", "lr", "grad_norm"}, ...]}
with step k = 1..N (the optimizer step t; the schedule's step index is k-1).
"""
import argparse
import json
import math
import os
import shlex
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt2_torch import read_checkpoint, read_shard, write_shard  # noqa: E402
import optim_torch as ot  # noqa: E402

SCHEDULES = ("cosine", "linear", "constant", "wsd")

# optimizer flag -> (config field, parser); which optimizer uses which flag
OPTIM_FLAGS = {
    "--beta1": ("beta1", float), "--beta2": ("beta2", float), "--eps": ("eps", float),
    "--momentum": ("momentum", float), "--nesterov": ("nesterov", int),
    "--gsnr": ("gsnr", str), "--gsnr-max-norm": ("gsnr_max_norm", int),
    "--sinkgd-iters": ("sinkgd_iters", int), "--sinkgd-scale": ("sinkgd_scale", float),
    "--slimadam-rules": ("slimadam_rules", str),
}
USES = {
    "adamw": ("--beta1", "--beta2", "--eps"),
    "sgdm": ("--momentum", "--nesterov"),
    "sgd_sai": ("--momentum", "--eps", "--gsnr", "--gsnr-max-norm"),
    "sinkgd": ("--beta1", "--beta2", "--eps", "--sinkgd-iters", "--sinkgd-scale"),
    "slimadam": ("--beta1", "--beta2", "--eps", "--slimadam-rules"),
}


def lr_at(step, N, lr, warmup, final_frac, kind):
    lr_min = lr * final_frac
    if step < warmup:
        return lr * (step + 1) / warmup
    r = (step - warmup) / max(1, N - warmup)
    if kind == "cosine":
        return lr_min + 0.5 * (1.0 + math.cos(math.pi * r)) * (lr - lr_min)
    if kind == "linear":
        return lr - (lr - lr_min) * r
    if kind == "constant":
        return lr
    if kind == "wsd":
        D = int(round(0.2 * N))
        if step < N - D:
            return lr
        return lr - (lr - lr_min) * (step - (N - D) + 1) / D
    raise ValueError(f"unknown schedule '{kind}' (one of {', '.join(SCHEDULES)})")


def global_grad_norm(params):
    """The total 2-norm exactly as torch.nn.utils.clip_grad_norm_ computes it."""
    grads = [p.grad.detach() for p in params if p.grad is not None]
    return torch.norm(torch.stack([torch.norm(g, 2.0) for g in grads]), 2.0)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-e", required=True, help="GPT-2 checkpoint (llm.c format)")
    ap.add_argument("-i", required=True, help="token shard (llm.c format)")
    ap.add_argument("-o", required=True, help="output JSON")
    ap.add_argument("-b", type=int, default=4, help="micro-batch size B")
    ap.add_argument("-t", type=int, default=64, help="sequence length T")
    ap.add_argument("-d", type=int, default=-1, help="tokens per step (B*T*grad_accum), -1 = B*T")
    ap.add_argument("-x", type=int, default=10, help="steps N")
    ap.add_argument("-l", type=float, default=None, help="peak learning rate (default: the optimizer's)")
    ap.add_argument("-c", type=float, default=None, help="weight decay (default: the optimizer's)")
    ap.add_argument("-u", type=int, default=0, help="warmup steps W")
    ap.add_argument("-q", type=float, default=0.0, help="final lr fraction q (lr_min = lr*q)")
    ap.add_argument("-k", default="cosine", choices=SCHEDULES, help="schedule")
    ap.add_argument("--clip", type=float, default=1.0, help="global-norm clip, 0 = off")
    ap.add_argument("--optim", required=True, choices=ot.OPTIMIZERS)
    ap.add_argument("--bf16", action="store_true",
                    help="linear layers as the C trainer's PRECISION=bf16 build (bf16 inputs, float32 sums)")
    for flag, (_, typ) in OPTIM_FLAGS.items():
        ap.add_argument(flag, type=typ, default=None)
    args = ap.parse_args(argv)
    cfg = ot.default_config(args.optim)
    if args.l is not None:
        cfg.lr = args.l
    if args.c is not None:
        cfg.weight_decay = args.c
    for flag, (field, _) in OPTIM_FLAGS.items():
        val = getattr(args, flag[2:].replace("-", "_"))
        if val is None:
            continue
        if flag not in USES[args.optim]:
            ap.error(f"{flag} is not a flag of {args.optim} (its flags: {' '.join(USES[args.optim])})")
        setattr(cfg, field, val)
    if cfg.gsnr not in ("ratio", "sqrtn"):
        ap.error("--gsnr must be ratio or sqrtn")
    cfg.nesterov = bool(cfg.nesterov)
    cfg.gsnr_max_norm = bool(cfg.gsnr_max_norm)
    return args, cfg


def train(argv, quiet=False):
    args, cfg = parse_args(argv)
    torch.set_num_threads(2)
    model = read_checkpoint(args.e)
    model.bf16 = args.bf16
    tokens = torch.from_numpy(read_shard(args.i))
    B, T, N = args.b, args.t, args.x
    assert T <= model.maxT, f"T {T} > the model's maxT {model.maxT}"
    assert len(tokens) >= B * T + 1, f"{args.i}: {len(tokens)} tokens, a batch needs {B * T + 1}"
    tokens_per_step = args.d if args.d > 0 else B * T
    assert tokens_per_step % (B * T) == 0, f"-d {tokens_per_step} is not a multiple of B*T = {B * T}"
    grad_accum = tokens_per_step // (B * T)
    params = list(model.parameters())
    opt = ot.make_optimizer(args.optim, model.param_blocks(), cfg, verbose=not quiet)

    pos = 0
    records = []
    for step in range(N):
        model.zero_grad(set_to_none=True)
        losses = []
        for _ in range(grad_accum):
            if len(tokens) - pos < B * T + 1:
                pos = 0
            buf = tokens[pos:pos + B * T + 1]
            pos += B * T
            x, y = buf[:-1].view(B, T), buf[1:].view(B, T)
            _, loss = model(x, y)
            (loss / grad_accum).backward()
            losses.append(loss.item())
        mean_loss = sum(losses) / grad_accum
        if args.clip > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, args.clip))
        else:
            grad_norm = float(global_grad_norm(params))
        lr = lr_at(step, N, cfg.lr, args.u, args.q, args.k)
        opt.step(lr)
        rec = {"step": step + 1, "loss": mean_loss, "lr": lr, "grad_norm": grad_norm}
        records.append(rec)
        if not quiet:
            print(f"step {step + 1:4d}/{N} | loss {mean_loss:.6f} | lr {lr:.4e} | norm {grad_norm:.4f}")

    out = {
        "argv": ["dev/train_gpt2_ref.py"] + list(argv),
        "command": "/usr/bin/python3 " + " ".join(shlex.quote(a) for a in ["dev/train_gpt2_ref.py"] + list(argv)),
        "optimizer": args.optim, "config": cfg.to_dict(),
        "B": B, "T": T, "grad_accum": grad_accum, "steps": records,
    }
    with open(args.o, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    return out


# ----------------------------------------------------------------------------
# the committed end-to-end references

E2E_COMMON = ["-e", "dev/testdata/gpt2_tiny.bin", "-i", "dev/testdata/tiny_tokens.bin",
              "-b", "2", "-t", "16", "-d", "64", "-x", "6", "-u", "2", "-q", "0.1", "-k", "cosine",
              "--clip", "1.0"]
# lrs chosen so that every loss decreases at every step and most steps clip
# (grad_norm > 1) while some do not (adamw step 5, sgdm step 6, slimadam step 5).
# SinkGD's betas are given explicitly: the spec leaves its default open
# ("the run's betas"; the papers use (0.9, 0.999)).
E2E_RUNS = {
    "adamw": ["-l", "1e-2", "-c", "0.1"],
    "sgdm": ["-l", "0.2", "-c", "0"],
    "sgd_sai": ["-l", "1e-2", "-c", "0.1"],
    "sinkgd": ["-l", "1e-2", "-c", "0", "--beta1", "0.9", "--beta2", "0.999"],
    "slimadam": ["-l", "1e-2", "-c", "0.1"],
}


def make_tokens(path, n=3072, V=113, period=29, noise=0.1, seed=2024):
    """A repeating random pattern of `period` ids with a fraction `noise` replaced at random."""
    rng = np.random.RandomState(seed)
    pattern = rng.randint(0, V, size=period)
    toks = np.tile(pattern, n // period + 1)[:n]
    flip = rng.rand(n) < noise
    toks[flip] = rng.randint(0, V, size=int(flip.sum()))
    write_shard(path, toks)


def regen():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.chdir(root)  # the argv recorded in the JSON is relative to the repo root
    make_tokens("dev/testdata/tiny_tokens.bin")
    for name, extra in E2E_RUNS.items():
        argv = E2E_COMMON + extra + ["--optim", name, "-o", f"dev/testdata/e2e_{name}.json"]
        out = train(argv, quiet=True)
        steps = out["steps"]
        clipped = sum(r["grad_norm"] > 1.0 for r in steps)
        print(f"{name:9s} loss {steps[0]['loss']:.4f} -> {steps[-1]['loss']:.4f}  "
              f"steps with grad_norm > clip: {clipped}  | " + " ".join(f"{r['loss']:.4f}" for r in steps))


if __name__ == "__main__":
    if sys.argv[1:] == ["--regen"]:
        regen()
    else:
        train(sys.argv[1:])
