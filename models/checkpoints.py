"""train.py's checkpoints: written after every epoch, restored on a rerun.

The folder holds two training states in `keras.callbacks.BackupAndRestore`'s
file names (its `double_checkpoint` layout): `latest.weights.h5` +
`training_metadata.json` (after the last finished epoch) and the same names
ending in `.bkp` (the state before it, copied there just before the latest is
written). Every file is replaced atomically (written aside, then renamed).

A state is two files, so a kill can fall between them: the weights of epoch
N + 1 beside the metadata of epoch N. The metadata therefore records what the
weights must hold: the optimizer's step count (`iterations`) and the model's
fingerprint (its name and weight shapes). `restore` loads a state only when
the weights agree with its metadata; otherwise it takes the backup (and says
so), and it refuses, in one line, only when neither state is whole. A
checkpoint of another model (another `--model` or `--image-size`) is refused
as such, every file left as it is.

One writer serves every topology (one device, mirrored, TF multi-worker,
multi-host JAX): `EpochCheckpoint` after each epoch, or `write` directly.
"""

import hashlib
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


class _OtherModel(Exception):
    """The checkpoint belongs to another model; the message says which."""


def fingerprint(model):
    """What identifies a model's weights: its name, its number of parameters
    and a hash of the shapes of all its weights, in order."""
    shapes = [list(weight.shape) for weight in model.weights]
    digest = hashlib.sha256(json.dumps(shapes).encode()).hexdigest()[:16]
    return {"name": model.name, "parameters": int(model.count_params()), "shapes": digest}


def _describe(print_):
    return f"{print_['name']}, {print_['parameters']:,} parameters"


def _iterations(model):
    """The optimizer's step count (read through convert_to_numpy: under a
    tf.distribute strategy the variable is a mirrored one)."""
    import keras

    optimizer = getattr(model, "optimizer", None)
    return None if optimizer is None else int(keras.ops.convert_to_numpy(optimizer.iterations))


def _read_metadata(path):
    metadata = json.loads(path.read_text())
    epochs = metadata["epoch"]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epoch {epochs!r}")
    return metadata


def _load(model, weights, metadata_path):
    """Loads one state into `model`; returns its finished epochs or raises
    `_Unusable` (damaged, or weights and metadata from different epochs) or
    `_OtherModel`."""
    try:
        metadata = _read_metadata(metadata_path)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise _Unusable(f"{metadata_path.name} is unreadable ({type(error).__name__})") from None
    saved = metadata.get("model")
    if saved is not None and saved != fingerprint(model):
        raise _OtherModel(f"it holds a checkpoint of another model ({_describe(saved)}; this run builds "
                          f"{_describe(fingerprint(model))}): use the same --model and --image-size as the run "
                          "that wrote it, or another directory")
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
    except ValueError as error:
        # Keras' words when the file's weights do not fit the model's (a
        # checkpoint written before fingerprints were recorded).
        if any(words in str(error) for words in ("could not be loaded", "shape", "mismatch")):
            raise _OtherModel("its weights do not fit this model (written by another --model or "
                              "--image-size?): use the same flags as the run that wrote it, or another "
                              "directory") from None
        raise _Unusable(f"cannot load {weights.name} ({type(error).__name__})") from None
    except Exception as error:  # noqa: BLE001 - h5py, OSError: all mean unusable
        raise _Unusable(f"cannot load {weights.name} ({type(error).__name__})") from None
    expected = metadata.get("iterations")
    loaded = _iterations(model)
    if expected is not None and loaded is not None and loaded != expected:
        raise _Unusable(f"{weights.name} is from step {loaded:,} but {metadata_path.name} from step "
                        f"{expected:,} (a kill between the two writes)")
    return metadata["epoch"]


def _replace_with_copy(source, destination):
    partial = destination.with_name(destination.name + ".partial")
    shutil.copyfile(source, partial)
    os.replace(partial, destination)


def write(model, folder, epochs_done, backup=True):
    """Writes `model`'s training state after `epochs_done` epochs: the
    weights (optimizer state included) and their metadata, each replaced
    atomically. With `backup`, the previous state is copied to `*.bkp` first."""
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
    metadata.write_text(json.dumps({"epoch": epochs_done, "iterations": _iterations(model),
                                    "model": fingerprint(model)}))
    os.replace(metadata, folder / METADATA)


def restore(model, folder, repair=True):
    """Loads the newest usable training state of `folder` into `model`.

    Args:
        model: a built, compiled Keras model.
        folder: the `--checkpoint-dir`.
        repair: when resuming from the backup, keep the unusable latest files
            as `*.damaged` and copy the backup over them (False on the
            processes of a multi-process run that write nothing).

    Returns:
        (finished_epochs, message): 0 and None when the folder holds no
        checkpoint; otherwise the epochs the loaded state had finished and a
        line saying where it came from.

    Raises:
        CheckpointError: there is a checkpoint but neither state loads, or it
            belongs to another model.
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
    except _OtherModel as error:
        raise CheckpointError(f"--checkpoint-dir {folder}: {error}") from None
    try:
        if not any(path.exists() for path in backup):
            raise _Unusable("no backup (.bkp)")
        epochs = _load(model, *backup)
    except _Unusable as error:
        raise CheckpointError(
            f"--checkpoint-dir {folder}: unreadable checkpoint: {latest_problem}, and {error}; "
            "the files are left untouched: move them away or use another directory"
        ) from None
    except _OtherModel as error:
        raise CheckpointError(f"--checkpoint-dir {folder}: {error}") from None
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


def epoch_checkpoint(folder, save=None):
    """A Keras callback that writes the checkpoint after every epoch (before
    later callbacks report the epoch). `save(model, folder, epochs_done)`
    replaces `write` (the JAX cluster's processes: every one takes part in the
    save, only the chief writes)."""
    import keras

    save = save or write

    class EpochCheckpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            save(self.model, folder, epoch + 1)

    return EpochCheckpoint()
