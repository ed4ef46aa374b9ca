"""gpuaug against its peers: images/s of the same augmentation, on TensorFlow, JAX and PyTorch, in one run.

    python -m benchmarks.peers [--out benchmarks/results] [--quick]

Every contender applies `benchmarks.device_suite.COMMON` (rotation uniform
in +-15 degrees and a horizontal flip, drawn per image, bilinear, zero fill):
what all of them can express. Each backend runs in its own process with
KERAS_BACKEND set (Keras fixes its backend at import). Contenders:

- TensorFlow: gpuaug `RandomTransform` eager, in a tf.function and in a
  tf.function with jit_compile (XLA); Keras 3 RandomRotation + RandomFlip and
  keras-aug RandomAffine + RandomFlip, each in a tf.function and (a row that
  fails with its reason: no XLA kernel for their warp) with XLA;
  `ImageDataGenerator.flow`, the CPU reference, for scale.
- JAX: gpuaug jitted, Keras 3's layers jitted (a seed passed in per call),
  keras-aug jitted (the same), augmax `GeometricChain` and dm_pix `rotate` +
  `random_flip_left_right`, both vmapped (one key per image) and jitted.
- PyTorch: gpuaug and Kornia (RandomAffine + RandomHorizontalFlip), eager and
  torch.compile'd; torchvision transforms.v2 (one call per image: it draws one
  transformation per call); Keras 3's layers and keras-aug, eager.

Each contender gets its native layout, from the same batch: NHWC float32
0..255 (gpuaug, Keras, keras-aug, augmax, dm_pix, numpy for the generator),
NCHW float32 in [0, 1] for Kornia and torchvision (a contiguous NCHW tensor,
handed to device_suite's steps as its NHWC view, so that their permutes move
nothing). Sizes: 32x32x3 (batch 256) and 224x224x3 (batch 32). Every
contender is built and warmed up first (compilation timed), then timed for
--window seconds in each of --repeats rounds, the contenders interleaved
within each round; the median round counts. A contender whose library is not
installed, that fails, or that cannot express the augmentation is a row with
its reason. Per backend and size: gpuaug's best mode over the fastest peer
(ImageDataGenerator is the reference, not a peer).

In fit: the one-convolution model (models.cifar10 "tiny": Conv2D(8, 3) +
global average pooling + Dense(10)), batch 128, 5,120 random 32x32x3 images,
jit_compile requested (on PyTorch not: see FIT_JIT), with no augmentation,
gpuaug as its first layer, Keras 3's layers and keras-aug's; the models'
epochs interleaved; median epoch after the first, as a multiple of the plain
one, with what `model.jit_compile` ended up as and whether the augmentation's
seed state advanced during fit.

Writes --out/peers.json and --out/peers.png (grouped bars, log scale), each
atomically, and prints the tables. An --out holding a peers.json that is not
this benchmark's report, or a peers.png without one, is refused (one line):
a user's files are never replaced; the workers write in a folder of the
run's own, removed at its end; one run per --out at a time; SIGINT or SIGTERM
stops every worker and writes nothing. --quick: tiny sizes, one round, the workers at once: proves
the code, measures nothing (the tests run it).
"""

import argparse
import collections
import importlib.util
import json
import os
import pathlib
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks import REPO, file_mode, foreign_outputs
from benchmarks.device_suite import (COMMON, COMMON_TEXT, augmax_step, gpuaug_step, keras_layers_step, kornia_step,
                                     raise_interrupt, restore_handlers, set_handlers, signal_name, stop,
                                     torchvision_step, usable_out, write_json)

BACKENDS = ("tensorflow", "jax", "torch")
REPORT = "peers.json"
PLOT = "peers.png"
LOCK = ".peers.lock"  # held by the run writing --out (removed when it ends)
WORKER = ("-m", "benchmarks.peers")  # how the parent starts a backend's worker: python WORKER --worker ...


class Config(collections.namedtuple("Config", "sizes repeats window warmup compiled_sizes fit_images fit_size "
                                              "fit_batch fit_epochs worker_timeout")):
    """sizes: name -> (batch, height, width, channels); compiled_sizes: where
    torch.compile'd contenders run (None: every size; each shape compiles
    anew; --quick: none, since compiling takes 15-30 s per contender and shape
    on a CPU, and tests/test_device_suite.py compiles the same steps);
    fit_epochs: per backend, the first one compiling."""


FULL = Config(sizes={"32x32x3": (256, 32, 32, 3), "224x224x3": (32, 224, 224, 3)}, repeats=5, window=1.0,
              warmup=3, compiled_sizes=None, fit_images=5120, fit_size=32, fit_batch=128,
              fit_epochs={"tensorflow": 6, "jax": 6, "torch": 3}, worker_timeout=1800)
QUICK = Config(sizes={"8x8x3": (8, 8, 8, 3), "16x16x3": (4, 16, 16, 3)}, repeats=1, window=0.01, warmup=1,
               compiled_sizes=(), fit_images=256, fit_size=16, fit_batch=128,
               fit_epochs={"tensorflow": 2, "jax": 2, "torch": 2}, worker_timeout=300)

