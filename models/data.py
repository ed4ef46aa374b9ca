"""Loading train.py's data: CIFAR-10 as uint8 numpy arrays, or a folder of
images as lists of files (`models.folders`, decoded where they are read),
split the same way.

Every failure to find or read data raises `DataError` with a one-line
message saying what was wrong and how to point `--data-dir` at a local copy.

The batches are pickles: they are read with `gpuaug.cifar.loads_batch`'s
allow-list, never `pickle.loads`, so a crafted file runs nothing (refused in
one line naming it), whether it comes from --data-dir, an archive or the
download.
"""

import os
import pathlib
import tarfile
from dataclasses import dataclass

import numpy as np

from models.errors import LOCAL_COPY_HINT, DataError
from models.folders import open_image_folder

CIFAR_SIZE = (32, 32)


def _batch_from_bytes(raw, name):
    from gpuaug.cifar import UnsafeBatch, batch_images, loads_batch

    try:
        images, labels = batch_images(loads_batch(raw))
    except UnsafeBatch as error:
        raise DataError(f"refused CIFAR-10 batch {name}: {error}; it is not a real batch, and nothing in it was "
                        "run") from None
    except Exception as error:  # noqa: BLE001 - any decoding failure is bad data
        raise DataError(f"cannot read CIFAR-10 batch {name}: {type(error).__name__}: {error}") from None
    if len(images) != len(labels):
        raise DataError(f"cannot read CIFAR-10 batch {name}: {len(images)} images but {len(labels)} labels")
    return images, labels


def _read_batches(read, names, where):
    train_names = sorted(n for n in names if n.startswith("data_batch_"))
    if not train_names or "test_batch" not in names:
        raise DataError(f"no CIFAR-10 batches (data_batch_*, test_batch) in {where}; {LOCAL_COPY_HINT}")
    parts = [_batch_from_bytes(read(n), f"{where}/{n}") for n in train_names]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = _batch_from_bytes(read("test_batch"), f"{where}/test_batch")
    return (x_train, y_train), (x_test, y_test)


def _read_file(path):
    try:
        return path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror or error}") from None


def download_cifar10():
    """The batches folder of Keras' CIFAR-10 download (`gpuaug.cifar.download`)."""
    from gpuaug.cifar import download

    try:
        return download()
    except Exception as error:  # noqa: BLE001 - network or cache failure
        raise DataError(f"cannot download CIFAR-10 ({type(error).__name__}: {error}); {LOCAL_COPY_HINT}") from None


def load_cifar10_batches(folder):
    """Reads the official python-version batches from `folder`."""
    folder = pathlib.Path(folder)
    try:
        names = {p.name for p in folder.iterdir() if p.is_file()}
    except OSError as error:
        raise DataError(f"cannot read {folder}: {error.strerror or error}; {LOCAL_COPY_HINT}") from None
    return _read_batches(lambda n: _read_file(folder / n), names, folder)


def load_cifar10_archive(path):
    """Reads the batches straight out of `cifar-10-python.tar.gz`."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            members = {pathlib.PurePosixPath(m.name).name: m for m in archive.getmembers() if m.isfile()}
            return _read_batches(lambda n: archive.extractfile(members[n]).read(), set(members), path)
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"cannot read archive {path}: {error}") from None


def load_data(data_dir=None):
    """((x_train, y_train), (x_test, y_test)) as uint8 NHWC images, int labels,
    or None when `data_dir` is a folder of images (streamed: `open_data`).

    data_dir None: the archive `keras.datasets.cifar10.load_data()` downloads
    (once, checked against its SHA-256 by Keras' `get_file`), read here.
    Otherwise, in this order: a folder holding the CIFAR-10 batches, one with
    a `cifar-10-batches-py/` sub-folder or `cifar-10-python.tar.gz`, or the
    archive itself.
    """
    if data_dir is None:
        return load_cifar10_batches(download_cifar10())
    path = pathlib.Path(data_dir)
    if not path.exists():
        raise DataError(f"--data-dir {path} does not exist; {LOCAL_COPY_HINT}")
    if not os.access(path, os.R_OK):
        raise DataError(f"--data-dir {path} is not readable")
    if path.is_file():
        return load_cifar10_archive(path)
    if (path / "test_batch").is_file():
        return load_cifar10_batches(path)
    if (path / "cifar-10-batches-py").is_dir():
        return load_cifar10_batches(path / "cifar-10-batches-py")
    if (path / "cifar-10-python.tar.gz").is_file():
        return load_cifar10_archive(path / "cifar-10-python.tar.gz")
    return None  # an image folder: see open_data


def split_arrays(train, test, seed=0, limit=None, validation_split=None):
    """Training, validation and test arrays, as `models.folders` splits a
    folder: the training arrays permuted with `seed`, the first `limit` kept
    (every class, whatever the order of the source), the last
    `validation_split` of those held out for validation."""
    x, y = train
    order = np.random.default_rng(seed).permutation(len(x))
    used = len(x) if limit is None else min(limit, len(x))
    n_val = int(used * validation_split) if validation_split else 0  # Keras' validation_split rule
    if used - n_val < 1 or (validation_split and n_val < 1):
        counted = f"--limit {limit}: {used}" if used < len(x) else f"{len(x)}"
        raise DataError(f"{counted} training images are too few for a training and a validation set")
    train_part, val_part = order[: used - n_val], order[used - n_val: used]
    validation = (x[val_part], y[val_part]) if n_val else None
    return (x[train_part], y[train_part]), validation, test


@dataclass
class Splits:
    """What train.py trains on. `kind` "arrays": train/validation/test are
    (images uint8 NHWC, labels) tuples; "folder": `models.folders.ImageFiles`
    (decoded as uint8 where they are read). validation is None without
    --validation-split (or a folder's val/ beside its test/)."""

    kind: str
    train: object
    validation: object
    test: object
    counts: dict
    image_shape: tuple
    num_classes: int
    folder: object = None  # the FolderSplits of a folder
    description: str = ""  # one line: where each split comes from


def open_data(data_dir=None, image_size=None, seed=0, limit=None, validation_split=None):
    """The training, validation and test splits of --data-dir (see
    `load_data` for the CIFAR-10 forms and `models.folders` for image
    folders). `image_size` (None: 32x32) resizes a folder's images; the
    CIFAR-10 batches are 32x32, and another size is refused."""
    arrays = load_data(data_dir)
    if arrays is None:
        folder = open_image_folder(data_dir, image_size or CIFAR_SIZE, seed, limit, validation_split)
        return Splits("folder", folder.train, folder.validation, folder.test, folder.counts,
                      tuple(folder.train.image_size) + (3,), len(folder.class_names), folder, folder.description)
    if image_size is not None and tuple(image_size) != CIFAR_SIZE:
        raise DataError(f"--image-size {' '.join(map(str, image_size))}: the CIFAR-10 batches are 32x32 and are "
                        "not resized; --image-size applies to folders of images")
    train, validation, test = split_arrays(*arrays, seed=seed, limit=limit, validation_split=validation_split)
    counts = {"train": len(train[0]), "validation": 0 if validation is None else len(validation[0]),
              "test": len(test[0])}
    num_classes = int(max(train[1].max(), test[1].max())) + 1
    return Splits("arrays", train, validation, test, counts, train[0].shape[1:], num_classes,
                  description=f"CIFAR-10 batches ({'downloaded' if data_dir is None else data_dir})")
