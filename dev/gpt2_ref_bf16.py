"""Write the bf16 reference for test_gpt2_bf16.c: the batch of
dev/testdata/gpt2_tiny_debug.bin through the model dev/testdata/gpt2_tiny.bin
with the linear layers and the attention as the C trainer's PRECISION=bf16
build computes them (gpt2_torch.Bf16Matmul and Bf16Attention: every matmul
input rounded to bf16, float32 sums; Bf16Attention's backward is first
checked against autograd's with the rounding left out).

    /usr/bin/python3 dev/gpt2_ref_bf16.py      (make gpt2-bf16-ref)
    /usr/bin/python3 dev/gpt2_ref_bf16.py --sensitivity

--sensitivity writes nothing; it prints how far PyTorch's own bf16 logits
(largest difference), loss and gradients (per tensor, in L2) move when the
weights are multiplied by 1 + 1.2e-7 * N(0, 1) (about one fp32 ulp), as a
fraction of the bf16 effect (bf16 against fp32): the noise that rounding
flips put into test_gpt2_bf16's comparison.

Writes dev/testdata/gpt2_tiny_debug_bf16.bin in gpt2_tiny_debug.bin's format
(dev/gpt2_ref.py): header, x, y, logits, loss, every gradient; and
dev/testdata/gpt2_tiny_bf16.bin, the model as llm.c's version 5 (bf16)
checkpoint, for dev/test_bf16_ckpt.sh.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt2_torch import PARAM_NAMES, read_checkpoint, write_checkpoint, write_debug  # noqa: E402


DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testdata")


def read_batch():
    with open(os.path.join(DATA, "gpt2_tiny_debug.bin"), "rb") as f:
        header = np.frombuffer(f.read(256 * 4), dtype=np.int32).copy()
        assert header[0] == 20240327 and header[1] == 1, "gpt2_tiny_debug.bin: bad magic or version"
        B, T = int(header[2]), int(header[3])
        x = torch.from_numpy(np.frombuffer(f.read(B * T * 4), dtype=np.int32).astype(np.int64)).view(B, T)
        y = torch.from_numpy(np.frombuffer(f.read(B * T * 4), dtype=np.int32).astype(np.int64)).view(B, T)
    return header, x, y


def run(bf16, x, y, perturb_seed=None):
    model = read_checkpoint(os.path.join(DATA, "gpt2_tiny.bin"))
    model.bf16 = bf16
    if perturb_seed is not None:
        g = torch.Generator().manual_seed(perturb_seed)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1 + 1.2e-7 * torch.randn(p.shape, generator=g))
    logits, loss = model(x, y)
    loss.backward()
    return model, logits, loss


def sensitivity():
    _, x, y = read_batch()
    ref, ref_logits, ref_loss = run(True, x, y)
    fp32, fp32_logits, fp32_loss = run(False, x, y)
    effect = (fp32_logits - ref_logits).abs().max()
    for seed in (1, 3, 4):
        moved, logits, loss = run(True, x, y, seed)
        print(f"perturbation {seed}: logits {(logits - ref_logits).abs().max() / effect:.2f} "
              f"loss {(loss - ref_loss).abs() / (fp32_loss - ref_loss).abs():.2f} " + " ".join(
            f"{n} {(getattr(moved, n).grad - getattr(ref, n).grad).norm() / (getattr(fp32, n).grad - getattr(ref, n).grad).norm():.2f}"
            for n in PARAM_NAMES))


def check_attention_backward():
    """Bf16Attention's hand-written backward, with the rounding left out,
    against autograd through PyTorch's own attention (float64)."""
    import gpt2_torch
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 37, 16, dtype=torch.float64, generator=g, requires_grad=True) for _ in range(3))
    rounding = gpt2_torch.round_bf16
    gpt2_torch.round_bf16 = lambda t: t
    try:
        for causal in (True, False):
            y = gpt2_torch.Bf16Attention.apply(q, k, v, causal)
            dy = torch.randn(y.shape, dtype=torch.float64, generator=g)
            att = (q @ k.transpose(-2, -1)) / 4.0  # hs 16
            if causal:
                att = att.masked_fill(~torch.tril(torch.ones(37, 37, dtype=torch.bool)), float("-inf"))
            y_ref = F.softmax(att, dim=-1) @ v
            for a, b in zip((y,) + torch.autograd.grad(y, (q, k, v), dy),
                            (y_ref,) + torch.autograd.grad(y_ref, (q, k, v), dy)):
                assert (a - b).abs().max() < 1e-12, "Bf16Attention's backward differs from autograd's"
    finally:
        gpt2_torch.round_bf16 = rounding


def main():
    check_attention_backward()
    header, x, y = read_batch()
    model, logits, loss = run(True, x, y)
    data = DATA
    out = os.path.join(data, "gpt2_tiny_debug_bf16.bin")
    write_debug(out, int(header[2]), int(header[3]), int(header[4]), x, y, logits, loss, model)
    print(f"gpt2_ref_bf16: wrote {out} (loss {loss.item():.6f})")
    out = os.path.join(data, "gpt2_tiny_bf16.bin")
    write_checkpoint(read_checkpoint(os.path.join(data, "gpt2_tiny.bin")), out, bf16=True)
    print(f"gpt2_ref_bf16: wrote {out}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--sensitivity"]:
        sensitivity()
    else:
        main()
