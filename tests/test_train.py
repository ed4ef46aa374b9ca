"""train.py end to end on the real CIFAR-10 subset: the three augmentation
paths, export and reload, resume from checkpoints, loaders, error paths."""

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import tarfile

import keras
import numpy as np
import pytest

import train
from conftest import CIFAR_DIR, REPO, assert_one_line_error, run_cli
from folder_tools import write_image_folder
from models import outputs as output_checks
from models.data import DataError, load_data, split_arrays
from models.errors import UsageError
from models.export import ExportError

QUICK = ["--data-dir", str(CIFAR_DIR), "--limit", "256", "--epochs", "1",
         "--batch-size", "64", "--verbose", "0"]


def run_train(*extra):
    return train.run(train.parse_args(QUICK + list(extra)))



@pytest.mark.parametrize("augment, jit", [pytest.param("gpu", "--jit-compile", marks=pytest.mark.slow),
                                          ("generator", "--no-jit-compile"), ("none", "--no-jit-compile")])
def test_train_end_to_end(augment, jit, capsys):
    summary = run_train("--augment", augment, jit)
    out = capsys.readouterr().out
    assert summary["augment"] == augment and summary["train_images"] == 256
    assert summary["epochs_run"] == 1 and summary["images_per_second"][0] > 0
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert "epoch 1:" in out and "images/s" in out and "test accuracy:" in out
    names = [layer.name for layer in summary["model"].layers]
    assert ("augment" in names) == (augment == "gpu")


def test_export_and_reload_give_the_same_predictions(tmp_path):
    import tensorflow as tf

    export = tmp_path / "export"
    summary = run_train("--export", str(export), "--rotation-range", "10")
    x_test = load_data(str(CIFAR_DIR))[1][0][:64].astype("float32")
    expected = summary["model"].predict(x_test, verbose=0)
    assert sorted(p.name for p in export.iterdir()) == [".gpuaug-export", "model.keras", "saved_model"]
    reloaded = keras.models.load_model(export / "model.keras")
    np.testing.assert_allclose(reloaded.predict(x_test, verbose=0), expected, rtol=1e-5, atol=1e-6)
    served = tf.saved_model.load(str(export / "saved_model"))
    np.testing.assert_allclose(served.serve(x_test).numpy(), expected, rtol=1e-5, atol=1e-6)
    # The inference graph contains no augmentation: no random ops, no gathers.
    graph = served.serve.get_concrete_function(
        tf.TensorSpec([None, 32, 32, 3], tf.float32)).graph.as_graph_def()
    op_types = {node.op for f in graph.library.function for node in f.node_def} | {n.op for n in graph.node}
    assert not any("Random" in op or "Gather" in op for op in op_types), op_types


def test_export_is_atomic_and_keeps_the_previous_export(tmp_path, monkeypatch):
    from models.export import publish

    export = tmp_path / "export"
    publish(export, lambda folder: (folder / "model.keras").write_text("previous export"))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model, "export", full_disk)
    with pytest.raises(ExportError, match="No space left on device"):
        train.export_model(model, export)
    assert (export / "model.keras").read_text() == "previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no partial folders left

    monkeypatch.undo()
    train.export_model(model, export)  # succeeds: replaces the previous export
    assert sorted(p.name for p in export.iterdir()) == [".gpuaug-export", "model.keras", "saved_model"]
    keras.models.load_model(export / "model.keras")
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


@pytest.mark.slow
def test_resume_from_checkpoint_after_interruption(tmp_path, capsys):
    checkpoints = tmp_path / "checkpoints"
    first = run_train("--epochs", "1", "--checkpoint-dir", str(checkpoints))
    assert first["epochs_run"] == 1 and (checkpoints / "training_metadata.json").exists()
    capsys.readouterr()
    # The run "was interrupted" after epoch 1 of 3: rerun with the same directory.
    resumed = run_train("--epochs", "3", "--checkpoint-dir", str(checkpoints))
    out = capsys.readouterr().out
    assert "1 epoch(s) already done" in out
    assert resumed["epochs_run"] == 2 and "epoch 2:" in out and "epoch 1:" not in out


