"""Epoch time of real training with --augment none, generator and gpu, in one run.

    python -m benchmarks.epoch_time                       # ../shared/data/cifar10-mini
    python -m benchmarks.epoch_time --regimes tiny --epochs 6

Two regimes: "cnn", the classic CIFAR-10 CNN (model-bound on a CPU), and
"tiny", a one-convolution model that trains far faster than the generator
augments, standing in for a fast accelerator (input-bound), so that the
generator bottleneck shows on a CPU too. Each run goes through train.py's own
code (`train.run`) with the cifar10 example's augmentation plus rotation 15,
shear 10 and zoom 0.1 (the throughput benchmark's settings). The first epoch
includes compilation and is reported separately; "epoch s" is the median of
the others. Prints a table, writes JSON and a bar chart (PNG) under --out.
"""

import argparse
import os
import pathlib
import statistics
import sys

from benchmarks import REPO, repo_relative, write_report

AUGMENTS = ("none", "generator", "gpu")
SETTINGS = ["--rotation-range", "15", "--shear-range", "10", "--zoom-range", "0.1"]


def run_one(regime, augment, args):
    sys.path.insert(0, str(REPO))
    import train

    argv = ["--model", regime, "--augment", augment, "--epochs", str(args.epochs),
            "--batch-size", str(args.batch_size), "--seed", "0", "--verbose", "0",
            *(SETTINGS if augment != "none" else [])]  # train.py refuses flags it would ignore
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    if args.limit:
        argv += ["--limit", str(args.limit)]
    # XLA everywhere but for the CNN on a CPU-only TensorFlow, where XLA's
    # convolutions are slower than TensorFlow's own (train.py's default there).
    if regime == "tiny":
        argv.append("--jit-compile")
    summary = train.run(train.parse_args(argv))
    seconds = summary["epoch_seconds"]
    steady = seconds[1:] or seconds
    return {
        "regime": regime, "augment": augment, "first_epoch_s": seconds[0],
        "epoch_s": statistics.median(steady), "epoch_s_all": seconds,
        "images_per_second": summary["train_images"] / statistics.median(steady),
        "test_accuracy": summary["test_accuracy"], "train_images": summary["train_images"],
        "backend": summary["backend"],
    }


def print_table(rows):
    print("\n| regime | augment | epoch s (median) | images/s | vs none | first epoch s | test accuracy |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for regime in dict.fromkeys(r["regime"] for r in rows):
        base = next(r["epoch_s"] for r in rows if r["regime"] == regime and r["augment"] == "none")
        for r in (r for r in rows if r["regime"] == regime):
            print(f"| {regime} | {r['augment']} | {r['epoch_s']:.2f} | {r['images_per_second']:,.0f} | "
                  f"{r['epoch_s'] / base:.2f}x | {r['first_epoch_s']:.2f} | {r['test_accuracy']:.3f} |")


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = list(dict.fromkeys(r["regime"] for r in rows))
    fig, axes = plt.subplots(1, len(regimes), figsize=(5 * len(regimes), 3.8), squeeze=False)
    colours = {"none": "#888888", "generator": "#4c72b0", "gpu": "#dd8452"}
    for ax, regime in zip(axes[0], regimes):
        points = [r for r in rows if r["regime"] == regime]
        ax.bar([r["augment"] for r in points], [r["epoch_s"] for r in points],
               color=[colours[r["augment"]] for r in points])
        for x, r in enumerate(points):
            ax.text(x, r["epoch_s"], f"{r['epoch_s']:.2f} s", ha="center", va="bottom", fontsize=9)
        ax.set_ylabel("seconds per epoch (median)")
        ax.set_title(f"{regime} model, {points[0]['train_images']} images")
    fig.suptitle(f"Epoch time by augmentation path ({rows[0]['backend']}, {os.cpu_count()} CPU cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "cifar10-mini"),
                        help="CIFAR-10 data for train.py (empty string: download the full set)")
    parser.add_argument("--regimes", nargs="+", choices=("cnn", "tiny"), default=["cnn", "tiny"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    rows = []
    for regime in args.regimes:
        for augment in AUGMENTS:
            print(f"== {regime} / {augment}", flush=True)
            rows.append(run_one(regime, augment, args))
    print_table(rows)
    out = pathlib.Path(args.out)
    backend = rows[0]["backend"]
    write_report(out, f"epoch_time-{backend}.json", {
        "cpu_count": os.cpu_count(), "settings": SETTINGS,
        "args": dict(vars(args), data_dir=repo_relative(args.data_dir), out=repo_relative(args.out)), "rows": rows})
    plot(rows, out / f"epoch_time-{backend}.png")
    print(f"\nwrote {out}/epoch_time-{backend}.json and .png")


if __name__ == "__main__":
    main()
