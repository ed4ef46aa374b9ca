"""gpuaug.MixUp and gpuaug.CutMix against Keras 3's own layers
(keras.layers.MixUp, keras.layers.CutMix): Keras' transformation dicts
replayed through both, the drawn parameters' distributions compared with
Keras' (fixed seeds: deterministic), XLA on TensorFlow where Keras' layers
fail, TrainWithMixing in `fit` (labels mixed with the images' draw), saving,
inference. TensorFlow in this process; JAX and PyTorch in fresh interpreters."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

import gpuaug
from conftest import run_python
from gpuaug import mixing

P_MIN = 1e-3  # fixed seeds: each p-value below is one fixed number


def one_hot(indices, classes):
    return np.eye(classes, dtype="float32")[indices]


def equiprobable_chisquare(samples, distribution, bins=20):
    """p-value of a chi-square test of `samples` in `bins` bins of equal
    probability under `distribution` (a scipy frozen distribution). Unlike
    a KS test it takes float32's atoms at 0 and 1 (draws nearer than float32
    resolves) inside the end bins."""
    edges = distribution.ppf(np.linspace(0, 1, bins + 1))
    counts = np.histogram(np.clip(samples, edges[0], edges[-1]), bins=edges)[0]
    return stats.chisquare(counts).pvalue


def clipped(values, eps=1e-6):
    """Values in [eps, 1 - eps] for a two-sample KS test: Keras' x / (x + y)
    and gpuaug's sigmoid round draws within ~1e-7 of 0 or 1 to 0 or 1 at
    slightly different places; the clip makes both atoms the same."""
    return np.clip(np.asarray(values, "float64"), eps, 1 - eps)


def box_extent(masks, data_format="channels_last"):
    """(widths, heights, left columns, top rows) in pixels of (N, H, W, C)
    (or channels first) boolean box masks; only non-empty boxes."""
    masks = np.asarray(masks)
    plane = masks[..., 0] if data_format == "channels_last" else masks[:, 0]
    columns, rows = plane.any(axis=1), plane.any(axis=2)
    keep = columns.any(axis=1)
    columns, rows = columns[keep], rows[keep]
    return columns.sum(1), rows.sum(1), columns.argmax(1), rows.argmax(1)


# XLA on TensorFlow ---------------------------------------------------------


@pytest.mark.parametrize("name", ["MixUp", "CutMix"])
def test_keras_layers_fail_under_xla_and_gpuaug_compiles(name):
    images = np.random.RandomState(0).uniform(0, 255, (6, 12, 10, 3)).astype("float32")
    labels = one_hot([0, 1, 2, 0, 1, 2], 3)
    keras_layer = getattr(keras.layers, name)(seed=1)

    @tf.function(jit_compile=True)
    def with_keras(images, labels):
        return keras_layer({"images": images, "labels": labels})

    # Keras' Beta draw is tf.random.stateless_gamma, which XLA cannot compile;
    # the layer does not say supports_jit = False, so Keras keeps jit_compile on.
    with pytest.raises(tf.errors.InvalidArgumentError, match="StatelessRandomGammaV3"):
        with_keras(images, labels)
    assert keras_layer.supports_jit

    layer = getattr(gpuaug, name)(seed=1)

    @tf.function(jit_compile=True)
    def with_gpuaug(images, labels):
        return layer({"images": images, "labels": labels})

    first, second = with_gpuaug(images, labels), with_gpuaug(images, labels)
    assert first["images"].shape == images.shape and first["images"].dtype == tf.float32
    np.testing.assert_allclose(np.sum(first["labels"], axis=1), 1.0, atol=1e-6)
    assert not np.array_equal(first["labels"], second["labels"])  # the generator advances in the compiled function


def draw_mix_up(seed):
    return mixing.sample_mix_up(16, 0.3, seed)


def draw_cut_mix(seed):
    return mixing.sample_cut_mix(16, 12, 20, (0.2, 0.9), seed)


def as_numbers(transformation):
    return {key: np.asarray(value, "float64") for key, value in transformation.items()}


@pytest.mark.parametrize("draw", [draw_mix_up, draw_cut_mix])
def test_a_drawn_seed_gives_fixed_draws_under_xla(draw):
    """A (2,) seed tensor (how a compiled function gets fresh draws): the same
    draws for the same seed, others for another. (TensorFlow's stateless
    random ops pick another algorithm under XLA, so compiled draws are not
    the eager ones; without XLA they are.)"""
    seed, other = tf.constant([5, 9], dtype="int64"), tf.constant([5, 10], dtype="int64")
    compiled = tf.function(draw, jit_compile=True)
    first, again, changed = as_numbers(compiled(seed)), as_numbers(compiled(seed)), as_numbers(compiled(other))
    for key in first:
        np.testing.assert_array_equal(first[key], again[key], err_msg=key)
    assert not np.array_equal(first["mix_weight"], changed["mix_weight"])
    eager, graph = as_numbers(draw(seed)), as_numbers(tf.function(draw)(seed))
    for key in eager:
        np.testing.assert_allclose(graph[key], eager[key], rtol=1e-6, atol=1e-6, err_msg=key)


# Keras' transformation dicts replayed -------------------------------------


def test_mix_up_replays_keras_transformation(cifar_test_images):
    images, labels = cifar_test_images[:16], one_hot(np.arange(16) % 10, 10)
    keras_layer, layer = keras.layers.MixUp(alpha=0.4, seed=3), gpuaug.MixUp(alpha=0.4)
    transformation = keras_layer.get_random_transformation(images)
    expected_images = keras_layer.transform_images(images, transformation)
    expected_labels = keras_layer.transform_labels(labels, transformation)
    np.testing.assert_allclose(layer.transform_images(images, transformation), expected_images, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(mixing.mix_up_images(images, transformation), expected_images, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(layer.transform_labels(labels, transformation), expected_labels, atol=1e-6)
    np.testing.assert_allclose(mixing.mix_labels(labels, transformation), expected_labels, atol=1e-6)
    assert not np.allclose(expected_images, images)  # the replay mixes

    # And gpuaug's own draw through Keras' functions.
    ours = layer.get_random_transformation(images)
    assert set(ours) == set(transformation)
    np.testing.assert_allclose(layer.transform_images(images, ours), keras_layer.transform_images(images, ours),
                               rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(layer.transform_labels(labels, ours), keras_layer.transform_labels(labels, ours),
                               atol=1e-6)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_cut_mix_replays_keras_transformation(data_format):
    shape = (12, 14, 22, 3) if data_format == "channels_last" else (12, 3, 14, 22)  # not square
    images = np.random.RandomState(1).uniform(0, 255, shape).astype("float32")
    labels = one_hot(np.arange(12) % 4, 4)
    keras_layer = keras.layers.CutMix(factor=(0.6, 1.0), seed=4, data_format=data_format)
    layer = gpuaug.CutMix(factor=(0.6, 1.0), data_format=data_format)
    transformation = keras_layer.get_random_transformation(images)
    expected_images = keras_layer.transform_images(images, transformation)
    expected_labels = keras_layer.transform_labels(labels, transformation)
    np.testing.assert_array_equal(layer.transform_images(images, transformation), expected_images)
    np.testing.assert_array_equal(mixing.cut_mix_images(images, transformation), expected_images)
    np.testing.assert_allclose(layer.transform_labels(labels, transformation), expected_labels, atol=1e-6)
    assert not np.array_equal(expected_images, images)

    ours = layer.get_random_transformation(images)
    assert set(transformation) <= set(ours)
    np.testing.assert_array_equal(layer.transform_images(images, ours), keras_layer.transform_images(images, ours))
    np.testing.assert_allclose(layer.transform_labels(labels, ours), keras_layer.transform_labels(labels, ours),
                               atol=1e-6)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_cut_mix_masks_and_label_weights_are_keras_for_the_drawn_boxes(data_format):
    """gpuaug's boxes through Keras' own mask and weight rule
    (`CutMix._generate_batch_mask`): the same masks and label weights."""
    height, width, channels = 14, 22, 2
    shape = (64, height, width, channels) if data_format == "channels_last" else (64, channels, height, width)
    layer = gpuaug.CutMix(seed=5, data_format=data_format)
    transformation = layer.get_random_transformation(np.zeros(shape, "float32"))
    x0, y0, x1, y1 = np.moveaxis(np.asarray(transformation["boxes"]), -1, 0)
    assert np.all(x0 >= 0) and np.all(y0 >= 0) and np.all(x1 <= width + 1e-4) and np.all(y1 <= height + 1e-4)
    masks, weight = keras.layers.CutMix(data_format=data_format)._generate_batch_mask(
        shape, tuple(tf.constant(v) for v in (x0, x1, y0, y1)))
    np.testing.assert_array_equal(np.broadcast_to(transformation["batch_masks"], shape), masks)
    np.testing.assert_allclose(transformation["mix_weight"], np.reshape(weight, -1), atol=1e-6)


# Distributions against Keras' own draws ----------------------------------


@pytest.mark.parametrize("alpha", [1e-3, 0.05, 0.2, 1.0, 5.0])
def test_log_gamma_draws_follow_the_log_gamma_distribution(alpha):
    """The gamma sampler behind the Beta draw, in log space (where alpha near
    0, CutMix's lower end, stays finite and exact in float32)."""
    generator = keras.random.SeedGenerator(12)
    draws = np.asarray(mixing._log_gamma(alpha, (40000,), generator, generator), "float64")
    assert np.all(np.isfinite(draws))
    assert stats.kstest(draws, stats.loggamma(alpha).cdf).pvalue > P_MIN


@pytest.mark.parametrize("alpha, beta", [(0.2, 0.2), (1.0, 1.0), (0.5, 2.0), (4.0, 4.0)])
def test_beta_draws_follow_the_beta_distribution(alpha, beta):
    generator = keras.random.SeedGenerator(11)
    draws = np.asarray(mixing.sample_beta((40000,), alpha, beta, generator, generator), "float64")
    assert np.all((draws >= 0) & (draws <= 1))
    assert equiprobable_chisquare(draws, stats.beta(alpha, beta)) > P_MIN


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_mix_up_weights_and_permutations_follow_keras(alpha):
    images = np.zeros((20000, 1, 1, 1), "float32")
    keras_draw = keras.layers.MixUp(alpha=alpha, seed=1).get_random_transformation(images)
    ours = gpuaug.MixUp(alpha=alpha, seed=1).get_random_transformation(images)
    assert stats.ks_2samp(clipped(ours["mix_weight"]), clipped(keras_draw["mix_weight"])).pvalue > P_MIN
    for draw in (keras_draw, ours):
        assert sorted(np.asarray(draw["permutation_order"]).tolist()) == list(range(20000))

    # Where image 0 of a batch of 8 takes its partner from, over 400 batches.
    keras_layer, layer = keras.layers.MixUp(alpha=alpha, seed=2), gpuaug.MixUp(alpha=alpha, seed=2)
    batch = np.zeros((8, 1, 1, 1), "float32")
    partners = {name: [int(draw(batch)["permutation_order"][0]) for _ in range(400)]
                for name, draw in (("keras", keras_layer.get_random_transformation),
                                   ("gpuaug", layer.get_random_transformation))}
    for name, values in partners.items():
        assert stats.chisquare(np.bincount(values, minlength=8)).pvalue > P_MIN, name


def test_cut_mix_boxes_and_weights_follow_keras():
    # One alpha (a fixed factor): one large batch each.
    images = np.zeros((4000, 24, 32, 1), "float32")
    keras_draw = keras.layers.CutMix(factor=(0.5, 0.5), seed=1).get_random_transformation(images)
    ours = gpuaug.CutMix(factor=(0.5, 0.5), seed=1).get_random_transformation(images)
    assert stats.ks_2samp(clipped(ours["mix_weight"]), clipped(np.reshape(keras_draw["mix_weight"], -1))).pvalue > P_MIN
    for name, keras_values, our_values in zip(("width", "height", "left", "top"), box_extent(keras_draw["batch_masks"]),
                                              box_extent(ours["batch_masks"])):
        assert stats.ks_2samp(our_values, keras_values).pvalue > P_MIN, name

    # The default factor (alpha uniform in [0, 1], one per batch): many batches.
    images = np.zeros((32, 8, 8, 1), "float32")
    keras_layer, layer = keras.layers.CutMix(seed=2), gpuaug.CutMix(seed=2)
    weights = {name: np.concatenate([np.reshape(draw(images)["mix_weight"], -1) for _ in range(150)])
               for name, draw in (("keras", keras_layer.get_random_transformation),
                                  ("gpuaug", layer.get_random_transformation))}
    assert stats.ks_2samp(clipped(weights["gpuaug"]), clipped(weights["keras"])).pvalue > P_MIN


# fit ------------------------------------------------------------------------

CLASSES = 5


def labelled_images(size, count=64):
    """Image i filled with its one-hot label: an identity model's
    prediction is then the mixed image's label mix."""
    labels = np.random.RandomState(0).randint(0, CLASSES, count)
    images = np.broadcast_to(one_hot(labels, CLASSES)[:, None, None, :], (count, size, size, CLASSES)).copy()
    return images, labels


def identity_model(size):
    return keras.Sequential([keras.Input((size, size, CLASSES)), keras.layers.GlobalAveragePooling2D(),
                             keras.layers.Dense(CLASSES, kernel_initializer="identity", use_bias=False)])


def cut_mix_bound(size):
    """How far a box's pixel fraction can be from its real area fraction
    (CutMix's label weight): a box of a x b pixels covers between
    floor and ceil of each side, |count - a b| <= a + b + 1."""
    return (2 * size + 1) / size**2


MIXINGS = {
    "mixup": lambda: gpuaug.MixUp(alpha=0.4, seed=1),
    "cutmix": lambda: gpuaug.CutMix(seed=2),
    "both": lambda: [gpuaug.MixUp(alpha=0.4, seed=1), gpuaug.MixUp(alpha=1.0, seed=3)],
}


@pytest.mark.parametrize("name", sorted(MIXINGS))
def test_fit_mixes_the_labels_with_the_images_draw_under_xla(name):
    size = 16
    images, labels = labelled_images(size)
    trainer = gpuaug.TrainWithMixing(identity_model(size), MIXINGS[name](), seed=4)
    trainer.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=True)
    history = trainer.fit(images, labels, batch_size=16, epochs=2, verbose=0)  # class indices: one-hot inside
    assert trainer.jit_compile is True
    losses = history.history["loss"]
    if name == "cutmix":
        assert max(losses) < cut_mix_bound(size) ** 2
    else:
        assert max(losses) < 1e-10  # the labels were mixed with the images' own draw

    # Eagerly: predictions (= the mixed images' label mix) against the mixed labels.
    outputs = trainer(images[:16], training=True)
    mixed_labels, predictions = trainer._targets(labels[:16], outputs)
    tolerance = cut_mix_bound(size) if name == "cutmix" else 1e-5  # float32 sums of 256 pixels
    np.testing.assert_allclose(predictions, mixed_labels, atol=tolerance)
    assert not np.allclose(mixed_labels, one_hot(labels[:16], CLASSES))


