"""The five optimizers of docs/optimizers_spec.md in PyTorch, written from
the spec (and the papers where it is silent), independently of optim/*.c, as
the reference the C optimizers are tested against.

    AdamW     torch.optim.AdamW (spec section 1)
    SGDM      torch.optim.SGD with momentum, coupled L2 decay (section 2)
    SGD-SaI   SGDSaI below (section 3)
    SinkGD    SinkGD below (section 4): Sinkhorn-normalised gradient on the
              hidden matrices, torch.optim.AdamW on everything else
    SlimAdam  SlimAdam below (section 5): AdamW with v averaged over dims K

Every optimizer works on BLOCKS: one tensor of one layer (a layer slice of the
C model's stacked tensors), as gpt2_torch.GPT2.param_blocks() lists them:
(name, role, view of the parameter, getter of the gradient's view). wte's block
is its first V rows: padding rows are storage and never touched. Blocks with
ndim >= 2 are in the weight-decay group, 1-D blocks are not. SinkGD and
SlimAdam split a fused qkv block [3C,C] into three [C,C] blocks named
<name>.q, <name>.k, <name>.v (roles attn_q, attn_k, attn_v); SGD-SaI does not.

Usage: opt = make_optimizer(name, model.param_blocks(), cfg); after backward,
opt.step(lr) with the schedule's lr. opt.state_vector() returns the state in
the C layout (see each class), opt.state_floats() its length.
"""
import json
import math
from dataclasses import dataclass, asdict

import numpy as np
import torch

OPTIMIZERS = ("adamw", "sgdm", "sgd_sai", "sinkgd", "slimadam")

# SinkGD's hidden matrices: everything else goes to AdamW
SINKGD_ROLES = ("attn_q", "attn_k", "attn_v", "attn_proj", "mlp_up", "mlp_down")

# SlimAdam's default rules (spec section 5, the paper's Table 1): role -> K
SLIMADAM_DEFAULT_RULES = {
    "token_embedding": (1,), "position_embedding": (1,),
    "attn_q": (1,), "attn_k": (1,), "attn_v": (0,), "attn_proj": (0,),
    "mlp_up": (0,), "mlp_down": (0,),
    "patch_embedding": (1,), "head": (1,), "cls_token": (1,),
    "norm": None, "bias": None,
}


@dataclass
class OptimConfig:
    """Hyperparameters; each optimizer reads the fields it uses (as in optim/optim.h)."""
    lr: float = 6e-4
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    momentum: float = 0.9
    nesterov: bool = False
    gsnr: str = "ratio"          # SGD-SaI: "ratio" (norm/std) or "sqrtn"
    gsnr_max_norm: bool = False  # SGD-SaI: divide every g-SNR by the largest
    sinkgd_iters: int = 5
    sinkgd_scale: float = 0.05
    slimadam_rules: str = ""     # SlimAdam: rules JSON path, "" = default rules

    def to_dict(self):
        return asdict(self)


def default_config(name):
    """The spec's defaults for one optimizer. Where the spec gives none (SGDM's lr
    and wd, SGD-SaI's lr) the values here are this reference's choice; tests
    pass those explicitly."""
    if name in ("adamw", "slimadam"):
        return OptimConfig(lr=6e-4, weight_decay=0.1, beta1=0.9, beta2=0.95, eps=1e-8)
    if name == "sgdm":
        return OptimConfig(lr=1e-2, weight_decay=0.0, momentum=0.9, nesterov=False)
    if name == "sgd_sai":
        return OptimConfig(lr=1e-3, weight_decay=0.1, momentum=0.9, eps=1e-8)
    if name == "sinkgd":
        # the papers' setting: global lr 0.02, wd 0, L 5, Adam betas (0.9, 0.999)
        return OptimConfig(lr=0.02, weight_decay=0.0, beta1=0.9, beta2=0.999, eps=1e-8,
                           sinkgd_iters=5, sinkgd_scale=0.05)
    raise ValueError(f"unknown optimizer '{name}' (one of {', '.join(OPTIMIZERS)})")


# ----------------------------------------------------------------------------
# blocks

class Block:
    """One parameter block: a view into the model's storage (updated in place)
    and a getter of its gradient (the same view of the gradient)."""

    def __init__(self, name, role, param, grad_fn):
        self.name, self.role, self.param, self.grad_fn = name, role, param, grad_fn
        assert param.dim() in (1, 2), f"{name}: blocks are 1-D or 2-D"
        self.rows = param.shape[0]
        self.cols = param.shape[1] if param.dim() == 2 else 1
        self.decay = param.dim() >= 2  # nanoGPT's weight-decay rule
        self.numel = self.rows * self.cols

    def grad(self):
        g = self.grad_fn()
        return torch.zeros_like(self.param) if g is None else g

    def param2d(self):
        return self.param.view(self.rows, self.cols)

    def __repr__(self):
        return f"Block({self.name}, {self.role}, [{self.rows},{self.cols}])"


