"""Where train.py trains: one home per topology.

    OneDevice        --strategy default, any backend
    TFMirrored       --strategy mirrored on TensorFlow (MirroredStrategy, one host)
    JaxDataParallel  --strategy mirrored on JAX (keras.distribution.DataParallel)
    TFMultiWorker    --strategy multiworker on TensorFlow (MultiWorkerMirroredStrategy,
                     the custom loop of models/training_loop.py)
    JaxMultiHost     --strategy multiworker on JAX (several processes, one DataParallel)

Each knows how many devices share a batch (`replicas`), whether it writes
the export and checkpoints (`chief`), how to take this process's share of
the splits (`share`, which returns the shared splits and the epoch's
training count), how to fit (given the validation split, the callbacks, the
report and the progress bar as parameters; the legacy generator's flow
too), evaluate and export, and which checkpoint callback it uses.
train.py's `run` is the same sequence for all of them; a new topology is
one new class here.

Evaluation is always over the whole split. Where the split is shared out
over processes or devices, every share is padded to one length with items of
weight 0 (`models.inputs.evaluation_share`): Keras then averages the weighted
losses over every item, padding included, so the loss is scaled back by
padded / real items, and the accuracy is the weighted one (the compiled
`weighted_accuracy`); the figures equal a single-process evaluation.
"""

import contextlib
import dataclasses
import json
import os
import re

from models import checkpoints, inputs
from models.errors import UsageError


class Topology:
    """One device, any backend; the base of the others."""

    name = "one device"
    replicas = 1  # devices the global batch is split over
    chief = True  # writes the export, the checkpoints, --metrics-json
    processes, index = 1, 0
    batch_is_global = False  # False: each process feeds global batch / processes images a step

    def __init__(self):
        self.padded = {}  # split name -> (real items, items evaluated over all processes)

    def start(self):
        """Joins a cluster or sets a distribution (after the data checks)."""

    def scope(self):
        return contextlib.nullcontext()

    def share(self, splits, seed):
        """This process's share of `splits`: returns (the shared Splits, the
        training images of an epoch over all processes, a line to print or
        None). `splits.counts` stays the whole data's."""
        return splits, splits.counts["train"], None

    def prepare(self, feeds, generator=False):
        """Builds this process's feeds before training, checking the first
        bytes of its image files (`generator`: the training files are read by
        flow_from_directory instead, so they are only checked)."""
        feeds.prepare("validation", "test", *(() if generator else ("train",)))
        if generator and feeds.splits.kind == "folder":
            feeds.splits.train.check()

    def _share_out(self, splits, seed, index, processes, multiple, names=("train", "validation", "test")):
        """`inputs.share_splits` as a new Splits, remembering how much padding
        each evaluated split got; returns (Splits, this process's training
        length, training images left out)."""
        counts = splits.counts
        shares, length, left_out = inputs.share_splits(splits, counts, seed, index, processes, multiple, names)
        for name in ("validation", "test"):
            if name in shares:
                self.padded[name] = (counts[name], inputs.evaluation_length(counts[name], processes, multiple)
                                     * processes)
        return dataclasses.replace(splits, **shares), length, left_out

    def cache_name(self, split, index=None, processes=None):
        index, processes = (self.index, self.processes) if index is None else (index, processes)
        return split if processes == 1 else f"{split}-process-{index}-of-{processes}"

    def checkpoint_saver(self, folder):
        """`save(model, epochs_done, run=..., history=...)`, writing this
        process's part of the checkpoint in `folder` after an epoch, or None
        where this process takes no part."""
        return lambda model, epochs_done, **metadata: checkpoints.write(model, folder, epochs_done, **metadata)

    def fit(self, model, feeds, *, train_count, validation, epochs, initial_epoch, callbacks, report, verbose,
            generator=None):
        """Trains with `Model.fit` on the training feed (or `generator`, an
        ImageDataGenerator flow), the epochs after `initial_epoch` up to
        `epochs`, validating on the split named `validation` after each.
        Callbacks run in this order: `callbacks`, Keras' progress bar (when
        `verbose`, 0, 1 or 2 as fit's), then `report` (its line follows the
        bar's). `train_count`: images an epoch trains on."""
        import keras

        training = feeds.training() if generator is None else {"x": generator}
        progress = [keras.callbacks.ProgbarLogger()] if verbose else []
        model.fit(**training, **feeds.validation(validation), epochs=epochs, initial_epoch=initial_epoch,
                  callbacks=[*callbacks, *progress, report], verbose=verbose)

    def corrected(self, logs, name, prefix=""):
        """(loss, accuracy) of split `name` from Keras logs, undoing the padding."""
        if name not in self.padded:
            return float(logs[prefix + "loss"]), float(logs[prefix + "accuracy"])
        real, evaluated = self.padded[name]
        return float(logs[prefix + "loss"]) * evaluated / real, float(logs[prefix + "weighted_accuracy"])

    def evaluate(self, model, feeds, name):
        """(loss, accuracy) over the whole split `name`, combined over the processes."""
        return self.corrected(model.evaluate(**feeds.evaluation(name), verbose=0, return_dict=True), name)

    def export(self, model, export_dir):
        """The chief writes the export (`models.export.export_model`): returns
        (its folder, why no SavedModel was written or None); elsewhere None."""
        from models import export

        return export.export_model(model, export_dir) if self.chief else None


