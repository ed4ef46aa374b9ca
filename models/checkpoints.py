"""train.py's checkpoints: written after every epoch, restored on a rerun.

The folder holds two training states in `keras.callbacks.BackupAndRestore`'s
file names (its `double_checkpoint` layout): `latest.weights.h5` +
`training_metadata.json` (after the last finished epoch) and the same names
ending in `.bkp` (the state before it, copied there just before the latest is
written). Every file is replaced atomically (written aside, then renamed).

The metadata also carries what Keras' weights file leaves out and a resumed
run needs to continue rather than repeat: the state of every random seed
generator in the model (the augmentation's draws, the dropout masks), the
run's definition (`run`: the flags that decide what is trained on and how,
checked by train.py on resume) and the per-epoch records reported so far
(`history`, from which `--metrics-json` is rebuilt).

A state is two files, so a kill can fall between them: the weights of epoch
N + 1 beside the metadata of epoch N. The metadata therefore records what the
weights must hold: the optimizer's step count (`iterations`) and the model's
fingerprint (its name and weight shapes). `restore` loads a state only when
the weights agree with its metadata; otherwise it takes the backup (and says
so), and it refuses, in one line, only when neither state is whole. A
checkpoint of another model (another `--model` or `--image-size`) is refused
as such, every file left as it is.

One writer serves every topology (one device, mirrored, TF multi-worker,
multi-host JAX): `write`, called by train.py after each epoch through the
topology's `checkpoint_saver`.
"""

import contextlib
import hashlib
import io
import json
import os
import pathlib
import shutil
import tempfile
from typing import NamedTuple

import numpy as np

from models.locks import try_lock
from models.errors import JobError

WEIGHTS = "latest.weights.h5"
METADATA = "training_metadata.json"
BACKUP = ".bkp"
DAMAGED = ".damaged"
LOCK = ".gpuaug-checkpoint.lock"
# The names of every file this module writes in a checkpoint folder.
OWNED_PREFIXES = (WEIGHTS, METADATA, "partial.weights.h5", LOCK)


class Restored(NamedTuple):
    """What `restore` found: the finished epochs (0: no checkpoint), the
    line to print (None), and what the loaded state recorded of its run
    (`run`, None for a checkpoint of an earlier gpuaug) and its epochs
    (`history`, a list of train.py's per-epoch records)."""

    epochs: int
    message: str = None
    run: dict = None
    history: list = ()


class CheckpointError(JobError):
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


def _seed_states(model):
    """The model's seed generator states (`keras.random.SeedGenerator`:
    the augmentation layer's, dropout's), in `model.variables` order."""
    weights = {id(weight) for weight in model.weights}
    return [variable for variable in model.variables
            if id(variable) not in weights and variable.name == "seed_generator_state"]


def _read_metadata(path):
    metadata = json.loads(path.read_text())
    epochs = metadata["epoch"]
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epoch {epochs!r}")
    return metadata


def _load(model, weights, metadata_path, check_run=None):
    """Loads one state into `model`; returns its metadata or raises
    `_Unusable` (damaged, or weights and metadata from different epochs) or
    `_OtherModel`. `check_run(recorded run)` runs first, before any weight is
    loaded.
    The seed states load when the model has as many seed generators as the
    state recorded (otherwise it has other random layers, e.g. no
    augmentation: it keeps its own seeds; train.py's run check refuses that
    resume first)."""
    import keras

    try:
        metadata = _read_metadata(metadata_path)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise _Unusable(f"{metadata_path.name} is unreadable ({type(error).__name__})") from None
    if check_run is not None:  # first: it names the flag (or the data) that differs
        check_run(metadata.get("run"))
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
    states, variables = metadata.get("seed_states"), _seed_states(model)
    if states is not None and len(states) == len(variables):
        for variable, state in zip(variables, states):
            variable.assign(np.asarray(state, dtype=keras.backend.standardize_dtype(variable.dtype)))
    return metadata


def _replace_with_copy(source, destination):
    partial = destination.with_name(destination.name + ".partial")
    shutil.copyfile(source, partial)
    os.replace(partial, destination)


def write(model, folder, epochs_done, backup=True, run=None, history=()):
    """Writes `model`'s training state after `epochs_done` epochs: the
    weights (optimizer state included) and their metadata (the seed
    states, `run` and `history`: see the module's docstring), each replaced
    atomically. With `backup`, the previous state is copied to `*.bkp` first.

    Raises `CheckpointError` (one line) when the file system refuses a
    write (a full disk): the half-written files are removed, and the
    folder holds the previous state (as the latest or as the backup)."""
    folder = pathlib.Path(folder)
    partial_weights = folder / "partial.weights.h5"
    partial_metadata = folder / (METADATA + ".partial")
    try:
        _write(model, folder, epochs_done, backup, run, history, partial_weights, partial_metadata)
    except OSError as error:
        for path in (partial_weights, partial_metadata, folder / (WEIGHTS + BACKUP + ".partial"),
                     folder / (METADATA + BACKUP + ".partial")):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        reason = os.strerror(error.errno) if error.errno else str(error).splitlines()[0]
        raise CheckpointError(f"--checkpoint-dir {folder}: cannot write the checkpoint of epoch {epochs_done} "
                              f"({reason}); the one before it is kept: make room and rerun the same command "
                              "to resume") from None


