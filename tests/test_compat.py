"""`from_image_data_generator` reproduces a configured generator: the random
layer gets its arguments, and each standardization layer matches the
generator's own `standardize` (called per image, as `flow` does)."""

import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
from keras.src.legacy.preprocessing.image import ImageDataGenerator

import gpuaug
import preprocessing_functions
from conftest import REPO
from gpuaug.reference import reference_apply


@pytest.fixture(scope="module")
def small_images(cifar_test_images):
    """8x8 crops keep ZCA's (192, 192) matrix small."""
    return np.ascontiguousarray(cifar_test_images[:, 4:12, 10:18])


def apply_layers(layers, images, training=False):
    x = images
    for layer in layers:
        x = layer(x, training=training) if isinstance(layer, gpuaug.RandomTransform) else layer(x)
    return np.asarray(x)


def reference_standardize(generator, images):
    return np.stack([generator.standardize(np.array(image)) for image in images])


STANDARDIZATION = [
    dict(rescale=1 / 255.0),
    dict(samplewise_center=True),
    dict(samplewise_center=True, samplewise_std_normalization=True),
    dict(featurewise_center=True),
    dict(featurewise_center=True, featurewise_std_normalization=True),
    dict(rescale=1 / 255.0, featurewise_std_normalization=True, samplewise_center=True),
    dict(zca_whitening=True),
    dict(zca_whitening=True, rescale=1 / 255.0, samplewise_std_normalization=True),
]


@pytest.mark.parametrize("kwargs", STANDARDIZATION, ids=str)
def test_standardization_matches_the_generator(kwargs, small_images):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reference warns about overridden flags
        generator = ImageDataGenerator(**kwargs)
        if generator.featurewise_center or generator.zca_whitening:
            generator.fit(small_images)
        expected = reference_standardize(generator, small_images[:16])
    layers = gpuaug.from_image_data_generator(generator)
    assert not any(isinstance(layer, gpuaug.RandomTransform) for layer in layers)
    got = apply_layers(layers, small_images[:16])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_fit_from_data_leaves_the_generator_unfitted(small_images):
    generator = ImageDataGenerator(featurewise_center=True, featurewise_std_normalization=True)
    layers = gpuaug.from_image_data_generator(generator, data=small_images)
    assert generator.mean is None  # fitted a copy
    fitted = ImageDataGenerator(featurewise_center=True, featurewise_std_normalization=True)
    fitted.fit(small_images)
    np.testing.assert_allclose(
        apply_layers(layers, small_images[:8]),
        reference_standardize(fitted, small_images[:8]), rtol=1e-4, atol=1e-4)


def test_unfitted_featurewise_generator_needs_data():
    with pytest.raises(ValueError, match="not been fitted"):
        gpuaug.from_image_data_generator(dict(zca_whitening=True))


def test_random_part_and_full_pipeline_match_flow_order(small_images):
    """Augment raw pixels, then standardize: layer outputs equal the reference's
    apply_transform followed by standardize, with the layer's parameters."""
    kwargs = dict(rotation_range=20, width_shift_range=0.1, zoom_range=0.2,
                  horizontal_flip=True, channel_shift_range=20.0, fill_mode="reflect",
                  rescale=1 / 255.0, samplewise_center=True)
    generator = ImageDataGenerator(**kwargs)
    layers = gpuaug.from_image_data_generator(kwargs, seed=3)
    augment = layers[0]
    assert isinstance(augment, gpuaug.RandomTransform)
    config = augment.get_config()
    assert config["rotation_range"] == 20 and config["fill_mode"] == "reflect"
    assert config["zoom_range"] == [0.8, 1.2]
    images = small_images[:8]
    transformation = augment.get_random_transformation(images)
    x = augment.transform_images(images, transformation)
    for layer in layers[1:]:
        x = layer(x)
    expected = reference_standardize(generator, reference_apply(generator, images, transformation))
    np.testing.assert_allclose(np.asarray(x), expected, atol=1e-4)
    # At inference only the deterministic layers act.
    np.testing.assert_allclose(apply_layers(layers, images),
                               reference_standardize(generator, images), atol=1e-4)


def test_preprocessing_function_of_tensors_and_layers(small_images):
    def invert(x):
        return 255.0 - x

    with pytest.warns(UserWarning, match="'invert' is not registered: a model saved with it reloads only"):
        layers = gpuaug.from_image_data_generator(dict(preprocessing_function=invert, rescale=0.5))
    assert isinstance(layers[0], keras.layers.Lambda)
    np.testing.assert_allclose(apply_layers(layers, small_images[:4]), (255.0 - small_images[:4]) * 0.5)
    layer = keras.layers.Rescaling(2.0)
    assert gpuaug.from_image_data_generator(dict(preprocessing_function=layer))[0] is layer


def test_numpy_preprocessing_function_is_refused_with_a_reason():
    def numpy_only(x):
        return np.asarray(x)[..., ::-1].copy()

    with pytest.raises(ValueError, match="cannot run on the device.*numpy_only|numpy_only.*cannot run on the device"):
        gpuaug.from_image_data_generator(dict(preprocessing_function=numpy_only))


