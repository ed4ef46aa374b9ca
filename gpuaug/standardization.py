"""Deterministic layers for `ImageDataGenerator.standardize`'s steps.

`ImagenetPreprocessing` stands for the `preprocess_input` functions of
`keras.applications` (the usual `preprocessing_function`), so that a model
holding it saves and reloads like any other.

They run in training and at inference alike (the generator standardizes every
image it yields), after the random augmentation, in the reference's order:
preprocessing_function, rescale, samplewise, featurewise, ZCA. Statistics are
per image, as in `flow`, which standardizes one image at a time. Like Keras'
own preprocessing layers they also run in a `tf.data` pipeline on every
backend (`gpuaug.backend.RunsInTensorFlowGraphs`).
"""

import keras

from gpuaug.backend import RunsInTensorFlowGraphs, ops

EPSILON = 1e-6  # the reference's guard in every division by a std


def _image_axes(inputs):
    return tuple(range(1, len(ops.shape(inputs))))


@keras.saving.register_keras_serializable(package="gpuaug")
class SamplewiseStandardization(RunsInTensorFlowGraphs, keras.layers.Layer):
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
class FeaturewiseStandardization(RunsInTensorFlowGraphs, keras.layers.Layer):
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
class ZCAWhitening(RunsInTensorFlowGraphs, keras.layers.Layer):
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


# keras.applications.imagenet_utils' constants (RGB order).
IMAGENET_MODES = ("caffe", "tf", "torch")
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="gpuaug")
class ImagenetPreprocessing(RunsInTensorFlowGraphs, keras.layers.Layer):
    """`keras.applications`' `preprocess_input` as a layer, for its three modes:

    - "caffe" (ResNet50, VGG16/19): RGB to BGR, then minus the ImageNet mean
      per channel (103.939, 116.779, 123.68, BGR), no scaling;
    - "tf" (MobileNet, MobileNetV2, InceptionV3, Xception, ResNetV2, NASNet,
      InceptionResNetV2): x / 127.5 - 1, i.e. 0..255 to -1..1;
    - "torch" (DenseNet): x / 255, minus (0.485, 0.456, 0.406), divided by
      (0.229, 0.224, 0.225) per RGB channel.

    Inputs are pixels 0..255, `data_format`'s layout (default
    `keras.config.image_data_format()`); the same float32 arithmetic as
    `keras.applications.imagenet_utils.preprocess_input`.
    """

    def __init__(self, mode="caffe", data_format=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in IMAGENET_MODES:
            raise ValueError(f"`mode` must be one of {IMAGENET_MODES}. Received: {mode!r}")
        self.mode = mode
        self.data_format = data_format or keras.config.image_data_format()

    def _per_channel(self, values):
        shape = (1, 1, -1) if self.data_format == "channels_last" else (-1, 1, 1)
        return ops.reshape(ops.convert_to_tensor(values, self.compute_dtype), shape)

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            return (x / 255.0 - self._per_channel(TORCH_MEAN)) / self._per_channel(TORCH_STD)
        axis = -1 if self.data_format == "channels_last" else -3
        return ops.flip(x, axis=axis) - self._per_channel(CAFFE_MEAN_BGR)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode, data_format=self.data_format)
        return config
