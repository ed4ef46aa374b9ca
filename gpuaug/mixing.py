"""MixUp and CutMix: Keras 3's `keras.layers.MixUp` and `keras.layers.CutMix`
in a form that compiles with XLA on TensorFlow (and jits on JAX, runs on
PyTorch).

Keras' layers draw their mixing weight from `keras.random.beta`, which on
TensorFlow is two `tf.random.stateless_gamma` draws: the op
`StatelessRandomGammaV3` has no XLA kernel, so a `tf.function(jit_compile=True)`
or `model.fit` compiled with `jit_compile=True` fails with InvalidArgumentError
("Detected unsupported operations ... StatelessRandomGammaV3"), and the layers
do not say `supports_jit = False`, so Keras keeps `jit_compile` on and the
step fails. (Their permutation, `keras.random.shuffle`, compiles: on
TensorFlow it is an argsort of uniform numbers.) Here the Beta draw is
`sample_beta`: Marsaglia and Tsang's gamma sampler with a fixed number of
candidates (a vectorized rejection: no loop, no data-dependent shape) from
`keras.random.normal` and `keras.random.uniform`, in log space.

As in the rest of gpuaug, drawing and applying are separate pure functions:
`sample_mix_up` and `sample_cut_mix` return the dict of Keras'
`get_random_transformation` (same keys, same meaning), `mix_up_images`,
`cut_mix_images` and `mix_labels` apply a given dict (Keras' or gpuaug's) as
Keras' `transform_images` and `transform_labels` do. The layers `MixUp` and
`CutMix` take Keras' arguments and dict convention ({"images", "labels"}).

A layer inside a model sees only the inputs, so it cannot mix the labels
`fit` passes to the loss: `TrainWithMixing` wraps a model so that `fit(x, y)`
mixes the images in `call` and the labels in `compute_loss` with the same
draw, inside the compiled training step, on all three backends.
"""

import keras

from gpuaug import backend, config as config_lib
from gpuaug.backend import ops, random
from gpuaug.distribute import ReplicaSeedGenerator, current_seed_generator
from gpuaug.training import TargetsFromPredictions

# A call draws one seed from the layer's generator (which advances once);
# each of its random calls takes that seed plus k * STREAM_OFFSET on both
# elements, k from the tables below. No k is 0, 8 or 16 (RandomTransform's
# streams: `sampling.STREAM_OFFSET` is 8 * this offset), and the MixUp and
# CutMix k differ, so layers given the same integer seed (train.py's --seed
# for all of them) draw independent numbers; streams could meet only 2**26
# (6.7 * 10**7) calls apart. On TensorFlow (int64 state taken modulo
# 2**31 - 2) every k * 2**26 here stays below 2**31.
STREAM_OFFSET = 2**26
MIX_UP_STREAMS = {"permutation": 3, "beta_normal": 4, "beta_uniform": 5}
CUT_MIX_STREAMS = {"permutation": 6, "beta_normal": 7, "beta_uniform": 9, "alpha": 10, "box": 11}
CHOICE_STREAM = 12  # TrainWithMixing's choice between several mixing layers

# Candidates per gamma draw. Marsaglia and Tsang's sampler for a shape >= 1
# (here alpha + 1) accepts a candidate with probability above 0.95, so all
# 12 are rejected with probability below 0.05**12 (2.4e-16) per draw; then the
# draw is the sampler's mode-like value d (v = 1), a bias far below float32's.
GAMMA_CANDIDATES = 12
# Keras' CutMix adds this to its alpha (a Beta(0, 0) is undefined).
CUT_MIX_ALPHA_EPSILON = 1e-6


def _streams(value, table):
    """{name: a `DrawnSeed` for stream `table[name]` of a call's (2,) seed
    `value`}. One function for all of a table's streams (PyTorch's
    torch.compile would otherwise specialize a function per stream index)."""
    offsets = ops.convert_to_tensor([[index * STREAM_OFFSET] * 2 for index in table.values()], dtype=value.dtype)
    seeds = value[None, :] + offsets
    return {name: backend.DrawnSeed(seeds[row]) for row, name in enumerate(table)}