@pytest.mark.slow
def test_a_list_chooses_one_layer_per_batch_uniformly():
    """[MixUp, CutMix]: each batch is one layer's (CutMix's pixels are each
    image's own or its partner's; MixUp's blends are neither), each layer
    about half the time, its weights and permutation with it."""
    images = np.random.RandomState(3).uniform(0, 1, (4, 6, 6, 1)).astype("float32")
    trainer = gpuaug.TrainWithMixing(keras.Sequential([]), [gpuaug.MixUp(1.0, seed=1), gpuaug.CutMix(seed=2)],
                                     seed=3)
    chosen_cut_mix = 0
    for _ in range(200):
        mixed, weight, order = (np.asarray(value) for value in trainer._mix(images))
        partners = images[order]
        pasted = np.all((mixed == images) | (mixed == partners))
        blended = np.allclose(mixed, weight[:, None, None, None] * images
                              + (1 - weight[:, None, None, None]) * partners, atol=1e-6)
        assert pasted or blended
        if pasted and not blended:
            fraction = np.mean(mixed != images, axis=(1, 2, 3))  # pixels taken, against 1 - weight
            others = order != np.arange(4)  # an image paired with itself keeps its pixels
            assert np.all(np.abs(fraction - (1 - weight))[others] <= cut_mix_bound(6) + 1e-6)
        chosen_cut_mix += bool(pasted and not blended)
    assert stats.binomtest(chosen_cut_mix, 200).pvalue > P_MIN


