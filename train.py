#!/usr/bin/env python3
"""Train the classic Keras CIFAR-10 CNN with gpuaug's augmentation in the model.

    python train.py                                   # CIFAR-10 (downloaded once)
    python train.py --data-dir ../shared/data/cifar10-mini --epochs 1 --limit 1000
    python train.py --augment generator               # the legacy ImageDataGenerator path
    python train.py --export exports/cifar10 --checkpoint-dir runs/cifar10

Errors (missing or unreadable data, an export that cannot be written) print
one line and exit with status 2; nothing already written is lost.

The driver, top to bottom: `main` parses and checks the command line
(models/flags.py), then `run` chooses the topology (models/topologies.py),
opens and checks the data and outputs (models/data.py, models/outputs.py),
takes this process's share and builds its feeds, builds the model (resumed
from its checkpoint: models/runs.py), trains with the epoch report
(models/report.py), evaluates, exports and writes the summary. Every
problem the user can fix is a `models.errors.JobError`, printed once, in
`main`.
"""

import contextlib
import errno
import importlib.util
import re
import sys
import tempfile

from models.errors import JobError, UsageError
from models.flags import augmentation_arguments, parse_args, random_transform_arguments

def main(argv=None):
    """The command line: 0 when the run finished, a `JobError`'s exit code
    (2) with its one line, 130 on Ctrl-C."""
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
    except JobError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        hint = f"; rerun with --checkpoint-dir {args.checkpoint_dir} to resume" if args.checkpoint_dir else ""
        # In a terminal, Ctrl-C lands in the middle of Keras' progress bar: start a new line.
        new_line = "\n" if sys.stderr.isatty() else ""
        print(f"{new_line}train.py: interrupted{hint}", file=sys.stderr)
        return 130
    return 0


def run(args):
    """Trains, evaluates and exports; returns a summary dict (with the model).

    The same sequence on every topology: choose it, read the data's index,
    check, start (join a cluster), take this process's share, build, fit,
    evaluate, export."""
    import keras

    from models import outputs, runs, topologies

    check_requirements(args)
    # TensorFlow's collective ops must be configured before TensorFlow runs
    # anything; JAX joins its cluster after the data checks, so that a
    # process with bad data exits before joining.
    topology = topologies.choose(args, keras.backend.backend())
    splits = load_dataset(args)
    outputs.check_inputs(args, splits)
    topology.start()
    keras.utils.set_random_seed(args.seed)
    with holding_checkpoint_dir(args, topology):
        if args.export and topology.chief:
            prepare_export(args.export)
        splits, train_count, feeds = share_and_feed(args, splits, topology)
        # What defines the run, recorded in its checkpoints and checked on resume.
        definition = runs.run_definition(args, splits, topology) if args.checkpoint_dir else None
        with contextlib.closing(feeds):
            model, restored = build_model(args, splits, topology, definition)
            report = epoch_report(args, topology, feeds, train_count, restored, definition, validation_split(splits))
            announce(args, splits, topology, model, train_count)
            with explained_training_errors(args, splits):
                train(args, splits, topology, feeds, model, report, train_count)
                _, accuracy = topology.evaluate(model, feeds, "test")
            return finish(args, splits, topology, feeds, model, report, train_count, accuracy)


def load_dataset(args):
    """The splits of --data-dir (models/data.py; image folders are streamed)."""
    from models.data import open_data

    return open_data(args.data_dir, image_size=args.image_size, seed=args.seed, limit=args.limit,
                     validation_split=args.validation_split)


def check_requirements(args):
    """What the chosen path needs installed (scipy for the legacy generator)."""
    if args.augment == "generator" and importlib.util.find_spec("scipy") is None:
        raise UsageError("--augment generator runs the legacy ImageDataGenerator, which needs scipy: "
                         "pip install -r requirements-test.txt")


def holding_checkpoint_dir(args, topology):
    """The --checkpoint-dir's run lock (models/checkpoints.py: `hold`), held
    by the chief until the run ends; a `CheckpointError` if another run has it."""
    from models import checkpoints

    if args.checkpoint_dir and topology.chief:
        return contextlib.closing(checkpoints.hold(args.checkpoint_dir))
    return contextlib.nullcontext()


def prepare_export(export_dir):
    """Before training: `models.export.prepare` (refuses a folder that is
    not an earlier export, tidies an interrupted one), saying what it did."""
    from models import export

    outcome = export.prepare(export_dir)
    if outcome == "installed":
        print(f"--export {export_dir}: installed the export an interrupted run had completed", flush=True)
    elif outcome == "discarded":
        print(f"--export {export_dir}: removed the unfinished export of an interrupted run", flush=True)


def global_batch(args, topology):
    """Images per training step over every device."""
    return args.batch_size * topology.replicas


