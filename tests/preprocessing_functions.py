"""Preprocessing functions for test_compat.py, importable by the fresh
interpreter that reloads a saved model."""

import keras


@keras.saving.register_keras_serializable(package="gpuaug_tests")
def registered_invert(x):
    return 255.0 - x


def unregistered_invert(x):
    return 255.0 - x
