"""RandomTransform as a Keras layer: modes, seeding, shapes, options, errors,
serialization and compiled training (TensorFlow backend, the default)."""

import subprocess
import sys

import keras
import numpy as np
import pytest
from keras.src.legacy.preprocessing.image import ImageDataGenerator

import gpuaug
from conftest import REPO

AUGMENT = dict(
    rotation_range=20, width_shift_range=0.1, height_shift_range=0.1,
    shear_range=10, zoom_range=0.1, horizontal_flip=True,
    channel_shift_range=10.0, brightness_range=[0.8, 1.2],
)


def images(n=4, h=12, w=16, c=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, h, w, c)).astype("float32")


def seed_state(layer):
    return np.asarray(layer.seed_generator.state.value).copy()


# Training and inference ---------------------------------------------------

@pytest.mark.parametrize("training", [False, None])
def test_inference_is_identity_without_random_draws(training):
    layer = gpuaug.RandomTransform(**AUGMENT, seed=1)
    x = images()
    before = seed_state(layer)
    out = layer(x, training=training)
    np.testing.assert_array_equal(np.asarray(out), x)
    np.testing.assert_array_equal(seed_state(layer), before)


def test_training_augments_and_advances_the_seed():
    layer = gpuaug.RandomTransform(**AUGMENT, seed=1)
    x = images()
    before = seed_state(layer)
    out = np.asarray(layer(x, training=True))
    assert out.shape == x.shape and not np.allclose(out, x)
    assert not np.array_equal(seed_state(layer), before)


def test_model_predict_is_identity_and_fit_augments():
    """Inside `fit` the layer augments (the loss of reproducing the input is
    > 0); in `predict` and `evaluate` it is an identity (loss exactly 0)."""
    inputs = keras.Input((12, 16, 3))
    augmented = gpuaug.RandomTransform(**AUGMENT, seed=2)(inputs)
    # A frozen per-pixel identity, so that fit has a variable to update.
    outputs = keras.layers.Dense(3, use_bias=False, kernel_initializer="identity")(augmented)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    x = images(8)
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), x)
    history = model.fit(x, x, batch_size=8, epochs=2, verbose=0)
    assert all(loss > 100.0 for loss in history.history["loss"])  # pixels moved
    assert history.history["loss"][0] != history.history["loss"][1]  # new draws each step
    assert model.evaluate(x, x, verbose=0) == 0.0


def test_parameters_are_drawn_in_float32_whatever_floatx():
    keras.config.set_floatx("float16")
    try:
        layer = gpuaug.RandomTransform(rotation_range=30, width_shift_range=0.2, seed=0)
        transformation = layer.get_random_transformation(images(64))
    finally:
        keras.config.set_floatx("float32")
    for key in ("theta", "ty"):
        values = np.asarray(transformation[key])
        assert values.dtype == np.float32
        # float16 keeps 11 significant bits: float32 draws are not on its grid.
        assert not np.array_equal(values, values.astype(np.float16).astype(np.float32))


def test_mixed_precision_rounds_only_the_output():
    """Under mixed_float16 the output has the policy's float16 compute dtype,
    but the matrices, coordinates and blend stay float32: on 0..255 data the
    pixels differ from the float32 layer's by at most float16's rounding
    (half a step of 0.125 near 255), not by a coordinate error."""
    data = images(8, 48, 48)
    kwargs = dict(rotation_range=25, width_shift_range=0.2, zoom_range=0.2, shear_range=10)
    transformation = gpuaug.RandomTransform(**kwargs, seed=0).get_random_transformation(data)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed = gpuaug.RandomTransform(**kwargs).transform_images(data, transformation)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    exact = np.asarray(gpuaug.RandomTransform(**kwargs).transform_images(data, transformation))
    assert keras.backend.standardize_dtype(mixed.dtype) == "float16"
    difference = np.abs(np.asarray(mixed, dtype="float32") - exact)
    assert difference.max() <= 0.0625 and difference.max() > 0


# Seeding ------------------------------------------------------------------

def test_seeded_layers_are_reproducible_and_seeds_differ():
    x = images(16)
    a, b = gpuaug.RandomTransform(**AUGMENT, seed=5), gpuaug.RandomTransform(**AUGMENT, seed=5)
    c = gpuaug.RandomTransform(**AUGMENT, seed=6)
    first_a, first_b = np.asarray(a(x, training=True)), np.asarray(b(x, training=True))
    np.testing.assert_array_equal(first_a, first_b)
    assert not np.allclose(first_a, np.asarray(c(x, training=True)))
    # Successive calls draw new parameters.
    assert not np.allclose(first_a, np.asarray(a(x, training=True)))


