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
    data.add_argument("--limit", type=int, default=None, metavar="N",
                      help="use N of the training images, a random subset drawn with --seed (every class); "
                      "--validation-split holds out part of these")
    data.add_argument("--validation-split", type=float, default=None, metavar="F",
                      help="hold out this fraction of the training images (drawn with --seed) and report "
                      "loss and accuracy on it after each epoch (default: on the test set)")
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
    if args.validation_split is not None and not 0 < args.validation_split < 1:
        parser.error(f"--validation-split must be between 0 and 1, exclusive (got {args.validation_split})")
    if any(size < 1 for size in args.image_size):
        parser.error(f"--image-size must be two sizes >= 1 (got {' '.join(map(str, args.image_size))})")
    if len(args.zoom_range) > 2:
        parser.error(f"--zoom-range takes Z or LOW HIGH (got {' '.join(map(str, args.zoom_range))})")
    if not args.learning_rate > 0:
        parser.error(f"--learning-rate must be > 0 (got {args.learning_rate})")
    if not 0 <= args.seed < 2**32:
        parser.error(f"--seed must be between 0 and 2**32 - 1 (got {args.seed})")
    # The augmentation arguments, checked by gpuaug itself before any data is read;
    # its messages name the keyword (`rotation_range`), the command line the flag.
    from gpuaug.config import AugmentationConfig

    try:
        AugmentationConfig.from_arguments(**augmentation_arguments(args), shift_axes=args.shift_axes)
    except ValueError as error:
        parser.error(re.sub(r"`(\w+)`", lambda match: "--" + match.group(1).replace("_", "-"), str(error)))
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


