"""GPT-2 in PyTorch, written independently of the C code, as the reference the
C trainer is tested against. Parameters use the names and layout of the C
model (llm.c's layout), so checkpoints move between the two unchanged.

Checkpoint format (llm.c's): 256 int32 header [20240326, 3, maxT, V, L, NH, C, Vp, 0...],
then fp32 tensors in this order: wte (Vp,C) wpe (maxT,C) ln1w (L,C) ln1b (L,C)
qkvw (L,3C,C) qkvb (L,3C) attprojw (L,C,C) attprojb (L,C) ln2w (L,C) ln2b (L,C)
fcw (L,4C,C) fcb (L,4C) fcprojw (L,C,4C) fcprojb (L,C) lnfw (C) lnfb (C).
"""
import math
import struct

import numpy as np
import torch
import torch.nn.functional as F

PARAM_NAMES = ["wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
               "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"]


def param_shapes(maxT, V, L, NH, C, Vp):
    return {
        "wte": (Vp, C), "wpe": (maxT, C),
        "ln1w": (L, C), "ln1b": (L, C), "qkvw": (L, 3 * C, C), "qkvb": (L, 3 * C),
        "attprojw": (L, C, C), "attprojb": (L, C), "ln2w": (L, C), "ln2b": (L, C),
        "fcw": (L, 4 * C, C), "fcb": (L, 4 * C), "fcprojw": (L, C, 4 * C), "fcprojb": (L, C),
        "lnfw": (C,), "lnfb": (C,),
    }


def round_bf16(t):
    """t rounded to the nearest bfloat16 (ties to even), kept in float32."""
    return t.to(torch.bfloat16).to(torch.float32)