# jit_compile requested in fit. On PyTorch Keras' jit_compile=True is torch.compile of the whole train
# step: 40-55 s of compiling per model on a 2-core CPU (the plain and the gpuaug model, tried), more than
# the rest of this part, so the PyTorch models run eagerly, Keras' default there.
FIT_JIT = {"tensorflow": True, "jax": True, "torch": False}
FIT_JIT_NOTE = {"torch": "eager (Keras' default on PyTorch): jit_compile=True is torch.compile of the whole "
                         "train step, 40-55 s of compiling per model on a 2-core CPU"}

NHWC = "NHWC float32 0..255"
NCHW = "NCHW float32 in [0, 1] (contiguous; its NHWC view handed in)"
NUMPY = "NHWC float32 0..255, numpy (host)"

# What each contender's library can express of ImageDataGenerator's set: True, False, or what it
# can do instead. Read from their sources at the versions of requirements-bench.txt.
FEATURES = ("rotation", "width/height shift", "shear", "zoom (x and y apart)", "horizontal/vertical flip",
            "channel shift", "brightness", "fill modes", "per-image draws", "one resampling")
CAPABILITIES = {
    "ImageDataGenerator": {
        "rotation": True, "width/height shift": True, "shear": True, "zoom (x and y apart)": True,
        "horizontal/vertical flip": True, "channel shift": True, "brightness": True,
        "fill modes": "constant, nearest, reflect, wrap", "per-image draws": True, "one resampling": True,
        "note": "the reference: numpy and scipy on the host, one image at a time"},
    "gpuaug": {
        "rotation": True, "width/height shift": True, "shear": True, "zoom (x and y apart)": True,
        "horizontal/vertical flip": True, "channel shift": True, "brightness": True,
        "fill modes": "constant, nearest, reflect, wrap", "per-image draws": True, "one resampling": True,
        "note": "ImageDataGenerator's arguments and pixels (parity tests); also perspective and lens distortion"},
    "Keras 3 layers": {
        "rotation": True, "width/height shift": True, "shear": "RandomShear (a fraction, not degrees)",
        "zoom (x and y apart)": True, "horizontal/vertical flip": True,
        "channel shift": "RandomBrightness adds one value to every channel (clipped to a fixed value_range, "
                         "not to the image's own)",
        "brightness": False, "fill modes": "constant, nearest, reflect, wrap", "per-image draws": True,
        "one resampling": False,
        "note": "one warp per layer; RandomRotation/Translation/Zoom/Shear set supports_jit=False, so a model "
                "holding one is compiled without XLA; on TensorFlow their warp has no XLA kernel"},
    "keras-aug": {
        "rotation": True, "width/height shift": True, "shear": True,
        "zoom (x and y apart)": "isotropic scale only", "horizontal/vertical flip": True,
        "channel shift": False, "brightness": "ColorJitter multiplies (no 8-bit rounding as PIL's)",
        "fill modes": "constant, reflect, symmetric (no nearest, no wrap)", "per-image draws": True,
        "one resampling": "RandomAffine: one warp; RandomFlip another pass",
        "note": "on TensorFlow no XLA (ImageProjectiveTransformV3); its seed state is not a tracked variable, "
                "so in a jitted JAX fit it does not advance (in_fit: seed_state_advances)"},
    "augmax": {
        "rotation": True, "width/height shift": "Translate: fixed dx, dy only, not drawn", "shear": False,
        "zoom (x and y apart)": "RandomSizedCrop only (crop and resize: zooms in, never out)",
        "horizontal/vertical flip": True, "channel shift": False,
        "brightness": "RandomBrightness: GIMP's formula, not a factor", "fill modes": "constant zero only",
        "per-image draws": "one key per image, vmapped", "one resampling": "GeometricChain: one warp",
        "note": "JAX only"},
    "dm_pix": {
        "rotation": True, "width/height shift": "affine_transform with a matrix the user builds and draws",
        "shear": "affine_transform (user matrix)", "zoom (x and y apart)": "affine_transform (user matrix)",
        "horizontal/vertical flip": True,
        "channel shift": "random_brightness adds one delta (unclipped)", "brightness": False,
        "fill modes": "constant, nearest, wrap, reflect, mirror", "per-image draws": "one key per image, vmapped",
        "one resampling": "if the user composes the matrix", "note": "JAX only; functions, no layers"},
    "Kornia": {
        "rotation": True, "width/height shift": True, "shear": True, "zoom (x and y apart)": True,
        "horizontal/vertical flip": True,
        "channel shift": "RandomRGBShift: one shift per channel, not one for all",
        "brightness": "ColorJitter multiplies (torchvision's formula)",
        "fill modes": "zeros, fill (constant), border (~nearest), reflection (no wrap)", "per-image draws": True,
        "one resampling": "RandomAffine: one warp; flips another pass",
        "note": "PyTorch only; NCHW images in [0, 1]"},
    "torchvision": {
        "rotation": True, "width/height shift": True, "shear": True,
        "zoom (x and y apart)": "isotropic scale only", "horizontal/vertical flip": True, "channel shift": False,
        "brightness": "ColorJitter multiplies", "fill modes": "constant only",
        "per-image draws": "no: one draw per call (per image: one call per image, as measured here)",
        "one resampling": "RandomAffine: one warp", "note": "PyTorch only"},
}

