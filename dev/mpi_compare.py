#!/usr/bin/env python3
"""Compare the checkpoints of two runs for dev/test_mpi.sh (standard library only).

  mpi_compare.py gpt2 A.bin B.bin START.bin TOL
      GPT-2 checkpoints (llm.c format): for each parameter tensor, max |a - b|
      divided by the size of the update, max |a - start|; fails above TOL.
      The attention's key bias is the exception: its gradient is zero in exact
      arithmetic (a softmax does not change when every score of a query moves
      by the same amount), so what it gets is rounding noise, which AdamW,
      SinkGD's AdamW blocks and SlimAdam normalise into steps of the size eps
      allows. Two runs whose gradients differ in rounding move it
      differently; it is held to 5e-2 of the model's largest update instead.
  mpi_compare.py vit A.bin B.bin START.bin TOL
      the same for ViT checkpoints (train_vit.c's format)
  mpi_compare.py optim A.bin B.bin TOL
      optimizer state files: the same header (blocks, layout) byte for byte,
      and the state within TOL of its largest value
Prints one line: the worst relative difference, and whether the files are equal
byte for byte.
"""
import struct
import sys
from array import array


def floats(data, start, count):
    a = array("f")
    a.frombytes(data[start:start + 4 * count])
    if sys.byteorder != "little":
        a.byteswap()
    return a


LAYER_NAMES = ["ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb", "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb"]


def layer_sizes(L, C):
    return [L * C, L * C, 3 * L * C * C, 3 * L * C, L * C * C, L * C, L * C, L * C, 4 * L * C * C, 4 * L * C,
            4 * L * C * C, L * C]


def gpt2_tensors(path):
    data = open(path, "rb").read()
    h = struct.unpack("<256i", data[:1024])
    maxT, L, C, Vp = h[2], h[4], h[6], h[7]
    sizes = [Vp * C, maxT * C] + layer_sizes(L, C) + [C, C]
    names = ["wte", "wpe"] + LAYER_NAMES + ["lnfw", "lnfb"]
    return split_tensors(path, data, names, sizes, L, C)


def vit_tensors(path):
    data = open(path, "rb").read()
    h = struct.unpack("<256i", data[:1024])
    H, W, ch, P, C, L, K = h[2], h[3], h[4], h[5], h[6], h[7], h[9]
    T = (H // P) * (W // P) + 1
    sizes = [C * ch * P * P, C, C, T * C] + layer_sizes(L, C) + [C, C, K * C, K]
    names = ["patchw", "patchb", "cls", "pos"] + LAYER_NAMES + ["lnfw", "lnfb", "headw", "headb"]
    return split_tensors(path, data, names, sizes, L, C)


def split_tensors(path, data, names, sizes, L, C):
    if 1024 + 4 * sum(sizes) != len(data):
        sys.exit("%s: %d bytes, the header says %d" % (path, len(data), 1024 + 4 * sum(sizes)))
    out, at = [], 1024
    for n, s in zip(names, sizes):
        t = floats(data, at, s)
        if n == "qkvb":  # [L, 3, C]: the query, key and value biases apart
            for part, name in enumerate(("qkvb.q", "qkvb.k", "qkvb.v")):
                out.append((name, array("f", [t[l * 3 * C + part * C + c] for l in range(L) for c in range(C)])))
        else:
            out.append((n, t))
        at += 4 * s
    return out


def compare_params(ta, tb, t0):
    """the worst relative difference over the tensors but the key bias, and the key bias's
    difference relative to the model's largest update"""
    worst, worst_name, largest, key_err = 0.0, "", 0.0, 0.0
    for (n, a), (_, b), (_, p0) in zip(ta, tb, t0):
        upd = max((abs(x - y) for x, y in zip(a, p0)), default=0.0)
        err = max((abs(x - y) for x, y in zip(a, b)), default=0.0)
        largest = max(largest, upd)
        if n == "qkvb.k":
            key_err = err
            continue
        rel = err / upd if upd > 0 else (0.0 if err == 0 else float("inf"))
        if rel > worst:
            worst, worst_name = rel, n
    return worst, worst_name, (key_err / largest if largest > 0 else 0.0)


def optim_parts(path):
    data = open(path, "rb").read()
    magic, version = struct.unpack("<ii", data[:8])
    at = 8 + 16
    step, nb, nf = struct.unpack("<qiq", data[at:at + 20])
    at += 20 + nb * (64 + 8)
    if version >= 2:
        (nl,) = struct.unpack("<i", data[at:at + 4])
        at += 4 + 4 * nl
    if len(data) != at + 4 * nf:
        sys.exit("%s: %d bytes, the header says %d" % (path, len(data), at + 4 * nf))
    return data[:at], floats(data, at, nf)


def main():
    kind = sys.argv[1]
    if kind in ("gpt2", "vit"):
        a, b, p0, tol = sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
        tensors = gpt2_tensors if kind == "gpt2" else vit_tensors
        ta, tb, t0 = tensors(a), tensors(b), tensors(p0)
        worst, name, key = compare_params(ta, tb, t0)
        same = open(a, "rb").read() == open(b, "rb").read()
        print("max |a-b| / max |a-start| per tensor %.2e (%s)%s%s" % (
            worst, name or "-", "; key bias %.1e of the largest update" % key,
            ", bitwise equal" if same else ""))
        sys.exit(0 if worst <= tol and key <= 5e-2 else 1)
    if kind == "optim":
        a, b, tol = sys.argv[2], sys.argv[3], float(sys.argv[4])
        ha, sa = optim_parts(a)
        hb, sb = optim_parts(b)
        if ha != hb:
            print("the headers differ (blocks, layout or step)")
            sys.exit(1)
        scale = max((abs(x) for x in sa), default=0.0)
        err = max((abs(x - y) for x, y in zip(sa, sb)), default=0.0)
        rel = err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))
        same = open(a, "rb").read() == open(b, "rb").read()
        print("same header; state max |a-b| / max |a| %.2e%s" % (rel, ", bitwise equal" if same else ""))
        sys.exit(0 if rel <= tol else 1)
    sys.exit("usage: mpi_compare.py gpt2|vit|optim ...")


if __name__ == "__main__":
    main()