def hold(folder):
    """Takes `folder`'s run lock (its `LOCK` file, created with the folder)
    for as long as the returned file stays open: one run at a time writes
    a checkpoint folder. Raises `CheckpointError` when another run holds it."""
    folder = pathlib.Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = try_lock(folder / LOCK)
    except OSError as error:
        raise CheckpointError(f"--checkpoint-dir {folder}: {error.strerror or error}") from None
    if handle is None:
        raise CheckpointError(f"--checkpoint-dir {folder}: another run is training into it (it holds {LOCK}); "
                              "wait for it to end or use another --checkpoint-dir")
    return handle


def _weights_file_content(model):
    """The bytes of `model.save_weights`'s `.weights.h5` file, built in
    memory: HDF5 never writes to the checkpoint's disk itself, since after a
    write it could not finish (a full disk) it crashes the process at exit
    (h5py 3, HDF5 1.14); Python's own write fails cleanly instead. This is
    Keras 3's `save_weights_only` with an in-memory store (the store
    accepts `io.BytesIO`)."""
    from keras.src.saving import saving_lib

    if not model.built:
        raise ValueError("the model is not built, so it has no weights to save")
    buffer = io.BytesIO()
    store = saving_lib.H5IOStore(buffer, mode="w")
    saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="",  # noqa: SLF001
                           visited_saveables=set())
    store.close()
    return buffer.getvalue()


def _write(model, folder, epochs_done, backup, run, history, partial_weights, partial_metadata):
    import keras

    folder.mkdir(parents=True, exist_ok=True)
    content = _weights_file_content(model)
    with open(partial_weights, "wb") as file:
        file.write(content)
    if backup:
        for name in (WEIGHTS, METADATA):
            if (folder / name).exists():
                _replace_with_copy(folder / name, folder / (name + BACKUP))
    os.replace(partial_weights, folder / WEIGHTS)
    states = [np.asarray(keras.ops.convert_to_numpy(variable)).tolist() for variable in _seed_states(model)]
    partial_metadata.write_text(json.dumps({"epoch": epochs_done, "iterations": _iterations(model),
                                            "model": fingerprint(model), "seed_states": states, "run": run,
                                            "history": list(history)}))
    os.replace(partial_metadata, folder / METADATA)


def restore(model, folder, repair=True, check_run=None):
    """Loads the newest usable training state of `folder` into `model`.

    Args:
        model: a built, compiled Keras model.
        folder: the `--checkpoint-dir`.
        repair: when resuming from the backup, keep the unusable latest files
            as `*.damaged` and copy the backup over them (False on the
            processes of a multi-process run that write nothing).
        check_run: called with a state's recorded `run` (None for an earlier
            gpuaug's) before its weights load; what it raises propagates.

    Returns:
        A `Restored`: epochs 0 when the folder holds no checkpoint;
        otherwise the epochs the loaded state had finished, a line saying
        where it came from, and its recorded run and history.

    Raises:
        CheckpointError: there is a checkpoint but neither state loads, or it
            belongs to another model.
    """
    folder = pathlib.Path(folder)
    latest = (folder / WEIGHTS, folder / METADATA)
    backup = (folder / (WEIGHTS + BACKUP), folder / (METADATA + BACKUP))
    if not any(path.exists() for path in latest + backup):
        return Restored(0)
    if latest[0].exists() and not any(path.exists() for path in latest[1:] + backup):
        # Weights without any metadata: a run killed while it wrote its first
        # checkpoint (the weights are written first). No epoch is recorded as
        # done, so the run starts again; the file is kept aside.
        kept = ""
        if repair:
            os.replace(latest[0], latest[0].with_name(latest[0].name + DAMAGED))
            kept = f" (kept as {latest[0].name}{DAMAGED})"
        return Restored(0, f"--checkpoint-dir {folder}: {latest[0].name} has no {METADATA} (a run stopped while "
                           f"it wrote its first checkpoint){kept}: starting from epoch 1")
    try:
        metadata = _load(model, *latest, check_run)
        return _restored(metadata, f"resuming from {folder}: {metadata['epoch']} epoch(s) already done")
    except _Unusable as error:
        latest_problem = str(error)
    except _OtherModel as error:
        raise CheckpointError(f"--checkpoint-dir {folder}: {error}") from None
    return _restore_backup(model, folder, latest, backup, latest_problem, repair, check_run)


def _restore_backup(model, folder, latest, backup, latest_problem, repair, check_run):
    """`restore` when the latest state is unusable (`latest_problem` says
    why): loads the backup, and with `repair` keeps the latest files as
    `*.damaged` and copies the backup over them."""
    try:
        if not any(path.exists() for path in backup):
            raise _Unusable("no backup (.bkp)")
        metadata = _load(model, *backup, check_run)
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
    return _restored(metadata, f"resuming from the backup checkpoint in {folder} ({latest_problem}{kept}): "
                               f"{metadata['epoch']} epoch(s) already done")


def _restored(metadata, message):
    history = metadata.get("history")
    return Restored(metadata["epoch"], message, metadata.get("run"), list(history) if isinstance(history, list) else [])
