"""Drawing per-sample transformation parameters (the reference's distributions).

`sample_transformation` is the batched, on-device counterpart of
`ImageDataGenerator.get_random_transform`: it returns the same keys in the same
units, one value per image. The reference's parameters come from one
`keras.random.uniform` call; perspective and lens (beyond the reference) from
streams of their own, so that turning them on changes no other draw.
"""

import keras

from gpuaug import backend, config as config_lib
from gpuaug.backend import ops, random

# The seed of extra stream k (1: perspective, 2: lens) is the call's seed
# (the SeedGenerator's state [seed, call], as `keras.random.uniform` would
# draw it) plus k * STREAM_OFFSET on both of its elements. Both: on JAX and
# TensorFlow a stream never meets this layer's own reference stream (their
# first elements differ) and meets another layer's only if that layer's seed
# is k * 2**29 away AND it is k * 2**29 (over 5 * 10**8) calls ahead. JAX's
# uint32 state wraps; TensorFlow takes its int64 state modulo 2**31 - 2, far
# from k * 2**29; PyTorch seeds with the sum of the two elements, so there a
# stream meets the layer's reference stream k * 2**30 calls later.
STREAM_OFFSET = 2**29
PERSPECTIVE_COLUMNS = tuple(f"perspective_{k}" for k in range(8))
# Both coefficients are drawn when the lens is on, so that setting k2 changes no k1.
DISTORTION_COLUMNS = ("distortion_k1", "distortion_k2")


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
    """Names of the reference's uniform draws this configuration needs, in a
    fixed order: the columns of its one `uniform` call of shape (N, columns).

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
    return needed


def _streams(config):
    """(index, column names) of the extra streams this configuration needs:
    beyond the reference, each drawn by a `uniform` call of its own, seeded
    `STREAM_OFFSET * index` from the reference's (see `stream_seed`)."""
    streams = []
    if config.perspective_range:
        streams.append((1, PERSPECTIVE_COLUMNS))
    if config.distortion_range != (0.0, 0.0):
        streams.append((2, DISTORTION_COLUMNS))
    return streams


def stream_seed(seed, index):
    """The seed tensor of extra stream `index` from a call's (2,) seed tensor."""
    return seed + ops.convert_to_tensor([index * STREAM_OFFSET] * 2, dtype=seed.dtype)


def draw_columns(config, batch_size, seed=None):
    """{column name: (batch_size,) float32 uniform in [0, 1)} for every
    column of `_columns(config)` and `_streams(config)`; {} when there are
    none (then nothing is drawn and a generator does not advance).

    The seed is drawn once (a `SeedGenerator` advances once, as for one
    `keras.random.uniform` call): the reference's columns are the one call
    `uniform((batch_size, len(columns)), seed=<that seed>)`, the values a
    single `keras.random.uniform(..., seed=seed)` gives; each extra stream is
    a call of its own from `stream_seed`."""
    names, streams = _columns(config), _streams(config)
    if not names and not streams:
        return {}
    value = backend.draw_seed(seed)
    draws = [(names, value)] + [(columns, stream_seed(value, index)) for index, columns in streams]
    drawn = {}
    for columns, seed_value in draws:
        if columns:
            # float32 whatever `keras.config.floatx()` says: float16 draws would
            # quantize angles and shifts.
            u = random.uniform((batch_size, len(columns)), dtype="float32", seed=backend.DrawnSeed(seed_value))
            drawn.update((name, u[:, k]) for k, name in enumerate(columns))
    return drawn


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
        seed: a `keras.random.SeedGenerator` (advanced once per call), an
            integer in [0, 2**32 - 1], None (Keras' global generator), or a
            (2,) seed tensor already drawn (as Keras' random functions take
            one on JAX: the way to give a jitted function fresh draws).

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
        `distortion_k2` (N,), the radial lens coefficients. The reference's
        parameters come from one uniform call (`draw_columns`), perspective
        and lens from streams of their own: turning them on changes no
        other key's draw, in this call or the next.
    """
    if seed is not None and not isinstance(seed, keras.random.SeedGenerator):
        if ops.is_tensor(seed) and tuple(ops.shape(seed)) == (2,):
            seed = backend.DrawnSeed(ops.cast(seed, backend.seed_dtype()))  # a drawn seed, e.g. traced under jit
        else:
            seed = config_lib.parse_seed(seed)
    drawn = draw_columns(config, batch_size, seed)
    names = list(drawn)
    zeros = ops.zeros((batch_size,), "float32")
    column = lambda name: drawn[name] if name in drawn else zeros  # noqa: E731
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
    for index, key in enumerate(DISTORTION_COLUMNS):
        if config.distortion_range[index]:
            limit = config.distortion_range[index]
            transformation[key] = _uniform(column(key), -limit, limit)
    return transformation
