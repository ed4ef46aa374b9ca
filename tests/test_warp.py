"""The warp's gather indices: int32 while every flat index fits, int64 (or
per-image indices on JAX without x64) past 2**31 pixels, the same pixels in
every mode. Large shapes are only traced, never allocated."""

import numpy as np
import pytest
import tensorflow as tf

import gpuaug
from gpuaug import warp

LAYER = dict(rotation_range=30, width_shift_range=0.2, height_shift_range=0.2, shear_range=10,
             zoom_range=0.2, horizontal_flip=True, vertical_flip=True)


@pytest.mark.parametrize("batch, height, width, mode", [
    (8192, 512, 512, "int32"),    # 2**31 pixels: the last index is 2**31 - 1
    (8193, 512, 512, "int64"),
    (2048, 1024, 1024, "int32"),  # 2**31 again
    (2049, 1024, 1024, "int64"),
    (1, 46341, 46341, "int64"),   # one image past 2**31 pixels
    (256, 32, 32, "int32"),
    (None, 32, 32, "int64"),      # batch size known only at run time
])
def test_index_mode_decision(batch, height, width, mode):
    assert warp.choose_index_mode(batch, height, width) == mode


def test_without_int64_each_image_is_indexed_on_its_own(monkeypatch):
    monkeypatch.setattr(warp, "x64_available", lambda: False)  # JAX without jax_enable_x64
    assert warp.choose_index_mode(8193, 512, 512) == "per_image"
    assert warp.choose_index_mode(8192, 512, 512) == "int32"


def test_flat_index_arithmetic_at_the_int32_boundary():
    # The last pixel of image 8191 of 512x512 is the largest int32 ...
    last = warp.flat_index(np.int32(8191), np.int32(511), np.int32(511), 512, 512, "int32")
    assert int(last) == 2**31 - 1
    # ... and the next image's pixels need int64: exact there, well past 2**31.
    for image, row, col in [(8192, 0, 0), (8192, 511, 511), (100_000, 3, 7)]:
        index = warp.flat_index(np.int32(image), np.int32(row), np.int32(col), 512, 512, "int64")
        assert index.dtype == tf.int64 and int(index) == image * 512 * 512 + row * 512 + col


def gather_index_dtypes(shape):
    """The index dtypes of every gather in the layer's graph for `shape`
    (traced without running, so nothing of that size is allocated)."""
    layer = gpuaug.RandomTransform(**LAYER, seed=0)
    graph = tf.function(lambda x: layer(x, training=True)).get_concrete_function(
        tf.TensorSpec(shape, tf.float32)).graph
    return {op.get_attr("Tindices") for op in graph.get_operations() if op.type == "GatherV2"}


def test_large_static_shape_gathers_with_int64():
    assert gather_index_dtypes((8193, 512, 512, 1)) == {tf.int64}
    assert gather_index_dtypes((8192, 512, 512, 1)) == {tf.int32}
    assert gather_index_dtypes((None, 32, 32, 3)) == {tf.int64}


@pytest.mark.parametrize("order", [0, 1])
@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "reflect", "wrap"])
@pytest.mark.parametrize("shape", [(5, 9, 7, 2), (1, 1, 1, 1), (3, 1, 13, 1), (2, 16, 3, 4), (7, 6, 6, 3)])
def test_every_index_mode_gives_the_same_pixels(order, fill_mode, shape):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, shape).astype("float32")
    layer = gpuaug.RandomTransform(**LAYER, seed=1)
    matrices = gpuaug.transform_matrices(layer.get_random_transformation(images), shape[1], shape[2])
    results = {mode: np.asarray(warp.warp_images(images, matrices, fill_mode, 10.0, order, index_mode=mode))
               for mode in warp.INDEX_MODES}
    np.testing.assert_array_equal(results["int64"], results["int32"])
    np.testing.assert_array_equal(results["per_image"], results["int32"])
    if shape[1] * shape[2] > 1:
        assert not np.array_equal(results["int32"], images)
    # Masks (order 0 in their own dtype) too.
    masks = rng.integers(0, 2**20, shape).astype("int32")
    kept = {mode: np.asarray(warp.warp_images(masks, matrices, fill_mode, 7, 0, index_mode=mode, keep_dtype=True))
            for mode in warp.INDEX_MODES}
    np.testing.assert_array_equal(kept["int64"], kept["int32"])
    np.testing.assert_array_equal(kept["per_image"], kept["int32"])


def test_per_image_indices_refuse_one_image_past_2_31_pixels():
    """Without int64 (JAX without x64) an image of more than 2**31 pixels
    cannot be indexed: a clear error, not an overflow (traced, not allocated)."""
    matrices = np.eye(3, dtype="float32")[None]
    warp_per_image = tf.function(lambda x: warp.warp_images(x, matrices, index_mode="per_image"))
    with pytest.raises(ValueError, match=r"46341 x 46341 = 2,147,488,281 pixels.*jax_enable_x64"):
        warp_per_image.get_concrete_function(tf.TensorSpec((1, 46341, 46341, 1), tf.float32))
    warp_per_image.get_concrete_function(tf.TensorSpec((1, 64, 64, 1), tf.float32))  # fits


def test_a_dynamic_batch_warps_like_a_static_one():
    images = np.random.default_rng(1).uniform(0, 255, (6, 8, 8, 3)).astype("float32")
    layer = gpuaug.RandomTransform(**LAYER)
    transformation = layer.get_random_transformation(images, seed=3)
    def warped(batch):
        return np.asarray(tf.function(lambda x: layer.transform_images(x, transformation),
                                      input_signature=[tf.TensorSpec((batch, 8, 8, 3))])(images))

    np.testing.assert_array_equal(warped(None), warped(6))  # int64 and int32 indices