def to_blocks(blocks):
    """Accept Block objects or (name, role, tensor, grad_fn) tuples."""
    return [b if isinstance(b, Block) else Block(*b) for b in blocks]


def split_qkv(blocks):
    """Fused qkv blocks [3C,C] become three [C,C] row blocks .q, .k, .v."""
    out = []
    for b in to_blocks(blocks):
        if b.role != "attn_qkv":
            out.append(b)
            continue
        assert b.rows % 3 == 0, f"{b.name}: qkv rows {b.rows} not divisible by 3"
        C = b.rows // 3
        for i, part in enumerate("qkv"):
            lo, hi = i * C, (i + 1) * C
            out.append(Block(f"{b.name}.{part}", f"attn_{part}", b.param[lo:hi],
                             (lambda gf=b.grad_fn, lo=lo, hi=hi: None if gf() is None else gf()[lo:hi])))
    return out


def _flat(tensors):
    if not tensors:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([t.detach().reshape(-1).numpy().astype(np.float32) for t in tensors])


# ----------------------------------------------------------------------------
# AdamW and SGDM: PyTorch's own

class AdamW:
    """torch.optim.AdamW per block, wd on the decayed group only.
    State (C layout): [m of every block | v of every block], block order."""
    name = "adamw"

    def __init__(self, blocks, cfg):
        self.blocks = to_blocks(blocks)
        self.cfg = cfg
        groups = [{"params": [b.param for b in self.blocks if b.decay], "weight_decay": cfg.weight_decay},
                  {"params": [b.param for b in self.blocks if not b.decay], "weight_decay": 0.0}]
        groups = [g for g in groups if g["params"]]
        self.opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                                     foreach=False)
        self.t = 0

    def step(self, lr):
        self.t += 1
        for b in self.blocks:
            b.param.grad = b.grad()
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.step()

    def state_vector(self):
        st = self.opt.state
        return np.concatenate([_flat([st[b.param]["exp_avg"] for b in self.blocks]),
                               _flat([st[b.param]["exp_avg_sq"] for b in self.blocks])])

    def state_floats(self):
        return 2 * sum(b.numel for b in self.blocks)


class SGDM:
    """torch.optim.SGD: momentum, dampening 0, coupled L2 decay on the decayed group.
    State (C layout): [buf of every block], block order."""
    name = "sgdm"

    def __init__(self, blocks, cfg):
        self.blocks = to_blocks(blocks)
        self.cfg = cfg
        groups = [{"params": [b.param for b in self.blocks if b.decay], "weight_decay": cfg.weight_decay},
                  {"params": [b.param for b in self.blocks if not b.decay], "weight_decay": 0.0}]
        groups = [g for g in groups if g["params"]]
        self.opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, dampening=0.0,
                                   nesterov=bool(cfg.nesterov), foreach=False)
        self.t = 0

    def step(self, lr):
        self.t += 1
        for b in self.blocks:
            b.param.grad = b.grad()
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.step()

    def state_vector(self):
        return _flat([self.opt.state[b.param]["momentum_buffer"] for b in self.blocks])

    def state_floats(self):
        return sum(b.numel for b in self.blocks)


# ----------------------------------------------------------------------------
# SGD-SaI

def gsnr_ratio(g, eps):
    """g-SNR of one gradient block: norm / (sample std + eps), sums in double."""
    x = g.detach().reshape(-1).to(torch.float64)
    n = x.numel()
    norm = math.sqrt(float((x * x).sum()))
    if n > 1:
        mean = float(x.sum()) / n
        std = math.sqrt(float(((x - mean) ** 2).sum()) / (n - 1))
    else:
        std = 0.0
    return norm / (std + eps)


