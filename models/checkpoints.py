"""Resuming train.py from its checkpoint folder.

The folder holds Keras' `BackupAndRestore` files. With `double_checkpoint=True`
there are two training states: `latest.weights.h5` + `training_metadata.json`
(after the last finished epoch) and the same names ending in `.bkp` (the
state before it, copied there just before the latest is written). A crash
while writing damages at most the latest state, and the backup is then whole.

`restore` loads the newest usable state into the model (weights and optimizer
state) before training. If the latest state cannot be loaded, it resumes from
the backup, keeps the damaged files as `*.damaged` and puts a copy of the
backup in their place, so that `BackupAndRestore` continues from it. It refuses
(one line, every file left as it is) only when neither state can be loaded.
"""

import json
import os
import pathlib
import shutil
import tempfile

WEIGHTS = "latest.weights.h5"
METADATA = "training_metadata.json"
BACKUP = ".bkp"
DAMAGED = ".damaged"


class CheckpointError(Exception):
    """No usable checkpoint in a folder that has one; the message is one line."""


class _Unusable(Exception):
    """One training state cannot be loaded; the message says why."""


def _finished_epochs(metadata):
    value = json.loads(metadata.read_text())["epoch"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"epoch {value!r}")
    return value


def _load(model, weights, metadata):
    """Loads one state into `model`; returns its finished epochs or raises."""
    try:
        epochs = _finished_epochs(metadata)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise _Unusable(f"{metadata.name} is unreadable ({type(error).__name__})") from None
    if not weights.exists():
        raise _Unusable(f"{weights.name} is missing")
    try:
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # so its state loads too
        if weights.name.endswith(".weights.h5"):
            model.load_weights(weights)
        else:  # the backup: Keras loads only files named *.weights.h5, so load a copy
            with tempfile.TemporaryDirectory() as scratch:
                copy = pathlib.Path(scratch) / "backup.weights.h5"
                shutil.copyfile(weights, copy)
                model.load_weights(copy)
    except Exception as error:  # noqa: BLE001 - h5py, OSError, ValueError: all mean unusable
        raise _Unusable(f"cannot load {weights.name} ({type(error).__name__})") from None
    return epochs


def _replace_with_copy(source, destination):
    partial = destination.with_name(destination.name + ".partial")
    shutil.copyfile(source, partial)
    os.replace(partial, destination)


def write(model, folder, epochs_done, backup=False):
    """Writes a training state in `BackupAndRestore`'s files, each replaced
    atomically (weights saved to a partial file first). With `backup` (its
    `double_checkpoint`), the previous state is copied to `*.bkp` first."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / "partial.weights.h5"
    model.save_weights(partial)
    if backup:
        for name in (WEIGHTS, METADATA):
            if (folder / name).exists():
                _replace_with_copy(folder / name, folder / (name + BACKUP))
    os.replace(partial, folder / WEIGHTS)
    metadata = folder / (METADATA + ".partial")
    metadata.write_text(json.dumps({"epoch": epochs_done}))
    os.replace(metadata, folder / METADATA)


def restore(model, folder, repair=True):
    """Loads the newest usable training state of `folder` into `model`.

    Args:
        model: a built, compiled Keras model.
        folder: the `--checkpoint-dir`.
        repair: when resuming from the backup, keep the damaged latest files
            as `*.damaged` and copy the backup over them (False on the
            non-chief workers of a multi-worker run, which write nothing).

    Returns:
        (finished_epochs, message): 0 and None when the folder holds no
        checkpoint; otherwise the epochs the loaded state had finished and a
        line saying where it came from.

    Raises:
        CheckpointError: there is a checkpoint but neither state loads.
    """
    folder = pathlib.Path(folder)
    latest = (folder / WEIGHTS, folder / METADATA)
    backup = (folder / (WEIGHTS + BACKUP), folder / (METADATA + BACKUP))
    if not any(path.exists() for path in latest + backup):
        return 0, None
    try:
        epochs = _load(model, *latest)
        return epochs, f"resuming from {folder}: {epochs} epoch(s) already done"
    except _Unusable as error:
        latest_problem = str(error)
    try:
        if not any(path.exists() for path in backup):
            raise _Unusable("no backup (.bkp)")
        epochs = _load(model, *backup)
    except _Unusable as error:
        raise CheckpointError(
            f"--checkpoint-dir {folder}: unreadable checkpoint: {latest_problem}, and {error}; "
            "the files are left untouched: move them away or use another directory"
        ) from None
    kept = ""
    if repair:
        for damaged, good in zip(latest, backup):
            if damaged.exists():
                os.replace(damaged, damaged.with_name(damaged.name + DAMAGED))
            _replace_with_copy(good, damaged)
        kept = f"; the damaged files are kept as *{DAMAGED}"
    return epochs, (
        f"resuming from the backup checkpoint in {folder} ({latest_problem}{kept}): "
        f"{epochs} epoch(s) already done"
    )
