"""The classic Keras CIFAR-10 CNN, with augmentation as its first layers.

Layer order follows `ImageDataGenerator`: augment raw pixels, then
standardize (rescale to [0, 1] by default), then the network.
"""

import keras

# The cifar10_cnn example's augmentation (shifts 0.1, horizontal flip, "nearest").
DEFAULT_AUGMENTATION = dict(
    width_shift_range=0.1,
    height_shift_range=0.1,
    horizontal_flip=True,
    fill_mode="nearest",
)


def _stem(augmentation, standardization, input_shape):
    """Input, then augmentation layers, then standardization layers."""
    if standardization is None:
        standardization = [keras.layers.Rescaling(1.0 / 255.0, name="rescale")]
    inputs = keras.Input(input_shape, name="images")
    x = inputs
    for layer in list(augmentation) + list(standardization):
        x = layer(x)
    return inputs, x


def build_cifar10_model(
    augmentation=(),
    standardization=None,
    input_shape=(32, 32, 3),
    num_classes=10,
    name="cifar10_cnn",
    global_pooling=False,
):
    """Builds (does not compile) the CIFAR-10 CNN.

    Args:
        augmentation: layers applied first, to raw pixels (e.g.
            `[gpuaug.RandomTransform(...)]`, or `gpuaug.from_image_data_generator`'s
            list); empty for no augmentation or when a generator augments
            outside the model.
        standardization: layers after augmentation; None means
            `Rescaling(1/255)`, as `ImageDataGenerator(rescale=1/255)`.
        input_shape: (height, width, channels) of raw images.
        num_classes: size of the softmax output.
        global_pooling: average the last feature maps instead of flattening
            them ("cnn-gap"): the dense layers then no longer grow with the
            image (at 224x224 the flattened CNN has 95.6M parameters, this one
            0.1M), for larger images such as `--image-size 224 224`.

    Returns:
        A `keras.Model` taking raw pixels (any dtype) and returning class
        probabilities.
    """
    inputs, x = _stem(augmentation, standardization, input_shape)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(32, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Dropout(0.25)(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Dropout(0.25)(x)
    x = keras.layers.GlobalAveragePooling2D()(x) if global_pooling else keras.layers.Flatten()(x)
    x = keras.layers.Dense(512, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=name)


def build_tiny_model(
    augmentation=(),
    standardization=None,
    input_shape=(32, 32, 3),
    num_classes=10,
    name="tiny",
):
    """A deliberately tiny model (one strided 8-filter convolution): it trains
    much faster than a CPU generator augments, standing in for a fast
    accelerator in benchmarks. Same arguments as `build_cifar10_model`."""
    inputs, x = _stem(augmentation, standardization, input_shape)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=name)


def build_cifar10_gap_model(augmentation=(), standardization=None, input_shape=(224, 224, 3), num_classes=10,
                            name="cifar10_cnn_gap"):
    """The CIFAR-10 CNN with global average pooling (see `build_cifar10_model`)."""
    return build_cifar10_model(augmentation, standardization, input_shape, num_classes, name, global_pooling=True)


BUILDERS = {"cnn": build_cifar10_model, "cnn-gap": build_cifar10_gap_model, "tiny": build_tiny_model}
