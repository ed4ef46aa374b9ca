"""Validated augmentation settings, with `ImageDataGenerator`'s argument names.

`AugmentationConfig` checks every argument once, on the host, and stores it in
the normalized form that sampling needs. Nothing here runs inside a model.
"""

import dataclasses
import math
import numbers

import numpy as np

from gpuaug import arguments as arguments_lib
from gpuaug.arguments import CENTERS, DATA_FORMATS, FILL_MODES, INTERPOLATION_ORDERS, SHIFT_AXES  # noqa: F401

BRIGHTNESS_CHANNELS = (1, 3, 4)
SEED_RANGE = (0, 2**32 - 1)  # numpy's (np.random.seed), which ImageDataGenerator's seed goes to


def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def _is_real(value):
    """A Python or numpy number (int or float), not a bool."""
    return isinstance(value, numbers.Real) and not _is_bool(value)


def to_python(value):
    """`value` with numpy scalars and arrays as Python numbers and lists, and
    tuples as lists, inside lists and dicts too: what a JSON config holds."""
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [to_python(v) for v in value]
    if isinstance(value, dict):
        return {key: to_python(v) for key, v in value.items()}
    return value


def parse_seed(value):
    """None, or an integer (Python or numpy) in [0, 2**32 - 1] as a Python int.

    The range is numpy's (`np.random.seed`, which `ImageDataGenerator` seeds
    with) and the one every Keras backend holds: JAX keeps a seed in uint32
    and would raise OverflowError outside it, TensorFlow would wrap it."""
    if value is None:
        return None
    if not isinstance(value, numbers.Integral) or _is_bool(value) or not SEED_RANGE[0] <= value <= SEED_RANGE[1]:
        raise ValueError("`seed` must be None or an integer (Python or numpy) in [0, 2**32 - 1]. "
                         f"Received: {value!r}")
    return int(value)


def parse_number(name, value):
    """A Python or numpy int or float (not a bool) as a Python int or float."""
    if not _is_real(value):
        raise ValueError(f"`{name}` must be a number. Received: {value!r}")
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def _finite_real(name, value, minimum=None, accepted=None):
    accepted = accepted or (
        "a finite number" + ("" if minimum is None else f" >= {minimum}")
    )
    if not _is_real(value) or not math.isfinite(value):
        raise ValueError(f"`{name}` must be {accepted}. Received: {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be {accepted}. Received: {value!r}")
    return value


# The largest magnitude a numeric argument may have: the parameters are drawn
# and applied in float32 (max 3.4e38), where a range beyond about 1e38
# overflows the draw to inf and the warp's coordinates to NaN (an all-NaN
# batch on JAX, an out-of-range gather on TensorFlow and PyTorch).
LARGEST = 1e30


def _check_magnitude(name, value):
    """Raises if `value` (a number or a sequence of them) holds a finite
    number larger in magnitude than `LARGEST`; the other checks come after."""
    sequence = _as_sequence(value)
    for v in [value] if sequence is None else sequence:
        if _is_real(v) and math.isfinite(v) and abs(v) > LARGEST:
            raise ValueError(f"`{name}` must hold numbers of magnitude at most {LARGEST:g} (the parameters are drawn "
                             f"and applied in float32, which overflows beyond). Received: {value!r}")


def _as_sequence(value):
    """Lists, tuples and 1-D arrays (anything with `tolist`) become lists."""
    if hasattr(value, "tolist") and not _is_real(value):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return list(value)
    return None


@dataclasses.dataclass(frozen=True)
class ShiftSpec:
    """How one shift offset is drawn, following `get_random_transform`.

    kind: "none"; "uniform" (a float f: uniform in [-f, f]); "integers" (an int n:
    a whole number in 0..n-1 with a random sign); "choice" (a list: one of its
    values with a random sign). `scale_by_size`: multiply by the image's height
    (for `height_shift_range`) or width, as the reference does when the float or
    the largest listed value is below 1.
    """

    kind: str
    values: tuple = ()
    scale_by_size: bool = False