@pytest.mark.slow
def test_fit_with_augmentation_first_and_a_real_loss():
    images, labels = labelled_images(8)
    model = keras.Sequential([keras.Input((8, 8, CLASSES)), keras.layers.Flatten(),
                              keras.layers.Dense(CLASSES, activation="softmax")])
    trainer = gpuaug.TrainWithMixing(model, [gpuaug.MixUp(0.2, seed=1), gpuaug.CutMix(seed=2)],
                                     augmentation=gpuaug.RandomTransform(rotation_range=10, horizontal_flip=True,
                                                                         seed=3), seed=4)
    trainer.compile("adam", "categorical_crossentropy", metrics=["accuracy"], jit_compile=True)
    history = trainer.fit(images, one_hot(labels, CLASSES), batch_size=16, epochs=1, verbose=0,
                          validation_data=(images, labels))  # validation labels as class indices
    assert trainer.jit_compile is True
    assert all(np.isfinite(history.history[key][-1]) for key in ("loss", "accuracy", "val_loss", "val_accuracy"))
    np.testing.assert_allclose(trainer.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-6)


def test_a_mixing_layer_inside_a_model_compiles_keras_own_does_not():
    images, labels = labelled_images(8, count=32)

    def fit(layer):
        model = keras.Sequential([keras.Input((8, 8, CLASSES)), layer, keras.layers.Flatten(),
                                  keras.layers.Dense(CLASSES)])
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
        history = model.fit(images, labels, batch_size=16, epochs=1, verbose=0)
        return model.jit_compile, history.history["loss"][-1]

    jit, loss = fit(gpuaug.MixUp(seed=1))
    assert jit is True and np.isfinite(loss)
    with pytest.raises(tf.errors.InvalidArgumentError, match="StatelessRandomGammaV3"):
        fit(keras.layers.MixUp(seed=1))


