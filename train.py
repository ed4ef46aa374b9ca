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
import contextlib
import importlib.util
import json
import os
import pathlib
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


def parse_args(argv=None):
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
        "class (optionally under train/ and test/). Default: download with "
        "keras.datasets.cifar10.load_data().",
    )
    data.add_argument("--limit", type=int, default=None, metavar="N", help="use the first N training images")
    data.add_argument("--image-size", type=int, nargs=2, default=(32, 32), metavar=("H", "W"),
                      help="size image folders are resized to")

    augment = parser.add_argument_group("augmentation (ImageDataGenerator's arguments)")
    augment.add_argument("--augment", choices=AUGMENT_CHOICES, default="gpu",
                         help="gpu: gpuaug layers in the model; generator: ImageDataGenerator.flow "
                         "with the same arguments; none: no augmentation")
    augment.add_argument("--rotation-range", type=float, default=0.0, help="degrees")
    augment.add_argument("--width-shift-range", type=shift_range, default=0.1,
                         help="fraction (< 1), pixels (float >= 1), or an int n (whole pixels)")
    augment.add_argument("--height-shift-range", type=shift_range, default=0.1, help="as --width-shift-range")
    augment.add_argument("--shear-range", type=float, default=0.0, help="degrees")
    augment.add_argument("--zoom-range", type=float, default=0.0, help="z: zoom factors in [1-z, 1+z]")
    augment.add_argument("--channel-shift-range", type=float, default=0.0, help="pixel units (0..255)")
    augment.add_argument("--brightness-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"))
    augment.add_argument("--horizontal-flip", action=argparse.BooleanOptionalAction, default=True)
    augment.add_argument("--vertical-flip", action=argparse.BooleanOptionalAction, default=False)
    augment.add_argument("--fill-mode", choices=FILL_MODES, default="nearest")
    augment.add_argument("--cval", type=float, default=0.0, help="fill value for --fill-mode constant")
    augment.add_argument("--shift-axes", choices=("reference", "named"), default="reference",
                         help="gpu only: 'named' fixes the reference's swapped shift axes")

    training = parser.add_argument_group("training")
    training.add_argument("--model", choices=("cnn", "tiny"), default="cnn",
                          help="cnn: the classic Keras CIFAR-10 CNN; tiny: a one-convolution model "
                          "that stands in for a fast accelerator (benchmarks)")
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
                        help="write DIR/model.keras and DIR/saved_model (inference only), atomically")
    output.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                        help="checkpoint every epoch; rerun with the same DIR to resume")
    output.add_argument("--metrics-json", default=None, metavar="FILE",
                        help="write epoch times, images/s and test accuracy as JSON")
    args = parser.parse_args(argv)
    for name in ("limit", "epochs", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1 (got {value})")
    return args


def augmentation_arguments(args):
    """ImageDataGenerator keyword arguments from the command line."""
    return dict(
        rotation_range=args.rotation_range,
        width_shift_range=args.width_shift_range,
        height_shift_range=args.height_shift_range,
        shear_range=args.shear_range,
        zoom_range=args.zoom_range,
        channel_shift_range=args.channel_shift_range,
        brightness_range=list(args.brightness_range) if args.brightness_range else None,
        horizontal_flip=args.horizontal_flip,
        vertical_flip=args.vertical_flip,
        fill_mode=args.fill_mode,
        cval=args.cval,
    )


def load_dataset(args):
    from models.data import DataError, load_data

    try:
        (x_train, y_train), (x_test, y_test) = load_data(
            args.data_dir, image_size=tuple(args.image_size), seed=args.seed
        )
    except DataError as error:
        raise UsageError(str(error)) from None
    if args.limit is not None:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
    return (x_train, y_train), (x_test, y_test)


def check_writable(path, flag):
    """Fails early (before training) if `path` could not be written: a file
    where a folder is expected (or the reverse for --metrics-json), or a
    nearest existing folder that does not accept a new file (permissions, a
    read-only or full file system). Writes and removes one temporary file;
    creates nothing else."""
    path = pathlib.Path(path).absolute()
    if flag == "--metrics-json":
        if path.is_dir():
            raise UsageError(f"{flag} {path} is a directory; give a file name, e.g. {path / 'metrics.json'}")
    elif path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path} exists and is not a directory")
    folder = path if path.is_dir() else path.parent
    while not folder.exists():
        folder = folder.parent
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
        print(f"--export {export_dir}: finished installing the export of an interrupted run", flush=True)
    elif outcome == "discarded":
        print(f"--export {export_dir}: removed the unfinished export of an interrupted run", flush=True)


def export_model(model, export_dir):
    """Writes model.keras and an inference SavedModel into `export_dir`
    (see models/export.py: only those two entries are replaced)."""
    from models import export

    try:
        return export.export_model(model, export_dir)
    except export.ExportError as error:
        raise UsageError(str(error)) from None


