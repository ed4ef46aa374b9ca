"""Image folders streamed by Keras' image_dataset_from_directory: exact pixels,
seeded --limit and hold-outs that keep every class, validation each epoch,
flow_from_directory for --augment generator, bounded memory on a folder
larger than it, larger images end to end, and the README's migration recipe."""

import json
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

import train
from benchmarks.folders import PEAK_RSS, write_png_folder
from conftest import CIFAR_DIR, REPO, assert_one_line_error, run_cli
from folder_tools import write_image_folder
from models.data import load_data, open_data, split_arrays


def labels_of(dataset):
    return [int(label) for _, label in dataset.as_numpy_iterator()]


def images_of(dataset):
    return np.stack([image for image, _ in dataset.as_numpy_iterator()])


def sorted_images(images):
    return sorted(np.asarray(image, np.uint8).tobytes() for image in images)


@pytest.fixture(scope="module")
def cifar_arrays():
    return load_data(str(CIFAR_DIR))


@pytest.fixture(scope="module")
def cifar_png_folder(tmp_path_factory):
    """The whole CIFAR-10 subset written out as PNG files (train/ and test/),
    as `python -m benchmarks.folders` writes it."""
    root = tmp_path_factory.mktemp("cifar_png")
    write_png_folder(str(CIFAR_DIR), root)
    return root


def test_folder_streams_the_exact_pixels_and_labels(tmp_path, cifar_arrays):
    (x, y), _ = cifar_arrays
    keep = y < 3
    x, y = x[keep][:90], y[keep][:90]
    write_image_folder(tmp_path / "train", x[:60], y[:60])
    write_image_folder(tmp_path / "test", x[60:], y[60:])
    splits = open_data(str(tmp_path), seed=0)
    assert splits.kind == "folder" and splits.counts == {"train": 60, "validation": 0, "test": 30}
    assert splits.num_classes == 3 and splits.image_shape == (32, 32, 3) and splits.validation is None
    train_images = images_of(splits.train)
    assert train_images.dtype == np.float32 and train_images.max() <= 255.0
    # PNG is lossless and 32x32 needs no resizing: the same pixels, with their labels.
    assert sorted_images(train_images) == sorted_images(x[:60])
    pairs = {np.asarray(i, np.uint8).tobytes(): int(l) for i, l in splits.train.as_numpy_iterator()}
    assert all(pairs[image.tobytes()] == label for image, label in zip(x[:60], y[:60]))
    assert sorted_images(images_of(splits.test)) == sorted_images(x[60:])
    summary = train.run(train.parse_args(
        ["--data-dir", str(tmp_path), "--epochs", "1", "--batch-size", "16", "--verbose", "0"]))
    assert summary["model"].output_shape == (None, 3) and summary["data"] == "folder"
    assert summary["train_images"] == 60


def test_hold_out_is_seeded_and_the_same_whatever_the_limit(tmp_path):
    images = [np.full((8, 8, 3), i, np.uint8) for i in range(60)]
    write_image_folder(tmp_path, images, [i % 3 for i in range(60)])
    full = open_data(str(tmp_path), image_size=(8, 8), seed=1)
    assert full.counts == {"train": 48, "validation": 0, "test": 12}
    limited = open_data(str(tmp_path), image_size=(8, 8), seed=1, limit=20)
    assert limited.counts["train"] == 20
    test = sorted_images(images_of(full.test))
    assert sorted_images(images_of(limited.test)) == test
    assert not set(sorted_images(images_of(limited.train))) & set(test)  # disjoint
    assert sorted_images(images_of(open_data(str(tmp_path), image_size=(8, 8), seed=2).test)) != test


def test_limit_on_a_class_sorted_folder_keeps_every_class(tmp_path):
    """The folder lists 20 images of class 0, then 20 of class 1, ...: the
    first 100 files would be five classes; a seeded subset has all ten."""
    labels = np.repeat(np.arange(10), 20)
    write_image_folder(tmp_path, [np.full((8, 8, 3), i, np.uint8) for i in range(200)], labels,
                       names=[f"class{k}" for k in range(10)])
    splits = open_data(str(tmp_path), image_size=(8, 8), seed=0, limit=100)
    assert splits.counts["train"] == 100 and sorted(set(labels_of(splits.train))) == list(range(10))
    # The same for arrays (CIFAR-10 batches): sorted by class, a seeded subset.
    (x, y), _, _ = split_arrays((labels[:, None].astype(np.uint8), labels), None, seed=0, limit=100)
    assert len(y) == 100 and sorted(set(y)) == list(range(10))
    # And through train.py.
    summary = train.run(train.parse_args(["--data-dir", str(tmp_path), "--limit", "100", "--image-size", "8", "8",
                                          "--model", "tiny", "--epochs", "1", "--verbose", "0"]))
    assert summary["train_images"] == 100 and summary["model"].output_shape == (None, 10)


