"""Image folders: the layouts recognised (and refused), exact uint8 pixels
decoded as Keras' loader decodes them, seeded --limit and hold-outs that keep
every class, shares of the files, validation each epoch, flow_from_directory
for --augment generator, bounded memory on a folder larger than it, larger
images end to end, and the README's migration recipe."""

import json
import os
import pathlib
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
from folder_tools import two_level, write_image_folder
from models.data import load_data, open_data, split_arrays


def labels_of(files):
    return [int(label) for _, label in files.dataset().as_numpy_iterator()]


def images_of(files):
    return np.stack([image for image, _ in files.dataset().as_numpy_iterator()])


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
    assert train_images.dtype == np.uint8  # bytes until the device
    # PNG is lossless and 32x32 needs no resizing: the same pixels, with their labels.
    assert sorted_images(train_images) == sorted_images(x[:60])
    pairs = {np.asarray(image, np.uint8).tobytes(): int(label)
             for image, label in splits.train.dataset().as_numpy_iterator()}
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


def test_resized_pixels_are_keras_loaders_rounded(tmp_path):
    """Resizing as Keras' image_dataset_from_directory does (bilinear), then
    rounding to whole levels: at most half a level from its float32 pixels."""
    from models.folders import class_folders, index_files

    rng = np.random.default_rng(3)
    write_image_folder(tmp_path, rng.integers(0, 256, (6, 21, 37, 3), dtype=np.uint8), [0, 1] * 3)
    keras_images = np.concatenate([x for x, _ in keras.utils.image_dataset_from_directory(
        tmp_path, image_size=(16, 24), shuffle=False, batch_size=None, verbose=False).batch(6)])
    files = open_data(str(tmp_path), image_size=(16, 24)).train
    in_keras_order = files.select([files.paths.index(p) for p, _ in index_files(tmp_path, class_folders(tmp_path))
                                   if p in files.paths])
    ours = images_of(in_keras_order)
    expected = keras_images[[i for i, (p, _) in enumerate(index_files(tmp_path, class_folders(tmp_path)))
                             if p in files.paths]]
    assert ours.dtype == np.uint8 and np.abs(ours - expected).max() <= 0.5
    assert np.abs(ours - expected).max() > 0  # resizing makes fractions, which Keras keeps and gpuaug rounds


def test_file_manager_and_hidden_files_are_skipped_other_files_refused(tmp_path):
    """A folder copied from a desktop holds .DS_Store, Thumbs.db, desktop.ini,
    and from a Mac `._name.png` AppleDouble files and hidden folders: all
    skipped; any other non-image file is refused."""
    from models.errors import DataError
    from models.folders import index_files

    write_image_folder(tmp_path, [np.zeros((8, 8, 3), np.uint8)] * 4, [0, 0, 1, 1])
    for name in (".DS_Store", "Thumbs.db", "desktop.ini", "._00000.png", "._00001.jpg"):
        (tmp_path / "cat" / name).write_bytes(b"\x00\x05\x16\x07 resource fork data")
    (tmp_path / "dog" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "dog" / ".ipynb_checkpoints" / "00002-checkpoint.png").write_bytes(b"not an image either")
    assert len(index_files(tmp_path, ["cat", "dog"])) == 4
    splits = open_data(str(tmp_path), image_size=(8, 8))
    assert splits.counts == {"train": 3, "validation": 0, "test": 1}
    splits.train.check()
    assert len(images_of(splits.train)) == 3  # decodes: no AppleDouble file among them
    (tmp_path / "dog" / "labels.csv").write_text("file,label\n")
    with pytest.raises(DataError, match="labels.csv is not an image file"):
        index_files(tmp_path, ["cat", "dog"])


