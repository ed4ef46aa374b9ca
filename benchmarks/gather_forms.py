"""The warp's gather form, alone and inside a training step.

    python -m benchmarks.gather_forms             # KERAS_BACKEND=tensorflow or jax

Two ways to gather the four bilinear taps: four 1-D gathers (gpuaug's form on
TensorFlow) and one gather of stacked (N, H, W, 4) indices (its form on JAX).
For each, in one process: images/s of RandomTransform alone (XLA, 32x32x3,
batch 256), and what it adds to an epoch of the tiny model (5,000 CIFAR-10
images, batch 128, jit_compile=True; median of 6 epochs, run interleaved with
an unaugmented model). The form is swapped in at trace time
(`gpuaug.warp.gather_form`); gpuaug itself uses the one it picks for the backend.
"""

import argparse
import statistics
import sys
import time

from benchmarks import REPO
from benchmarks.throughput import SETTINGS  # the same arguments as every other benchmark

FORMS = {"four 1-D gathers": "separate", "one stacked gather": "stacked"}  # gpuaug.warp.gather_form()


def alone(layer, images):
    import keras
    import numpy as np

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        function = tf.function(lambda: layer(images, training=True), jit_compile=True)
        call = function
    else:
        import jax

        layer(images[:1], training=True)
        state = [v.value for v in layer.non_trainable_variables]
        function = jax.jit(lambda state: layer.stateless_call([], state, images, training=True)[0])
        call = lambda: function(state)  # noqa: E731
    np.asarray(call())
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(60):
            out = call()
        np.asarray(out)
        best = max(best, 60 * len(images) / (time.perf_counter() - start))
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10-mini"))
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import keras

    import gpuaug
    from gpuaug import warp
    from models.cifar10 import build_tiny_model
    from models.data import load_data

    (x, y), _ = load_data(args.data_dir)
    x = x.astype("float32")

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self, times):
            super().__init__()
            self.times = times

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    chosen = warp.gather_form
    models, rates = {}, {}
    try:
        for name in ["no augmentation", *FORMS]:
            if name in FORMS:
                warp.gather_form = lambda form=FORMS[name]: form
                rates[name] = alone(gpuaug.RandomTransform(**SETTINGS, seed=0), x[:256])
            augmentation = [gpuaug.RandomTransform(**SETTINGS, seed=0)] if name in FORMS else []
            model = build_tiny_model(augmentation, input_shape=x.shape[1:], num_classes=10)
            model.compile(optimizer=keras.optimizers.RMSprop(1e-4), loss="sparse_categorical_crossentropy",
                          jit_compile=True)
            model.fit(x, y, batch_size=128, epochs=2, verbose=0)  # traced and compiled with this form
            models[name] = (model, [])
    finally:
        warp.gather_form = chosen
    for _ in range(args.epochs):
        for model, times in models.values():
            model.fit(x, y, batch_size=128, epochs=1, verbose=0, callbacks=[EpochTimes(times)])
    base = statistics.median(models["no augmentation"][1])
    print(f"\n| gather form ({keras.backend.backend()}) | alone, images/s (batch 256) | tiny model epoch s "
          "(median) | added by augmentation s |")
    print("|---|---:|---:|---:|")
    for name, (_, times) in models.items():
        median = statistics.median(times)
        rate = f"{rates[name]:,.0f}" if name in rates else ""
        print(f"| {name} | {rate} | {median:.3f} | {median - base:+.3f} |")


if __name__ == "__main__":
    main()
