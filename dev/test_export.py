"""Tests of dev/export_hf.py (issue 14, item 5).

The exports are loaded by models written here from the published naming
only, not from our C code or the exporter:
  - GPT-2 as transformers' GPT2LMHeadModel names it: transformer.wte/wpe
    (nn.Embedding), transformer.h.N.ln_1, attn.c_attn and attn.c_proj, ln_2,
    mlp.c_fc and mlp.c_proj (Conv1D: weight [in, out], y = x W + b),
    transformer.ln_f, lm_head tied to wte; GELU "gelu_new" (tanh), eps 1e-5
  - ViT as timm's VisionTransformer names it: patch_embed.proj (Conv2d),
    cls_token, pos_embed, blocks.N.norm1, attn.qkv, attn.proj, norm2,
    mlp.fc1, mlp.fc2, norm, head; exact GELU, eps 1e-6, class-token pooling
and each is loaded with load_state_dict(strict=True) from model.safetensors
(read by the reader below, from the format's specification) and from
pytorch_model.bin (torch.load), sizes from config.json. Their logits must
equal the C model's (./test_gpt2 --logits, ./test_vit --logits) on a few
inputs within 1e-4 of the largest logit. Controls: the same loader fed the
exporter's tensors with one weight not transposed, or two layers swapped,
must fail that comparison.

usage: /usr/bin/python3 dev/test_export.py TRAIN_GPT2 TRAIN_VIT   (make run-test-export)
"""
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

GPT, VIT = sys.argv[1], sys.argv[2]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(ROOT)
WORK = tempfile.mkdtemp(prefix="test_export.")
PY = sys.executable
fails = 0
torch.manual_seed(0)


def check(what, cond, detail=""):
    global fails
    print("ok  " if cond else "FAIL", what, "" if cond else detail)
    fails += 0 if cond else 1


def run(args):
    return subprocess.run(args, capture_output=True, text=True)


def read_safetensors(path):
    """name -> float32 tensor, checking the layout the specification gives."""
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    meta = header.pop("__metadata__", {})
    out, ends = {}, []
    for name, info in header.items():
        begin, end = info["data_offsets"]
        assert info["dtype"] == "F32", (name, info["dtype"])
        assert end - begin == 4 * math.prod(info["shape"]), name
        out[name] = torch.from_numpy(np.frombuffer(body[begin:end], dtype="<f4").reshape(info["shape"]).copy())
        ends.append((begin, end))
    ends.sort()
    contiguous = ends[0][0] == 0 and all(a[1] == b[0] for a, b in zip(ends, ends[1:])) and ends[-1][1] == len(body)
    return out, {"header_len": n, "aligned": (8 + n) % 8 == 0, "contiguous": contiguous, "metadata": meta}


# ---------------------------------------------------------------------------
# GPT-2 with transformers' names


