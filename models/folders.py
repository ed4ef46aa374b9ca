"""Folders of images, indexed by file name and decoded only where they are read.

Layouts (`find_layout`), one sub-folder per class in each:

    ROOT/<class>/...                              a seeded 20% is the test set
    ROOT/train/<class>/...                        the same, under train/
    ROOT/train/ + ROOT/test/                      test/ is the test set
    ROOT/train/ + ROOT/val/ (or validation/)      val/ is the held-out (test) set
    ROOT/train/ + ROOT/val/ + ROOT/test/          val/ is validated after each epoch

`open_image_folder` reads no image: it lists the files (what Keras' loader
would read: every file at any depth of a class folder with an image suffix,
minus hidden files and folders, macOS `._name` files included, and what file
managers leave), splits them, and returns `ImageFiles` lists. A process then
takes its share of those lists (`models.inputs`) and reads and decodes only
its own files (`ImageFiles.dataset`).

Which files go where is decided on one permutation of the training files,
drawn with `seed` exactly as Keras' `image_dataset_from_directory` draws it:

    [ training | validation | ... | test hold-out ]
      n_train    n_val              n_test (only without a held-out folder)

`--limit N` takes the first N (every class is there whatever the order on
disk), `--validation-split` the next part, and a folder without a held-out
folder keeps its last 20% as the test set, the same files whatever `--limit`.

Decoding is Keras' (`tf.io.decode_image`, 3 channels, first frame, then
bilinear `tf.image.resize`), but pixels stay uint8: an image already at
`image_size` is passed through exactly; a resized one is rounded to the
nearest level (Keras' loader keeps the fraction: at most 0.5 apart).
"""

import os
import pathlib
import re
from dataclasses import dataclass

import numpy as np

from models.errors import LOCAL_COPY_HINT, DataError

# The formats `image_dataset_from_directory` reads, with their signatures.
SIGNATURES = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".gif": (b"GIF87a", b"GIF89a"),
    ".bmp": (b"BM",),
}
IMAGE_SUFFIXES = tuple(SIGNATURES)
# The version of `load_image` (with TensorFlow's, part of a pixel cache's key):
# bumped whenever the pixels it gives could change.
DECODER = "gpuaug load_image 2"
# What file managers leave in folders of pictures (besides hidden files).
FILE_MANAGER_FILES = ("thumbs.db", "desktop.ini", "ehthumbs.db")
TEST_FRACTION = 0.2  # cut as Keras' validation_split: int(fraction * count)
HELD_OUT = ("test", "val", "validation")


