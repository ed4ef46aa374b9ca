"""Helpers for tests on image folders: writing real image files."""

import numpy as np
from PIL import Image

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_image_folder(root, images, labels, names=("cat", "dog", "ship"), suffix=".png"):
    """One sub-folder per class under `root`, files numbered in order."""
    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(image, np.uint8)).save(folder / f"{i:05d}{suffix}")


def write_cifar_folder(root, train, test):
    """The CIFAR-10 arrays as PNG files: root/train/CLASS/*.png, root/test/CLASS/*.png."""
    write_image_folder(root / "train", *train, names=CIFAR_CLASSES)
    write_image_folder(root / "test", *test, names=CIFAR_CLASSES)
