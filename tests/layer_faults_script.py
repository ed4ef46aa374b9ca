"""Checks of RandomTransform's faults 20-22 on the current Keras backend, run by
test_layer_faults.py: in-process on TensorFlow, and as
`python tests/layer_faults_script.py MODE OUT.npz` under KERAS_BACKEND=jax or
torch (KERAS_BACKEND is read at import). Each MODE's function returns a dict
of numpy arrays (facts as 0-d arrays) that the tests compare across backends.
"""

import sys

import keras
import numpy as np

import gpuaug

REFERENCE = dict(rotation_range=20, width_shift_range=0.1, height_shift_range=[1, 2, 3], shear_range=5,
                 zoom_range=0.2, horizontal_flip=True, vertical_flip=True, channel_shift_range=5.0,
                 brightness_range=[0.5, 1.5])
REFERENCE_KEYS = ("theta", "tx", "ty", "shear", "zx", "zy", "flip_horizontal", "flip_vertical",
                  "channel_shift_intensity", "brightness")
# Beyond the reference: none, each alone, both, and the lens with k2 too.
EXTRAS = {"none": {}, "perspective": dict(perspective_range=0.3), "lens": dict(distortion_range=0.1),
          "both": dict(perspective_range=0.3, distortion_range=0.1), "lens_k2": dict(distortion_range=[0.1, 0.05])}


def _data(n=8, height=16, width=20):
    rng = np.random.default_rng(0)
    boxes = np.tile(np.array([[[2, 2, 10, 10], [0, 0, 20, 16]]], "float32"), (n, 1, 1))
    return {"images": rng.uniform(0, 255, (n, height, width, 3)).astype("float32"),
            "segmentation_masks": rng.integers(0, 5, (n, height, width)).astype("uint8"),
            "bounding_boxes": {"boxes": boxes, "labels": np.ones((n, 2), "int32")},
            "keypoints": rng.uniform(0, 16, (n, 3, 2)).astype("float32")}


def tf_data():
    """Images and dicts (masks, boxes, keypoints) through `Dataset.map`, two
    epochs; inference; the standardization layers; the layer's variables."""
    import tensorflow as tf

    data = _data()
    out = {}
    layer = gpuaug.RandomTransform(**REFERENCE, perspective_range=0.2, distortion_range=0.1, fill_mode="constant",
                                   seed=3)
    images = tf.data.Dataset.from_tensor_slices(data["images"]).batch(4)  # batch dimension None in the graph
    for epoch in range(2):
        for step, batch in enumerate(images.map(lambda b: layer(b, training=True))):
            assert isinstance(batch, tf.Tensor) and batch.dtype == tf.float32
            out[f"images_{epoch}_{step}"] = batch.numpy()
    out["inference"] = next(iter(images.map(lambda b: layer(b, training=False)))).numpy()
    # The public methods, called directly in the pipeline.
    split = gpuaug.RandomTransform(**REFERENCE, perspective_range=0.2, seed=5)
    out["methods"] = next(iter(images.map(lambda b: split.transform_images(b, split.get_random_transformation(b)))))
    out["methods"] = out["methods"].numpy()
    out["variables"] = np.array([v.path for v in layer.variables])

    targets = gpuaug.RandomTransform(rotation_range=20, zoom_range=0.2, horizontal_flip=True, perspective_range=0.2,
                                     bounding_box_format="xyxy", fill_mode="constant", mask_fill_value=255, seed=1)
    dicts = tf.data.Dataset.from_tensor_slices(data).batch(4).map(lambda d: targets(d, training=True))
    for step, batch in enumerate(dicts):
        assert batch["segmentation_masks"].dtype == tf.uint8 and batch["bounding_boxes"]["labels"].dtype == tf.int32
        out[f"masks_{step}"] = batch["segmentation_masks"].numpy()
        out[f"boxes_{step}"] = batch["bounding_boxes"]["boxes"].numpy()
        out[f"box_labels_{step}"] = batch["bounding_boxes"]["labels"].numpy()
        out[f"keypoints_{step}"] = batch["keypoints"].numpy()
        out[f"dict_images_{step}"] = batch["images"].numpy()

    rng = np.random.default_rng(1)
    standardization = [gpuaug.SamplewiseStandardization(std_normalization=True),
                       gpuaug.FeaturewiseStandardization(mean=[1.0, 2.0, 3.0], std=[2.0, 3.0, 4.0]),
                       gpuaug.ZCAWhitening(matrix=rng.normal(size=(16 * 20 * 3,) * 2).astype("float32") / 100),
                       gpuaug.ImagenetPreprocessing("caffe")]
    for k, standardize in enumerate(standardization):
        piped, eager = next(iter(images.map(standardize))).numpy(), np.asarray(standardize(data["images"][:4]))
        out[f"standardization_{k}"] = np.abs(piped - eager).max() / np.abs(eager).max()  # relative
    # The layer still runs on the configured backend outside tf.data.
    out["eager_type"] = np.array(type(layer(data["images"], training=False)).__module__)
    return out