@dataclass(frozen=True)
class ImageFiles:
    """Image files with their labels (and, for an evaluation share, a weight
    per file: 0 for padding), read as (uint8 (H, W, 3), int32 label[, weight])."""

    paths: tuple
    labels: tuple
    image_size: tuple
    weights: tuple = None

    def __len__(self):
        return len(self.paths)

    def pairs(self):
        """[(path, label)] in order."""
        return list(zip(self.paths, self.labels))

    def select(self, indices, weights=None):
        """The files at `indices` (in that order), with `weights` if given."""
        return ImageFiles(tuple(self.paths[i] for i in indices), tuple(self.labels[i] for i in indices),
                          self.image_size, None if weights is None else tuple(float(w) for w in weights))

    def check(self):
        """Reads the first bytes of each file (distinct paths once): a file
        that is not the image its suffix says, or a BMP that TensorFlow's
        decoder would get wrong (`bmp_problem`), raises DataError naming it."""
        for path in dict.fromkeys(self.paths):
            suffix = pathlib.Path(path).suffix.lower()
            try:
                with open(path, "rb") as handle:
                    head = handle.read(BMP_HEAD if suffix == ".bmp" else 8)
            except OSError as error:
                raise DataError(f"cannot read image {printable(path)}: {error.strerror or error}") from None
            if not head.startswith(SIGNATURES[suffix]):
                raise DataError(f"cannot read image {printable(path)}: not a {suffix[1:].upper()} file")
            problem = bmp_problem(head) if suffix == ".bmp" else None
            if problem:
                raise DataError(f"cannot read image {printable(path)}: {problem}; convert it to a 24-bit BMP or a PNG")

    def dataset(self, shuffle_seed=None, cache=None, epoch=None):
        """A `tf.data` dataset of (uint8 image, int32 label[, float32 weight]).

        shuffle_seed: None keeps the order; an int gives every epoch its own
            order, a function of (shuffle_seed, the epoch that `epoch`, a
            `models.order.EpochCounter`, holds) only, so that a resumed run
            continues the sequence (the whole list before decoding; after a
            cache, a buffer shuffle of the cached images).
        cache: None, or a `models.cache.PixelCache`: decoded images are kept
            (in memory or in its files) and later epochs read no image file.
        """
        import tensorflow as tf

        from models import order

        if shuffle_seed is not None and epoch is None:
            epoch = order.EpochCounter()  # epoch 0 until set
        # Paths as bytes: a file name that is not valid UTF-8 is read as it is named.
        columns = [tf.constant([os.fsencode(path) for path in self.paths], tf.string),
                   tf.constant(np.asarray(self.labels, "int32"))]
        if self.weights is not None:
            columns.append(tf.constant(np.asarray(self.weights, "float32")))
        size = tuple(self.image_size)

        def load(path, *rest):
            return (load_image(path, size), *rest)

        def items():
            if shuffle_seed is None:
                return tf.data.Dataset.from_tensor_slices(tuple(columns))
            permutation = order.permutation(len(self), shuffle_seed, epoch)
            return tf.data.Dataset.from_tensor_slices(tuple(tf.gather(column, permutation) for column in columns))

        if cache is None:
            listed = items() if shuffle_seed is None else order.per_epoch(items, len(self))
            return listed.map(load, num_parallel_calls=tf.data.AUTOTUNE)
        decoded = cache.apply(tf.data.Dataset.from_tensor_slices(tuple(columns)).map(
            load, num_parallel_calls=tf.data.AUTOTUNE))
        if shuffle_seed is None:
            return decoded
        buffer = cache.shuffle_buffer(len(self), int(np.prod(size)) * 3)
        return order.per_epoch(lambda: order.buffer_shuffle(decoded, buffer, shuffle_seed, epoch), len(self))


BMP_HEAD = 14 + 40 + 4 * 256  # file header, BITMAPINFOHEADER, a full palette


def bmp_problem(head):
    """Why TensorFlow's BMP decoder (which Keras' loader uses too) would not
    give a BMP's colours, from its first bytes `head`; None when it does.
    It decodes 24- and 32-bit BMPs, and 8-bit ones as grey: right for a grey
    palette (entry i = (i, i, i)), wrong for any other palette, which it
    ignores; other depths it cannot decode at all."""
    header = int.from_bytes(head[14:18], "little")
    if header < 40:  # OS/2 BITMAPCOREHEADER: 16-bit fields
        bits = int.from_bytes(head[24:26], "little")
    else:
        bits = int.from_bytes(head[28:30], "little")
    if bits in (24, 32):
        return None
    if bits != 8:
        return f"a {bits}-bit BMP, which TensorFlow's decoder (Keras' loader's) cannot read"
    entry = 4 if header >= 40 else 3
    used = int.from_bytes(head[46:50], "little") if header >= 40 else 0
    palette = head[14 + header:14 + header + entry * 256]
    grey = (used in (0, 256) and len(palette) == entry * 256
            and all(palette[i * entry:i * entry + 3] == bytes((i, i, i)) for i in range(256)))
    if grey:
        return None
    return ("an 8-bit palette BMP, which TensorFlow's decoder (Keras' loader's) reads as grey, ignoring its "
            "colours")


