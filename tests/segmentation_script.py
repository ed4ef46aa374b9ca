"""Run by test_targets.py under a KERAS_BACKEND: trains with masks augmented
with their images inside a jit-compiled step (gpuaug.TrainWithTargets) and
prints what the test checks."""

import pathlib
import sys

import keras
import numpy as np
from keras import ops

import gpuaug

out = pathlib.Path(sys.argv[1])
keras.utils.set_random_seed(0)  # the data order of fit and the weights: the printed figures repeat
rng = np.random.default_rng(0)
CLASSES = 4
blocks = rng.integers(0, CLASSES, (64, 6, 6, 1))
labels = np.repeat(np.repeat(blocks, 4, axis=1), 4, axis=2).astype("int32")  # (64, 24, 24, 1)
GEOMETRY = dict(rotation_range=30, width_shift_range=0.2, height_shift_range=0.2, zoom_range=0.2,
                horizontal_flip=True, vertical_flip=True, interpolation_order=0, fill_mode="reflect")


class ClassOfPixel(keras.layers.Layer):
    """Predicts each pixel's class from its value (the label image itself):
    right everywhere exactly when the masks moved with the images."""

    def build(self, input_shape):
        self.unused = self.add_weight(shape=(), initializer="zeros")

    def call(self, images):
        one_hot = ops.one_hot(ops.cast(ops.round(images[..., 0]), "int32"), CLASSES)
        return ops.softmax(one_hot * 20.0 + self.unused * 0.0)


class ImagesOnly(gpuaug.RandomTransform):
    """Negative control: augments the images, leaves the masks where they were."""

    def transform_segmentation_masks(self, masks, transformation):
        return masks


def accuracy_with(augmentation):
    if keras.backend.backend() == "torch":  # a fresh torch.compile cache per trainer (see test_targets.py)
        import torch

        torch._dynamo.reset()
    inputs = keras.Input((24, 24, 1))
    model = keras.Model(inputs, ClassOfPixel()(inputs))
    trainer = gpuaug.TrainWithTargets(model, augmentation)
    trainer.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=True)
    history = trainer.fit({"images": labels.astype("float32"), "segmentation_masks": labels}, epochs=2,
                          batch_size=16, verbose=0)
    return history.history["accuracy"][-1], trainer


aligned, trainer = accuracy_with(gpuaug.RandomTransform(**GEOMETRY, seed=1))
control, _ = accuracy_with(ImagesOnly(**GEOMETRY, seed=1))
moved = trainer.augmentation({"images": labels[:8].astype("float32"), "segmentation_masks": labels[:8]},
                             training=True)["segmentation_masks"]
changed = not np.array_equal(ops.convert_to_numpy(moved), labels[:8])
print(f"accuracy with masks moved: {aligned:.4f}, images only: {control:.4f}, augmentation changes masks: {changed}")
print(f"aligned: {aligned == 1.0 and control < 0.9 and changed}")

# A real (small) segmentation model: bright squares on noise, masks = squares.
images = rng.uniform(0, 80, (96, 24, 24, 1)).astype("float32")
masks = np.zeros((96, 24, 24, 1), "int32")
for image, mask in zip(images, masks):
    r, c, s = rng.integers(2, 12), rng.integers(2, 12), rng.integers(5, 10)
    image[r:r + s, c:c + s] += 150.0
    mask[r:r + s, c:c + s] = 1
inputs = keras.Input((24, 24, 1))
x = keras.layers.Rescaling(1 / 255.0)(inputs)
x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
segmenter = keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax")(x))
trainer = gpuaug.TrainWithTargets(segmenter, gpuaug.RandomTransform(rotation_range=20, width_shift_range=0.1,
                                                                    horizontal_flip=True, seed=0))
trainer.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                metrics=["accuracy"], jit_compile=True)
history = trainer.fit({"images": images, "segmentation_masks": masks}, epochs=4, batch_size=16, verbose=0)
losses = history.history["loss"]
print(f"segmentation loss {losses[0]:.4f} -> {losses[-1]:.4f}, accuracy {history.history['accuracy'][-1]:.4f}")
assert losses[-1] < losses[0], losses
# Inference: no augmentation; the model alone is what gets saved.
np.testing.assert_allclose(trainer.predict(images[:8], verbose=0), segmenter.predict(images[:8], verbose=0), atol=1e-6)
segmenter.save(out / "segmenter.keras")
reloaded = keras.models.load_model(out / "segmenter.keras")
assert not any(isinstance(layer, gpuaug.RandomTransform) for layer in reloaded.layers)
print(f"backend {keras.backend.backend()}, jit_compile {trainer.jit_compile}: done")