TORCHVISION_REASON = ("no torchvision wheel installs beside the torch 2.13.0 CPU build of "
                      "requirements-test.txt (requirements-bench.txt)")


# Steps: each make(images) -> step(images, i), images in the contender's layout ---------------------

def keras_aug_layers():
    from keras_aug.layers.vision import RandomAffine, RandomFlip

    return [RandomAffine(degree=15, interpolation="bilinear", padding_mode="constant", padding_value=0, seed=1),
            RandomFlip(mode="horizontal", p=0.5, seed=2)]


class SeedSlot:
    """Stands for a keras-aug layer's random generator in a jitted JAX
    function: keras-aug draws with `layer._random_generator.random_generator`,
    and a seed passed in per call (as benchmarks.throughput.compiled does
    for Keras' layers) is what a jitted function can use."""

    random_generator = None


def keras_aug_step(mode):
    def make(images):
        import keras

        layers = keras_aug_layers()
        if keras.backend.backend() == "jax":
            import jax

            slots = []
            for layer in layers:
                slots.append(SeedSlot())
                layer._random_generator = slots[-1]

            def apply_seeded(images, seed):
                for k, (layer, slot) in enumerate(zip(layers, slots)):
                    slot.random_generator = seed + k
                    images = layer(images, training=True)
                return images

            function = jax.jit(apply_seeded)
            return lambda images, i: function(images, jax.numpy.array([0, i], dtype="uint32"))
        from benchmarks.throughput import compiled

        return compiled(layers, mode)

    return make


def generator_step(images):
    """ImageDataGenerator.flow over the batch (COMMON's settings), on the host."""
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    iterator = ImageDataGenerator(**COMMON).flow(images, batch_size=len(images), shuffle=False, seed=0)
    return lambda images, i: next(iterator)


def dm_pix_step(images):
    """dm_pix.rotate (bilinear, zero fill) then random_flip_left_right, per
    image, vmapped with one key per image, jitted."""
    import dm_pix
    import jax

    def one(key, image):
        angle_key, flip_key = jax.random.split(key)
        angle = jax.random.uniform(angle_key, minval=-15.0, maxval=15.0) * (np.pi / 180)
        rotated = dm_pix.rotate(image, angle, order=1, mode="constant", cval=0.0)
        return dm_pix.random_flip_left_right(flip_key, rotated, probability=0.5)

    transform = jax.jit(jax.vmap(one))
    return lambda images, i: transform(jax.random.split(jax.random.PRNGKey(i), images.shape[0]), images)


# name, library (module name), capabilities key, kind ("gpuaug", "peer" or "reference"), layout,
# whether torch.compile'd (compiled_sizes), make
Contender = collections.namedtuple("Contender", "name module library kind layout torch_compiled make")

CONTENDERS = {
    "tensorflow": (
        Contender("gpuaug RandomTransform (eager)", "gpuaug", "gpuaug", "gpuaug", NHWC, False, gpuaug_step("eager")),
        Contender("gpuaug RandomTransform (tf.function)", "gpuaug", "gpuaug", "gpuaug", NHWC, False,
                  gpuaug_step("graph")),
        Contender("gpuaug RandomTransform (tf.function, XLA)", "gpuaug", "gpuaug", "gpuaug", NHWC, False,
                  gpuaug_step("xla")),
        Contender("Keras 3 RandomRotation + RandomFlip (tf.function)", "keras", "Keras 3 layers", "peer", NHWC,
                  False, keras_layers_step("graph")),
        Contender("Keras 3 RandomRotation + RandomFlip (tf.function, XLA)", "keras", "Keras 3 layers", "peer",
                  NHWC, False, keras_layers_step("xla")),
        Contender("keras-aug RandomAffine + RandomFlip (tf.function)", "keras_aug", "keras-aug", "peer", NHWC,
                  False, keras_aug_step("graph")),
        Contender("keras-aug RandomAffine + RandomFlip (tf.function, XLA)", "keras_aug", "keras-aug", "peer",
                  NHWC, False, keras_aug_step("xla")),
        Contender("ImageDataGenerator.flow (CPU reference)", "keras", "ImageDataGenerator", "reference", NUMPY,
                  False, generator_step),
    ),
    "jax": (
        Contender("gpuaug RandomTransform (jit)", "gpuaug", "gpuaug", "gpuaug", NHWC, False, gpuaug_step("xla")),
        Contender("Keras 3 RandomRotation + RandomFlip (jit)", "keras", "Keras 3 layers", "peer", NHWC, False,
                  keras_layers_step("xla")),
        Contender("keras-aug RandomAffine + RandomFlip (jit)", "keras_aug", "keras-aug", "peer", NHWC, False,
                  keras_aug_step("xla")),
        Contender("augmax GeometricChain (jit, vmapped)", "augmax", "augmax", "peer", NHWC, False, augmax_step),
        Contender("dm_pix rotate + random_flip_left_right (jit, vmapped)", "dm_pix", "dm_pix", "peer", NHWC, False,
                  dm_pix_step),
    ),
    "torch": (
        Contender("gpuaug RandomTransform (eager)", "gpuaug", "gpuaug", "gpuaug", NHWC, False, gpuaug_step("eager")),
        Contender("gpuaug RandomTransform (torch.compile)", "gpuaug", "gpuaug", "gpuaug", NHWC, True,
                  gpuaug_step("xla")),
        Contender("Kornia RandomAffine + RandomHorizontalFlip (eager)", "kornia", "Kornia", "peer", NCHW, False,
                  kornia_step(False)),
        Contender("Kornia RandomAffine + RandomHorizontalFlip (torch.compile)", "kornia", "Kornia", "peer", NCHW,
                  True, kornia_step(True)),
        Contender("torchvision transforms.v2, one call per image", "torchvision", "torchvision", "peer", NCHW,
                  False, torchvision_step),
        Contender("Keras 3 RandomRotation + RandomFlip (eager)", "keras", "Keras 3 layers", "peer", NHWC, False,
                  keras_layers_step("eager")),
        Contender("keras-aug RandomAffine + RandomFlip (eager)", "keras_aug", "keras-aug", "peer", NHWC, False,
                  keras_aug_step("eager")),
    ),
}