def test_model_with_converted_layers_saves_and_loads(tmp_path, small_images):
    generator = ImageDataGenerator(rotation_range=10, zca_whitening=True, rescale=1 / 255.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        generator.fit(small_images)
    inputs = keras.Input(small_images.shape[1:])
    x = inputs
    for layer in gpuaug.from_image_data_generator(generator, seed=0):
        x = layer(x)
    model = keras.Model(inputs, x)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(small_images[:4], verbose=0),
                               model.predict(small_images[:4], verbose=0), rtol=1e-6)


def test_not_a_generator():
    with pytest.raises(ValueError, match="ImageDataGenerator or a dict"):
        gpuaug.from_image_data_generator([1, 2])


# preprocessing_function: what a saved model needs to reload -----------------

def save_and_reload_elsewhere(layers, images, folder, imports="", load_arguments=""):
    """Builds a model of `layers`, saves it, reloads it in a fresh interpreter
    (`import gpuaug` plus `imports`) and returns (its predictions, the
    original model's, the fresh interpreter's CompletedProcess)."""
    inputs = keras.Input(images.shape[1:])
    x = inputs
    for layer in layers:
        x = layer(x)
    model = keras.Model(inputs, x)
    model.save(folder / "m.keras")
    np.save(folder / "x.npy", images)
    script = (f"import sys, numpy as np, keras, gpuaug\n{imports}\n"
              f"m = keras.models.load_model(sys.argv[1]{load_arguments})\n"
              "np.save(sys.argv[3], m.predict(np.load(sys.argv[2]), verbose=0))\n")
    result = subprocess.run([sys.executable, "-c", script, str(folder / "m.keras"), str(folder / "x.npy"),
                             str(folder / "y.npy")], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tests'}"})
    reloaded = np.load(folder / "y.npy") if result.returncode == 0 else None
    return reloaded, model.predict(images, verbose=0), result


@pytest.mark.slow
@pytest.mark.parametrize("application, mode", [("resnet50", "caffe"), ("vgg16", "caffe"), ("mobilenet_v2", "tf"),
                                               ("inception_v3", "tf"), ("densenet", "torch")])
def test_keras_applications_preprocess_input_saves_reloads_and_predicts(application, mode, small_images, tmp_path):
    function = getattr(keras.applications, application).preprocess_input
    generator = ImageDataGenerator(preprocessing_function=function, horizontal_flip=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "will not reload" warning
        layers = gpuaug.from_image_data_generator(generator, seed=0)
    preprocessing = layers[1]
    assert isinstance(preprocessing, gpuaug.ImagenetPreprocessing) and preprocessing.mode == mode
    images = small_images[:6]
    expected = reference_standardize(generator, images)
    # float32 either way; TensorFlow may divide by multiplying with the reciprocal (1 ulp).
    np.testing.assert_allclose(np.asarray(preprocessing(images)), expected, rtol=1e-6, atol=1e-6)
    reloaded, predicted, result = save_and_reload_elsewhere(layers, images, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_array_equal(reloaded, predicted)
    np.testing.assert_allclose(predicted, expected, rtol=1e-6, atol=1e-6)  # inference: no flip


def test_a_preprocess_input_that_changes_nothing_adds_no_layer():
    layers = gpuaug.from_image_data_generator(
        dict(preprocessing_function=keras.applications.efficientnet.preprocess_input, rescale=0.5))
    assert [type(layer).__name__ for layer in layers] == ["Rescaling"]


def test_imagenet_preprocessing_in_channels_first(small_images):
    images = np.ascontiguousarray(small_images[:3].transpose(0, 3, 1, 2))
    from keras.src.applications import imagenet_utils

    for mode in ("caffe", "tf", "torch"):
        layer = gpuaug.ImagenetPreprocessing(mode, "channels_first")
        np.testing.assert_allclose(np.asarray(layer(images)), imagenet_utils.preprocess_input(
            images.copy(), data_format="channels_first", mode=mode), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        gpuaug.ImagenetPreprocessing("bgr")


@pytest.mark.slow
def test_a_registered_function_reloads_where_its_module_is_imported(small_images, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layers = gpuaug.from_image_data_generator(
            dict(preprocessing_function=preprocessing_functions.registered_invert))
    reloaded, predicted, result = save_and_reload_elsewhere(layers, small_images[:4], tmp_path,
                                                            imports="import preprocessing_functions")
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_array_equal(reloaded, predicted)


@pytest.mark.slow
def test_an_unregistered_function_warns_at_conversion_and_its_model_needs_it_to_reload(small_images, tmp_path):
    function = preprocessing_functions.unregistered_invert
    with pytest.warns(UserWarning, match="custom_objects=\\{'unregistered_invert': unregistered_invert\\}"):
        layers = gpuaug.from_image_data_generator(dict(preprocessing_function=function))
    _, _, result = save_and_reload_elsewhere(layers, small_images[:4], tmp_path)
    assert result.returncode != 0 and "unregistered_invert" in result.stderr  # what the warning said
    reloaded, predicted, result = save_and_reload_elsewhere(
        layers, small_images[:4], tmp_path, imports="from preprocessing_functions import unregistered_invert",
        load_arguments=", custom_objects={'unregistered_invert': unregistered_invert}")
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_array_equal(reloaded, predicted)


def test_a_lambda_warns_that_it_needs_safe_mode_off():
    with pytest.warns(UserWarning, match="lambda.*safe_mode=False"):
        gpuaug.from_image_data_generator(dict(preprocessing_function=lambda x: x * 2.0))