OneDevice = Topology


def _left_out_line(devices, left_out, processes=1):
    if not left_out:
        return None
    over = f"{devices} devices" if processes == 1 else f"{processes} processes of {devices // processes} device(s)"
    return (f"{over}: every batch must split evenly over them, so {left_out} training image(s) "
            "are left out")


def _share_over_local_devices(topology, splits, seed):
    """`Topology.share` of one process over `topology.replicas` devices: the
    training split trimmed to a multiple of them, the evaluated ones padded."""
    if topology.replicas == 1:
        return splits, splits.counts["train"], None
    shared, length, left_out = topology._share_out(splits, seed, 0, 1, topology.replicas)
    return shared, length, _left_out_line(topology.replicas, left_out)


class TFMirrored(Topology):
    """Every local GPU (or logical CPU device) of one host, one MirroredStrategy."""

    name = "mirrored"

    def __init__(self):
        super().__init__()
        import tensorflow as tf

        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        self.strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
        self.replicas = self.strategy.num_replicas_in_sync

    def scope(self):
        return self.strategy.scope()

    def share(self, splits, seed):
        # A batch that leaves a replica fewer images than another fails in
        # Keras' fit and evaluate under MirroredStrategy ("AddN must have the
        # same size": a last training batch of 1 image on 2 replicas, an odd
        # evaluated split smaller than a batch; Keras' generator input also on
        # 64 images over 3), so, as on JAX, the training split is trimmed to a
        # multiple of the replicas (every batch then splits evenly), and the
        # evaluated splits are padded to one with weight-0 images.
        return _share_over_local_devices(self, splits, seed)


class JaxDataParallel(Topology):
    """Every local device, one `keras.distribution.DataParallel`: every batch
    must split evenly over the devices (JAX refuses an uneven one), so the
    training split is trimmed to a multiple of them and the evaluated ones
    padded."""

    name = "mirrored"

    def start(self):
        import keras

        keras.distribution.set_distribution(keras.distribution.DataParallel())
        self.replicas = len(keras.distribution.distribution().device_mesh.devices.ravel())

    def share(self, splits, seed):
        return _share_over_local_devices(self, splits, seed)


class JaxMultiHost(Topology):
    """Several processes, one DataParallel over all their devices (see
    models/jax_cluster.py): each process feeds, reads and decodes only its
    share of every split."""

    name = "multiworker"

    def __init__(self, coordinator_address, num_processes, process_id):
        super().__init__()
        self.cluster = (coordinator_address, num_processes, process_id)

    def start(self):
        from models import jax_cluster

        jax_cluster.initialize(*self.cluster)  # a ClusterError is a JobError: one line
        self.index, self.processes, self.local_devices = jax_cluster.process_info()
        self.replicas = self.processes * self.local_devices
        self.chief = self.index == 0

    def share(self, splits, seed):
        shared, mine, left_out = self._share_out(splits, seed, self.index, self.processes, self.local_devices)
        lines = [f"process {self.index} of {self.processes}: {mine} training and "
                 f"{self.padded['test'][1] // self.processes} test images",
                 _left_out_line(self.replicas, left_out, self.processes)]
        return shared, mine * self.processes, "\n".join(line for line in lines if line)

    def checkpoint_saver(self, folder):
        from models import jax_cluster

        chief = self.chief
        return lambda model, epochs_done, **metadata: jax_cluster.write_checkpoint(model, folder, epochs_done, chief,
                                                                                 **metadata)

    def export(self, model, export_dir):
        from models import export, jax_cluster

        # The chief's saves create variables, a collective operation on this
        # mesh: the other processes write the same into scratch, then drop it.
        def save(scratch):
            if scratch is None:
                return export.export_model(model, export_dir)
            export.write_export(model, scratch)
            return None

        return jax_cluster.save_on_every_process(save, self.chief)