FIT_VARIANTS = (("none", None, None), ("gpuaug", "gpuaug", "gpuaug"),
                ("Keras 3 RandomRotation + RandomFlip", "keras", "Keras 3 layers"),
                ("keras-aug RandomAffine + RandomFlip", "keras_aug", "keras-aug"))


# The worker: one backend --------------------------------------------------------------------------

def say(line):
    print(line, flush=True)


def scrub(text):
    """`text` without absolute paths (a committed report names no machine's layout)."""
    return re.sub(r"(?<![\w.])/(?:[\w.+-]+/)+", "", str(text))


def failure(error):
    from benchmarks.throughput import describe_failure

    return scrub(describe_failure(error))


def library_version(module):
    """(version, None, None), or (None, status, why) where `module` is not
    installed or does not import ("failed")."""
    from benchmarks.device_suite import version_of

    if module == "torchvision" and importlib.util.find_spec("torchvision") is None:
        return None, "not installed", TORCHVISION_REASON
    version = version_of(module)
    if version is None:
        return None, "not installed", f"{module} is not installed (pip install -r requirements-bench.txt)"
    if isinstance(version, dict):
        return None, "failed", f"{module} does not import: {scrub(version['error'])}"
    return version, None, None


def to_layout(images, layout):
    """The batch (numpy NHWC 0..255) as a contender takes it."""
    import keras

    if layout == NUMPY:
        return images
    if layout == NCHW:
        channels_first = (keras.ops.convert_to_tensor(images) / 255.0).permute(0, 3, 1, 2).contiguous()
        return channels_first.permute(0, 2, 3, 1)
    return keras.ops.convert_to_tensor(images)


def output_check(result, inputs):
    """Why a contender's output is not an augmented batch, or None."""
    import keras

    result = np.asarray(keras.ops.convert_to_numpy(result) if not isinstance(result, np.ndarray) else result)
    if tuple(result.shape) != tuple(inputs.shape):
        return f"output shape {tuple(result.shape)}, not {tuple(inputs.shape)}"
    if not np.isfinite(result).all():
        return "non-finite output"
    return None


def throughput(config, backend):
    from benchmarks.throughput import block, measure

    rng = np.random.default_rng(0)
    sections = []
    for size, shape in config.sizes.items():
        batch = rng.uniform(0, 255, shape).astype("float32")
        say(f"{backend} {size}, batch {shape[0]}: building and warming up")
        built, rows = [], []
        for contender in CONTENDERS[backend]:
            row = {"contender": contender.name, "library": contender.library, "kind": contender.kind,
                   "layout": contender.layout, "status": "ok", "reason": None, "images_per_second": None}
            version, status, reason = library_version(contender.module)
            row["version"] = version
            if status:
                row.update(status=status, reason=reason)
            elif contender.torch_compiled and config.compiled_sizes is not None and size not in config.compiled_sizes:
                row.update(status="skipped", reason="--quick: torch.compile'd contenders are not run (15-30 s "
                                                    "of compiling each; tests/test_device_suite.py compiles "
                                                    "the same steps)")
            else:
                try:
                    inputs = to_layout(batch, contender.layout)
                    start = time.perf_counter()
                    step = contender.make(inputs)
                    result = step(inputs, 0)
                    block(result)
                    row["first_call_seconds"] = time.perf_counter() - start
                    for i in range(1, config.warmup):
                        block(step(inputs, i))
                    problem = output_check(result, inputs)
                    if problem:
                        row.update(status="cannot express", reason=problem)
                    else:
                        built.append((row, step, inputs))
                except Exception as error:  # noqa: BLE001 - a contender that cannot run is a result
                    row.update(status="failed", reason=failure(error))
            rows.append(row)
        for round_ in range(config.repeats):
            for row, step, inputs in built:  # interleaved: drift in the machine's load hits every contender
                if row["status"] != "ok":
                    continue
                try:
                    row.setdefault("rounds", []).append(measure(step, inputs, config.window))
                except Exception as error:  # noqa: BLE001
                    row.update(status="failed", reason=failure(error), rounds=None)
            say(f"{backend} {size}: round {round_ + 1} of {config.repeats} done")
        for row in rows:
            if row["status"] == "ok":
                row["images_per_second"] = statistics.median(row["rounds"])
        sections.append(summarize({"size": size, "batch": shape[0], "rows": rows}))
        del built
    return sections