def test_each_image_gets_its_own_parameters():
    layer = gpuaug.RandomTransform(rotation_range=30, seed=0)
    theta = np.asarray(layer.get_random_transformation(images(64))["theta"])
    assert theta.shape == (64,) and len(np.unique(theta)) == 64
    out = np.asarray(layer(np.repeat(images(1), 8, axis=0), training=True))
    assert len({out[i].tobytes() for i in range(8)}) == 8


# Shapes and dtypes -------------------------------------------------------

def test_single_image_matches_batch_of_one():
    layer = gpuaug.RandomTransform(**AUGMENT, seed=3)
    x = images(1)
    t = layer.get_random_transformation(x)
    single = np.asarray(layer.transform_images(x[0], t))
    batch = np.asarray(layer.transform_images(x, t))
    assert single.shape == x.shape[1:]
    np.testing.assert_array_equal(single, batch[0])


def test_uint8_input_gives_float32_with_the_same_pixels():
    layer = gpuaug.RandomTransform(**AUGMENT, seed=3)
    x8 = images().round().astype("uint8")
    t = layer.get_random_transformation(x8)
    out8 = layer.transform_images(x8, t)
    out32 = layer.transform_images(x8.astype("float32"), t)
    assert keras.backend.standardize_dtype(out8.dtype) == "float32"
    np.testing.assert_array_equal(np.asarray(out8), np.asarray(out32))
    inference = layer(x8, training=False)
    assert keras.backend.standardize_dtype(inference.dtype) == "float32"


def test_channels_first_equals_transposed_channels_last():
    x = images(4, 10, 14, 3)
    last = gpuaug.RandomTransform(**AUGMENT, seed=4, data_format="channels_last")
    first = gpuaug.RandomTransform(**AUGMENT, seed=4, data_format="channels_first")
    t = last.get_random_transformation(x)
    expected = np.asarray(last.transform_images(x, t)).transpose(0, 3, 1, 2)
    got = np.asarray(first.transform_images(x.transpose(0, 3, 1, 2), t))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("channels", [1, 2, 5])
def test_any_channel_count_without_brightness(channels):
    x = images(2, 9, 7, channels)
    out = np.asarray(gpuaug.RandomTransform(rotation_range=30, seed=0)(x, training=True))
    assert out.shape == x.shape


def test_one_by_one_and_empty_images():
    layer = gpuaug.RandomTransform(**AUGMENT, fill_mode="wrap", seed=0)
    tiny = np.full((3, 1, 1, 3), 7.0, "float32")
    assert np.asarray(layer(tiny, training=True)).shape == tiny.shape
    empty = np.zeros((2, 0, 5, 3), "float32")
    assert np.asarray(layer(empty, training=True)).shape == empty.shape


# The reference's quirks and the options that fix them -------------------

def one_pixel(h, w, row, col):
    x = np.zeros((h, w, 1), "float32")
    x[row, col] = 255.0
    return x


def where_is(image):
    return [tuple(p[:2]) for p in np.argwhere(np.asarray(image) > 127)]


def test_shift_axes_reference_reproduces_the_swap_and_named_fixes_it():
    x = one_pixel(8, 10, 4, 5)
    reference = ImageDataGenerator().apply_transform(x, {"tx": 2})
    assert where_is(reference) == [(4, 3)]  # tx moved the COLUMN
    default = gpuaug.RandomTransform().transform_images(x, {"tx": 2.0})
    named = gpuaug.RandomTransform(shift_axes="named").transform_images(x, {"tx": 2.0})
    assert where_is(default) == [(4, 3)]
    assert where_is(named) == [(2, 5)]  # tx (height) moves rows


def test_named_shift_axes_draws_from_the_named_range():
    layer = gpuaug.RandomTransform(height_shift_range=[3], shift_axes="named", seed=0)
    x = np.repeat(one_pixel(8, 10, 4, 5)[None], 8, axis=0)
    out = np.asarray(layer(x, training=True))
    assert {where_is(o)[0] for o in out} == {(1, 5), (7, 5)}  # only rows move


def test_center_reference_is_transposed_and_image_is_true():
    x = one_pixel(8, 12, 2, 3)
    reference = ImageDataGenerator().apply_transform(x, {"theta": 180})
    default = gpuaug.RandomTransform().transform_images(x, {"theta": 180.0})
    np.testing.assert_allclose(np.asarray(default), reference, atol=1e-3)
    assert where_is(reference) == []  # rotated about (5.5, 3.5): off the image
    fixed = gpuaug.RandomTransform(center="image").transform_images(x, {"theta": 180.0})
    assert where_is(fixed) == [(5, 8)]


# Bad input ------------------------------------------------------------------

