"""Shared fixtures: the real CIFAR-10 files in ../shared."""

import os
import pathlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("GPUAUG_SHARED", REPO.parent / "shared"))
CIFAR_DIR = SHARED / "data" / "cifar10-mini" / "cifar-10-batches-py"


@pytest.fixture(scope="session")
def cifar_test_images():
    """The first 64 real CIFAR-10 test images, float32 0..255, (N, 32, 32, 3)."""
    from keras.src.datasets.cifar import load_batch

    path = CIFAR_DIR / "test_batch"
    if not path.exists():
        pytest.fail(
            f"{path} not found: the tests read the CIFAR-10 subset from "
            "../shared beside the repository (or set GPUAUG_SHARED)."
        )
    images, _ = load_batch(str(path))
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1)[:64]).astype("float32")
