"""train.py's export never loses what is in its folder and never shows a
reader a mix: only model.keras and saved_model/ are replaced, both at once
(one link switched), so a reader resolving them at any instant, even while a
run is killed mid-export, finds the whole previous export or the whole new
one; entries that are not an export are refused, never deleted."""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import gpuaug  # noqa: F401  (registers RandomTransform for load_model)
import train
from conftest import CIFAR_DIR, REPO, assert_one_line_error, run_cli
from models import export

QUICK = ["--data-dir", str(CIFAR_DIR), "--limit", "64", "--epochs", "1", "--batch-size", "32",
         "--verbose", "0", "--model", "tiny"]


def user_files(folder):
    (folder / "notes.txt").write_text("the user's notes")
    (folder / "data").mkdir()
    (folder / "data" / "keep.bin").write_bytes(b"\x00\x01")


def fake_writer(word, with_saved_model=True):
    def write(staging):
        (staging / "model.keras").write_text(f"{word} model")
        if with_saved_model:
            (staging / "saved_model").mkdir()
            (staging / "saved_model" / "saved_model.pb").write_text(f"{word} graph")
    return write


def old_export(folder, kind):
    """DIR with the user's files and an earlier export: "linked" (this
    gpuaug's layout) or "none"."""
    folder.mkdir(parents=True, exist_ok=True)
    user_files(folder)
    if kind == "linked":
        export.publish(folder, fake_writer("old"))


def reader_view(folder):
    """What a reader of DIR finds, following the links: the first word of
    model.keras and of saved_model/saved_model.pb, None where absent."""
    model = folder / "model.keras"
    graph = folder / "saved_model" / "saved_model.pb"
    return (model.read_text().split()[0] if model.exists() else None,
            graph.read_text().split()[0] if graph.exists() else None)


def user_files_intact(folder):
    assert (folder / "notes.txt").read_text() == "the user's notes"
    assert (folder / "data" / "keep.bin").read_bytes() == b"\x00\x01"