class Bf16Matmul(torch.autograd.Function):
    """x @ w^T with the C trainer's PRECISION=bf16 arithmetic: every input of
    every product (forward and both gradients) rounded to bf16, the products
    and sums in float32. The bias is added outside, in float32."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return round_bf16(x) @ round_bf16(w).t()

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        g = round_bf16(g)
        dx = g @ round_bf16(w)
        dw = g.reshape(-1, g.shape[-1]).t() @ round_bf16(x).reshape(-1, x.shape[-1])
        return dx, dw


class Bf16Attention(torch.autograd.Function):
    """softmax(q k^T / sqrt(hs) + mask) v, q k v (B, NH, T, hs), with the C
    trainer's PRECISION=bf16 arithmetic (nn/attention.c): every input of every
    product rounded to bf16, the sums in float32; the softmax in float32, its
    weights for the product with v rounded to bf16 before they are normalised,
    as 2^(scale log2(e) q.k - M) with M a whole number at least their max
    (any such M rounds the same: a power of two). The backward recomputes the
    weights from the logsumexp: p = exp(scale q.k - lse), dp = dy v^T,
    ds = p (dp - rowsum(dy * y)) scale, and rounds p, ds, dy, q, k, v."""

    @staticmethod
    def forward(ctx, q, k, v, causal):
        T, hs = q.shape[-2], q.shape[-1]
        c = (1.0 / math.sqrt(hs)) * math.log2(math.e)
        s = (round_bf16(q) @ round_bf16(k).transpose(-2, -1)) * c  # scores in base 2
        if causal:
            s = s.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf"))
        M = torch.ceil(s.amax(dim=-1, keepdim=True))
        e = torch.exp2(s - M)
        total = e.sum(dim=-1, keepdim=True)
        y = (round_bf16(e) @ round_bf16(v)) / total
        lse2 = M + torch.log2(total)  # the logsumexp in base 2
        ctx.causal = causal
        ctx.save_for_backward(q, k, v, y, lse2)
        return y

    @staticmethod
    def backward(ctx, dy):
        q, k, v, y, lse2 = ctx.saved_tensors
        T, hs = q.shape[-2], q.shape[-1]
        scale = 1.0 / math.sqrt(hs)
        s = (round_bf16(q) @ round_bf16(k).transpose(-2, -1)) * (scale * math.log2(math.e))
        if ctx.causal:
            s = s.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf"))
        p = torch.exp2(s - lse2)
        dp = round_bf16(dy) @ round_bf16(v).transpose(-2, -1)
        ds = p * (dp - (dy * y).sum(dim=-1, keepdim=True)) * scale
        dq = round_bf16(ds) @ round_bf16(k)
        dk = round_bf16(ds).transpose(-2, -1) @ round_bf16(q)
        dv = round_bf16(p).transpose(-2, -1) @ round_bf16(dy)
        return dq, dk, dv, None


class GPT2(torch.nn.Module):
    """Stacked-layer GPT-2. wte keeps its padding rows (Vp); only the first V
    rows are used for logits and lookups, so padding rows get no gradient."""

    def __init__(self, maxT, V, L, NH, C, Vp):
        super().__init__()
        self.maxT, self.V, self.L, self.NH, self.C, self.Vp = maxT, V, L, NH, C, Vp
        self.bf16 = False  # True: the linear layers and the attention compute as the C trainer's PRECISION=bf16
        for name, shape in param_shapes(maxT, V, L, NH, C, Vp).items():
            self.register_parameter(name, torch.nn.Parameter(torch.zeros(shape)))

    def linear(self, x, w):
        """x @ w^T: float32, or with bf16 inputs (Bf16Matmul) when self.bf16"""
        return Bf16Matmul.apply(x, w) if self.bf16 else x @ w.t()

    def forward(self, idx, targets=None):
        B, T = idx.shape
        C, NH, L = self.C, self.NH, self.L
        hs = C // NH
        x = self.wte[idx] + self.wpe[:T]
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        for l in range(L):
            h = F.layer_norm(x, (C,), self.ln1w[l], self.ln1b[l], eps=1e-5)
            qkv = self.linear(h, self.qkvw[l]) + self.qkvb[l]
            q, k, v = qkv.split(C, dim=2)
            q = q.view(B, T, NH, hs).transpose(1, 2)
            k = k.view(B, T, NH, hs).transpose(1, 2)
            v = v.view(B, T, NH, hs).transpose(1, 2)
            if self.bf16:
                y = Bf16Attention.apply(q, k, v, True)
            else:
                att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
                att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
                y = att @ v
            y = y.transpose(1, 2).reshape(B, T, C)
            x = x + self.linear(y, self.attprojw[l]) + self.attprojb[l]
            h = F.layer_norm(x, (C,), self.ln2w[l], self.ln2b[l], eps=1e-5)
            h = F.gelu(self.linear(h, self.fcw[l]) + self.fcb[l], approximate="tanh")
            x = x + self.linear(h, self.fcprojw[l]) + self.fcprojb[l]
        x = F.layer_norm(x, (C,), self.lnfw, self.lnfb, eps=1e-5)
        logits = self.linear(x, self.wte[: self.V])
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, self.V), targets.reshape(-1))
        return logits, loss

    def init_gpt2(self, seed):
        """GPT-2 initialisation (nanoGPT's): N(0, 0.02), residual projections 0.02/sqrt(2L)."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                p.zero_()
            self.wte[: self.V].normal_(0.0, 0.02, generator=g)
            self.wpe.normal_(0.0, 0.02, generator=g)
            self.qkvw.normal_(0.0, 0.02, generator=g)
            self.fcw.normal_(0.0, 0.02, generator=g)
            std = 0.02 / math.sqrt(2 * self.L)
            self.attprojw.normal_(0.0, std, generator=g)
            self.fcprojw.normal_(0.0, std, generator=g)
            self.ln1w.fill_(1.0)
            self.ln2w.fill_(1.0)
            self.lnfw.fill_(1.0)

    def param_blocks(self):
        """The optimizer's blocks, mirroring gpt2_param_blocks in train_gpt2.c:
        (name, role, view of the parameter, getter of its gradient). Per layer slices."""
        blocks = []
        def add(name, role, tensor, grad_fn):
            blocks.append((name, role, tensor, grad_fn))
        V = self.V
        add("wte", "token_embedding", self.wte.data[:V], lambda: self.wte.grad[:V])
        add("wpe", "position_embedding", self.wpe.data, lambda: self.wpe.grad)
        per_layer = [("ln1w", "ln1w", "norm"), ("ln1b", "ln1b", "norm"),
                     ("attn.qkvw", "qkvw", "attn_qkv"), ("attn.qkvb", "qkvb", "bias"),
                     ("attn.projw", "attprojw", "attn_proj"), ("attn.projb", "attprojb", "bias"),
                     ("ln2w", "ln2w", "norm"), ("ln2b", "ln2b", "norm"),
                     ("mlp.fcw", "fcw", "mlp_up"), ("mlp.fcb", "fcb", "bias"),
                     ("mlp.projw", "fcprojw", "mlp_down"), ("mlp.projb", "fcprojb", "bias")]
        for l in range(self.L):
            for suffix, pname, role in per_layer:
                p = getattr(self, pname)
                add(f"h{l}.{suffix}", role, p.data[l], (lambda p=p, l=l: p.grad[l]))
        add("lnfw", "norm", self.lnfw.data, lambda: self.lnfw.grad)
        add("lnfb", "norm", self.lnfb.data, lambda: self.lnfb.grad)
        return blocks


def write_checkpoint(model, path, bf16=False):
    """llm.c's checkpoint: version 3 (fp32), or with bf16=True version 5, the
    layout of llm.c's GPU trainer: the same header and tensors, each value
    rounded to bfloat16 (nearest, ties to even) and stored as its 2 bytes."""
    header = np.zeros(256, dtype=np.int32)
    header[:8] = [20240326, 5 if bf16 else 3, model.maxT, model.V, model.L, model.NH, model.C, model.Vp]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        for name in PARAM_NAMES:
            t = getattr(model, name).detach()
            if bf16:
                f.write(t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes())
            else:
                f.write(t.numpy().astype(np.float32).tobytes())


def read_checkpoint(path):
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(256 * 4), dtype=np.int32)
        assert header[0] == 20240326 and header[1] == 3, f"{path}: not a GPT-2 fp32 checkpoint"
        maxT, V, L, NH, C, Vp = (int(x) for x in header[2:8])
        model = GPT2(maxT, V, L, NH, C, Vp)
        for name, shape in param_shapes(maxT, V, L, NH, C, Vp).items():
            n = int(np.prod(shape))
            data = np.frombuffer(f.read(4 * n), dtype=np.float32).reshape(shape)
            getattr(model, name).data.copy_(torch.from_numpy(data.copy()))
    return model


