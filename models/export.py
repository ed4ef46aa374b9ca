"""Writing train.py's export into a user's folder: whole, never mixed, nothing else touched.

An export is two entries of the folder DIR, `model.keras` (the Keras file)
and `saved_model/` (an inference-only TensorFlow SavedModel). Both are
symbolic links into one version folder, switched by a single link:

    DIR/model.keras  -> .gpuaug-export/current/model.keras
    DIR/saved_model  -> .gpuaug-export/current/saved_model
    DIR/.gpuaug-export/current -> v7        (the one thing an export switches)
    DIR/.gpuaug-export/v7/{model.keras, saved_model/}
    DIR/.gpuaug-export/v6/...               (the previous export, kept)

A new export is written into `.gpuaug-export/vN.partial`, renamed `vN` once
complete, and installed by replacing the `current` link in one atomic rename.
So at every instant a reader of DIR (a serving job, a copy, `load_model`)
resolves both entries into the same version: the whole previous export or the
whole new one, never a new `model.keras` beside an old `saved_model`. The
previous version stays on disk until the next export, so a reader that
resolved it just before the switch can finish reading it. A kill at any
instant leaves the previous export installed (or the new one, once
switched); the next export or `python -m models.export DIR` removes what a
killed run left half-written. An export without a SavedModel (TensorFlow not
installed) has a dangling `saved_model` link: absent to every reader.

Anything else in DIR is never touched. An entry named `model.keras` or
`saved_model` that is not this layout's link (a file or folder of the
user's, a link elsewhere, a plain export written by an earlier gpuaug: they
cannot be told apart) is never replaced, moved or removed: an export into DIR,
and `python -m models.export DIR`, refuse it in one line and leave DIR as it
is. An earlier gpuaug's journal folders (`.gpuaug-export-staging`, `-ready`,
`-old`, names it owned) are finished or removed.
"""

import contextlib
import os
import pathlib
import re
import shutil

from models.errors import JobError, file_system_error, utf8_path

MODEL_FILE = "model.keras"
SAVED_MODEL = "saved_model"
ENTRIES = (MODEL_FILE, SAVED_MODEL)
STORE = ".gpuaug-export"
CURRENT = "current"
PARTIAL = ".partial"
# The folders an earlier gpuaug's journal used, handled when found.
LEGACY_STAGING, LEGACY_READY, LEGACY_OLD = ".gpuaug-export-staging", ".gpuaug-export-ready", ".gpuaug-export-old"
VERSION = re.compile(r"v(\d+)")


class ExportError(JobError):
    """The export cannot be written; the message is one line."""


def _link_target(name):
    return os.path.join(STORE, CURRENT, name)


def _is_our_link(path):
    return path.is_symlink() and os.readlink(path) == _link_target(path.name)


def check_target(export_dir):
    """Raises `ExportError` if exporting into `export_dir` would have to
    replace something this layout did not write. Writes nothing."""
    target = pathlib.Path(export_dir).absolute()
    if target.exists() and not target.is_dir():
        raise ExportError(f"--export {target} exists and is not a directory")
    store = target / STORE
    if os.path.lexists(store) and (store.is_symlink() or not store.is_dir()):
        raise ExportError(f"--export {target}: {STORE} there is not a gpuaug export's own folder (it is "
                          f"{'a link' if store.is_symlink() else 'a file'}); it is left untouched: move it away or "
                          "export elsewhere")
    for name in ENTRIES:
        entry = target / name
        if os.path.lexists(entry) and not _is_our_link(entry):
            what = ("a link to " + os.readlink(entry) if entry.is_symlink() else
                    "a folder" if entry.is_dir() else "a file")
            raise ExportError(
                f"--export {target}: {name} there is not a gpuaug export (it is {what}, not the export's link "
                f"{_link_target(name)}; a plain export of an earlier gpuaug looks the same); it is left "
                "untouched: move it away or export elsewhere"
            )


def _fsync(path):
    """Makes a file's content or a folder's renames durable where the
    platform allows it."""
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


def _fsync_tree(folder):
    for root, _, files in os.walk(folder):
        for name in files:
            _fsync(os.path.join(root, name))
        _fsync(root)


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


