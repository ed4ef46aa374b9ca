"""Pixel parity with the real reference, `ImageDataGenerator.apply_transform`.

Each test draws parameters with the layer, applies them with the layer and,
image by image, with the reference (keras.src.legacy.preprocessing.image),
then compares. On 0..255 data a value "mismatches" when |ours - reference| >
TOLERANCE (1e-3: float32 against the reference's float64). The bounds are the
measured results (`python -m benchmarks.parity`, benchmarks/results/parity.json):
- geometry (warp, flips) and channel shift: no value mismatches, in every fill
  mode and both orders;
- brightness goes through 8-bit levels, as the reference's PIL path does: a
  value may land one level away when the warped value is within float32
  rounding of a level's edge. Allowed: at most MAX_LEVEL_FLIPS values per
  comparison, each exactly one level off; every other value within TOLERANCE.
And a 1-D sweep checks the per-axis sampling rule against scipy itself at
dense positions, half-pixel ties included, with no difference at all.
"""

import numpy as np
import pytest
from keras.src.legacy.preprocessing.image import ImageDataGenerator

import gpuaug
from gpuaug.reference import reference_apply

TOLERANCE = 1e-3
MAX_LEVEL_FLIPS = 2
FILL_MODES = ["constant", "nearest", "reflect", "wrap"]
ORDERS = [0, 1]
ALL_GEOMETRY = dict(
    rotation_range=40,
    width_shift_range=0.2,
    height_shift_range=0.15,
    shear_range=25,
    zoom_range=[0.6, 1.3],
    horizontal_flip=True,
    vertical_flip=True,
)
GEOMETRY = {
    "rotation": dict(rotation_range=60),
    "width_shift": dict(width_shift_range=0.3),
    "height_shift": dict(height_shift_range=0.3),
    "shear": dict(shear_range=35),
    "zoom": dict(zoom_range=[0.5, 1.5]),
    "horizontal_flip": dict(horizontal_flip=True),
    "vertical_flip": dict(vertical_flip=True),
    "all": ALL_GEOMETRY,
}
COLOUR = {
    "channel_shift": dict(channel_shift_range=80.0),
    "brightness": dict(brightness_range=[0.2, 1.8]),
    "everything": dict(ALL_GEOMETRY, channel_shift_range=50.0, brightness_range=[0.5, 1.5]),
}


def compare(images, data_format="channels_last", seed=0, **kwargs):
    """Returns (ours, reference, transformation) for one layer draw."""
    layer = gpuaug.RandomTransform(data_format=data_format, seed=seed, **kwargs)
    transformation = layer.get_random_transformation(images)
    ours = np.asarray(layer.transform_images(images, transformation))
    if data_format == "channels_first" and kwargs.get("brightness_range"):
        # The reference's brightness ignores `data_format` (PIL sees the
        # array as channels-last), so it cannot run channels-first: compare
        # with the reference run channels-last on the same pixels instead.
        generator = ImageDataGenerator(data_format="channels_last", **kwargs)
        reference = reference_apply(
            generator, images.transpose(0, 2, 3, 1), transformation
        ).transpose(0, 3, 1, 2)
    else:
        generator = ImageDataGenerator(data_format=data_format, **kwargs)
        reference = reference_apply(generator, images, transformation)
    return ours, reference, transformation


def assert_parity(ours, reference, level=None):
    """No value off by more than TOLERANCE; with `level` (brightness's 8-bit
    step, per image or scalar) at most MAX_LEVEL_FLIPS values may be off by
    exactly one level."""
    assert ours.shape == reference.shape
    diff = np.abs(ours - reference)
    off = diff > TOLERANCE
    if level is None:
        assert not off.any(), (
            f"{off.sum()} of {diff.size} values differ by more than {TOLERANCE}; "
            f"max |diff| = {diff.max()} at {np.argwhere(off)[:5].tolist()}"
        )
        return
    level = np.broadcast_to(np.reshape(level, (-1,) + (1,) * (ours.ndim - 1)), ours.shape)
    one_level = np.abs(diff - level) <= TOLERANCE * np.maximum(level, 1.0)
    assert np.all(one_level[off]), f"values off by other than one level: {diff[off & ~one_level][:5]}"
    assert off.sum() <= MAX_LEVEL_FLIPS, f"{off.sum()} values one level off (allowed {MAX_LEVEL_FLIPS})"