def test_image_size_resizes(tmp_path):
    write_image_folder(tmp_path, [np.zeros((20, 30, 3), np.uint8)] * 5, [0, 0, 1, 1, 1])
    splits = open_data(str(tmp_path), image_size=(16, 24))
    assert images_of(splits.train).shape[1:] == (16, 24, 3) and splits.image_shape == (16, 24, 3)
    assert splits.counts["train"] + splits.counts["test"] == 5


def test_file_manager_files_are_skipped_other_files_refused(tmp_path):
    """A folder copied from a desktop holds .DS_Store, Thumbs.db, desktop.ini:
    skipped as Keras' loader skips them; any other non-image file is refused."""
    from models.data import DataError
    from models.folders import check_image_files

    write_image_folder(tmp_path, [np.zeros((8, 8, 3), np.uint8)] * 4, [0, 0, 1, 1])
    for name in (".DS_Store", "Thumbs.db", "desktop.ini"):
        (tmp_path / "cat" / name).write_bytes(b"\x00\x01 file manager data")
    assert check_image_files(tmp_path, ["cat", "dog"]) == 4
    assert open_data(str(tmp_path)).counts == {"train": 3, "validation": 0, "test": 1}
    (tmp_path / "dog" / "labels.csv").write_text("file,label\n")
    with pytest.raises(DataError, match="labels.csv is not an image file"):
        check_image_files(tmp_path, ["cat", "dog"])


def test_every_process_streams_the_same_order_so_shards_are_disjoint(tmp_path):
    """Multi-process training from a folder (TensorFlow workers, JAX
    processes) has each process build the stream and keep every P-th image:
    the seeded shuffle gives every process the same order in every epoch, so
    the shares are disjoint and together hold every training image."""
    from models.folders import open_image_folder

    write_image_folder(tmp_path, [np.full((4, 4, 3), i, np.uint8) for i in range(60)], [i % 3 for i in range(60)])
    streams = [open_image_folder(tmp_path, (4, 4), seed=5).train for _ in range(2)]  # as two processes would
    training = None
    for _ in range(2):  # two epochs: a new order each epoch, the same in both processes
        shares = [[int(image[0, 0, 0]) for image, _ in stream.shard(2, index).as_numpy_iterator()]
                  for index, stream in enumerate(streams)]
        assert not set(shares[0]) & set(shares[1])
        assert training in (None, set(shares[0]) | set(shares[1]))
        training = set(shares[0]) | set(shares[1])
        order = shares
    assert len(training) == 48 and order != [sorted(share) for share in order]