def _seed_value(seed):
    """The call's (2,) seed tensor from a `SeedGenerator` (advanced once), an
    integer in [0, 2**32 - 1], None (Keras' global generator) or a (2,) seed
    tensor already drawn (how a jitted function gets fresh draws)."""
    if seed is not None and not isinstance(seed, keras.random.SeedGenerator):
        if ops.is_tensor(seed) and tuple(ops.shape(seed)) == (2,):
            return ops.cast(seed, backend.seed_dtype())
        seed = config_lib.parse_seed(seed)
    return backend.draw_seed(seed)


def _log_gamma(alpha, shape, normal_seed, uniform_seed):
    """log of Gamma(alpha, 1) draws of `shape` (alpha: > 0, float32,
    broadcastable to `shape`).

    Gamma(alpha) = Gamma(alpha + 1) * U ** (1 / alpha) for every alpha > 0
    (Marsaglia and Tsang 2000, section 6), and Gamma(alpha + 1) comes from
    their rejection sampler (shape >= 1): d = alpha + 1 - 1/3, c = 1/sqrt(9 d),
    x ~ N(0, 1), v = (1 + c x)**3, accepted when v > 0 and
    log u < x**2 / 2 + d - d v + d log v; the result is d v. The first of
    `GAMMA_CANDIDATES` accepted candidates is kept. In log space, so that
    alpha near 0 (U ** (1 / alpha) underflows) still gives finite logs."""
    alpha = ops.cast(alpha, "float32")
    d = alpha + (1.0 - 1.0 / 3.0)
    c = 1.0 / ops.sqrt(9.0 * d)
    x = random.normal((GAMMA_CANDIDATES, *shape), dtype="float32", seed=normal_seed)
    # 1 - u: in (0, 1], so every log is finite.
    u = 1.0 - random.uniform((GAMMA_CANDIDATES + 1, *shape), dtype="float32", seed=uniform_seed)
    v = (1.0 + c * x) ** 3
    positive = v > 0.0
    log_v = ops.log(ops.where(positive, v, 1.0))
    accepted = ops.logical_and(positive, ops.log(u[:GAMMA_CANDIDATES]) < 0.5 * x * x + d - d * v + d * log_v)
    first = ops.logical_and(accepted, ops.cumsum(ops.cast(accepted, "int32"), axis=0) == 1)
    # None accepted: log v = 0 (the draw is d).
    log_gamma_plus_one = ops.log(d) + ops.sum(ops.where(first, log_v, 0.0), axis=0)
    return log_gamma_plus_one + ops.log(u[GAMMA_CANDIDATES]) / alpha


def sample_beta(shape, alpha, beta, normal_seed, uniform_seed):
    """Beta(alpha, beta) draws (float32 in [0, 1]) of `shape`, as
    `keras.random.beta` gives (X / (X + Y), X ~ Gamma(alpha), Y ~ Gamma(beta)),
    written as sigmoid(log X - log Y) from `_log_gamma`: no gamma op, so it
    compiles with XLA on TensorFlow. `alpha`, `beta`: floats or float32
    tensors broadcastable to `shape`, > 0. The seeds: `SeedGenerator`s or
    `backend.DrawnSeed`s, one for the normal and one for the uniform draws."""
    shape = tuple(shape)
    concentrations = ops.stack([ops.broadcast_to(ops.cast(alpha, "float32"), shape),
                                ops.broadcast_to(ops.cast(beta, "float32"), shape)])
    log_gamma = _log_gamma(concentrations, (2, *shape), normal_seed, uniform_seed)
    return ops.sigmoid(log_gamma[0] - log_gamma[1])


def _permutation(batch_size, seed):
    # As Keras' layers: a shuffle of arange (on TensorFlow, an argsort of
    # uniform numbers, which compiles with XLA).
    return ops.cast(random.shuffle(ops.arange(0, batch_size, dtype="int32"), seed=seed), "int32")