def summarize(section):
    """gpuaug's best mode over the fastest peer (and over the reference), per row too."""
    def best(kind):
        rows = [r for r in section["rows"] if r["kind"] == kind and r["images_per_second"]]
        return max(rows, key=lambda r: r["images_per_second"]) if rows else None

    ours, peer, reference = best("gpuaug"), best("peer"), best("reference")
    summary = {"gpuaug_best": ours and ours["contender"],
               "gpuaug_best_images_per_second": ours and ours["images_per_second"],
               "fastest_peer": peer and peer["contender"],
               "fastest_peer_images_per_second": peer and peer["images_per_second"],
               "gpuaug_over_fastest_peer": (ours["images_per_second"] / peer["images_per_second"]
                                            if ours and peer else None),
               "gpuaug_over_reference": (ours["images_per_second"] / reference["images_per_second"]
                                         if ours and reference else None)}
    # The same two contenders' ratio within each round (they ran side by side), and its median:
    # steadier than the ratio of medians where the machine's load drifts.
    rounds = list(zip(ours.get("rounds") or [], peer.get("rounds") or [])) if ours and peer else []
    summary["gpuaug_over_fastest_peer_per_round"] = [a / b for a, b in rounds] or None
    summary["gpuaug_over_fastest_peer_median_of_rounds"] = (statistics.median(a / b for a, b in rounds)
                                                            if rounds else None)
    for row in section["rows"]:
        row["gpuaug_best_over_this"] = (ours["images_per_second"] / row["images_per_second"]
                                        if ours and row["images_per_second"] else None)
    return dict(section, summary=summary)


def seed_states(layers):
    """The seed states of `layers`' generators (Keras' SeedGenerator
    attributes, and keras-aug's, kept in a dict of its own), as numpy."""
    import keras

    generators = []
    for layer in layers:
        for value in vars(layer).values():
            if isinstance(value, keras.random.SeedGenerator):
                generators.append(value)
            elif isinstance(getattr(value, "_cached_random_generator", None), dict):
                generators.extend(value._cached_random_generator.values())
    return [np.array(keras.ops.convert_to_numpy(g.state.value)) for g in generators]


def fit_layers(variant):
    import keras

    import gpuaug

    if variant == "gpuaug":
        return [gpuaug.RandomTransform(**COMMON, seed=0)]
    if variant.startswith("Keras 3"):
        return [keras.layers.RandomRotation(15 / 360, fill_mode="constant", seed=1),
                keras.layers.RandomFlip("horizontal", seed=2)]
    if variant.startswith("keras-aug"):
        return keras_aug_layers()
    return []


def in_fit(config, backend):
    import keras

    from benchmarks.device_suite import EpochTimes
    from models.cifar10 import BUILDERS

    rng = np.random.default_rng(0)
    side = config.fit_size
    x = rng.uniform(0, 255, (config.fit_images, side, side, 3)).astype("float32")
    y = rng.integers(0, 10, config.fit_images)
    requested = FIT_JIT[backend]
    epochs = config.fit_epochs[backend]
    result = {"model": "tiny (Conv2D(8, 3, strides=2) + GlobalAveragePooling2D + Dense(10))",
              "images": len(x), "image_size": f"{side}x{side}x3", "batch": config.fit_batch, "epochs": epochs,
              "jit_compile_requested": requested, "note": FIT_JIT_NOTE.get(backend), "rows": []}

    def build(variant, jit):
        layers = fit_layers(variant)
        model = BUILDERS["tiny"](layers, input_shape=x.shape[1:], num_classes=10)
        model.compile(optimizer=keras.optimizers.RMSprop(1e-4), loss="sparse_categorical_crossentropy",
                      jit_compile=jit)
        return model, layers

    entries = []
    for variant, module, library in FIT_VARIANTS:
        row = {"augment": variant, "library": library, "status": "ok", "reason": None}
        result["rows"].append(row)
        if module not in (None, "gpuaug", "keras"):
            _, status, reason = library_version(module)
            if status:
                row.update(status=status, reason=reason)
                continue
        try:
            model, layers = build(variant, requested)
            entries.append({"row": row, "variant": variant, "model": model, "layers": layers, "times": [],
                            "seeds": seed_states(layers)})
        except Exception as error:  # noqa: BLE001
            row.update(status="failed", reason=failure(error))
    say(f"{backend} in fit: {len(x)} images, batch {config.fit_batch}, {epochs} epochs, models interleaved")
    for epoch in range(epochs):
        for entry in entries:
            row = entry["row"]
            if row["status"] != "ok":
                continue
            fit = dict(batch_size=config.fit_batch, epochs=1, shuffle=True, verbose=0,
                       callbacks=[EpochTimes.callback(entry["times"])])
            try:
                entry["model"].fit(x, y, **fit)
            except Exception as error:  # noqa: BLE001
                if epoch == 0 and entry["model"].jit_compile and "jit_error" not in row:
                    # XLA refused the step (keras-aug on TensorFlow): without it, as a user would go on.
                    row["jit_error"] = failure(error)
                    entry["times"].clear()
                    try:
                        entry["model"], entry["layers"] = build(entry["variant"], False)
                        entry["seeds"] = seed_states(entry["layers"])
                        entry["model"].fit(x, y, **fit)
                        continue
                    except Exception as error_again:  # noqa: BLE001
                        error = error_again
                row.update(status="failed", reason=failure(error))
    base = None
    for entry in entries:
        row, times = entry["row"], entry["times"]
        row["jit_compile"] = bool(entry["model"].jit_compile)
        if row["status"] != "ok":
            continue
        after = seed_states(entry["layers"])
        row["seed_state_advances"] = (None if not after else
                                      any(not np.array_equal(a, b) for a, b in zip(entry["seeds"], after)))
        steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
        row.update(epoch_seconds=steady, first_epoch_seconds=times[0], epoch_times=times)
        base = steady if row["augment"] == "none" else base
    for row in result["rows"]:
        row["vs_none"] = row["epoch_seconds"] / base if base and row.get("epoch_seconds") else None
    return result


