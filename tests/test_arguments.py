"""gpuaug.arguments: the one table of RandomTransform's arguments, and what is
derived from it (the layer's signature and config, from_arguments,
compat.RANDOM_ARGUMENTS, train.py's flags)."""

import argparse
import inspect

import numpy as np
import pytest
from keras.src.legacy.preprocessing.image import ImageDataGenerator

import gpuaug
from gpuaug import arguments, compat
from gpuaug.config import AugmentationConfig

AUGMENT_GROUP = "augmentation (ImageDataGenerator's arguments)"


def test_the_layers_signature_is_the_table():
    parameters = [p for p in inspect.signature(gpuaug.RandomTransform.__init__).parameters.values()
                  if p.name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD]
    assert [p.name for p in parameters] == list(arguments.NAMES)
    for parameter in parameters:
        default = arguments.BY_NAME[parameter.name].default
        assert parameter.default == default and type(parameter.default) is type(default), parameter.name


def test_get_config_holds_every_argument_in_the_tables_order():
    config = gpuaug.RandomTransform().get_config()
    assert [key for key in config if key in arguments.BY_NAME] == list(arguments.NAMES)


def test_from_arguments_takes_the_tables_augmentation_arguments_with_its_defaults():
    assert AugmentationConfig.from_arguments() == AugmentationConfig.from_arguments(
        **arguments.defaults(arguments.AUGMENTATION_NAMES))
    assert set(arguments.AUGMENTATION_NAMES) == set(arguments.NAMES) - {
        "data_format", "seed", "bounding_box_format", "mask_fill_value"}
    with pytest.raises(TypeError, match="unexpected keyword argument 'rotation'"):
        AugmentationConfig.from_arguments(rotation=10)
    with pytest.raises(TypeError, match="unexpected keyword argument 'seed'"):  # the layer's own
        AugmentationConfig.from_arguments(seed=1)
    with pytest.raises(ValueError, match="Unrecognized keyword arguments"):  # Keras' Layer refuses it
        gpuaug.RandomTransform(rotation=10)


def test_the_generator_arguments_are_image_data_generators():
    signature = inspect.signature(ImageDataGenerator.__init__).parameters
    generator = ImageDataGenerator()
    for argument in arguments.ARGUMENTS:
        assert (argument.name in signature) == argument.generator, argument.name
        if argument.generator:
            assert hasattr(generator, argument.name), argument.name
    assert compat.RANDOM_ARGUMENTS == tuple(a.name for a in arguments.ARGUMENTS if a.generator)
    assert all(isinstance(a.help, str) and a.help and "\n" not in a.help for a in arguments.ARGUMENTS)


# train.py's flags ---------------------------------------------------------------


# train.py's augmentation group as its --help showed it before the table
# existed (train.py at 39442d0, formatted 100 columns wide): the flags made
# from the table must show the same names, metavars, defaults and help.
HELP_BEFORE_THE_TABLE = """\
augmentation (ImageDataGenerator's arguments):
  --augment {gpu,generator,none}
                        gpu: gpuaug layers in the model; generator: ImageDataGenerator.flow with the
                        same arguments; none: no augmentation (default: gpu)
  --rotation-range ROTATION_RANGE
                        degrees (default: 0.0)
  --width-shift-range WIDTH_SHIFT_RANGE
                        fraction (< 1), pixels (float >= 1), or an int n (whole pixels) (default:
                        0.1)
  --height-shift-range HEIGHT_SHIFT_RANGE
                        as --width-shift-range (default: 0.1)
  --shear-range SHEAR_RANGE
                        degrees (default: 0.0)
  --zoom-range Z [Z ...]
                        Z: zoom factors in [1-Z, 1+Z]; or LOW HIGH: factors in [LOW, HIGH] (default:
                        [0.0])
  --channel-shift-range CHANNEL_SHIFT_RANGE
                        pixel units (0..255) (default: 0.0)
  --brightness-range LOW HIGH
  --horizontal-flip, --no-horizontal-flip
  --vertical-flip, --no-vertical-flip
  --fill-mode {constant,nearest,reflect,wrap}
  --cval CVAL           fill value for --fill-mode constant (default: 0.0)
  --shift-axes {reference,named}
                        gpu only: 'named' fixes the reference's swapped shift axes (default:
                        reference)
  --perspective-range D
                        gpu only (the reference has none): corners move inward by up to D times half
                        the image, D in [0, 1) (default: 0.0)
  --distortion-range K [K ...]
                        gpu only: radial lens distortion, K: k1 in [-K, K] (> 0 barrel, < 0
                        pincushion); K K2: also k2 in [-K2, K2]; 3 K + 5 K2 < 1 (default: [0.0])
"""


