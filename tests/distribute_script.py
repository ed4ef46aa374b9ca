"""Run by test_distribute.py in a fresh interpreter: two logical CPU devices,
a MirroredStrategy, and the layer's parameters as each replica draws them."""

import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np  # noqa: E402

import gpuaug  # noqa: E402

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    layer = gpuaug.RandomTransform(rotation_range=30, width_shift_range=0.2, seed=int(sys.argv[1]))
    if sys.argv[2:] == ["plain"]:  # negative control: Keras' own SeedGenerator
        import keras

        layer.seed_generator = keras.random.SeedGenerator(int(sys.argv[1]))
    layer.build((None, 8, 8, 1))


@tf.function
def draw(images):
    def replica_fn(batch):
        t = layer.get_random_transformation(batch)
        return tf.stack([t["theta"], t["ty"]], axis=-1)

    return strategy.run(replica_fn, args=(images,))


images = tf.data.Dataset.from_tensor_slices(np.zeros((8, 8, 8, 1), "float32")).batch(8)
steps = []
for _ in range(2):
    for batch in strategy.experimental_distribute_dataset(images):
        steps.append([r.numpy().tolist() for r in strategy.experimental_local_results(draw(batch))])
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "steps": steps}))
