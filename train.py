#!/usr/bin/env python3
"""Train the classic Keras CIFAR-10 CNN with gpuaug's augmentation in the model.

    python train.py                                   # CIFAR-10 (downloaded once)
    python train.py --data-dir ../shared/data/cifar10-mini --epochs 1 --limit 1000
    python train.py --augment generator               # the legacy ImageDataGenerator path
    python train.py --export exports/cifar10 --checkpoint-dir runs/cifar10

Errors (missing or unreadable data, an export that cannot be written) print
one line and exit with status 2; nothing already written is lost.
"""

import argparse
import copy
import errno
import importlib.util
import json
import math
import os
import pathlib
import re
import sys
import tempfile
import time

AUGMENT_CHOICES = ("gpu", "generator", "none")
FILL_MODES = ("constant", "nearest", "reflect", "wrap")
STRATEGIES = ("default", "mirrored", "multiworker")


class UsageError(Exception):
    """A problem the user can fix (data, paths); printed as one line, exit 2."""


def shift_range(text):
    """ImageDataGenerator's forms: an integer literal stays an int (whole
    pixels 0..n-1 with a random sign); anything else is a float."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def build_parser():
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train the Keras CIFAR-10 CNN with in-model GPU augmentation (gpuaug).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data-dir", default=None,
        help="local data: a cifar-10-batches-py/ folder (or its parent), "
        "cifar-10-python.tar.gz, or a folder of images with one sub-folder per "
        "class (optionally under train/, with test/ and/or val/ (or validation/) "
        "beside it). Default: download CIFAR-10 as keras.datasets.cifar10.load_data() does (read "
        "without unpickling code).",
    )
    data.add_argument("--limit", type=int, default=None, metavar="N",
                      help="use N of the training images, a random subset drawn with --seed (every class); "
                      "--validation-split holds out part of these")
    data.add_argument("--validation-split", type=float, default=None, metavar="F",
                      help="hold out this fraction of the training images (drawn with --seed) and report "
                      "loss and accuracy on it after each epoch (default: on the test set)")
    data.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                      help="size images from a folder are resized to (default 32 32; the CIFAR-10 batches are "
                      "32x32 and cannot be resized)")
    data.add_argument("--cache", nargs="?", const="memory", default=None, metavar="DIR",
                      help="keep a folder's decoded images after the first epoch: in memory (--cache), or in "
                      "files under DIR (--cache DIR, for data larger than memory; reused by later runs)")

    augment = parser.add_argument_group("augmentation (ImageDataGenerator's arguments)")
    augment.add_argument("--augment", choices=AUGMENT_CHOICES, default="gpu",
                         help="gpu: gpuaug layers in the model; generator: ImageDataGenerator.flow "
                         "with the same arguments; none: no augmentation")
    augment.add_argument("--rotation-range", type=float, default=0.0, help="degrees")
    augment.add_argument("--width-shift-range", type=shift_range, default=0.1,
                         help="fraction (< 1), pixels (float >= 1), or an int n (whole pixels)")
    augment.add_argument("--height-shift-range", type=shift_range, default=0.1, help="as --width-shift-range")
    augment.add_argument("--shear-range", type=float, default=0.0, help="degrees")
    augment.add_argument("--zoom-range", type=float, nargs="+", default=[0.0], metavar="Z",
                         help="Z: zoom factors in [1-Z, 1+Z]; or LOW HIGH: factors in [LOW, HIGH]")
    augment.add_argument("--channel-shift-range", type=float, default=0.0, help="pixel units (0..255)")
    augment.add_argument("--brightness-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"))
    augment.add_argument("--horizontal-flip", action=argparse.BooleanOptionalAction, default=True)
    augment.add_argument("--vertical-flip", action=argparse.BooleanOptionalAction, default=False)
    augment.add_argument("--fill-mode", choices=FILL_MODES, default="nearest")
    augment.add_argument("--cval", type=float, default=0.0, help="fill value for --fill-mode constant")
    augment.add_argument("--shift-axes", choices=("reference", "named"), default="reference",
                         help="gpu only: 'named' fixes the reference's swapped shift axes")
    augment.add_argument("--perspective-range", type=float, default=0.0, metavar="D",
                         help="gpu only (the reference has none): corners move inward by up to D times half "
                         "the image, D in [0, 1)")
    augment.add_argument("--distortion-range", type=float, nargs="+", default=[0.0], metavar="K",
                         help="gpu only: radial lens distortion, K: k1 in [-K, K] (> 0 barrel, < 0 "
                         "pincushion); K K2: also k2 in [-K2, K2]; 3 K + 5 K2 < 1")

    training = parser.add_argument_group("training")
    training.add_argument("--model", choices=("cnn", "cnn-gap", "tiny"), default="cnn",
                          help="cnn: the classic Keras CIFAR-10 CNN; cnn-gap: the same with global "
                          "average pooling instead of Flatten, for larger --image-size (224x224: 0.1M "
                          "parameters instead of 95.6M); tiny: a one-convolution model that stands in "
                          "for a fast accelerator (benchmarks)")
    training.add_argument("--epochs", type=int, default=50)
    training.add_argument("--batch-size", type=int, default=32, help="per replica")
    training.add_argument("--learning-rate", type=float, default=1e-4, help="RMSprop, as in the Keras example")
    training.add_argument("--seed", type=int, default=0)
    training.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=None,
                          help="compile the training step with XLA (default: Keras' 'auto', which "
                          "uses XLA on accelerators and not on CPU-only TensorFlow, where XLA "
                          "convolutions are slower)")
    training.add_argument("--strategy", choices=STRATEGIES, default="default",
                          help="tf.distribute strategy (TensorFlow backend); on JAX, 'mirrored' "
                          "uses keras.distribution.DataParallel over local devices and "
                          "'multiworker' over the devices of every process (multi-host)")
    cluster = parser.add_argument_group("multi-host JAX (--strategy multiworker on JAX; default: "
                                        "Keras' KERAS_DISTRIBUTION_* variables or JAX's detection)")
    cluster.add_argument("--coordinator-address", default=None, metavar="HOST:PORT",
                         help="address of process 0, the same in every process")
    cluster.add_argument("--num-processes", type=int, default=None, metavar="N")
    cluster.add_argument("--process-id", type=int, default=None, metavar="I", help="0 .. N-1; 0 is the chief")
    training.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras progress bar")

    output = parser.add_argument_group("output")
    output.add_argument("--export", default=None, metavar="DIR",
                        help="write DIR/model.keras and DIR/saved_model (inference only), both switched at once")
    output.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                        help="checkpoint every epoch; rerun with the same DIR to resume")
    output.add_argument("--metrics-json", default=None, metavar="FILE",
                        help="write epoch times, images/s and test accuracy as JSON")
    return parser


def given_flags(parser, argv):
    """The destinations of the options `argv` gives (not left at their defaults)."""
    probe = copy.deepcopy(parser)
    for action in probe._actions:
        action.default = argparse.SUPPRESS  # absent from the namespace unless given
    return set(vars(probe.parse_args(argv)))


AUGMENTATION_FLAGS = ("rotation_range", "width_shift_range", "height_shift_range", "shear_range", "zoom_range",
                      "channel_shift_range", "brightness_range", "horizontal_flip", "vertical_flip", "fill_mode",
                      "cval", "shift_axes", "perspective_range", "distortion_range")


def flag(dest):
    return "--" + dest.replace("_", "-")


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("limit", "epochs", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1 (got {value})")
    if args.validation_split is not None and not 0 < args.validation_split < 1:
        parser.error(f"--validation-split must be between 0 and 1, exclusive (got {args.validation_split})")
    if args.image_size is not None and any(size < 1 for size in args.image_size):
        parser.error(f"--image-size must be two sizes >= 1 (got {' '.join(map(str, args.image_size))})")
    if len(args.zoom_range) > 2:
        parser.error(f"--zoom-range takes Z or LOW HIGH (got {' '.join(map(str, args.zoom_range))})")
    if not (args.learning_rate > 0 and math.isfinite(args.learning_rate)):
        parser.error(f"--learning-rate must be a finite number > 0 (got {args.learning_rate})")
    for name in ("data_dir", "cache", "export", "checkpoint_dir", "metrics_json"):
        value = getattr(args, name)
        if value is not None and not value.strip():  # an unset shell variable: "$CKPT"
            parser.error(f"{flag(name)} needs a path (got an empty string)")
    if not 0 <= args.seed < 2**32:
        parser.error(f"--seed must be between 0 and 2**32 - 1 (got {args.seed})")
    # The augmentation arguments, checked by gpuaug itself before any data is read;
    # its messages name the keyword (`rotation_range`), the command line the flag.
    from gpuaug.config import AugmentationConfig

    if len(args.distortion_range) > 2:
        parser.error(f"--distortion-range takes K or K K2 (got {' '.join(map(str, args.distortion_range))})")
    if args.augment != "gpu" and (args.perspective_range or any(args.distortion_range)):
        parser.error(f"--perspective-range and --distortion-range need --augment gpu: ImageDataGenerator has "
                     f"neither (got --augment {args.augment})")
    try:
        AugmentationConfig.from_arguments(**random_transform_arguments(args))
    except ValueError as error:
        parser.error(re.sub(r"`(\w+)`", lambda match: "--" + match.group(1).replace("_", "-"), str(error)))
    given = given_flags(parser, sys.argv[1:] if argv is None else argv)
    # Flags that would be ignored are refused, as ImageDataGenerator's missing features are.
    if args.augment == "none":
        ignored = [flag(dest) for dest in AUGMENTATION_FLAGS if dest in given]
        if ignored:
            parser.error(f"{', '.join(ignored)}: --augment none does not augment, so "
                         f"{'they' if len(ignored) > 1 else 'it'} would be ignored")
    if args.augment == "generator" and args.shift_axes != "reference":
        parser.error(f"--shift-axes {args.shift_axes} needs --augment gpu: ImageDataGenerator always shifts along "
                     "the reference's (swapped) axes")
    if "cval" in given and args.fill_mode != "constant":
        parser.error(f"--cval is the fill value of --fill-mode constant; with --fill-mode {args.fill_mode} it "
                     "would be ignored")
    return args


def augmentation_arguments(args):
    """ImageDataGenerator keyword arguments from the command line."""
    return dict(
        rotation_range=args.rotation_range,
        width_shift_range=args.width_shift_range,
        height_shift_range=args.height_shift_range,
        shear_range=args.shear_range,
        zoom_range=args.zoom_range[0] if len(args.zoom_range) == 1 else list(args.zoom_range),
        channel_shift_range=args.channel_shift_range,
        brightness_range=list(args.brightness_range) if args.brightness_range else None,
        horizontal_flip=args.horizontal_flip,
        vertical_flip=args.vertical_flip,
        fill_mode=args.fill_mode,
        cval=args.cval,
    )


def random_transform_arguments(args):
    """RandomTransform's geometry and colour arguments from the command line:
    ImageDataGenerator's, and those it does not have."""
    distortion = args.distortion_range
    return dict(augmentation_arguments(args), shift_axes=args.shift_axes, perspective_range=args.perspective_range,
                distortion_range=distortion[0] if len(distortion) == 1 else list(distortion))


