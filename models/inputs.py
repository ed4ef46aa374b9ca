"""What `Model.fit` and `evaluate` get from train.py's splits (`models.data.Splits`),
and each process's share of them.

Training arrays and image files go in as batched, prefetched `tf.data`
pipelines whose every epoch has its own order, a function of (seed, epoch)
only (`models.order`: a resumed run continues the sequence); image files are
decoded only where they are read (`models.folders.ImageFiles`); evaluated
arrays go in as numpy arrays (Keras batches them). Pixels stay uint8: they
cross to the device as bytes and become floats inside the compiled step. `--augment generator`
feeds `ImageDataGenerator.flow` (arrays) or `flow_from_directory` (folders)
with the same arguments and the same training files.

Shares, one rule for arrays and files: the split's items are permuted with
the seed (the same permutation in every process), dealt round-robin, and
each process keeps its share:
- training (`process_share`): every share the same length, a multiple of the
  devices it is split over, so that all processes run the same steps; at
  most processes x devices - 1 items are left out;
- evaluation (`evaluation_share`): every item, each in one share, the shares
  padded to one length with items of weight 0, so that the loss and accuracy
  combined over the processes are those of a single-process evaluation.
"""

import math
import os
import pathlib

from models.errors import DataError


def batched(dataset, batch_size):
    import tensorflow as tf

    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


class Feeds:
    """The `fit`/`evaluate` arguments of each split, each built once, so that
    a split's cache (`--cache`) fills during its first pass and serves every
    later one, the final evaluation included.

    caches: where decoded pixels are kept (None, `models.cache.MEMORY` or a
    folder); cache_name(split, index, processes): the cache's name for a share.
    `epoch` (a `models.order.EpochCounter`) is the epoch the training feed
    is in: its `callback()` goes into fit's callbacks.
    """

    def __init__(self, splits, batch_size, evaluation_batch_size, seed, caches=None, cache_name=None):
        from models.order import EpochCounter

        self.splits, self.seed = splits, seed
        self.batch_size, self.evaluation_batch_size = batch_size, evaluation_batch_size
        self.caches, self.cache_name = caches, cache_name or (lambda split, index=None, processes=None: split)
        self.epoch = EpochCounter()
        self._built, self._pixel_caches = {}, {}

    def cache(self, split, part, index=None, processes=None):
        """The PixelCache of one share of image files (None for arrays or
        without --cache), one per name for the process's lifetime."""
        if self.caches is None or isinstance(part, tuple):
            return None
        from models.cache import PixelCache

        name = self.cache_name(split, index, processes)
        if name not in self._pixel_caches:
            settings = getattr(self.splits.folder, "settings", None)
            self._pixel_caches[name] = cache = PixelCache(self.caches, name, part, settings)
            for line in cache.notes:
                print(line, flush=True)
        return self._pixel_caches[name]

    def files_dataset(self, split, part, shuffle, index=None, processes=None):
        """The unbatched dataset of a share of image files: their first bytes
        checked (unless a complete cache of exactly these files is reused:
        then no image file is opened at all), cached with `--cache`."""
        cache = self.cache(split, part, index, processes)
        if cache is None or not cache.reused:
            part.check()
        return part.dataset(shuffle_seed=self.seed if shuffle else None, cache=cache, epoch=self.epoch)

    def array_batches(self, part, batch_size):
        """Training arrays as batches in each epoch's order (`models.order`)."""
        from models.order import array_batches

        return array_batches(part, batch_size, self.seed, self.epoch)

    def _arguments(self, split, shuffle):
        part = getattr(self.splits, split)
        batch_size = self.batch_size if split == "train" else self.evaluation_batch_size
        if isinstance(part, tuple) and not shuffle:
            return fit_arguments(part, batch_size)
        if isinstance(part, tuple):
            dataset = self.array_batches(part, batch_size)
        else:
            dataset = batched(self.files_dataset(split, part, shuffle), batch_size)
        # fit's shuffle=True (its default) does nothing on a dataset but warn.
        return {"x": dataset, **({"shuffle": False} if shuffle else {})}

    def prepare(self, *splits):
        """Builds the feeds of `splits` now (checking their files), before training."""
        for split in splits:
            if getattr(self.splits, split) is not None:
                self.training() if split == "train" else self.evaluation(split)

    def training(self):
        if "train" not in self._built:
            self._built["train"] = self._arguments("train", shuffle=True)
        return self._built["train"]

    def evaluation(self, split):
        """x, y, ... of `evaluate` for a split ("validation" or "test")."""
        if split not in self._built:
            self._built[split] = self._arguments(split, shuffle=False)
        return self._built[split]

    def validation(self, split):
        """`fit`'s validation_data (and validation_batch_size) for a split."""
        arguments = self.evaluation(split)
        if "y" not in arguments:
            return {"validation_data": arguments["x"]}
        data = tuple(arguments[key] for key in ("x", "y", "sample_weight") if key in arguments)
        return {"validation_data": data, "validation_batch_size": arguments["batch_size"]}

    def finalize_caches(self):
        """Records the manifest of every file cache tf.data has finished
        (`PixelCache.finalize`); called after each epoch and at the end."""
        for cache in self._pixel_caches.values():
            cache.finalize()

    def close(self):
        """Releases the locks of this process's file caches (their files stay)."""
        for cache in self._pixel_caches.values():
            cache.close()

    def describe_caches(self):
        return [cache.describe() for cache in self._pixel_caches.values()]