BAD_ARGUMENTS = [
    (dict(zoom_range=-1), "zoom_range"),
    (dict(zoom_range=0.0 + 1), "zoom_range"),
    (dict(zoom_range=[0, 1]), "zoom_range"),
    (dict(zoom_range=[1.2, 0.8]), "zoom_range"),
    (dict(zoom_range="big"), "zoom_range"),
    (dict(fill_mode="foo"), "fill_mode"),
    (dict(interpolation_order=3), "interpolation_order"),
    (dict(interpolation_order=True), "interpolation_order"),
    (dict(brightness_range=0.5), "brightness_range"),
    (dict(brightness_range=[0.5, 1.0, 1.5]), "brightness_range"),
    (dict(brightness_range=[1.5, 0.5]), "brightness_range"),
    (dict(rotation_range=-10), "rotation_range"),
    (dict(rotation_range="10"), "rotation_range"),
    (dict(shear_range=float("nan")), "shear_range"),
    (dict(width_shift_range=-0.1), "width_shift_range"),
    (dict(height_shift_range=[]), "height_shift_range"),
    (dict(height_shift_range=[0.1, "a"]), "height_shift_range"),
    (dict(channel_shift_range=-1), "channel_shift_range"),
    (dict(horizontal_flip="yes"), "horizontal_flip"),
    (dict(cval=None), "cval"),
    (dict(data_format="NHWC"), "data_format"),
    (dict(shift_axes="xy"), "shift_axes"),
    (dict(center="middle"), "center"),
    (dict(seed=1.5), "seed"),
]


@pytest.mark.parametrize("kwargs, name", BAD_ARGUMENTS, ids=lambda v: str(v))
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}` must be"):
        gpuaug.RandomTransform(**kwargs)


def test_error_lists_accepted_values():
    with pytest.raises(ValueError) as info:
        gpuaug.RandomTransform(fill_mode="foo")
    assert all(m in str(info.value) for m in ("constant", "nearest", "reflect", "wrap", "foo"))


@pytest.mark.parametrize("shape", [(8, 8), (2, 2, 8, 8, 3), (5,)])
def test_wrong_rank_raises(shape):
    layer = gpuaug.RandomTransform(rotation_range=10)
    with pytest.raises(ValueError, match="rank 4"):
        layer(np.zeros(shape, "float32"), training=True)


def test_brightness_needs_one_three_or_four_channels():
    layer = gpuaug.RandomTransform(brightness_range=[0.5, 1.5])
    with pytest.raises(ValueError, match="1, 3 or 4 channels"):
        layer(images(2, 8, 8, 2), training=True)


# Serialization ---------------------------------------------------------------

def build_model(**layer_kwargs):
    inputs = keras.Input((12, 16, 3))
    x = gpuaug.RandomTransform(**layer_kwargs, name="augment")(inputs)
    x = keras.layers.Rescaling(1 / 255.0)(x)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def test_config_round_trip_keeps_every_argument():
    kwargs = dict(
        AUGMENT, width_shift_range=[1, 2], height_shift_range=3, zoom_range=[0.9, 1.2],
        fill_mode="wrap", cval=3.0, vertical_flip=True, interpolation_order=0,
        data_format="channels_first", shift_axes="named", center="image", seed=9,
    )
    layer = gpuaug.RandomTransform(**kwargs)
    clone = gpuaug.RandomTransform.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    for key, value in kwargs.items():
        assert clone.get_config()[key] == value


@pytest.mark.slow
def test_model_saves_and_loads_without_custom_objects(tmp_path):
    model = build_model(**AUGMENT, seed=4)
    path = tmp_path / "m.keras"
    model.save(path)
    x = images(6)
    expected = model.predict(x, verbose=0)
    # A fresh interpreter: only `import gpuaug` registers the layer.
    script = (
        "import sys, numpy as np, keras, gpuaug\n"
        f"m = keras.models.load_model({str(path)!r})\n"
        f"x = np.random.default_rng(0).uniform(0, 255, (6, 12, 16, 3)).astype('float32')\n"
        "np.save(sys.argv[1], m.predict(x, verbose=0))\n"
        "print(type(m.get_layer('augment')).__name__, m.get_layer('augment').get_config()['rotation_range'])\n"
    )
    out = tmp_path / "pred.npy"
    result = subprocess.run(
        [sys.executable, "-c", script, str(out)], cwd=REPO, capture_output=True,
        text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "RandomTransform 20" in result.stdout
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-6, atol=1e-6)


# Compiled training -----------------------------------------------------------

def test_trains_with_jit_compile():
    model = build_model(**AUGMENT, fill_mode="reflect", seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", jit_compile=True)
    assert model.jit_compile is True
    x, y = images(32), np.arange(32) % 3
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert model.jit_compile is True  # not silently turned off
    assert np.all(np.isfinite(history.history["loss"]))
