"""Writing train.py's export into a user's folder without losing anything.

An export is two entries of the folder DIR: `model.keras` (a file) and
`saved_model/` (an inference SavedModel, TensorFlow backend only). Those two
are the only entries ever replaced; anything else in DIR stays as it is. An
entry with one of those names that is not an export (a folder named
`model.keras`, a `saved_model` file or a folder without `saved_model.pb`) is
refused, never deleted.

The replacement is a small journal in hidden folders of DIR:

1. the new export is written into `DIR/.gpuaug-export-staging` (DIR itself is
   not touched; a kill leaves only that folder, which the next run removes);
2. a list of the entries written goes into it, and it is renamed
   `DIR/.gpuaug-export-ready`: from this atomic step on, the new export is
   complete and will be installed;
3. each entry is installed: `model.keras` by one atomic `os.replace`;
   `saved_model` by moving the old folder into `DIR/.gpuaug-export-old`, then
   the new one in (a folder cannot be replaced atomically: between those two
   renames `DIR/saved_model` is briefly absent, the old one is in `.old`);
   an entry of the previous export that the new one lacks (`saved_model`
   after a JAX run) is moved aside too, so no new model pairs with an old one;
4. `.gpuaug-export-old` (the previous export) and the empty `ready` folder are
   removed.

`recover` rolls an interrupted replacement forward (a `ready` folder means the
new export is complete: steps 3 and 4 are finished) or discards an unfinished
staging folder. It runs before every export and when train.py starts, so after
a kill at any instant the next run ends with either the previous export or the
new one, whole, and the user's other files untouched. Exports into one DIR are
serialized by an advisory lock on DIR (where the platform has `fcntl`).
"""

import contextlib
import os
import pathlib
import shutil

MODEL_FILE = "model.keras"
SAVED_MODEL = "saved_model"
ENTRIES = (MODEL_FILE, SAVED_MODEL)
STAGING = ".gpuaug-export-staging"
READY = ".gpuaug-export-ready"
OLD = ".gpuaug-export-old"
MANIFEST = "entries"  # in READY: the names the new export has


class ExportError(Exception):
    """The export cannot be written; the message is one line."""


def _is_export_entry(path):
    """True if `path` is absent or is what an export writes under its name."""
    if not os.path.lexists(path):
        return True
    if path.name == MODEL_FILE:
        return path.is_file() and not path.is_symlink()
    return path.is_dir() and not path.is_symlink() and (
        (path / "saved_model.pb").is_file() or not any(path.iterdir())
    )


def check_target(export_dir):
    """Raises `ExportError` if exporting into `export_dir` would have to
    replace something that is not an earlier export. Writes nothing."""
    target = pathlib.Path(export_dir).absolute()
    if target.exists() and not target.is_dir():
        raise ExportError(f"--export {target} exists and is not a directory")
    for name in ENTRIES:
        entry = target / name
        if not _is_export_entry(entry):
            raise ExportError(
                f"--export {target}: {name} there is not a gpuaug export "
                f"(expected {'a .keras file' if name == MODEL_FILE else 'a SavedModel folder'}); "
                "it is left untouched: move it away or export elsewhere"
            )


def _fsync_dir(path):
    """Makes the renames in `path` durable where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _locked(folder):
    """An exclusive advisory lock on `folder` (no file is created)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without locks
            pass
        yield
    finally:
        os.close(fd)


def _install(target):
    """Steps 3 and 4 from `target/READY` (which must exist). Idempotent: a
    kill at any point of it is finished by running it again."""
    ready, old = target / READY, target / OLD
    manifest = ready / MANIFEST
    if manifest.exists():  # absent: everything was installed already
        written = set(manifest.read_text().split())
        for name in ENTRIES:
            new, current = ready / name, target / name
            if os.path.lexists(new) and name == MODEL_FILE:
                os.replace(new, current)
            elif os.path.lexists(new) or (name not in written and os.path.lexists(current)):
                # Replaced, or left over from an earlier export that had it
                # (a TensorFlow saved_model after a JAX run): moved aside.
                if os.path.lexists(current):
                    if os.path.lexists(old / name):  # from an older interrupted run
                        shutil.rmtree(old / name)
                    old.mkdir(exist_ok=True)
                    os.rename(current, old / name)
                if os.path.lexists(new):
                    os.rename(new, current)
        _fsync_dir(target)
    if os.path.lexists(old):
        shutil.rmtree(old)
    if manifest.exists():
        manifest.unlink()
    os.rmdir(ready)
    _fsync_dir(target)


def recover(export_dir):
    """Finishes or discards an export interrupted in `export_dir`.

    Returns "installed" (a complete new export was installed), "discarded"
    (an unfinished one was removed; the previous export is unchanged) or None
    (nothing to do)."""
    target = pathlib.Path(export_dir).absolute()
    if not target.is_dir():
        return None
    with _locked(target):
        return _recover_locked(target)


def _recover_locked(target):
    outcome = None
    if os.path.lexists(target / READY):
        _install(target)
        outcome = "installed"
    if os.path.lexists(target / OLD):  # the install had finished but for this
        shutil.rmtree(target / OLD)
    if os.path.lexists(target / STAGING):
        shutil.rmtree(target / STAGING)
        outcome = outcome or "discarded"
    return outcome


def publish(export_dir, write):
    """Writes a new export with `write(staging_folder)` and installs it.

    `write` creates the export's entries (`model.keras`, optionally
    `saved_model`) in the folder it is given. An entry of an earlier export
    that the new one does not write (`saved_model` after a JAX run) is removed
    with it, so DIR never pairs a new model with an old one. Raises
    `ExportError` (one line) on a file-system failure; the previous export is
    then unchanged."""
    target = pathlib.Path(export_dir).absolute()
    check_target(target)
    installing = False
    try:
        target.mkdir(parents=True, exist_ok=True)
        with _locked(target):
            _recover_locked(target)
            staging = target / STAGING
            staging.mkdir()
            try:
                write(staging)
                written = [name for name in ENTRIES if os.path.lexists(staging / name)]
                (staging / MANIFEST).write_text("\n".join(written) + "\n")
                _fsync_dir(staging)
                os.rename(staging, target / READY)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            installing = True
            _install(target)
    except OSError as error:
        outcome = (f"the new export is complete in {READY} and the next run installs it" if installing
                   else "the previous export (if any) is unchanged")
        raise ExportError(f"--export {target}: {error.strerror or error}; {outcome}") from None
    return target


def export_model(model, export_dir):
    """Writes `model.keras` and (TensorFlow backend) an inference-only
    `saved_model` into `export_dir`, as described in this module's docstring.
    Returns the absolute path of `export_dir`."""
    import keras

    def write(staging):
        model.save(staging / MODEL_FILE)
        if keras.backend.backend() == "tensorflow":
            model.export(str(staging / SAVED_MODEL), format="tf_saved_model", verbose=False)

    return publish(export_dir, write)