def augmentation_group(parser):
    (group,) = [g for g in parser._action_groups if g.title == AUGMENT_GROUP]
    return group


def test_train_pys_augmentation_flags_are_the_tables_and_unchanged():
    from models import flags

    group = augmentation_group(flags.build_parser())
    assert [action.dest for action in group._group_actions] == ["augment", *arguments.FLAGS]
    formatter = argparse.ArgumentDefaultsHelpFormatter("train.py", width=100)
    formatter.start_section(group.title)
    formatter.add_arguments(group._group_actions)
    formatter.end_section()
    assert formatter.format_help() == HELP_BEFORE_THE_TABLE
    parse = flags.build_parser().parse_args
    assert type(parse(["--width-shift-range", "4"]).width_shift_range) is int  # whole pixels, as the reference
    assert type(parse(["--height-shift-range", "4.0"]).height_shift_range) is float
    # A fresh list default for each parser (a list shared by two parsers' namespaces would be one object).
    assert flags.build_parser().parse_args([]).zoom_range is not parse([]).zoom_range


# RandomTransform's keyword arguments of these command lines, as train.py
# built them before the table (the keys in its order: its metrics JSON).
BEFORE = dict(rotation_range=0.0, width_shift_range=0.1, height_shift_range=0.1, shear_range=0.0, zoom_range=0.0,
              channel_shift_range=0.0, brightness_range=None, horizontal_flip=True, vertical_flip=False,
              fill_mode="nearest", cval=0.0, shift_axes="reference", perspective_range=0.0, distortion_range=0.0)
COMMAND_LINES = [
    ([], {}),
    (["--rotation-range", "15", "--width-shift-range", "4", "--height-shift-range", "0.2"],
     dict(rotation_range=15.0, width_shift_range=4, height_shift_range=0.2)),
    (["--zoom-range", "0.8", "1.2", "--brightness-range", "0.5", "1.5", "--no-horizontal-flip", "--vertical-flip"],
     dict(zoom_range=[0.8, 1.2], brightness_range=[0.5, 1.5], horizontal_flip=False, vertical_flip=True)),
    (["--zoom-range", "0.3", "--fill-mode", "constant", "--cval", "7", "--channel-shift-range", "20"],
     dict(zoom_range=0.3, channel_shift_range=20.0, fill_mode="constant", cval=7.0)),
    (["--shift-axes", "named", "--perspective-range", "0.3", "--distortion-range", "0.1", "0.02"],
     dict(shift_axes="named", perspective_range=0.3, distortion_range=[0.1, 0.02])),
    (["--distortion-range", "0.2", "--shear-range", "5", "--width-shift-range", "1.0"],
     dict(width_shift_range=1.0, shear_range=5.0, distortion_range=0.2)),
]


@pytest.mark.parametrize("argv, changed", COMMAND_LINES, ids=lambda value: " ".join(value) if isinstance(
    value, list) else "")
def test_train_pys_keyword_arguments_are_unchanged(argv, changed):
    from models import flags

    namespace = flags.build_parser().parse_args(argv)
    expected = dict(BEFORE, **changed)
    generator = {name: value for name, value in expected.items() if name in compat.RANDOM_ARGUMENTS}
    for made, wanted in ((flags.random_transform_arguments(namespace), expected),
                         (flags.augmentation_arguments(namespace), generator)):
        assert list(made) == list(wanted)
        for name, value in wanted.items():
            assert made[name] == value and type(made[name]) is type(value), (name, made[name], value)
    gpuaug.RandomTransform(**flags.random_transform_arguments(namespace))
    ImageDataGenerator(**flags.augmentation_arguments(namespace))


def test_add_flags_include_and_unknown_names():
    parser = argparse.ArgumentParser()
    assert arguments.add_flags(parser, include=["cval", "rotation_range"]) == ("rotation_range", "cval")
    namespace = parser.parse_args(["--cval", "2"])
    assert arguments.from_flags(namespace) == {"rotation_range": 0.0, "cval": 2.0}
    with pytest.raises(ValueError, match="seed"):
        arguments.add_flags(argparse.ArgumentParser(), include=["seed"])


def test_int_or_float_keeps_int_literals():
    assert arguments.int_or_float("4") == 4 and type(arguments.int_or_float("4")) is int
    assert type(arguments.int_or_float("4.0")) is float and arguments.int_or_float("0.1") == 0.1
    with pytest.raises(argparse.ArgumentTypeError, match="not a number: 'x'"):
        arguments.int_or_float("x")
    assert np.isinf(arguments.int_or_float("inf"))
