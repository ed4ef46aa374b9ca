"""Folders of images (one sub-folder per class), streamed by Keras' own loader.

`open_image_folder` reads nothing but file names up front: the images are
decoded and resized batch by batch by `keras.utils.image_dataset_from_directory`
(a `tf.data` pipeline), so memory stays bounded by a few batches however large
the folder. Pixels arrive as float32 0..255, as Keras' loader gives them; the
model does the rest.

Which files go where is decided on one permutation of the training folder's
files, drawn with `seed` (Keras' own, the one its `validation_split` uses):

    [ training | validation | ... | test hold-out ]
      n_train    n_val              n_test (only without a test/ folder)

`--limit N` takes the first N of that permutation (so every class is there,
whatever order the files are in on disk), `--validation-split` the next part,
and a folder without `test/` holds out its last 20% as the test set, the same
files whatever `--limit` is. Keras' `validation_split` gives the first slice
and the rest (in permutation order), which is cut into the other two.

Checks Keras' loader does not do, before any training: a file that is not an
image (by name or by its first bytes) stops the run with one line naming it.
"""

import os
import pathlib
import re
from dataclasses import dataclass

from models.data import LOCAL_COPY_HINT, DataError

# The formats `image_dataset_from_directory` reads, with their signatures.
SIGNATURES = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".gif": (b"GIF87a", b"GIF89a"),
    ".bmp": (b"BM",),
}
IMAGE_SUFFIXES = tuple(SIGNATURES)
# What file managers leave in folders of pictures (besides hidden files), skipped
# as Keras' loader skips them.
FILE_MANAGER_FILES = ("thumbs.db", "desktop.ini", "ehthumbs.db")
TEST_FRACTION = 0.2


@dataclass
class FolderSplits:
    """Unbatched `tf.data` datasets of (float32 image HWC 0..255, int32 label)."""

    train: object
    validation: object  # None without --validation-split
    test: object
    counts: dict  # {"train": n, "validation": n, "test": n}
    class_names: list
    folders: tuple  # the class-folder roots read: (train,) or (train, test)

    def training_files(self):
        """[(path, label)] of the training split, in Keras' permutation order."""
        labels = {name: label for label, name in enumerate(self.class_names)}
        return [(path, labels[pathlib.Path(path).relative_to(self.folders[0]).parts[0]])
                for path in self.train.file_paths]


def _class_folders(folder):
    try:
        names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as error:
        raise DataError(f"cannot read {folder}: {error.strerror or error}") from None
    if not names:
        raise DataError(f"no class sub-folders in {folder}; {LOCAL_COPY_HINT}")
    return names


def _files(folder, class_names):
    """Every file under the class folders of `folder`, at any depth (as
    Keras' loader walks them), in sorted order."""
    for name in class_names:
        for root, _, files in sorted(os.walk(pathlib.Path(folder) / name)):
            for file in sorted(files):
                yield pathlib.Path(root) / file


def check_image_files(folder, class_names):
    """Returns the number of image files under the class folders of `folder`
    (what Keras' loader will read: every file, at any depth, whose suffix it
    reads), after checking each: another file (except hidden files and
    `FILE_MANAGER_FILES`) or an image whose first bytes are not its format's
    raises DataError naming it."""
    count = 0
    for path in _files(folder, class_names):
        suffix = path.suffix.lower()
        if suffix not in SIGNATURES:
            if path.name.startswith(".") or path.name.lower() in FILE_MANAGER_FILES:
                continue  # .DS_Store, Thumbs.db and the like: Keras skips them too
            raise DataError(f"{path} is not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})")
        try:
            with open(path, "rb") as handle:
                head = handle.read(8)
        except OSError as error:
            raise DataError(f"cannot read image {path}: {error.strerror or error}") from None
        if not head.startswith(SIGNATURES[suffix]):
            raise DataError(f"cannot read image {path}: not a {suffix[1:].upper()} file")
        count += 1
    if count == 0:
        raise DataError(f"no images in the class folders of {folder}")
    return count


