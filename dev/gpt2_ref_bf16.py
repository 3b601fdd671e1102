"""Write the bf16 reference for test_gpt2_bf16.c: the batch of
dev/testdata/gpt2_tiny_debug.bin through the model dev/testdata/gpt2_tiny.bin
with the linear layers as the C trainer's PRECISION=bf16 build computes them
(gpt2_torch.Bf16Matmul: every matmul input rounded to bf16, float32 sums).

    /usr/bin/python3 dev/gpt2_ref_bf16.py      (make gpt2-bf16-ref)
    /usr/bin/python3 dev/gpt2_ref_bf16.py --sensitivity

--sensitivity writes nothing; it prints how far PyTorch's own bf16 gradients
move, per tensor, when the weights are multiplied by 1 + 1.2e-7 * N(0, 1)
(about one fp32 ulp), as a fraction of the bf16 effect |g_bf16 - g_fp32|: the
noise that rounding flips put into test_gpt2_bf16's comparison.

Writes dev/testdata/gpt2_tiny_debug_bf16.bin in gpt2_tiny_debug.bin's format
(dev/gpt2_ref.py): header, x, y, logits, loss, every gradient; and
dev/testdata/gpt2_tiny_bf16.bin, the model as llm.c's version 5 (bf16)
checkpoint, for dev/test_bf16_ckpt.sh.
"""
import os
import sys

import numpy as np
import torch

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
    ref = run(True, x, y)[0]
    fp32 = run(False, x, y)[0]
    for seed in (1, 3, 4):
        moved = run(True, x, y, seed)[0]
        print(f"perturbation {seed}: " + " ".join(
            f"{n} {(getattr(moved, n).grad - getattr(ref, n).grad).norm() / (getattr(fp32, n).grad - getattr(ref, n).grad).norm():.2f}"
            for n in PARAM_NAMES))


def main():
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
