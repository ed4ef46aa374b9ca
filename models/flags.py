"""train.py's command line: the flags (`build_parser`) and the checks
that need no data (`parse_args`): ranges, paths, and flag combinations
that would be ignored or cannot work. Each problem is one line from
argparse (exit 2) naming the flag."""

import argparse
import copy
import importlib.util
import math
import pathlib
import re
import sys

AUGMENT_CHOICES = ("gpu", "generator", "none")
STRATEGIES = ("default", "mirrored", "multiworker")
TRAINING_BACKENDS = ("tensorflow", "jax", "torch")
PATH_FLAGS = ("data_dir", "cache", "export", "checkpoint_dir", "metrics_json")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train the Keras CIFAR-10 CNN with in-model GPU augmentation (gpuaug).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for add_flags in (add_data_flags, add_augmentation_flags, add_training_flags, add_output_flags):
        add_flags(parser)
    return parser


def argument_table():
    """`gpuaug.arguments`, the table the augmentation flags come from, loaded
    without running `gpuaug/__init__.py` (which imports Keras and its
    backend): `--help` and a flag's error stay instant and need no working
    backend. It is the same module object `import gpuaug` uses later."""
    if "gpuaug.arguments" in sys.modules:
        return sys.modules["gpuaug.arguments"]
    package = importlib.util.find_spec("gpuaug")  # finds the package, runs nothing of it
    path = pathlib.Path(next(iter(package.submodule_search_locations))) / "arguments.py"
    spec = importlib.util.spec_from_file_location("gpuaug.arguments", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpuaug.arguments"] = module
    spec.loader.exec_module(module)
    return module


def add_data_flags(parser):
    """Where the images come from and how they are split."""
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


def add_augmentation_flags(parser):
    """--augment, then ImageDataGenerator's arguments and gpuaug's beyond
    them, from the one table of `gpuaug.arguments`."""
    augment = parser.add_argument_group("augmentation (ImageDataGenerator's arguments)")
    augment.add_argument("--augment", choices=AUGMENT_CHOICES, default="gpu",
                         help="gpu: gpuaug layers in the model; generator: ImageDataGenerator.flow "
                         "with the same arguments; none: no augmentation")
    argument_table().add_flags(augment)


def add_training_flags(parser):
    """The model, the optimizer, the batches, the devices."""
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
    add_cluster_flags(parser)
    training.add_argument("--mixup", type=float, default=None, metavar="ALPHA",
                          help="MixUp in the training step (gpuaug.MixUp): each image blended with another of "
                          "its batch, weight ~ Beta(ALPHA, ALPHA), labels likewise; ALPHA in [1e-30, 1e30] "
                          "(0.2 is usual)")
    training.add_argument("--cutmix", type=float, default=None, metavar="ALPHA",
                          help="CutMix in the training step (gpuaug.CutMix with factor (ALPHA, ALPHA)): a box "
                          "of another image pasted in, labels by its area, lambda ~ Beta(ALPHA, ALPHA); ALPHA in "
                          "(0, 1]; with --mixup, one of the two per batch")
    training.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras progress bar")


def add_cluster_flags(parser):
    """Multi-host JAX (--strategy multiworker), a group of its own."""
    cluster = parser.add_argument_group("multi-host JAX (--strategy multiworker on JAX; default: "
                                        "Keras' KERAS_DISTRIBUTION_* variables or JAX's detection)")
    cluster.add_argument("--coordinator-address", default=None, metavar="HOST:PORT",
                         help="address of process 0, the same in every process")
    cluster.add_argument("--num-processes", type=int, default=None, metavar="N")
    cluster.add_argument("--process-id", type=int, default=None, metavar="I", help="0 .. N-1; 0 is the chief")


def add_output_flags(parser):
    """What the run writes."""
    output = parser.add_argument_group("output")
    output.add_argument("--export", default=None, metavar="DIR",
                        help="write DIR/model.keras and DIR/saved_model (inference only), both switched at once")
    output.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                        help="checkpoint every epoch; rerun with the same DIR to resume")
    output.add_argument("--metrics-json", default=None, metavar="FILE",
                        help="write epoch times, images/s and test accuracy as JSON")


def given_flags(parser, argv):
    """The destinations of the options `argv` gives (not left at their defaults)."""
    probe = copy.deepcopy(parser)
    for action in probe._actions:
        action.default = argparse.SUPPRESS  # absent from the namespace unless given
    return set(vars(probe.parse_args(argv)))


def flag(dest):
    """The flag of an argparse destination: "zoom_range" -> "--zoom-range"."""
    return "--" + dest.replace("_", "-")


