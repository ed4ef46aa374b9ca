"""Run by test_distribute.py in a fresh interpreter on JAX with two host
devices: the layer's outputs (training=True) for 8 identical images, once
under keras.distribution.DataParallel (the batch sharded over both devices)
and once on one device, as JSON."""

import json
import sys

import keras
import numpy as np

import gpuaug

assert keras.backend.backend() == "jax"
devices = keras.distribution.list_devices()
assert len(devices) == 2, devices


class AlwaysAugment(keras.layers.Layer):
    """Calls the layer with training=True, so that predict() shows its draws."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def call(self, images):
        return self.layer(images, training=True)


def outputs(distributed):
    distribution = keras.distribution.DataParallel(devices=devices) if distributed else None
    keras.distribution.set_distribution(distribution)
    if distributed:  # predict() puts each half of the batch on its own device
        sharding = distribution.get_data_layout((8, 8, 8, 1)).backend_layout
        assert len(sharding.device_set) == 2 and not sharding.is_fully_replicated, sharding
    inputs = keras.Input((8, 8, 1))
    layer = gpuaug.RandomTransform(rotation_range=40, width_shift_range=0.3, seed=int(sys.argv[1]))
    model = keras.Model(inputs, AlwaysAugment(layer)(inputs))
    image = np.arange(64, dtype="float32").reshape(1, 8, 8, 1)
    return model.predict(np.repeat(image, 8, axis=0), batch_size=8, verbose=0)


print(json.dumps({"devices": len(devices),
                  "distributed": np.round(outputs(True), 4).tolist(),
                  "single": np.round(outputs(False), 4).tolist()}))
