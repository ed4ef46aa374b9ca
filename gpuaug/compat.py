"""From a configured `ImageDataGenerator` to the Keras layers that reproduce it."""

import copy
import warnings

import keras

from gpuaug.arguments import GENERATOR_NAMES
from gpuaug.layers import RandomTransform
from gpuaug.standardization import (
    FeaturewiseStandardization,
    ImagenetPreprocessing,
    SamplewiseStandardization,
    ZCAWhitening,
)

# What is read from an ImageDataGenerator: the arguments it shares with RandomTransform.
RANDOM_ARGUMENTS = GENERATOR_NAMES


def _as_generator(generator):
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    if isinstance(generator, dict):
        return ImageDataGenerator(**generator)
    if not isinstance(generator, ImageDataGenerator):
        raise ValueError(
            "`generator` must be an ImageDataGenerator or a dict of its keyword "
            f"arguments. Received: {type(generator).__name__}"
        )
    return generator


def keras_applications_mode(function):
    """"caffe", "tf" or "torch" when `function` is one of `keras.applications`'
    `preprocess_input` functions (or `imagenet_utils.preprocess_input`), "none"
    for the ones that pass images through unchanged (EfficientNet, ConvNeXt,
    ...), None for any other function. Found by running it on a probe image in
    the layout it uses (`keras.config.image_data_format()`) and comparing with
    each mode of `imagenet_utils.preprocess_input`."""
    import numpy as np
    from keras.src.applications import imagenet_utils

    if not getattr(function, "__module__", "").startswith(("keras.", "tf_keras.", "tensorflow.")):
        return None
    probe = np.arange(3 * 2 * 2, dtype="float32").reshape(3, 2, 2) * 13.0 + 5.0  # (C, H, W)
    if keras.config.image_data_format() == "channels_last":
        probe = probe.transpose(1, 2, 0)
    try:
        output = np.asarray(function(probe.copy()))
    except Exception:  # noqa: BLE001 - not an image function of this kind
        return None
    if output.shape == probe.shape and np.array_equal(output, probe):
        return "none"
    for mode in ("caffe", "tf", "torch"):
        expected = imagenet_utils.preprocess_input(probe.copy(), mode=mode)
        if output.shape == expected.shape and np.array_equal(output, expected):
            return mode
    return None


def _reload_warning(function):
    """Why a model holding `Lambda(function)` will not reload by itself, or
    None when it will (a function registered with
    `keras.saving.register_keras_serializable`)."""
    name = getattr(function, "__name__", repr(function))
    if name == "<lambda>":
        return ("`preprocessing_function` is a lambda: a model saved with it reloads only with "
                "keras.models.load_model(..., safe_mode=False); use a named function registered with "
                "@keras.saving.register_keras_serializable() to reload it safely")
    if keras.saving.get_registered_name(function) == name:
        return (f"`preprocessing_function` {name!r} is not registered: a model saved with it reloads only "
                f"with keras.models.load_model(..., custom_objects={{{name!r}: {name}}}); decorate it with "
                "@keras.saving.register_keras_serializable() so that it reloads wherever its module is imported")
    return None


def _device_preprocessing(function, generator):
    """A Keras layer as is; `keras.applications`' preprocess_input as an
    `ImagenetPreprocessing` layer (None when it changes nothing); another
    callable only if it runs on symbolic tensors (wrapped in `Lambda`, with a
    warning when the saved model would not reload by itself)."""
    if isinstance(function, keras.layers.Layer):
        return function
    if not callable(function):
        raise ValueError(
            "`preprocessing_function` must be a Keras layer or a function of "
            f"tensors. Received: {function!r}"
        )
    mode = keras_applications_mode(function)
    if mode == "none":
        return None
    if mode is not None:
        return ImagenetPreprocessing(mode, keras.config.image_data_format(), name="preprocessing_function")
    shape = (None, 8, 8, 3) if generator.data_format == "channels_last" else (None, 3, 8, 8)
    try:
        function(keras.KerasTensor(shape, dtype="float32"))
    except Exception as error:  # noqa: BLE001 - any failure means "not traceable"
        raise ValueError(
            f"`preprocessing_function` {getattr(function, '__name__', function)!r} "
            "cannot run on the device: it fails on a symbolic tensor "
            f"({type(error).__name__}: {error}). Pass a Keras layer or a "
            "function written with keras.ops (it receives the whole batch)."
        ) from error
    warning = _reload_warning(function)
    if warning:
        warnings.warn(warning, stacklevel=3)
    return keras.layers.Lambda(function, name="preprocessing_function")


def from_image_data_generator(generator, data=None, seed=None, **options):
    """The layers that reproduce `generator` end to end, in its order.

    Args:
        generator: an `ImageDataGenerator`, or a dict of its keyword arguments.
        data: images to fit featurewise statistics / ZCA on when the
            generator asks for them and has not been fitted (`fit` runs on a
            copy; the generator passed in is not changed).
        seed: seed of the `RandomTransform`.
        **options: more `RandomTransform` arguments (`shift_axes`, `center`).

    Returns:
        A list of layers: `RandomTransform` (if any random augmentation is
        set; identity at inference), then for each configured step of
        `standardize`: `preprocessing_function` (a Keras layer;
        `keras.applications`' `preprocess_input` as `ImagenetPreprocessing`,
        or nothing for those that change nothing; another function of
        tensors wrapped in `Lambda`, with a warning when a saved model would
        not reload without it), `Rescaling`,
        `SamplewiseStandardization`, `FeaturewiseStandardization`,
        `ZCAWhitening` (these run at inference too).
        `validation_split` and `dtype` are not layers and are ignored.
    """
    generator = _as_generator(generator)
    needs_fit = generator.featurewise_center or generator.featurewise_std_normalization or generator.zca_whitening
    fitted = generator.mean is not None or generator.zca_whitening_matrix is not None
    if needs_fit and not fitted:
        if data is None:
            raise ValueError(
                "The generator uses featurewise statistics or ZCA but has not "
                "been fitted: call `generator.fit(x)` first or pass `data=x`."
            )
        generator = copy.deepcopy(generator)
        generator.fit(data)

    layers = []
    arguments = {name: getattr(generator, name) for name in RANDOM_ARGUMENTS}
    augmentation = RandomTransform(**arguments, seed=seed, **options)
    if not augmentation.augmentation.is_identity:
        layers.append(augmentation)
    if generator.preprocessing_function is not None:
        preprocessing = _device_preprocessing(generator.preprocessing_function, generator)
        if preprocessing is not None:
            layers.append(preprocessing)
    if generator.rescale:
        layers.append(keras.layers.Rescaling(generator.rescale))
    if generator.samplewise_center or generator.samplewise_std_normalization:
        layers.append(SamplewiseStandardization(
            generator.samplewise_center, generator.samplewise_std_normalization
        ))
    mean = generator.mean if generator.featurewise_center else None
    std = generator.std if generator.featurewise_std_normalization else None
    if mean is not None or std is not None:
        layers.append(FeaturewiseStandardization(mean, std, generator.data_format))
    if generator.zca_whitening and generator.zca_whitening_matrix is not None:
        layers.append(ZCAWhitening(generator.zca_whitening_matrix))
    return layers
