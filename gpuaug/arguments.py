"""`RandomTransform`'s arguments, in one table.

`ARGUMENTS` lists every argument once: its name, its default, whether
`ImageDataGenerator` has it, whether `AugmentationConfig.from_arguments`
takes it (the others are the layer's own: `data_format`, `seed`, ...), a
one-line help with units, and the command-line flag train.py gives it, if
any. Everything else reads this table:

- `AugmentationConfig.from_arguments` takes keyword arguments, checked
  against it (an unknown name is a TypeError, as Python's own), with its
  defaults;
- `RandomTransform.__init__` keeps an explicit keyword signature, so that
  `help()`, `inspect.signature` and editors show every argument and its
  default and positional calls keep working; tests/test_arguments.py
  checks that this signature is the table's (names, order, defaults), so an
  argument added to one and not the other is a failing test, not a silent
  bug. The layer passes the table's names through to `from_arguments` and
  writes them into `get_config`;
- `compat.RANDOM_ARGUMENTS` (what is read from an `ImageDataGenerator`) are
  the names `ImageDataGenerator` has;
- `add_flags` and `from_flags` give train.py its flags and turn the parsed
  flags back into keyword arguments.

This module imports nothing from gpuaug (and not Keras): `config` imports
it, and train.py can build its parser without loading a backend.
"""

import argparse
import dataclasses

FILL_MODES = ("constant", "nearest", "reflect", "wrap")
INTERPOLATION_ORDERS = (0, 1)
DATA_FORMATS = ("channels_last", "channels_first")
SHIFT_AXES = ("reference", "named")
CENTERS = ("reference", "image")


class _LibraryDefault:
    """`Flag.default` when the flag's default is the argument's own."""

    def __repr__(self):
        return "LIBRARY_DEFAULT"


LIBRARY_DEFAULT = _LibraryDefault()