def printable(path):
    """A path for a message: a name that is not valid UTF-8 keeps its bytes
    as \\x escapes instead of failing to print."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def load_image(path, image_size):
    """One image file as uint8 (H, W, 3): decoded and resized (bilinear) as
    Keras' loader does it, then rounded to whole levels. An image already at
    `image_size` comes through exactly (resizing to its own size gives its
    values back; always resizing is 25% faster here than a per-image branch)."""
    import tensorflow as tf

    image = tf.image.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image = tf.image.resize(image, tuple(image_size), method="bilinear")
    image = tf.saturate_cast(tf.round(image), tf.uint8)
    image.set_shape(tuple(image_size) + (3,))
    return image


@dataclass
class FolderSplits:
    """The splits of an image folder (`ImageFiles`; validation None without
    --validation-split or a val/ folder beside test/)."""

    train: ImageFiles
    validation: ImageFiles
    test: ImageFiles
    class_names: list
    folders: tuple  # the class-folder roots listed: (train,) or (train, held-out...)
    description: str  # one line: which folder is which split
    settings: dict = None  # what defines the splits beyond the files: a pixel cache's key holds it

    @property
    def counts(self):
        return {"train": len(self.train), "validation": 0 if self.validation is None else len(self.validation),
                "test": len(self.test)}


def _subfolders(folder):
    try:
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as error:
        raise DataError(f"cannot read {folder}: {error.strerror or error}") from None


def find_layout(root):
    """(train_dir, {"test": dir, "validation": dir}) for the layouts above;
    DataError for a folder that fits none of them."""
    root = pathlib.Path(root)
    names = _subfolders(root)
    held = [name for name in HELD_OUT if name in names]
    if "train" not in names:
        if held:  # not a class called "test": a split without its training part
            raise DataError(f"{root} has {', '.join(n + '/' for n in held)} but no train/ folder beside it: put the "
                            f"training images in {root / 'train'}/, one sub-folder per class")
        return root, {}
    others = [name for name in names if name not in ("train",) + HELD_OUT]
    if others:
        raise DataError(f"{root} has train/ and also {', '.join(n + '/' for n in others)}: expected train/ with "
                        "optionally test/ and val/ (or validation/) beside it, each with one sub-folder per class")
    if "val" in names and "validation" in names:
        raise DataError(f"{root} has both val/ and validation/: keep one")
    validation = root / ("val" if "val" in names else "validation")
    splits = {}
    if "test" in names:
        splits["test"] = root / "test"
        if validation.is_dir():
            splits["validation"] = validation
    elif validation.is_dir():
        splits["test"] = validation  # the held-out split, used as the test set
    return root / "train", splits


def class_folders(folder):
    """The class sub-folders of `folder` (sorted, hidden ones skipped); at
    least two, or DataError."""
    names = _subfolders(folder)
    if not names:
        raise DataError(f"no class sub-folders in {folder}; {LOCAL_COPY_HINT}")
    if len(names) < 2:
        raise DataError(f"{folder} has one class folder ({names[0]}/): a classifier needs at least two classes, "
                        "one sub-folder of images each")
    return names


def _is_skipped(name):
    """Hidden files (.DS_Store, macOS `._name` files) and what file managers leave."""
    return name.startswith(".") or name.lower() in FILE_MANAGER_FILES


def index_files(folder, class_names):
    """[(path, label)] of every image file under the class folders of
    `folder`, at any depth, in Keras' order (class, then sorted walk),
    skipping hidden files and folders. Reads names only; a file with another
    suffix raises DataError naming it."""
    files = []
    for label, name in enumerate(class_names):
        walked = []
        for root, folders, names in os.walk(pathlib.Path(folder) / name):
            folders[:] = [f for f in folders if not f.startswith(".")]  # not walked into
            walked.append((root, names))
        for root, names in sorted(walked, key=lambda entry: entry[0]):  # Keras' order
            for file in sorted(names):
                if _is_skipped(file):
                    continue
                if pathlib.Path(file).suffix.lower() not in SIGNATURES:
                    raise DataError(f"{pathlib.Path(root) / file} is not an image file "
                                    f"(expected one of {', '.join(IMAGE_SUFFIXES)})")
                files.append((str(pathlib.Path(root) / file), label))
    if not files:
        raise DataError(f"no images in the class folders of {folder}")
    return files


def _files(pairs, image_size):
    return ImageFiles(tuple(p for p, _ in pairs), tuple(label for _, label in pairs), tuple(image_size))


def open_image_folder(path, image_size=(32, 32), seed=0, limit=None, validation_split=None):
    """The splits of an image folder (see the module's docstring), as
    `FolderSplits` of `ImageFiles`; nothing is decoded here."""
    train_dir, held_out = find_layout(path)
    class_names = class_folders(train_dir)
    for name, folder in held_out.items():
        theirs = _subfolders(folder)
        if theirs != class_names:
            missing, extra = sorted(set(class_names) - set(theirs)), sorted(set(theirs) - set(class_names))
            raise DataError(f"{train_dir} and {folder} have different class folders"
                            + (f"; missing in {folder.name}/: {', '.join(missing)}" if missing else "")
                            + (f"; only in {folder.name}/: {', '.join(extra)}" if extra else ""))
    if "validation" in held_out and validation_split:
        raise DataError(f"{held_out['validation']} is the validation set: drop --validation-split")
    files = index_files(train_dir, class_names)
    total = len(files)
    order = np.random.RandomState(seed).permutation(total)  # Keras' own draw for `seed`
    files = [files[i] for i in order]
    n_test = held_out_count = 0 if "test" in held_out else max(1, int(total * TEST_FRACTION))
    available = total - held_out_count
    used = available if limit is None else min(limit, available)
    n_val = int(used * validation_split) if validation_split else 0
    n_train = used - n_val
    if n_train < 1 or (validation_split and n_val < 1):
        counted = f"--limit {limit}: {used} of its {total}" if used < available else f"{total}"
        raise DataError(f"{train_dir}: {counted} images are too few for a training set"
                        + (" and a validation set" if validation_split else "")
                        + (" and a test hold-out" if held_out_count else ""))
    train = _files(files[:n_train], image_size)
    validation = _files(files[n_train:n_train + n_val], image_size) if n_val else None
    test = _files(files[total - n_test:], image_size) if n_test else None
    for name, folder in held_out.items():
        part = _files(index_files(folder, class_names), image_size)
        if name == "test":
            test = part
        else:
            validation = part
    described = {"train": train_dir, **held_out}
    description = (f"{printable(path)}: {len(class_names)} classes; training from {printable(described['train'])}"
                   + (f", validation from {printable(held_out['validation'])}" if "validation" in held_out else "")
                   + (f", test set {printable(held_out['test'])}" if "test" in held_out else
                      f", test set a seeded {TEST_FRACTION:.0%} of it"))
    settings = {"root": os.fsencode(os.path.abspath(path)).hex(), "class_names": class_names, "seed": seed,
                "limit": limit, "validation_split": validation_split, "test_fraction": TEST_FRACTION,
                "held_out": sorted(held_out)}
    return FolderSplits(train=train, validation=validation, test=test, class_names=class_names,
                        folders=(train_dir, *held_out.values()), description=description, settings=settings)


def is_decode_error(error):
    """True for TensorFlow's error when the pipeline cannot decode a file."""
    import tensorflow as tf

    return isinstance(error, tf.errors.OpError) and "decode" in str(error).lower()


def _tensorflow_problem(path):
    import tensorflow as tf

    try:
        tf.io.decode_image(tf.io.read_file(os.fsencode(path)), channels=3, expand_animations=False)
    except tf.errors.OpError as error:
        reason = (error.message or type(error).__name__).strip().splitlines()[0]
        return re.sub(r"^\{\{.*?\}\}\s*|\s*\[Op:.*$", "", reason)  # TF's op decorations
    return None


def _pillow_problem(path):
    """Why `flow_from_directory`'s reader (Keras' `load_img`, Pillow) fails on `path`."""
    from keras.utils import img_to_array, load_img

    try:
        img_to_array(load_img(path, color_mode="rgb"))  # Pillow decodes lazily: the array makes it
    except Exception as error:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError...
        return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return None


def find_undecodable(parts, reader="tensorflow", default="cannot decode an image of the data set"):
    """The first file of `parts` (ImageFiles) that `reader` ("tensorflow":
    the tf.data pipeline's decoder; "pillow": flow_from_directory's) cannot
    decode, as a one-line message, or `default` (run after the pipeline
    failed: a file that passed the check of its first bytes, e.g. one
    truncated after its header)."""
    problem_of = _tensorflow_problem if reader == "tensorflow" else _pillow_problem
    for part in parts:
        for path in dict.fromkeys(part.paths if part is not None else ()):
            problem = problem_of(path)
            if problem:
                return f"cannot read image {printable(path)}: {problem}"
    return default
