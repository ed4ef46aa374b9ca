"""Images/s of augmentation alone, every contender with the same settings, in one run.

    python -m benchmarks.throughput                    # TensorFlow backend
    KERAS_BACKEND=jax python -m benchmarks.throughput  # JAX (as on the GPU machine)

Contenders: `ImageDataGenerator.flow` (CPU, one image at a time), Keras'
built-in layers (RandomRotation + RandomTranslation + RandomZoom + RandomFlip,
one warp each), and `gpuaug.RandomTransform` eager, compiled (tf.function
without XLA, TensorFlow only) and compiled with XLA; then, with XLA, the
same with a perspective (0.3) and with lens distortion (0.2) added, and the
copy path (flips and whole-pixel shifts). Sizes: 32x32x3 (batch 256) and
224x224x3 (batch 32). Prints a table with ratios to
ImageDataGenerator and writes JSON and a bar chart (PNG) under --out.
"""

import argparse
import json
import os
import pathlib
import platform
import time

import numpy as np

from benchmarks import write_report

SETTINGS = dict(  # the reference's arguments, shared by every contender
    rotation_range=15, width_shift_range=0.1, height_shift_range=0.1,
    shear_range=10, zoom_range=0.1, horizontal_flip=True,
)
SIZES = {"32x32x3": (256, 32, 32, 3), "224x224x3": (32, 224, 224, 3)}


def measure(step, images, seconds, min_calls=3):
    """Images/s of `step(images, i)` after one warm-up call (compilation)."""
    block(step(images, 0))
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        result = step(images, calls + 1)
        calls += 1
    block(result)
    return calls * len(images) / (time.perf_counter() - start)


def block(result):
    """Waits until `result` (a JAX, PyTorch, TensorFlow or numpy value) is computed."""
    if hasattr(result, "block_until_ready"):
        result.block_until_ready()
    elif type(result).__module__.startswith("torch"):
        import torch

        if result.is_cuda:
            torch.cuda.synchronize(result.device)
    else:
        np.asarray(result)


def generator_step(shape):
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    data = np.random.default_rng(0).uniform(0, 255, (shape[0] * 4,) + shape[1:]).astype("float32")
    iterator = ImageDataGenerator(**SETTINGS).flow(data, batch_size=shape[0], shuffle=False, seed=0)
    return lambda images, i: next(iterator)


def keras_layers():
    import keras

    return [
        keras.layers.RandomRotation(SETTINGS["rotation_range"] / 360.0, fill_mode="nearest", seed=1),
        keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", seed=2),
        keras.layers.RandomZoom(0.1, 0.1, fill_mode="nearest", seed=3),
        keras.layers.RandomFlip("horizontal", seed=4),
    ]


# Beyond the shared settings, XLA only: the cost of a perspective and of a lens
# over the affine warp, and the copy path (flips and whole-pixel shifts).
VARIANTS = {
    "RandomTransform + perspective 0.3 (xla)": dict(SETTINGS, perspective_range=0.3),
    "RandomTransform + lens distortion 0.2 (xla)": dict(SETTINGS, distortion_range=0.2),
    "RandomTransform, copy path: flip + 4-pixel shifts (xla)": dict(width_shift_range=4, height_shift_range=4,
                                                                    horizontal_flip=True),
}


def gpuaug_layer(**settings):
    import gpuaug

    return [gpuaug.RandomTransform(**(settings or SETTINGS), seed=0)]


