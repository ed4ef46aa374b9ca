"""Multi-host training on JAX: several processes, one Keras `DataParallel`.

Every process runs the same train.py command. `initialize` joins them
(`keras.distribution.initialize`, i.e. `jax.distributed.initialize`): process
0 is the coordinator and the chief. The distribution is `DataParallel` over
every device of every process, so one SPMD program trains the model; its
variables (and the augmentation layer's seed state) are replicated, its
batch is sharded over all devices, and the augmentation draws parameters of
the global batch's shape: no two images, on one process or across them,
share a draw.

Each process feeds only its own shard of the data (`models.inputs.process_share`), one
per-process batch per step; Keras assembles the global batch from them
(`jax.make_array_from_process_local_data`), so `auto_shard_dataset` is off.
"""

import pathlib

from models import checkpoints
from models.errors import JobError


class ClusterError(JobError):
    """The processes cannot form a cluster; the message is one line."""


def initialize(coordinator_address=None, num_processes=None, process_id=None):
    """Joins the cluster and sets a `DataParallel` over all its devices.

    Args:
        coordinator_address: "HOST:PORT" of process 0 (None: Keras reads
            `KERAS_DISTRIBUTION_JOB_ADDRESSES`, else JAX detects the cluster,
            e.g. under SLURM or on Cloud TPU).
        num_processes, process_id: ints (None: from the same sources).
    """
    import keras

    if num_processes is not None and num_processes < 1:
        raise ClusterError(f"--num-processes must be >= 1 (got {num_processes})")
    if process_id is not None and not 0 <= process_id < (num_processes or process_id + 1):
        raise ClusterError(f"--process-id must be in 0 .. {num_processes - 1} (got {process_id})")
    try:
        keras.distribution.initialize(coordinator_address, num_processes, process_id)
    except Exception as error:  # noqa: BLE001 - JAX raises RuntimeError, ValueError, XlaRuntimeError
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ClusterError(f"--strategy multiworker: cannot join the JAX cluster ({reason})") from None
    keras.distribution.set_distribution(keras.distribution.DataParallel(
        devices=keras.distribution.list_devices(), auto_shard_dataset=False))


def process_info():
    """(process_index, process_count, local_device_count); (0, 1, n) on one host."""
    import jax

    return jax.process_index(), jax.process_count(), jax.local_device_count()


# Saving under a multi-process distribution --------------------------------
# Keras' save_weights and save create (throw-away) variables, and creating a
# variable there is a collective operation (`jax.device_put` checks that every
# process passes the same value). So every process saves, at the same point:
# the chief into the real files, the others into a scratch folder they delete
# (the pattern of TensorFlow's multi-worker guide).


def save_on_every_process(save, chief):
    """Calls `save(folder)`: the real folder on the chief, a scratch folder
    elsewhere. `save` writes into the folder it is given."""
    import tempfile

    if chief:
        return save(None)
    with tempfile.TemporaryDirectory(prefix="gpuaug-non-chief-") as scratch:
        return save(pathlib.Path(scratch))


def write_checkpoint(model, folder, epochs_done, chief, **metadata):
    """`checkpoints.write` on the chief (`metadata`: its `run` and
    `history`); the other processes save the weights into scratch (see
    above). Every process calls it after every epoch; every process restores
    (train.py's `restore_checkpoint`)."""

    def save(scratch):
        if scratch is None:
            checkpoints.write(model, folder, epochs_done, **metadata)
        else:
            model.save_weights(scratch / "partial.weights.h5")

    save_on_every_process(save, chief)
