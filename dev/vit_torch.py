"""The Vision Transformer in PyTorch, written independently of the C code, as
the reference train_vit.c is tested against. It follows the ViT of Dosovitskiy
et al. as timm builds it, with plain torch ops: the patch embedding is a
stride-P convolution (F.conv2d), a cls token is prepended, learned position
embeddings are added, pre-LayerNorm blocks (eps 1e-6) with bidirectional
multi-head attention written out by hand and an exact-erf GELU MLP, a final
LayerNorm over every token, and a linear head on the cls token.

Parameters use the names and layout of the C model, so checkpoints move
between the two unchanged. Checkpoint format:
  256 int32 header [20241017, 1, H, W, channels, P, C, L, NH, classes, 0...],
  then fp32 tensors in this order:
  patchw (C, ch*P*P)  patchb (C)  cls (C)  pos (NP+1, C)
  ln1w (L,C) ln1b (L,C) qkvw (L,3C,C) qkvb (L,3C) attprojw (L,C,C) attprojb (L,C)
  ln2w (L,C) ln2b (L,C) fcw (L,4C,C) fcb (L,4C) fcprojw (L,C,4C) fcprojb (L,C)
  lnfw (C) lnfb (C) headw (classes,C) headb (classes)
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from gpt2_torch import Bf16Attention, Bf16Matmul

MAGIC, VERSION = 20241017, 1
PARAM_NAMES = ["patchw", "patchb", "cls", "pos", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
               "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb", "headw", "headb"]
LN_EPS = 1e-6


def param_shapes(H, W, ch, P, C, L, NH, K):
    T = (H // P) * (W // P) + 1
    return {
        "patchw": (C, ch * P * P), "patchb": (C,), "cls": (C,), "pos": (T, C),
        "ln1w": (L, C), "ln1b": (L, C), "qkvw": (L, 3 * C, C), "qkvb": (L, 3 * C),
        "attprojw": (L, C, C), "attprojb": (L, C), "ln2w": (L, C), "ln2b": (L, C),
        "fcw": (L, 4 * C, C), "fcb": (L, 4 * C), "fcprojw": (L, C, 4 * C), "fcprojb": (L, C),
        "lnfw": (C,), "lnfb": (C,), "headw": (K, C), "headb": (K,),
    }


class ViT(torch.nn.Module):
    def __init__(self, H, W, ch, P, C, L, NH, K):
        super().__init__()
        assert H % P == 0 and W % P == 0 and C % NH == 0
        self.H, self.W, self.ch, self.P, self.C, self.L, self.NH, self.K = H, W, ch, P, C, L, NH, K
        self.bf16 = False  # True: the linear layers and the attention compute as the C trainer's PRECISION=bf16
        for name, shape in param_shapes(H, W, ch, P, C, L, NH, K).items():
            self.register_parameter(name, torch.nn.Parameter(torch.zeros(shape)))

    def config(self):
        return [self.H, self.W, self.ch, self.P, self.C, self.L, self.NH, self.K]

    def linear(self, x, w):
        """x @ w^T: float32, or with bf16 inputs (gpt2_torch.Bf16Matmul) when self.bf16"""
        return Bf16Matmul.apply(x, w) if self.bf16 else x @ w.t()

    def forward(self, images, labels=None):
        """images (B, ch, H, W) -> logits (B, K), and the mean cross-entropy with labels."""
        B = images.shape[0]
        C, NH, L, P = self.C, self.NH, self.L, self.P
        hs = C // NH
        # patch embedding: a convolution with kernel P and stride P; its
        # weight [C, ch, P, P] is patchw viewed in (channel, row, col) order
        if self.bf16:  # the same product as a matmul of the patches (unfold's order is the weight's)
            patches = F.unfold(images, kernel_size=P, stride=P).transpose(1, 2)  # (B, NP, ch P P)
            x = self.linear(patches, self.patchw) + self.patchb
        else:
            w = self.patchw.view(C, self.ch, P, P)
            x = F.conv2d(images, w, self.patchb, stride=P)     # (B, C, H/P, W/P)
            x = x.flatten(2).transpose(1, 2)                   # (B, NP, C), patches in row-major order
        x = torch.cat([self.cls.view(1, 1, C).expand(B, 1, C), x], dim=1) + self.pos
        T = x.shape[1]
        for l in range(L):
            h = F.layer_norm(x, (C,), self.ln1w[l], self.ln1b[l], eps=LN_EPS)
            qkv = self.linear(h, self.qkvw[l]) + self.qkvb[l]
            q, k, v = qkv.split(C, dim=2)
            q = q.view(B, T, NH, hs).transpose(1, 2)
            k = k.view(B, T, NH, hs).transpose(1, 2)
            v = v.view(B, T, NH, hs).transpose(1, 2)
            if self.bf16:
                y = Bf16Attention.apply(q, k, v, False)  # no mask
            else:
                att = ((q @ k.transpose(-2, -1)) / math.sqrt(hs)).softmax(dim=-1)  # no mask
                y = att @ v
            y = y.transpose(1, 2).reshape(B, T, C)
            x = x + self.linear(y, self.attprojw[l]) + self.attprojb[l]
            h = F.layer_norm(x, (C,), self.ln2w[l], self.ln2b[l], eps=LN_EPS)
            h = F.gelu(self.linear(h, self.fcw[l]) + self.fcb[l])  # exact erf
            x = x + self.linear(h, self.fcprojw[l]) + self.fcprojb[l]
        x = F.layer_norm(x, (C,), self.lnfw, self.lnfb, eps=LN_EPS)  # every token, as timm
        logits = self.linear(x[:, 0], self.headw) + self.headb
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return logits, loss

    def decay_groups(self):
        """Weight-decay groups of the spec (section 0): matrices, embeddings, the
        cls token and the position embedding decay; biases and LayerNorm do not.
        In timm the cls token is a [1,1,C] tensor, so nanoGPT's ndim >= 2 rule
        decays it; here it is stored as (C,), hence the explicit list."""
        decayed = {"patchw", "cls", "pos", "qkvw", "attprojw", "fcw", "fcprojw", "headw"}
        dec = [getattr(self, n) for n in PARAM_NAMES if n in decayed]
        rest = [getattr(self, n) for n in PARAM_NAMES if n not in decayed]
        return dec, rest


def write_checkpoint(model, path):
    header = np.zeros(256, dtype=np.int32)
    header[:10] = [MAGIC, VERSION] + model.config()
    with open(path, "wb") as f:
        f.write(header.tobytes())
        for name in PARAM_NAMES:
            f.write(getattr(model, name).detach().numpy().astype(np.float32).tobytes())


def read_checkpoint(path):
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(256 * 4), dtype=np.int32)
        assert header[0] == MAGIC and header[1] == VERSION, f"{path}: not a ViT fp32 checkpoint"
        cfg = [int(v) for v in header[2:10]]
        model = ViT(*cfg)
        for name, shape in param_shapes(*cfg).items():
            n = int(np.prod(shape))
            data = np.frombuffer(f.read(4 * n), dtype=np.float32).reshape(shape)
            getattr(model, name).data.copy_(torch.from_numpy(data.copy()))
        assert not f.read(1), f"{path}: trailing bytes"
    return model