def versions(backend):
    import keras

    info = {"python": platform.python_version(), "numpy": np.__version__, "keras": keras.__version__}
    module = importlib.import_module(backend)
    info[backend] = getattr(module, "__version__", "installed")
    for name in sorted({c.module for c in CONTENDERS[backend]} - {"gpuaug", "keras"}):
        info[name] = library_version(name)[0]
    return info


def worker(args):
    sys.path.insert(0, str(REPO))
    config = QUICK if args.quick else FULL
    backend = args.worker
    out = pathlib.Path(args.result)
    result = {"backend": backend, "status": "ok", "reason": None}
    result["versions"] = versions(backend)
    result["sizes"] = throughput(config, backend)
    write_json(out, result)
    try:
        result["in_fit"] = in_fit(config, backend)
    except Exception as error:  # noqa: BLE001 - the throughput stays
        result["in_fit"] = {"status": "failed", "reason": failure(error), "rows": []}
    write_json(out, result)
    return 0


# The parent: every backend's worker, the report, the tables, the plot ------------------------------

def missing_backend(backend, status, reason, config):
    """A backend's entry where its worker gave nothing: a row per contender, with the reason."""
    rows = lambda: [{"contender": c.name, "library": c.library, "kind": c.kind, "layout": c.layout,  # noqa: E731
                     "status": status, "reason": reason, "images_per_second": None,
                     "gpuaug_best_over_this": None} for c in CONTENDERS[backend]]
    return {"backend": backend, "status": status, "reason": reason,
            "sizes": [summarize({"size": size, "batch": shape[0], "rows": rows()})
                      for size, shape in config.sizes.items()],
            "in_fit": {"status": "failed", "reason": reason,
                       "rows": [{"augment": v, "library": lib, "status": status, "reason": reason}
                                for v, _, lib in FIT_VARIANTS]}}


def start_worker(backend, work, quick):
    """A backend's worker, writing its result and its stderr in `work` (this
    run's own folder: nothing of the user's, or of another run's, is touched)."""
    result = pathlib.Path(work) / f"{backend}.json"
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, *WORKER, "--worker", backend, "--result", str(result)]
    with open(result.with_suffix(".stderr"), "w") as stderr:
        process = subprocess.Popen(command + (["--quick"] if quick else []), cwd=REPO, env=env, stderr=stderr)
    return process, result