def share_and_feed(args, splits, topology):
    """This process's share of the splits and its feeds (its files checked
    before training): returns (the shared splits, the images an epoch trains
    on over every process, the `models.inputs.Feeds`)."""
    from models import inputs
    from models.errors import DataError

    batch = global_batch(args, topology)
    batch = batch if topology.batch_is_global else batch // topology.processes
    try:
        splits, train_count, line = topology.share(splits, args.seed)
        feeds = inputs.Feeds(splits, batch, batch * max(1, 256 // batch), args.seed, args.cache,
                             topology.cache_name)
        topology.prepare(feeds, generator=args.augment == "generator")
    except DataError as error:
        if args.strategy == "default":
            raise
        raise DataError(f"--strategy {args.strategy} over {topology.replicas} devices: {error}") from None
    if line:
        print(line, flush=True)
    return splits, train_count, feeds


def build_model(args, splits, topology, definition=None):
    """The compiled model (in the topology's scope), its checkpoint restored
    (with --checkpoint-dir; `definition`: this run's, `runs.run_definition`);
    returns (model, the `Restored` state or None). With --mixup or --cutmix
    the model is a `gpuaug.TrainWithMixing` around the network, which then
    runs the RandomTransform on each image before the mixing."""
    import gpuaug
    from models import runs
    from models.flags import mixing_layers

    with topology.scope():
        transform = []
        if args.augment == "gpu":
            transform = [gpuaug.RandomTransform(**random_transform_arguments(args), seed=args.seed, name="augment")]
        mixing = mixing_layers(args)
        model = build_network(args, splits, [] if mixing else transform)
        if mixing:
            model = gpuaug.TrainWithMixing(model, mixing, augmentation=transform[0] if transform else None,
                                           seed=args.seed, name="train_with_mixing")
            model.build((None, *splits.image_shape))  # its weights exist before a checkpoint loads
        model.compile(**compile_arguments(args, topology, mixed=bool(mixing)))
        restored = None
        if args.checkpoint_dir:
            restored = runs.restore(model, args.checkpoint_dir, repair=topology.chief,
                                    check_run=lambda recorded: runs.check_same_run(args, definition, recorded))
            runs.continue_run(args, definition, restored, model)
    return model, restored


def build_network(args, splits, augmentation):
    """--model's network (models/cifar10.py) with `augmentation` as its first
    layers; a `UsageError` when it cannot take the images' size."""
    from models.cifar10 import BUILDERS

    try:
        return BUILDERS[args.model](augmentation, input_shape=splits.image_shape, num_classes=splits.num_classes)
    except ValueError as error:  # e.g. pooling past the image's edge
        reason = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().splitlines()
        reason = next((line for line in reason if "size" in line.lower()), reason[0] if reason else "")
        raise UsageError(f"--model {args.model} cannot take {splits.image_shape[0]}x{splits.image_shape[1]} "
                         f"images ({reason.strip()}); use a larger --image-size") from None


def compile_arguments(args, topology, mixed=False):
    """`Model.compile`'s arguments: RMSprop as in the Keras example, the
    cross-entropy of integer labels (of soft labels when `mixed`), and the
    accuracy (weighted where evaluation shares are padded with weight-0
    images: models/topologies.py)."""
    import keras

    accuracy = keras.metrics.CategoricalAccuracy if mixed else keras.metrics.SparseCategoricalAccuracy
    return dict(
        optimizer=keras.optimizers.RMSprop(learning_rate=args.learning_rate),
        loss="categorical_crossentropy" if mixed else "sparse_categorical_crossentropy",
        metrics=["accuracy"],
        weighted_metrics=[accuracy(name="weighted_accuracy")] if topology.padded else None,
        jit_compile="auto" if args.jit_compile is None else args.jit_compile,
    )


def network(model):
    """The network of a built model: a `TrainWithMixing`'s own, else the model."""
    import gpuaug

    return model.model if isinstance(model, gpuaug.TrainWithMixing) else model


def validation_split(splits):
    """The split validated on after each epoch: the --validation-split
    hold-out (or a val/ folder beside test/), else the test set, as the
    Keras cifar10 example does."""
    return "validation" if splits.validation is not None else "test"


def epoch_report(args, topology, feeds, train_count, restored, definition, name):
    """The `models.report.EpochReport` of this run (validating on the split
    `name`): it saves the checkpoint (recording `definition`) and rewrites
    --metrics-json after every epoch (on the chief)."""
    from models import runs
    from models.report import EpochReport

    metrics_file = args.metrics_json if topology.chief else None
    # The epochs already done: from the checkpoint (which records them with the
    # state it saves), else (a checkpoint of an earlier gpuaug) from FILE.
    earlier = (restored.history if restored and restored.run is not None
               else runs.earlier_epoch_records(metrics_file, restored.epochs if restored else 0))
    saver = topology.checkpoint_saver(args.checkpoint_dir) if args.checkpoint_dir else None
    save = saver and (lambda model, epochs, history: saver(model, epochs, run=definition, history=history))
    return EpochReport(train_count, name, metrics_file, earlier,
                       lambda logs: topology.corrected(logs, name, "val_"), save=save,
                       after_epoch=feeds.finalize_caches, initial_epoch=restored.epochs if restored else 0)


def announce(args, splits, topology, model, train_count):
    """The lines that say what is about to be trained, and how."""
    import keras

    from models import folders

    name = validation_split(splits)
    print(f"data: {splits.description}", flush=True)
    if args.cache and args.augment == "generator" and splits.kind == "folder":
        print("--cache: --augment generator reads the training images with flow_from_directory every epoch; the "
              "cache keeps the evaluated splits only", flush=True)
    where = "streamed from " + folders.printable(args.data_dir) if splits.kind == "folder" else "in memory"
    mixing = "".join(f", {name} {value}" for name, value in (("mixup", args.mixup), ("cutmix", args.cutmix))
                     if value is not None)
    print(f"training on {train_count} images ({args.augment} augmentation{mixing}, batch "
          f"{global_batch(args, topology)}, "
          f"{topology.replicas} replica(s), jit_compile={model.jit_compile}, backend {keras.backend.backend()}, "
          f"{where}; {name} after each epoch: {splits.counts[name]} images)", flush=True)


def train(args, splits, topology, feeds, model, report, train_count):
    """`topology.fit` from the first epoch not done: the data order first
    (each epoch's is drawn from its number), Keras' progress bar, then the
    report, which saves the checkpoint before it prints the epoch's line
    (when the line is printed, that epoch is saved). --augment generator
    feeds ImageDataGenerator's flow instead of the training feed."""
    from models import inputs

    fit = dict(train_count=train_count, validation=validation_split(splits), epochs=args.epochs,
               initial_epoch=report.initial_epoch, callbacks=[feeds.epoch.callback()], report=report,
               verbose=args.verbose)
    if args.augment != "generator":
        return topology.fit(model, feeds, **fit)
    with tempfile.TemporaryDirectory(prefix="gpuaug-flow-from-directory-") as scratch:
        flow = inputs.generator_flow(splits, augmentation_arguments(args), global_batch(args, topology), args.seed,
                                     scratch)
        inputs.continue_generator(flow, report.initial_epoch)
        return topology.fit(model, feeds, generator=flow, **fit)


@contextlib.contextmanager
def explained_training_errors(args, splits):
    """Turns what fails while training into one line where the cause is the
    user's to fix: a full or read-only disk (tf.data writing the --cache
    files; the checkpoint's writer says so itself), an image that does not
    decode. A `JobError` passes as it is; anything else is raised."""
    from models import folders
    from models.errors import DataError, file_system_error

    try:
        yield
    except JobError:
        raise
    except Exception as error:
        refused = file_system_error(error)
        if refused is not None and refused.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            where = f"--cache {args.cache}" if args.cache and args.cache != "memory" else "a file written in training"
            raise DataError(f"{where}: {refused.strerror or refused} while training; the files of the "
                            "epochs finished before are kept: make room and rerun") from None
        problem = None
        if splits.kind == "folder" and folders.is_decode_error(error):
            problem = folders.find_undecodable((splits.train, splits.validation, splits.test))
        elif splits.kind == "folder" and args.augment == "generator":  # Pillow's error, however Keras wrapped it
            problem = folders.find_undecodable((splits.train,), reader="pillow", default=None)
        if problem:
            raise DataError(problem) from None
        raise


def finish(args, splits, topology, feeds, model, report, train_count, accuracy):
    """After training: the caches' lines, the test accuracy, the export and
    --metrics-json; returns `run`'s summary (with the model)."""
    import keras

    from models.outputs import write_json_atomically

    feeds.finalize_caches()
    for line in feeds.describe_caches():
        print(f"--cache {line}", flush=True)
    print(f"test accuracy: {accuracy:.4f}", flush=True)
    summary = {
        "augment": args.augment,
        "backend": keras.backend.backend(),
        "data": splits.kind,
        "train_images": train_count,
        "validation": validation_split(splits),
        "epochs_run": len(report.seconds),
        "epoch_seconds": report.seconds,
        "images_per_second": [train_count / s for s in report.seconds],
        "epochs": report.earlier + report.records,
        "test_accuracy": float(accuracy),
        "replicas": topology.replicas,
        "finished": True,
    }
    if args.export:
        export_model(network(model), args.export, topology)
    if args.metrics_json and topology.chief:
        write_json_atomically(args.metrics_json, summary)
    summary["model"] = network(model)
    return summary


def export_model(model, export_dir, topology=None):
    """Writes model.keras and an inference SavedModel into `export_dir`
    through `topology` (default: one device; see models/export.py: only
    those two entries are replaced, both at once) and says so; one line
    when no SavedModel could be written. Returns the folder's absolute
    path, or None on a process that is not the chief."""
    from models import topologies

    written = (topology or topologies.OneDevice()).export(model, export_dir)
    if written is None:
        print("not the chief worker: the chief writes the export", flush=True)
        return None
    folder, problem = written
    if problem:
        print(f"--export {folder}: saved_model not written ({problem}); model.keras is", flush=True)
    print(f"exported to {folder}", flush=True)
    return folder


if __name__ == "__main__":
    sys.exit(main())
