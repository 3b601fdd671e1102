"""Write the PyTorch reference for the tiled attention (test_attention.c):
softmax(q k^T / sqrt(hs) + causal mask) v per head in float64, with its
gradients by autograd, on random inputs.

    /usr/bin/python3 dev/attention_ref.py [outdir]     (default dev/testdata; make attention-ref)

Writes attention_ref.bin, little-endian:
  int32 header[4] = [20261130, 1, number of cases, 0]
  per case: int32 B, T, C, NH, causal
            float qkv[B*T*3C]    (q, k, v side by side per position, llm.c's layout)
            float dout[B*T*C]
            float out[B*T*C]     (heads side by side)
            float dqkv[B*T*3C]   (the gradient of sum(out * dout))
"""
import math
import os
import struct
import sys

import torch

CASES = [  # B, T, C, NH, causal: two tiles, the second partial (T 67); a head size of 24; bidirectional, hs 16
    (1, 67, 64, 1, 1),
    (1, 37, 48, 2, 1),
    (1, 70, 32, 2, 0),
]


def attention(qkv, B, T, C, NH, causal):
    hs = C // NH
    q, k, v = qkv.split(C, dim=2)
    q = q.view(B, T, NH, hs).transpose(1, 2)
    k = k.view(B, T, NH, hs).transpose(1, 2)
    v = v.view(B, T, NH, hs).transpose(1, 2)
    s = q @ k.transpose(-2, -1) / math.sqrt(hs)
    if causal:
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        s = s.masked_fill(~mask, float("-inf"))
    y = torch.softmax(s, dim=-1) @ v
    return y.transpose(1, 2).contiguous().view(B, T, C)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "testdata")
    g = torch.Generator().manual_seed(1130)
    path = os.path.join(outdir, "attention_ref.bin")
    with open(path, "wb") as f:
        f.write(struct.pack("<4i", 20261130, 1, len(CASES), 0))
        for B, T, C, NH, causal in CASES:
            qkv = (2 * torch.rand(B, T, 3 * C, generator=g) - 1).float() * 2
            dout = (2 * torch.rand(B, T, C, generator=g) - 1).float()
            x = qkv.double().requires_grad_(True)
            out = attention(x, B, T, C, NH, causal)
            out.backward(dout.double())
            f.write(struct.pack("<5i", B, T, C, NH, causal))
            for t in (qkv, dout, out.detach().float(), x.grad.float()):
                f.write(t.contiguous().numpy().astype("<f4").tobytes())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
