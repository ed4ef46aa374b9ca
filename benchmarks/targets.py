"""What moving targets with the images costs: images alone vs images with
segmentation masks vs images with masks and boxes, one RandomTransform call,
compiled with XLA, in one run.

    python -m benchmarks.targets                  # KERAS_BACKEND=tensorflow or jax

32x32x3 images, batch 256, the throughput benchmark's settings; masks
(256, 32, 32, 1) int32, 8 xyxy boxes per image. Prints a table and writes
benchmarks/results/targets-<backend>.json.
"""

import argparse
import os

import numpy as np

from benchmarks import write_report
from benchmarks.throughput import SETTINGS, measure

BATCH, SIZE, BOXES = 256, 32, 8


def inputs(kind):
    rng = np.random.default_rng(0)
    data = {"images": rng.uniform(0, 255, (BATCH, SIZE, SIZE, 3)).astype("float32")}
    if kind in ("masks", "masks + boxes"):
        data["segmentation_masks"] = rng.integers(0, 5, (BATCH, SIZE, SIZE, 1)).astype("int32")
    if kind == "masks + boxes":
        corner = rng.uniform(0, SIZE / 2, (BATCH, BOXES, 2))
        data["bounding_boxes"] = {"boxes": np.concatenate([corner, corner + 8], -1).astype("float32"),
                                  "labels": rng.integers(0, 3, (BATCH, BOXES)).astype("int32")}
    return data


def step(layer):
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        function = tf.function(lambda data: layer(data, training=True), jit_compile=True)
        return lambda data, i: function(data)
    import jax

    layer(inputs("images")["images"][:1], training=True)  # builds the seed state
    state = [v.value for v in layer.non_trainable_variables]
    function = jax.jit(lambda state, data: layer.stateless_call([], state, data, training=True)[0])
    return lambda data, i: function(state, data)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    import keras

    import gpuaug

    layer = gpuaug.RandomTransform(**SETTINGS, bounding_box_format="xyxy", seed=0)
    run = step(layer)
    rows = []
    for kind in ("images", "masks", "masks + boxes"):
        data = inputs(kind)
        rate = measure(lambda batch, i: run(data, i)["images"], data["images"], args.seconds)
        rows.append({"inputs": kind, "images_per_second": rate})
    base = rows[0]["images_per_second"]
    backend = keras.backend.backend()
    print(f"| inputs ({backend}, 32x32x3, batch 256, XLA) | images/s | vs images alone |")
    print("|---|---:|---:|")
    for row in rows:
        row["relative"] = row["images_per_second"] / base
        print(f"| {row['inputs']} | {row['images_per_second']:,.0f} | {row['relative']:.2f}x |")
    write_report(args.out, f"targets-{backend}.json", {
        "backend": backend, "cpu_count": os.cpu_count(), "settings": SETTINGS, "batch": BATCH,
        "boxes_per_image": BOXES, "rows": rows})


if __name__ == "__main__":
    main()