@pytest.mark.slow
def test_ctrl_c_then_resume_keeps_every_epoch_in_metrics_json(tmp_path):
    """A real interruption: SIGINT once epoch 2 is reported. train.py exits
    with 130 and a hint; --metrics-json already holds epochs 1-2 (it is
    rewritten after every epoch); the rerun resumes from the checkpoint and
    the file ends with every epoch, the earlier ones carried over."""
    checkpoints, metrics = tmp_path / "checkpoints", tmp_path / "metrics.json"
    args = [*QUICK, "--model", "tiny", "--epochs", "4", "--checkpoint-dir", str(checkpoints),
            "--metrics-json", str(metrics)]
    with open(tmp_path / "stderr.txt", "w+") as stderr:  # a file: a full pipe could block the run
        # Ctrl-C's default action, even where this suite runs with SIGINT ignored (a shell's
        # background job): Python turns it into KeyboardInterrupt only if it starts with it.
        process = subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], cwd=REPO, text=True,
                                   stdout=subprocess.PIPE, stderr=stderr,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            for line in process.stdout:
                if line.startswith("epoch 2:"):
                    process.send_signal(signal.SIGINT)
                    break
            process.communicate(timeout=120)
        finally:
            process.kill()
        stderr.seek(0)
        err = stderr.read()
    assert process.returncode == 130 and "interrupted; rerun with --checkpoint-dir" in err, err[-2000:]
    interrupted = json.loads(metrics.read_text())
    assert interrupted["finished"] is False and [r["epoch"] for r in interrupted["epochs"]][:2] == [1, 2]
    assert not list(tmp_path.glob(".metrics.json.partial"))

    result = run_cli(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    # Epoch 2 was saved before it was reported (3 too, if it finished before the signal).
    done = int(re.search(r"(\d) epoch\(s\) already done", result.stdout).group(1))
    assert done in (2, 3), result.stdout
    final = json.loads(metrics.read_text())
    assert final["finished"] is True and final["epochs_run"] == 4 - done
    assert [r["epoch"] for r in final["epochs"]] == [1, 2, 3, 4]
    assert final["epochs"][:done] == interrupted["epochs"][:done]  # carried over, not re-measured


def test_resume_restores_the_trained_weights(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    first = run_train("--checkpoint-dir", str(checkpoints))
    weights = [w.copy() for w in first["model"].get_weights()]
    again = run_train("--checkpoint-dir", str(checkpoints))  # nothing left to train
    assert again["epochs_run"] == 0
    for a, b in zip(weights, again["model"].get_weights()):
        np.testing.assert_array_equal(a, b)


def test_resume_restores_the_optimizer_state(tmp_path):
    """The checkpoint carries RMSprop's moving averages and its step count,
    and a resumed run starts from them, not from a fresh optimizer."""
    checkpoints = tmp_path / "checkpoints"
    first = run_train("--checkpoint-dir", str(checkpoints))
    trained = [(v.path, np.array(v)) for v in first["model"].optimizer.variables]
    assert trained[0][0].endswith("/iteration") and int(trained[0][1]) == 4  # 256 images / 64 per step
    again = run_train("--checkpoint-dir", str(checkpoints))  # nothing left to train
    restored = [np.array(v) for v in again["model"].optimizer.variables]
    assert len(restored) == len(trained) > 2  # iteration, learning rate, one average per weight
    for (path, value), loaded in zip(trained, restored):
        np.testing.assert_array_equal(loaded, value, err_msg=path)
    resumed = run_train("--epochs", "2", "--checkpoint-dir", str(checkpoints))
    assert resumed["epochs_run"] == 1
    assert int(resumed["model"].optimizer.iterations) == 8  # 4 restored + 4 new steps


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def fresh_model(model="cnn"):
    """An untrained, compiled model as train.py builds it (no augmentation)."""
    from models.cifar10 import BUILDERS

    built = BUILDERS[model]([], input_shape=(32, 32, 3))
    built.compile(optimizer=keras.optimizers.RMSprop(1e-4), loss="sparse_categorical_crossentropy")
    return built


def assert_same_weights(model, weights):
    for a, b in zip(model.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_damaged_latest_checkpoint_resumes_from_the_backup(tmp_path, capsys):
    from models.checkpoints import restore

    checkpoints = tmp_path / "checkpoints"
    after_epoch_1 = run_train("--epochs", "1", "--checkpoint-dir", str(checkpoints))["model"].get_weights()
    run_train("--epochs", "2", "--checkpoint-dir", str(checkpoints))
    truncate(checkpoints / "latest.weights.h5")  # a crash while writing epoch 2's state
    damaged = (checkpoints / "latest.weights.h5").read_bytes()
    # What is loaded is the backup: epoch 1's weights, exactly.
    model = fresh_model()
    assert restore(model, checkpoints, repair=False)[0] == 1
    assert_same_weights(model, after_epoch_1)
    assert int(model.optimizer.iterations) == 4
    capsys.readouterr()
    resumed = run_train("--epochs", "3", "--checkpoint-dir", str(checkpoints))
    out = capsys.readouterr().out
    assert "resuming from the backup checkpoint" in out and "1 epoch(s) already done" in out
    assert resumed["epochs_run"] == 2 and "epoch 2:" in out and "epoch 1:" not in out
    assert (checkpoints / "latest.weights.h5.damaged").read_bytes() == damaged  # kept
    assert json.loads((checkpoints / "training_metadata.json").read_text())["epoch"] == 3
    model = fresh_model()
    assert restore(model, checkpoints)[0] == 3
    assert_same_weights(model, resumed["model"].get_weights())


@pytest.mark.slow
@pytest.mark.parametrize("name, expected_epochs, source", [
    ("training_metadata.json", 2, "backup"),      # killed after epoch 3's weights, before their metadata
    ("training_metadata.json.bkp", 2, "latest"),  # killed between the two files of the backup copy
])
def test_a_kill_between_a_states_two_files_never_mislabels_the_weights(tmp_path, name, expected_epochs, source):
    """Weights and metadata are two files: a kill between their writes must
    not resume epoch 3's weights as epoch 2's (a silently repeated epoch)."""
    from models.checkpoints import restore

    checkpoints = tmp_path / "checkpoints"
    args = [*QUICK, "--model", "tiny", "--checkpoint-dir", str(checkpoints)]
    weights = {}
    for epochs in (1, 2):
        weights[epochs] = train.run(train.parse_args(args + ["--epochs", str(epochs)]))["model"].get_weights()
    # The run to epoch 3 is killed before its first rename onto `name`.
    result = subprocess.run([sys.executable, str(REPO / "tests" / "checkpoint_fault_script.py"), name, "1", *args,
                             "--epochs", "3"], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == -9, result.stderr[-2000:]
    model = fresh_model("tiny")
    epochs, message = restore(model, checkpoints, repair=False)[:2]
    assert epochs == expected_epochs and ("backup" in message) == (source == "backup"), message
    assert_same_weights(model, weights[2])
    assert int(model.optimizer.iterations) == 8
    if source == "backup":
        assert "is from step 12 but training_metadata.json from step 8" in message
    rerun = run_cli(*args, "--epochs", "3")
    assert rerun.returncode == 0 and "2 epoch(s) already done" in rerun.stdout, rerun.stdout + rerun.stderr[-2000:]
    assert "epoch 3:" in rerun.stdout and "epoch 2:" not in rerun.stdout


@pytest.mark.slow
def test_a_checkpoint_of_another_model_is_refused_as_such(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    run_train("--model", "tiny", "--checkpoint-dir", str(checkpoints))
    before = {p.name: p.read_bytes() for p in checkpoints.iterdir()}
    result = run_cli(*QUICK, "--model", "cnn", "--epochs", "2", "--checkpoint-dir", str(checkpoints))
    assert_one_line_error(result, "holds a run with --model tiny; this run has cnn")  # the recorded run says it
    assert {p.name: p.read_bytes() for p in checkpoints.iterdir()} == before
    metadata = json.loads((checkpoints / "training_metadata.json").read_text())
    (checkpoints / "training_metadata.json").write_text(json.dumps(dict(metadata, run=None)))  # none recorded
    result = run_cli(*QUICK, "--model", "cnn", "--epochs", "2", "--checkpoint-dir", str(checkpoints))
    assert_one_line_error(result, "holds a checkpoint of another model (tiny, ", "this run builds cifar10_cnn, ",
                          "use the same --model and --image-size")
    # A checkpoint written before fingerprints were recorded (Keras' BackupAndRestore wrote only the epoch).
    for name in ("training_metadata.json", "training_metadata.json.bkp"):
        if (checkpoints / name).exists():
            (checkpoints / name).write_text(json.dumps({"epoch": 1}))
    result = run_cli(*QUICK, "--model", "cnn", "--epochs", "2", "--checkpoint-dir", str(checkpoints))
    assert_one_line_error(result, "its weights do not fit this model (written by another --model")


@pytest.mark.slow
def test_metrics_json_in_a_folder_that_does_not_exist_is_created(tmp_path):
    metrics = tmp_path / "new" / "deeper" / "metrics.json"
    result = run_cli(*QUICK, "--model", "tiny", "--metrics-json", str(metrics))
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(metrics.read_text())["finished"] is True
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    result = run_cli(*QUICK, "--model", "tiny", "--metrics-json", str(blocked / "metrics.json"))
    assert_one_line_error(result, "--metrics-json", "a-file")
    assert "epoch 1" not in result.stdout


@pytest.mark.slow
def test_both_checkpoints_damaged_is_refused_and_kept(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    run_train("--epochs", "2", "--checkpoint-dir", str(checkpoints))
    truncate(checkpoints / "latest.weights.h5")
    truncate(checkpoints / "latest.weights.h5.bkp")
    before = {p.name: p.read_bytes() for p in checkpoints.iterdir()}
    result = run_cli(*QUICK, "--epochs", "3", "--checkpoint-dir", str(checkpoints))
    assert_one_line_error(result, "cannot load latest.weights.h5 ", "cannot load latest.weights.h5.bkp",
                          "left untouched")
    assert "epoch 1" not in result.stdout
    assert {p.name: p.read_bytes() for p in checkpoints.iterdir()} == before


# Loaders ---------------------------------------------------------------------

def test_archive_and_folder_layouts_load_the_same_data(tmp_path):
    expected = load_data(str(CIFAR_DIR))
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(CIFAR_DIR, arcname="cifar-10-batches-py")
    for source in (archive, tmp_path, CIFAR_DIR.parent):
        (x_train, y_train), (x_test, y_test) = load_data(str(source))
        np.testing.assert_array_equal(x_train, expected[0][0])
        np.testing.assert_array_equal(y_test, expected[1][1])
    assert expected[0][0].shape == (5000, 32, 32, 3) and expected[0][0].dtype == np.uint8


# Error paths: one line, exit 2, no traceback -------------------------------

@pytest.mark.slow
def test_missing_data_dir(tmp_path):
    result = run_cli("--data-dir", str(tmp_path / "nowhere"))
    assert_one_line_error(result, "does not exist", "--data-dir")


@pytest.mark.slow
def test_folder_without_data(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_cli("--data-dir", str(tmp_path / "empty")), "no class sub-folders")


@pytest.mark.slow
def test_corrupted_batch_file(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"\x80\x04 not a pickle")
    (folder / "test_batch").write_bytes((CIFAR_DIR / "test_batch").read_bytes())
    assert_one_line_error(run_cli("--data-dir", str(tmp_path)), "cannot read CIFAR-10 batch", "data_batch_1")


@pytest.mark.slow
def test_truncated_archive(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(CIFAR_DIR, arcname="cifar-10-batches-py")
    archive.write_bytes(archive.read_bytes()[:5000])
    assert_one_line_error(run_cli("--data-dir", str(archive)), "cannot read archive")


def test_batch_with_wrong_content(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": [1, 2, 3], b"labels": [0]}))
    (tmp_path / "test_batch").write_bytes((CIFAR_DIR / "test_batch").read_bytes())
    with pytest.raises(DataError, match="data_batch_1"):
        load_data(str(tmp_path))


@pytest.mark.slow
def test_non_image_file_in_a_class_folder(tmp_path):
    write_image_folder(tmp_path, [np.zeros((8, 8, 3), np.uint8)] * 2, [0, 1])
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    assert_one_line_error(run_cli("--data-dir", str(tmp_path)), "notes.txt", "not an image file")


@pytest.mark.slow
def test_corrupted_image_file(tmp_path):
    write_image_folder(tmp_path, [np.zeros((8, 8, 3), np.uint8)] * 2, [0, 1])
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG broken")
    assert_one_line_error(run_cli("--data-dir", str(tmp_path)), "cannot read image", "broken.png")


@pytest.mark.slow
def test_image_truncated_after_its_header(tmp_path):
    """Passes the up-front check, fails to decode while streaming: still one
    line naming the file."""
    write_image_folder(tmp_path, [np.full((8, 8, 3), i, np.uint8) for i in range(10)], [0, 1] * 5)
    whole = (tmp_path / "dog" / "00001.png").read_bytes()
    (tmp_path / "dog" / "00001.png").write_bytes(whole[:40])
    result = run_cli("--data-dir", str(tmp_path), "--epochs", "1", "--model", "tiny", "--verbose", "0")
    assert_one_line_error(result, "cannot read image", "00001.png")


@pytest.mark.slow
def test_export_path_that_is_a_file(tmp_path):
    target = tmp_path / "export"
    target.write_text("a user's file")
    result = run_cli("--data-dir", str(CIFAR_DIR), "--export", str(target))
    assert_one_line_error(result, "is not a directory")
    assert target.read_text() == "a user's file"


@pytest.mark.slow
def test_metrics_json_that_is_a_directory_fails_before_training(tmp_path):
    result = run_cli(*QUICK, "--metrics-json", str(tmp_path))
    assert_one_line_error(result, "--metrics-json", "is a directory")
    assert "epoch 1" not in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--validation-split", "1.5"], "--validation-split must be between 0 and 1"),
    (["--image-size", "0", "32"], "--image-size must be two sizes >= 1"),
    (["--learning-rate", "0"], "--learning-rate must be a finite number > 0"),
    (["--learning-rate", "inf"], "--learning-rate must be a finite number > 0"),
    (["--checkpoint-dir", ""], "--checkpoint-dir needs a path (got an empty string)"),
    (["--export", " "], "--export needs a path"),
    (["--metrics-json="], "--metrics-json needs a path"),
    (["--cache", ""], "--cache needs a path"),
    (["--seed", "-1"], "--seed must be between 0 and 2**32 - 1"),
    (["--zoom-range", "0.8", "0.9", "1.2"], "--zoom-range takes Z or LOW HIGH"),
    # Augmentation arguments: gpuaug's own checks, naming the flag, before any data is read.
    (["--rotation-range", "-5"], "--rotation-range must be a finite number >= 0"),
    (["--zoom-range", "2"], "--zoom-range must be a float z in [0, 1)"),
    (["--zoom-range", "1.2", "0.8"], "--zoom-range must be"),
    (["--brightness-range", "1.2", "0.8"], "--brightness-range must be"),
    (["--channel-shift-range", "-1"], "--channel-shift-range must be a finite number >= 0"),
    (["--shear-range", "inf"], "--shear-range must be a finite number >= 0"),
    (["--cval", "nan"], "--cval must be a finite number"),
])
def test_bad_numbers_are_usage_errors(flags, message):
    result = run_cli(*flags, "--data-dir", "/nonexistent")  # checked before the data
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "/nonexistent" not in result.stderr


def test_zoom_range_takes_one_or_two_numbers():
    one, two = train.parse_args(["--zoom-range", "0.2"]), train.parse_args(["--zoom-range", "0.8", "1.1"])
    assert train.augmentation_arguments(one)["zoom_range"] == 0.2
    assert train.augmentation_arguments(two)["zoom_range"] == [0.8, 1.1]


@pytest.mark.slow
def test_too_few_images_for_the_splits_is_one_line(tmp_path):
    write_image_folder(tmp_path, [np.zeros((8, 8, 3), np.uint8)] * 3, [0, 1, 0])
    result = run_cli("--data-dir", str(tmp_path), "--validation-split", "0.1", "--limit", "1")
    assert_one_line_error(result, "--limit 1: 1 of its 3 images are too few for a training set and a validation set")


@pytest.mark.slow
def test_help_lists_the_flags():
    result = run_cli("--help", timeout=60)
    assert result.returncode == 0
    for flag in ("--data-dir", "--augment", "--epochs", "--batch-size", "--seed", "--jit-compile",
                 "--no-jit-compile", "--limit", "--export", "--checkpoint-dir", "--strategy"):
        assert flag in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("flags, fragments", [
    (["--augment", "none", "--rotation-range", "10"], ["--rotation-range", "--augment none", "would be ignored"]),
    (["--augment", "none", "--no-horizontal-flip", "--zoom-range", "0.1"],
     ["--horizontal-flip", "--zoom-range", "would be ignored"]),
    (["--augment", "generator", "--shift-axes", "named"], ["--shift-axes named needs --augment gpu"]),
    (["--cval", "5"], ["--cval is the fill value of --fill-mode constant", "--fill-mode nearest"]),
    (["--fill-mode", "reflect", "--cval=5"], ["--cval", "--fill-mode reflect", "would be ignored"]),
])
def test_flags_that_would_be_ignored_are_refused(flags, fragments):
    result = run_cli(*flags, "--data-dir", "/nonexistent")  # checked before the data
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    assert all(fragment in line for fragment in fragments), line


def test_flags_that_apply_are_accepted():
    assert train.parse_args(["--augment", "none"]).augment == "none"
    assert train.parse_args(["--fill-mode", "constant", "--cval", "5"]).cval == 5.0
    assert train.parse_args(["--augment", "generator", "--shift-axes", "reference"]).shift_axes == "reference"
    assert train.parse_args(["--rot", "3"]).rotation_range == 3.0  # argparse's abbreviations count as given


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--export", "--checkpoint-dir", "--cache"])
@pytest.mark.parametrize("where", ["itself", "a parent"])
def test_a_dangling_link_on_an_output_path_is_refused_before_training(tmp_path, flag, where):
    """A link to nowhere passes an exists() check; a folder cannot be made
    through it, so the run would fail after training, the model lost."""
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone" / "target")
    path = link if where == "itself" else link / "sub"
    data = QUICK
    if flag == "--cache":  # the cache is for image folders
        write_image_folder(tmp_path / "images", [np.zeros((8, 8, 3), np.uint8)] * 4, [0, 1, 0, 1])
        data = [*QUICK, "--data-dir", str(tmp_path / "images")]
    result = run_cli(*data, flag, str(path))
    assert_one_line_error(result, flag, "is a symbolic link to", "which does not exist")
    assert "epoch 1" not in result.stdout and not (tmp_path / "gone").exists()


@pytest.mark.slow
def test_an_output_path_under_a_file_is_refused_before_training(tmp_path):
    (tmp_path / "a-file").write_text("mine")
    result = run_cli(*QUICK, "--checkpoint-dir", str(tmp_path / "a-file" / "deeper" / "ck"))
    assert_one_line_error(result, "--checkpoint-dir", "a-file is a file")
    assert (tmp_path / "a-file").read_text() == "mine"


@pytest.mark.slow
def test_metrics_json_through_a_link_writes_its_target_and_keeps_the_link(tmp_path):
    target = tmp_path / "results" / "metrics.json"
    target.parent.mkdir()
    link = tmp_path / "metrics.json"
    link.symlink_to(target)  # dangling until the first write
    result = run_cli(*QUICK, "--model", "tiny", "--metrics-json", str(link))
    assert result.returncode == 0, result.stderr[-2000:]
    assert link.is_symlink() and json.loads(target.read_text())["finished"] is True


def folder_splits(tmp_path):
    rng = np.random.default_rng(0)
    write_image_folder(tmp_path / "images", rng.integers(0, 256, (30, 8, 8, 3)), np.arange(30) % 3)
    return tmp_path / "images"


@pytest.mark.parametrize("outputs, fragments", [
    ({"--export": "out", "--metrics-json": "out/model.keras"},
     ["--metrics-json", "would write into --export", "own model.keras"]),
    ({"--export": "out", "--metrics-json": "out/saved_model/variables/x.json"}, ["own saved_model"]),
    ({"--checkpoint-dir": "ck", "--metrics-json": "ck/training_metadata.json"},
     ["would write into --checkpoint-dir", "own training_metadata.json"]),
    ({"--checkpoint-dir": "ck", "--metrics-json": "ck/latest.weights.h5.bkp"}, ["own latest.weights.h5.bkp"]),
    ({"--cache": "cache", "--metrics-json": "cache/gpuaug-cache-train.json"}, ["would write into --cache"]),
    ({"--export": "out", "--checkpoint-dir": "out/.gpuaug-export/v1"}, ["--checkpoint-dir", "own .gpuaug-export"]),
    ({"--export": "out", "--metrics-json": "out"}, ["--metrics-json", "is --export", "a folder"]),
    ({"--checkpoint-dir": "images/ck"}, ["--checkpoint-dir", "is inside --data-dir"]),
    ({"--cache": "images/cat/cache"}, ["--cache", "is inside --data-dir"]),
    ({"--export": "images"}, ["--export", "is inside --data-dir"]),
])
def test_outputs_that_would_write_over_one_another_or_the_data_are_refused(tmp_path, outputs, fragments):
    """Refused before any training: a --metrics-json that a later export,
    checkpoint or cache would replace (or the reverse), and outputs inside
    the image folder trained on (they would be classes or images of the next
    run). Before, each was found out after training, or trained the next run
    on a checkpoint folder as a class."""
    images = folder_splits(tmp_path)
    argv = ["--data-dir", str(images)]
    for name, path in outputs.items():
        argv += [name, str(tmp_path / path)]
    args = train.parse_args(argv)
    with pytest.raises(UsageError) as error:
        output_checks.check_inputs(args, train.load_dataset(args))
    for fragment in fragments:
        assert fragment in str(error.value), str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]  # nothing written


def test_outputs_that_share_a_folder_without_overlapping_are_accepted(tmp_path):
    images = folder_splits(tmp_path)
    args = train.parse_args(["--data-dir", str(images), "--export", str(tmp_path / "out"), "--checkpoint-dir",
                             str(tmp_path / "out"), "--cache", str(tmp_path / "out"),
                             "--metrics-json", str(tmp_path / "out" / "metrics.json")])
    output_checks.check_inputs(args, train.load_dataset(args))


@pytest.mark.slow
def test_a_file_that_is_not_train_pys_metrics_is_never_replaced(tmp_path):
    notes = tmp_path / "results.json"
    notes.write_text('{"my": "results"}')
    result = run_cli(*QUICK, "--model", "tiny", "--metrics-json", str(notes))
    assert_one_line_error(result, "--metrics-json", "is not train.py's metrics", "left untouched")
    assert notes.read_text() == '{"my": "results"}' and "epoch 1" not in result.stdout
    # An earlier run's metrics and an empty file are train.py's to replace.
    empty = tmp_path / "empty.json"
    empty.touch()
    for path in (empty, notes):
        if path == notes:
            notes.write_text(json.dumps({"epochs": [], "finished": True}))
        assert run_cli(*QUICK, "--model", "tiny", "--metrics-json", str(path)).returncode == 0
        assert json.loads(path.read_text())["finished"] is True


@pytest.mark.slow
def test_a_metrics_json_link_into_a_folder_that_does_not_exist_yet(tmp_path):
    """The link's target folder is made before training (the link's own
    folder exists): the JSON lands at the target, the link is kept."""
    link = tmp_path / "metrics.json"
    os.symlink(tmp_path / "results" / "today" / "metrics.json", link)
    result = run_cli(*QUICK, "--model", "tiny", "--metrics-json", str(link))
    assert result.returncode == 0, result.stderr[-2000:]
    assert link.is_symlink() and json.loads((tmp_path / "results" / "today" / "metrics.json").read_text())["finished"]


@pytest.mark.slow
def test_ctrl_c_during_start_up_is_one_line(tmp_path):
    """SIGINT while TensorFlow is still being imported (parse_args imports
    it) or while the run starts: one line and exit 130, no traceback."""
    process = subprocess.Popen([sys.executable, str(REPO / "train.py"), *QUICK], cwd=REPO,
                               env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    import time

    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "train.py: interrupted" in stderr, stderr[-2000:]
    assert "Traceback" not in stderr


def test_a_metrics_json_that_is_not_a_regular_file_is_never_replaced(tmp_path):
    """A FIFO (or a device such as /dev/null) passed the check and was
    replaced by a regular file at the first epoch's atomic rename."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="exists and is not a regular file"):
        output_checks.check_metrics_json(str(fifo))
    assert fifo.is_fifo()


def test_a_cache_folder_whose_name_is_not_utf8_is_one_line(tmp_path):
    images = folder_splits(tmp_path)
    cache = os.fsdecode(os.fsencode(str(tmp_path)) + b"/cache-\xe9")
    args = train.parse_args(["--data-dir", str(images), "--cache", cache])
    with pytest.raises(UsageError, match="need a path that is valid UTF-8"):
        output_checks.check_inputs(args, train.load_dataset(args))


def test_an_output_inside_a_linked_class_folder_is_refused(tmp_path):
    """A class folder that is a link elsewhere is read as training data too:
    a checkpoint folder inside its target would become its images."""
    images = folder_splits(tmp_path)
    os.rename(images / "cat", tmp_path / "cats-elsewhere")
    os.symlink(tmp_path / "cats-elsewhere", images / "cat")
    args = train.parse_args(["--data-dir", str(images), "--checkpoint-dir", str(tmp_path / "cats-elsewhere" / "ck")])
    with pytest.raises(UsageError, match="is inside --data-dir"):
        output_checks.check_inputs(args, train.load_dataset(args))


@pytest.mark.parametrize("flags, fragment", [
    (["--mixup", "0"], "--mixup must be in [1e-30, 1e+30] (got 0.0)"),
    (["--mixup", "inf"], "--mixup must be in [1e-30, 1e+30] (got inf)"),
    (["--mixup", "1e-39"], "--mixup must be in [1e-30, 1e+30] (got 1e-39)"),
    (["--cutmix", "1.5"], "--cutmix must be in (0, 1]"),
    (["--cutmix", "0"], "--cutmix must be in (0, 1]"),
    (["--mixup", "0.2", "--strategy", "multiworker"], "not supported with --strategy multiworker"),
])
def test_bad_mixing_flags_are_one_line(flags, fragment, capsys):
    with pytest.raises(SystemExit) as exit_:
        train.parse_args(flags)
    assert exit_.value.code == 2
    assert fragment in capsys.readouterr().err.strip().splitlines()[-1]


def test_mixup_and_cutmix_train_inside_the_step_and_export_the_network(tmp_path, monkeypatch, capsys):
    import gpuaug

    trained = []
    fit = keras.Model.fit

    def spy(self, *args, **kwargs):
        trained.append(self)
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", spy)
    summary = run_train("--model", "tiny", "--mixup", "0.3", "--cutmix", "0.5", "--rotation-range", "10",
                        "--export", str(tmp_path / "export"))
    (trainer,) = trained
    assert isinstance(trainer, gpuaug.TrainWithMixing)
    assert [(type(layer).__name__, layer.get_config().get("alpha", layer.get_config().get("factor")))
            for layer in trainer.mixing] == [("MixUp", 0.3), ("CutMix", [0.5, 0.5])]
    assert trainer.augmentation.get_config()["rotation_range"] == 10  # each image before the mixing
    assert trainer.loss == "categorical_crossentropy"
    assert "mixup 0.3, cutmix 0.5" in capsys.readouterr().out
    network = keras.models.load_model(tmp_path / "export" / "model.keras")
    assert not any(isinstance(layer, (gpuaug.TrainWithMixing, gpuaug.MixUp, gpuaug.CutMix, gpuaug.RandomTransform))
                   for layer in network.layers)
    assert summary["model"] is trainer.model and 0 <= summary["test_accuracy"] <= 1


def test_a_resume_with_other_mixing_is_refused(tmp_path):
    checkpoints = str(tmp_path / "checkpoints")
    run_train("--model", "tiny", "--mixup", "0.2", "--checkpoint-dir", checkpoints)
    with pytest.raises(UsageError, match="holds a run with --mixup 0.2; this run has 0.4"):
        run_train("--model", "tiny", "--mixup", "0.4", "--checkpoint-dir", checkpoints, "--epochs", "2")
    with pytest.raises(UsageError, match="holds a run with --cutmix none; this run has 1.0"):
        run_train("--model", "tiny", "--mixup", "0.2", "--cutmix", "1", "--checkpoint-dir", checkpoints,
                  "--epochs", "2")
    summary = run_train("--model", "tiny", "--mixup", "0.2", "--checkpoint-dir", checkpoints, "--epochs", "2")
    assert [record["epoch"] for record in summary["epochs"]] == [1, 2] and summary["epochs_run"] == 1


def test_a_limit_too_small_for_the_splits_names_the_limit():
    """The message quoted the whole data's count (5000), not the --limit's."""
    images = np.zeros((50, 2, 2, 3), np.uint8), np.arange(50) % 10
    with pytest.raises(DataError, match=r"^--limit 5: 5 training images are too few for a training and a valid"):
        split_arrays(images, images, limit=5, validation_split=0.1)
    with pytest.raises(DataError, match=r"^50 training images are too few"):
        split_arrays(images, images, validation_split=0.01)


def test_help_and_flag_errors_load_no_backend():
    """--help took 3.5 s and printed TensorFlow's log lines (the flag table
    was imported through gpuaug/__init__.py, which imports Keras); with an
    unusable KERAS_BACKEND it was a traceback."""
    env = dict(os.environ, KERAS_BACKEND="bogus")
    result = run_cli("--help", timeout=60, env=env)
    assert result.returncode == 0 and result.stderr == "" and "--rotation-range" in result.stdout
    usage = result.stdout.split("\n\n")[0]
    assert usage.index("--strategy") < usage.index("--process-id") < usage.index("--verbose")  # as before
    assert_one_line_error(run_cli("--epochs", "0", timeout=60, env=env), "--epochs must be >= 1 (got 0)")
    assert_one_line_error(run_cli("--data-dir", "/nonexistent", timeout=60, env=env),
                          "cannot load Keras' backend (Unable to import backend : bogus)")
    # A backend that loads but has no fit was a traceback after the data loaded and the model was built.
    assert_one_line_error(run_cli("--data-dir", "/nonexistent", timeout=120, env=dict(env, KERAS_BACKEND="numpy")),
                          "Keras' numpy backend cannot train (no fit): set KERAS_BACKEND to tensorflow, jax or torch")


@pytest.mark.parametrize("flags, first", [
    (["--zoom-range", "1", "2", "3", "--learning-rate", "0"], "--zoom-range takes Z or LOW HIGH"),
    (["--zoom-range", "1", "2", "3", "--data-dir", ""], "--zoom-range takes Z or LOW HIGH"),
    (["--zoom-range", "1", "2", "3", "--seed", "-1"], "--zoom-range takes Z or LOW HIGH"),
    (["--seed", "-1", "--data-dir", ""], "--data-dir needs a path"),
    (["--learning-rate", "0", "--data-dir", ""], "--learning-rate must be a finite number > 0"),
])
def test_the_first_problem_reported_is_the_one_it_was(flags, first, capsys):
    """The order train.py's checks had before the command line moved to models/flags.py."""
    with pytest.raises(SystemExit):
        train.parse_args(flags)
    assert first in capsys.readouterr().err.strip().splitlines()[-1]