class SGDSaI:
    """SGD-SaI (spec section 3). g-SNR per block (fused qkv kept whole), computed
    once from the first gradient and frozen; momentum buf is an EMA.
    State (C layout): [buf of every block | gsnr of every block (1 float each)]."""
    name = "sgd_sai"

    def __init__(self, blocks, cfg, verbose=False):
        self.blocks = to_blocks(blocks)
        self.cfg = cfg
        self.verbose = verbose
        self.t = 0
        self.buf = [torch.zeros_like(b.param) for b in self.blocks]
        self.gsnr = [0.0] * len(self.blocks)  # float32 values once set

    def _init_gsnr(self, grads):
        cfg = self.cfg
        if cfg.gsnr == "ratio":
            vals = [gsnr_ratio(g, cfg.eps) for g in grads]
        elif cfg.gsnr == "sqrtn":
            vals = [math.sqrt(b.numel) for b in self.blocks]
        else:
            raise ValueError(f"unknown gsnr mode '{cfg.gsnr}' (ratio or sqrtn)")
        if cfg.gsnr_max_norm:
            mx = max(vals)
            vals = [v / mx if mx > 0 else 0.0 for v in vals]
        self.gsnr = [float(np.float32(v)) for v in vals]
        if self.verbose:
            print(f"SGD-SaI g-SNR ({cfg.gsnr}{', max-normalised' if cfg.gsnr_max_norm else ''}):")
            for b, v in zip(self.blocks, self.gsnr):
                print(f"  {b.name:24s} N {b.numel:10d}  gsnr {v:.6e}")

    def step(self, lr):
        cfg = self.cfg
        self.t += 1
        grads = [b.grad() for b in self.blocks]
        if self.t == 1:
            self._init_gsnr(grads)
        mu = cfg.momentum
        for b, g, buf, s in zip(self.blocks, grads, self.buf, self.gsnr):
            with torch.no_grad():
                if self.t == 1:
                    buf.copy_(g)
                else:
                    buf.mul_(mu).add_(g, alpha=1.0 - mu)
                if b.decay:
                    b.param.mul_(1.0 - lr * cfg.weight_decay)
                step = float(np.float32(lr) * np.float32(s))  # lr*gsnr, in fp32 as the spec's arithmetic
                b.param.add_(buf, alpha=-step)

    def state_vector(self):
        return np.concatenate([_flat(self.buf), np.asarray(self.gsnr, dtype=np.float32)])

    def state_floats(self):
        return sum(b.numel for b in self.blocks) + len(self.blocks)


# ----------------------------------------------------------------------------
# SinkGD

def sinkhorn(G, iters):
    """L alternating normalisations of a [m,n] matrix: every row to norm sqrt(n),
    then every column to norm sqrt(m); norms clamped below at 1e-8. Rows first,
    columns last."""
    X = G.detach().clone().to(torch.float32)
    m, n = X.shape
    sn, sm = math.sqrt(n), math.sqrt(m)
    for _ in range(iters):
        rn = torch.sqrt((X * X).sum(dim=1, keepdim=True)).clamp_min(1e-8)
        X = sn * X / rn
        cn = torch.sqrt((X * X).sum(dim=0, keepdim=True)).clamp_min(1e-8)
        X = sm * X / cn
    return X


class SinkGD:
    """SinkGD (spec section 4). Hidden matrices (q, k, v row blocks, attention
    output projection, MLP up and down): p = p*(1 - a*lr*wd) - a*lr*sinkhorn(G),
    stateless. Every other block: torch.optim.AdamW at the global lr.
    State (C layout): [m of every AdamW block | v of every AdamW block], in the
    order of the split block list."""
    name = "sinkgd"

    def __init__(self, blocks, cfg):
        self.blocks = split_qkv(blocks)
        self.cfg = cfg
        self.hidden = [b for b in self.blocks if b.role in SINKGD_ROLES]
        for b in self.hidden:
            assert b.param.dim() == 2, f"{b.name}: SinkGD matrices are 2-D"
        self.adam_blocks = [b for b in self.blocks if b.role not in SINKGD_ROLES]
        self.adamw = AdamW(self.adam_blocks, cfg) if self.adam_blocks else None
        self.t = 0

    def step(self, lr):
        cfg = self.cfg
        self.t += 1
        if self.adamw is not None:
            self.adamw.step(lr)
        a_lr = cfg.sinkgd_scale * lr
        for b in self.hidden:
            X = sinkhorn(b.grad(), cfg.sinkgd_iters)
            with torch.no_grad():
                if b.decay:
                    b.param.mul_(1.0 - a_lr * cfg.weight_decay)
                b.param.add_(X, alpha=-a_lr)

    def state_vector(self):
        return self.adamw.state_vector() if self.adamw is not None else np.zeros(0, np.float32)

    def state_floats(self):
        return 2 * sum(b.numel for b in self.adam_blocks)


# ----------------------------------------------------------------------------
# SlimAdam