def fault(folder, kill_at, entries):
    return subprocess.run(
        [sys.executable, str(REPO / "tests" / "export_fault_script.py"), str(folder), str(kill_at), entries],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("entries, old_kind", [
    ("model.keras,saved_model", "linked"),      # TensorFlow export over this gpuaug's export
    ("model.keras,saved_model", "none"),        # the first export into a folder
    ("model.keras", "linked"),                  # an export without SavedModel over one with
])
def test_a_reader_sees_a_whole_export_at_every_step_of_a_killed_export(tmp_path, entries, old_kind):
    clean = tmp_path / "clean"
    old_export(clean, old_kind)
    result = fault(clean, 0, entries)
    assert result.returncode == 0, result.stderr
    steps = int(result.stdout)
    new = ("new", "new" if "saved_model" in entries else None)
    old = {"linked": ("old", "old"), "none": (None, None)}[old_kind]
    assert reader_view(clean) == new and steps >= 3
    user_files_intact(clean)
    assert sorted(p.name for p in clean.iterdir()) == [".gpuaug-export", "data", "model.keras", "notes.txt",
                                                       "saved_model"]
    views, outcomes = set(), set()
    for kill_at in range(1, steps + 1):
        folder = tmp_path / f"kill{kill_at}"
        old_export(folder, old_kind)
        result = fault(folder, kill_at, entries)
        assert result.returncode == -9, (kill_at, result.stderr)
        user_files_intact(folder)
        # What a reader sees at the kill: the whole old export or the whole new one.
        view = reader_view(folder)
        views.add(view)
        assert view in (old, new), (kill_at, view)
        # The next run tidies up: all old or all new, nothing half-written left.
        export.recover(folder)
        outcomes.add(reader_view(folder))
        assert reader_view(folder) in (old, new), (kill_at, reader_view(folder))
        user_files_intact(folder)
        store = folder / export.STORE
        assert not [p for p in store.rglob("*") if p.name.endswith(".partial")], kill_at
        assert len(export._versions(store)) <= 2
        assert not [p.name for p in folder.iterdir() if p.name.startswith(".gpuaug") and p.name != export.STORE]
    assert outcomes == {old, new}  # the kills fell on both sides of the switch


def test_the_previous_export_stays_readable_after_the_switch(tmp_path):
    folder = tmp_path / "export"
    for word in ("first", "second", "third"):
        export.publish(folder, fake_writer(word))
    store = folder / export.STORE
    assert reader_view(folder) == ("third", "third")
    versions = export._versions(store)
    assert [(v / "model.keras").read_text() for v in versions] == ["second model", "third model"]


def contents(folder):
    """Every entry under `folder` (hidden ones and links included) with its
    bytes or link target."""
    return {str(p.relative_to(folder)): (os.readlink(p) if p.is_symlink() else
                                         p.read_bytes() if p.is_file() else "dir")
            for p in sorted(folder.rglob("*"))}


def test_export_keeps_other_files_and_replaces_only_its_own(tmp_path):
    folder = tmp_path / "export"
    old_export(folder, "linked")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    train.export_model(model, folder)
    user_files_intact(folder)
    assert sorted(p.name for p in folder.iterdir()) == [".gpuaug-export", "data", "model.keras", "notes.txt",
                                                        "saved_model"]
    assert (folder / "saved_model" / "saved_model.pb").stat().st_size > 1000  # a real SavedModel
    keras.models.load_model(folder / "model.keras")


@pytest.mark.slow
@pytest.mark.parametrize("make, name", [
    (lambda d: (d / "model.keras").mkdir(), "model.keras"),
    (lambda d: (d / "saved_model").write_text("a user's file"), "saved_model"),
    (lambda d: ((d / "saved_model").mkdir(), (d / "saved_model" / "mine.txt").write_text("x")), "saved_model"),
    (lambda d: ((d / "mine.keras").write_text("x"), os.symlink("mine.keras", d / "model.keras")), "model.keras"),
    (lambda d: (d / ".gpuaug-export").write_text("a user's file"), ".gpuaug-export"),  # found after training before
])
def test_entries_that_are_not_an_export_are_refused_before_training(tmp_path, make, name):
    folder = tmp_path / "export"
    folder.mkdir()
    make(folder)
    before = contents(folder)
    result = run_cli(*QUICK, "--export", str(folder))
    assert_one_line_error(result, name, "not a gpuaug export")
    assert "epoch 1" not in result.stdout
    assert contents(folder) == before


@pytest.mark.slow
def test_export_dot_in_a_folder_with_other_files(tmp_path):
    """`--export .` from a working folder: its files stay, the export joins them."""
    work = tmp_path / "project"
    work.mkdir()
    (work / "notes.txt").write_text("keep me")
    (work / "src").mkdir()
    (work / "src" / "main.py").write_text("print('hi')")
    result = run_cli(*QUICK, "--export", ".", cwd=work)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (work / "notes.txt").read_text() == "keep me"
    assert (work / "src" / "main.py").read_text() == "print('hi')"
    assert sorted(p.name for p in work.iterdir()) == [".gpuaug-export", "model.keras", "notes.txt", "saved_model",
                                                      "src"]


@pytest.mark.slow
def test_the_next_run_finishes_an_export_of_an_earlier_gpuaug(tmp_path):
    """An earlier gpuaug's journal, killed after its new export was complete,
    left it in its ready folder: train.py's next run installs it before
    training and says so, then writes its own."""
    folder = tmp_path / "export"
    old_export(folder, "none")
    ready = folder / export.LEGACY_READY
    (ready / "saved_model").mkdir(parents=True)
    (ready / "saved_model" / "saved_model.pb").write_text("new graph")
    (ready / "model.keras").write_text("new model")
    (ready / "entries").write_text("model.keras\nsaved_model\n")
    assert export.recover(folder) == "installed"
    assert reader_view(folder) == ("new", "new")
    user_files_intact(folder)
    (folder / export.STORE / "v9.partial").mkdir()  # what a killed run leaves
    result = run_cli(*QUICK, "--export", str(folder))
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert out.index("removed the unfinished export of an interrupted run") < out.index("training on")
    user_files_intact(folder)
    assert not [p for p in (folder / export.STORE).iterdir() if p.name.endswith(".partial")]
    keras.models.load_model(folder / "model.keras")  # and then this run's own export


def plain_entries(folder, store):
    """What the issue found destroyed: model.keras and saved_model/ that are
    the user's own (or a plain export of an earlier gpuaug: they look the
    same), with (the user replaced the export's links) or without an export
    store beside them."""
    folder.mkdir(parents=True)
    if store:
        export.publish(folder, fake_writer("old"))
        (folder / "model.keras").unlink()
        (folder / "saved_model").unlink()
    (folder / "model.keras").write_text("the user's own model")
    (folder / "saved_model").mkdir()
    (folder / "saved_model" / "saved_model.pb").write_text("the user's own graph")
    (folder / "saved_model" / "variables").mkdir()


@pytest.mark.slow
@pytest.mark.parametrize("store", [True, False], ids=["links-replaced-by-the-user", "no-export-yet"])
def test_a_users_model_keras_and_saved_model_are_never_replaced(tmp_path, store):
    folder = tmp_path / "export"
    plain_entries(folder, store)
    before = contents(folder)
    tidy = subprocess.run([sys.executable, "-m", "models.export", str(folder)], cwd=REPO, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert tidy.returncode == 2 and "nothing to do" not in tidy.stdout, tidy.stdout + tidy.stderr
    assert "model.keras there is not a gpuaug export" in tidy.stderr and "left untouched" in tidy.stderr
    assert contents(folder) == before
    with pytest.raises(export.ExportError, match="left untouched"):
        export.recover(folder)
    with pytest.raises(export.ExportError, match="left untouched"):
        export.publish(folder, fake_writer("new"))
    assert contents(folder) == before
    result = run_cli(*QUICK, "--export", str(folder))
    assert_one_line_error(result, "not a gpuaug export", "left untouched")
    assert "epoch 1" not in result.stdout and contents(folder) == before


@pytest.mark.slow
def test_tidy_up_without_training(tmp_path):
    folder = tmp_path / "export"
    old_export(folder, "linked")
    (folder / export.STORE / "v7.partial").mkdir()
    result = subprocess.run([sys.executable, "-m", "models.export", str(folder)], cwd=REPO, capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0 and "removed the unfinished export" in result.stdout, result.stderr
    assert reader_view(folder) == ("old", "old")
    again = subprocess.run([sys.executable, "-m", "models.export", str(folder)], cwd=REPO, capture_output=True,
                           text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert again.returncode == 0 and "nothing to do" in again.stdout


@pytest.mark.slow
def test_a_jax_run_exports_both_entries_and_the_saved_model_serves(tmp_path):
    """On JAX, Keras writes the SavedModel through jax2tf: DIR holds the same
    two entries whatever the backend, and the SavedModel (read by TensorFlow
    alone) gives model.keras's predictions."""
    import tensorflow as tf

    from models.data import load_data

    folder = tmp_path / "export"
    jax = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    result = run_cli(*QUICK, "--export", str(folder), env=jax)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "saved_model not written" not in result.stdout
    assert sorted(p.name for p in folder.iterdir()) == [".gpuaug-export", "model.keras", "saved_model"]
    x = load_data(str(CIFAR_DIR))[1][0][:16].astype("float32")
    np.save(tmp_path / "x.npy", x)
    script = ("import sys, numpy as np, keras, gpuaug\n"
              "np.save(sys.argv[3], keras.models.load_model(sys.argv[1]).predict(np.load(sys.argv[2]), verbose=0))")
    check = subprocess.run([sys.executable, "-c", script, str(folder / "model.keras"), str(tmp_path / "x.npy"),
                            str(tmp_path / "y.npy")], cwd=REPO, capture_output=True, text=True, env=jax)
    assert check.returncode == 0, check.stderr[-2000:]
    served = tf.saved_model.load(str(folder / "saved_model"))  # kept: its functions need it alive
    np.testing.assert_allclose(served.serve(tf.constant(x)).numpy(), np.load(tmp_path / "y.npy"), atol=1e-5)


def test_without_tensorflow_the_export_says_why_there_is_no_saved_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(export, "saved_model_problem", lambda: "TensorFlow is not installed (pip install tensorflow)")
    folder = tmp_path / "export"
    train.export_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), folder)
    assert "saved_model not written (TensorFlow is not installed" in capsys.readouterr().out
    assert (folder / "model.keras").exists() and not (folder / "saved_model").exists()
    assert (folder / "saved_model").is_symlink()  # dangling: absent to every reader


def tensorflow_disk_full(*args, **kwargs):
    """What TensorFlow raises when the SavedModel's file cannot be written on a full disk."""
    import tensorflow as tf

    raise tf.errors.ResourceExhaustedError(None, None, "/x/saved_model/saved_model.pb.tmp1; No space left on device")


def test_a_full_disk_during_the_saved_model_keeps_the_previous_export(tmp_path, monkeypatch):
    """A SavedModel that cannot be written for lack of space is a failed
    export (the previous one stays installed, one line), not an export
    installed without its SavedModel."""
    folder = tmp_path / "export"
    old_export(folder, "linked")
    before = contents(folder)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    monkeypatch.setattr(type(model), "export", tensorflow_disk_full)
    with pytest.raises(export.ExportError, match="No space left on device; the previous export"):
        train.export_model(model, folder)
    assert contents(folder) == before and reader_view(folder) == ("old", "old")


@pytest.mark.slow
def test_a_real_full_disk_fails_the_export_in_one_line(tmp_path):
    """On a tmpfs too small for the SavedModel (where the machine lets a test mount one)."""
    disk = small_disk(tmp_path, "60k")
    result = run_cli(*QUICK, "--export", str(disk / "export"))
    assert_one_line_error(result, "--export", "No space left on device")
    assert not (disk / "export" / "saved_model").exists()


def small_disk(tmp_path, size):
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("this machine does not let the test mount a small file system")
    import atexit

    atexit.register(lambda: subprocess.run(["umount", "-l", str(mount)], capture_output=True))
    return mount


def test_a_folder_whose_name_is_not_utf8_gets_its_saved_model(tmp_path):
    """TensorFlow encodes paths as UTF-8; a folder named in another encoding
    (bytes that are not UTF-8) gets its SavedModel too, not a note that it
    could not be written."""
    folder = pathlib.Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/export-\xe9t\xe9"))
    train.export_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), folder)
    assert (folder / "saved_model" / "saved_model.pb").stat().st_size > 1000
    keras.models.load_model(folder / "model.keras")
