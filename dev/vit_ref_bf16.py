"""Write the bf16 reference for test_vit_bf16.c: the batch of
dev/testdata/vit_tiny_debug.bin through the model dev/testdata/vit_tiny.bin
with the linear layers (the patch embedding, as a matmul of the patches, and
the head included) and the attention as the C trainer's PRECISION=bf16 build
computes them (gpt2_torch.Bf16Matmul and Bf16Attention: every matmul input
rounded to bf16, float32 sums).

    /usr/bin/python3 dev/vit_ref_bf16.py      (make vit-bf16-ref)
    /usr/bin/python3 dev/vit_ref_bf16.py --sensitivity

--sensitivity writes nothing; it prints how far PyTorch's own bf16 logits,
loss and gradients move when the weights are multiplied by 1 + 1.2e-7 N(0, 1)
and by 1 + 5e-7 N(0, 1) (about one and four fp32 ulp), as a fraction of the
bf16 effect |bf16 - fp32|: the noise that rounding flips put into
test_vit_bf16's comparison.

Writes dev/testdata/vit_tiny_debug_bf16.bin: the first part of
vit_tiny_debug.bin's format (dev/vit_ref.py): header, images, labels, logits,
loss, every gradient.
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vit_torch import PARAM_NAMES, read_checkpoint  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testdata")


def read_batch():
    with open(os.path.join(DATA, "vit_tiny_debug.bin"), "rb") as f:
        header = np.frombuffer(f.read(256 * 4), dtype=np.int32).copy()
        assert header[0] == 20241018 and header[1] == 1, "vit_tiny_debug.bin: bad magic or version"
        B, H, W, ch = (int(v) for v in header[2:6])
        images = np.frombuffer(f.read(B * ch * H * W * 4), dtype=np.float32).reshape(B, ch, H, W).copy()
        labels = np.frombuffer(f.read(B * 4), dtype=np.int32).copy()
    return header, images, labels


def run(bf16, images, labels, perturb_seed=None, scale=0.0):
    model = read_checkpoint(os.path.join(DATA, "vit_tiny.bin"))
    model.bf16 = bf16
    if perturb_seed is not None:  # every weight times 1 + scale N(0, 1)
        g = torch.Generator().manual_seed(perturb_seed)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1 + scale * torch.randn(p.shape, generator=g))
    logits, loss = model(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))
    loss.backward()
    return model, logits, loss


def sensitivity():
    """How far PyTorch's own bf16 results move when the weights move by about
    one fp32 ulp (1.2e-7) and four (5e-7), as a fraction of the bf16 effect
    (bf16 - fp32): the logits (largest difference), the loss, and all
    gradients together (L2)."""
    _, images, labels = read_batch()
    ref, ref_logits, ref_loss = run(True, images, labels)
    fp32, fp32_logits, fp32_loss = run(False, images, labels)

    def grads(m):
        return torch.cat([getattr(m, n).grad.flatten() for n in PARAM_NAMES])

    for scale, seed in ((scale, seed) for scale in (1.2e-7, 5e-7) for seed in range(1, 9)):
        moved, logits, loss = run(True, images, labels, seed, scale)
        print(f"perturbation {scale:.1e} seed {seed}: logits {(logits - ref_logits).abs().max() / (fp32_logits - ref_logits).abs().max():.2f} "
              f"loss {abs(loss.item() - ref_loss.item()) / abs(fp32_loss.item() - ref_loss.item()):.2f} "
              f"all grads {(grads(moved) - grads(ref)).norm() / (grads(fp32) - grads(ref)).norm():.2f}")


def main():
    header, images, labels = read_batch()
    model, logits, loss = run(True, images, labels)
    out = os.path.join(DATA, "vit_tiny_debug_bf16.bin")
    with open(out, "wb") as f:
        f.write(header.tobytes())
        f.write(images.tobytes())
        f.write(labels.tobytes())
        f.write(logits.detach().numpy().astype(np.float32).tobytes())
        f.write(np.float32(loss.item()).tobytes())
        for name in PARAM_NAMES:
            f.write(getattr(model, name).grad.numpy().astype(np.float32).tobytes())
    print(f"vit_ref_bf16: wrote {out} (loss {loss.item():.6f})")


if __name__ == "__main__":
    if sys.argv[1:] == ["--sensitivity"]:
        sensitivity()
    else:
        main()