@pytest.mark.parametrize("source", ["batches", "folder"])
def test_validation_each_epoch_in_the_log_and_metrics_json(tmp_path, source, cifar_png_folder):
    data = str(CIFAR_DIR) if source == "batches" else str(cifar_png_folder)
    metrics = tmp_path / "metrics.json"
    common = ["--data-dir", data, "--limit", "200", "--epochs", "2", "--batch-size", "50", "--model", "tiny",
              "--verbose", "0", "--metrics-json", str(metrics)]
    result = run_cli(*common, "--validation-split", "0.25")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "training on 150 images" in result.stdout and "validation after each epoch: 50 images" in result.stdout
    assert len(re.findall(r"^epoch \d: .* validation loss [\d.]+, validation accuracy [\d.]+$",
                          result.stdout, re.M)) == 2
    report = json.loads(metrics.read_text())
    assert report["validation"] == "validation" and [e["epoch"] for e in report["epochs"]] == [1, 2]
    assert all(0 <= e["validation_accuracy"] <= 1 and e["validation_loss"] > 0 for e in report["epochs"])
    # Without --validation-split, the test set is evaluated after each epoch.
    summary = train.run(train.parse_args(common))
    assert summary["validation"] == "test" and all("test_accuracy" in e for e in summary["epochs"])
    assert summary["epochs"][-1]["test_accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-6)


def test_generator_on_a_folder_reads_the_training_split_with_flow_from_directory(tmp_path, capsys):
    write_image_folder(tmp_path, [np.full((12, 12, 3), i, np.uint8) for i in range(60)], [i % 3 for i in range(60)])
    summary = train.run(train.parse_args(["--data-dir", str(tmp_path), "--limit", "40", "--augment", "generator",
                                          "--image-size", "12", "12", "--model", "tiny", "--epochs", "1",
                                          "--batch-size", "8", "--verbose", "0"]))
    out = capsys.readouterr().out
    assert "Found 40 images belonging to 3 classes." in out  # flow_from_directory's own line
    assert summary["train_images"] == 40 and summary["augment"] == "generator"


def test_generator_on_a_folder_with_gifs_is_refused_in_one_line(tmp_path):
    """Keras' image_dataset_from_directory reads GIFs, the legacy
    flow_from_directory skips them without a word: the generator path would
    train on fewer images than it reports, so train.py refuses it."""
    write_image_folder(tmp_path, [np.full((12, 12, 3), i, np.uint8) for i in range(20)], [i % 2 for i in range(20)])
    write_image_folder(tmp_path, [np.zeros((12, 12, 3), np.uint8)] * 2, [0, 1], suffix=".gif")
    result = run_cli("--data-dir", str(tmp_path), "--augment", "generator", "--epochs", "1")
    assert_one_line_error(result, "flow_from_directory, which does not read GIF files", ".gif")
    # The other paths read them.
    assert open_data(str(tmp_path)).counts["train"] + open_data(str(tmp_path)).counts["test"] == 22


def test_png_folder_trains_like_the_batches(cifar_png_folder):
    """Same data, streamed from PNG files or read from the batches: test
    accuracy within noise (the tiny model, which trains in seconds; chance is
    0.10, and repeated runs with other seeds move by about 0.02)."""
    accuracy = {}
    for source in (str(CIFAR_DIR), str(cifar_png_folder)):
        summary = train.run(train.parse_args(["--data-dir", source, "--epochs", "6", "--learning-rate", "0.01",
                                              "--batch-size", "64", "--model", "tiny", "--jit-compile",
                                              "--verbose", "0"]))
        assert summary["train_images"] == 5000
        accuracy[source] = summary["test_accuracy"]
    batches, folder = accuracy.values()
    assert batches > 0.15 and folder > 0.15 and abs(batches - folder) < 0.06, accuracy


def peak_rss_mb(*args):
    result = subprocess.run([sys.executable, "-c", PEAK_RSS.format(repo=str(REPO)), *args], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return float(re.search(r"peak_rss_mb ([\d.]+)", result.stdout).group(1)), result.stdout


def test_memory_stays_bounded_on_a_folder_larger_than_it(tmp_path):
    """16,000 JPEG files of 64x64 are 188 MiB as uint8 arrays (750 MiB as the
    float32 images Keras' loader yields); train.py may use at most 100 MiB
    more for them than for a folder of 400, so it cannot hold them."""
    allowance_mb = 100
    rng = np.random.default_rng(0)
    tile = rng.integers(0, 255, (8, 64, 64, 3), dtype=np.uint8)
    for name, count in (("small", 400), ("large", 16_000)):
        for i in range(count):
            folder = tmp_path / name / f"class{i % 4}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.roll(tile[i % 8], i, axis=1)).save(folder / f"{i:05d}.jpg", quality=90)
    held_mb = 16_000 * 64 * 64 * 3 / 2**20
    assert held_mb > 1.8 * allowance_mb
    common = ["--image-size", "64", "64", "--model", "tiny", "--epochs", "1", "--batch-size", "64", "--verbose", "0"]
    small, _ = peak_rss_mb("--data-dir", str(tmp_path / "small"), *common)
    large, out = peak_rss_mb("--data-dir", str(tmp_path / "large"), *common)
    assert "training on 12800 images" in out and "streamed from" in out
    print(f"peak RSS: {small:.0f} MiB (400 images), {large:.0f} MiB (16,000)")
    assert large - small < allowance_mb, (small, large)


def test_224_images_train_end_to_end_with_the_pooled_cnn(tmp_path):
    """Larger images than CIFAR-10's: --image-size 224 224 with the CNN whose
    dense part does not grow with the image (cnn-gap), augmented in the model,
    exported and reloaded at that size."""
    rng = np.random.default_rng(1)
    write_image_folder(tmp_path / "data", rng.integers(0, 255, (12, 200, 256, 3), dtype=np.uint8),
                       [i % 2 for i in range(12)], suffix=".jpg")
    export = tmp_path / "export"
    summary = train.run(train.parse_args(["--data-dir", str(tmp_path / "data"), "--image-size", "224", "224",
                                          "--model", "cnn-gap", "--epochs", "1", "--batch-size", "4",
                                          "--rotation-range", "10", "--verbose", "0", "--export", str(export)]))
    model = summary["model"]
    assert model.input_shape == (None, 224, 224, 3) and "augment" in [layer.name for layer in model.layers]
    reloaded = keras.models.load_model(export / "model.keras")
    images = rng.uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)


def test_the_readme_migration_recipe_runs(tmp_path):
    """The README's flow_from_directory -> image_dataset_from_directory
    recipe, as written there, on a generated folder (epochs cut to 1)."""
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(# After: Keras streams the folder.*?)```", readme, re.S)
    assert len(blocks) == 1
    rng = np.random.default_rng(2)
    write_image_folder(tmp_path, rng.integers(0, 255, (24, 70, 60, 3), dtype=np.uint8), [i % 3 for i in range(24)])
    code = blocks[0].replace('folder = "data/train"', f"folder = {str(tmp_path)!r}").replace("epochs=50", "epochs=1")
    assert str(tmp_path) in code
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    model, datagen = namespace["model"], namespace["datagen"]
    assert [type(layer).__name__ for layer in model.layers[1:3]] == ["RandomTransform", "Rescaling"]
    assert model.output_shape == (None, 3)
    # Same arguments as the generator's: the layer is the generator converted.
    assert list(model.layers[1].get_config()["zoom_range"]) == list(datagen.zoom_range)
