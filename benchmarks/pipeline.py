"""The input pipeline alone (no model): what is left on the CPU once augmentation is in the model.

    python -m benchmarks.pipeline                        # all three parts
    python -m benchmarks.pipeline --parts workers --repo /tmp/before   # another checkout's train.py

Three parts, each printed as a table and written to benchmarks/results/pipeline.json:

- rate: images/s delivered, batch 32, one full pass over a folder (after one
  warm-up batch), with no model: the legacy `flow_from_directory` (no
  augmentation), Keras' `image_dataset_from_directory` (what train.py
  streamed before: float32), train.py's stream (uint8, each process its own
  files), and that stream from its cache (memory, files), second pass. At
  32x32 (the CIFAR-10 subset as PNG files) and 224x224 (1,000 JPEG files of
  256x256, resized on the fly).
- workers: two TensorFlow workers (`--strategy multiworker` on 127.0.0.1)
  training one epoch on a folder of 240 PNG files and 60 test files, each
  under `strace`: the image files each process opens.
- memory: train.py (tiny model, 1 epoch, batch 64) on 50,000 training and
  10,000 test images (the full CIFAR-10's counts: the subset's images
  repeated), as PNG files and as the official python batches (in-memory
  arrays): peak resident memory.
"""

import argparse
import collections
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks import REPO, repo_relative, write_report
from benchmarks.folders import PEAK_RSS, write_png_folder

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
BATCH = 32


def rate(batches, count):
    """Images/s of iterating `batches` (an iterator of (images, labels))
    over `count` images, after one warm-up batch."""
    first = next(batches)
    seen, start = len(first[0]), time.perf_counter()
    for images, _ in batches:
        seen += len(images)
        if seen >= count:
            break
    return (seen - len(first[0])) / (time.perf_counter() - start), np.asarray(first[0]).dtype.name, \
        int(np.asarray(first[0])[0].nbytes)


def write_large_jpegs(data_dir, root, count=1000, size=256):
    """`count` JPEG files of size x size (CIFAR-10 images scaled up), 10 classes."""
    from PIL import Image

    from models.data import load_data

    (images, labels), _ = load_data(data_dir)
    for number in range(count):
        folder = pathlib.Path(root) / CLASSES[labels[number]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[number]).resize((size, size), Image.BILINEAR).save(folder / f"{number:05d}.jpg",
                                                                                  quality=90)


def measure_rates(folder, image_size, scratch):
    import tensorflow as tf
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    from models import inputs
    from models.data import open_data

    splits = open_data(str(folder), image_size=image_size, seed=0)
    files = splits.train
    count = len(files)
    rows = {}
    flow = ImageDataGenerator().flow_from_directory(
        str(folder), target_size=image_size, batch_size=BATCH, class_mode="sparse", shuffle=True, seed=0)
    rows["flow_from_directory (legacy, no augmentation)"] = rate(iter(flow), min(count, flow.n))
    keras_stream = tf.keras.utils.image_dataset_from_directory(
        str(folder), image_size=image_size, batch_size=BATCH, seed=0, verbose=False)
    rows["image_dataset_from_directory (before: float32)"] = rate(iter(keras_stream), count)
    feeds = inputs.Feeds(splits, BATCH, BATCH, seed=0)
    rows["train.py stream (uint8)"] = rate(iter(feeds.training()["x"]), count)
    for where in ("memory", str(pathlib.Path(scratch) / f"cache-{image_size[0]}")):
        cached = inputs.Feeds(splits, BATCH, BATCH, seed=0, caches=where)
        for _ in cached.training()["x"]:  # the first pass builds the cache
            pass
        label = "memory" if where == "memory" else "files"
        rows[f"train.py stream, from its cache ({label})"] = rate(iter(cached.training()["x"]), count)
        for cache in cached._pixel_caches.values():
            cache.close()
    return count, rows


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workers_files(repo, scratch):
    """Image files opened by each of two TF workers (under strace)."""
    from PIL import Image

    if shutil.which("strace") is None:
        return {"error": "strace is not installed (apt-get install strace)"}
    folder = pathlib.Path(scratch) / "workers"
    rng = np.random.default_rng(0)
    for split, count in (("train", 240), ("test", 60)):
        for number in range(count):
            path = folder / split / f"class{number % 3}"
            path.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(path / f"{number:04d}.png")
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    processes = []
    for index in range(2):
        env = dict(os.environ, PYTHONPATH=str(repo), TF_CPP_MIN_LOG_LEVEL="3",
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        trace = pathlib.Path(scratch) / f"strace{index}.txt"
        command = ["strace", "-f", "-e", "trace=open,openat", "-o", str(trace), sys.executable,
                   str(pathlib.Path(repo) / "train.py"), "--data-dir", str(folder), "--image-size", "12", "12",
                   "--model", "tiny", "--epochs", "1", "--batch-size", "16", "--verbose", "0",
                   "--strategy", "multiworker"]
        processes.append((subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True), trace))
    result = {}
    for index, (process, trace) in enumerate(processes):
        output, _ = process.communicate(timeout=600)
        if process.returncode != 0:
            return {"error": output[-2000:]}
        opens, distinct = collections.Counter(), collections.defaultdict(set)
        for line in trace.read_text().splitlines():
            # An open of a PNG file that did not fail (strace -f may split it: "<unfinished ...>").
            match = re.search(r'open(?:at)?\(.*?"([^"]+\.png)"', line)
            if match and "= -1" in line:
                match = None
            if match:
                split = pathlib.Path(match.group(1)).parts[-3]
                opens[split] += 1
                distinct[split].add(match.group(1))
        result[f"worker {index}"] = {"opens": dict(opens), "distinct_files": {k: len(v) for k, v in distinct.items()}}
    return result