def parse_args(argv=None):
    """The command line, checked in this order (the first problem is the
    one reported): sizes and ranges, paths, the seed, the Keras backend,
    the augmentation (by gpuaug itself), the mixing, then flags that would
    be ignored."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for check in (check_sizes, check_zoom_form, check_learning_rate, check_paths, check_seed, check_backend,
                  check_augmentation, check_mixing):
        problem = check(args)
        if problem:
            parser.error(problem)
    problem = check_ignored(args, given_flags(parser, sys.argv[1:] if argv is None else argv))
    if problem:
        parser.error(problem)
    return args


def check_sizes(args):
    """The first count or size out of its range, as a line, or None."""
    for name in ("limit", "epochs", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            return f"{flag(name)} must be >= 1 (got {value})"
    if args.validation_split is not None and not 0 < args.validation_split < 1:
        return f"--validation-split must be between 0 and 1, exclusive (got {args.validation_split})"
    if args.image_size is not None and any(size < 1 for size in args.image_size):
        return f"--image-size must be two sizes >= 1 (got {' '.join(map(str, args.image_size))})"
    return None


def check_zoom_form(args):
    if len(args.zoom_range) > 2:
        return f"--zoom-range takes Z or LOW HIGH (got {' '.join(map(str, args.zoom_range))})"
    return None


def check_learning_rate(args):
    if not (args.learning_rate > 0 and math.isfinite(args.learning_rate)):
        return f"--learning-rate must be a finite number > 0 (got {args.learning_rate})"
    return None


def check_paths(args):
    """An empty path (an unset shell variable: "$CKPT"), as a line, or None."""
    for name in PATH_FLAGS:
        value = getattr(args, name)
        if value is not None and not value.strip():
            return f"{flag(name)} needs a path (got an empty string)"
    return None


def check_seed(args):
    if not 0 <= args.seed < 2**32:
        return f"--seed must be between 0 and 2**32 - 1 (got {args.seed})"
    return None


def check_backend(args):
    """Keras and its backend load and can train (KERAS_BACKEND names
    TensorFlow, JAX or PyTorch, installed), as a line, or None."""
    try:
        import keras
    except (ImportError, ValueError) as error:  # Keras raises ValueError for a backend it cannot import
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"cannot load Keras' backend ({reason}): set KERAS_BACKEND to {_choices(TRAINING_BACKENDS)}"
    if keras.backend.backend() not in TRAINING_BACKENDS:  # numpy, openvino: inference only, no fit
        return (f"Keras' {keras.backend.backend()} backend cannot train (no fit): set KERAS_BACKEND to "
                f"{_choices(TRAINING_BACKENDS)}")
    return None


def _choices(names):
    """("a", "b", "c") -> "a, b or c"."""
    return ", ".join(names[:-1]) + " or " + names[-1]


def check_augmentation(args):
    """The augmentation flags, checked by gpuaug itself before any data is
    read; its messages name the keyword (`rotation_range`), ours the flag."""
    from gpuaug.config import AugmentationConfig

    if len(args.distortion_range) > 2:
        return f"--distortion-range takes K or K K2 (got {' '.join(map(str, args.distortion_range))})"
    if args.augment != "gpu" and (args.perspective_range or any(args.distortion_range)):
        return (f"--perspective-range and --distortion-range need --augment gpu: ImageDataGenerator has "
                f"neither (got --augment {args.augment})")
    try:
        AugmentationConfig.from_arguments(**random_transform_arguments(args))
    except ValueError as error:
        return re.sub(r"`(\w+)`", lambda match: flag(match.group(1)), str(error))
    return None


def check_mixing(args):
    """--mixup and --cutmix: their ranges, and the topologies that cannot mix."""
    from gpuaug.mixing import ALPHA_RANGE

    if args.mixup is not None and not ALPHA_RANGE[0] <= args.mixup <= ALPHA_RANGE[1]:
        return f"--mixup must be in [{ALPHA_RANGE[0]:g}, {ALPHA_RANGE[1]:g}] (got {args.mixup})"
    if args.cutmix is not None and not 0 < args.cutmix <= 1:
        return f"--cutmix must be in (0, 1], the range of Keras' CutMix factor (got {args.cutmix})"
    if (args.mixup is not None or args.cutmix is not None) and args.strategy == "multiworker":
        return "--mixup and --cutmix are not supported with --strategy multiworker"
    return None


def mixing_layers(args):
    """The gpuaug.MixUp / gpuaug.CutMix layers of --mixup and --cutmix ([]: none)."""
    import gpuaug

    layers = []
    if args.mixup is not None:
        layers.append(gpuaug.MixUp(alpha=args.mixup, seed=args.seed, name="mixup"))
    if args.cutmix is not None:
        layers.append(gpuaug.CutMix(factor=(args.cutmix, args.cutmix), seed=args.seed, name="cutmix"))
    return layers


def check_ignored(args, given):
    """Flags that would be ignored (`given`: the destinations on the command
    line) are refused, as ImageDataGenerator's missing features are."""
    arguments = argument_table()
    if args.augment == "none":
        ignored = [flag(dest) for dest in arguments.FLAGS if dest in given]
        if ignored:
            return (f"{', '.join(ignored)}: --augment none does not augment, so "
                    f"{'they' if len(ignored) > 1 else 'it'} would be ignored")
    if args.augment == "generator" and args.shift_axes != "reference":
        return (f"--shift-axes {args.shift_axes} needs --augment gpu: ImageDataGenerator always shifts along "
                "the reference's (swapped) axes")
    if "cval" in given and args.fill_mode != "constant":
        return (f"--cval is the fill value of --fill-mode constant; with --fill-mode {args.fill_mode} it "
                "would be ignored")
    return None


def augmentation_arguments(args):
    """ImageDataGenerator's keyword arguments from the command line."""
    return argument_table().from_flags(args, generator=True)


def random_transform_arguments(args):
    """RandomTransform's geometry and colour arguments from the command line:
    ImageDataGenerator's, and those it does not have."""
    return argument_table().from_flags(args)
