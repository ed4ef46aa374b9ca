"""What `Model.fit` and `evaluate` get from train.py's splits (`models.data.Splits`).

Arrays go in as numpy arrays (Keras batches them); folders as batched,
prefetched `tf.data` pipelines decoding images from disk. `--augment generator`
feeds `ImageDataGenerator.flow` (arrays) or `flow_from_directory` (folders)
with the same arguments and the same training files.
"""

import os
import pathlib


def batched(dataset, batch_size):
    import tensorflow as tf

    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def fit_arguments(part, batch_size, shuffle=False):
    """Keyword arguments of `fit`/`evaluate` for one split: x, y, batch_size
    (and shuffle) for arrays; x (a batched dataset, which Keras' loader
    already reshuffles every epoch) for a stream."""
    if isinstance(part, tuple):
        return {"x": part[0], "y": part[1], "batch_size": batch_size, **({"shuffle": True} if shuffle else {})}
    # fit's shuffle=True (its default) does nothing on a dataset but warn.
    return {"x": batched(part, batch_size), **({"shuffle": False} if shuffle else {})}


def validation_arguments(part, batch_size):
    """`fit`'s validation_data (and validation_batch_size for arrays)."""
    if isinstance(part, tuple):
        return {"validation_data": part, "validation_batch_size": batch_size}
    return {"validation_data": batched(part, batch_size)}


def share_length(count, shares, multiple=1):
    """Images in each of `shares` equal shares of `count`, a multiple of
    `multiple` (the devices a share is split over), so that every process or
    worker runs the same steps and every partial batch splits evenly; up to
    shares * multiple - 1 images are left out."""
    from models.data import DataError

    length = (count // shares) // multiple * multiple
    if length == 0:
        raise DataError(f"{count} images cannot give each of {shares} process(es) {multiple} image(s)")
    return length


def process_share(part, count, seed, index, processes, multiple):
    """Process `index`'s share of one split (`share_length` images): on a
    multi-process JAX cluster (`models.jax_cluster`), or with one process the
    split trimmed to a multiple of `multiple` (the local device count).
    Arrays are permuted with `seed` (the same permutation in every process,
    so a class-sorted source is spread over all) and dealt round-robin.
    Returns (part, count)."""
    length = share_length(count, processes, multiple)
    if isinstance(part, tuple):
        import numpy as np

        images, labels = part
        mine = np.random.default_rng(seed).permutation(len(images))[index::processes][:length]
        return (images[mine], labels[mine]), length
    # Every process draws the same shuffle (same seed), so the shards are disjoint.
    return part.shard(processes, index).take(length), length


def share_splits(splits, counts, seed, index, processes, multiple, names=("train", "validation", "test")):
    """Replaces each named split of `splits` (a `models.data.Splits`) by its
    `process_share` and its entry of `counts` by the share's size; returns
    {name: images left out of this process's share}."""
    left_out = {}
    for name in names:
        part = getattr(splits, name)
        if part is not None:
            part, length = process_share(part, counts[name], seed, index, processes, multiple)
            left_out[name], counts[name] = counts[name] - length * processes, length
            setattr(splits, name, part)
    return left_out


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


def generator_flow(splits, augmentation, batch_size, seed, scratch, count=None):
    """`ImageDataGenerator(**augmentation)` over the training split, as the
    old path would: `flow` on arrays, `flow_from_directory` on a folder (via
    `link_training_files` in the folder `scratch`; its first `count` files
    when given)."""
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    generator = ImageDataGenerator(**augmentation)
    if splits.kind == "arrays":
        return generator.flow(*splits.train, batch_size=batch_size, shuffle=True, seed=seed)
    folder = link_training_files(splits.folder.training_files()[:count], splits.folder.class_names, scratch)
    return generator.flow_from_directory(
        folder, target_size=splits.image_shape[:2], color_mode="rgb", classes=splits.folder.class_names,
        class_mode="sparse", batch_size=batch_size, shuffle=True, seed=seed, follow_links=True,
        interpolation="bilinear")
