"""What augmentation adds inside the compiled training step, per warp form.

    python -m benchmarks.in_step                       # KERAS_BACKEND=tensorflow or jax
    python -m benchmarks.in_step --regimes tiny-32     # one regime

Users never run `RandomTransform` alone: XLA compiles it into the training
step with the model. For each way of gathering the bilinear taps
(`gpuaug.warp.GATHER_FORMS`) and for the copy path (flips and whole-pixel
shifts), in one process:

- alone: images/s of the layer by itself (XLA, 32x32x3, batch 256);
- in the step: seconds an epoch takes with the layer in front of the model,
  minus the same model without it (median of `--epochs` epochs after one
  compiling epoch, all models' epochs interleaved), in four regimes: the
  one-convolution "tiny" model and the CIFAR-10 CNN at 32x32x3 (batch 128;
  40 and 20 steps an epoch), the tiny model and the pooled CNN at 224x224x3
  (batch 32; 10 and 4 steps: the CNN is slow on a CPU).

Arguments for every warp: rotation 15, shifts 0.1, shear 10, zoom 0.1,
horizontal flip (benchmarks.throughput.SETTINGS); the copy path: shifts of
whole pixels (int 4, the CIFAR "pad and crop" recipe) and the flip. Then
the copy path followed by `gpuaug.MixUp` (alpha 0.2) or `gpuaug.CutMix`
(factor (1, 1)) in `gpuaug.TrainWithMixing` (categorical cross-entropy): in
the step, the whole recipe; alone, the mixing layer by itself. Prints tables
and writes benchmarks/results/in_step-<backend>.json.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

from benchmarks import REPO, write_report
from benchmarks.throughput import SETTINGS

COPY_SETTINGS = dict(width_shift_range=4, height_shift_range=4, horizontal_flip=True)
REGIMES = {  # name: (model builder, image shape, batch, steps per epoch)
    "tiny-32": ("tiny", (32, 32, 3), 128, 40),
    "cnn-32": ("cnn", (32, 32, 3), 128, 20),
    "tiny-224": ("tiny", (224, 224, 3), 32, 10),
    "cnn-gap-224": ("cnn-gap", (224, 224, 3), 32, 4),
}


def _compiled_call(layer, images):
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda: layer(images, training=True), jit_compile=True)
    import jax

    layer(images[:1], training=True)
    state = [v.value for v in layer.non_trainable_variables]
    function = jax.jit(lambda state: layer.stateless_call([], state, images, training=True)[0])
    return lambda: function(state)


def alone(layer, images, calls=60, repeats=3):
    """Best images/s over `repeats` runs of `calls` compiled calls."""
    call = _compiled_call(layer, images)
    np.asarray(call())
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            out = call()
        np.asarray(out)
        best = max(best, calls * len(images) / (time.perf_counter() - start))
    return best


MIXING = {"copy path + MixUp (alpha 0.2)": ("MixUp", dict(alpha=0.2)),
          "copy path + CutMix (factor (1, 1))": ("CutMix", dict(factor=(1.0, 1.0)))}


def contenders():
    """(name, gather form, RandomTransform arguments) of every contender
    measured; the names of `MIXING` add a mixing layer after the transform."""
    from gpuaug import warp

    rows = [(f"warp, {form} gather", form, SETTINGS) for form in warp.GATHER_FORMS]
    return rows + [("copy path (flip + whole-pixel shifts)", None, COPY_SETTINGS),
                   *((name, None, COPY_SETTINGS) for name in MIXING)]


def mixing_layer(name):
    """The gpuaug mixing layer of contender `name` (seeded)."""
    import gpuaug

    layer, arguments = MIXING[name]
    return getattr(gpuaug, layer)(**arguments, seed=0)


def build(model_name, shape, name, settings):
    """The compiled model of a contender: the transform as the network's
    first layer, or, for a mixing contender, the network inside
    `TrainWithMixing` with the transform before the mixing."""
    import keras

    import gpuaug
    from models.cifar10 import BUILDERS

    transform = [gpuaug.RandomTransform(**settings, seed=0)] if settings else []
    if name not in MIXING:
        model = BUILDERS[model_name](transform, input_shape=shape, num_classes=10)
        loss = "sparse_categorical_crossentropy"
    else:
        network = BUILDERS[model_name]([], input_shape=shape, num_classes=10)
        model = gpuaug.TrainWithMixing(network, mixing_layer(name), augmentation=transform[0], seed=0)
        loss = "categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.RMSprop(1e-4), loss=loss, jit_compile=True)
    return model


def in_step(regime, epochs, names=None):
    """{contender: median augmentation seconds per epoch} and the plain epoch's seconds."""
    from gpuaug import warp

    model_name, shape, batch, steps = REGIMES[regime]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (steps * batch,) + shape, dtype=np.uint8)
    y = rng.integers(0, 10, steps * batch)
    chosen, models = warp.gather_form, {}
    try:
        for name, form, settings in [("no augmentation", None, None), *contenders()]:
            if names and name != "no augmentation" and name not in names:
                continue
            if form is not None:
                warp.gather_form = lambda form=form: form
            model = build(model_name, shape, name, settings)
            model.fit(x, y, batch_size=batch, epochs=1, verbose=0)  # traced and compiled with this form
            models[name] = (model, [])
            warp.gather_form = chosen
    finally:
        warp.gather_form = chosen
    for _ in range(epochs):
        for model, times in models.values():
            start = time.perf_counter()
            model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
            times.append(time.perf_counter() - start)
    base = statistics.median(models.pop("no augmentation")[1])
    return base, {name: statistics.median(times) - base for name, (_, times) in models.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--contenders", nargs="+", default=None, help="names (default: all)")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import keras

    import gpuaug
    from gpuaug import warp

    backend = keras.backend.backend()
    report = {"backend": backend, "cpu_count": os.cpu_count(), "regimes": REGIMES, "epochs": args.epochs,
              "chosen_form": warp.gather_form(), "alone": {}, "in_step": {}}
    images = np.random.default_rng(1).uniform(0, 255, (256, 32, 32, 3)).astype("float32")
    chosen = warp.gather_form
    try:
        for name, form, settings in contenders():
            if args.contenders and name not in args.contenders:
                continue
            if form is not None:
                warp.gather_form = lambda form=form: form
            layer = mixing_layer(name) if name in MIXING else gpuaug.RandomTransform(**settings, seed=0)
            report["alone"][name] = alone(layer, images)
            warp.gather_form = chosen
    finally:
        warp.gather_form = chosen
    for regime in args.regimes:
        base, added = in_step(regime, args.epochs, args.contenders)
        report["in_step"][regime] = {"plain_epoch_seconds": base, "added_seconds": added}
    print(f"\n| {backend}, {os.cpu_count()} cores | alone, images/s (32x32x3, batch 256) | "
          + " | ".join(f"{r}: added s/epoch (vs {report['in_step'][r]['plain_epoch_seconds']:.2f} s)"
                       for r in args.regimes) + " |")
    print("|---|---:|" + "---:|" * len(args.regimes))
    for name, _, _ in contenders():
        if name not in report["alone"]:
            continue
        cells = []
        for regime in args.regimes:
            entry = report["in_step"][regime]
            added = entry["added_seconds"][name]
            cells.append(f"{added:+.3f} ({added / entry['plain_epoch_seconds']:+.0%})")
        print(f"| {name} | {report['alone'][name]:,.0f} | " + " | ".join(cells) + " |")
    print(f"gpuaug's choice on {backend}: {report['chosen_form']}")
    write_report(args.out, f"in_step-{backend}.json", report)


if __name__ == "__main__":
    main()
