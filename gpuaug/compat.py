"""From a configured `ImageDataGenerator` to the Keras layers that reproduce it."""

import copy

import keras

from gpuaug.layers import RandomTransform
from gpuaug.standardization import (
    FeaturewiseStandardization,
    SamplewiseStandardization,
    ZCAWhitening,
)

RANDOM_ARGUMENTS = (
    "rotation_range", "width_shift_range", "height_shift_range",
    "brightness_range", "shear_range", "zoom_range", "channel_shift_range",
    "fill_mode", "cval", "horizontal_flip", "vertical_flip",
    "interpolation_order", "data_format",
)


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


def _device_preprocessing(function, generator):
    """A Keras layer as is; a callable only if it runs on symbolic tensors."""
    if isinstance(function, keras.layers.Layer):
        return function
    if not callable(function):
        raise ValueError(
            "`preprocessing_function` must be a Keras layer or a function of "
            f"tensors. Received: {function!r}"
        )
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
        `standardize`: `preprocessing_function` (a Keras layer, or a function
        of tensors wrapped in `Lambda`), `Rescaling`,
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
        layers.append(_device_preprocessing(generator.preprocessing_function, generator))
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