class TFMultiWorker(Topology):
    """Several TensorFlow workers (TF_CONFIG), trained by the custom loop of
    models/training_loop.py: each worker reads and decodes only its share of
    every split (`distribute_datasets_from_function`)."""

    name = "multiworker"
    batch_is_global = True  # distribute_datasets_from_function splits it per replica

    def __init__(self):
        super().__init__()
        import tensorflow as tf

        check_tf_config(os.environ.get("TF_CONFIG"))
        self.strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before TensorFlow runs anything else
        self.replicas = self.strategy.num_replicas_in_sync
        self.loop = None  # the custom loop of the model being trained (built at the first fit or evaluate)
        resolver = self.strategy.cluster_resolver
        cluster = resolver.cluster_spec().as_dict()
        self.processes = max(1, sum(len(cluster.get(job, ())) for job in ("chief", "worker")))
        if not cluster:
            self.chief = True
        elif "chief" in cluster:
            self.chief = resolver.task_type == "chief"
        else:
            self.chief = resolver.task_type == "worker" and resolver.task_id == 0

    def scope(self):
        return self.strategy.scope()

    def share(self, splits, seed):
        # Each worker cuts its shares inside the distributed datasets (by its
        # input pipeline); here only the training split's common size.
        total = splits.counts["train"]
        trained = inputs.share_length(total, self.processes) * self.processes
        return splits, trained, _left_out_line(self.replicas, total - trained, self.processes)

    def prepare(self, feeds, generator=False):
        """Nothing yet: each worker builds (and checks) its own shares inside
        the distributed datasets, which know its input pipeline."""

    def checkpoint_saver(self, folder):
        return super().checkpoint_saver(folder) if self.chief else None  # the chief writes, all restore

    def _loop(self, model, feeds):
        from models.training_loop import MultiWorkerLoop

        if self.loop is None or self.loop.model is not model:
            self.loop = MultiWorkerLoop(model, self.strategy, feeds)
        return self.loop

    def fit(self, model, feeds, *, train_count, validation, epochs, initial_epoch, callbacks, report, verbose,
            generator=None):
        """As `Topology.fit`, by the custom loop (which draws no progress bar;
        `generator` is refused by `choose`)."""
        loop = self._loop(model, feeds)
        loop.fit(train_count, epochs=epochs, initial_epoch=initial_epoch, callbacks=[*callbacks, report],
                 evaluate=lambda model: loop.evaluate(validation), verbose=verbose)

    def evaluate(self, model, feeds, name):
        return self._loop(model, feeds).evaluate(name)


def check_tf_config(text):
    """Raises UsageError (one line) unless TF_CONFIG (None: not set, a
    one-worker cluster) describes a cluster TensorFlow can form: JSON with a
    "cluster" of jobs, each a list of "host:port" addresses, and a "task"
    whose "type" is one of them and whose "index" is within its list."""
    if text is None or not text.strip():
        return
    try:
        config = json.loads(text)
    except ValueError as error:
        raise UsageError(f"TF_CONFIG is not valid JSON ({error})") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise UsageError('TF_CONFIG needs a "cluster": {"worker": ["host:port", ...]} (and optionally "chief")')
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses or not all(
                isinstance(a, str) and re.fullmatch(r"\S+:\d+", a) for a in addresses):
            raise UsageError(f'TF_CONFIG: cluster job "{job}" must be a list of "host:port" addresses '
                             f"(got {addresses!r})")
    task = config.get("task")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise UsageError(f'TF_CONFIG needs a "task" whose "type" is one of {sorted(cluster)} (got {task!r})')
    index, count = task.get("index", 0), len(cluster[task["type"]])
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise UsageError(f'TF_CONFIG: task index {index!r} is not one of the {count} "{task["type"]}" '
                         f"address(es) (0 .. {count - 1})")


def choose(args, backend):
    """The topology of train.py's flags (before any data is read)."""
    multiworker = args.strategy == "multiworker"
    cluster = (args.coordinator_address, args.num_processes, args.process_id)
    if cluster != (None, None, None) and not multiworker:
        raise UsageError("--coordinator-address, --num-processes and --process-id need --strategy multiworker")
    if multiworker and args.augment == "generator":
        raise UsageError("--augment generator is not supported with --strategy multiworker")
    if args.strategy == "default":
        return OneDevice()
    if backend == "jax":
        return JaxMultiHost(*cluster) if multiworker else JaxDataParallel()
    if backend != "tensorflow":
        raise UsageError(f"--strategy {args.strategy} needs the TensorFlow or JAX backend")
    if cluster != (None, None, None):
        raise UsageError("--coordinator-address, --num-processes and --process-id are for the JAX backend; "
                         "TensorFlow's multiworker reads the cluster from TF_CONFIG")
    return TFMultiWorker() if multiworker else TFMirrored()