def write_json_atomically(path, data):
    """Writes `path` whole or not at all (a temporary file, then a rename)."""
    path = pathlib.Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(json.dumps(data, indent=2))
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise UsageError(f"cannot write {path}: {error.strerror or error}") from None


def make_strategy(name, args=None):
    """A tf.distribute strategy (TensorFlow), a Keras distribution (JAX), or None.

    mirrored: every local GPU, or every logical CPU device when there is no GPU;
    multiworker: MultiWorkerMirroredStrategy, configured by TF_CONFIG.
    On JAX, mirrored uses keras.distribution.DataParallel over the local
    devices, multiworker joins the processes given by --coordinator-address,
    --num-processes, --process-id (models/jax_cluster.py) and uses all of
    their devices.
    """
    import keras

    if name == "default":
        return None
    if keras.backend.backend() == "jax":
        if name == "multiworker":
            from models import jax_cluster

            try:
                jax_cluster.initialize(args.coordinator_address, args.num_processes, args.process_id)
            except jax_cluster.ClusterError as error:
                raise UsageError(str(error)) from None
        else:
            keras.distribution.set_distribution(keras.distribution.DataParallel())
        return None
    if keras.backend.backend() != "tensorflow":
        raise UsageError(f"--strategy {name} needs the TensorFlow or JAX backend")
    import tensorflow as tf

    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if args is not None and (args.coordinator_address, args.num_processes, args.process_id) != (None, None, None):
        raise UsageError("--coordinator-address, --num-processes and --process-id are for the JAX backend; "
                         "TensorFlow's multiworker reads the cluster from TF_CONFIG")
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy):
    """False only on the non-chief workers of a multi-worker strategy (JAX:
    every process but process 0)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.process_index() == 0
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    cluster = resolver.cluster_spec().as_dict()
    if "chief" in cluster:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


def replicas_in_sync(strategy):
    import keras

    if strategy is not None:
        return strategy.num_replicas_in_sync
    distribution = keras.distribution.distribution() if keras.backend.backend() == "jax" else None
    return len(distribution.device_mesh.devices.ravel()) if distribution is not None else 1


def run(args):
    """Trains, evaluates and exports; returns a summary dict (with the model)."""
    multiworker = args.strategy == "multiworker"
    if (args.coordinator_address, args.num_processes, args.process_id) != (None, None, None) and not multiworker:
        raise UsageError("--coordinator-address, --num-processes and --process-id need --strategy multiworker")
    if multiworker and args.augment == "generator":
        raise UsageError("--augment generator is not supported with --strategy multiworker")
    if args.augment == "generator" and importlib.util.find_spec("scipy") is None:
        raise UsageError("--augment generator runs the legacy ImageDataGenerator, which needs scipy: "
                         "pip install -r requirements-test.txt")
    (x_train, y_train), (x_test, y_test) = load_dataset(args)
    for path, flag in ((args.export, "--export"), (args.checkpoint_dir, "--checkpoint-dir"),
                       (args.metrics_json, "--metrics-json")):
        if path:
            check_writable(path, flag)

    import keras

    import gpuaug
    from models.cifar10 import BUILDERS

    strategy = make_strategy(args.strategy, args)  # before any computation (JAX's cluster)
    keras.utils.set_random_seed(args.seed)
    replicas = replicas_in_sync(strategy)
    chief = is_chief(strategy)
    if args.export and chief:
        prepare_export(args.export)
    global_batch = args.batch_size * replicas
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    tf_multiworker = multiworker and keras.backend.backend() == "tensorflow"  # custom loop
    jax_multihost = multiworker and not tf_multiworker
    processes, process_batch, test_batch = 1, global_batch, max(global_batch, 256)
    if jax_multihost:  # each process feeds its shard
        from models import jax_cluster

        index, processes, local_devices = jax_cluster.process_info()
        try:
            x_train, y_train = jax_cluster.process_shard(x_train, y_train, args.seed, index, processes, local_devices)
            x_test, y_test = jax_cluster.process_shard(x_test, y_test, args.seed, index, processes, local_devices)
        except jax_cluster.ClusterError as error:
            raise UsageError(str(error)) from None
        process_batch = global_batch // processes
        test_batch = process_batch * max(1, 256 // process_batch)
        print(f"process {index} of {processes}: {len(x_train)} training and {len(x_test)} test images, "
              f"batch {process_batch} of {global_batch}", flush=True)
    train_images = len(x_train) * processes
    aug_kwargs = augmentation_arguments(args)

    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        augmentation = []
        if args.augment == "gpu":
            augmentation = [gpuaug.RandomTransform(**aug_kwargs, shift_axes=args.shift_axes,
                                                   seed=args.seed, name="augment")]
        model = BUILDERS[args.model](augmentation, input_shape=x_train.shape[1:], num_classes=num_classes)
        model.compile(
            optimizer=keras.optimizers.RMSprop(learning_rate=args.learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile="auto" if args.jit_compile is None else args.jit_compile,
        )
        initial_epoch = 0
        if args.checkpoint_dir:
            initial_epoch = restore_checkpoint(model, args.checkpoint_dir, repair=chief)

    callbacks = [EpochReport(train_images)]
    if args.checkpoint_dir:
        if jax_multihost:  # every process saves (collectives), the chief into DIR
            callbacks.append(jax_cluster.checkpoint_callback(args.checkpoint_dir, chief))
        elif not tf_multiworker:  # the multi-worker loop checkpoints itself
            callbacks.append(keras.callbacks.BackupAndRestore(
                args.checkpoint_dir, delete_checkpoint=False, double_checkpoint=True
            ))

    print(f"training on {train_images} images ({args.augment} augmentation, batch {global_batch}, "
          f"{replicas} replica(s), jit_compile={model.jit_compile}, backend {keras.backend.backend()})",
          flush=True)
    if tf_multiworker:
        from models.training_loop import accuracy as local_accuracy, fit_multiworker

        fit_multiworker(model, strategy, x_train, y_train, epochs=args.epochs,
                        global_batch=global_batch, seed=args.seed, callbacks=callbacks[:1],
                        checkpoint_dir=args.checkpoint_dir, initial_epoch=initial_epoch, chief=chief)
    elif args.augment == "generator":
        from keras.src.legacy.preprocessing.image import ImageDataGenerator

        flow = ImageDataGenerator(**aug_kwargs).flow(
            x_train, y_train, batch_size=global_batch, shuffle=True, seed=args.seed
        )
        model.fit(flow, epochs=args.epochs, initial_epoch=initial_epoch, callbacks=callbacks,
                  verbose=args.verbose)
    else:
        model.fit(x_train, y_train, batch_size=process_batch, epochs=args.epochs, initial_epoch=initial_epoch,
                  callbacks=callbacks, verbose=args.verbose, shuffle=True)

    if tf_multiworker:
        accuracy = local_accuracy(model, x_test, y_test)
    else:  # on JAX's multi-host: every process its test shard, one global accuracy
        _, accuracy = model.evaluate(x_test, y_test, batch_size=test_batch, verbose=0)
    print(f"test accuracy: {accuracy:.4f}", flush=True)
    summary = {
        "augment": args.augment,
        "backend": keras.backend.backend(),
        "train_images": train_images,
        "epochs_run": len(callbacks[0].seconds),
        "epoch_seconds": callbacks[0].seconds,
        "images_per_second": [train_images / s for s in callbacks[0].seconds],
        "test_accuracy": float(accuracy),
        "replicas": replicas,
    }
    if args.export and chief:
        print(f"exported to {export_model(model, args.export)}", flush=True)
    elif args.export:
        if jax_multihost:  # take part in the chief's save (collectives), write nothing
            jax_cluster.save_on_every_process(lambda scratch: model.save(scratch / "model.keras"), chief)
        print("not the chief worker: the chief writes the export", flush=True)
    if args.metrics_json and chief:
        write_json_atomically(args.metrics_json, summary)
    summary["model"] = model
    return summary


def restore_checkpoint(model, checkpoint_dir, repair=True):
    """Loads the newest usable state of --checkpoint-dir (models/checkpoints.py)
    and returns the finished epochs; one line and exit 2 if none loads."""
    from models.checkpoints import CheckpointError, restore

    try:
        epochs, message = restore(model, checkpoint_dir, repair=repair)
    except CheckpointError as error:
        raise UsageError(str(error)) from None
    if message:
        print(message, flush=True)
    return epochs


def _epoch_report_class():
    import keras

    class EpochReport(keras.callbacks.Callback):
        """Prints wall time and images/s after every epoch."""

        def __init__(self, images_per_epoch):
            super().__init__()
            self.images_per_epoch = images_per_epoch
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.perf_counter() - self._start
            self.seconds.append(seconds)
            logs = logs or {}
            print(f"epoch {epoch + 1}: {seconds:.2f} s, {self.images_per_epoch / seconds:,.0f} images/s, "
                  f"loss {logs.get('loss', float('nan')):.4f}, accuracy {logs.get('accuracy', float('nan')):.4f}",
                  flush=True)

    return EpochReport


def EpochReport(images_per_epoch):  # noqa: N802 - a class made lazily, to keep --help fast
    return _epoch_report_class()(images_per_epoch)


def main(argv=None):
    args = parse_args(argv)
    try:
        run(args)
    except UsageError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = f"; rerun with --checkpoint-dir {args.checkpoint_dir} to resume" if args.checkpoint_dir else ""
        print(f"train.py: interrupted{hint}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
