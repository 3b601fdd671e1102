"""Write the Python references for the image loader's augmentation (test_images.c):

1. RandomResizedCrop boxes from torchvision's own RandomResizedCrop.get_params,
   with torch's random draws replaced by the project's RNG (common/rng.h,
   reimplemented below): each torch.empty(1).uniform_(a, b) takes the next
   rng_uniform u and gives float32(a + (b - a) u), each torch.randint(0, n)
   the next rng_below(n). The C code (image_rrc_box) makes the same draws, so
   the boxes must agree one for one, and the RNG must end in the same state.
   A second, independent reimplementation of torchvision's algorithm (plain
   Python, correctly rounded float32 exp) is checked against the first here.
2. timm's Mixup on given draws (lam, CutMix or not, the box centre), written
   from timm.data.mixup (rand_bbox, cutmix_bbox_and_lam with correct_lam,
   Mixup._mix_batch in 'batch' mode, mixup_target with label smoothing) with
   PyTorch tensors: the mixed images, the corrected lam and box, the targets.

    /usr/bin/python3 dev/aug_ref.py [outdir]     (default dev/testdata; needs python3-torchvision)

Writes aug_ref.bin, little-endian:
  int32 header[4] = [20261203, 1, RRC cases, Mixup cases]
  RRC case:   uint64 seed; int32 H, W, count, 0; float64 scale[2], ratio[2];
              int32 boxes[count][4] (top i, left j, h, w); uint64 RNG state after the last box
  Mixup case: int32 B, C, H, W, K, cutmix, cy, cx; float64 lam, smoothing; int32 labels[B];
              float32 images[B][C][H][W]; int32 yl, yh, xl, xh; float64 corrected lam;
              float32 mixed images[B][C][H][W]; float32 targets[B][K]
"""
import math
import os
import struct
import sys

import numpy as np
import torch
import torchvision.transforms as T

M64 = (1 << 64) - 1


class Rng:
    """common/rng.h: splitmix64 seeding, xorshift64*, rng_uniform, rng_below."""

    def __init__(self, seed):
        z = (seed + 0x9E3779B97F4A7C15) & M64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        z ^= z >> 31
        self.state = z if z else 0x2545F4914F6CDD1D

    def u32(self):
        x = self.state
        x ^= x >> 12
        x ^= (x << 25) & M64
        x ^= x >> 27
        self.state = x
        return ((x * 0x2545F4914F6CDD1D) & M64) >> 32

    def uniform(self):
        return (self.u32() >> 8) / 16777216.0

    def below(self, n):
        limit = 0xFFFFFFFF - 0xFFFFFFFF % n
        while True:
            r = self.u32()
            if r < limit:
                return r % n


class _Uniform:
    def __init__(self, rng):
        self.rng = rng

    def uniform_(self, a, b):
        u = self.rng.uniform()
        return torch.tensor([float(a) + (float(b) - float(a)) * u], dtype=torch.float32)


def torchvision_boxes(rng, H, W, scale, ratio, count):
    """torchvision's get_params itself, its draws from rng."""
    img = torch.zeros(1, H, W)
    real_empty, real_randint = torch.empty, torch.randint
    torch.empty = lambda *a, **k: _Uniform(rng)
    torch.randint = lambda low, high, size: torch.tensor([low + rng.below(high - low)])
    try:
        return [T.RandomResizedCrop.get_params(img, list(scale), list(ratio)) for _ in range(count)]
    finally:
        torch.empty, torch.randint = real_empty, real_randint


def f32(x):
    return float(np.float32(x))