def write_full_size(data_dir, root):
    """The CIFAR-10 subset repeated to the full data set's counts (50,000
    training and 10,000 test images): as PNG files (root/png) and as the
    official python batches (root/batches/cifar-10-batches-py)."""
    import pickle

    from PIL import Image

    from models.data import load_data

    (train_x, train_y), (test_x, test_y) = load_data(data_dir)
    splits = {"train": (train_x, train_y, 50_000), "test": (test_x, test_y, 10_000)}
    for split, (images, labels, count) in splits.items():
        for number in range(count):
            path = pathlib.Path(root) / "png" / split / CLASSES[labels[number % len(labels)]]
            path.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[number % len(images)]).save(path / f"{number:05d}.png")
    batches = pathlib.Path(root) / "batches" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name, split, part in [(f"data_batch_{i + 1}", "train", i) for i in range(5)] + [("test_batch", "test", 0)]:
        images, labels, _ = splits[split]
        index = np.arange(part * 10_000, (part + 1) * 10_000) % len(images)
        data = images[index].transpose(0, 3, 1, 2).reshape(10_000, -1)
        with open(batches / name, "wb") as handle:
            pickle.dump({b"data": data, b"labels": labels[index].tolist()}, handle)
    return pathlib.Path(root) / "png", batches


def memory(repo, folders):
    """Peak RSS of train.py (tiny model, 1 epoch) on each full-size source."""
    result = {}
    for name, folder in folders.items():
        args = ["--data-dir", str(folder), "--model", "tiny", "--epochs", "1", "--batch-size", "64", "--verbose", "0"]
        run = subprocess.run([sys.executable, "-c", PEAK_RSS.format(repo=str(repo)), *args], cwd=repo,
                             capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        if run.returncode != 0:
            result[name] = {"error": run.stderr[-2000:]}
            continue
        result[name] = {"peak_rss_mb": float(re.search(r"peak_rss_mb ([\d.]+)", run.stdout).group(1)),
                        "epoch_line": next(line for line in run.stdout.splitlines() if line.startswith("epoch 1:"))}
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10-mini"))
    parser.add_argument("--parts", nargs="+", default=["rate", "workers", "memory"],
                        choices=["rate", "workers", "memory"])
    parser.add_argument("--repo", default=str(REPO), help="the checkout whose train.py runs (workers, memory)")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    report = {"cpu_count": os.cpu_count(), "data_dir": repo_relative(args.data_dir), "batch": BATCH}
    with tempfile.TemporaryDirectory(prefix="gpuaug-pipeline-") as scratch:
        if "rate" in args.parts:
            small, large = pathlib.Path(scratch) / "png32", pathlib.Path(scratch) / "jpeg256"
            write_png_folder(args.data_dir, small)
            write_large_jpegs(args.data_dir, large)
            report["rate"] = {}
            for name, folder, size in (("32x32", small / "train", (32, 32)), ("224x224", large, (224, 224))):
                count, rows = measure_rates(folder, size, scratch)
                report["rate"][name] = {"images": count, "rows": {k: {"images_per_second": r, "dtype": d,
                                                                      "bytes_per_image": b}
                                                                  for k, (r, d, b) in rows.items()}}
            print(f"\n| pipeline (batch {BATCH}, no model, {os.cpu_count()} cores) | 32x32 images/s | "
                  "224x224 images/s | bytes per 224x224 image |")
            print("|---|---:|---:|---:|")
            for key in report["rate"]["32x32"]["rows"]:
                small_row, large_row = report["rate"]["32x32"]["rows"][key], report["rate"]["224x224"]["rows"][key]
                print(f"| {key} | {small_row['images_per_second']:,.0f} | {large_row['images_per_second']:,.0f} | "
                      f"{large_row['bytes_per_image']:,} ({large_row['dtype']}) |")
        if "workers" in args.parts:
            report["workers"] = {"repo": repo_relative(args.repo), **workers_files(args.repo, scratch)}
            print("\nimage files opened by two TF workers (240 training, 60 test files):")
            print(json.dumps(report["workers"], indent=1))
        if "memory" in args.parts:
            png, batches = write_full_size(args.data_dir, scratch)
            report["memory"] = {"repo": repo_relative(args.repo),
                                **memory(args.repo, {"PNG folder": png, "CIFAR-10 batches (arrays)": batches})}
            print("\ntrain.py on 50,000 + 10,000 images:", json.dumps(report["memory"], indent=1))
    name = "pipeline.json" if pathlib.Path(args.repo).resolve() == REPO else "pipeline-other-checkout.json"
    write_report(args.out, name, report)


if __name__ == "__main__":
    main()