def last_line(path):
    """The last non-empty line of a worker's stderr (what it died of), without paths."""
    try:
        lines = [line for line in pathlib.Path(path).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    return scrub(lines[-1].strip())[:300] if lines else None


def collect(backend, process, result, config):
    try:
        status = process.wait(timeout=config.worker_timeout)
    except subprocess.TimeoutExpired:
        stop(process)
        status = f"killed after {config.worker_timeout} s"
    try:
        entry = json.loads(result.read_text())
    except (FileNotFoundError, ValueError):
        entry = None
    if status == 0 and entry is None:
        status = "0 without a result"
    if status != 0:
        why = last_line(result.with_suffix(".stderr"))
        reason = f"its worker exited with status {status}" + (f": {why}" if why else "")
        if entry is None:
            return missing_backend(backend, "failed", reason, config)
        entry.setdefault("in_fit", {"status": "failed", "reason": reason,
                                    "rows": [{"augment": v, "library": lib, "status": "failed", "reason": reason}
                                             for v, _, lib in FIT_VARIANTS]})
        entry.update(status="failed", reason=reason)
    return entry


def source_state():
    """The commit measured, and whether gpuaug/ differed from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=30).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "gpuaug"], cwd=REPO, capture_output=True,
                                 text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit or None, "gpuaug_changed_since": bool(changed)}


def run(config, out, quick):
    report = {"benchmark": "peers", "quick": quick, "augmentation": COMMON_TEXT, "settings": COMMON,
              "sizes": {size: {"batch": shape[0], "shape": list(shape[1:])} for size, shape in config.sizes.items()},
              "repeats": config.repeats, "window_seconds": config.window,
              "statistic": "median of the rounds; contenders interleaved within each round",
              "ratio": "gpuaug_over_fastest_peer: gpuaug's fastest mode / the fastest peer's rate "
                       "(ImageDataGenerator is the reference, not a peer)",
              "machine": {"processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()},
              "features": list(FEATURES), "capabilities": CAPABILITIES, "backends": {}}
    report["gpuaug_source"] = source_state()
    start = time.time()
    runnable = [b for b in BACKENDS if importlib.util.find_spec(b) is not None]
    for backend in BACKENDS:
        if backend not in runnable:
            report["backends"][backend] = missing_backend(backend, "not installed", f"{backend} is not installed",
                                                          config)
    # This run's own folder for the workers' files; on SIGINT or SIGTERM (a
    # KeyboardInterrupt, see main) every worker still running is stopped and
    # the folder removed: nothing of an interrupted run is left.
    work = tempfile.mkdtemp(dir=out, prefix=".peers-run-")
    workers = {}
    try:
        if quick:  # measures nothing: the workers at once
            workers = {b: start_worker(b, work, quick) for b in runnable}
            for backend, (process, result) in workers.items():
                report["backends"][backend] = collect(backend, process, result, config)
        else:  # one at a time: each has the machine to itself
            for backend in runnable:
                workers[backend] = start_worker(backend, work, quick)
                report["backends"][backend] = collect(backend, *workers[backend], config)
    finally:
        for process, _ in workers.values():
            stop(process)
        shutil.rmtree(work, ignore_errors=True)
    report["backends"] = {b: report["backends"][b] for b in BACKENDS}
    report["seconds"] = time.time() - start
    return report


def rate(value):
    return f"{value:,.0f}" if value else "-"


def print_tables(report):
    for backend, entry in report["backends"].items():
        say(f"\n## {backend}" + (f" ({entry['status']}: {entry['reason']})" if entry["status"] != "ok" else ""))
        for section in entry["sizes"]:
            summary = section["summary"]
            ratio = summary["gpuaug_over_fastest_peer"]
            per_round = summary.get("gpuaug_over_fastest_peer_median_of_rounds")
            say(f"\n{section['size']}, batch {section['batch']}: gpuaug best / fastest peer = "
                + (f"{ratio:.2f}x" if ratio else "-")
                + (f" (median of the rounds' ratios: {per_round:.2f}x)" if per_round else ""))
            say("| contender | images/s | gpuaug best / this |\n| --- | ---: | ---: |")
            for row in section["rows"]:
                if row["images_per_second"]:
                    say(f"| {row['contender']} | {rate(row['images_per_second'])} | "
                        f"{row['gpuaug_best_over_this']:.2f}x |")
                else:
                    say(f"| {row['contender']} | {row['status']}: {row['reason']} | |")
        fit = entry.get("in_fit") or {}
        if fit.get("rows"):
            say(f"\nin fit ({fit.get('images')} images, batch {fit.get('batch')}, jit_compile requested: "
                f"{fit.get('jit_compile_requested')})")
            say("| augment | epoch s | x plain | jit_compile kept | seed state advances |\n"
                "| --- | ---: | ---: | --- | --- |")
            for row in fit["rows"]:
                if row.get("epoch_seconds"):
                    say(f"| {row['augment']} | {row['epoch_seconds']:.3f} | {row['vs_none']:.2f}x | "
                        f"{row['jit_compile']}" + (f" (XLA failed: {row['jit_error']})" if row.get("jit_error")
                                                   else "") + f" | {row.get('seed_state_advances')} |")
                else:
                    say(f"| {row['augment']} | {row['status']}: {row['reason']} | | | |")


LIBRARY_COLOURS = {"gpuaug": "#dd8452", "ImageDataGenerator": "#888888", "Keras 3 layers": "#4c72b0",
                   "keras-aug": "#55a868", "augmax": "#c44e52", "dm_pix": "#8172b3", "Kornia": "#937860",
                   "torchvision": "#da8bc3", None: "#bbbbbb"}


def colour(library, index):
    """The library's colour, lighter for its second and later modes."""
    import matplotlib.colors

    red, green, blue = matplotlib.colors.to_rgb(LIBRARY_COLOURS.get(library, "#bbbbbb"))
    lighter = min(0.25 * index, 0.75)
    return tuple(c + (1 - c) * lighter for c in (red, green, blue))


def plot(report, path):
    """One panel per backend (groups: sizes; bars: contenders; log scale)
    and one for the fit (multiples of the plain epoch). Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = pathlib.Path(path)
    backends = list(report["backends"].items())
    fig, axes = plt.subplots(1, len(backends) + 1, figsize=(5.2 * (len(backends) + 1), 5.5), squeeze=False)
    for ax, (backend, entry) in zip(axes[0], backends):
        sections = entry["sizes"]
        names = [r["contender"] for r in sections[0]["rows"]] if sections else []
        width = 0.8 / max(len(names), 1)
        modes = collections.Counter()
        for index, name in enumerate(names):
            rows = [next((r for r in s["rows"] if r["contender"] == name), {}) for s in sections]
            library = rows[0].get("library")
            values = [r.get("images_per_second") or 0 for r in rows]
            label = name if any(values) else f"{name}: {rows[0].get('status')}"
            ax.bar([k + (index - (len(names) - 1) / 2) * width for k in range(len(sections))], values, width,
                   label=label, color=colour(library, modes[library]), hatch=None if any(values) else "//")
            modes[library] += 1
        ax.set_xticks(range(len(sections)))
        ax.set_xticklabels([f"{s['size']}\nbatch {s['batch']}\ngpuaug/peer "
                            + (f"{s['summary']['gpuaug_over_fastest_peer']:.2f}x"
                               if s["summary"]["gpuaug_over_fastest_peer"] else "-") for s in sections], fontsize=8)
        if any(r.get("images_per_second") for s in sections for r in s["rows"]):
            ax.set_yscale("log")
        ax.set_ylabel("images/s (log scale)")
        ax.set_title(f"{backend}" + ("" if entry["status"] == "ok" else f" ({entry['status']})"), fontsize=10)
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1, frameon=False)
    ax = axes[0][-1]
    variants = [v for v, _, _ in FIT_VARIANTS]
    width = 0.8 / len(variants)
    for index, (variant, _, library) in enumerate(FIT_VARIANTS):
        values = []
        for _, entry in backends:
            row = next((r for r in (entry.get("in_fit") or {}).get("rows", []) if r["augment"] == variant), {})
            values.append(row.get("vs_none") or 0)
        ax.bar([k + (index - (len(variants) - 1) / 2) * width for k in range(len(backends))], values, width,
               label=variant, color=colour(library or "ImageDataGenerator", 0))
    ax.axhline(1.0, color="black", linewidth=0.5)
    ax.set_xticks(range(len(backends)))
    ax.set_xticklabels([b for b, _ in backends], fontsize=8)
    ax.set_ylabel("epoch time / plain epoch")
    ax.set_title("in fit: tiny model, batch 128", fontsize=10)
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    machine = report["machine"]
    fig.suptitle(f"gpuaug against its peers: {report['augmentation']} ({machine['cpu_count']} CPU cores"
                 + (", --quick: tiny sizes, not a measurement)" if report["quick"] else ")"), fontsize=10)
    fig.tight_layout()
    # Drawn to a file beside it, then put in place: a failure leaves the earlier picture.
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(descriptor)
    try:
        fig.savefig(temporary, dpi=100)
        os.chmod(temporary, file_mode())  # mkstemp's 0o600 otherwise
        os.replace(temporary, path)
    finally:
        plt.close(fig)
        pathlib.Path(temporary).unlink(missing_ok=True)
    return path


def load_report(out):
    """(report, None) from --out/peers.json, or (None, why not)."""
    path = pathlib.Path(out) / REPORT
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        return None, f"no {REPORT} there"
    except (OSError, ValueError) as error:
        return None, f"{REPORT} there cannot be read: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
    if not isinstance(report, dict) or report.get("benchmark") != "peers":
        return None, f"{REPORT} there is not a benchmarks.peers report"
    return report, None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results", help="folder for peers.json and peers.png")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: proves the code, measures nothing")
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw the tables and the PNG from --out/peers.json, without measuring")
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    out = pathlib.Path(args.out)
    if args.plot_only:
        report, problem = load_report(out)
        if problem:
            parser.error(f"--out {args.out}: {problem}")
        return finish(report, out, parser, args)
    problem = usable_out(out) or foreign_outputs(out, REPORT, PLOT, "peers")
    if problem:
        parser.error(f"--out {args.out}: {problem}")
    from models.locks import try_lock

    lock = try_lock(out / LOCK)
    if lock is None:
        parser.error(f"--out {args.out}: another benchmarks.peers run is writing there")
    previous = set_handlers(raise_interrupt)
    try:
        report = run(QUICK if args.quick else FULL, out, args.quick)
        write_json(out / REPORT, report)
    except KeyboardInterrupt as interrupt:
        name = signal_name(interrupt)
        print(f"peers: interrupted ({name}): the workers were stopped, nothing was written", file=sys.stderr)
        return 128 + signal.Signals[name].value
    except OSError as error:
        print(f"peers: could not write {out / REPORT}: {error.strerror or error}", file=sys.stderr)
        return 1
    finally:
        restore_handlers(previous)
        (out / LOCK).unlink(missing_ok=True)
        lock.close()
    return finish(report, out, parser, args)


def finish(report, out, parser, args):
    """The tables and the picture of `report`; one line where it is not a
    complete report (--plot-only) or the picture cannot be written."""
    try:
        print_tables(report)
        picture = plot(report, out / PLOT)
    except OSError as error:
        print(f"peers: could not write {out / PLOT}: {error.strerror or error}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        parser.error(f"--out {args.out}: {REPORT} there is not a complete benchmarks.peers report "
                     f"({type(error).__name__}: {error})")
    say(f"\nwrote {out / REPORT} and {picture}" + (f" in {report['seconds']:.0f} s" if "seconds" in report else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