def compiled(layers, mode):
    """A step function applying `layers` in training mode.

    mode: "eager", "graph" (tf.function, TensorFlow only) or "xla" (on
    PyTorch: `torch.compile`). On JAX a seed is passed in per call (layers'
    get_random_transformation / transform_images), since jitted functions
    cannot update seed state.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        def apply(images):
            for layer in layers:
                images = layer(images, training=True)
            return images

        if mode == "eager":
            return lambda images, i: apply(images)
        function = tf.function(apply, jit_compile=(mode == "xla"))
        return lambda images, i: function(images)
    if backend == "jax":
        import jax

        import gpuaug

        def apply_seeded(images, seed):
            for k, layer in enumerate(layers):
                key = seed + k
                transformation = layer.get_random_transformation(images, seed=key, **_training(layer))
                if isinstance(layer, gpuaug.RandomTransform):  # as its call does (copy path included)
                    images = layer._transform_images(images, transformation, layer.augmentation.moves_whole_pixels)
                else:
                    images = layer.transform_images(images, transformation, training=True)
            return images

        function = jax.jit(apply_seeded) if mode == "xla" else apply_seeded
        return lambda images, i: function(images, jax.numpy.array([0, i], dtype="uint32"))
    if backend == "torch":
        import torch

        def apply_torch(images):
            for layer in layers:
                images = layer(images, training=True)
            return images

        function = torch.compile(apply_torch) if mode == "xla" else apply_torch
        return lambda images, i: function(images)
    raise SystemExit(f"backend {backend} is not benchmarked here")


def _training(layer):
    import gpuaug

    return {} if isinstance(layer, gpuaug.RandomTransform) else {"training": True}


def describe_failure(exc):
    text = str(exc)
    if "ImageProjectiveTransformV3" in text:
        return "no XLA kernel for ImageProjectiveTransformV3"
    return f"{type(exc).__name__}: {text.splitlines()[0][:100]}"


def xla_memory(layers, images):
    """Temporary memory of the XLA-compiled step, in multiples of the batch
    (compiler-reported; JAX only)."""
    import keras

    if keras.backend.backend() != "jax":
        return None
    import jax

    def step(x, seed):
        layer = layers[0]
        return layer.transform_images(x, layer.get_random_transformation(x, seed=seed))

    seed = jax.numpy.array([0, 1], dtype="uint32")
    stats = jax.jit(step).lower(images, seed).compile().memory_analysis()
    return stats.temp_size_in_bytes / images.nbytes


def run(seconds, sizes):
    import keras

    backend = keras.backend.backend()
    rows = []
    for size in sizes:
        shape = SIZES[size]
        images = keras.ops.convert_to_tensor(
            np.random.default_rng(0).uniform(0, 255, shape).astype("float32"))
        contenders = [("ImageDataGenerator.flow", lambda: generator_step(shape))]
        modes = ["eager", "graph", "xla"] if backend == "tensorflow" else ["eager", "xla"]
        for mode in modes:
            contenders.append((f"Keras layers ({mode})", lambda mode=mode: compiled(keras_layers(), mode)))
        for mode in modes:
            contenders.append((f"RandomTransform ({mode})", lambda mode=mode: compiled(gpuaug_layer(), mode)))
        for name, settings in VARIANTS.items():
            contenders.append((name, lambda settings=settings: compiled(gpuaug_layer(**settings), "xla")))
        for name, make in contenders:
            try:
                rate = measure(make(), images, seconds)
                error = None
            except Exception as exc:  # noqa: BLE001 - a contender that cannot run is a result
                rate, error = None, describe_failure(exc)
            rows.append({"size": size, "batch": shape[0], "contender": name,
                         "images_per_second": rate, "error": error})
            print(f"  {size:10s} {name:30s} " + (f"{rate:>12,.0f} images/s" if rate else f"failed ({error})"),
                  flush=True)
        memory = xla_memory(gpuaug_layer(), images)
        if memory is not None:
            rows.append({"size": size, "batch": shape[0], "contender": "RandomTransform (xla) temp memory",
                         "batch_multiple": memory})
    return rows


def print_table(rows, backend):
    print(f"\nAugmentation throughput, backend {backend} ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores); ratio = images/s / ImageDataGenerator.flow images/s")
    print("| size | contender | images/s | vs ImageDataGenerator |\n|---|---|---:|---:|")
    for size in dict.fromkeys(r["size"] for r in rows):
        base = next(r["images_per_second"] for r in rows
                    if r["size"] == size and r["contender"] == "ImageDataGenerator.flow")
        for r in rows:
            if r["size"] != size:
                continue
            if "batch_multiple" in r:
                print(f"| {size} | {r['contender']} | {r['batch_multiple']:.2f} x batch | |")
            elif r["images_per_second"] is None:
                print(f"| {size} | {r['contender']} | fails: {r['error']} | |")
            else:
                print(f"| {size} | {r['contender']} | {r['images_per_second']:,.0f} | "
                      f"{r['images_per_second'] / base:.1f}x |")


def plot(rows, backend, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    sizes = list(dict.fromkeys(r["size"] for r in rows))
    fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4.5), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        points = [r for r in rows if r["size"] == size and r.get("images_per_second")]
        names = [r["contender"] for r in points]
        values = [r["images_per_second"] for r in points]
        colours = ["#888888" if n.startswith("Image") else "#4c72b0" if n.startswith("Keras") else "#dd8452"
                   for n in names]
        ax.barh(names, values, color=colours)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.invert_yaxis()
        ax.set_xlabel("images/s (log scale)")
        ax.set_title(f"{size}, batch {points[0]['batch']}")
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:,.0f}", va="center", fontsize=8)
    fig.suptitle(f"Augmentation throughput ({backend} backend, {os.cpu_count()} CPU cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per contender")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--out", default="benchmarks/results", help="folder for JSON and PNG")
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw the table and PNG from the JSON already in --out, without measuring")
    args = parser.parse_args(argv)
    import keras

    backend = keras.backend.backend()
    out = pathlib.Path(args.out)
    if args.plot_only:
        rows = json.loads((out / f"throughput-{backend}.json").read_text())["rows"]
        print_table(rows, backend)
        plot(rows, backend, out / f"throughput-{backend}.png")
        return
    rows = run(args.seconds, args.sizes)
    print_table(rows, backend)
    write_report(out, f"throughput-{backend}.json",
                 {"backend": backend, "cpu_count": os.cpu_count(), "settings": SETTINGS, "rows": rows})
    plot(rows, backend, out / f"throughput-{backend}.png")
    print(f"\nwrote {out}/throughput-{backend}.json and .png")


if __name__ == "__main__":
    main()