def assert_changed(ours, images):
    """Guards against a vacuous pass: the transformation did something."""
    assert np.mean(np.abs(ours - images) > 1.0) > 0.01


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("fill_mode", FILL_MODES)
@pytest.mark.parametrize("name", list(GEOMETRY))
def test_geometry_matches_reference(cifar_test_images, name, fill_mode, order):
    images = cifar_test_images[:16]
    ours, reference, _ = compare(
        images, fill_mode=fill_mode, interpolation_order=order, cval=123.0,
        **GEOMETRY[name],
    )
    assert_changed(ours, images)
    assert_parity(ours, reference)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("name", list(COLOUR))
def test_colour_matches_reference(cifar_test_images, name, order):
    images = cifar_test_images[16:32]
    ours, reference, _ = compare(
        images, interpolation_order=order, fill_mode="reflect", **COLOUR[name]
    )
    assert_changed(ours, images)
    assert_parity(ours, reference, level=1.0 if "brightness_range" in COLOUR[name] else None)


def _with_channels(images, channels):
    if channels == 1:
        return images.mean(axis=-1, keepdims=True)
    if channels == 4:
        alpha = images[..., :1][:, ::-1]  # a different, real-valued plane
        return np.concatenate([images, alpha], axis=-1)
    return images


@pytest.mark.parametrize("colour", ["channel_shift", "everything"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("size", [(24, 32), (32, 20)])
@pytest.mark.parametrize("fill_mode", ["constant", "wrap"])
def test_formats_channels_and_non_square_images(
    cifar_test_images, data_format, channels, size, fill_mode, colour
):
    """"channel_shift" (geometry and channel shift) runs the reference itself
    in `data_format`, channels-first included; "everything" adds brightness,
    which the reference only does channels-last (see `compare`)."""
    images = _with_channels(cifar_test_images[:12, : size[0], : size[1]], channels)
    if data_format == "channels_first":
        images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    kwargs = COLOUR["everything"] if colour == "everything" else dict(ALL_GEOMETRY, channel_shift_range=50.0)
    ours, reference, _ = compare(
        images, data_format=data_format, fill_mode=fill_mode, cval=200.0, **kwargs
    )
    assert_changed(ours, images)
    assert_parity(ours, reference, level=1.0 if colour == "everything" else None)


def test_channels_first_runs_the_reference_channels_first(cifar_test_images, monkeypatch):
    """Guards the test above: without brightness the reference really runs
    with data_format="channels_first" on (N, C, H, W) images."""
    seen = []
    original = ImageDataGenerator.apply_transform

    def spy(self, x, params):
        seen.append((self.data_format, x.shape))
        return original(self, x, params)

    monkeypatch.setattr(ImageDataGenerator, "apply_transform", spy)
    images = np.ascontiguousarray(cifar_test_images[:2, :24].transpose(0, 3, 1, 2))
    ours, reference, _ = compare(images, data_format="channels_first", rotation_range=30, width_shift_range=0.2)
    assert seen == [("channels_first", (3, 24, 32))] * 2
    assert_parity(ours, reference)


def test_cval_is_used_outside_the_image(cifar_test_images):
    images = cifar_test_images[:8]
    ours, reference, _ = compare(
        images, fill_mode="constant", cval=-17.5, zoom_range=[1.6, 1.8]
    )
    assert np.mean(ours == -17.5) > 0.1  # zooming out exposes the fill value
    assert_parity(ours, reference)


def test_reference_drawn_parameters_replay_exactly(cifar_test_images):
    """Parameters drawn by the reference itself (python scalars, None colour
    keys) give the reference's pixels through `transform_images`."""
    kwargs = dict(ALL_GEOMETRY, channel_shift_range=30.0, fill_mode="nearest")
    generator = ImageDataGenerator(**kwargs)
    layer = gpuaug.RandomTransform(**kwargs)
    images = cifar_test_images[:10]
    np.random.seed(0)
    draws = [generator.get_random_transform(images[0].shape) for _ in images]
    for image, params in zip(images, draws):
        ours = np.asarray(layer.transform_images(image, params))
        assert_parity(ours[None], generator.apply_transform(image, params)[None])


def test_float_inputs_outside_0_255(cifar_test_images):
    """Standardized-looking data (negative values) goes through the same path,
    including brightness's rescale-to-8-bit branch."""
    images = cifar_test_images[:8] / 64.0 - 2.0
    ours, reference, transformation = compare(images, **COLOUR["everything"])
    # Here brightness's level is 1/255 of each image's range before it.
    before = gpuaug.RandomTransform(**COLOUR["everything"]).transform_images(
        images, dict(transformation, brightness=None))
    before = np.asarray(before).reshape(len(images), -1)
    assert_parity(ours, reference, level=(before.max(axis=1) - before.min(axis=1)) / 255.0)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("fill_mode", FILL_MODES)
@pytest.mark.parametrize("axis", ["columns", "rows"])
def test_sampling_rule_sweep_against_the_reference(fill_mode, order, axis):
    """Every sample position from -2n - 1 to 3n in steps of 1/8 (half-pixel
    ties included) on axes of 1 to 8 pixels: the layer gives exactly the
    reference's values. A shift `tx` moves columns (the reference's axis
    swap), `ty` rows; positions are dyadic, so both compute them exactly."""
    key = "tx" if axis == "columns" else "ty"
    for n in range(1, 9):
        line = np.arange(1, n + 1, dtype="float32") * 10.0 + 3.0  # distinct values
        image = line.reshape((1, n, 1) if axis == "columns" else (n, 1, 1))
        shifts = np.arange(-2 * n - 1, 2 * n + 1, 0.125)
        kwargs = dict(fill_mode=fill_mode, interpolation_order=order, cval=-5.0)
        layer = gpuaug.RandomTransform(**kwargs)
        ours = np.asarray(layer.transform_images(
            np.repeat(image[None], len(shifts), axis=0), {key: shifts.astype("float32")}))
        generator = ImageDataGenerator(**kwargs)
        reference = np.stack([generator.apply_transform(image, {key: s}) for s in shifts])
        np.testing.assert_array_equal(ours, reference, err_msg=f"n={n}")


VALUES = {"theta": [25.0, -40.0, 0.0], "tx": [2.5, -1.0, 0.0], "ty": [-3.0, 1.5, 0.0],
          "shear": [20.0, -10.0, 0.0], "zx": [0.7, 1.3, 1.0], "zy": [1.2, 0.8, 1.0],
          "flip_horizontal": [True, False, True], "flip_vertical": [False, True, True],
          "channel_shift_intensity": [30.0, -20.0, 0.0], "brightness": [0.6, 1.4, 1.0]}


@pytest.mark.parametrize("scalars", [False, True], ids=["alone", "with_scalar_theta"])
@pytest.mark.parametrize("key", list(VALUES))
def test_every_key_alone_per_image(cifar_test_images, key, scalars):
    """A dict whose only per-image values are `key` (plus a scalar `theta`)
    is applied image by image as the reference applies it."""
    images = cifar_test_images[40:43]
    transformation = {key: np.asarray(VALUES[key])}
    if scalars and key != "theta":
        transformation["theta"] = 10.0
    ours = np.asarray(gpuaug.RandomTransform().transform_images(images, transformation))
    generator = ImageDataGenerator()
    reference = np.stack([
        generator.apply_transform(image, {k: (v[i].item() if np.ndim(v) else v) for k, v in transformation.items()})
        for i, image in enumerate(images)])
    assert_parity(ours, reference, level=1.0 if key == "brightness" else None)
    assert not np.allclose(ours[0], ours[1])  # really per image
