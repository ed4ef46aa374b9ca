"""Render augmented CIFAR-10 images beside the reference generator's output.

    python -m gpuaug.preview --out grid.png
    python -m gpuaug.preview --data-dir ../shared/data/cifar10-mini --fill-mode reflect

Columns: the original image, then for each of --draws random draws the
layer's output and `ImageDataGenerator.apply_transform`'s output for the same
parameters. The title gives the largest difference. With --perspective-range
or --distortion-range (which the reference does not have) the columns are the
layer's draws alone. Needs scipy, pillow and matplotlib (the test requirements).

    python -m gpuaug.preview --perspective-range 0.5 --distortion-range 0.25 --out perspective.png
"""

import argparse
import pathlib
import textwrap

import numpy as np

DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-mini"


def load_images(data_dir, count):
    """The first `count` test images of local CIFAR-10 batches (or of Keras'
    download), read without running code (`gpuaug.cifar`), float32 0..255."""
    from gpuaug import cifar

    folder = pathlib.Path(data_dir) if data_dir else cifar.download()
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    images, _ = cifar.read_batch(folder / "test_batch")
    return images[:count].astype("float32")


BEYOND_REFERENCE = ("perspective_range", "distortion_range")


def render(images, kwargs, draws, seed, path):
    """Draws the grid into `path`; returns the largest |gpuaug - reference|,
    or None when `kwargs` go beyond the reference (nothing to compare)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    import gpuaug
    from gpuaug.reference import reference_apply

    layer = gpuaug.RandomTransform(**kwargs, seed=seed)
    beyond = any(kwargs.get(name) for name in BEYOND_REFERENCE)
    generator = ImageDataGenerator(**{k: v for k, v in kwargs.items() if k not in BEYOND_REFERENCE})
    columns = [("original", images)]
    worst = 0.0
    for d in range(draws * (2 if beyond else 1)):
        transformation = layer.get_random_transformation(images)
        ours = np.asarray(layer.transform_images(images, transformation))
        columns.append((f"gpuaug #{d + 1}", ours))
        if not beyond:
            reference = reference_apply(generator, images, transformation)
            worst = max(worst, float(np.abs(ours - reference).max()))
            columns.append((f"reference #{d + 1}", reference))
    fig, axes = plt.subplots(len(images), len(columns), figsize=(1.3 * len(columns), 1.3 * len(images)),
                             squeeze=False)
    for c, (title, batch) in enumerate(columns):
        for r, image in enumerate(batch):
            ax = axes[r][c]
            ax.imshow(np.clip(image, 0, 255).astype("uint8"), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=7)
    settings = textwrap.fill(", ".join(f"{k}={v}" for k, v in kwargs.items()), 90)
    compared = ("perspective and lens distortion: no reference (ImageDataGenerator has neither)" if beyond
                else f"max |gpuaug - reference| = {worst:.4g} (0..255 scale)")
    fig.suptitle(f"{settings}\n{compared}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return None if beyond else worst


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="grid.png")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else None,
                        help="local CIFAR-10 (default: ../shared's subset if present, else download)")
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rotation-range", type=float, default=30)
    parser.add_argument("--shift-range", type=float, default=0.15, help="width and height")
    parser.add_argument("--shear-range", type=float, default=15)
    parser.add_argument("--zoom-range", type=float, default=0.2)
    parser.add_argument("--channel-shift-range", type=float, default=20)
    parser.add_argument("--brightness-range", type=float, nargs=2, default=(0.7, 1.3))
    parser.add_argument("--fill-mode", choices=("constant", "nearest", "reflect", "wrap"), default="nearest")
    parser.add_argument("--perspective-range", type=float, default=0.0, help="beyond the reference")
    parser.add_argument("--distortion-range", type=float, default=0.0, help="beyond the reference")
    args = parser.parse_args(argv)
    kwargs = dict(
        rotation_range=args.rotation_range, width_shift_range=args.shift_range,
        height_shift_range=args.shift_range, shear_range=args.shear_range, zoom_range=args.zoom_range,
        channel_shift_range=args.channel_shift_range, brightness_range=list(args.brightness_range),
        horizontal_flip=True, fill_mode=args.fill_mode,
    )
    kwargs.update({k: v for k, v in (("perspective_range", args.perspective_range),
                                     ("distortion_range", args.distortion_range)) if v})
    worst = render(load_images(args.data_dir, args.images), kwargs, args.draws, args.seed, args.out)
    print(f"wrote {args.out}" + ("" if worst is None else f"; max |gpuaug - reference| = {worst:.4g}"))


if __name__ == "__main__":
    main()
