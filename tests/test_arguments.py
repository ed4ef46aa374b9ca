"""gpuaug.arguments: the one table of RandomTransform's arguments, and what is
derived from it (the layer's signature and config, from_arguments,
compat.RANDOM_ARGUMENTS, train.py's flags)."""

import argparse
import importlib
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


def train_flags():
    """The module holding train.py's parser today: train.py itself, or
    models/flags.py where train.py imports it from."""
    import train

    return train if hasattr(train, "build_parser") else importlib.import_module("models.flags")


def augmentation_actions(parser):
    (group,) = [g for g in parser._action_groups if g.title == AUGMENT_GROUP]
    return {action.dest: action for action in group._group_actions if action.dest != "augment"}


def ours():
    parser = argparse.ArgumentParser(prog="train.py", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    added = arguments.add_flags(parser.add_argument_group(AUGMENT_GROUP))
    assert added == arguments.FLAGS
    return parser


SAMPLES = ["0", "3", "-2", "0.5", "1e3", "1.0", "inf", "-0", "abc", "", "0x10", " 7 ", "nearest", "reflect"]


def behaviour(function, text):
    if function is None:
        return "no type"
    try:
        value = function(text)
    except Exception as error:  # noqa: BLE001 - the kind and message are compared
        return type(error).__name__, str(error)
    return type(value).__name__, repr(value)


def help_text(action):
    formatter = argparse.ArgumentDefaultsHelpFormatter("train.py")
    formatter.add_argument(action)
    return formatter._format_action(action)


def test_add_flags_makes_train_pys_augmentation_flags():
    reference = augmentation_actions(train_flags().build_parser())
    made = augmentation_actions(ours())
    assert list(reference) == list(made) == list(arguments.FLAGS)
    for dest, expected in reference.items():
        action = made[dest]
        for attribute in ("option_strings", "nargs", "const", "choices", "metavar", "required", "help"):
            assert getattr(action, attribute) == getattr(expected, attribute), (dest, attribute)
        assert type(action) is type(expected), dest
        assert action.default == expected.default and type(action.default) is type(expected.default), dest
        for text in SAMPLES:
            assert behaviour(action.type, text) == behaviour(expected.type, text), (dest, text)
        assert help_text(action) == help_text(expected), dest
    # A fresh list default for each parser (argparse would share it between namespaces).
    assert augmentation_actions(ours())["zoom_range"].default is not made["zoom_range"].default


COMMAND_LINES = [
    [],
    ["--rotation-range", "15", "--width-shift-range", "4", "--height-shift-range", "0.2"],
    ["--zoom-range", "0.8", "1.2", "--brightness-range", "0.5", "1.5", "--no-horizontal-flip", "--vertical-flip"],
    ["--zoom-range", "0.3", "--fill-mode", "constant", "--cval", "7", "--channel-shift-range", "20"],
    ["--shift-axes", "named", "--perspective-range", "0.3", "--distortion-range", "0.1", "0.02"],
    ["--distortion-range", "0.2", "--shear-range", "5", "--width-shift-range", "1.0"],
]


@pytest.mark.parametrize("argv", COMMAND_LINES, ids=lambda argv: " ".join(argv) or "defaults")
def test_from_flags_gives_train_pys_keyword_arguments(argv):
    flags = train_flags()
    namespace = flags.build_parser().parse_args(argv)
    for ours_, theirs in ((arguments.from_flags(namespace), flags.random_transform_arguments(namespace)),
                          (arguments.from_flags(namespace, generator=True), flags.augmentation_arguments(namespace))):
        assert list(ours_) == list(theirs)  # the keys, in train.py's order (its metrics JSON)
        for name, value in theirs.items():
            assert ours_[name] == value and type(ours_[name]) is type(value), (name, ours_[name], value)
    # The same from the flags add_flags made.
    assert arguments.from_flags(ours().parse_args(argv)) == flags.random_transform_arguments(namespace)
    gpuaug.RandomTransform(**arguments.from_flags(namespace))


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
