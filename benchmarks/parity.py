"""Pixel parity with the reference, summarized per fill mode and order.

    python -m benchmarks.parity

On the first 64 real CIFAR-10 test images (../shared), for each fill mode and
interpolation order, and for each geometric transform alone and all of them
together (plus channel shift), the layer draws parameters, applies them, and
the reference (`ImageDataGenerator.apply_transform`) applies the same ones.
Reports the worst max |diff| (0..255 scale) and the fraction of values that
differ by more than 1e-3 (tests/test_parity.py requires none for geometry and
channel shift). `--out` writes the table as JSON; benchmarks/results/parity.json
is the committed report.
"""

import argparse
import json
import pathlib

import numpy as np

from benchmarks import REPO, repo_relative

TOLERANCE = 1e-3
CVAL = 123.0
TRANSFORMS = {
    "rotation": dict(rotation_range=60),
    "shifts": dict(width_shift_range=0.3, height_shift_range=0.3),
    "shear": dict(shear_range=35),
    "zoom": dict(zoom_range=[0.5, 1.5]),
    "flips": dict(horizontal_flip=True, vertical_flip=True),
    "all + channel shift": dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.15,
                                shear_range=25, zoom_range=[0.6, 1.3], horizontal_flip=True,
                                vertical_flip=True, channel_shift_range=50.0),
}


FILL_MODES = ("constant", "nearest", "reflect", "wrap")


def parity_rows(images, transforms=TRANSFORMS, report=print):
    """For each fill mode and order, every transform of `transforms`: the
    layer draws parameters and applies them where Keras runs it (the device,
    if any), the reference applies the same ones on the host. Returns rows
    {fill_mode, order, worst_max_abs_diff, mismatch_fraction (> TOLERANCE),
    values}; `report(line)` gets a table row each."""
    import keras
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    import gpuaug
    from gpuaug.reference import reference_apply

    rows = []
    for mode in FILL_MODES:
        for order in (0, 1):
            worst, mismatched, total = 0.0, 0, 0
            for seed, kwargs in enumerate(transforms.values()):
                kwargs = dict(kwargs, fill_mode=mode, interpolation_order=order, cval=CVAL)
                layer = gpuaug.RandomTransform(**kwargs, seed=seed)
                transformation = layer.get_random_transformation(images)
                ours = keras.ops.convert_to_numpy(layer.transform_images(images, transformation))
                diff = np.abs(ours - reference_apply(ImageDataGenerator(**kwargs), images, transformation))
                worst = max(worst, float(diff.max()))
                mismatched += int(np.sum(diff > TOLERANCE))
                total += diff.size
            rows.append({"fill_mode": mode, "order": order, "worst_max_abs_diff": worst,
                         "mismatch_fraction": mismatched / total, "values": total})
            report(f"| {mode} | {order} | {worst:.2e} | {mismatched / total:.4%} | {total:,} |")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10-mini"))
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--out", default=None, help="optional JSON file")
    args = parser.parse_args(argv)
    from gpuaug.cifar import read_batch

    images, _ = read_batch(pathlib.Path(args.data_dir) / "cifar-10-batches-py" / "test_batch")
    images = images[: args.images].astype("float32")
    print("| fill mode | order | worst max abs diff | values > 1e-3 | compared values |")
    print("|---|---|---:|---:|---:|")
    rows = parity_rows(images, report=lambda line: print(line, flush=True))
    if args.out:
        import keras

        pathlib.Path(args.out).write_text(json.dumps(
            {"backend": keras.backend.backend(), "data_dir": repo_relative(args.data_dir),
             "images": args.images, "tolerance": TOLERANCE, "cval": CVAL,
             "transforms": TRANSFORMS, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