def sample_mix_up(batch_size, alpha=0.2, seed=None):
    """Draws a MixUp transformation for a batch: the dict of Keras'
    `MixUp.get_random_transformation`.

    Args:
        batch_size: an int or a scalar tensor.
        alpha: the Beta distribution's concentration (> 0), as Keras'.
        seed: a `keras.random.SeedGenerator` (advanced once per call), an
            integer in [0, 2**32 - 1], None (Keras' global generator), or a
            (2,) seed tensor already drawn.

    Returns:
        {"mix_weight": (N,) float32, each image's own weight, from
        Beta(alpha, alpha); "permutation_order": (N,) int32, a uniformly
        random permutation: image i is mixed with image permutation_order[i]
        (possibly itself, as in Keras)}.
    """
    value = _seed_value(seed)
    streams = _streams(value, MIX_UP_STREAMS)
    mix_weight = sample_beta((batch_size,), alpha, alpha, streams["beta_normal"], streams["beta_uniform"])
    return {"mix_weight": mix_weight, "permutation_order": _permutation(batch_size, streams["permutation"])}


def box_masks(height, width, boxes, data_format="channels_last"):
    """Boolean masks of the pixels inside boxes, as Keras' CutMix builds them:
    pixel (row r, column c) is inside when x0 <= c < x1 and y0 <= r < y1.

    `boxes`: (x0, x1, y0, y1), each (N,) float32 in pixels. Returns
    (N, H, W, 1) (channels_last) or (N, 1, H, W) masks, one channel that
    broadcasts over the images' channels (Keras repeats it C times)."""
    x0, x1, y0, y1 = (ops.cast(value, "float32")[:, None, None] for value in boxes)
    rows = ops.arange(0, height, dtype="float32")[None, :, None]
    columns = ops.arange(0, width, dtype="float32")[None, None, :]
    inside = ops.logical_and(ops.logical_and(columns >= x0, columns < x1),
                             ops.logical_and(rows >= y0, rows < y1))
    return inside[..., None] if data_format == "channels_last" else inside[:, None]


def sample_cut_mix(batch_size, height, width, factor=(0.0, 1.0), seed=None, data_format="channels_last"):
    """Draws a CutMix transformation for a batch of height x width images:
    the dict of Keras' `CutMix.get_random_transformation`, plus the boxes.

    Keras' distribution: alpha uniform in `factor` (lower, upper), one per
    batch, plus 1e-6; each image's lambda from Beta(alpha, alpha); a box of
    sqrt(1 - lambda) times the image's width and height (real numbers, not
    whole pixels), its top-left corner uniform over the positions that keep
    it inside the image (x and y independent), so no box is clipped.

    Returns:
        {"permutation_order": (N,) int32 (as `sample_mix_up`);
        "batch_masks": boolean, True inside the box (`box_masks`: one
        channel, (N, H, W, 1) or (N, 1, H, W)), where the image takes the
        pixels of image permutation_order[i];
        "mix_weight": (N,) float32, the label weight of the image itself:
        1 - box area / image area, from the box's real extent (as Keras:
        the pixels inside it number this on average, not exactly);
        "boxes": (N, 4) float32 (x0, y0, x1, y1) in pixels}.
    """
    lower, upper = factor
    value = _seed_value(seed)
    streams = _streams(value, CUT_MIX_STREAMS)
    alpha = random.uniform((), minval=lower, maxval=upper, dtype="float32",
                           seed=streams["alpha"]) + CUT_MIX_ALPHA_EPSILON
    lam = sample_beta((batch_size,), alpha, alpha, streams["beta_normal"], streams["beta_uniform"])
    ratio = ops.sqrt(1.0 - lam)
    height_f, width_f = ops.cast(height, "float32"), ops.cast(width, "float32")
    crop_width, crop_height = ratio * width_f, ratio * height_f
    position = random.uniform((2, batch_size), dtype="float32", seed=streams["box"])
    x0 = position[0] * (width_f - crop_width)
    y0 = position[1] * (height_f - crop_height)
    x1, y1 = x0 + crop_width, y0 + crop_height
    return {
        "permutation_order": _permutation(batch_size, streams["permutation"]),
        "batch_masks": box_masks(height, width, (x0, x1, y0, y1), data_format),
        "mix_weight": 1.0 - (x1 - x0) * (y1 - y0) / (width_f * height_f),
        "boxes": ops.stack([x0, y0, x1, y1], axis=-1),
    }