def load_dataset(args):
    """The splits of --data-dir (models/data.py; image folders are streamed)."""
    from models.data import DataError, open_data

    try:
        return open_data(args.data_dir, image_size=args.image_size, seed=args.seed,
                         limit=args.limit, validation_split=args.validation_split)
    except DataError as error:
        raise UsageError(str(error)) from None


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


def prepare_export(export_dir):
    """Before training: refuses an --export folder whose model.keras or
    saved_model is not an earlier export, and finishes (or discards) an
    export that a killed run left half-installed there."""
    from models import export

    try:
        export.check_target(export_dir)
        outcome = export.recover(export_dir)
    except export.ExportError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"--export {export_dir}: {error.strerror or error}") from None
    if outcome == "installed":
        print(f"--export {export_dir}: installed the export an interrupted run had completed", flush=True)
    elif outcome == "discarded":
        print(f"--export {export_dir}: removed the unfinished export of an interrupted run", flush=True)


def export_model(model, export_dir):
    """Writes model.keras and an inference SavedModel into `export_dir`
    (see models/export.py: only those two entries are replaced, both at
    once); says in one line when no SavedModel could be written. Returns
    the folder's absolute path."""
    from models import export

    try:
        folder, problem = export.export_model(model, export_dir)
    except export.ExportError as error:
        raise UsageError(str(error)) from None
    if problem:
        print(f"--export {folder}: saved_model not written ({problem}); model.keras is", flush=True)
    return folder


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


