"""Does removing the generator's augmentation make training slower? The question that started gpuaug.

    python -m benchmarks.generator_threads           # TensorFlow backend, the CIFAR-10 CNN, batch 32

A user timed the Keras cifar10 example, with `ImageDataGenerator.flow` feeding
`fit` from its own thread, and found that removing `random_transform` made
the epochs slower (22 s to 28 s at batch 32). This reproduces the setting as
Keras 3 runs it today: `model.fit(datagen.flow(x, y, batch_size=32))`, the
classic CNN, the cifar10 example's augmentation (shifts 0.1, horizontal flip)
against none (`ImageDataGenerator()`), with the iterator's default (one
worker: Keras wraps it in `tf.data.Dataset.from_generator`, which runs it on
a tf.data thread) and with `workers=4` (Keras' OrderedEnqueuer: a thread
pool and a queue of 10 batches). For each it measures, over `--epochs`
epochs of `--images` training images (the first epoch left out):

- the epoch time (median);
- per batch, in the producer: wall time and the producing thread's CPU time
  (`time.thread_time`); wall - CPU is time the thread was runnable but not
  running, waiting for the GIL or a core;
- per batch, in the consumer (the thread that pulls batches for tf.data):
  the time it waited for the next batch;
- with workers=4, the number of batches ready or in flight when the consumer
  asks (the queue's occupancy);
- the GIL's share of the producer: the same production timed alone, in one
  thread, with and without a second thread that only runs Python (if the
  augmentation released the GIL while scipy warps, its time would not grow).

Each condition runs `--repeats` times, each in a fresh process: the answer
depends on how the threads happen to be scheduled, so one run says little.
Prints a table and writes benchmarks/results/generator_threads-<backend>.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

from benchmarks import REPO, repo_relative, write_report

AUGMENT = dict(width_shift_range=0.1, height_shift_range=0.1, horizontal_flip=True)


class Probe:
    """Timings gathered by the wrappers below (appended from several threads)."""

    def __init__(self):
        self.produce_wall, self.produce_cpu, self.wait, self.occupancy = [], [], [], []


def instrument(iterator, probe):
    """Wraps the iterator's batch production with wall and thread-CPU timers."""
    produce = iterator._get_batches_of_transformed_samples

    def timed(index_array):
        wall, cpu = time.perf_counter(), time.thread_time()
        result = produce(index_array)
        probe.produce_cpu.append(time.thread_time() - cpu)
        probe.produce_wall.append(time.perf_counter() - wall)
        return result

    iterator._get_batches_of_transformed_samples = timed
    return iterator


def instrument_consumer(probe):
    """Times each batch the data adapter's generator hands to tf.data, and
    the enqueuer's queue when there is one. Returns an undo function."""
    from keras.src.trainers.data_adapters import py_dataset_adapter

    adapter = py_dataset_adapter.PyDatasetAdapter
    original = adapter._get_iterator

    def timed_iterator(self):
        generator = original(self)
        while True:
            if self.enqueuer is not None:
                probe.occupancy.append(self.enqueuer.future_queue.qsize() + self.enqueuer.ready_queue.qsize())
            start = time.perf_counter()
            try:
                batch = next(generator)
            except StopIteration:
                return
            probe.wait.append(time.perf_counter() - start)
            yield batch

    adapter._get_iterator = timed_iterator
    return lambda: setattr(adapter, "_get_iterator", original)


def gil_share(x, augment, batches=40):
    """Seconds to produce `batches` batches alone, and beside a thread that
    only runs Python: how much of the production needs the GIL."""
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    def produce():
        iterator = ImageDataGenerator(**(AUGMENT if augment else {})).flow(x, batch_size=32, seed=0)
        start = time.perf_counter()
        for index in range(batches):
            iterator[index % len(iterator)]
        return time.perf_counter() - start

    alone = produce()
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            sum(range(1000))

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        contended = produce()
    finally:
        stop.set()
        spinner.join()
    return alone, contended


