"""A tf.distribute training loop for MultiWorkerMirroredStrategy.

Keras 3.15's `Model.fit` and `evaluate` fail under MultiWorkerMirroredStrategy
(its TensorFlow trainer all-reduces the first data batch as a nested structure
and reduces scalar logs with `axis=0`, which collective ops reject). This is the
standard custom loop from TensorFlow's multi-worker guide instead: a
distributed dataset sharded by data, `strategy.run` per step, the loss averaged
over the global batch; Keras' optimizer all-reduces the gradients. Arrays are
sharded by data (tf.distribute's auto-sharding); a stream (an image folder)
is read by every worker in the same seeded order, each keeping its share,
the same number of images on every worker so that all run the same steps.
The chief
writes the checkpoint after every epoch (`models.checkpoints.write`, with its
backup), and every worker reads it (train.py restores it before training).
"""

from models import checkpoints


def worker_count(strategy):
    """The number of workers in `strategy`'s cluster (1 without TF_CONFIG)."""
    spec = strategy.cluster_resolver.cluster_spec()
    return max(1, sum(spec.num_tasks(job) for job in spec.jobs if job in ("chief", "worker")))


def _distributed_dataset(strategy, train, count, global_batch, seed):
    """The distributed dataset of `train`: (images, labels) arrays, or an
    unbatched stream of (image, label) of which the workers train on `count`
    per epoch (a multiple of the worker count), `count / workers` each."""
    import tensorflow as tf

    if isinstance(train, tuple):
        x, y = train
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = (
            tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
            .batch(global_batch)
            .with_options(options)
        )
        return strategy.experimental_distribute_dataset(dataset)

    def per_worker(context):
        # The stream's shuffle is seeded, so every worker sees the same order
        # each epoch and the shards are disjoint.
        return (train.shard(context.num_input_pipelines, context.input_pipeline_id)
                .take(count // context.num_input_pipelines)
                .batch(context.get_per_replica_batch_size(global_batch))
                .prefetch(tf.data.AUTOTUNE))

    return strategy.distribute_datasets_from_function(per_worker)


def fit_multiworker(model, strategy, train, count, *, epochs, global_batch, seed, callbacks,
                    checkpoint_dir=None, initial_epoch=0, chief=True, validation=None):
    """Trains `model` (compiled in `strategy.scope()`) on `count` images per
    epoch of `train` ((images, labels) arrays, or an unbatched stream of
    which `count`, a multiple of the worker count, are shared out) for the epochs
    after `initial_epoch` (its weights already restored from `checkpoint_dir`
    by train.py), calling the callbacks' epoch hooks with loss and accuracy,
    and `val_loss`/`val_accuracy` on `validation` (arrays or a stream) when
    given."""
    import keras
    import tensorflow as tf

    per_example_loss = keras.losses.SparseCategoricalCrossentropy(reduction=None)
    dataset = _distributed_dataset(strategy, train, count, global_batch, seed)

    def replica_step(images, labels):
        labels = tf.cast(labels, tf.int64)
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
        logs = {"loss": total_loss / count, "accuracy": total_hits / count}
        if validation is not None:
            logs["val_loss"], logs["val_accuracy"] = evaluate_locally(model, validation)
        if checkpoint_dir and chief:  # saved before the epoch is reported
            checkpoints.write(model, checkpoint_dir, epoch + 1)
        for callback in callbacks:
            callback.on_epoch_end(epoch, logs)


def evaluate_locally(model, part, batch_size=256):
    """Mean cross-entropy and accuracy on `part` ((images, labels) arrays or
    an unbatched stream), computed on each worker alone (no collective ops;
    every worker reads the whole split)."""
    import numpy as np

    if isinstance(part, tuple):
        x, y = part
        batches = ((x[start:start + batch_size], y[start:start + batch_size])
                   for start in range(0, len(x), batch_size))
    else:
        batches = part.batch(batch_size).as_numpy_iterator()
    total_loss, hits, count = 0.0, 0, 0
    for images, labels in batches:
        labels = np.asarray(labels, dtype="int64")
        probabilities = np.asarray(model(images, training=False), dtype="float64")
        chosen = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1 - 1e-7)  # as Keras clips
        total_loss += float(-np.log(chosen).sum())
        hits += int(np.sum(probabilities.argmax(axis=-1) == labels))
        count += len(labels)
    return total_loss / count, hits / count