@pytest.mark.slow
def test_appledouble_files_do_not_stop_a_run(tmp_path):
    write_image_folder(tmp_path, [np.full((8, 8, 3), i, np.uint8) for i in range(12)], [i % 2 for i in range(12)])
    (tmp_path / "cat" / "._00000.png").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    result = run_cli("--data-dir", str(tmp_path), "--image-size", "8", "8", "--model", "tiny", "--epochs", "1",
                     "--verbose", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "training on 10 images" in result.stdout  # 12 files, 2 held out, the ._ file skipped


@pytest.mark.parametrize("layout, counts", [
    (("train", "val"), {"train": 18, "validation": 0, "test": 18}),
    (("train", "validation"), {"train": 18, "validation": 0, "test": 18}),
    (("train",), {"train": 15, "validation": 0, "test": 3}),  # Keras' int(0.2 * 18): 3
    (("train", "test"), {"train": 18, "validation": 0, "test": 18}),
    (("train", "val", "test"), {"train": 18, "validation": 18, "test": 18}),
])
def test_split_layouts(tmp_path, layout, counts):
    """train/ beside val/ (or validation/, or test/) is split by folder, not
    read as two classes; train/ alone holds out 20%; all three: val/ is
    validated after each epoch."""
    two_level(tmp_path, layout)
    splits = open_data(str(tmp_path), image_size=(8, 8))
    assert splits.counts == counts and splits.num_classes == 3
    assert splits.folder.class_names == ["cat", "dog", "ship"]
    assert all(path.startswith(str(tmp_path / "train")) for path in splits.train.paths)
    if "test" in layout:
        assert all(path.startswith(str(tmp_path / "test")) for path in splits.test.paths)
    elif len(layout) == 2:
        assert all(path.startswith(str(tmp_path / layout[1])) for path in splits.test.paths)
    if "val" in layout and "test" in layout:
        assert all(path.startswith(str(tmp_path / "val")) for path in splits.validation.paths)
    assert sorted(set(labels_of(splits.train))) == [0, 1, 2]


def test_train_and_val_folders_train_a_classifier_of_their_classes(tmp_path):
    two_level(tmp_path, ("train", "val"))
    summary = train.run(train.parse_args(["--data-dir", str(tmp_path), "--image-size", "8", "8", "--model", "tiny",
                                          "--epochs", "1", "--verbose", "0"]))
    assert summary["model"].output_shape == (None, 3) and summary["train_images"] == 18
    assert summary["validation"] == "test" and summary["epochs"][0]["test_loss"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("make, fragments", [
    (lambda root: two_level(root, ("train",), classes=("cat",)), ["has one class folder (cat/)", "at least two"]),
    (lambda root: two_level(root, ("",), classes=("only",)), ["has one class folder (only/)"]),
    (lambda root: (two_level(root, ("train",)), two_level(root, ("test",), classes=("cat", "dog", "bird"))),
     ["different class folders", "missing in test/: ship", "only in test/: bird"]),
    (lambda root: (two_level(root, ("train",)), two_level(root, ("val",), classes=("cat", "dog"))),
     ["different class folders", "missing in val/: ship"]),
    (lambda root: two_level(root, ("test", "val")), ["has test/, val/ but no train/ folder"]),
    (lambda root: two_level(root, ("train", "extra")), ["has train/ and also extra/"]),
    (lambda root: two_level(root, ("train", "val", "validation")), ["both val/ and validation/"]),
])
def test_folders_that_would_train_nonsense_are_refused_before_training(tmp_path, make, fragments):
    make(tmp_path)
    result = run_cli("--data-dir", str(tmp_path), "--image-size", "8", "8", "--epochs", "1", "--verbose", "0")
    assert_one_line_error(result, *fragments)
    assert "epoch 1" not in result.stdout and "training on" not in result.stdout


@pytest.mark.slow
def test_images_too_small_for_the_model_are_one_line(tmp_path):
    two_level(tmp_path, ("train",))
    result = run_cli("--data-dir", str(tmp_path), "--image-size", "8", "8", "--epochs", "1", "--verbose", "0")
    assert_one_line_error(result, "--model cnn cannot take 8x8 images")
    result = run_cli("--data-dir", str(tmp_path), "--image-size", "10", "10", "--epochs", "1", "--verbose", "0")
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
def test_validation_split_beside_a_val_folder_is_refused(tmp_path):
    two_level(tmp_path, ("train", "val", "test"))
    result = run_cli("--data-dir", str(tmp_path), "--validation-split", "0.2", "--epochs", "1")
    assert_one_line_error(result, "is the validation set: drop --validation-split")


@pytest.mark.slow
def test_image_size_with_cifar_batches_is_refused():
    result = run_cli("--data-dir", str(CIFAR_DIR), "--image-size", "64", "64", "--epochs", "1")
    assert_one_line_error(result, "--image-size 64 64", "CIFAR-10 batches are 32x32")
    result = run_cli("--data-dir", str(CIFAR_DIR), "--image-size", "32", "32", "--limit", "64", "--epochs", "1",
                     "--model", "tiny", "--verbose", "0")
    assert result.returncode == 0, result.stderr[-2000:]


def test_shares_are_disjoint_and_cover_every_image():
    """The share rule, alone: training shares of equal length, disjoint, a
    multiple of the devices, at most shares x devices - 1 left out; evaluation
    shares disjoint in their weighted items, covering all, padded with weight 0
    to one length. The same for arrays and for image files."""
    from models import inputs
    from models.errors import DataError
    from models.folders import ImageFiles

    count = 103
    arrays = (np.arange(count)[:, None], np.arange(count))
    files = ImageFiles(tuple(f"f{i}.png" for i in range(count)), tuple(range(count)), (8, 8))

    def ids(share):
        return [int(x) for x in (share[1] if isinstance(share, tuple) else share.labels)]

    for processes, devices in ((1, 1), (2, 1), (3, 2), (4, 8), (5, 3)):
        for part in (arrays, files):
            shares = [inputs.process_share(part, count, 7, i, processes, devices) for i in range(processes)]
            lengths = {length for _, length in shares}
            assert len(lengths) == 1 and lengths.pop() % devices == 0
            taken = [x for share, _ in shares for x in ids(share)]
            assert len(taken) == len(set(taken)) and count - len(taken) < processes * devices
            evaluated = [inputs.evaluation_share(part, count, 7, i, processes, devices) for i in range(processes)]
            assert len({length for _, length in evaluated}) == 1
            real = []
            for share, length in evaluated:
                weights = share[2] if isinstance(share, tuple) else share.weights
                assert len(weights) == length == len(ids(share)) and length % devices == 0
                real += [x for x, w in zip(ids(share), weights) if w == 1]
            assert sorted(real) == list(range(count))  # each item once, with weight 1
    first = ids(inputs.process_share(arrays, count, 7, 0, 2, 1)[0])
    assert first != sorted(first)  # dealt from a seeded permutation, not in the source's order
    with pytest.raises(DataError, match="cannot give each of 4 process"):
        inputs.process_share(arrays, 3, 0, 0, 4, 1)


def test_a_process_reads_only_the_files_of_its_share(tmp_path):
    """What a process decodes is its share: its dataset holds exactly the
    images of its files, and the other files are not needed (deleted here)."""
    from models import inputs
    from models.folders import open_image_folder

    write_image_folder(tmp_path, [np.full((4, 4, 3), i, np.uint8) for i in range(60)], [i % 3 for i in range(60)])
    splits = open_image_folder(tmp_path, (4, 4), seed=5)
    shares = [inputs.process_share(splits.train, len(splits.train), 5, i, 2, 1)[0] for i in range(2)]
    for path in shares[1].paths:
        pathlib.Path(path).unlink()  # process 0 must not need them
    values = {int(image[0, 0, 0]) for image, _ in shares[0].dataset(shuffle_seed=1).as_numpy_iterator()}
    assert values == {int(pathlib.Path(p).stem) for p in shares[0].paths} and len(values) == 24


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.parametrize("source", ["batches", "folder"])
def test_pixels_enter_the_compiled_step_as_uint8(source, cifar_png_folder):
    """What crosses to the device is bytes: the batch the compiled training
    step receives is uint8, 3,072 bytes per 32x32x3 image (float32 would be
    12,288); the model casts it to float inside the step."""
    from models import inputs
    from models.cifar10 import build_tiny_model

    splits = open_data(str(CIFAR_DIR) if source == "batches" else str(cifar_png_folder), limit=256)
    feeds = inputs.Feeds(splits, 32, 64, seed=0)
    model = build_tiny_model(input_shape=splits.image_shape)
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", jit_compile=True)
    seen, step = [], model.train_step

    def recording_step(*args):
        images = args[-1][0]
        seen.append((keras.backend.standardize_dtype(images.dtype), int(np.prod(images.shape[1:])) *
                     np.dtype(keras.backend.standardize_dtype(images.dtype)).itemsize))
        return step(*args)

    model.train_step = recording_step
    model.fit(**feeds.training(), epochs=1, steps_per_epoch=2, verbose=0)
    assert set(seen) == {("uint8", 32 * 32 * 3)}, seen
    assert model.input.dtype == "float32"  # the Input takes uint8 (and float pixels, for serving)


def test_the_test_hold_out_is_keras_validation_split(tmp_path):
    """Without a held-out folder the test set is the last int(0.2 n) files
    of Keras' own seeded permutation: the files image_dataset_from_directory
    gives as its validation subset (12 of 64, not round()'s 13)."""
    write_image_folder(tmp_path, [np.full((8, 8, 3), i, np.uint8) for i in range(64)], [i % 2 for i in range(64)],
                       names=("a", "b"))
    ours = open_data(str(tmp_path), image_size=(8, 8), seed=7)
    assert ours.counts == {"train": 52, "validation": 0, "test": 12}
    theirs = keras.utils.image_dataset_from_directory(tmp_path, image_size=(8, 8), validation_split=0.2,
                                                      subset="validation", seed=7, verbose=False)
    assert sorted(ours.test.paths) == sorted(theirs.file_paths)
    with_split = open_data(str(tmp_path), image_size=(8, 8), seed=7, validation_split=0.3)
    assert with_split.counts["validation"] == int(52 * 0.3)


@pytest.mark.slow
def test_file_names_that_are_not_utf8_train_on_every_path(tmp_path):
    """A name in Latin-1 (b'caf\\xe9.png', as an old camera or archive
    writes it): read as it is named, by the stream, the file cache and
    flow_from_directory, and printed without failing."""
    write_image_folder(tmp_path / "data", [np.full((8, 8, 3), 10 * i, np.uint8) for i in range(8)], [0, 1] * 4,
                       names=("cat", "dog"))
    os.rename(os.fsencode(tmp_path / "data" / "cat") + b"/00000.png",
              os.fsencode(tmp_path / "data" / "cat") + b"/caf\xe9.png")
    os.rename(os.fsencode(tmp_path / "data"), os.fsencode(tmp_path) + b"/d\xe9j\xe0")
    folder = os.fsdecode(os.fsencode(tmp_path) + b"/d\xe9j\xe0")
    for extra in ([], ["--cache", str(tmp_path / "cache")], ["--augment", "generator"]):
        result = run_cli("--data-dir", folder, "--image-size", "8", "8", "--model", "tiny", "--epochs", "1",
                         "--verbose", "0", *extra)
        assert result.returncode == 0, (extra, result.stderr[-2000:])
        assert "test accuracy" in result.stdout and "\\xe9" in result.stdout  # the folder's name, escaped


@pytest.mark.slow
@pytest.mark.parametrize("suffix, keep", [(".png", 60), (".jpg", 300)])
def test_a_truncated_image_under_the_generator_is_one_line(tmp_path, suffix, keep):
    """flow_from_directory reads with Pillow, which raises its own error
    (OSError: image file is truncated) from inside Keras' fit: one line
    naming the file, no traceback."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        write_image_folder(tmp_path / split, rng.integers(0, 256, (8, 16, 16, 3)), [0, 1] * 4, suffix=suffix)
    broken = tmp_path / "train" / "dog" / f"00003{suffix}"  # read by flow_from_directory only
    broken.write_bytes(broken.read_bytes()[:keep])
    result = run_cli("--data-dir", str(tmp_path), "--image-size", "16", "16", "--model", "tiny", "--epochs", "1",
                     "--verbose", "0", "--augment", "generator")
    assert_one_line_error(result, "cannot read image", f"00003{suffix}")


def bmp(path, image, mode):
    Image.fromarray(image).convert(mode).save(path)


@pytest.mark.slow
def test_bmp_files_that_tensorflow_would_decode_wrongly_are_refused(tmp_path):
    """TensorFlow's decoder (Keras' loader's too) reads an 8-bit palette
    BMP's indices as grey and cannot read 1-bit ones: refused in one line
    naming the file. Grey 8-bit, 24- and 32-bit BMPs decode exactly."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 6, 5, 3)).astype(np.uint8)
    (tmp_path / "ok" / "a").mkdir(parents=True)
    (tmp_path / "ok" / "b").mkdir()
    for i, mode in enumerate(("L", "RGB", "RGBA", "L")):
        bmp(tmp_path / "ok" / "ab"[i % 2] / f"{i}.bmp", images[i], mode)
    splits = open_data(str(tmp_path / "ok"), image_size=(6, 5))
    for files in (splits.train, splits.test):
        files.check()
        for path, image in zip(files.paths, images_of(files)):
            expected = np.asarray(Image.open(path).convert("RGB"))
            np.testing.assert_array_equal(image, expected)
    for mode, words in (("P", "8-bit palette BMP"), ("1", "1-bit BMP")):
        folder = tmp_path / mode
        for i in range(4):
            (folder / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
            bmp(folder / "ab"[i % 2] / f"{i}.bmp", images[i], "RGB" if i else mode)
        result = run_cli("--data-dir", str(folder), "--image-size", "6", "5", "--model", "tiny", "--epochs", "1")
        assert_one_line_error(result, "cannot read image", "0.bmp", words, "convert it")