def test_unknown_index_mode_is_a_value_error():
    with pytest.raises(ValueError, match="index_mode"):
        warp.warp_images(np.zeros((1, 2, 2, 1), "float32"), np.eye(3)[None], index_mode="int16")


# The copy path: flips and whole-pixel shifts --------------------------------

@pytest.mark.parametrize("kwargs, whole", [
    (dict(width_shift_range=4, height_shift_range=4, horizontal_flip=True), True),
    (dict(width_shift_range=[2, 5], vertical_flip=True), True),
    (dict(horizontal_flip=True, channel_shift_range=10.0), True),
    (dict(width_shift_range=4.0), False),          # a float >= 1: uniform pixels, fractional
    (dict(width_shift_range=0.1), False),          # a fraction of the width
    (dict(width_shift_range=[0.1, 0.2]), False),   # fractions
    (dict(width_shift_range=4, rotation_range=1), False),
    (dict(width_shift_range=4, zoom_range=0.1), False),
    (dict(width_shift_range=4, perspective_range=0.1), False),
])
def test_whole_pixel_configurations_are_detected(kwargs, whole):
    assert gpuaug.RandomTransform(**kwargs).augmentation.moves_whole_pixels is whole


@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "reflect", "wrap"])
def test_the_copy_path_gives_the_references_pixels_with_one_gather(fill_mode):
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    from gpuaug.reference import reference_apply

    arguments = dict(width_shift_range=6, height_shift_range=6, horizontal_flip=True, vertical_flip=True,
                     fill_mode=fill_mode, cval=9.0)
    images = np.random.default_rng(2).uniform(0, 255, (12, 16, 20, 3)).astype("float32")
    layer = gpuaug.RandomTransform(**arguments, seed=4)
    drawn = layer.get_random_transformation(images, seed=7)
    # The layer's own call takes the copy path; with the same draw it equals the
    # general bilinear warp and the reference, exactly.
    copy = np.asarray(layer._transform_images(images, drawn, whole_pixels=True))
    np.testing.assert_array_equal(copy, np.asarray(layer.transform_images(images, drawn)))
    np.testing.assert_array_equal(copy, reference_apply(ImageDataGenerator(**arguments), images, drawn))
    assert not np.array_equal(copy, images)

    def gathers(layer):
        graph = tf.function(lambda x: layer(x, training=True)).get_concrete_function(
            tf.TensorSpec((12, 16, 20, 3), tf.float32)).graph
        return sum(op.type == "GatherV2" for op in graph.get_operations())

    assert gathers(layer) == 1
    assert gathers(gpuaug.RandomTransform(width_shift_range=6.0, horizontal_flip=True)) > 1


# The warped batch is computed once inside a training step -----------------

COUNT_GATHER_FUSIONS = r'''
def fusions_that_gather(hlo):
    """How many fusions of the entry computation of optimized HLO text gather."""
    import re
    bodies = dict(re.findall(r"^(%?[\w.]+) .*\{\n((?:.*\n)*?)\}", hlo, re.M))
    entry = hlo[hlo.index("ENTRY"):]
    return sum("gather(" in bodies.get(name, "") for name in re.findall(r"calls=(%?[\w.]+)", entry))
'''


def test_the_warp_is_computed_once_in_a_tensorflow_training_step(monkeypatch):
    """XLA would fuse the warped batch into both of its consumers (the
    convolution and its filter gradient, which reads it transposed) and so
    compute the gathers more than once; `warp.materialized` makes it one
    fusion (the tiny model's Keras training step, XLA's optimized HLO)."""
    from models.cifar10 import build_tiny_model

    namespace = {}
    exec(COUNT_GATHER_FUSIONS, namespace)

    def fusions():
        model = build_tiny_model([gpuaug.RandomTransform(**LAYER, seed=0)], input_shape=(16, 16, 3))
        model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", jit_compile=True)
        step = tf.function(lambda x, y: model.train_step((x, y)), jit_compile=True)
        hlo = step.experimental_get_compiler_ir(tf.zeros((8, 16, 16, 3), tf.uint8), tf.zeros(8, tf.int32))(
            stage="optimized_hlo")
        return namespace["fusions_that_gather"](hlo)

    assert fusions() == 1
    monkeypatch.setattr(warp, "materialized", lambda values: values)
    assert fusions() > 1  # the control: without it, XLA duplicates the warp


@pytest.mark.slow
def test_the_warp_is_computed_once_in_a_jax_training_step():
    from conftest import run_python

    result = run_python(COUNT_GATHER_FUSIONS + r'''
import jax, numpy as np, gpuaug
from gpuaug import warp
from models.cifar10 import build_tiny_model

def count(materialize):
    warp.materialized = original if materialize else (lambda values: values)
    layer = gpuaug.RandomTransform(rotation_range=15, zoom_range=0.1, seed=0)
    model = build_tiny_model([layer], input_shape=(16, 16, 3))
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", jit_compile=True)
    x, y = np.zeros((8, 16, 16, 3), "uint8"), np.zeros(8, "int32")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    state = tuple([v.value for v in group] for group in (model.trainable_variables, model.non_trainable_variables,
                                                       model.optimizer.variables, model.metrics_variables))
    return fusions_that_gather(jax.jit(model.train_step).lower(state, (x, y)).compile().as_text())

original = warp.materialized
print("materialized", count(True), "fused", count(False))
''', backend="jax")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = result.stdout.split()
    assert counts[1] == "1" and int(counts[3]) > 1, result.stdout  # and the control shows the duplication