def _versions(store):
    """The complete version folders of `store`, oldest first."""
    found = []
    for path in store.iterdir() if store.is_dir() else ():
        match = VERSION.fullmatch(path.name)
        if match and path.is_dir() and not path.is_symlink():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def _current(store):
    """The version folder `current` points to, or None."""
    link = store / CURRENT
    return store / os.readlink(link) if link.is_symlink() else None


def _symlink_atomically(destination, pointing_to, before_replace=None):
    """Makes `destination` a link to `pointing_to`, replacing whatever file or
    link is there in one rename (`before_replace()` runs just before it)."""
    temporary = destination.with_name(destination.name + ".link" + PARTIAL)
    if os.path.lexists(temporary):
        os.unlink(temporary)
    os.symlink(pointing_to, temporary)
    if before_replace is not None:
        before_replace()
    os.replace(temporary, destination)


def _new_version(store):
    versions = _versions(store)
    number = int(VERSION.fullmatch(versions[-1].name).group(1)) + 1 if versions else 1
    return store / f"v{number}"


def _adopt_legacy(target, store):
    """Installs, as a version, a complete export that an earlier gpuaug's
    journal left in its ready folder (a folder name it owned)."""
    ready = target / LEGACY_READY
    if not ready.is_dir():
        return
    (ready / "entries").unlink(missing_ok=True)
    version = _new_version(store)
    os.rename(ready, version)
    _symlink_atomically(store / CURRENT, version.name)


def _link_entries(target):
    """Creates each entry of `target` that is absent as its link into
    `current` (idempotent). An entry that is there and is not that link is
    never replaced: `ExportError` (check_target refuses it up front)."""
    for name in ENTRIES:
        entry = target / name
        if _is_our_link(entry):
            continue
        if os.path.lexists(entry):
            check_target(target)  # raises, naming it
        _symlink_atomically(entry, _link_target(name))


def _clean(target, store):
    """Removes what killed runs left half-written (partial versions and
    links, an earlier gpuaug's staging and old folders). Returns True if
    anything was removed."""
    removed = False
    for name in (LEGACY_STAGING, LEGACY_OLD):
        if os.path.lexists(target / name):
            shutil.rmtree(target / name)
            removed = True
    for path in list(store.iterdir()) if store.is_dir() else ():
        if path.name.endswith(PARTIAL):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed = True
    return removed


def _prune(store):
    """Removes every version but the current one and the one before it (kept
    for readers that resolved it just before the last switch)."""
    versions = _versions(store)
    current = _current(store)
    if current not in versions:
        return
    older = [path for path in versions if path != current and versions.index(path) < versions.index(current)]
    for path in older[:-1]:
        shutil.rmtree(path)


def _recover_locked(target):
    store = target / STORE
    outcome = None
    if os.path.lexists(target / LEGACY_READY):
        store.mkdir(exist_ok=True)
        _adopt_legacy(target, store)
        outcome = "installed"
    if _clean(target, store):
        outcome = outcome or "discarded"
    versions = _versions(store)
    if versions and _current(store) != versions[-1]:
        # Complete (renamed from .partial) but killed before the switch: install it.
        _symlink_atomically(store / CURRENT, versions[-1].name)
        outcome = "installed"
    if _current(store) is not None:
        _link_entries(target)
        _prune(store)
    return outcome


def recover(export_dir):
    """Tidies `export_dir` after an interrupted export: removes what a killed
    run left half-written, installs a complete export a killed run (or an
    earlier gpuaug's journal) left ready, and writes a link that is absent.
    Raises `ExportError`, touching nothing, when an entry is not the
    export's link (`check_target`).

    Returns "installed", "discarded" or None (nothing to do)."""
    target = pathlib.Path(export_dir).absolute()
    if not target.is_dir():
        return None
    check_target(target)
    with _locked(target):
        check_target(target)  # again under the lock: what a concurrent writer may have changed
        return _recover_locked(target)


