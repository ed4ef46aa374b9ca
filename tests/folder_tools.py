"""Helpers for tests on image folders: writing real image files."""

import numpy as np
from PIL import Image


def write_image_folder(root, images, labels, names=("cat", "dog", "ship"), suffix=".png"):
    """One sub-folder per class under `root`, files numbered in order."""
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(image, np.uint8)).save(folder / f"{i:05d}{suffix}")
