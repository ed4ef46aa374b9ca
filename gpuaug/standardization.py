"""Deterministic layers for `ImageDataGenerator.standardize`'s steps.

They run in training and at inference alike (the generator standardizes every
image it yields), after the random augmentation, in the reference's order:
preprocessing_function, rescale, samplewise, featurewise, ZCA. Statistics are
per image, as in `flow`, which standardizes one image at a time.
"""

import keras
from keras import ops

EPSILON = 1e-6  # the reference's guard in every division by a std


def _image_axes(inputs):
    return tuple(range(1, len(ops.shape(inputs))))


@keras.saving.register_keras_serializable(package="gpuaug")
class SamplewiseStandardization(keras.layers.Layer):
    """Per image: subtract its mean (`samplewise_center`) and divide by its
    std + 1e-6 (`samplewise_std_normalization`), over all pixels and channels."""

    def __init__(self, center=True, std_normalization=False, **kwargs):
        super().__init__(**kwargs)
        self.center = bool(center)
        self.std_normalization = bool(std_normalization)

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        axes = _image_axes(x)
        if self.center:
            x = x - ops.mean(x, axis=axes, keepdims=True)
        if self.std_normalization:
            x = x / (ops.std(x, axis=axes, keepdims=True) + EPSILON)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(center=self.center, std_normalization=self.std_normalization)
        return config


@keras.saving.register_keras_serializable(package="gpuaug")
class FeaturewiseStandardization(keras.layers.Layer):
    """Subtracts a per-channel `mean` and divides by `std` + 1e-6, as the
    generator does after `fit` (`featurewise_center`,
    `featurewise_std_normalization`). `mean`/`std`: None or one value per
    channel (any shape with that many values, e.g. `datagen.mean`)."""

    def __init__(self, mean=None, std=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = data_format or keras.config.image_data_format()
        self.mean = None if mean is None else [float(v) for v in ops.convert_to_numpy(mean).ravel()]
        self.std = None if std is None else [float(v) for v in ops.convert_to_numpy(std).ravel()]

    def _broadcast(self, values):
        shape = (1, 1, -1) if self.data_format == "channels_last" else (-1, 1, 1)
        return ops.reshape(ops.convert_to_tensor(values, self.compute_dtype), shape)

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mean is not None:
            x = x - self._broadcast(self.mean)
        if self.std is not None:
            x = x / (self._broadcast(self.std) + EPSILON)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(mean=self.mean, std=self.std, data_format=self.data_format)
        return config


@keras.saving.register_keras_serializable(package="gpuaug")
class ZCAWhitening(keras.layers.Layer):
    """Multiplies each flattened image by the fitted ZCA matrix
    (`datagen.zca_whitening_matrix`, shape (D, D), D = H * W * C). The matrix
    is a non-trainable weight, saved with the model."""

    def __init__(self, matrix=None, dimension=None, **kwargs):
        super().__init__(**kwargs)
        if matrix is not None:
            matrix = ops.convert_to_numpy(matrix)
            dimension = int(matrix.shape[0])
        if not isinstance(dimension, int) or dimension <= 0:
            raise ValueError(
                "`ZCAWhitening` needs `matrix` (a (D, D) array) or `dimension` "
                f"(a positive int). Received: dimension={dimension!r}"
            )
        self.dimension = dimension
        initializer = "zeros" if matrix is None else keras.initializers.Constant(matrix)
        self.matrix = self.add_weight(
            name="zca_matrix", shape=(dimension, dimension),
            initializer=initializer, trainable=False,
        )

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        shape = ops.shape(x)
        flat = ops.reshape(x, (-1, self.dimension))
        return ops.reshape(ops.matmul(flat, ops.cast(self.matrix, x.dtype)), shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(dimension=self.dimension)
        return config