def mix_up_images(images, transformation, dtype="float32"):
    """Keras' `MixUp.transform_images` for a given dict: image i becomes
    w_i * image_i + (1 - w_i) * image_{p_i} (w: "mix_weight", p:
    "permutation_order"), in `dtype`. Images (N, ...) of any layout."""
    images = ops.cast(images, dtype)
    weight = ops.cast(ops.reshape(transformation["mix_weight"], (-1, 1, 1, 1)), dtype)
    others = ops.cast(ops.take(images, transformation["permutation_order"], axis=0), dtype)
    return weight * images + (1.0 - weight) * others


def cut_mix_images(images, transformation, dtype="float32"):
    """Keras' `CutMix.transform_images` for a given dict: inside
    "batch_masks" image i takes the pixels of image permutation_order[i]
    (masks of one channel or of the images' channels), in `dtype`."""
    images = ops.cast(images, dtype)
    others = ops.take(images, transformation["permutation_order"], axis=0)
    return ops.where(transformation["batch_masks"], others, images)


def mix_labels(labels, transformation):
    """Keras' `transform_labels` of MixUp and CutMix (the same rule): label i
    becomes w_i * label_i + (1 - w_i) * label_{p_i}; labels (N, classes),
    one-hot or soft. Float labels keep their dtype (the weights are cast to
    it: float16 under a mixed policy); integer labels (one-hot as integers)
    are mixed as float32."""
    if "float" not in keras.backend.standardize_dtype(labels.dtype):
        labels = ops.cast(labels, "float32")
    others = ops.take(labels, transformation["permutation_order"], axis=0)
    weight = ops.cast(ops.reshape(transformation["mix_weight"], (-1, 1)), labels.dtype)
    return weight * labels + (1.0 - weight) * others


class _Mixing(backend.RunsInTensorFlowGraphs, keras.layers.Layer):
    """What MixUp and CutMix share: Keras' call convention and training flag,
    the seed generator, the dict keys."""

    def __init__(self, data_format=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = config_lib.standardize_data_format(data_format, keras.config.image_data_format())
        self.seed = config_lib.parse_seed(seed)
        # Draws differ between replicas of a tf.distribute strategy, as
        # RandomTransform's (gpuaug.distribute).
        self.seed_generator = ReplicaSeedGenerator(self.seed, name="seed_generator")

    def _shape(self, images):
        shape = ops.shape(images)
        if len(shape) not in (3, 4):
            raise ValueError(f"{type(self).__name__} expects a batch of images of rank 4 or one image of rank 3; "
                             f"received shape {tuple(shape)}.")
        return shape

    @backend.switches_in_tensorflow_graphs
    def get_random_transformation(self, data, training=True, seed=None):
        """Draws the batch's transformation (see `sample_mix_up`,
        `sample_cut_mix`) from `data`, images or a dict with "images"; None
        when not training or for one unbatched image (which is left as it
        is: Keras mixes it with itself). `seed` overrides the layer's
        generator."""
        images = data["images"] if isinstance(data, dict) else data
        shape = self._shape(images)
        if not training or len(shape) == 3:
            return None
        return self._sample(shape, current_seed_generator(self) if seed is None else seed)

    @backend.switches_in_tensorflow_graphs
    def transform_images(self, images, transformation=None, training=True):
        """Applies a transformation dict (this layer's or Keras' own) to
        (N, H, W, C) images; in the layer's compute dtype."""
        images = backend.as_tensor(images)
        if not training or transformation is None or len(self._shape(images)) == 3:
            return ops.cast(images, self.compute_dtype)
        return self._apply(images, transformation)

    @backend.switches_in_tensorflow_graphs
    def transform_labels(self, labels, transformation, training=True):
        """Mixes (N, classes) one-hot or soft labels with a transformation
        dict (`mix_labels`); unchanged when not training."""
        labels = backend.as_tensor(labels)
        if not training or transformation is None:
            return labels
        return mix_labels(labels, transformation)

    def call(self, data, training=True):
        if not isinstance(data, dict):
            return self.transform_images(data, self.get_random_transformation(data, training), training)
        if "images" not in data or set(data) - {"images", "labels"}:
            raise ValueError(f"{type(self).__name__} takes images or a dict {{'images': (N, H, W, C), 'labels': "
                             f"(N, classes)}} ('labels' optional); received keys {sorted(data)}.")
        transformation = self.get_random_transformation(data["images"], training)
        outputs = {"images": self.transform_images(data["images"], transformation, training)}
        if "labels" in data:
            outputs["labels"] = self.transform_labels(data["labels"], transformation, training)
        return outputs

    def compute_output_spec(self, data, training=True):
        def like(tensor, dtype):
            return keras.KerasTensor(tensor.shape, dtype=dtype)

        if not isinstance(data, dict):
            return like(data, self.compute_dtype)
        outputs = {"images": like(data["images"], self.compute_dtype)}
        if "labels" in data:
            outputs["labels"] = like(data["labels"], keras.backend.result_type(data["labels"].dtype, "float32"))
        return outputs

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, dict):
            return {key: tuple(value) for key, value in input_shape.items()}
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed, "data_format": self.data_format}