# Inference, saving, arguments ---------------------------------------------


@pytest.mark.parametrize("name", ["MixUp", "CutMix"])
def test_identity_at_inference(name):
    images = np.random.RandomState(2).uniform(0, 255, (6, 10, 12, 3)).astype("float32")
    labels = one_hot([0, 1, 2, 3, 0, 1], 4)
    layer = getattr(gpuaug, name)(seed=1)
    np.testing.assert_array_equal(layer(images, training=False), images)
    outputs = layer({"images": images, "labels": labels}, training=False)
    np.testing.assert_array_equal(outputs["images"], images)
    np.testing.assert_array_equal(outputs["labels"], labels)
    assert layer.get_random_transformation(images, training=False) is None
    np.testing.assert_array_equal(layer(images[0]), images[0])  # one image: nothing to mix with
    assert not np.array_equal(layer(images), images)  # training=True by default, as Keras' layers


@pytest.mark.slow
def test_save_and_reload(tmp_path):
    images, labels = labelled_images(8, count=32)
    model = keras.Sequential([keras.Input((8, 8, CLASSES)), gpuaug.MixUp(alpha=0.3, seed=5),
                              gpuaug.CutMix(factor=(0.2, 0.7), seed=6, data_format="channels_last"),
                              keras.layers.Flatten(), keras.layers.Dense(CLASSES)])
    model.save(tmp_path / "layers.keras")
    reloaded = keras.saving.load_model(tmp_path / "layers.keras")
    for index in (0, 1):
        assert type(reloaded.layers[index]) is type(model.layers[index])
        assert reloaded.layers[index].get_config() == model.layers[index].get_config()
    assert reloaded.layers[1].factor == (0.2, 0.7) and reloaded.layers[0].alpha == 0.3

    classifier = keras.Sequential([keras.Input((8, 8, CLASSES)), keras.layers.Flatten(),
                                   keras.layers.Dense(CLASSES, activation="softmax")])
    trainer = gpuaug.TrainWithMixing(classifier, [gpuaug.MixUp(seed=1), gpuaug.CutMix(seed=2)],
                                     augmentation=gpuaug.RandomTransform(rotation_range=5, seed=3), seed=4)
    trainer.compile("adam", "categorical_crossentropy", jit_compile=True)
    trainer.fit(images, labels, batch_size=16, epochs=1, verbose=0)
    trainer.save(tmp_path / "trainer.keras")
    again = keras.saving.load_model(tmp_path / "trainer.keras")
    assert isinstance(again, gpuaug.TrainWithMixing)
    assert [type(layer) for layer in again.mixing] == [gpuaug.MixUp, gpuaug.CutMix]
    assert isinstance(again.augmentation, gpuaug.RandomTransform) and again.seed == 4
    np.testing.assert_allclose(again.predict(images, verbose=0), trainer.predict(images, verbose=0), rtol=1e-6)
    again.fit(images, labels, batch_size=16, epochs=1, verbose=0)  # compiled state restored: trains on

    trainer.model.save(tmp_path / "classifier.keras")  # the model alone: what to export
    alone = keras.saving.load_model(tmp_path / "classifier.keras")
    np.testing.assert_allclose(alone.predict(images, verbose=0), trainer.predict(images, verbose=0), rtol=1e-6)