def parse_rule(name, K):
    """A rules-file entry: [1], [0], [0,1] (any order), or null / [] for none."""
    if K is None or (isinstance(K, list) and len(K) == 0):
        return None
    if not isinstance(K, list) or any(k not in (0, 1) for k in K) or len(set(K)) != len(K):
        raise ValueError(f"slimadam rules: block {name}: K must be [0], [1], [0,1], [] or null, got {K!r}")
    return tuple(sorted(K))


def load_slimadam_rules(path, blocks):
    """Rules JSON {block name: K}. Strict: every block (with qkv split) must be
    listed and every name must be a block, so that no rule is silently assumed."""
    with open(path) as f:
        raw = json.load(f)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: rules must be a JSON object mapping block name to K")
    names = [b.name for b in blocks]
    missing = [n for n in names if n not in raw]
    unknown = [n for n in raw if n not in names]
    if missing or unknown:
        raise ValueError(f"{path}: blocks without a rule: {missing}; names that are not blocks: {unknown}")
    return {n: parse_rule(n, raw[n]) for n in names}


def default_slimadam_rules(blocks):
    return {b.name: SLIMADAM_DEFAULT_RULES[b.role] for b in blocks}


class SlimAdam:
    """SlimAdam (spec section 5). Every block is seen as [rows, cols] (1-D blocks
    as [rows, 1]); v is kept in the compressed shape of mean over K with the
    dims kept as size 1: K=(1,) -> rows floats, (0,) -> cols, (0,1) -> 1,
    none -> rows*cols (plain AdamW).
    State (C layout): [m of every block (full) | v of every block (compressed)],
    in the order of the split block list."""
    name = "slimadam"
    _adamw_denominator = False  # self-check only: AdamW's sqrt(v)/sqrt(bc2) instead of the spec's sqrt(v/bc2)

    def __init__(self, blocks, cfg, rules=None):
        self.blocks = split_qkv(blocks)
        self.cfg = cfg
        if rules is None:
            rules = load_slimadam_rules(cfg.slimadam_rules, self.blocks) if cfg.slimadam_rules \
                else default_slimadam_rules(self.blocks)
        self.rules = [rules[b.name] for b in self.blocks]
        self.m = [torch.zeros(b.rows, b.cols) for b in self.blocks]
        self.v = []
        for b, K in zip(self.blocks, self.rules):
            rows = 1 if K is not None and 0 in K else b.rows
            cols = 1 if K is not None and 1 in K else b.cols
            self.v.append(torch.zeros(rows, cols))
        self.t = 0

    def step(self, lr):
        cfg = self.cfg
        self.t += 1
        b1, b2, eps, t = cfg.beta1, cfg.beta2, cfg.eps, self.t
        bc1 = 1.0 - b1 ** t
        bc2 = 1.0 - b2 ** t
        for b, K, m, v in zip(self.blocks, self.rules, self.m, self.v):
            g = b.grad().reshape(b.rows, b.cols)
            p = b.param2d()
            with torch.no_grad():
                m.mul_(b1).add_(g, alpha=1.0 - b1)
                if K is None:
                    v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
                else:
                    v.mul_(b2).add_((g * g).mean(dim=K, keepdim=True), alpha=1.0 - b2)
                if b.decay:
                    p.mul_(1.0 - lr * cfg.weight_decay)
                if self._adamw_denominator:
                    denom = (v.sqrt() / math.sqrt(bc2)).add_(eps)
                else:
                    denom = (v / bc2).sqrt().add_(eps)
                p.addcdiv_(m, denom.expand_as(m), value=-(lr / bc1))

    def state_vector(self):
        return np.concatenate([_flat(self.m), _flat(self.v)])

    def state_floats(self):
        return sum(b.numel for b in self.blocks) + sum(v.numel() for v in self.v)

    def rules_table(self):
        return [(b.name, list(K) if K is not None else None, v.numel())
                for b, K, v in zip(self.blocks, self.rules, self.v)]


# ----------------------------------------------------------------------------

def make_optimizer(name, blocks, cfg, verbose=False):
    if name == "adamw":
        return AdamW(blocks, cfg)
    if name == "sgdm":
        return SGDM(blocks, cfg)
    if name == "sgd_sai":
        return SGDSaI(blocks, cfg, verbose=verbose)
    if name == "sinkgd":
        return SinkGD(blocks, cfg)
    if name == "slimadam":
        return SlimAdam(blocks, cfg)
    raise ValueError(f"unknown optimizer '{name}' (one of {', '.join(OPTIMIZERS)})")
