"""Streaming a folder of images vs reading arrays: train.py's speed and memory.

    python -m benchmarks.folders                  # ../shared/data/cifar10-mini

Writes the CIFAR-10 subset out as PNG files (train/CLASS/*.png,
test/CLASS/*.png, in a temporary folder), then runs train.py (the CIFAR-10
CNN, batch 32, `--epochs` epochs, gpuaug augmentation) once on the batches
(in-memory arrays) and once on the PNG folder (streamed by Keras'
image_dataset_from_directory), each in its own process. Prints per source the
images/s of the epochs after the first (median), the peak resident memory
of the process and the test accuracy; writes benchmarks/results/folders-<backend>.json.
"""

import argparse
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile

from benchmarks import REPO, repo_relative, write_report

PEAK_RSS = """
import resource, sys
sys.path.insert(0, {repo!r})
import train
code = train.main(sys.argv[1:])
print("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, flush=True)
sys.exit(code)
"""


def write_png_folder(data_dir, root):
    import numpy as np
    from PIL import Image

    from models.data import load_data

    names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    for split, (images, labels) in zip(("train", "test"), load_data(data_dir)):
        for number, (image, label) in enumerate(zip(images, labels)):
            folder = pathlib.Path(root) / split / names[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(image)).save(folder / f"{number:05d}.png")


def run(source, epochs):
    """train.py on `source` in a fresh process: its epoch lines, peak RSS, accuracy."""
    args = ["--data-dir", str(source), "--epochs", str(epochs), "--verbose", "0"]
    result = subprocess.run([sys.executable, "-c", PEAK_RSS.format(repo=str(REPO)), *args], cwd=REPO,
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(result.stderr[-2000:])
    rates = [float(r.replace(",", "")) for r in re.findall(r"^epoch \d+: [\d.]+ s, ([\d,]+) images/s",
                                                              result.stdout, re.M)]
    return {"images_per_second": statistics.median(rates[1:] or rates), "images_per_second_all": rates,
            "peak_rss_mb": float(re.search(r"peak_rss_mb ([\d.]+)", result.stdout).group(1)),
            "test_accuracy": float(re.search(r"test accuracy: ([\d.]+)", result.stdout).group(1))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10-mini"))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import keras

    rows = []
    with tempfile.TemporaryDirectory(prefix="gpuaug-png-") as folder:
        write_png_folder(args.data_dir, folder)
        for name, source in (("arrays (CIFAR-10 batches)", args.data_dir), ("streamed PNG folder", folder)):
            print(f"== {name}", flush=True)
            rows.append({"source": name, **run(source, args.epochs)})
    print(f"\n| source ({keras.backend.backend()}, CNN, batch 32, {args.epochs} epochs) | images/s (median, "
          "epochs 2+) | peak RSS MB | test accuracy |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['source']} | {row['images_per_second']:,.0f} | {row['peak_rss_mb']:,.0f} | "
              f"{row['test_accuracy']:.3f} |")
    write_report(args.out, f"folders-{keras.backend.backend()}.json", {
        "cpu_count": os.cpu_count(), "data_dir": repo_relative(args.data_dir), "epochs": args.epochs, "rows": rows})


if __name__ == "__main__":
    main()