def test_seeded_draws_repeat_and_advance():
    images = np.zeros((8, 6, 6, 1), "float32")
    first, again = gpuaug.MixUp(seed=7), gpuaug.MixUp(seed=7)
    a, b = first.get_random_transformation(images), again.get_random_transformation(images)
    np.testing.assert_array_equal(a["mix_weight"], b["mix_weight"])
    np.testing.assert_array_equal(a["permutation_order"], b["permutation_order"])
    assert not np.array_equal(a["mix_weight"], first.get_random_transformation(images)["mix_weight"])
    # Another layer (and RandomTransform) given the same seed draws other numbers.
    cut = gpuaug.CutMix(seed=7).get_random_transformation(images)
    assert not np.array_equal(a["permutation_order"], cut["permutation_order"])


def test_arguments_are_checked():
    for alpha in (0, -1.0, float("nan"), float("inf"), "0.2", True, 1e-39, 1e39):
        with pytest.raises(ValueError, match="alpha"):
            gpuaug.MixUp(alpha=alpha)
    for factor in (1.5, -0.1, (0.2, 1.2), (0.1, 0.2, 0.3), "1"):
        with pytest.raises(ValueError, match="factor"):
            gpuaug.CutMix(factor=factor)
    assert gpuaug.CutMix(factor=0.4).factor == (0.0, 0.4) and gpuaug.CutMix(factor=[0.9, 0.3]).factor == (0.3, 0.9)
    with pytest.raises(ValueError, match="seed"):
        gpuaug.MixUp(seed=-1)
    images = np.zeros((4, 6, 6, 3), "float32")
    with pytest.raises(ValueError, match="segmentation_masks"):
        gpuaug.MixUp()({"images": images, "segmentation_masks": images})
    with pytest.raises(ValueError, match="mixing"):
        gpuaug.TrainWithMixing(keras.Sequential([]), [])
    with pytest.raises(ValueError, match="dict"):
        gpuaug.TrainWithMixing(keras.Sequential([]), gpuaug.MixUp())({"images": images}, training=True)


