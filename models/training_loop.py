"""A tf.distribute training loop for MultiWorkerMirroredStrategy.

Keras 3.15's `Model.fit` and `evaluate` fail under MultiWorkerMirroredStrategy
(its TensorFlow trainer all-reduces the first data batch as a nested structure
and reduces scalar logs with `axis=0`, which collective ops reject). This is the
standard custom loop from TensorFlow's multi-worker guide instead:
`distribute_datasets_from_function`, `strategy.run` per step, the loss averaged
over the global batch; Keras' optimizer all-reduces the gradients.

The model's `jit_compile` applies as in `fit`: each replica's forward and
backward pass is compiled with XLA (the gradients' all-reduce stays in
TensorFlow's collective ops).

Every worker builds only its own share of each split (`models.inputs`: one
rule for arrays and image files): it reads and decodes those files and no
others. Training shares have one length, so all workers run the same steps;
evaluation shares hold every item once, padded to one length with items of
weight 0, and the weighted sums are all-reduced, so the loss and accuracy are
those of a single-process evaluation. Callbacks get the epoch hooks
(the checkpoint, written by the chief, then the report).
"""

from models import inputs


class MultiWorkerLoop:
    """Fits and evaluates `model` (compiled in `strategy.scope()`) on the
    splits of `feeds` (`models.inputs.Feeds`)."""

    def __init__(self, model, strategy, feeds):
        import keras

        self.model, self.strategy, self.feeds = model, strategy, feeds
        # Keras' compile(jit_compile=...) as Model.fit would resolve it ("auto":
        # XLA on accelerators, not on CPU-only TensorFlow).
        self.jit_compile = bool(model.jit_compile)
        self.per_example_loss = keras.losses.SparseCategoricalCrossentropy(reduction=None)
        self._datasets, self._steps = {}, {}

    def _worker_dataset(self, name, context, training):
        """This worker's share of split `name`, batched for its replicas."""
        import tensorflow as tf

        feeds, index, workers = self.feeds, context.input_pipeline_id, context.num_input_pipelines
        part = getattr(feeds.splits, name)
        count = len(part[0]) if isinstance(part, tuple) else len(part)
        if training:
            share, _ = inputs.process_share(part, count, feeds.seed, index, workers, 1)
        else:
            share, _ = inputs.evaluation_share(part, count, feeds.seed, index, workers, 1)
        batch = context.get_per_replica_batch_size(feeds.batch_size if training else feeds.evaluation_batch_size)
        if isinstance(share, tuple) and training:
            return feeds.array_batches(share, batch)
        if isinstance(share, tuple):
            dataset = tf.data.Dataset.from_tensor_slices(share)
        else:
            dataset = feeds.files_dataset(name, share, training, index, workers)
        return dataset.batch(batch).prefetch(tf.data.AUTOTUNE)

    def _dataset(self, name, training=False):
        if name not in self._datasets:
            self._datasets[name] = self.strategy.distribute_datasets_from_function(
                lambda context: self._worker_dataset(name, context, training))
        return self._datasets[name]

    def _train_step(self):
        import tensorflow as tf

        model, strategy, global_batch = self.model, self.strategy, self.feeds.batch_size

        def forward_backward(images, labels):
            labels = tf.cast(labels, tf.int64)
            with tf.GradientTape() as tape:
                predictions = model(images, training=True)
                losses = self.per_example_loss(labels, predictions)
                loss = tf.nn.compute_average_loss(losses, global_batch_size=global_batch)
            gradients = tape.gradient(loss, model.trainable_variables)
            hits = tf.cast(tf.equal(tf.argmax(predictions, axis=-1), labels), tf.float32)
            return gradients, tf.reduce_sum(losses), tf.reduce_sum(hits)

        if self.jit_compile:
            # The replica's forward and backward pass (augmentation included) is
            # compiled with XLA; the gradients' all-reduce across workers
            # (apply_gradients) stays outside, in TensorFlow's collective ops.
            forward_backward = tf.function(forward_backward, jit_compile=True)

        def replica_step(images, labels):
            gradients, loss, hits = forward_backward(images, labels)
            model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return loss, hits

        @tf.function
        def step(images, labels):
            loss, hits = strategy.run(replica_step, args=(images, labels))
            return strategy.reduce("SUM", loss, axis=None), strategy.reduce("SUM", hits, axis=None)

        return step

    def _evaluation_step(self):
        import tensorflow as tf

        model, strategy = self.model, self.strategy

        def replica_step(images, labels, weights):
            labels = tf.cast(labels, tf.int64)
            predictions = model(images, training=False)
            losses = self.per_example_loss(labels, predictions)
            hits = tf.cast(tf.equal(tf.argmax(predictions, axis=-1), labels), tf.float32)
            return tf.reduce_sum(losses * weights), tf.reduce_sum(hits * weights), tf.reduce_sum(weights)

        @tf.function
        def step(images, labels, weights):
            sums = strategy.run(replica_step, args=(images, labels, weights))
            return [strategy.reduce("SUM", value, axis=None) for value in sums]

        return step

    def fit(self, count, *, epochs, initial_epoch, callbacks, evaluate, verbose=0):
        """Trains for the epochs after `initial_epoch` on `count` images per
        epoch (the workers' shares together), calling the callbacks' epoch
        hooks with loss and accuracy, and `val_loss`/`val_accuracy` from
        `evaluate(model)` when given."""
        step = self._train_step()
        dataset = self._dataset("train", training=True)
        for callback in callbacks:
            callback.set_model(self.model)
        for epoch in range(initial_epoch, epochs):
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            total_loss = total_hits = 0.0
            for images, labels in dataset:
                loss, hits = step(images, labels)
                total_loss += float(loss)
                total_hits += float(hits)
            logs = {"loss": total_loss / count, "accuracy": total_hits / count}
            if evaluate is not None:
                logs["val_loss"], logs["val_accuracy"] = evaluate(self.model)
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs)

    def evaluate(self, name):
        """Mean cross-entropy and accuracy over the whole split `name`."""
        if "evaluate" not in self._steps:
            self._steps["evaluate"] = self._evaluation_step()
        step = self._steps["evaluate"]
        total_loss = total_hits = total = 0.0
        for images, labels, weights in self._dataset(name):
            loss, hits, count = step(images, labels, weights)
            total_loss, total_hits, total = total_loss + float(loss), total_hits + float(hits), total + float(count)
        return total_loss / total, total_hits / total
