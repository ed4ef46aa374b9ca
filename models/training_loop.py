"""A tf.distribute training loop for MultiWorkerMirroredStrategy.

Keras 3.15's `Model.fit` and `evaluate` fail under MultiWorkerMirroredStrategy
(its TensorFlow trainer all-reduces the first data batch as a nested structure
and reduces scalar logs with `axis=0`, which collective ops reject). This is the
standard custom loop from TensorFlow's multi-worker guide instead: a
distributed dataset sharded by data, `strategy.run` per step, the loss averaged
over the global batch; Keras' optimizer all-reduces the gradients. Checkpoints
use `BackupAndRestore`'s files (`latest.weights.h5`, `training_metadata.json`),
each replaced atomically by the chief and read by every worker (train.py
restores them before training).
"""

from models import checkpoints


def _distributed_dataset(strategy, x, y, global_batch, seed):
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        .batch(global_batch)
        .with_options(options)
    )
    return strategy.experimental_distribute_dataset(dataset)


def fit_multiworker(model, strategy, x, y, *, epochs, global_batch, seed, callbacks,
                    checkpoint_dir=None, initial_epoch=0, chief=True):
    """Trains `model` (compiled in `strategy.scope()`) for the epochs after
    `initial_epoch` (its weights already restored from `checkpoint_dir` by
    train.py), calling the callbacks' epoch hooks with loss and accuracy."""
    import keras
    import tensorflow as tf

    per_example_loss = keras.losses.SparseCategoricalCrossentropy(reduction=None)
    dataset = _distributed_dataset(strategy, x, y.astype("int64"), global_batch, seed)

    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            predictions = model(images, training=True)
            losses = per_example_loss(labels, predictions)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=global_batch)
        gradients = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        hits = tf.cast(tf.equal(tf.argmax(predictions, axis=-1), labels), tf.float32)
        return tf.reduce_sum(losses), tf.reduce_sum(hits)

    @tf.function
    def train_step(images, labels):
        loss, hits = strategy.run(replica_step, args=(images, labels))
        return strategy.reduce("SUM", loss, axis=None), strategy.reduce("SUM", hits, axis=None)

    for epoch in range(initial_epoch, epochs):
        for callback in callbacks:
            callback.on_epoch_begin(epoch)
        total_loss = total_hits = 0.0
        for images, labels in dataset:
            loss, hits = train_step(images, labels)
            total_loss += float(loss)
            total_hits += float(hits)
        logs = {"loss": total_loss / len(x), "accuracy": total_hits / len(x)}
        for callback in callbacks:
            callback.on_epoch_end(epoch, logs)
        if checkpoint_dir and chief:
            checkpoints.write(model, checkpoint_dir, epoch + 1)


def accuracy(model, x, y, batch_size=256):
    """Test accuracy computed locally on each worker (no collective ops)."""
    import numpy as np

    hits = 0
    for start in range(0, len(x), batch_size):
        probabilities = np.asarray(model(x[start:start + batch_size], training=False))
        hits += int(np.sum(probabilities.argmax(axis=-1) == y[start:start + batch_size]))
    return hits / len(x)