# JAX and PyTorch ------------------------------------------------------------

OTHER_BACKEND = """
import json, numpy as np, keras, gpuaug, scipy.stats as stats
from gpuaug import mixing
backend = keras.backend.backend()
result = {"backend": backend}
rng = np.random.RandomState(0)
images = rng.uniform(0, 255, (12, 14, 22, 3)).astype("float32")
labels = np.eye(4, dtype="float32")[np.arange(12) % 4]
close = lambda a, b, tol: bool(np.allclose(np.asarray(a), np.asarray(b), atol=tol))

# Keras' own dicts, drawn on this backend, replayed through both.
kmix, kcut = keras.layers.MixUp(alpha=0.4, seed=3), keras.layers.CutMix(factor=(0.6, 1.0), seed=4)
t = kmix.get_random_transformation(images)
result["mixup_replay"] = (close(gpuaug.MixUp().transform_images(images, t), kmix.transform_images(images, t), 1e-3)
                          and close(gpuaug.MixUp().transform_labels(labels, t), kmix.transform_labels(labels, t), 1e-6))
t = kcut.get_random_transformation(images)
cut = gpuaug.CutMix()
result["cutmix_replay"] = (close(cut.transform_images(images, t), kcut.transform_images(images, t), 0)
                           and close(cut.transform_labels(labels, t), kcut.transform_labels(labels, t), 1e-6))
ours = gpuaug.CutMix(seed=5).get_random_transformation(images)
x0, y0, x1, y1 = np.moveaxis(np.asarray(ours["boxes"]), -1, 0)
masks, weight = kcut._generate_batch_mask(images.shape, tuple(keras.ops.convert_to_tensor(v) for v in (x0, x1, y0, y1)))
result["cutmix_masks"] = (close(np.broadcast_to(np.asarray(ours["batch_masks"]), images.shape), masks, 0)
                          and close(ours["mix_weight"], np.reshape(np.asarray(weight), -1), 1e-6))

# The Beta draw on this backend.
generator = keras.random.SeedGenerator(11)
draws = np.asarray(mixing.sample_beta((40000,), 0.3, 0.3, generator, generator), "float64")
edges = stats.beta(0.3, 0.3).ppf(np.linspace(0, 1, 21))
result["beta_p"] = float(stats.chisquare(np.histogram(np.clip(draws, 0, 1), bins=edges)[0]).pvalue)

if backend == "jax":  # the draw functions under jax.jit, fresh draws from a traced seed
    import jax
    seed = keras.random.SeedGenerator(2).next()
    for name, draw in (("mixup", lambda s: mixing.sample_mix_up(16, 0.3, s)),
                       ("cutmix", lambda s: mixing.sample_cut_mix(16, 12, 20, (0.2, 0.9), s))):
        eager, jitted = draw(seed), jax.jit(draw)(seed)
        result[f"jit_{name}"] = all(close(np.asarray(jitted[k], "float64"), np.asarray(eager[k], "float64"), 1e-5)
                                    for k in eager)

# A tf.data pipeline on this backend (a TensorFlow graph): the layer switches to TensorFlow's functions.
import tensorflow as tf
dataset = tf.data.Dataset.from_tensor_slices({"images": images, "labels": labels}).batch(6).map(gpuaug.MixUp(seed=1))
result["tf_data"] = [tuple(batch["images"].shape) for batch in dataset.as_numpy_iterator()] == [(6, 14, 22, 3)] * 2

# fit with jit_compile: image i filled with its one-hot label, an identity model:
# the loss is 0 only if the labels were mixed with the images' draw.
classes, size = 5, 16
indices = np.random.RandomState(0).randint(0, classes, 64)
filled = np.broadcast_to(np.eye(classes, dtype="float32")[indices][:, None, None, :], (64, size, size, classes)).copy()
for name, make in (("mixup", lambda: gpuaug.MixUp(0.4, seed=1)), ("cutmix", lambda: gpuaug.CutMix(seed=2)),
                   ("both", lambda: [gpuaug.MixUp(0.4, seed=1), gpuaug.CutMix(seed=3)])):
    model = keras.Sequential([keras.Input((size, size, classes)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(classes, kernel_initializer="identity", use_bias=False)])
    trainer = gpuaug.TrainWithMixing(model, make(), seed=4)
    trainer.compile(keras.optimizers.SGD(0.0), "mse", jit_compile=True)
    history = trainer.fit(filled, indices, batch_size=16, epochs=1, verbose=0)
    result[f"fit_{name}"] = [bool(trainer.jit_compile), float(max(history.history["loss"]))]
result["inference"] = bool(np.array_equal(np.asarray(gpuaug.CutMix(seed=1)(images, training=False)), images))
print("RESULT", json.dumps(result))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends(backend):
    completed = run_python(OTHER_BACKEND, backend=backend, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    assert result["backend"] == backend
    for key in ("mixup_replay", "cutmix_replay", "cutmix_masks", "tf_data", "inference"):
        assert result[key] is True, key
    assert result["beta_p"] > P_MIN
    if backend == "jax":
        assert result["jit_mixup"] and result["jit_cutmix"]
    bound = (2 * 16 + 1) / 16**2
    assert result["fit_mixup"][0] and result["fit_mixup"][1] < 1e-10
    assert result["fit_cutmix"][0] and result["fit_cutmix"][1] < bound**2
    assert result["fit_both"][0] and result["fit_both"][1] < bound**2


@pytest.mark.parametrize("alpha", [1e-30, 1e30])
def test_the_accepted_alphas_edges_draw_finite_weights(alpha):
    """1e-39 was accepted and drew NaN weights (all images NaN)."""
    weights = keras.ops.convert_to_numpy(gpuaug.MixUp(alpha=alpha, seed=0).get_random_transformation(
        np.zeros((256, 4, 4, 3), "float32"))["mix_weight"])
    assert np.isfinite(weights).all() and ((weights >= 0) & (weights <= 1)).all()


def test_binary_targets_of_one_sigmoid_output_are_not_one_hot():
    """(N,) 0/1 targets against an (N, 1) output were one-hot with depth 1:
    every target became 1 - target, and the model learned the inverse."""
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(1, activation="sigmoid")])
    x = np.random.default_rng(0).uniform(0, 1, (8, 4, 4, 3)).astype("float32")
    y = np.array([0, 1] * 4, "float32")
    expected = float(keras.ops.convert_to_numpy(keras.losses.binary_crossentropy(y[:, None], model(x))).mean())
    for labels in (y, y[:, None]):
        trainer = gpuaug.TrainWithMixing(model, gpuaug.MixUp(seed=1))
        trainer.compile(loss="binary_crossentropy")
        assert trainer.evaluate(x, labels, verbose=0) == pytest.approx(expected, rel=1e-5)


def test_integer_one_hot_labels_mix_as_floats_on_every_backend():
    """int64 one-hot labels failed in fit on TensorFlow (int64 times float32)."""
    transformation = gpuaug.MixUp(seed=1).get_random_transformation(np.zeros((4, 2, 2, 1), "float32"))
    labels = np.eye(2, dtype="int64")[[0, 1, 1, 0]]
    mixed = mixing.mix_labels(labels, transformation)
    expected = mixing.mix_labels(labels.astype("float32"), transformation)
    assert keras.backend.standardize_dtype(mixed.dtype) == "float32"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mixed), keras.ops.convert_to_numpy(expected))
    model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(2, "softmax")])
    trainer = gpuaug.TrainWithMixing(model, gpuaug.MixUp(seed=1))
    trainer.compile(loss="categorical_crossentropy", jit_compile=False)
    trainer.fit(np.ones((8, 2, 2, 1), "float32"), np.eye(2, dtype="int64")[[0, 1] * 4], batch_size=4, verbose=0)


def test_float16_labels_mix_in_their_dtype():
    """Under mixed_float16 a dict's float16 labels met float32 weights (an
    InvalidArgumentError on TensorFlow; Keras' CutMix mixes them)."""
    transformation = gpuaug.CutMix(seed=1).get_random_transformation(np.zeros((4, 8, 8, 3), "float32"))
    labels = np.eye(2, dtype="float16")[[0, 1, 0, 1]]
    mixed = mixing.mix_labels(keras.ops.convert_to_tensor(labels), transformation)
    assert keras.backend.standardize_dtype(mixed.dtype) == "float16"
    reference = keras.ops.convert_to_numpy(mixing.mix_labels(labels.astype("float32"), transformation))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(mixed).astype("float32"), reference, atol=1e-3)