def load_dataset(args):
    """The splits of --data-dir (models/data.py; image folders are streamed)."""
    from models.data import DataError, open_data

    try:
        return open_data(args.data_dir, image_size=tuple(args.image_size), seed=args.seed,
                         limit=args.limit, validation_split=args.validation_split)
    except DataError as error:
        raise UsageError(str(error)) from None


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
    """Writes `path` whole or not at all (a temporary file, then a rename)."""
    path = pathlib.Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(json.dumps(data, indent=2))
        os.replace(partial, path)
    except BaseException as error:  # an OSError, or Ctrl-C between the two steps
        partial.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise UsageError(f"cannot write {path}: {error.strerror or error}") from None
        raise


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
    import keras

    # TensorFlow's collective ops must be configured before TensorFlow runs
    # anything (an image folder's pipeline does); JAX joins its cluster after
    # the data checks, so that a process with bad data exits before joining.
    tf_multiworker = multiworker and keras.backend.backend() == "tensorflow"  # custom loop
    strategy = make_strategy(args.strategy, args) if tf_multiworker else None
    splits = load_dataset(args)
    if splits.kind == "folder" and args.augment == "generator":
        if importlib.util.find_spec("PIL") is None:
            raise UsageError("--augment generator on an image folder runs flow_from_directory, which needs Pillow: "
                             "pip install -r requirements-test.txt")
        from models.inputs import files_flow_from_directory_skips

        skipped = files_flow_from_directory_skips(splits.folder.training_files())
        if skipped:  # it would train on fewer images than the other paths
            raise UsageError(f"--augment generator runs flow_from_directory, which does not read GIF files: "
                             f"{len(skipped)} of the training files are GIFs (e.g. {skipped[0]}); "
                             "use --augment gpu or none, or convert them")
    for path, flag in ((args.export, "--export"), (args.checkpoint_dir, "--checkpoint-dir"),
                       (args.metrics_json, "--metrics-json")):
        if path:
            check_writable(path, flag)
    if args.metrics_json:  # its folder, so that the first epoch's write cannot fail on it
        pathlib.Path(args.metrics_json).absolute().parent.mkdir(parents=True, exist_ok=True)

    import gpuaug
    from models import inputs
    from models.cifar10 import BUILDERS
    from models.data import DataError

    if not tf_multiworker:
        strategy = make_strategy(args.strategy, args)  # before any computation (JAX's cluster)
    keras.utils.set_random_seed(args.seed)
    replicas = replicas_in_sync(strategy)
    chief = is_chief(strategy)
    if args.export and chief:
        prepare_export(args.export)
    global_batch = args.batch_size * replicas
    jax_multihost = multiworker and not tf_multiworker
    # Evaluation batches: about 256 images, a multiple of the global batch (so that
    # they split evenly over the devices).
    processes, process_batch, test_batch = 1, global_batch, global_batch * max(1, 256 // global_batch)
    counts = dict(splits.counts)
    try:
        if tf_multiworker and splits.kind == "folder":  # each worker streams an equal share
            from models.training_loop import worker_count

            workers = worker_count(strategy)
            counts["train"] = inputs.share_length(counts["train"], workers) * workers
        if jax_multihost:  # each process feeds its share of every split
            from models import jax_cluster

            index, processes, local_devices = jax_cluster.process_info()
            inputs.share_splits(splits, counts, args.seed, index, processes, local_devices)
            process_batch = global_batch // processes
            test_batch = process_batch * max(1, 256 // process_batch)
            print(f"process {index} of {processes}: {counts['train']} training and {counts['test']} test images, "
                  f"batch {process_batch} of {global_batch}", flush=True)
        elif replicas > 1 and (keras.backend.backend() == "jax" or args.augment == "generator"):
            # Batches that split unevenly over the devices fail: JAX's DataParallel
            # refuses them (IndivisibleError), and so does Keras' generator input
            # under MirroredStrategy (AddN of unequal shapes); tf.data input splits
            # them. So each split concerned is trimmed to a multiple of the device
            # count: a seeded choice of at most replicas - 1 images left out.
            names = ("train", "validation", "test") if keras.backend.backend() == "jax" else ("train",)
            left_out = inputs.share_splits(splits, counts, args.seed, 0, 1, replicas, names)
            if any(left_out.values()):
                print(f"{replicas} devices: every batch must split evenly over them, so "
                      + ", ".join(f"{n} {'training' if name == 'train' else name}"
                                  for name, n in left_out.items() if n)
                      + " image(s) are left out", flush=True)
    except DataError as error:
        raise UsageError(f"--strategy {args.strategy} over {replicas} devices: {error}") from None
    train_images = counts["train"] * processes
    aug_kwargs = augmentation_arguments(args)

    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        augmentation = []
        if args.augment == "gpu":
            augmentation = [gpuaug.RandomTransform(**aug_kwargs, shift_axes=args.shift_axes,
                                                   seed=args.seed, name="augment")]
        model = BUILDERS[args.model](augmentation, input_shape=splits.image_shape, num_classes=splits.num_classes)
        model.compile(
            optimizer=keras.optimizers.RMSprop(learning_rate=args.learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile="auto" if args.jit_compile is None else args.jit_compile,
        )
        initial_epoch = 0
        if args.checkpoint_dir:
            initial_epoch = restore_checkpoint(model, args.checkpoint_dir, repair=chief)

    # Validation each epoch: the --validation-split hold-out, else the test set
    # (as the Keras cifar10 example does with validation_data).
    validation_name = "validation" if splits.validation is not None else "test"
    validation = splits.validation if splits.validation is not None else splits.test
    metrics_file = args.metrics_json if chief else None
    report = EpochReport(train_images, validation_name, metrics_file,
                         earlier_epoch_records(metrics_file, initial_epoch))
    # Keras' progress bar first, then the checkpoint, then the report: when the
    # report's line is printed, that epoch is saved.
    callbacks = [keras.callbacks.ProgbarLogger()] if args.verbose else []
    if args.checkpoint_dir:
        if jax_multihost:  # every process saves (collectives), the chief into DIR
            callbacks.append(jax_cluster.checkpoint_callback(args.checkpoint_dir, chief))
        elif not tf_multiworker:  # the multi-worker loop checkpoints itself
            from models.checkpoints import epoch_checkpoint

            callbacks.append(epoch_checkpoint(args.checkpoint_dir))
    callbacks.append(report)

    print(f"training on {train_images} images ({args.augment} augmentation, batch {global_batch}, "
          f"{replicas} replica(s), jit_compile={model.jit_compile}, backend {keras.backend.backend()}, "
          f"{'streamed from ' + str(args.data_dir) if splits.kind == 'folder' else 'in memory'}; "
          f"{validation_name} after each epoch: {counts[validation_name] * processes} images)", flush=True)
    fit = dict(epochs=args.epochs, initial_epoch=initial_epoch, callbacks=callbacks, verbose=args.verbose,
               **inputs.validation_arguments(validation, test_batch))
    try:
        if tf_multiworker:
            from models.training_loop import evaluate_locally, fit_multiworker

            fit_multiworker(model, strategy, splits.train, counts["train"], epochs=args.epochs,
                            global_batch=global_batch, seed=args.seed, callbacks=[report],
                            checkpoint_dir=args.checkpoint_dir, initial_epoch=initial_epoch, chief=chief,
                            validation=validation)
        elif args.augment == "generator":
            with tempfile.TemporaryDirectory(prefix="gpuaug-flow-from-directory-") as scratch:
                model.fit(inputs.generator_flow(splits, aug_kwargs, global_batch, args.seed, scratch,
                                                counts["train"]), **fit)
        else:
            model.fit(**inputs.fit_arguments(splits.train, process_batch, shuffle=True), **fit)

        if tf_multiworker:
            _, accuracy = evaluate_locally(model, splits.test)
        else:  # on JAX's multi-host: every process its test shard, one global accuracy
            _, accuracy = model.evaluate(**inputs.fit_arguments(splits.test, test_batch), verbose=0)
    except Exception as error:
        from models import folders

        if splits.kind == "folder" and folders.is_decode_error(error):
            raise UsageError(folders.find_undecodable(splits.folder.folders, splits.folder.class_names)) from None
        raise
    print(f"test accuracy: {accuracy:.4f}", flush=True)
    summary = {
        "augment": args.augment,
        "backend": keras.backend.backend(),
        "data": splits.kind,
        "train_images": train_images,
        "validation": validation_name,
        "epochs_run": len(report.seconds),
        "epoch_seconds": report.seconds,
        "images_per_second": [train_images / s for s in report.seconds],
        "epochs": report.earlier + report.records,
        "test_accuracy": float(accuracy),
        "replicas": replicas,
        "finished": True,
    }
    if args.export and chief:
        print(f"exported to {export_model(model, args.export)}", flush=True)
    elif args.export:
        if jax_multihost:  # take part in the chief's save (collectives), write nothing
            jax_cluster.save_on_every_process(lambda scratch: model.save(scratch / "model.keras"), chief)
        print("not the chief worker: the chief writes the export", flush=True)
    if metrics_file:
        write_json_atomically(args.metrics_json, summary)
    summary["model"] = model
    return summary


def earlier_epoch_records(metrics_json, initial_epoch):
    """On a resumed run, the per-epoch records of the epochs already done
    that --metrics-json FILE holds from the interrupted run (FILE is
    rewritten after every epoch), so that it keeps the whole history; [] when
    there are none or FILE is unreadable."""
    if not metrics_json or initial_epoch == 0:
        return []
    try:
        records = json.loads(pathlib.Path(metrics_json).read_text())["epochs"]
        return [r for r in records if isinstance(r, dict) and isinstance(r.get("epoch"), int)
                and r["epoch"] <= initial_epoch]
    except (OSError, ValueError, KeyError, TypeError):
        return []


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
        """Prints, after every epoch, its wall time, images/s, and the
        training and validation metrics; keeps them in `records` and, with
        `metrics_json`, rewrites that file (atomically) with `earlier` (the
        records of a resumed run's epochs already done) and them."""

        def __init__(self, images_per_epoch, validation_name="test", metrics_json=None, earlier=()):
            super().__init__()
            self.images_per_epoch = images_per_epoch
            self.validation_name = validation_name
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
                record.update({f"{name}_loss": logs["val_loss"], f"{name}_accuracy": logs.get("val_accuracy")})
                line += f", {name} loss {logs['val_loss']:.4f}, {name} accuracy {logs.get('val_accuracy', float('nan')):.4f}"
            self.records.append(record)
            if self.metrics_json:  # so that an interrupted run keeps what it measured
                write_json_atomically(self.metrics_json, {"epochs": self.earlier + self.records,
                                                          "finished": False})
            print(line, flush=True)

    return EpochReport


def EpochReport(images_per_epoch, validation_name="test", metrics_json=None, earlier=()):  # noqa: N802
    # A class made lazily (keras is imported only after --help).
    return _epoch_report_class()(images_per_epoch, validation_name, metrics_json, earlier)


def main(argv=None):
    args = parse_args(argv)
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