def int_or_float(text):
    """ImageDataGenerator's forms of a shift range on the command line: an
    integer literal stays an int (whole pixels 0..n-1 with a random sign);
    anything else is a float."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


@dataclasses.dataclass(frozen=True)
class Flag:
    """An argument's command-line flag, as train.py declares it
    (`--` + the name with dashes): the `add_argument` keywords.

    boolean: an `argparse.BooleanOptionalAction` (--x / --no-x).
    default: the flag's default where it differs from the argument's
        (LIBRARY_DEFAULT: the same); a tuple stands for a list, a fresh one
        for each parser.
    help: train.py's help text (None: none).
    nargs "+" or 2: the flag gives a list; `from_flags` passes one value of
    an "+" flag as a number (k, not [k]) and more as a list.
    """

    type: object = None
    nargs: object = None
    metavar: object = None
    choices: tuple = None
    default: object = LIBRARY_DEFAULT
    help: str = None
    boolean: bool = False


@dataclasses.dataclass(frozen=True)
class Argument:
    """One argument of `RandomTransform`.

    generator: `ImageDataGenerator` has an argument of this name and meaning.
    augmentation: `AugmentationConfig.from_arguments` takes it (False: the
        layer's own, checked by the layer).
    flag: its train.py flag, or None.
    """

    name: str
    default: object
    help: str
    generator: bool
    augmentation: bool = True
    flag: Flag = None

    @property
    def flag_default(self):
        default = self.default if self.flag.default is LIBRARY_DEFAULT else self.flag.default
        return list(default) if isinstance(default, tuple) else default


def option(name):
    """The command-line option of an argument (or of any destination):
    "rotation_range" -> "--rotation-range"."""
    return "--" + name.replace("_", "-")


# In `RandomTransform`'s (and `from_arguments`') positional order.
ARGUMENTS = (
    Argument("rotation_range", 0, "degrees; the angle is uniform in [-r, r]", generator=True,
             flag=Flag(type=float, default=0.0, help="degrees")),
    Argument("width_shift_range", 0.0,
             "float < 1: fraction of the width, float >= 1: pixels (uniform in [-f, f]); int n: whole pixels "
             "in 0..n-1 with a random sign; list: allowed offsets", generator=True,
             flag=Flag(type=int_or_float, default=0.1,
                       help="fraction (< 1), pixels (float >= 1), or an int n (whole pixels)")),
    Argument("height_shift_range", 0.0, "as width_shift_range, of the height (note shift_axes)", generator=True,
             flag=Flag(type=int_or_float, default=0.1, help="as --width-shift-range")),
    Argument("brightness_range", None,
             "None or [lower, upper]: brightness factor (1: unchanged), applied through 8-bit PIL as the reference",
             generator=True, flag=Flag(type=float, nargs=2, metavar=("LOW", "HIGH"))),
    Argument("shear_range", 0.0, "degrees (counter-clockwise shear angle), uniform in [-s, s]", generator=True,
             flag=Flag(type=float, help="degrees")),
    Argument("zoom_range", 0.0, "float z: zoom factors in [1 - z, 1 + z], or [lower, upper]; > 1 zooms out",
             generator=True,
             flag=Flag(type=float, nargs="+", metavar="Z", default=(0.0,),
                       help="Z: zoom factors in [1-Z, 1+Z]; or LOW HIGH: factors in [LOW, HIGH]")),
    Argument("channel_shift_range", 0.0,
             "pixel units; one value added to every channel, clipped to the image's own range", generator=True,
             flag=Flag(type=float, help="pixel units (0..255)")),
    Argument("fill_mode", "nearest", "outside the input: 'constant', 'nearest', 'reflect' or 'wrap' (scipy's)",
             generator=True, flag=Flag(choices=FILL_MODES)),
    Argument("cval", 0.0, "the fill value of fill_mode 'constant', in pixel units", generator=True,
             flag=Flag(type=float, help="fill value for --fill-mode constant")),
    Argument("horizontal_flip", False, "flip half of the images left-right", generator=True,
             flag=Flag(boolean=True, default=True)),
    Argument("vertical_flip", False, "flip half of the images upside down", generator=True,
             flag=Flag(boolean=True)),
    Argument("interpolation_order", 1, "0 (nearest) or 1 (bilinear)", generator=True),
    Argument("data_format", None, "'channels_last' or 'channels_first'; None: keras.config.image_data_format()",
             generator=True, augmentation=False),
    Argument("shift_axes", "reference",
             "'reference': the reference's swapped shift axes (height_shift_range moves left/right); 'named': "
             "along the named axes", generator=False,
             flag=Flag(choices=SHIFT_AXES, help="gpu only: 'named' fixes the reference's swapped shift axes")),
    Argument("center", "reference",
             "'reference': rotate, shear and zoom about the reference's point; 'image': the true image centre",
             generator=False),
    Argument("seed", None, "None or an integer in [0, 2**32 - 1], for reproducible draws", generator=False,
             augmentation=False),
    Argument("bounding_box_format", None,
             "the format of 'bounding_boxes' in dict inputs ('xyxy', 'rel_xyxy', 'center_xywh', ...)",
             generator=False, augmentation=False),
    Argument("mask_fill_value", 0, "what 'segmentation_masks' get outside the image with fill_mode 'constant'",
             generator=False, augmentation=False),
    Argument("perspective_range", 0.0,
             "gpuaug only: d in [0, 1); each corner moves inward by up to d times half the image", generator=False,
             flag=Flag(type=float, metavar="D", help="gpu only (the reference has none): corners move inward by "
                       "up to D times half the image, D in [0, 1)")),
    Argument("distortion_range", 0.0,
             "gpuaug only: k or [k, k2], radial lens distortion, k1 uniform in [-k, k], k2 in [-k2, k2], "
             "3 k + 5 k2 < 1", generator=False,
             flag=Flag(type=float, nargs="+", metavar="K", default=(0.0,),
                       help="gpu only: radial lens distortion, K: k1 in [-K, K] (> 0 barrel, < 0 pincushion); "
                       "K K2: also k2 in [-K2, K2]; 3 K + 5 K2 < 1")),
)

BY_NAME = {argument.name: argument for argument in ARGUMENTS}
NAMES = tuple(BY_NAME)
AUGMENTATION_NAMES = tuple(a.name for a in ARGUMENTS if a.augmentation)  # from_arguments'
GENERATOR_NAMES = tuple(a.name for a in ARGUMENTS if a.generator)  # read from an ImageDataGenerator

# train.py's augmentation flags, in the order its parser (and --help) has
# them; `from_flags` returns its keyword arguments in this order too.
FLAGS = ("rotation_range", "width_shift_range", "height_shift_range", "shear_range", "zoom_range",
         "channel_shift_range", "brightness_range", "horizontal_flip", "vertical_flip", "fill_mode", "cval",
         "shift_axes", "perspective_range", "distortion_range")
if sorted(FLAGS) != sorted(a.name for a in ARGUMENTS if a.flag is not None):
    raise AssertionError("gpuaug.arguments: FLAGS must name every argument that has a flag, once")


def defaults(names=NAMES):
    """{name: default} of the named arguments, in the given order."""
    return {name: BY_NAME[name].default for name in names}


def check_names(given, accepted, function):
    """Raises TypeError, worded as Python's own, for the first name of
    `given` not in `accepted`."""
    for name in given:
        if name not in accepted:
            raise TypeError(f"{function}() got an unexpected keyword argument {name!r}")


def _selected(include):
    if include is None:
        return FLAGS
    include = tuple(include)
    unknown = [name for name in include if name not in FLAGS]
    if unknown:
        raise ValueError(f"`include` names arguments without a flag: {unknown}; the flags are {list(FLAGS)}")
    return tuple(name for name in FLAGS if name in include)


def add_flags(parser_group, include=None):
    """Adds the augmentation flags to an argparse parser or argument group,
    as train.py declares them (names, types, nargs, metavars, choices,
    defaults, help), in train.py's order (`FLAGS`).

    include: the argument names whose flags to add (any order; they are
        added in `FLAGS`' order), or None for all of them.

    Returns the names (the flags' destinations) added, in order.
    """
    added = _selected(include)
    for name in added:
        argument = BY_NAME[name]
        spec = argument.flag
        keywords = {"default": argument.flag_default}
        if spec.boolean:
            keywords["action"] = argparse.BooleanOptionalAction
        for key in ("type", "nargs", "metavar", "choices", "help"):
            value = getattr(spec, key)
            if value is not None:
                keywords[key] = value
        parser_group.add_argument(option(name), **keywords)
    return added


def from_flags(namespace, generator=False):
    """`RandomTransform`'s keyword arguments from parsed flags (an
    `argparse.Namespace` or a dict), in `FLAGS`' order: every flag the
    namespace holds (those `add_flags` added). One value of `--zoom-range`
    or `--distortion-range` becomes a number, two a list;
    `--brightness-range` a list (or None).

    generator: only those `ImageDataGenerator` has (its keyword arguments,
        for the reference path).
    """
    values = namespace if isinstance(namespace, dict) else vars(namespace)
    arguments = {}
    for name in FLAGS:
        argument = BY_NAME[name]
        if name not in values or (generator and not argument.generator):
            continue
        value = values[name]
        if isinstance(value, (list, tuple)):
            value = value[0] if argument.flag.nargs == "+" and len(value) == 1 else list(value)
        arguments[name] = value
    return arguments
