"""Each epoch's order of the training data: a function of (seed, epoch) only.

A `tf.data` shuffle that reshuffles each iteration draws epoch k's order
from the k-th iteration of the dataset object, so a run resumed after epoch
N starts again at epoch 1's order. Here the order of epoch e is drawn
statelessly from (seed, e): `EpochCounter` holds e in a variable that the
pipeline reads when an epoch's pass begins (its Keras callback sets it at
`on_epoch_begin`), so a resumed run, whose counter starts at the epoch it
resumes at, sees exactly the orders an uninterrupted run sees.
"""

import math


class EpochCounter:
    """The epoch (0-based, as Keras counts) the training feed is in."""

    def __init__(self):
        import tensorflow as tf

        with tf.init_scope():  # a plain host variable, outside any strategy's scope
            self.variable = tf.Variable(0, dtype=tf.int64, trainable=False, name="gpuaug_epoch")

    def set(self, epoch):
        self.variable.assign(int(epoch))

    def callback(self):
        """A Keras callback that sets the counter as each epoch begins
        (before its first batch is read)."""
        import keras

        counter = self

        class EpochOrder(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                counter.set(epoch)

        return EpochOrder()


def _seed(seed, counter):
    import tensorflow as tf

    return tf.stack([tf.constant(int(seed), tf.int64), counter.variable.read_value()])


def permutation(count, seed, counter):
    """The epoch's permutation of range(count): int64 (count,)."""
    import tensorflow as tf

    return tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64), seed=_seed(seed, counter))


def buffer_shuffle(dataset, buffer_size, seed, counter):
    """`dataset.shuffle(buffer_size)` with the epoch's seed (call it inside
    `per_epoch`'s `make`, so that the seed is drawn when the pass begins)."""
    import tensorflow as tf

    # Inside the pass's traced function, a graph-level seed of its own: with
    # TensorFlow's global seed 0 (keras.utils.set_random_seed(0)), shuffle's
    # seed check compares a tensor seed as a Python bool and fails. It does
    # not reach the global generator (eager code keeps its stream).
    tf.random.set_seed(1)
    epoch_seed = tf.random.stateless_uniform([], seed=_seed(seed, counter), minval=0, maxval=2**62, dtype=tf.int64)
    return dataset.shuffle(buffer_size, seed=epoch_seed)


def per_epoch(make, length):
    """A dataset whose every pass is `make()`, built when the pass begins
    (reading the counter then); `length`: its number of elements."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensors(0).flat_map(lambda _: make())
    return dataset.apply(tf.data.experimental.assert_cardinality(length))


def array_batches(arrays, batch_size, seed, counter):
    """Batches of `arrays` (a tuple of numpy arrays of one length: images,
    labels[, weights]) in each epoch's permuted order: Keras' own array
    feed (the arrays as one dataset element, batches gathered by index), with
    the order `permutation` gives."""
    import tensorflow as tf

    count = len(arrays[0])
    indices = per_epoch(lambda: tf.data.Dataset.from_tensor_slices(permutation(count, seed, counter))
                        .batch(batch_size), math.ceil(count / batch_size))
    data = tf.data.Dataset.from_tensors(tuple(arrays)).repeat()
    batches = tf.data.Dataset.zip((indices, data)).map(
        lambda index, columns: tuple(tf.gather(column, index) for column in columns),
        num_parallel_calls=tf.data.AUTOTUNE)
    return batches.prefetch(tf.data.AUTOTUNE)
