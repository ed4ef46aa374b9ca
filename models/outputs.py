"""What a run writes, checked before it trains: every output can be
written, none writes over another or into the data, and an existing
--metrics-json FILE is one train.py wrote; and the atomic write of that
FILE. Each refusal is a `UsageError` (one line)."""

import importlib.util
import json
import os
import pathlib
import tempfile

from models.errors import UsageError


def check_writable(path, flag):
    """Fails early (before training) if `path` could not be written: a file
    where a folder is expected (or the reverse for --metrics-json), a
    symbolic link on the way that points nowhere (a folder cannot be made
    through it: --metrics-json's own link is followed, its target written),
    a file where a folder would have to be made, or a nearest existing
    folder that does not accept a new file (permissions, a read-only or full
    file system). Writes and removes one temporary file; creates nothing
    else."""
    path = pathlib.Path(path).absolute()
    if flag == "--metrics-json":
        path = pathlib.Path(os.path.realpath(path))  # written through its link (write_json_atomically)
        if path.is_dir():
            raise UsageError(f"{flag} {path} is a directory; give a file name, e.g. {path / 'metrics.json'}")
    elif path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} exists and is not a directory")
    folder = path.parent if flag == "--metrics-json" else path
    while not folder.exists():
        if folder.is_symlink():
            raise UsageError(f"{flag} {path}: {folder} is a symbolic link to {os.readlink(folder)}, which does "
                             "not exist; create its target or give another path")
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(f"{flag} {path}: {folder} is a file, so no folder can be made there")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UsageError(f"{flag} {path}: cannot write in {folder} ({error.strerror or error})") from None


def check_inputs(args, splits):
    """What the chosen data and flags need, checked before any training."""
    from models.errors import utf8_path

    if args.cache and splits.kind == "arrays":
        raise UsageError("--cache keeps the decoded images of a folder; the CIFAR-10 batches are in memory already")
    if splits.kind == "folder" and args.augment == "generator":
        if importlib.util.find_spec("PIL") is None:
            raise UsageError("--augment generator on an image folder runs flow_from_directory, which needs Pillow: "
                             "pip install -r requirements-test.txt")
        from models.inputs import files_flow_from_directory_skips

        skipped = files_flow_from_directory_skips(splits.folder.train.pairs())
        if skipped:  # it would train on fewer images than the other paths
            raise UsageError(f"--augment generator runs flow_from_directory, which does not read GIF files: "
                             f"{len(skipped)} of the training files are GIFs (e.g. {skipped[0]}); "
                             "use --augment gpu or none, or convert them")
    outputs = output_paths(args)
    for flag_name, path in outputs.items():
        check_writable(path, flag_name)
    if "--cache" in outputs and not utf8_path(outputs["--cache"]):  # tf.data names its files by a UTF-8 string
        raise UsageError(f"--cache {outputs['--cache']}: TensorFlow's cache files need a path that is valid "
                         "UTF-8; give another folder")
    check_outputs_apart(outputs, args.data_dir if splits.kind == "folder" else None)
    if args.metrics_json:
        check_metrics_json(args.metrics_json)
        # Its folder (through its link), so that the first epoch's write cannot fail on it.
        pathlib.Path(os.path.realpath(args.metrics_json)).parent.mkdir(parents=True, exist_ok=True)


def output_paths(args):
    """{flag: path} of the outputs this run writes."""
    given = {"--export": args.export, "--checkpoint-dir": args.checkpoint_dir, "--metrics-json": args.metrics_json,
             "--cache": args.cache if args.cache != "memory" else None}
    return {name: path for name, path in given.items() if path}


def _inside(path, folder):
    """Whether `path` is `folder` or lies under it (real paths)."""
    return os.path.commonpath([path, folder]) == folder


def _data_folders(image_folder):
    """The real paths of an image folder and of the folders in it two levels
    down (splits, classes), which may be links elsewhere: all are read."""
    found, level = {os.path.realpath(image_folder)}, [image_folder]
    for _ in range(2):
        level = [entry.path for folder in level for entry in os.scandir(folder)
                 if entry.is_dir() and not entry.name.startswith(".")]
        found.update(os.path.realpath(path) for path in level)
    return found


def check_outputs_apart(outputs, image_folder=None):
    """Refuses outputs that would write over one another (--metrics-json as
    an entry of the export, a checkpoint file or a cache file), and outputs
    inside the image folder being trained on (a checkpoint or an export
    there would become a class, or images, of the next run's data)."""
    from models import cache, checkpoints, export

    real = {name: os.path.realpath(path) for name, path in outputs.items()}
    if image_folder is not None:
        for name, path in real.items():
            if any(_inside(path, data) for data in _data_folders(image_folder)):
                raise UsageError(f"{name} {outputs[name]} is inside --data-dir {image_folder}, whose folders and "
                                 "files are the training data: write it elsewhere")
    # The entries each output folder owns (the folder may hold the others' too).
    owned = {"--export": lambda entry: entry in export.ENTRIES or entry == export.STORE,
             "--checkpoint-dir": lambda entry: entry.startswith(checkpoints.OWNED_PREFIXES),
             "--cache": lambda entry: entry.startswith(cache.PREFIX)}
    for folder_flag, is_owned in owned.items():
        for name, path in real.items():
            if name == folder_flag or folder_flag not in real or not _inside(path, real[folder_flag]):
                continue
            entry = os.path.relpath(path, real[folder_flag]).split(os.sep)[0]
            if name == "--metrics-json" and entry == os.curdir:
                raise UsageError(f"--metrics-json {outputs[name]} is {folder_flag} {outputs[folder_flag]}, a "
                                 "folder: give a file name")
            if is_owned(entry):
                raise UsageError(f"{name} {outputs[name]} would write into {folder_flag} {outputs[folder_flag]}'s "
                                 f"own {entry}: give another path")


def check_metrics_json(path):
    """Refuses an existing --metrics-json FILE that train.py did not write
    (the run replaces FILE after every epoch): only an empty file or an
    earlier run's metrics (a JSON object with its "epochs") is replaced."""
    target = pathlib.Path(os.path.realpath(path))
    if target.exists() and not target.is_file():  # a device, a FIFO, a socket: never replaced by a file
        raise UsageError(f"--metrics-json {path} exists and is not a regular file: it is left untouched; give "
                         "another file")
    if not target.is_file() or target.stat().st_size == 0:
        return
    try:
        content = json.loads(target.read_text())
        ours = isinstance(content, dict) and isinstance(content.get("epochs"), list) and "finished" in content
    except (OSError, ValueError):
        ours = False
    if not ours:
        raise UsageError(f"--metrics-json {path} exists and is not train.py's metrics (a JSON object with "
                         "\"epochs\" and \"finished\"): it is left untouched; give another file")


def write_json_atomically(path, data):
    """Writes `path` whole or not at all (a temporary file, then a rename);
    a symbolic link is followed (its target is written, the link kept)."""
    path = pathlib.Path(os.path.realpath(path))
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(json.dumps(data, indent=2))
        os.replace(partial, path)
    except BaseException as error:  # an OSError, or Ctrl-C between the two steps
        partial.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise UsageError(f"cannot write {path}: {error.strerror or error}") from None
        raise
