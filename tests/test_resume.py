"""Resuming from --checkpoint-dir continues the interrupted run instead of
repeating or mixing it: the random streams (augmentation draws, dropout,
each epoch's data order) continue, what defines the run is checked, and
--metrics-json keeps every epoch whatever the moment of the kill."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import train
from conftest import CIFAR_DIR, REPO, assert_one_line_error, run_cli
from folder_tools import write_image_folder

QUICK = ["--data-dir", str(CIFAR_DIR), "--limit", "256", "--epochs", "1", "--batch-size", "64", "--verbose", "0",
         "--model", "tiny"]


def run_train(*extra):
    return train.run(train.parse_args(QUICK + list(extra)))


def small_folder(root, count=96):
    rng = np.random.default_rng(0)
    write_image_folder(root, rng.integers(0, 256, (count, 8, 8, 3)), np.arange(count) % 3)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("source", ["batches", "folder", "folder-cached"])
def test_a_resumed_run_trains_exactly_what_an_uninterrupted_run_trains(tmp_path, source):
    """Three epochs in one run against one epoch, then a rerun to three:
    the same losses epoch by epoch and the same weights. Without the seed
    states in the checkpoint and an order drawn from the epoch's number, the
    rerun would draw epoch 1's augmentation and order again."""
    data = ["--data-dir", str(small_folder(tmp_path / "images"))] if source != "batches" else []
    cache = ["--cache", str(tmp_path / "cache")] if source == "folder-cached" else []
    common = [*data, *cache, "--rotation-range", "20", "--zoom-range", "0.2"]
    straight = run_train(*common, "--epochs", "3", "--checkpoint-dir", str(tmp_path / "straight"))
    run_train(*common, "--epochs", "1", "--checkpoint-dir", str(tmp_path / "resumed"))
    resumed = run_train(*common, "--epochs", "3", "--checkpoint-dir", str(tmp_path / "resumed"))
    assert resumed["epochs_run"] == 2
    losses = [record["loss"] for record in straight["epochs"]]
    assert [record["loss"] for record in resumed["epochs"]] == pytest.approx(losses, rel=1e-6, abs=1e-7)
    assert losses[1] != losses[0]  # the comparison means something
    for ours, theirs in zip(resumed["model"].get_weights(), straight["model"].get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("source", ["arrays", "files", "memory", "file-cache"])
def test_each_epochs_order_is_a_function_of_the_seed_and_the_epoch(tmp_path, source):
    """A fresh feed set to epoch 2 yields the order that a feed iterated
    through epochs 0, 1 and 2 yields at its third pass; other epochs differ."""
    from models.cache import MEMORY
    from models.data import open_data
    from models.inputs import Feeds

    splits = open_data(str(CIFAR_DIR) if source == "arrays" else str(small_folder(tmp_path / "images")), limit=64)
    caches = {"memory": MEMORY, "file-cache": str(tmp_path / "cache")}.get(source)

    def labels_of_epochs(epochs):
        feeds = Feeds(splits, 16, 16, seed=5, caches=caches)
        dataset = feeds.training()["x"]
        seen = []
        for epoch in epochs:
            feeds.epoch.set(epoch)
            seen.append(np.concatenate([batch[1] for batch in dataset.as_numpy_iterator()]).tolist())
        feeds.close()
        return seen

    through = labels_of_epochs([0, 1, 2])
    alone = labels_of_epochs([2])
    assert alone[0] == through[2]
    assert through[0] != through[1] != through[2]
    assert sorted(through[0]) == sorted(through[2])  # the same images, another order


def test_the_checkpoint_records_the_seed_states(tmp_path):
    from models.checkpoints import restore

    run_train("--rotation-range", "10", "--checkpoint-dir", str(tmp_path / "ck"))
    metadata = json.loads((tmp_path / "ck" / "training_metadata.json").read_text())
    assert metadata["seed_states"] == [[0, 4]]  # seed 0, 256 images / 64 per batch: 4 draws
    from models.cifar10 import BUILDERS
    import gpuaug
    import keras

    model = BUILDERS["tiny"]([gpuaug.RandomTransform(rotation_range=10, seed=0, name="augment")],
                             input_shape=(32, 32, 3))
    model.compile(optimizer=keras.optimizers.RMSprop(1e-4), loss="sparse_categorical_crossentropy")
    restore(model, tmp_path / "ck")
    assert model.get_layer("augment").seed_generator.state.numpy().tolist() == [0, 4]


@pytest.mark.slow
@pytest.mark.parametrize("changed, original, fragments", [
    (["--limit", "128"], [], ["--limit 256", "this run has 128"]),
    (["--batch-size", "32"], [], ["--batch-size 64", "this run has 32"]),
    (["--seed", "1"], [], ["--seed 0", "this run has 1"]),
    (["--validation-split", "0.25"], [], ["--validation-split none", "this run has 0.25"]),
    (["--rotation-range", "15"], ["--rotation-range", "10"], ["--rotation-range 10.0", "this run has 15.0"]),
    (["--no-horizontal-flip"], [], ["--horizontal-flip True", "this run has False"]),
    (["--augment", "none"], [], ["--augment gpu", "this run has none"]),
    (["--data-dir", "OTHER"], [], ["--data-dir ", "cifar10-mini", "this run has ", "other"]),
    # Whole pixels (4) and any shift up to 4 pixels (4.0) are two distributions in ImageDataGenerator.
    (["--width-shift-range", "4.0"], ["--width-shift-range", "4"], ["--width-shift-range 4;", "this run has 4.0"]),
])
def test_a_resume_that_changes_the_run_is_refused(tmp_path, changed, original, fragments):
    checkpoints = tmp_path / "ck"
    run_train(*original, "--checkpoint-dir", str(checkpoints))
    before = {p.name: p.read_bytes() for p in checkpoints.iterdir()}
    if "OTHER" in changed:  # a copy of the same batches elsewhere: another data set as far as a run knows
        other = tmp_path / "other"
        shutil.copytree(CIFAR_DIR, other)
        changed = ["--data-dir", str(other)]
    extra = [] if changed[0] == "--augment" else original
    result = run_cli(*QUICK, *extra, *changed, "--epochs", "2", "--checkpoint-dir", str(checkpoints))
    assert_one_line_error(result, "holds a run with", *fragments)
    assert "epoch 2" not in result.stdout
    assert {p.name: p.read_bytes() for p in checkpoints.iterdir()} == before


def test_a_new_learning_rate_on_resume_is_applied_and_said(tmp_path, capsys):
    checkpoints = tmp_path / "ck"
    run_train("--checkpoint-dir", str(checkpoints))
    capsys.readouterr()
    resumed = run_train("--epochs", "2", "--learning-rate", "0.01", "--checkpoint-dir", str(checkpoints))
    out = capsys.readouterr().out
    assert "--learning-rate 0.01: the interrupted run trained with 0.0001; training continues with 0.01" in out
    assert float(resumed["model"].optimizer.learning_rate.numpy()) == pytest.approx(0.01)
    metadata = json.loads((checkpoints / "training_metadata.json").read_text())
    assert metadata["run"]["learning_rate"] == 0.01


@pytest.mark.slow
def test_a_kill_between_the_checkpoint_and_metrics_json_loses_no_epoch(tmp_path):
    """Killed after epoch 2's checkpoint, before --metrics-json is rewritten
    with epoch 2: the rerun resumes after epoch 2 and the file ends with
    epochs 1, 2, 3 (epoch 2's record comes from the checkpoint)."""
    checkpoints, metrics = tmp_path / "ck", tmp_path / "metrics.json"
    args = [*QUICK, "--checkpoint-dir", str(checkpoints), "--metrics-json", str(metrics), "--epochs", "3"]
    # metrics.json is replaced after every epoch: the second replacement is epoch 2's.
    killed = subprocess.run([sys.executable, str(REPO / "tests" / "checkpoint_fault_script.py"), "metrics.json",
                             "2", *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert [r["epoch"] for r in json.loads(metrics.read_text())["epochs"]] == [1]
    assert json.loads((checkpoints / "training_metadata.json").read_text())["epoch"] == 2
    rerun = run_cli(*args)
    assert rerun.returncode == 0 and "2 epoch(s) already done" in rerun.stdout, rerun.stderr[-2000:]
    final = json.loads(metrics.read_text())
    assert final["finished"] is True and [r["epoch"] for r in final["epochs"]] == [1, 2, 3]


def test_the_generator_path_does_not_replay_its_first_epoch(tmp_path):
    """The legacy iterator reseeds numpy with seed + its batch counter: a
    resumed run restores the counter, so its first batch is not epoch 1's."""
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    from models.inputs import continue_generator

    x = np.random.default_rng(0).integers(0, 256, (64, 8, 8, 3)).astype("float32")
    fresh = ImageDataGenerator(rotation_range=30).flow(x, np.arange(64), batch_size=16, seed=3)
    first = fresh[0][0]
    resumed = ImageDataGenerator(rotation_range=30).flow(x, np.arange(64), batch_size=16, seed=3)
    continue_generator(resumed, 2)
    assert resumed.total_batches_seen == 2 * len(resumed)
    assert not np.allclose(resumed[0][0], first)


@pytest.mark.slow
def test_a_resume_after_the_image_folder_changed_is_refused(tmp_path):
    """A class folder added (every label after it shifts) or images added
    make another data set under the same --data-dir: refused, naming it."""
    from PIL import Image

    images = small_folder(tmp_path / "images")
    common = ["--data-dir", str(images), "--checkpoint-dir", str(tmp_path / "ck")]
    run_train(*common)
    (images / "aardvark").mkdir()  # empty, and first: every class moves up one label
    result = run_cli(*QUICK, *common, "--epochs", "2")
    assert_one_line_error(result, "holds a run with --data-dir's class folders cat dog ship",
                          "this run has aardvark cat dog ship")
    (images / "aardvark").rmdir()
    for number in range(5):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "cat" / f"new-{number}.png")
    result = run_cli(*QUICK, *common, "--epochs", "2")
    assert_one_line_error(result, "holds a run with --data-dir's images per split train 77", "this run has train 81")
    for number in range(5):
        (images / "cat" / f"new-{number}.png").unlink()
    # The same classes and counts, one image moved to another class: its label changed.
    first = sorted((images / "dog").iterdir())[0]
    first.rename(images / "cat" / f"moved-{first.name}")
    result = run_cli(*QUICK, *common, "--epochs", "2")
    assert_one_line_error(result, "holds a run with --data-dir's files and labels (digest)")
    assert not (tmp_path / "ck" / "training_metadata.json.bkp").exists()  # nothing trained


@pytest.mark.slow
def test_a_run_killed_while_it_wrote_its_first_checkpoint_starts_again(tmp_path):
    """Killed after epoch 1's weights, before their metadata (nothing
    recorded as done, no backup yet): the rerun starts from epoch 1, says
    so, and keeps the file aside, instead of refusing for good."""
    checkpoints = tmp_path / "ck"
    args = [*QUICK, "--checkpoint-dir", str(checkpoints), "--epochs", "2"]
    killed = subprocess.run([sys.executable, str(REPO / "tests" / "checkpoint_fault_script.py"),
                             "training_metadata.json", "1", *args], cwd=REPO, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (checkpoints / "latest.weights.h5").exists() and not (checkpoints / "training_metadata.json").exists()
    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "has no training_metadata.json" in rerun.stdout and "starting from epoch 1" in rerun.stdout
    assert "epoch 1:" in rerun.stdout and "epoch 2:" in rerun.stdout
    assert (checkpoints / "latest.weights.h5.damaged").exists()
    assert json.loads((checkpoints / "training_metadata.json").read_text())["epoch"] == 2


@pytest.mark.slow
def test_a_second_run_on_the_same_checkpoint_dir_is_refused(tmp_path):
    """Two runs writing one --checkpoint-dir would overwrite each other's
    states: while one holds the folder, another is refused in one line."""
    from models.checkpoints import hold

    checkpoints = tmp_path / "ck"
    held = hold(checkpoints)  # as the first run holds it while it trains
    try:
        result = run_cli(*QUICK, "--checkpoint-dir", str(checkpoints))
    finally:
        held.close()
    assert_one_line_error(result, "another run is training into it")
    assert not (checkpoints / "latest.weights.h5").exists()
    assert run_cli(*QUICK, "--checkpoint-dir", str(checkpoints)).returncode == 0  # once the first one ended


@pytest.mark.slow
def test_a_checkpoint_that_cannot_be_written_stops_the_run_in_one_line(tmp_path):
    """A write the file system refuses (here partial.weights.h5 is a link to
    /dev/full: ENOSPC, as on a full disk) ends the run in one line, the
    previous epoch's checkpoint kept and resumable. Before, HDF5 wrote the
    file itself: a traceback, then a crash at exit (signal 11)."""
    checkpoints = tmp_path / "ck"
    assert run_cli(*QUICK, "--checkpoint-dir", str(checkpoints)).returncode == 0
    os.symlink("/dev/full", checkpoints / "partial.weights.h5")
    result = run_cli(*QUICK, "--checkpoint-dir", str(checkpoints), "--epochs", "2")
    assert_one_line_error(result, "cannot write the checkpoint of epoch 2 (No space left on device)",
                          "the one before it is kept")
    assert not os.path.lexists(checkpoints / "partial.weights.h5")
    assert json.loads((checkpoints / "training_metadata.json").read_text())["epoch"] == 1
    rerun = run_cli(*QUICK, "--checkpoint-dir", str(checkpoints), "--epochs", "2")
    assert "1 epoch(s) already done" in rerun.stdout and "epoch 2:" in rerun.stdout