def run(x, y, augment, workers, epochs):
    import keras

    from keras.src.legacy.preprocessing.image import ImageDataGenerator
    from models.cifar10 import build_cifar10_model

    probe = Probe()
    iterator = instrument(ImageDataGenerator(**(AUGMENT if augment else {})).flow(x, y, batch_size=32, seed=0),
                          probe)
    iterator.workers = workers
    model = build_cifar10_model([], input_shape=x.shape[1:], num_classes=10)
    model.compile(optimizer=keras.optimizers.RMSprop(1e-4), loss="sparse_categorical_crossentropy")
    times = []

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    undo = instrument_consumer(probe)
    try:
        model.fit(iterator, epochs=epochs, verbose=0, callbacks=[EpochTimes()])
    finally:
        undo()
    steps = len(iterator)
    later = slice(steps, None)  # the first epoch compiles: left out
    mean = lambda values: float(np.mean(values[later])) if len(values[later]) else float("nan")  # noqa: E731
    return {"augment": augment, "workers": workers, "epoch_seconds": statistics.median(times[1:]),
            "all_epoch_seconds": times, "produce_wall_ms": 1000 * mean(probe.produce_wall),
            "produce_cpu_ms": 1000 * mean(probe.produce_cpu), "consumer_wait_ms": 1000 * mean(probe.wait),
            "consumer_wait_share": float(np.sum(probe.wait[later]) / np.sum(times[1:])) if probe.wait else None,
            "queue_occupancy": float(np.mean(probe.occupancy[later])) if probe.occupancy else None}


def one_process(argv):
    """`python -m benchmarks.generator_threads --one AUGMENT WORKERS ...`: one
    condition, its row as JSON on the last line."""
    import keras  # noqa: F401

    from models.data import load_data

    args = argv
    (x, y), _ = load_data(args.data_dir)
    x, y = x[: args.images].astype("float32"), y[: args.images]
    augment, workers = args.one
    print(json.dumps(run(x, y, augment == "augment", int(workers), args.epochs)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10-mini"))
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--one", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    if args.one:
        return one_process(args)
    import keras

    from models.data import load_data

    rows = []
    for repeat in range(args.repeats):
        for workers in (1, 4):
            for augment in ("augment", "none"):
                result = subprocess.run(
                    [sys.executable, "-m", "benchmarks.generator_threads", "--one", augment, str(workers),
                     "--data-dir", args.data_dir, "--images", str(args.images), "--epochs", str(args.epochs)],
                    cwd=REPO, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
                if result.returncode != 0:
                    sys.exit(result.stderr[-3000:])
                rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    (x, _), _ = load_data(args.data_dir)
    gil = {name: gil_share(x[: args.images].astype("float32"), augment)
           for name, augment in (("augment", True), ("none", False))}
    print(f"\n| {keras.backend.backend()}, CNN, batch 32, {args.images} images, {args.repeats} processes each | "
          "epoch s: median (range) | producer ms/batch (wall / CPU) | consumer waits ms/batch (share of the "
          "epoch) | batches queued |")
    print("|---|---:|---:|---:|---:|")
    summary = []
    for workers in (1, 4):
        for augment in (True, False):
            group = [r for r in rows if r["augment"] == augment and r["workers"] == workers]
            seconds = [r["epoch_seconds"] for r in group]
            middle = lambda key: statistics.median(r[key] for r in group)  # noqa: E731
            occupancy = "" if group[0]["queue_occupancy"] is None else f"{middle('queue_occupancy'):.1f}"
            summary.append({"augment": augment, "workers": workers, "epoch_seconds_median": statistics.median(seconds),
                            "epoch_seconds": seconds})
            print(f"| {'augment' if augment else 'none'}, workers={workers} | {statistics.median(seconds):.2f} "
                  f"({min(seconds):.2f}-{max(seconds):.2f}) | {middle('produce_wall_ms'):.2f} / "
                  f"{middle('produce_cpu_ms'):.2f} | {middle('consumer_wait_ms'):.2f} "
                  f"({middle('consumer_wait_share'):.0%}) | {occupancy} |")
    for name, (alone, contended) in gil.items():
        print(f"producing 40 batches ({name}): {alone:.3f} s alone, {contended:.3f} s beside a Python thread "
              f"({contended / alone:.0f}x)")
    write_report(args.out, f"generator_threads-{keras.backend.backend()}.json", {
        "cpu_count": os.cpu_count(), "data_dir": repo_relative(args.data_dir), "images": args.images,
        "epochs": args.epochs, "repeats": args.repeats, "summary": summary, "rows": rows,
        "gil": {k: {"alone_s": a, "beside_python_thread_s": c} for k, (a, c) in gil.items()}})


if __name__ == "__main__":
    main()