def build_model(args, splits, topology):
    """The compiled model (in the topology's scope), its checkpoint restored;
    returns (model, finished epochs)."""
    import keras

    import gpuaug
    from models.cifar10 import BUILDERS

    with topology.scope():
        augmentation = []
        if args.augment == "gpu":
            augmentation = [gpuaug.RandomTransform(**random_transform_arguments(args), seed=args.seed, name="augment")]
        try:
            model = BUILDERS[args.model](augmentation, input_shape=splits.image_shape,
                                         num_classes=splits.num_classes)
        except ValueError as error:  # e.g. pooling past the image's edge
            reason = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().splitlines()
            reason = next((line for line in reason if "size" in line.lower()), reason[0] if reason else "")
            raise UsageError(f"--model {args.model} cannot take {splits.image_shape[0]}x{splits.image_shape[1]} "
                             f"images ({reason.strip()}); use a larger --image-size") from None
        # Evaluation shares padded with weight-0 images need a weighted accuracy (models/topologies.py).
        weighted = [keras.metrics.SparseCategoricalAccuracy(name="weighted_accuracy")] if topology.padded else None
        model.compile(
            optimizer=keras.optimizers.RMSprop(learning_rate=args.learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            weighted_metrics=weighted,
            jit_compile="auto" if args.jit_compile is None else args.jit_compile,
        )
        restored = None
        if args.checkpoint_dir:
            run = run_definition(args, splits, topology)
            restored = restore_checkpoint(model, args.checkpoint_dir, repair=topology.chief,
                                          check_run=lambda recorded: check_same_run(args, run, recorded))
            continue_run(args, run, restored, model)
    return model, restored


def run_definition(args, splits, topology):
    """What defines a run (recorded in its checkpoint): the data, its
    splits and order, the batches, the augmentation, the model, the
    learning rate, the backend. JSON values: an image folder's class names
    (their order is the labels) and every split's count are part of it, so
    a folder whose classes or files changed is another run."""
    import keras

    return {
        "data_dir": None if args.data_dir is None else os.path.realpath(args.data_dir),
        "limit": args.limit,
        "validation_split": args.validation_split,
        "image_size": list(splits.image_shape[:2]),
        "class_names": list(splits.folder.class_names) if splits.kind == "folder" else None,
        "counts": dict(splits.counts),
        "files": folder_fingerprint(splits.folder, args.data_dir) if splits.kind == "folder" else None,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "replicas": topology.replicas,
        "augment": args.augment,
        "augmentation": json.loads(json.dumps(random_transform_arguments(args))) if args.augment != "none" else None,
        "model": args.model,
        "learning_rate": args.learning_rate,
        "backend": keras.backend.backend(),
    }


def folder_fingerprint(folder, data_dir):
    """A digest of every split's files and labels, in order, paths relative
    to --data-dir: an image added, removed, renamed or moved to another
    class changes it, a touched file does not."""
    import hashlib

    digest, root = hashlib.sha256(), os.path.abspath(data_dir)
    for name in ("train", "validation", "test"):
        part = getattr(folder, name)
        for path, label in part.pairs() if part is not None else ():
            relative = os.fsencode(os.path.relpath(os.path.abspath(path), root))
            digest.update(name.encode() + b"\0" + relative + b"\0" + str(int(label)).encode() + b"\n")
    return digest.hexdigest()[:20]


def _shown(value):
    if value is None:
        return "none"
    if isinstance(value, list):
        return " ".join(map(str, value))
    if isinstance(value, dict):
        return ", ".join(f"{key} {item}" for key, item in value.items())
    return str(value)


def check_same_run(args, run, recorded):
    """Refuses (one line naming the flag and both values) to resume a
    checkpoint whose run (`recorded`; None: an earlier gpuaug's, which
    recorded nothing) differs from this one (`run`) in what defines it: one
    model would be trained on two runs' data, batches or augmentation."""
    recorded = recorded or {}
    names = {"data_dir": "--data-dir", "replicas": "--strategy (devices sharing a batch)",
             "class_names": "--data-dir's class folders", "counts": "--data-dir's images per split",
             "files": "--data-dir's files and labels (digest)"}
    # Compared as JSON, so types count: --width-shift-range 4 (whole pixels) is
    # not 4.0 (any shift up to 4 pixels), as in ImageDataGenerator.
    same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # noqa: E731
    differences = [(names.get(key, flag(key)), recorded[key], run[key])
                   for key in ("data_dir", "limit", "validation_split", "image_size", "class_names", "counts", "files",
                               "seed",
                               "batch_size", "replicas", "augment", "model")
                   if key in recorded and not same(recorded[key], run[key])]
    if not differences and recorded.get("augment") == run["augment"]:
        before, now = recorded.get("augmentation") or {}, run["augmentation"] or {}
        differences = [(flag(key), before[key], now.get(key)) for key in sorted(before)
                       if not same(before[key], now.get(key))]
    if differences:
        name, theirs, ours = differences[0]
        raise UsageError(f"--checkpoint-dir {args.checkpoint_dir} holds a run with {name} {_shown(theirs)}; this "
                         f"run has {_shown(ours)}: resume with the same flags, or use another --checkpoint-dir")


def continue_run(args, run, restored, model):
    """After a checkpoint loaded: applies this run's --learning-rate (the
    optimizer's state brought the interrupted run's) and says so when it
    changed; notes another backend, and a checkpoint that recorded no flags."""
    if restored.epochs == 0:
        return
    recorded = restored.run
    if recorded is None:
        print(f"--checkpoint-dir {args.checkpoint_dir}: written by an earlier gpuaug, which recorded no flags: "
              "this run's are not checked against the interrupted run's", flush=True)
        recorded = {}
    if model.optimizer is not None:
        model.optimizer.learning_rate = args.learning_rate
        if recorded.get("learning_rate", args.learning_rate) != args.learning_rate:
            print(f"--learning-rate {args.learning_rate}: the interrupted run trained with "
                  f"{recorded['learning_rate']}; training continues with {args.learning_rate}", flush=True)
    if recorded.get("backend", run["backend"]) != run["backend"]:
        print(f"--checkpoint-dir {args.checkpoint_dir}: written on the {recorded['backend']} backend, resumed on "
              f"{run['backend']}: the weights continue, the random draws come from {run['backend']}'s generator",
              flush=True)


def run(args):
    """Trains, evaluates and exports; returns a summary dict (with the model).

    The same sequence on every topology (models/topologies.py): choose it,
    read the data's index, check, start (join a cluster), take this process's
    share, build, fit, evaluate, export."""
    if args.augment == "generator" and importlib.util.find_spec("scipy") is None:
        raise UsageError("--augment generator runs the legacy ImageDataGenerator, which needs scipy: "
                         "pip install -r requirements-test.txt")
    import keras

    from models import topologies

    try:
        # TensorFlow's collective ops must be configured before TensorFlow runs
        # anything; JAX joins its cluster after the data checks, so that a
        # process with bad data exits before joining.
        topology = topologies.choose(args, keras.backend.backend())
        splits = load_dataset(args)
        check_inputs(args, splits)
        topology.start()
    except topologies.UsageError as error:
        raise UsageError(str(error)) from None
    keras.utils.set_random_seed(args.seed)
    checkpoint_lock = hold_checkpoint_dir(args.checkpoint_dir) if args.checkpoint_dir and topology.chief else None
    try:
        return prepare_and_train(args, splits, topology)
    finally:
        if checkpoint_lock is not None:
            checkpoint_lock.close()


def hold_checkpoint_dir(checkpoint_dir):
    """The --checkpoint-dir's run lock (models/checkpoints.py: `hold`),
    held by the chief until the run ends; one line if another run has it."""
    from models.checkpoints import CheckpointError, hold

    try:
        return hold(checkpoint_dir)
    except CheckpointError as error:
        raise UsageError(str(error)) from None


def prepare_and_train(args, splits, topology):
    """Prepares the export folder and this process's feeds, then trains
    (`train_and_export`)."""
    from models import inputs
    from models.cache import CacheError
    from models.errors import DataError

    if args.export and topology.chief:
        prepare_export(args.export)
    counts = dict(splits.counts)
    global_batch = args.batch_size * topology.replicas
    batch = global_batch if topology.batch_is_global else global_batch // topology.processes
    try:
        shared = topology.share(splits, counts, args.seed)
        feeds = inputs.Feeds(splits, batch, batch * max(1, 256 // batch), args.seed, args.cache,
                             topology.cache_name)
        topology.prepare(feeds, generator=args.augment == "generator")  # files checked before training
    except DataError as error:
        prefix = f"--strategy {args.strategy} over {topology.replicas} devices: " if args.strategy != "default" else ""
        raise UsageError(f"{prefix}{error}") from None
    except CacheError as error:
        raise UsageError(str(error)) from None
    if shared:
        print(shared, flush=True)
    try:
        return train_and_export(args, splits, topology, feeds, counts, global_batch)
    finally:
        feeds.close()


def train_and_export(args, splits, topology, feeds, counts, global_batch):
    """Builds the model (its checkpoint restored), trains, evaluates and
    exports; returns `run`'s summary."""
    import keras

    from models import folders, inputs
    from models.cache import CacheError
    from models.checkpoints import CheckpointError
    from models.errors import DataError, file_system_error

    model, restored = build_model(args, splits, topology)
    initial_epoch = restored.epochs if restored else 0

    # Validation each epoch: the --validation-split hold-out (or a val/ folder
    # beside test/), else the test set, as the Keras cifar10 example does.
    validation_name = "validation" if splits.validation is not None else "test"
    metrics_file = args.metrics_json if topology.chief else None
    # The epochs already done: from the checkpoint (which records them with the
    # state it saves), else (a checkpoint of an earlier gpuaug) from FILE.
    earlier = (restored.history if restored and restored.run is not None
               else earlier_epoch_records(metrics_file, initial_epoch))
    saver = topology.checkpoint_saver(args.checkpoint_dir) if args.checkpoint_dir else None
    report = EpochReport(counts["train"], validation_name, metrics_file, earlier,
                         lambda logs: topology.corrected(logs, validation_name, "val_"),
                         save=saver and (lambda model, epochs, history: saver(
                             model, epochs, run=run_definition(args, splits, topology), history=history)),
                         after_epoch=feeds.finalize_caches)
    # The data order first (each epoch's is drawn from its number), Keras'
    # progress bar, then the report, which saves the checkpoint before it
    # prints the epoch's line: when the line is printed, that epoch is saved.
    callbacks = [feeds.epoch.callback()] + ([keras.callbacks.ProgbarLogger()] if args.verbose else []) + [report]

    print(f"data: {splits.description}", flush=True)
    if args.cache and args.augment == "generator" and splits.kind == "folder":
        print("--cache: --augment generator reads the training images with flow_from_directory every epoch; the "
              "cache keeps the evaluated splits only", flush=True)
    print(f"training on {counts['train']} images ({args.augment} augmentation, batch {global_batch}, "
          f"{topology.replicas} replica(s), jit_compile={model.jit_compile}, backend {keras.backend.backend()}, "
          f"{'streamed from ' + folders.printable(args.data_dir) if splits.kind == 'folder' else 'in memory'}; "
          f"{validation_name} after each epoch: {counts[validation_name]} images)", flush=True)
    fit = dict(epochs=args.epochs, initial_epoch=initial_epoch, callbacks=callbacks, verbose=args.verbose)
    try:
        if args.augment == "generator":
            with tempfile.TemporaryDirectory(prefix="gpuaug-flow-from-directory-") as scratch:
                flow = inputs.generator_flow(splits, augmentation_arguments(args), global_batch, args.seed, scratch)
                inputs.continue_generator(flow, initial_epoch)
                model.fit(flow, **feeds.validation(validation_name), **fit)
        else:
            topology.fit(model, feeds, counts["train"], dict(fit, validation=validation_name))
        _, accuracy = topology.evaluate(model, feeds, "test")
    except (CacheError, DataError, CheckpointError) as error:  # shares of TF multi-worker; a full disk
        raise UsageError(str(error)) from None
    except UsageError:  # the epoch report's own line (--metrics-json could not be written)
        raise
    except Exception as error:
        problem, refused = None, file_system_error(error)
        # A write refused for lack of room: tf.data writing the --cache files
        # (the checkpoint's writer says so itself). A denied read is the data's.
        if refused is not None and refused.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            where = f"--cache {args.cache}" if args.cache and args.cache != "memory" else "a file written in training"
            raise UsageError(f"{where}: {refused.strerror or refused} while training; the files of the "
                             "epochs finished before are kept: make room and rerun") from None
        if splits.kind == "folder" and folders.is_decode_error(error):
            problem = folders.find_undecodable((splits.train, splits.validation, splits.test))
        elif splits.kind == "folder" and args.augment == "generator":  # Pillow's error, however Keras wrapped it
            problem = folders.find_undecodable((splits.train,), reader="pillow", default=None)
        if problem:
            raise UsageError(problem) from None
        raise
    feeds.finalize_caches()
    for line in feeds.describe_caches():
        print(f"--cache {line}", flush=True)
    print(f"test accuracy: {accuracy:.4f}", flush=True)
    summary = {
        "augment": args.augment,
        "backend": keras.backend.backend(),
        "data": splits.kind,
        "train_images": counts["train"],
        "validation": validation_name,
        "epochs_run": len(report.seconds),
        "epoch_seconds": report.seconds,
        "images_per_second": [counts["train"] / s for s in report.seconds],
        "epochs": report.earlier + report.records,
        "test_accuracy": float(accuracy),
        "replicas": topology.replicas,
        "finished": True,
    }
    if args.export:
        from models import export

        folder = topology.write_export(args.export, lambda: export_model(model, args.export),
                                       lambda scratch: export.write_export(model, scratch))
        print(f"exported to {folder}" if folder else "not the chief worker: the chief writes the export", flush=True)
    if metrics_file:
        write_json_atomically(args.metrics_json, summary)
    summary["model"] = model
    return summary


def earlier_epoch_records(metrics_json, initial_epoch):
    """On a run resumed from a checkpoint of an earlier gpuaug (which kept
    no history), the per-epoch records of the epochs already done that
    --metrics-json FILE holds from the interrupted run (FILE is rewritten
    after every epoch); [] when there are none or FILE is unreadable."""
    if not metrics_json or initial_epoch == 0:
        return []
    try:
        records = json.loads(pathlib.Path(metrics_json).read_text())["epochs"]
        return [r for r in records if isinstance(r, dict) and isinstance(r.get("epoch"), int)
                and r["epoch"] <= initial_epoch]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def restore_checkpoint(model, checkpoint_dir, repair=True, check_run=None):
    """Loads the newest usable state of --checkpoint-dir (models/checkpoints.py)
    and returns it (`Restored`); one line and exit 2 if none loads."""
    from models.checkpoints import CheckpointError, restore

    try:
        restored = restore(model, checkpoint_dir, repair=repair, check_run=check_run)
    except CheckpointError as error:
        raise UsageError(str(error)) from None
    if restored.message:
        print(restored.message, flush=True)
    return restored


def _epoch_report_class():
    import keras

    class EpochReport(keras.callbacks.Callback):
        """After every epoch, in this order: builds its record (wall time,
        images/s, the training and validation metrics) into `records`; calls
        `after_epoch()`; `save(model, epochs_done, history)` (the checkpoint,
        with `earlier`, the records of a resumed run's epochs already done, and
        `records`); with `metrics_json`, rewrites that file (atomically) with
        them; prints the epoch's line."""

        def __init__(self, images_per_epoch, validation_name="test", metrics_json=None, earlier=(),
                     validation_metrics=None, save=None, after_epoch=None):
            super().__init__()
            self.save, self.after_epoch = save, after_epoch
            self.images_per_epoch = images_per_epoch
            self.validation_name = validation_name
            self.validation_metrics = validation_metrics or (lambda logs: (logs["val_loss"], logs["val_accuracy"]))
            self.metrics_json = metrics_json
            self.earlier = list(earlier)
            self.seconds = []
            self.records = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self._start
            self.seconds.append(seconds)
            logs = {key: float(value) for key, value in (logs or {}).items()}
            record = {"epoch": epoch + 1, "seconds": seconds, "images_per_second": self.images_per_epoch / seconds,
                      "loss": logs.get("loss"), "accuracy": logs.get("accuracy")}
            line = (f"epoch {epoch + 1}: {seconds:.2f} s, {self.images_per_epoch / seconds:,.0f} images/s, "
                    f"loss {logs.get('loss', float('nan')):.4f}, accuracy {logs.get('accuracy', float('nan')):.4f}")
            if "val_loss" in logs:
                name = self.validation_name
                loss, accuracy = self.validation_metrics(logs)
                record.update({f"{name}_loss": loss, f"{name}_accuracy": accuracy})
                line += f", {name} loss {loss:.4f}, {name} accuracy {accuracy:.4f}"
            self.records.append(record)
            if self.after_epoch is not None:
                self.after_epoch()
            if self.save is not None:  # the state, with every epoch's record so far
                self.save(self.model, epoch + 1, self.earlier + self.records)
            if self.metrics_json:  # so that an interrupted run keeps what it measured
                write_json_atomically(self.metrics_json, {"epochs": self.earlier + self.records,
                                                          "finished": False})
            print(line, flush=True)

    return EpochReport


def EpochReport(images_per_epoch, validation_name="test", metrics_json=None, earlier=(),  # noqa: N802
                validation_metrics=None, save=None, after_epoch=None):
    # A class made lazily (keras is imported only after --help).
    return _epoch_report_class()(images_per_epoch, validation_name, metrics_json, earlier, validation_metrics,
                                 save, after_epoch)


def main(argv=None):
    # Paths that are not valid UTF-8 print with \x escapes, whatever the locale's strictness.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        args = parse_args(argv)  # imports TensorFlow: Ctrl-C can land here too
    except KeyboardInterrupt:
        print("train.py: interrupted", file=sys.stderr)
        return 130
    try:
        run(args)
    except UsageError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = f"; rerun with --checkpoint-dir {args.checkpoint_dir} to resume" if args.checkpoint_dir else ""
        # In a terminal, Ctrl-C lands in the middle of Keras' progress bar: start a new line.
        new_line = "\n" if sys.stderr.isatty() else ""
        print(f"{new_line}train.py: interrupted{hint}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
