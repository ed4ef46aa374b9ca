"""Drawing per-sample transformation parameters (the reference's distributions).

`sample_transformation` is the batched, on-device counterpart of
`ImageDataGenerator.get_random_transform`: it returns the same keys in the same
units, one value per image, from one `keras.random.uniform` call.
"""

from keras import ops
from keras import random as keras_random

# Columns of the single uniform draw.
_THETA, _TX, _TX_SIGN, _TY, _TY_SIGN, _SHEAR, _ZX, _ZY = range(8)
_FLIP_H, _FLIP_V, _CHANNEL_SHIFT, _BRIGHTNESS = range(8, 12)
_NUM_DRAWS = 12

TRANSFORMATION_KEYS = (
    "theta",
    "tx",
    "ty",
    "shear",
    "zx",
    "zy",
    "flip_horizontal",
    "flip_vertical",
    "channel_shift_intensity",
    "brightness",
)


def _uniform(u, lower, upper):
    return lower + (upper - lower) * u


def _shift(spec, u_value, u_sign, size):
    """One shift offset per image, in pixels (see `config.ShiftSpec`)."""
    if spec.kind == "none":
        return ops.zeros_like(u_value)
    if spec.kind == "uniform":
        (limit,) = spec.values
        offset = _uniform(u_value, -limit, limit)
    else:
        count = spec.values[0] if spec.kind == "integers" else len(spec.values)
        index = ops.minimum(ops.floor(u_value * count), count - 1)
        if spec.kind == "integers":
            magnitude = index
        else:
            table = ops.convert_to_tensor(spec.values, dtype="float32")
            magnitude = ops.take(table, ops.cast(index, "int32"))
        offset = ops.where(u_sign < 0.5, -magnitude, magnitude)
    if spec.scale_by_size:
        offset = offset * ops.cast(size, "float32")
    return offset


def sample_transformation(config, batch_size, height, width, seed=None):
    """Draws one transformation per image.

    Args:
        config: an `AugmentationConfig`.
        batch_size, height, width: ints or scalar tensors.
        seed: a `keras.random.SeedGenerator`, an int, or None.

    Returns:
        A dict with the keys of `get_random_transform`, each a float32 tensor of
        shape `(batch_size,)`: `theta` and `shear` in degrees, `tx` (drawn from
        `height_shift_range`, scaled by the height) and `ty` (from
        `width_shift_range`, scaled by the width) in pixels, `zx`, `zy` zoom
        factors, `flip_horizontal`/`flip_vertical` as booleans. The colour keys
        are None when their range is unset, as in the reference.
    """
    u = keras_random.uniform((batch_size, _NUM_DRAWS), seed=seed)
    column = lambda i: u[:, i]  # noqa: E731
    zeros = ops.zeros_like(column(0))
    rotation, shear = config.rotation_range, config.shear_range
    lower, upper = config.zoom_range
    zoom = (lower, upper) != (1.0, 1.0)
    transformation = {
        "theta": _uniform(column(_THETA), -rotation, rotation) if rotation else zeros,
        "tx": _shift(config.height_shift, column(_TX), column(_TX_SIGN), height),
        "ty": _shift(config.width_shift, column(_TY), column(_TY_SIGN), width),
        "shear": _uniform(column(_SHEAR), -shear, shear) if shear else zeros,
        "zx": _uniform(column(_ZX), lower, upper) if zoom else zeros + 1.0,
        "zy": _uniform(column(_ZY), lower, upper) if zoom else zeros + 1.0,
        "flip_horizontal": ops.logical_and(
            column(_FLIP_H) < 0.5, config.horizontal_flip
        ),
        "flip_vertical": ops.logical_and(column(_FLIP_V) < 0.5, config.vertical_flip),
        "channel_shift_intensity": None,
        "brightness": None,
    }
    if config.channel_shift_range:
        limit = config.channel_shift_range
        transformation["channel_shift_intensity"] = _uniform(
            column(_CHANNEL_SHIFT), -limit, limit
        )
    if config.brightness_range is not None:
        transformation["brightness"] = _uniform(
            column(_BRIGHTNESS), *config.brightness_range
        )
    return transformation
