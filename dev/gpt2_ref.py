"""Write the PyTorch reference for test_gpt2.c: a tiny GPT-2 of odd sizes, a
batch, and what PyTorch computes from them (logits, loss, every gradient).

    /usr/bin/python3 dev/gpt2_ref.py [outdir]     (default dev/testdata)

Writes gpt2_tiny.bin (model checkpoint, llm.c format) and gpt2_tiny_debug.bin:
  int32 header[256] = [20240327, 1, B, T, V, 0...]
  int32 x[B*T], int32 y[B*T], float logits[B*T*V], float loss,
  float grads (every parameter tensor in checkpoint order, wte with its Vp rows)
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt2_torch import GPT2, PARAM_NAMES, write_checkpoint, write_debug  # noqa: E402

# odd sizes, so edge cases of blocking and head splitting are exercised
maxT, V, L, NH, C, Vp = 24, 113, 2, 3, 36, 128
B, T = 3, 17


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "testdata")
    os.makedirs(outdir, exist_ok=True)
    torch.manual_seed(1234)
    model = GPT2(maxT, V, L, NH, C, Vp)
    # Larger-than-GPT-2 random values everywhere (biases and LayerNorm
    # parameters too) so that every term of every gradient is exercised.
    with torch.no_grad():
        for name in PARAM_NAMES:
            p = getattr(model, name)
            if name in ("ln1w", "ln2w", "lnfw"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))
        model.wte[V:].zero_()  # padding rows are storage, always 0
    x = torch.randint(0, V, (B, T))
    y = torch.randint(0, V, (B, T))
    logits, loss = model(x, y)
    loss.backward()

    write_checkpoint(model, os.path.join(outdir, "gpt2_tiny.bin"))
    write_debug(os.path.join(outdir, "gpt2_tiny_debug.bin"), B, T, V, x, y, logits, loss, model)
    print(f"gpt2_ref: wrote {outdir}/gpt2_tiny.bin and gpt2_tiny_debug.bin (loss {loss.item():.6f})")


if __name__ == "__main__":
    main()
