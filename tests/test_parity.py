"""Pixel parity with the real reference, `ImageDataGenerator.apply_transform`.

Each test draws parameters with the layer, applies them with the layer and,
image by image, with the reference (keras.src.legacy.preprocessing.image),
then compares. Tolerances, on 0..255 data:
- a value "mismatches" when |ours - reference| > TOLERANCE (1e-3);
- at most EDGE_FRACTION (0.1%) of values may mismatch, for both orders. These
  are sample points within float32 rounding of a pixel edge (order 0's
  rounding, "constant"'s border, "wrap"'s seam), where the float32 layer and
  the float64 reference may pick different pixels.
"""

import numpy as np
import pytest
from keras.src.legacy.preprocessing.image import ImageDataGenerator

import gpuaug
from gpuaug.reference import reference_apply

TOLERANCE = 1e-3
EDGE_FRACTION = 1e-3
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


def assert_parity(ours, reference):
    assert ours.shape == reference.shape
    diff = np.abs(ours - reference)
    mismatched = np.mean(diff > TOLERANCE)
    assert mismatched <= EDGE_FRACTION, (
        f"{mismatched:.3%} of values differ by more than {TOLERANCE}; "
        f"max |diff| = {diff.max()}"
    )


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
    assert_parity(ours, reference)


def _with_channels(images, channels):
    if channels == 1:
        return images.mean(axis=-1, keepdims=True)
    if channels == 4:
        alpha = images[..., :1][:, ::-1]  # a different, real-valued plane
        return np.concatenate([images, alpha], axis=-1)
    return images


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("size", [(24, 32), (32, 20)])
@pytest.mark.parametrize("fill_mode", ["constant", "wrap"])
def test_formats_channels_and_non_square_images(
    cifar_test_images, data_format, channels, size, fill_mode
):
    images = _with_channels(cifar_test_images[:12, : size[0], : size[1]], channels)
    if data_format == "channels_first":
        images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    ours, reference, _ = compare(
        images,
        data_format=data_format,
        fill_mode=fill_mode,
        cval=200.0,
        **COLOUR["everything"],
    )
    assert_changed(ours, images)
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
    ours, reference, _ = compare(images, **COLOUR["everything"])
    diff = np.abs(ours - reference)
    # Brightness quantizes to 1/255 of each image's range; allow one level
    # at float32 rounding of a level edge, on at most 0.1% of values.
    assert np.mean(diff > 1e-4) <= EDGE_FRACTION