# MixUp's accepted `alpha`: the Beta draw is computed in float32, where 1e-38
# gives NaN weights and 1e39 overflows; in between every draw is finite.
ALPHA_RANGE = (1e-30, 1e30)


@keras.saving.register_keras_serializable(package="gpuaug")
class MixUp(_Mixing):
    """Keras 3's `keras.layers.MixUp`, compiling with XLA on TensorFlow.

    Each image is blended with another image of the batch (a random
    permutation), with a weight w ~ Beta(alpha, alpha) of its own:
    w * image_i + (1 - w) * image_j; labels likewise.

    Args:
        alpha: the Beta distribution's concentration, in [1e-30, 1e30]
            (`ALPHA_RANGE`; Keras' default 0.2; smaller: weights nearer 0
            or 1, less mixing).
        data_format: "channels_last" or "channels_first" (kept for Keras'
            signature; the blend does not depend on it).
        seed: None or an integer in [0, 2**32 - 1].

    Call arguments:
        data: (N, H, W, C) images, or a dict {"images": (N, H, W, C),
            "labels": (N, classes) one-hot or soft} ("labels" optional).
        training: mix when True (the default, as Keras'); otherwise return
            the input (images cast to the compute dtype).

    Output: the same structure; images in the compute dtype, labels mixed.
    In `fit`, wrap the model in `gpuaug.TrainWithMixing` to mix the labels too.
    """

    def __init__(self, alpha=0.2, data_format=None, seed=None, **kwargs):
        super().__init__(data_format=data_format, seed=seed, **kwargs)
        alpha = config_lib.parse_number("alpha", alpha)
        if not ALPHA_RANGE[0] <= alpha <= ALPHA_RANGE[1]:  # beyond it float32 draws underflow or overflow
            raise ValueError(f"`alpha` must be a number in [{ALPHA_RANGE[0]:g}, {ALPHA_RANGE[1]:g}] (> 0; the "
                             f"float32 draws stay finite there). Received: {alpha!r}")
        self.alpha = alpha

    def _sample(self, shape, seed):
        return sample_mix_up(shape[0], self.alpha, seed)

    def _apply(self, images, transformation):
        return mix_up_images(images, transformation, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


def parse_cut_mix_factor(factor):
    """Keras' CutMix `factor` as (lower, upper) in [0, 1]: a number f gives
    (0, f), a pair its sorted values."""
    message = f"`factor` must be a number or a pair of numbers in [0, 1]. Received: {factor!r}"
    if isinstance(factor, (list, tuple)):
        if len(factor) != 2:
            raise ValueError(message)
        values = sorted(config_lib.parse_number("factor", value) for value in factor)
    else:
        values = [0.0, config_lib.parse_number("factor", factor)]
    if not all(0.0 <= value <= 1.0 for value in values):
        raise ValueError(message)
    return float(values[0]), float(values[1])


@keras.saving.register_keras_serializable(package="gpuaug")
class CutMix(_Mixing):
    """Keras 3's `keras.layers.CutMix`, compiling with XLA on TensorFlow.

    Each image takes a box of pixels from another image of the batch (a
    random permutation); its label weight is 1 - the box's area fraction.
    Per batch alpha ~ Uniform(factor) (+ 1e-6); per image lambda ~
    Beta(alpha, alpha), a box of sqrt(1 - lambda) times the image's height
    and width, placed uniformly inside the image (see `sample_cut_mix`).

    Args:
        factor: Keras' argument: a number f in [0, 1] (alpha uniform in
            [0, f]) or a pair (lower, upper) in [0, 1]; (a, a) fixes alpha
            = a, the CutMix paper's Beta(a, a) (a = 1: lambda uniform).
            Default 1.0, as Keras'.
        seed: None or an integer in [0, 2**32 - 1].
        data_format: "channels_last" or "channels_first"; defaults to
            `keras.config.image_data_format()`.

    Call arguments and output: as `MixUp`'s.
    """

    def __init__(self, factor=1.0, seed=None, data_format=None, **kwargs):
        super().__init__(data_format=data_format, seed=seed, **kwargs)
        self.factor = parse_cut_mix_factor(factor)

    def _sample(self, shape, seed):
        height, width = (shape[1], shape[2]) if self.data_format == "channels_last" else (shape[2], shape[3])
        return sample_cut_mix(shape[0], height, width, self.factor, seed, self.data_format)

    def _apply(self, images, transformation):
        return cut_mix_images(images, transformation, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "factor": list(self.factor)}


def _as_class_probabilities(y, predictions):
    """Class indices, (N,) or (N, 1) against (N, classes > 1) predictions,
    as one-hot float32 (depth: the predictions' last dimension); other
    labels as they are."""
    if y is None:
        return None
    y_shape, p_shape = ops.shape(y), ops.shape(predictions)
    classes = p_shape[-1]
    if classes == 1:  # one output (a sigmoid): the labels are its targets, (N,) or (N, 1)
        return ops.reshape(y, (-1, 1)) if len(y_shape) < len(p_shape) else y
    sparse = len(y_shape) < len(p_shape) or (len(y_shape) == len(p_shape) and y_shape[-1] == 1)
    if not sparse:
        return y
    if len(y_shape) == len(p_shape):
        y = ops.squeeze(y, axis=-1)
    return ops.one_hot(ops.cast(y, "int32"), classes, dtype="float32")


@keras.saving.register_keras_serializable(package="gpuaug")
class TrainWithMixing(TargetsFromPredictions, keras.Model):
    """Fits `model` on mixed images and labels (MixUp, CutMix) with
    `fit(x, y)`, mixing inside the compiled training step.

    `call` (training) augments the images (`augmentation`, if any), draws
    one transformation, mixes the images and returns the predictions with
    the draw's "mix_weight" and "permutation_order"; `compute_loss` and
    `compute_metrics` mix the labels of the batch with the same draw
    (`mix_labels`) before Keras' loss and metrics. Nothing but `keras.ops`
    and Keras' loss hooks: TensorFlow (XLA), JAX and PyTorch alike, no
    `train_step` of its own.

    Labels: one-hot or soft (N, classes), or class indices (N,) / (N, 1),
    which become one-hot (depth: the model's output size) in training and
    evaluation alike: compile with `categorical_crossentropy` (and
    `CategoricalAccuracy`, or "accuracy"), not the sparse forms. A model
    with one output (a sigmoid) takes its targets (N,) or (N, 1) as they
    are (binary cross-entropy). Integer labels are mixed as float32. Sample
    weights stay with their position in the batch (not mixed).

    Args:
        model: a Keras model from images to (N, classes) predictions.
        mixing: a `gpuaug.MixUp` or `gpuaug.CutMix`, or a list of them: one
            chosen per batch, uniformly (as timm switches between MixUp and
            CutMix).
        augmentation: an optional layer (e.g. `gpuaug.RandomTransform`)
            applied to each image before mixing, in training only.
        seed: None or an integer, for the choice among several layers.

    At inference (`predict`, `evaluate`, `training=False`) the model alone
    runs. `.model` is the model without mixing: what to save or export.
    """

    def __init__(self, model, mixing, augmentation=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        layers = list(mixing) if isinstance(mixing, (list, tuple)) else [mixing]
        if not layers or not all(hasattr(layer, "get_random_transformation") for layer in layers):
            raise ValueError("`mixing` must be a MixUp or CutMix layer or a non-empty list of them. "
                             f"Received: {mixing!r}")
        self.model = model
        self.mixing = layers
        self.augmentation = augmentation
        self.seed = config_lib.parse_seed(seed)
        self.seed_generator = ReplicaSeedGenerator(self.seed, name="seed_generator")

    def build(self, input_shape):
        # The mixing layers have no weights; the model builds on its input.
        for layer in [*self.mixing, self.augmentation]:
            if layer is not None and not layer.built:
                layer.build(input_shape)
        if not self.model.built:
            self.model.build(input_shape)
        self.built = True

    def _mix(self, images):
        """(mixed images, mix_weight, permutation_order) of one draw."""
        draws = []
        for layer in self.mixing:
            transformation = layer.get_random_transformation(images, training=True)
            draws.append((layer.transform_images(images, transformation, training=True),
                          ops.cast(transformation["mix_weight"], "float32"),
                          ops.cast(transformation["permutation_order"], "int32")))
        if len(draws) == 1:
            return draws[0]
        seed = _streams(backend.draw_seed(self.seed_generator), {"choice": CHOICE_STREAM})["choice"]
        u = random.uniform((), dtype="float32", seed=seed)
        choice = ops.minimum(ops.cast(ops.floor(u * len(draws)), "int32"), len(draws) - 1)
        mixed, weight, order = draws[0]
        for index, (other_mixed, other_weight, other_order) in enumerate(draws[1:], start=1):
            chosen = choice == index
            mixed = ops.where(chosen, ops.cast(other_mixed, mixed.dtype), mixed)
            weight = ops.where(chosen, other_weight, weight)
            order = ops.where(chosen, other_order, order)
        return mixed, weight, order

    def call(self, inputs, training=None):
        if isinstance(inputs, dict):
            raise ValueError("TrainWithMixing takes a batch of images as x (labels as y); received a dict with "
                             f"keys {sorted(inputs)}.")
        if not training:
            return self.model(inputs, training=training)
        images = inputs if self.augmentation is None else self.augmentation(inputs, training=True)
        mixed, weight, order = self._mix(images)
        return {"predictions": self.model(mixed, training=training), "mix_weight": weight,
                "permutation_order": order}

    @staticmethod
    def _targets(y, y_pred):
        mixed = isinstance(y_pred, dict) and "mix_weight" in y_pred
        predictions = y_pred["predictions"] if mixed else y_pred
        y = _as_class_probabilities(y, predictions)
        if mixed and y is not None:
            y = mix_labels(y, y_pred)
        return y, predictions

    def get_config(self):
        serialize = keras.saving.serialize_keras_object
        return {**super().get_config(), "model": serialize(self.model),
                "mixing": [serialize(layer) for layer in self.mixing],
                "augmentation": None if self.augmentation is None else serialize(self.augmentation),
                "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        deserialize = keras.saving.deserialize_keras_object
        config["model"] = deserialize(config["model"])
        config["mixing"] = [deserialize(layer) for layer in config["mixing"]]
        if config.get("augmentation") is not None:
            config["augmentation"] = deserialize(config["augmentation"])
        return cls(**config)