def write_debug(path, B, T, V, x, y, logits, loss, model):
    """test_gpt2's debug file: int32 header[256] = [20240327, 1, B, T, V, 0...],
    int32 x[B*T], int32 y[B*T], float logits[B*T*V], float loss, and every
    parameter tensor's gradient in checkpoint order."""
    header = np.zeros(256, dtype=np.int32)
    header[:5] = [20240327, 1, B, T, V]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(x.numpy().astype(np.int32).tobytes())
        f.write(y.numpy().astype(np.int32).tobytes())
        f.write(logits.detach().numpy().astype(np.float32).tobytes())
        f.write(np.float32(loss.item()).tobytes())
        for name in PARAM_NAMES:
            f.write(getattr(model, name).grad.numpy().astype(np.float32).tobytes())


def read_shard(path):
    """llm.c token shard: 256 int32 header (20240520, 1, count), then uint16 tokens."""
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(256 * 4), dtype=np.int32)
        assert header[0] == 20240520 and header[1] == 1, f"{path}: not a token shard"
        tokens = np.frombuffer(f.read(), dtype=np.uint16)
        assert len(tokens) == header[2]
    return tokens.astype(np.int64)


def write_shard(path, tokens):
    header = np.zeros(256, dtype=np.int32)
    header[:3] = [20240520, 1, len(tokens)]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens, dtype=np.uint16).tobytes())
