"""Training with targets that move with the images (segmentation masks).

`Model.fit` hands a model's layers only the inputs, so a layer inside the
model cannot move the targets. `TrainWithTargets` wraps a model instead: fit
gets `x = {"images": ..., "segmentation_masks": ...}` (or another target
key), the wrapper's `call` augments both with one draw per image, inside the
compiled training step, runs the model on the augmented images, and its
`compute_loss`/`compute_metrics` compare the predictions with the augmented
targets. It uses only `keras.ops` and Keras' own loss hooks, so it runs on
TensorFlow, JAX and PyTorch with `jit_compile=True`.

At inference (`predict`, `evaluate`, or any call with a plain tensor or
`training=False`) nothing is augmented, and `.model` is the model alone, with
no augmentation in it: that is what to save or export.
"""

import keras

from gpuaug import targets


DEFAULT_TARGET = targets.SEGMENTATION_MASKS
# What can be trained on: the targets the layer moves (`targets.MOVED`), the default first.
TARGETS = (DEFAULT_TARGET,) + tuple(key for key in targets.MOVED if key != DEFAULT_TARGET)


class TargetsFromPredictions:
    """For a `keras.Model` whose `call` returns more than its predictions
    (the targets moved with the images, a mixing draw): Keras' loss and
    metrics run on `self._targets(y, y_pred)`, the (targets, predictions)
    pair the subclass derives from the batch's `y` and what `call` returned."""

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        y, y_pred = self._targets(y, y_pred)
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        y, y_pred = self._targets(y, y_pred)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)


@keras.saving.register_keras_serializable(package="gpuaug")
class TrainWithTargets(TargetsFromPredictions, keras.Model):
    """Fits `model` on images and targets augmented together.

    Args:
        model: a Keras model from images to predictions of the target.
        augmentation: a `gpuaug.RandomTransform` (its dict call moves
            "segmentation_masks", "bounding_boxes", "keypoints").
        target: the key of the target in `x` ("segmentation_masks" by
            default; "bounding_boxes" or "keypoints" for other heads).

    Usage:
        trainer = gpuaug.TrainWithTargets(model, gpuaug.RandomTransform(...))
        trainer.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                        jit_compile=True)
        trainer.fit({"images": images, "segmentation_masks": masks}, epochs=...)
        trainer.model.save("segmenter.keras")      # no augmentation inside
    """

    def __init__(self, model, augmentation, target=DEFAULT_TARGET, **kwargs):
        super().__init__(**kwargs)
        if target not in TARGETS:
            raise ValueError(f"`target` must be one of {', '.join(map(repr, TARGETS))}. Received: {target!r}")
        self.model = model
        self.augmentation = augmentation
        self.target = target

    def _check_targets(self, x):
        if isinstance(x, dict) and self.target == targets.SEGMENTATION_MASKS and self.target in x:
            targets.check_masks_survive_the_backend(x[self.target])

    def fit(self, x=None, *args, **kwargs):
        self._check_targets(x)  # before Keras converts host arrays to the backend's dtypes
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self._check_targets(x)
        return super().evaluate(x, *args, **kwargs)

    def call(self, inputs, training=None):
        if not isinstance(inputs, dict):
            return self.model(inputs, training=training)
        if targets.IMAGES not in inputs or self.target not in inputs:
            raise ValueError(f"TrainWithTargets expects x = {{{targets.IMAGES!r}: ..., {self.target!r}: ...}}; "
                             f"received keys {sorted(inputs)}.")
        data = self.augmentation({targets.IMAGES: inputs[targets.IMAGES], self.target: inputs[self.target]},
                                 training=training)
        return {"predictions": self.model(data[targets.IMAGES], training=training), "targets": data[self.target]}

    @staticmethod
    def _targets(y, y_pred):
        if isinstance(y_pred, dict) and "targets" in y_pred:
            return y_pred["targets"], y_pred["predictions"]
        return y, y_pred

    def get_config(self):
        return {**super().get_config(), "model": keras.saving.serialize_keras_object(self.model),
                "augmentation": keras.saving.serialize_keras_object(self.augmentation), "target": self.target}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        config["augmentation"] = keras.saving.deserialize_keras_object(config["augmentation"])
        return cls(**config)