def _keras_loader(folder, image_size, seed, **kwargs):
    import contextlib
    import io

    import keras

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # its "Using N files for ..." lines
            return keras.utils.image_dataset_from_directory(
                folder, labels="inferred", label_mode="int", color_mode="rgb", batch_size=None,
                image_size=tuple(image_size), interpolation="bilinear", seed=seed, verbose=False, **kwargs)
    except ValueError as error:
        raise DataError(f"cannot read the image folder {folder}: {error}") from None


def open_image_folder(path, image_size=(32, 32), seed=0, limit=None, validation_split=None):
    """Streams an image folder: `path/train/` and `path/test/` with one
    sub-folder per class each, or class sub-folders only (then the test set
    is a seeded 20% hold-out). Returns `FolderSplits`."""
    path = pathlib.Path(path)
    if (path / "train").is_dir() and (path / "test").is_dir():
        train_dir, test_dir = path / "train", path / "test"
    else:
        train_dir, test_dir = path, None
    class_names = _class_folders(train_dir)
    total = check_image_files(train_dir, class_names)
    if test_dir is not None:
        if _class_folders(test_dir) != class_names:
            raise DataError(f"{train_dir} and {test_dir} have different class folders")
        n_test = check_image_files(test_dir, class_names)
        held_out = 0
    else:
        n_test = held_out = max(1, round(total * TEST_FRACTION))
    available = total - held_out
    used = available if limit is None else min(limit, available)
    n_val = round(used * validation_split) if validation_split else 0
    n_train = used - n_val
    if n_train < 1 or (validation_split and n_val < 1):
        raise DataError(f"{train_dir}: {total} images are too few for a training set"
                        + (" and a validation set" if validation_split else "")
                        + (" and a test hold-out" if held_out else ""))

    if n_train == total:
        train, rest = _keras_loader(train_dir, image_size, seed, shuffle=True), None
    else:
        # Keras' split holds out the last int(split * total) files of its
        # permutation; +0.5 makes that exactly total - n_train, so training
        # is the first n_train and `rest` the others, in permutation order.
        split = (total - n_train + 0.5) / total
        train, rest = _keras_loader(train_dir, image_size, seed, shuffle=True,
                                    validation_split=split, subset="both")
    validation = rest.take(n_val) if n_val else None
    if test_dir is not None:
        test = _keras_loader(test_dir, image_size, seed, shuffle=False, class_names=class_names)
    else:
        test = rest.skip(total - n_train - n_test)
    return FolderSplits(train=train, validation=validation, test=test,
                        counts={"train": n_train, "validation": n_val, "test": n_test},
                        class_names=class_names, folders=(train_dir,) if test_dir is None else (train_dir, test_dir))


def is_decode_error(error):
    """True for TensorFlow's error when the pipeline cannot decode a file."""
    import tensorflow as tf

    return isinstance(error, tf.errors.OpError) and "decode" in str(error).lower()


def find_undecodable(folders, class_names):
    """The first image under `folders` that TensorFlow cannot decode, as a
    one-line message (run after the pipeline failed: a file that passed the
    up-front check, e.g. one truncated after its header)."""
    import tensorflow as tf

    for folder in folders:
        for path in _files(folder, class_names):
            if path.suffix.lower() not in SIGNATURES:
                continue
            try:
                tf.io.decode_image(tf.io.read_file(str(path)), channels=3, expand_animations=False)
            except tf.errors.OpError as error:
                reason = (error.message or type(error).__name__).strip().splitlines()[0]
                reason = re.sub(r"^\{\{.*?\}\}\s*|\s*\[Op:.*$", "", reason)  # TF's op decorations
                return f"cannot read image {path}: {reason}"
    return f"cannot decode an image in {', '.join(map(str, folders))}"
