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

# Replica k draws from seed state + (k * REPLICA_STRIDE, 0); a large prime keeps
# the streams of layers seeded with nearby integers apart.
REPLICA_STRIDE = 1_000_003


def replica_index():
    """The index of the replica running this code (0 outside a strategy)."""
    if keras.backend.backend() != "tensorflow":
        return 0
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 0
    return context.replica_id_in_sync_group


class ReplicaSeedGenerator(keras.random.SeedGenerator):
    """A `SeedGenerator` whose seeds differ between replicas of a strategy."""

    def next(self, ordered=True):
        seed = super().next(ordered=ordered)
        index = replica_index()
        if isinstance(index, int) and index == 0:
            return seed
        offset = keras.ops.cast(index, seed.dtype) * REPLICA_STRIDE
        return seed + keras.ops.stack([offset, keras.ops.zeros_like(offset)])
