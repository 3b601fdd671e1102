#!/usr/bin/python3
"""A tiny ImageNet-shaped image folder for the ViT script's smoke run.

Writes OUT/train/<class>/*.png and OUT/val/<class>/*.png (ImageNet's layout,
which ./prepare_images reads) from the first images of each Fashion-MNIST class
in Debian's dataset-fashion-mnist package. The pictures are 28x28 greyscale;
./prepare_images then scales them to 224x224x3, so the trainer sees exactly the
shapes of the real run, only far fewer images and 10 classes instead of 1000.

Needs Debian's python3 with numpy and matplotlib (python3-numpy,
python3-matplotlib); nothing from PyPI.

    /usr/bin/python3 repro/paper_scale/make_standin_images.py OUT [PER_CLASS_TRAIN] [PER_CLASS_VAL]
"""
import gzip
import os
import sys

import numpy as np
import matplotlib

matplotlib.use("Agg")  # no display: imsave only needs the PNG writer
import matplotlib.image  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist"
CLASSES = ["tshirt_top", "trouser", "pullover", "dress", "coat",
           "sandal", "shirt", "sneaker", "bag", "ankle_boot"]


def read_idx(path, header_ints):
    with gzip.open(path, "rb") as f:
        data = f.read()
    return np.frombuffer(data, dtype=np.uint8, offset=4 * header_ints)


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: make_standin_images.py OUT [PER_CLASS_TRAIN] [PER_CLASS_VAL]")
    out = sys.argv[1]
    n_train = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    n_val = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    img_path = os.path.join(FMNIST, "train-images-idx3-ubyte.gz")
    lab_path = os.path.join(FMNIST, "train-labels-idx1-ubyte.gz")
    for p in (img_path, lab_path):
        if not os.path.exists(p):
            sys.exit(f"{p} is missing: install Debian's dataset-fashion-mnist (make setup does)")
    images = read_idx(img_path, 4).reshape(-1, 28, 28)
    labels = read_idx(lab_path, 2)
    written = 0
    for k, name in enumerate(CLASSES):
        idx = np.flatnonzero(labels == k)[: n_train + n_val]
        for j, i in enumerate(idx):
            split = "train" if j < n_train else "val"
            folder = os.path.join(out, split, name)
            os.makedirs(folder, exist_ok=True)
            matplotlib.image.imsave(os.path.join(folder, f"{i:05d}.png"), images[i], cmap="gray", vmin=0, vmax=255)
            written += 1
    print(f"wrote {written} PNG images ({n_train} train + {n_val} val per class, {len(CLASSES)} classes) under {out}")


if __name__ == "__main__":
    main()