class Conv1D(nn.Module):
    """transformers' Conv1D: a linear layer whose weight is stored [in, out]."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.empty(n_out))

    def forward(self, x):
        return x @ self.weight + self.bias


class HFBlock(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.attn = nn.Module()
        self.attn.c_attn, self.attn.c_proj = Conv1D(C, 3 * C), Conv1D(C, C)
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.mlp = nn.Module()
        self.mlp.c_fc, self.mlp.c_proj = Conv1D(C, 4 * C), Conv1D(4 * C, C)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.attn.c_attn(self.ln_1(x)).split(C, dim=-1)
        heads = lambda t: t.view(B, T, self.NH, C // self.NH).transpose(1, 2)  # noqa: E731
        y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True) \
            if hasattr(F, "scaled_dot_product_attention") else None
        if y is None:  # PyTorch 1.13: written out
            att = heads(q) @ heads(k).transpose(-2, -1) / math.sqrt(C // self.NH)
            att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
            y = att @ heads(v)
        x = x + self.attn.c_proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x)), approximate="tanh"))


class HFGPT2(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        V, C = cfg["vocab_size"], cfg["n_embd"]
        self.transformer = nn.Module()
        self.transformer.wte = nn.Embedding(V, C)
        self.transformer.wpe = nn.Embedding(cfg["n_positions"], C)
        self.transformer.h = nn.ModuleList(HFBlock(C, cfg["n_head"]) for _ in range(cfg["n_layer"]))
        self.transformer.ln_f = nn.LayerNorm(C, eps=cfg["layer_norm_epsilon"])
        self.lm_head = nn.Linear(C, V, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied

    def forward(self, idx):
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(idx.shape[1]))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def gpt2_from(state, cfg):
    m = HFGPT2(cfg)
    if "lm_head.weight" not in state:  # safetensors stores the tied weight once
        state = dict(state, **{"lm_head.weight": state["transformer.wte.weight"]})
    m.load_state_dict(state, strict=True)
    return m.eval()


def c_logits_gpt2(ckpt, ids):
    path_in, path_out = f"{WORK}/ids.bin", f"{WORK}/logits.bin"
    with open(path_in, "wb") as f:
        f.write(struct.pack("<2i", *ids.shape) + ids.astype("<i4").tobytes())
    r = run(["./test_gpt2", "--logits", ckpt, path_in, path_out])
    assert r.returncode == 0, r.stderr
    return torch.from_numpy(np.fromfile(path_out, dtype="<f4"))


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


def test_gpt2(ckpt, what):
    out = f"{WORK}/hf_{what}"
    r = run([PY, "dev/export_hf.py", ckpt, out])
    check(f"GPT-2 {what}: exported ({r.stdout.strip()[:90]}...)", r.returncode == 0, r.stderr)
    if r.returncode != 0:
        return
    cfg = json.load(open(f"{out}/config.json"))
    header = np.fromfile(ckpt, dtype="<i4", count=8)
    maxT, V, L, NH, C = (int(x) for x in header[2:7])
    check(f"GPT-2 {what}: config.json has the checkpoint's sizes (V {V}, L {L}, NH {NH}, C {C}, maxT {maxT})",
          (cfg["model_type"], cfg["vocab_size"], cfg["n_layer"], cfg["n_head"], cfg["n_embd"], cfg["n_positions"],
           cfg["activation_function"], cfg["tie_word_embeddings"]) == ("gpt2", V, L, NH, C, maxT, "gelu_new", True))
    st, layout = read_safetensors(f"{out}/model.safetensors")
    check(f"GPT-2 {what}: model.safetensors: {len(st)} F32 tensors back to back, data 8-byte aligned, "
          f"format pt, no lm_head (tied)", layout["aligned"] and layout["contiguous"] and
          layout["metadata"] == {"format": "pt"} and "lm_head.weight" not in st and
          st["transformer.h.0.attn.c_attn.weight"].shape == (C, 3 * C) and st["transformer.wte.weight"].shape == (V, C))
    pt = torch.load(f"{out}/pytorch_model.bin")
    check(f"GPT-2 {what}: pytorch_model.bin: the same tensors, lm_head.weight sharing wte's storage",
          set(pt) == set(st) | {"lm_head.weight"} and all(torch.equal(pt[k], st[k]) for k in st) and
          pt["lm_head.weight"].data_ptr() == pt["transformer.wte.weight"].data_ptr())
    T = min(maxT, 24)
    ids = np.random.RandomState(1).randint(0, V, size=(3, T))
    ref = c_logits_gpt2(ckpt, ids).view(3, T, V)
    with torch.no_grad():
        x = torch.from_numpy(ids)
        for name, state in (("model.safetensors", st), ("pytorch_model.bin", pt)):
            e = rel_err(gpt2_from(state, cfg)(x), ref)
            check(f"GPT-2 {what}: {name} in transformers' GPT2LMHeadModel layout: logits of 3 sequences of {T} "
                  f"= the C model's (rel. error {e:.1e})", e < 1e-4, e)
        # controls: the comparison notices one missing transpose and two layers swapped
        bad = dict(st)
        bad["transformer.h.0.attn.c_proj.weight"] = st["transformer.h.0.attn.c_proj.weight"].T.contiguous()
        e1 = rel_err(gpt2_from(bad, cfg)(x), ref)
        e2 = float("inf")
        if L > 1:
            sw = dict(st)
            for k in [k for k in st if k.startswith("transformer.h.0.")]:
                k1 = k.replace("h.0.", "h.1.")
                sw[k], sw[k1] = st[k1], st[k]
            e2 = rel_err(gpt2_from(sw, cfg)(x), ref)
        check(f"GPT-2 {what}: controls fail the comparison (c_proj not transposed: {e1:.1e}; layers 0 and 1 "
              f"swapped: {e2:.1e})", e1 > 1e-3 and e2 > 1e-3, (e1, e2))


# ---------------------------------------------------------------------------
# ViT with timm's names


class TimmBlock(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.norm1, self.norm2 = nn.LayerNorm(C, eps=1e-6), nn.LayerNorm(C, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv, self.attn.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.mlp = nn.Module()
        self.mlp.fc1, self.mlp.fc2 = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x):
        B, N, C = x.shape
        hs = C // self.NH
        qkv = self.attn.qkv(self.norm1(x)).reshape(B, N, 3, self.NH, hs).permute(2, 0, 3, 1, 4)
        att = (qkv[0] @ qkv[1].transpose(-2, -1) / math.sqrt(hs)).softmax(-1)
        x = x + self.attn.proj((att @ qkv[2]).transpose(1, 2).reshape(B, N, C))
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


class TimmViT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        a = cfg["model_args"]
        C, P, (H, W) = a["embed_dim"], a["patch_size"], a["img_size"]
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(a["in_chans"], C, P, stride=P)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_embed = nn.Parameter(torch.zeros(1, (H // P) * (W // P) + 1, C))
        self.blocks = nn.ModuleList(TimmBlock(C, a["num_heads"]) for _ in range(a["depth"]))
        self.norm = nn.LayerNorm(C, eps=1e-6)
        self.head = nn.Linear(C, cfg["num_classes"])

    def forward(self, img):
        x = self.patch_embed.proj(img).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


def vit_from(state, cfg):
    m = TimmViT(cfg)
    m.load_state_dict(state, strict=True)
    return m.eval()


def test_vit(ckpt, what):
    out = f"{WORK}/timm_{what}"
    r = run([PY, "dev/export_hf.py", ckpt, out])
    check(f"ViT {what}: exported", r.returncode == 0, r.stderr)
    if r.returncode != 0:
        return
    cfg = json.load(open(f"{out}/config.json"))
    H, W, ch, P, C, L, NH, K = (int(x) for x in np.fromfile(ckpt, dtype="<i4", count=10)[2:10])
    a = cfg["model_args"]
    check(f"ViT {what}: config.json has the checkpoint's sizes ({H}x{W}x{ch}, P {P}, C {C}, L {L}, NH {NH}, "
          f"{K} classes; {cfg['architecture']})",
          (a["img_size"], a["patch_size"], a["in_chans"], a["embed_dim"], a["depth"], a["num_heads"],
           cfg["num_classes"]) == ([H, W], P, ch, C, L, NH, K))
    st, layout = read_safetensors(f"{out}/model.safetensors")
    pt = torch.load(f"{out}/pytorch_model.bin")
    check(f"ViT {what}: model.safetensors laid out as specified; pytorch_model.bin holds the same tensors",
          layout["aligned"] and layout["contiguous"] and set(pt) == set(st) and
          all(torch.equal(pt[k], st[k]) for k in st) and st["cls_token"].shape == (1, 1, C))
    imgs = np.random.RandomState(2).randn(3, ch, H, W).astype(np.float32)
    path_in, path_out = f"{WORK}/imgs.bin", f"{WORK}/vlogits.bin"
    with open(path_in, "wb") as f:
        f.write(struct.pack("<i", 3) + imgs.tobytes())
    r = run(["./test_vit", "--logits", ckpt, path_in, path_out])
    ref = torch.from_numpy(np.fromfile(path_out, dtype="<f4")).view(3, K)
    with torch.no_grad():
        x = torch.from_numpy(imgs)
        for name, state in (("model.safetensors", st), ("pytorch_model.bin", pt)):
            e = rel_err(vit_from(state, cfg)(x), ref)
            check(f"ViT {what}: {name} in timm's VisionTransformer layout: logits of 3 images = the C model's "
                  f"(rel. error {e:.1e})", r.returncode == 0 and e < 1e-4, (e, r.stderr))
        bad = dict(st)
        bad["blocks.0.attn.proj.weight"] = st["blocks.0.attn.proj.weight"].T.contiguous()
        e1 = rel_err(vit_from(bad, cfg)(x), ref)
        check(f"ViT {what}: control: attn.proj transposed fails the comparison ({e1:.1e})", e1 > 1e-3, e1)


# ---------------------------------------------------------------------------

test_gpt2("dev/testdata/gpt2_tiny.bin", "tiny")
# a trained model of another vocabulary: the padding rows (Vp 384) are dropped
r = run([GPT, "-e", "d2", "--vocab-size", "300", "-i", "dev/testdata/tiny_tokens.bin", "-b", "2", "-t", "32", "-x", "4",
         "-l", "1e-2", "-s", "-1", "-o", f"{WORK}/run"])
if r.returncode != 0:
    check("train_gpt2 -e d2 --vocab-size 300", False, r.stderr)
else:
    test_gpt2(f"{WORK}/run/model_00000004.bin", "d2-V300-trained")
test_vit("dev/testdata/vit_tiny.bin", "tiny")
r = run([VIT, "-e", "fmnist-tiny", "-x", "3", "-b", "8", "-o", f"{WORK}/vrun"])
vit_ckpts = sorted(f for f in os.listdir(f"{WORK}/vrun") if f.startswith("model_")) if r.returncode == 0 else []
if vit_ckpts:
    test_vit(f"{WORK}/vrun/{vit_ckpts[-1]}", "fmnist-tiny-trained")
else:
    check("train_vit -e fmnist-tiny -x 3", False, (r.stdout + r.stderr)[-400:])

# refusals: a non-empty folder, another file
os.makedirs(f"{WORK}/full")
open(f"{WORK}/full/keep.txt", "w").write("not ours\n")
r = run([PY, "dev/export_hf.py", "dev/testdata/gpt2_tiny.bin", f"{WORK}/full"])
check("a non-empty OUT_DIR is refused in one line and left as it was",
      r.returncode == 1 and r.stderr.count("\n") == 1 and "not an empty folder" in r.stderr and
      os.listdir(f"{WORK}/full") == ["keep.txt"], r.stderr)
r = run([PY, "dev/export_hf.py", "dev/testdata/tiny_tokens.bin", f"{WORK}/x"])
check("a token shard is refused naming it", r.returncode == 1 and "dev/testdata/tiny_tokens.bin: not a GPT-2" in
      r.stderr and not os.path.exists(f"{WORK}/x"), r.stderr)

shutil.rmtree(WORK)
if fails:
    print(f"test_export: {fails} FAILED")
    sys.exit(1)
print("test_export: all passed")
