"""Drawing per-sample transformation parameters (the reference's distributions).

`sample_transformation` is the batched, on-device counterpart of
`ImageDataGenerator.get_random_transform`: it returns the same keys in the same
units, one value per image, from one `keras.random.uniform` call.
"""

from keras import ops
from keras import random as keras_random

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


def _columns(config):
    """Names of the uniform draws this configuration needs, in a fixed order.

    Only these are drawn: random number generation is a noticeable part of
    the layer's cost on some backends (TensorFlow's XLA on CPU)."""
    needed = []
    if config.rotation_range:
        needed.append("theta")
    for key, spec in (("tx", config.height_shift), ("ty", config.width_shift)):
        if spec.kind != "none":
            needed.append(key)
        if spec.kind in ("integers", "choice"):
            needed.append(key + "_sign")
    if config.shear_range:
        needed.append("shear")
    if config.zoom_range != (1.0, 1.0):
        needed += ["zx", "zy"]
    if config.horizontal_flip:
        needed.append("flip_horizontal")
    if config.vertical_flip:
        needed.append("flip_vertical")
    if config.channel_shift_range:
        needed.append("channel_shift_intensity")
    if config.brightness_range is not None:
        needed.append("brightness")
    # Beyond the reference: drawn after its parameters, so they change no draw of those.
    if config.perspective_range:
        needed += [f"perspective_{k}" for k in range(8)]
    for index, key in enumerate(("distortion_k1", "distortion_k2")):
        if config.distortion_range[index]:
            needed.append(key)
    return needed


# Inward directions (x, y) of the corners top-left, top-right, bottom-right, bottom-left.
CORNER_INWARD = ((1.0, 1.0), (-1.0, 1.0), (-1.0, -1.0), (1.0, -1.0))


def _perspective(config, column, height, width):
    """(N, 4, 2) corner displacements in pixels: each corner moves inward by
    up to d (W - 1) / 2 along x and d (H - 1) / 2 along y, independently and
    uniformly (d = `perspective_range`)."""
    limits = (config.perspective_range * (ops.cast(width, "float32") - 1.0) / 2.0,
              config.perspective_range * (ops.cast(height, "float32") - 1.0) / 2.0)
    corners = []
    for corner, inward in enumerate(CORNER_INWARD):
        corners.append(ops.stack([column(f"perspective_{2 * corner + axis}") * inward[axis] * limits[axis]
                                  for axis in (0, 1)], axis=-1))
    return ops.stack(corners, axis=-2)


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
        are None when their range is unset, as in the reference. Beyond the
        reference, only when configured: `perspective` (N, 4, 2), the
        displacement (dx, dy) in pixels (x along the columns, y down the
        rows) of the corners top-left, top-right, bottom-right, bottom-left
        (at the corner pixels' centres), and `distortion_k1`,
        `distortion_k2` (N,), the radial lens coefficients. All the uniform
        numbers come from one `keras.random.uniform` call.
    """
    names = _columns(config)
    zeros = ops.zeros((batch_size,), "float32")
    if names:
        # float32 whatever `keras.config.floatx()` says: float16 draws would
        # quantize angles and shifts.
        u = keras_random.uniform((batch_size, len(names)), dtype="float32", seed=seed)
    column = lambda name: u[:, names.index(name)] if name in names else zeros  # noqa: E731
    rotation, shear = config.rotation_range, config.shear_range
    lower, upper = config.zoom_range
    transformation = {
        "theta": _uniform(column("theta"), -rotation, rotation),
        "tx": _shift(config.height_shift, column("tx"), column("tx_sign"), height),
        "ty": _shift(config.width_shift, column("ty"), column("ty_sign"), width),
        "shear": _uniform(column("shear"), -shear, shear),
        "zx": _uniform(column("zx"), lower, upper) if "zx" in names else zeros + 1.0,
        "zy": _uniform(column("zy"), lower, upper) if "zy" in names else zeros + 1.0,
        "flip_horizontal": ops.logical_and(column("flip_horizontal") < 0.5, config.horizontal_flip),
        "flip_vertical": ops.logical_and(column("flip_vertical") < 0.5, config.vertical_flip),
        "channel_shift_intensity": None,
        "brightness": None,
    }
    if "channel_shift_intensity" in names:
        limit = config.channel_shift_range
        transformation["channel_shift_intensity"] = _uniform(
            column("channel_shift_intensity"), -limit, limit
        )
    if "brightness" in names:
        transformation["brightness"] = _uniform(column("brightness"), *config.brightness_range)
    if config.perspective_range:
        transformation["perspective"] = _perspective(config, column, height, width)
    for index, key in enumerate(("distortion_k1", "distortion_k2")):
        if key in names:
            limit = config.distortion_range[index]
            transformation[key] = _uniform(column(key), -limit, limit)
    return transformation
