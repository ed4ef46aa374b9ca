"""Independent random draws per replica under a distribution strategy.

`tf.distribute` (MirroredStrategy, MultiWorkerMirroredStrategy) runs the
layer once per replica with ONE mirrored seed state, so every replica would
draw the same parameters for its share of the batch: N devices, N copies of
one augmentation stream. `ReplicaSeedGenerator` offsets each draw's seed by
the replica's index, so replicas draw independently while a seeded run stays
reproducible. On JAX, Keras' `DataParallel` compiles one SPMD program whose
draws have the global batch's shape, so no offset is needed there.
"""

import keras
import keras.src.backend
from keras.src.utils import tracking

from gpuaug import backend
from gpuaug.backend import ops

# Replica k draws from seed state + (k * REPLICA_STRIDE, 0); a large prime keeps
# the streams of layers seeded with nearby integers apart.
REPLICA_STRIDE = 1_000_003


def replica_index():
    """The index of the replica running this code (0 outside a strategy)."""
    if backend.name() != "tensorflow":
        return 0
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 0
    return context.replica_id_in_sync_group


class ReplicaSeedGenerator(keras.random.SeedGenerator):
    """A `SeedGenerator` whose seeds differ between replicas of a strategy.

    `seed`: None or an int in [0, 2**32 - 1] (`config.parse_seed`). PyTorch
    keeps seed states in int32 and reads them back as uint32 (Keras'
    `torch_seed_generator` takes `& 0xFFFFFFFF`), but Keras' `SeedGenerator`
    refuses seeds from 2**31 there: they are given as their int32 bit
    pattern, the same uint32 seed."""

    def __init__(self, seed=None, name=None, **kwargs):
        seed_backend = kwargs.get("backend") or keras.src.backend
        if seed is not None and seed >= 2**31 and seed_backend.random_seed_dtype() == "int32":
            seed -= 2**32
        super().__init__(seed, name=name, **kwargs)

    def next(self, ordered=True):
        seed = super().next(ordered=ordered)
        index = replica_index()
        if isinstance(index, int) and index == 0:
            return seed
        offset = ops.cast(index, seed.dtype) * REPLICA_STRIDE
        return seed + ops.stack([offset, ops.zeros_like(offset)])


@tracking.no_automatic_dependency_tracking
def current_seed_generator(layer):
    """The seed generator `layer` draws from now: its `seed_generator` (a
    `ReplicaSeedGenerator` of `layer.seed`), or inside a tf.data pipeline on
    another backend (`backend.tensorflow_scope()`) a TensorFlow one with the
    same seed, made on first use and not tracked (no variable of the layer,
    nothing saved), as Keras' own random layers keep one."""
    if not backend.in_tensorflow_scope():
        return layer.seed_generator
    generator = layer.__dict__.get("_tensorflow_seed_generator")
    if generator is None:
        generator = ReplicaSeedGenerator(layer.seed, name="tensorflow_seed_generator",
                                         backend=backend.tensorflow_backend())
        layer._tensorflow_seed_generator = generator
    return generator
