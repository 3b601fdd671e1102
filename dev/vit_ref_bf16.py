"""Write the bf16 reference for test_vit_bf16.c: the batch of
dev/testdata/vit_tiny_debug.bin through the model dev/testdata/vit_tiny.bin
with the linear layers (the patch embedding, as a matmul of the patches, and
the head included) as the C trainer's PRECISION=bf16 build computes them
(gpt2_torch.Bf16Matmul: every matmul input rounded to bf16, float32 sums).

    /usr/bin/python3 dev/vit_ref_bf16.py      (make vit-bf16-ref)

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


def main():
    model = read_checkpoint(os.path.join(DATA, "vit_tiny.bin"))
    model.bf16 = True
    with open(os.path.join(DATA, "vit_tiny_debug.bin"), "rb") as f:
        header = np.frombuffer(f.read(256 * 4), dtype=np.int32).copy()
        assert header[0] == 20241018 and header[1] == 1, "vit_tiny_debug.bin: bad magic or version"
        B, H, W, ch = (int(v) for v in header[2:6])
        images = np.frombuffer(f.read(B * ch * H * W * 4), dtype=np.float32).reshape(B, ch, H, W).copy()
        labels = np.frombuffer(f.read(B * 4), dtype=np.int32).copy()
    logits, loss = model(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))
    loss.backward()
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
    main()