def independent_boxes(rng, H, W, scale, ratio, count):
    """The same algorithm written out again from its description, no torch."""
    out = []
    lr = [f32(math.log(f32(r))) for r in ratio]
    for _ in range(count):
        for _attempt in range(10):
            s = f32(scale[0] + (scale[1] - scale[0]) * rng.uniform())
            a = f32(math.exp(f32(lr[0] + (lr[1] - lr[0]) * rng.uniform())))
            w, h = round(math.sqrt(H * W * s * a)), round(math.sqrt(H * W * s / a))
            if 0 < w <= W and 0 < h <= H:
                out.append((rng.below(H - h + 1), rng.below(W - w + 1), h, w))
                break
        else:
            if W / H < min(ratio):
                w, h = W, round(W / min(ratio))
            elif W / H > max(ratio):
                h, w = H, round(H * max(ratio))
            else:
                w, h = W, H
            out.append(((H - h) // 2, (W - w) // 2, h, w))
    return out


# --- timm.data.mixup, with the random centre and lam given ---------------------------------
def one_hot(x, num_classes, on_value=1.0, off_value=0.0):
    x = x.long().view(-1, 1)
    return torch.full((x.size()[0], num_classes), off_value).scatter_(1, x, on_value)


def mixup_target(target, num_classes, lam=1.0, smoothing=0.0):
    off_value = smoothing / num_classes
    on_value = 1.0 - smoothing + off_value
    y1 = one_hot(target, num_classes, on_value=on_value, off_value=off_value)
    y2 = one_hot(target.flip(0), num_classes, on_value=on_value, off_value=off_value)
    return y1 * lam + y2 * (1.0 - lam)


def rand_bbox(img_shape, lam, cy, cx):
    ratio = np.sqrt(1 - lam)
    img_h, img_w = img_shape[-2:]
    cut_h, cut_w = int(img_h * ratio), int(img_w * ratio)
    yl = np.clip(cy - cut_h // 2, 0, img_h)
    yh = np.clip(cy + cut_h // 2, 0, img_h)
    xl = np.clip(cx - cut_w // 2, 0, img_w)
    xh = np.clip(cx + cut_w // 2, 0, img_w)
    return yl, yh, xl, xh


def cutmix_bbox_and_lam(img_shape, lam, cy, cx):
    yl, yu, xl, xu = rand_bbox(img_shape, lam, cy, cx)
    bbox_area = (yu - yl) * (xu - xl)
    lam = 1.0 - bbox_area / float(img_shape[-2] * img_shape[-1])
    return (yl, yu, xl, xu), lam


def mix_batch(x, lam, use_cutmix, cy, cx):
    box = (0, 0, 0, 0)
    if use_cutmix:
        box, lam = cutmix_bbox_and_lam(x.shape, lam, cy, cx)
        yl, yh, xl, xh = box
        x[:, :, yl:yh, xl:xh] = x.flip(0)[:, :, yl:yh, xl:xh]
    else:
        x_flipped = x.flip(0).mul_(1.0 - lam)
        x.mul_(lam).add_(x_flipped)
    return box, lam


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "testdata")
    default_scale, default_ratio = (0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0)
    rrc_cases = [
        (1, 256, 256, default_scale, default_ratio, 3000),
        (2, 224, 300, default_scale, default_ratio, 3000),
        (3, 7, 5, default_scale, default_ratio, 2000),
        (4, 10, 100, default_scale, default_ratio, 1000),   # wide: the fallback clamps the ratio
        (5, 100, 10, default_scale, default_ratio, 1000),   # tall
        (6, 2, 2, default_scale, default_ratio, 1000),      # tiny: the fallback takes the whole image
        (7, 64, 48, (0.35, 1.0), (0.5, 2.0), 2000),
    ]
    path = os.path.join(outdir, "aug_ref.bin")
    torch.manual_seed(20261203)
    mix_cases = [  # B, C, H, W, K, cutmix, cy, cx, lam, smoothing
        (4, 3, 5, 6, 7, 0, 0, 0, 0.3172, 0.1),
        (6, 2, 8, 9, 5, 1, 1, 8, 0.62, 0.0),     # the box clipped at the top and the right
        (4, 1, 8, 8, 3, 1, 4, 4, 0.05, 0.1),     # a large box
        (2, 3, 4, 4, 1000, 0, 0, 0, 0.81, 0.1),  # ImageNet's classes
    ]
    with open(path, "wb") as f:
        f.write(struct.pack("<4i", 20261203, 1, len(rrc_cases), len(mix_cases)))
        for seed, H, W, scale, ratio, count in rrc_cases:
            rng = Rng(seed)
            boxes = torchvision_boxes(rng, H, W, scale, ratio, count)
            rng2 = Rng(seed)
            other = independent_boxes(rng2, H, W, scale, ratio, count)
            same = sum(a == b for a, b in zip(boxes, other))
            assert rng.state == rng2.state and same == count, f"case {seed}: {same} of {count} boxes agree"
            fallbacks = sum(1 for (i, j, h, w) in boxes if (i, j) == ((H - h) // 2, (W - w) // 2))
            print(f"RRC {H}x{W} scale {scale} ratio {ratio}: {count} boxes, the two Python versions agree; "
                  f"{fallbacks} centred (fallbacks among them)")
            f.write(struct.pack("<Q4i4d", seed, H, W, count, 0, *scale, *ratio))
            f.write(np.array(boxes, dtype="<i4").tobytes())
            f.write(struct.pack("<Q", rng.state))
        for B, C, H, W, K, cut, cy, cx, lam, smoothing in mix_cases:
            labels = torch.randint(0, K, (B,))
            x = torch.randn(B, C, H, W)
            f.write(struct.pack("<8i2d", B, C, H, W, K, cut, cy, cx, lam, smoothing))
            f.write(labels.numpy().astype("<i4").tobytes())
            f.write(x.numpy().astype("<f4").tobytes())
            box, lam2 = mix_batch(x, lam, cut, cy, cx)
            targets = mixup_target(labels, K, lam2, smoothing)
            f.write(struct.pack("<4id", *[int(v) for v in box], lam2))
            f.write(x.numpy().astype("<f4").tobytes())
            f.write(targets.numpy().astype("<f4").tobytes())
            print(f"Mixup B {B} {'CutMix' if cut else 'mixup'} lam {lam} -> box {tuple(int(v) for v in box)}, lam {lam2:.6f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