def parse_shift_range(name, value):
    accepted = (
        "a float >= 0 (a fraction of the size if < 1, else pixels), an int >= 0 "
        "(pixels), or a non-empty list of numbers (allowed offsets)"
    )
    sequence = _as_sequence(value)
    if sequence is not None:
        if not sequence or not all(
            _is_real(v) and math.isfinite(v) for v in sequence
        ):
            raise ValueError(f"`{name}` must be {accepted}. Received: {value!r}")
        values = tuple(float(v) for v in sequence)
        return ShiftSpec("choice", values, max(values) < 1)
    _finite_real(name, value, 0, accepted)
    if value == 0:
        return ShiftSpec("none")
    if isinstance(value, numbers.Integral):
        return ShiftSpec("integers", (int(value),), False)
    return ShiftSpec("uniform", (float(value),), value < 1)


def parse_zoom_range(value):
    accepted = (
        "a float z in [0, 1) (zoom factors in [1 - z, 1 + z]) or two numbers "
        "[lower, upper] with 0 < lower <= upper"
    )
    sequence = _as_sequence(value)
    if sequence is None:
        _finite_real("zoom_range", value, 0, accepted)
        if value >= 1:
            raise ValueError(f"`zoom_range` must be {accepted}. Received: {value!r}")
        return (1.0 - value, 1.0 + value)
    if len(sequence) != 2 or not all(
        _is_real(v) and math.isfinite(v) for v in sequence
    ):
        raise ValueError(f"`zoom_range` must be {accepted}. Received: {value!r}")
    lower, upper = (float(v) for v in sequence)
    if not 0 < lower <= upper:
        raise ValueError(f"`zoom_range` must be {accepted}. Received: {value!r}")
    return (lower, upper)


def parse_brightness_range(value):
    if value is None:
        return None
    accepted = "None or two numbers [lower, upper] with 0 <= lower <= upper"
    sequence = _as_sequence(value)
    if (
        sequence is None
        or len(sequence) != 2
        or not all(_is_real(v) and math.isfinite(v) for v in sequence)
    ):
        raise ValueError(
            f"`brightness_range` must be {accepted}. Received: {value!r}"
        )
    lower, upper = (float(v) for v in sequence)
    if not 0 <= lower <= upper:
        raise ValueError(
            f"`brightness_range` must be {accepted}. Received: {value!r}"
        )
    return (lower, upper)


def parse_perspective_range(value):
    accepted = "a number d in [0, 1) (each corner moves inward by up to d times half the image)"
    _finite_real("perspective_range", value, 0, accepted)
    if value >= 1:
        raise ValueError(f"`perspective_range` must be {accepted}. Received: {value!r}")
    return float(value)


def parse_distortion_range(value):
    """(k1 limit, k2 limit) from k or [k, k2]: k1 uniform in [-k, k], k2 in
    [-k2, k2]; 3 k + 5 k2 < 1 keeps the radial map one-to-one over the image
    (its derivative 1 + 3 k1 r^2 + 5 k2 r^4 stays positive for r <= 1)."""
    accepted = ("a number k >= 0 (k1 uniform in [-k, k]) or two numbers [k, k2] >= 0 (and k2 uniform in "
                "[-k2, k2]), with 3 k + 5 k2 < 1")
    sequence = _as_sequence(value)
    values = [value] if sequence is None else sequence
    if not 1 <= len(values) <= 2 or not all(_is_real(v) and math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"`distortion_range` must be {accepted}. Received: {value!r}")
    k1, k2 = (float(values[0]), float(values[1]) if len(values) == 2 else 0.0)
    if 3 * k1 + 5 * k2 >= 1:
        raise ValueError(f"`distortion_range` must be {accepted}. Received: {value!r}")
    return (k1, k2)


def _choice(name, value, accepted):
    if not isinstance(value, str) or value not in accepted:
        raise ValueError(
            f"`{name}` must be one of {', '.join(map(repr, accepted))}. "
            f"Received: {value!r}"
        )
    return value


def parse_flag(name, value):
    """True or False (Python or numpy bools, or the integers 0 and 1, as
    `ImageDataGenerator` takes them) as a Python bool."""
    if _is_bool(value) or (isinstance(value, numbers.Integral) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"`{name}` must be True or False (a Python or numpy bool, or the integer 0 or 1). "
                     f"Received: {value!r}")


