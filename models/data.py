"""Loading CIFAR-10 (or a folder of images) as uint8 numpy arrays.

Every failure to find or read data raises `DataError` with a one-line
message saying what was wrong and how to point `--data-dir` at a local copy.
"""

import os
import pathlib
import pickle
import tarfile

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")
LOCAL_COPY_HINT = (
    "point --data-dir at a local copy (a cifar-10-batches-py/ folder, "
    "cifar-10-python.tar.gz, or a folder with one sub-folder of images per class)"
)


class DataError(Exception):
    """The data could not be found or read; the message is one line."""


def _batch_from_bytes(raw, name):
    try:
        batch = pickle.loads(raw, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    except Exception as error:  # noqa: BLE001 - any decoding failure is bad data
        raise DataError(f"cannot read CIFAR-10 batch {name}: {type(error).__name__}: {error}") from None
    if len(images) != len(labels):
        raise DataError(f"cannot read CIFAR-10 batch {name}: {len(images)} images but {len(labels)} labels")
    return np.ascontiguousarray(images), labels


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


def load_cifar10_batches(folder):
    """Reads the official python-version batches from `folder`."""
    folder = pathlib.Path(folder)
    names = {p.name for p in folder.iterdir() if p.is_file()}
    return _read_batches(lambda n: _read_file(folder / n), names, folder)


def load_cifar10_archive(path):
    """Reads the batches straight out of `cifar-10-python.tar.gz`."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            members = {pathlib.PurePosixPath(m.name).name: m for m in archive.getmembers() if m.isfile()}
            return _read_batches(lambda n: archive.extractfile(members[n]).read(), set(members), path)
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"cannot read archive {path}: {error}") from None


def load_image_folder(folder, image_size=(32, 32)):
    """Images from one sub-folder per class (class names sorted -> labels 0..K-1),
    resized to `image_size` (height, width), RGB uint8."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise DataError("reading a folder of images needs Pillow: pip install -r requirements-test.txt") from None

    folder = pathlib.Path(folder)
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"no class sub-folders in {folder}; {LOCAL_COPY_HINT}")
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).iterdir()):
            if path.name.startswith(".") or path.is_dir():
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(f"{path} is not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})")
            try:
                with Image.open(path) as image:
                    image = image.convert("RGB").resize(image_size[::-1], Image.BILINEAR)
                    images.append(np.asarray(image, dtype=np.uint8))
            except (UnidentifiedImageError, OSError, ValueError) as error:
                raise DataError(f"cannot read image {path}: {error}") from None
            labels.append(label)
    if not images:
        raise DataError(f"no images in the class folders of {folder}")
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes


def _split(x, y, test_fraction, seed):
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = max(1, int(round(len(x) * test_fraction)))
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


def load_data(data_dir=None, image_size=(32, 32), test_fraction=0.2, seed=0):
    """((x_train, y_train), (x_test, y_test)) as uint8 NHWC images, int labels.

    data_dir None: `keras.datasets.cifar10.load_data()` (downloads once).
    Otherwise, in this order: a folder holding the CIFAR-10 batches, one with
    a `cifar-10-batches-py/` sub-folder or `cifar-10-python.tar.gz`, the
    archive itself, or an image folder (`train/` and `test/` each with class
    sub-folders, or class sub-folders only: then `test_fraction` of the images,
    picked with `seed`, are held out).
    """
    if data_dir is None:
        import keras

        try:
            (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
        except Exception as error:  # noqa: BLE001 - network or cache failure
            raise DataError(f"cannot download CIFAR-10 ({type(error).__name__}: {error}); {LOCAL_COPY_HINT}") from None
        return (x_train, y_train.ravel()), (x_test, y_test.ravel())
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
    if (path / "train").is_dir() and (path / "test").is_dir():
        x_train, y_train, classes = load_image_folder(path / "train", image_size)
        x_test, y_test, test_classes = load_image_folder(path / "test", image_size)
        if classes != test_classes:
            raise DataError(f"{path}/train and {path}/test have different class folders")
        return (x_train, y_train), (x_test, y_test)
    x, y, _ = load_image_folder(path, image_size)
    return _split(x, y, test_fraction, seed)