def seeds():
    """Seeds at both ends of [0, 2**32 - 1], numpy seeds, and out-of-range
    seeds: (error type, message) or the draws of two successive calls."""
    images = np.zeros((16, 8, 8, 1), "float32")
    out = {}
    for label, seed in (("zero", 0), ("top", 2**32 - 1), ("numpy_top", np.uint32(2**32 - 1)), ("numpy", np.int64(3)),
                        ("three", 3), ("minus_one", -1), ("past_top", 2**32)):
        try:
            layer = gpuaug.RandomTransform(rotation_range=30, perspective_range=0.2, seed=seed)
            draws = [layer.get_random_transformation(images) for _ in range(2)]
            out[f"{label}_theta"] = np.stack([np.asarray(d["theta"]) for d in draws])
            out[f"{label}_perspective"] = np.stack([np.asarray(d["perspective"]) for d in draws])
            if label in ("zero", "top"):  # the call too (eager JAX compiles each op: not for every seed)
                pixels = np.random.default_rng(0).uniform(0, 255, images.shape).astype("float32")
                out[f"{label}_call"] = np.asarray(layer(pixels, training=True))
            out[f"{label}_config_seed"] = np.array(repr(layer.get_config()["seed"]))
        except Exception as error:  # recorded for the test to judge
            out[f"{label}_error"] = np.array(f"{type(error).__name__}: {error}")
    for label, seed in (("function_minus_one", -1), ("function_past_top", 2**32)):
        config = gpuaug.RandomTransform(rotation_range=30).augmentation
        try:
            gpuaug.sample_transformation(config, 4, 8, 8, seed=seed)
        except Exception as error:
            out[f"{label}_error"] = np.array(f"{type(error).__name__}: {error}")
    return out


def streams():
    """Two successive calls of layers seeded alike, with and without
    perspective and lens: every draw, and the seed state after each call."""
    images = np.zeros((12, 10, 14, 3), "float32")
    out = {}
    for name, extra in EXTRAS.items():
        layer = gpuaug.RandomTransform(**REFERENCE, **extra, seed=11)
        for call in range(2):
            for key, value in layer.get_random_transformation(images).items():
                if value is not None:
                    out[f"{name}_{call}_{key}"] = np.asarray(value)
            out[f"{name}_{call}_state"] = np.asarray(layer.seed_generator.state.value)
    return out


def python_numbers():
    """The reference's own transformation dict (Python floats and ints, as
    `get_random_transform` returns them) and plain Python numbers given to
    every `transform_*` method and `transform_matrices`: the pixels against
    `apply_transform`, and each target moved."""
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    images = _data(1, 8, 8)["images"]
    generator = ImageDataGenerator(rotation_range=40, width_shift_range=2, zoom_range=0.2, horizontal_flip=True,
                                   brightness_range=(0.5, 1.5), channel_shift_range=20)
    params = generator.get_random_transform(images.shape[1:], seed=0)
    assert isinstance(params["theta"], float)
    layer = gpuaug.RandomTransform(rotation_range=40, horizontal_flip=True, bounding_box_format="xyxy")
    plain = {"theta": 30.0, "tx": 1, "flip_horizontal": 1}
    return {
        "difference": np.abs(keras.ops.convert_to_numpy(layer.transform_images(images, params))[0]
                             - generator.apply_transform(images[0], params)).max(),
        "matrices": keras.ops.convert_to_numpy(gpuaug.transform_matrices(plain, 8, 8)),
        "keypoints": keras.ops.convert_to_numpy(layer.transform_keypoints(np.ones((1, 2, 2), "float32"), plain, 8, 8)),
        "masks": keras.ops.convert_to_numpy(layer.transform_segmentation_masks(
            np.arange(64, dtype="int32").reshape(1, 8, 8), plain)),
    }


RESULTS = {"tf_data": tf_data, "seeds": seeds, "streams": streams, "python_numbers": python_numbers}

if __name__ == "__main__":
    mode, target = sys.argv[1], sys.argv[2]
    results = RESULTS[mode]()
    results["backend"] = np.array(keras.backend.backend())
    np.savez(target, **results)
