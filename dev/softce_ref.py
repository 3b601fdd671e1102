"""Write the PyTorch reference for the soft-target cross-entropy (test_nn.c):
label smoothing with torch.nn.functional.cross_entropy(..., label_smoothing=eps)
and probability targets (mixup/cutmix) with cross_entropy(logits, target_probs),
each with the per-row losses and the gradient of their mean.

    /usr/bin/python3 dev/softce_ref.py [outdir]     (default dev/testdata)

Writes softce_ref.bin, little-endian:
  int32 header[4] = [20261202, 1, number of cases, 0]
  per case: int32 N, int32 V, int32 kind (0 label smoothing, 1 probability targets), float eps
            float logits[N*V]
            kind 0: int32 labels[N];  kind 1: float targets[N*V]
            float losses[N]        (reduction='none')
            float grad[N*V]        (of the mean over the N rows)
"""
import os
import struct
import sys

import torch
import torch.nn.functional as F


def case_rows(f, logits, kind, eps, labels=None, targets=None):
    N, V = logits.shape
    x = logits.clone().requires_grad_(True)
    if kind == 0:
        losses = F.cross_entropy(x, labels, label_smoothing=eps, reduction="none")
    else:
        losses = F.cross_entropy(x, targets, reduction="none")
    losses.mean().backward()
    f.write(struct.pack("<3if", N, V, kind, eps))
    f.write(logits.numpy().astype("<f4").tobytes())
    if kind == 0:
        f.write(labels.numpy().astype("<i4").tobytes())
    else:
        f.write(targets.numpy().astype("<f4").tobytes())
    f.write(losses.detach().numpy().astype("<f4").tobytes())
    f.write(x.grad.numpy().astype("<f4").tobytes())


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "testdata")
    torch.manual_seed(20261202)
    cases = []
    # small rows with one very large logit (a probability that underflows) and a tied pair
    small = 3.0 * torch.randn(5, 7)
    small[1, 4] = 60.0
    small[2, 0] = small[2, 5]
    lab_small = torch.tensor([3, 0, 5, 6, 1])
    cases.append((small, 0, 0.1, lab_small, None))
    cases.append((small, 0, 0.0, lab_small, None))  # eps 0: plain cross-entropy
    # ImageNet-sized rows
    big = 2.0 * torch.randn(3, 1000)
    lab_big = torch.tensor([0, 517, 999])
    cases.append((big, 0, 0.1, lab_big, None))
    # probability targets: mixup of two smoothed one-hots (timm's mixup_target) and a random distribution
    eps, lam = 0.1, 0.7
    off, on = eps / 7, 1.0 - eps + eps / 7
    y1 = torch.full((5, 7), off)
    y1[torch.arange(5), lab_small] = on
    y2 = y1.flip(0)
    mixed = y1 * lam + y2 * (1.0 - lam)
    cases.append((small, 1, 0.0, None, mixed))
    rand_t = torch.softmax(torch.randn(3, 1000), dim=1)
    cases.append((big, 1, 0.0, None, rand_t))
    path = os.path.join(outdir, "softce_ref.bin")
    with open(path, "wb") as f:
        f.write(struct.pack("<4i", 20261202, 1, len(cases), 0))
        for logits, kind, e, labels, targets in cases:
            case_rows(f, logits, kind, e, labels, targets)
    print(f"wrote {path} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
