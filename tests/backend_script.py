"""Run by test_backends.py under another KERAS_BACKEND: applies the
transformation in IN.npz to its images, draws seeded parameters, and trains
one jit-compiled step; writes the results to OUT.npz."""

import json
import sys

import keras
import numpy as np

import gpuaug

source, target = sys.argv[1], sys.argv[2]
data = dict(np.load(source))
images = data.pop("images")
kwargs = json.loads(str(data.pop("kwargs")))
results = {"backend": np.array(keras.backend.backend())}
for mode in ("constant", "nearest", "reflect", "wrap"):
    for order in (0, 1):
        layer = gpuaug.RandomTransform(**kwargs, fill_mode=mode, interpolation_order=order, cval=9.0)
        results[f"{mode}-{order}"] = np.asarray(layer.transform_images(images, data))

# The warp's gather index modes (see gpuaug/warp.py), and the one chosen past 2**31 pixels.
matrices = gpuaug.transform_matrices(data, images.shape[1], images.shape[2])
for mode in gpuaug.warp.INDEX_MODES:
    results[f"index-{mode}"] = np.asarray(gpuaug.warp.warp_images(images, matrices, index_mode=mode))
results["index_mode_past_int32"] = np.array(gpuaug.warp.choose_index_mode(8193, 512, 512))

layer = gpuaug.RandomTransform(**kwargs, seed=3)
first = layer.get_random_transformation(images)
again = gpuaug.RandomTransform(**kwargs, seed=3).get_random_transformation(images)
results["seeded_theta"] = np.asarray(first["theta"])
results["reseeded_theta"] = np.asarray(again["theta"])
results["inference"] = np.asarray(layer(images, training=False))

inputs = keras.Input(images.shape[1:])
x = gpuaug.RandomTransform(**kwargs, seed=1)(inputs)
x = keras.layers.Rescaling(1 / 255.0)(x)
x = keras.layers.Conv2D(4, 3, activation="relu")(x)
x = keras.layers.GlobalAveragePooling2D()(x)
model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", jit_compile=True)
history = model.fit(images, np.arange(len(images)) % 3, batch_size=4, epochs=2, verbose=0)
results["loss"] = np.array(history.history["loss"])
results["jit_compile"] = np.array(model.jit_compile)
np.savez(target, **results)