@dataclasses.dataclass(frozen=True)
class AugmentationConfig:
    """The random part of an `ImageDataGenerator`, validated and normalized.

    Units as in the reference: `rotation_range` and `shear_range` in degrees;
    shifts as `ShiftSpec`; `zoom_range` as (lower, upper) factors (> 1 zooms
    out); `channel_shift_range`, `cval` in the input's pixel units. Beyond
    the reference: `perspective_range` d in [0, 1) (corners move inward by up
    to d times half the image), `distortion_range` (k1, k2) limits of the
    radial lens coefficients.
    """

    rotation_range: float = 0.0
    height_shift: ShiftSpec = ShiftSpec("none")
    width_shift: ShiftSpec = ShiftSpec("none")
    shear_range: float = 0.0
    zoom_range: tuple = (1.0, 1.0)
    channel_shift_range: float = 0.0
    brightness_range: tuple = None
    horizontal_flip: bool = False
    vertical_flip: bool = False
    fill_mode: str = "nearest"
    cval: float = 0.0
    interpolation_order: int = 1
    shift_axes: str = "reference"
    center: str = "reference"
    perspective_range: float = 0.0
    distortion_range: tuple = (0.0, 0.0)

    @property
    def is_identity(self):
        """True when no argument asks for any random change."""
        return (
            not self.perspective_range
            and self.distortion_range == (0.0, 0.0)
            and not self.rotation_range
            and self.height_shift.kind == "none"
            and self.width_shift.kind == "none"
            and not self.shear_range
            and self.zoom_range == (1.0, 1.0)
            and not self.channel_shift_range
            and self.brightness_range is None
            and not (self.horizontal_flip or self.vertical_flip)
        )

    @property
    def moves_whole_pixels(self):
        """True when every draw moves pixels by whole pixels only: flips and
        shifts of an int n (or a list of whole numbers of pixels), with no
        rotation, shear, zoom, perspective or lens. Every sampling point is
        then a pixel's centre, where bilinear interpolation returns that
        pixel: the warp is a copy (one gather, no blend; `RandomTransform`
        takes that path)."""

        def whole(spec):
            return spec.kind in ("none", "integers") or (
                spec.kind == "choice" and not spec.scale_by_size and all(float(v).is_integer() for v in spec.values))

        return (not self.rotation_range and not self.shear_range and self.zoom_range == (1.0, 1.0)
                and not self.perspective_range and self.distortion_range == (0.0, 0.0)
                and whole(self.height_shift) and whole(self.width_shift))

    @classmethod
    def from_arguments(cls, **arguments):
        """Checks and normalizes `ImageDataGenerator`-style keyword
        arguments: the names of `gpuaug.arguments.AUGMENTATION_NAMES`, each
        defaulting to the table's default (an unknown name: TypeError)."""
        arguments_lib.check_names(arguments, arguments_lib.AUGMENTATION_NAMES, "from_arguments")
        arguments = {**arguments_lib.defaults(arguments_lib.AUGMENTATION_NAMES), **arguments}
        for name, value in arguments.items():  # every argument; strings and flags pass
            _check_magnitude(name, value)
        a = arguments
        order = a["interpolation_order"]
        if _is_bool(order) or not _is_real(order) or order not in INTERPOLATION_ORDERS:
            raise ValueError(
                "`interpolation_order` must be 0 (nearest) or 1 (bilinear); "
                f"higher spline orders are not supported. Received: {order!r}"
            )
        return cls(
            rotation_range=float(_finite_real("rotation_range", a["rotation_range"], 0)),
            height_shift=parse_shift_range("height_shift_range", a["height_shift_range"]),
            width_shift=parse_shift_range("width_shift_range", a["width_shift_range"]),
            shear_range=float(_finite_real("shear_range", a["shear_range"], 0)),
            zoom_range=parse_zoom_range(a["zoom_range"]),
            channel_shift_range=float(
                _finite_real("channel_shift_range", a["channel_shift_range"], 0)
            ),
            brightness_range=parse_brightness_range(a["brightness_range"]),
            horizontal_flip=parse_flag("horizontal_flip", a["horizontal_flip"]),
            vertical_flip=parse_flag("vertical_flip", a["vertical_flip"]),
            fill_mode=_choice("fill_mode", a["fill_mode"], FILL_MODES),
            cval=float(_finite_real("cval", a["cval"])),
            interpolation_order=int(order),
            shift_axes=_choice("shift_axes", a["shift_axes"], SHIFT_AXES),
            center=_choice("center", a["center"], CENTERS),
            perspective_range=parse_perspective_range(a["perspective_range"]),
            distortion_range=parse_distortion_range(a["distortion_range"]),
        )


def standardize_data_format(data_format, default):
    if data_format is None:
        return default
    return _choice("data_format", data_format, DATA_FORMATS)
