"""Helpers for tests on image folders: writing real image files."""

import numpy as np
from PIL import Image


def write_image_folder(root, images, labels, names=("cat", "dog", "ship"), suffix=".png"):
    """One sub-folder per class under `root`, files numbered in order."""
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(image, np.uint8)).save(folder / f"{i:05d}{suffix}")


def two_level(root, splits, classes=("cat", "dog", "ship"), per_class=6, size=8, seed=0):
    """root/<split>/<class>/*.png for each split name, images of `size`."""
    rng = np.random.default_rng(seed)
    for split in splits:
        images = rng.integers(0, 256, (per_class * len(classes), size, size, 3), dtype=np.uint8)
        write_image_folder(root / split, images, [i % len(classes) for i in range(len(images))], names=classes)