def fit_arguments(part, batch_size):
    """Keyword arguments of `evaluate` for arrays: x, y, batch_size
    (sample_weight)."""
    arguments = {"x": part[0], "y": part[1], "batch_size": batch_size}
    if len(part) == 3:
        arguments["sample_weight"] = part[2]
    return arguments


def _select(part, indices, weights=None):
    if isinstance(part, tuple):
        images, labels = part[0][indices], part[1][indices]
        return (images, labels) if weights is None else (images, labels, weights)
    return part.select(indices, weights)


def share_length(count, shares, multiple=1):
    """Items in each of `shares` equal training shares of `count`, a multiple
    of `multiple` (the devices a share is split over); up to
    shares * multiple - 1 items are left out."""
    length = (count // shares) // multiple * multiple
    if length == 0:
        if shares == 1:
            raise DataError(f"{count} training image(s) are fewer than the {multiple} devices every batch is split "
                            "over: give more images (--limit) or use fewer devices")
        raise DataError(f"{count} images cannot give each of {shares} processes {multiple} image(s)")
    return length


def _dealt(count, seed, index, processes):
    import numpy as np

    return np.random.default_rng(seed).permutation(count)[index::processes]


def process_share(part, count, seed, index, processes, multiple):
    """Process `index`'s training share of one split (arrays or ImageFiles):
    `share_length` items, dealt round-robin from a permutation seeded with
    `seed`. Returns (part, length)."""
    length = share_length(count, processes, multiple)
    return _select(part, _dealt(count, seed, index, processes)[:length]), length


def evaluation_length(count, processes, multiple=1):
    """The length every evaluation share is padded to."""
    return math.ceil(math.ceil(count / processes) / multiple) * multiple


def evaluation_share(part, count, seed, index, processes, multiple):
    """Process `index`'s evaluation share of one split: its dealt items with
    weight 1, then items of weight 0 (repeats of its first) up to
    `evaluation_length`. Returns (part with weights, length)."""
    import numpy as np

    mine = list(_dealt(count, seed, index, processes))
    length = evaluation_length(count, processes, multiple)
    weights = np.concatenate([np.ones(len(mine), "float32"), np.zeros(length - len(mine), "float32")])
    padding = [mine[0] if mine else 0] * (length - len(mine))
    return _select(part, np.asarray(mine + padding, dtype=np.int64), weights), length


def share_splits(splits, counts, seed, index, processes, multiple, names=("train", "validation", "test")):
    """This process's share of each named split of `splits` (a
    `models.data.Splits`; nothing is changed in it): the training split's by
    `process_share`, the others' by `evaluation_share` (every item is
    evaluated). Returns ({name: share}, the training share's length, the
    training items left out of the shares altogether)."""
    shares, length, left_out = {}, counts["train"], 0
    for name in names:
        part = getattr(splits, name)
        if part is None:
            continue
        if name == "train":
            shares[name], length = process_share(part, counts[name], seed, index, processes, multiple)
            left_out = counts[name] - length * processes
        else:
            shares[name], _ = evaluation_share(part, counts[name], seed, index, processes, multiple)
    return shares, length, left_out


def link_training_files(files, class_names, folder):
    """A class-folder tree of symbolic links to `files` ([(path, label)]) in
    `folder`, for `flow_from_directory`: it then reads exactly the training
    split (after --limit and the hold-outs), not the whole source folder."""
    folder = pathlib.Path(folder)
    for name in class_names:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for number, (path, label) in enumerate(files):
        path = pathlib.Path(path)
        os.symlink(path.resolve(), folder / class_names[label] / f"{number:08d}{path.suffix.lower()}")
    return folder


def files_flow_from_directory_skips(files):
    """The paths among `files` ([(path, label)]) that the legacy
    `flow_from_directory` silently skips (its own list of formats has no
    GIF, which Keras' `image_dataset_from_directory` reads)."""
    from keras.src.legacy.preprocessing.image import DirectoryIterator

    formats = tuple("." + suffix for suffix in DirectoryIterator.white_list_formats)
    return [path for path, _ in files if not str(path).lower().endswith(formats)]


def continue_generator(flow, epochs_done):
    """Moves the legacy iterator `flow` past `epochs_done` epochs: it reseeds
    numpy's global generator with seed + its batch counter before every batch,
    so a resumed run that restarts the counter replays epoch 1's draws and
    order. With the counter restored no epoch's draws repeat; they are not
    those of an uninterrupted run draw for draw (Keras' PyDataset adapter,
    which fit wraps it in, reads extra batches and shuffles the batch order
    with the same global generator)."""
    flow.total_batches_seen = int(epochs_done) * len(flow)


def generator_flow(splits, augmentation, batch_size, seed, scratch):
    """`ImageDataGenerator(**augmentation)` over the training split, as the
    old path would: `flow` on arrays, `flow_from_directory` on a folder (via
    `link_training_files` in the folder `scratch`)."""
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    generator = ImageDataGenerator(**augmentation)
    if splits.kind == "arrays":
        return generator.flow(*splits.train, batch_size=batch_size, shuffle=True, seed=seed)
    folder = link_training_files(splits.train.pairs(), splits.folder.class_names, scratch)
    return generator.flow_from_directory(
        folder, target_size=splits.image_shape[:2], color_mode="rgb", classes=splits.folder.class_names,
        class_mode="sparse", batch_size=batch_size, shuffle=True, seed=seed, follow_links=True,
        interpolation="bilinear")