def publish(export_dir, write):
    """Writes a new export with `write(folder)` and installs it.

    `write` creates the export's entries (`model.keras`, optionally
    `saved_model`) in the folder it is given. Raises `ExportError` (one line)
    on a file-system failure; the previous export is then still installed."""
    target = pathlib.Path(export_dir).absolute()
    check_target(target)
    try:
        target.mkdir(parents=True, exist_ok=True)
        with _locked(target):
            _recover_locked(target)
            store = target / STORE
            store.mkdir(exist_ok=True)
            # The links first (dangling before a first export, which makes both
            # appear at once with the switch), then the version, then the switch.
            _link_entries(target)
            version = _new_version(store)
            partial = version.with_name(version.name + PARTIAL)
            partial.mkdir()
            try:
                write(partial)
                _fsync_tree(partial)
                os.rename(partial, version)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            _fsync(store)
            _symlink_atomically(store / CURRENT, version.name)  # the switch: one rename
            _fsync(store)
            _prune(store)
    except OSError as error:
        raise ExportError(f"--export {target}: {error.strerror or error}; the previous export (if any) is "
                          "still installed") from None
    return target


def saved_model_problem():
    """Why this process cannot write a TensorFlow SavedModel, or None:
    Keras exports one from the TensorFlow and JAX backends (JAX through
    jax2tf), and needs TensorFlow installed for both."""
    import importlib.util

    import keras

    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax"):
        return f"Keras exports a SavedModel from the TensorFlow and JAX backends, not from {backend}"
    if importlib.util.find_spec("tensorflow") is None:
        return "TensorFlow is not installed (pip install tensorflow)"
    return None


def write_export(model, folder):
    """Writes `model.keras` and, where it can, an inference-only SavedModel
    `saved_model` into `folder`. Returns None or the one-line reason no
    SavedModel was written (this model or backend cannot be exported so).
    A file-system failure (a full disk, a denied write) raises OSError: the
    export is then not installed at all, rather than installed without its
    SavedModel."""
    problem = saved_model_problem()
    folder = pathlib.Path(folder)
    model.save(folder / MODEL_FILE)
    if problem is None:
        import tempfile

        # A folder whose name is not UTF-8: the SavedModel is written in the
        # temporary folder, then moved in.
        scratch = None if utf8_path(folder) else tempfile.mkdtemp(prefix="gpuaug-saved-model-")
        written = folder / SAVED_MODEL if scratch is None else pathlib.Path(scratch) / SAVED_MODEL
        try:
            model.export(str(written), format="tf_saved_model", verbose=False)
            if scratch is not None:
                shutil.move(written, folder / SAVED_MODEL)
        except Exception as error:  # noqa: BLE001 - jax2tf or TensorFlow refusing this model, or the disk
            shutil.rmtree(written, ignore_errors=True)
            refused = file_system_error(error)
            if refused is not None:
                raise refused from None
            reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
            problem = f"{type(error).__name__}: {reason}"
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
    return problem


def prepare(export_dir):
    """Before training: refuses an --export folder whose model.keras or
    saved_model is not an earlier export (`check_target`), and finishes or
    discards an export a killed run left half-installed there (`recover`).
    Returns `recover`'s outcome."""
    try:
        check_target(export_dir)
        return recover(export_dir)
    except OSError as error:
        raise ExportError(f"--export {export_dir}: {error.strerror or error}") from None


def export_model(model, export_dir):
    """Writes `write_export`'s entries into `export_dir` as described in this
    module's docstring. Returns (the absolute path of `export_dir`, None or
    the reason no SavedModel was written)."""
    problems = []
    target = publish(export_dir, lambda folder: problems.append(write_export(model, folder)))
    return target, problems[0] if problems else None


def main(argv=None):
    """`python -m models.export DIR`: tidies DIR after an interrupted export,
    without training (see `recover`)."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m models.export DIR", file=sys.stderr)
        return 2
    try:
        check_target(argv[0])
        outcome = recover(argv[0])
    except (ExportError, OSError) as error:
        print(f"models.export: error: {getattr(error, 'strerror', None) or error}", file=sys.stderr)
        return 2
    print({"installed": f"{argv[0]}: installed the export an interrupted run had completed",
           "discarded": f"{argv[0]}: removed the unfinished export of an interrupted run"}.get(
               outcome, f"{argv[0]}: nothing to do"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
