"""The PyTorch reference for train_gpt2's evaluation mode (-x 0), written
independently of the C code: it makes the expected figures that
dev/test_llmc.sh compares the C program with, into dev/testdata/eval_ref.json.

  1. HellaSwag-style multiple choice: 40 examples of random tokens (a context
     and 4 endings each, as llm.c's hellaswag.py renders them), scored by
     dev/testdata/gpt2_tiny.bin in double precision as llm.c's hellaswag.py
     scores them: the loss of each ending's tokens after the context (the last
     context token predicts the first ending token), its sum and its mean; the
     prediction is the ending of the lowest sum (acc) and of the lowest mean
     (acc_norm, the figure llm.c's C code reports), ties to the lowest index.
     An example whose best two endings are closer than 1e-3 (sum or mean) is
     drawn again, so that float32 rounding cannot flip a prediction.
  2. The validation loss of dev/testdata/tiny_tokens.bin over the whole split
     at B 4 x T 16: batch b reads tokens [64 b, 64 b + 65) (inputs, and the
     targets one further), llm.c's loader for one shard; the mean of each
     batch's mean loss, and the perplexity exp(loss).

usage: /usr/bin/python3 dev/eval_ref.py    (PyTorch; the test itself needs only Python)
"""
import json
import math
import os
import random
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import gpt2_torch  # noqa: E402

MODEL = "dev/testdata/gpt2_tiny.bin"
SHARD = "dev/testdata/tiny_tokens.bin"
OUT = "dev/testdata/eval_ref.json"


def ending_losses(model, ctx, ending):
    """Per-token losses of the ending's tokens given the context (double)."""
    tokens = torch.tensor(ctx + ending, dtype=torch.long)
    logits, _ = model(tokens[None, :-1])
    losses = F.cross_entropy(logits[0], tokens[1:], reduction="none")
    return losses[len(ctx) - 1:]  # from the last context token on


def argmin_first(xs):
    best = 0
    for i, x in enumerate(xs):
        if x < xs[best]:
            best = i
    return best


def gap(xs):
    s = sorted(xs)
    return s[1] - s[0]


def main():
    model = gpt2_torch.read_checkpoint(MODEL).double()
    V, maxT = model.V, model.maxT
    rng = random.Random(20240522)
    examples, mean_losses, sum_losses, pred, pred_norm = [], [], [], [], []
    with torch.no_grad():
        while len(examples) < 40:
            ctx = [rng.randrange(V) for _ in range(rng.randint(1, 9))]
            endings = [[rng.randrange(V) for _ in range(rng.randint(1, 8))] for _ in range(4)]
            assert len(ctx) + max(map(len, endings)) - 1 <= maxT
            losses = [ending_losses(model, ctx, e) for e in endings]
            sums = [float(l.sum()) for l in losses]
            means = [float(l.mean()) for l in losses]
            if gap(sums) < 1e-3 or gap(means) < 1e-3:
                continue
            examples.append({"label": rng.randrange(4), "ctx": ctx, "endings": endings})
            sum_losses.append(sums)
            mean_losses.append(means)
            pred.append(argmin_first(sums))
            pred_norm.append(argmin_first(means))
        labels = [e["label"] for e in examples]
        correct = sum(p == l for p, l in zip(pred, labels))
        correct_norm = sum(p == l for p, l in zip(pred_norm, labels))

        tokens = torch.from_numpy(gpt2_torch.read_shard(SHARD))
        B, T = 4, 16
        nb = (len(tokens) - 1) // (B * T)
        batch_losses = []
        for b in range(nb):
            chunk = tokens[b * B * T: b * B * T + B * T + 1]
            _, loss = model(chunk[:-1].view(B, T), chunk[1:].view(B, T))
            batch_losses.append(float(loss))
        val = sum(batch_losses) / nb

    ref = {
        "about": "written by dev/eval_ref.py: expected figures of train_gpt2 -x 0 (dev/test_llmc.sh)",
        "model": MODEL,
        "examples": examples,
        "hellaswag": {"mean_losses": mean_losses, "sum_losses": sum_losses, "pred": pred, "pred_norm": pred_norm,
                      "correct": correct, "correct_norm": correct_norm, "examples": len(examples),
                      "longest_row": max(len(e["ctx"]) + max(map(len, e["endings"])) for e in examples)},
        "val": {"shard": SHARD, "B": B, "T": T, "batches": nb, "batch_losses": batch_losses, "loss": val,
                "perplexity": math.exp(val)},
    }
    with open(OUT, "w") as f:
        json.dump(ref, f, indent=1)
    print(f"{OUT}: {len(examples)} examples, acc {correct}/40, acc_norm {correct_norm}/40; "
          f"val loss {val:.6f} over {nb} batches")


if __name__ == "__main__":
    main()
