"""train.py's export never loses what is in its folder: only model.keras and
saved_model/ are replaced, a kill at any instant ends (after the next run's
recovery) with the whole previous export or the whole new one, and entries
that are not an export are refused, never deleted."""

import os
import subprocess
import sys

import keras
import pytest

import gpuaug  # noqa: F401  (registers RandomTransform for load_model)
import train
from conftest import CIFAR_DIR, REPO, assert_one_line_error, run_cli
from models import export

QUICK = ["--data-dir", str(CIFAR_DIR), "--limit", "64", "--epochs", "1", "--batch-size", "32",
         "--verbose", "0", "--model", "tiny"]


def old_export(folder, with_saved_model=True):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.keras").write_text("old model")
    if with_saved_model:
        (folder / "saved_model").mkdir()
        (folder / "saved_model" / "saved_model.pb").write_text("old graph")
    (folder / "notes.txt").write_text("the user's notes")
    (folder / "data").mkdir()
    (folder / "data" / "keep.bin").write_bytes(b"\x00\x01")


def contents(folder):
    """Every file under `folder` (hidden ones included) with its text."""
    return {str(p.relative_to(folder)): p.read_bytes().decode("latin-1")
            for p in sorted(folder.rglob("*")) if p.is_file()}


def state(folder):
    """("old"|"new"|None, "old"|"new"|None) of model.keras and saved_model."""
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


@pytest.mark.parametrize("entries, old_has_saved_model", [
    ("model.keras,saved_model", True),   # TensorFlow export over a TensorFlow export
    ("model.keras,saved_model", False),  # over a JAX export
    ("model.keras", True),               # JAX export over a TensorFlow export
])
def test_a_kill_at_every_step_loses_nothing(tmp_path, entries, old_has_saved_model):
    clean = tmp_path / "clean"
    old_export(clean, old_has_saved_model)
    result = fault(clean, 0, entries)
    assert result.returncode == 0, result.stderr
    steps = int(result.stdout)
    new = ("new", "new" if "saved_model" in entries else None)
    old = ("old", "old" if old_has_saved_model else None)
    assert state(clean) == new and steps >= 6
    user_files_intact(clean)
    assert sorted(p.name for p in clean.iterdir()) == sorted(
        ["model.keras", "notes.txt", "data"] + (["saved_model"] if new[1] else []))

    old_texts = {"old model"} | ({"old graph"} if old[1] else set())
    new_texts = {"new model"} | ({"new graph"} if new[1] else set())
    outcomes = set()
    for kill_at in range(1, steps + 1):
        folder = tmp_path / f"kill{kill_at}"
        old_export(folder, old_has_saved_model)
        result = fault(folder, kill_at, entries)
        assert result.returncode == -9, (kill_at, result.stderr)
        user_files_intact(folder)
        # At the kill: the whole old or the whole new export is on disk (in
        # place or in a hidden folder of the journal).
        texts = set(contents(folder).values())
        assert old_texts <= texts or new_texts <= texts, (kill_at, texts)
        # The next run recovers: all old or all new, nothing left behind.
        export.recover(folder)
        outcomes.add(state(folder))
        assert state(folder) in (old, new), (kill_at, state(folder))
        user_files_intact(folder)
        assert not [p.name for p in folder.iterdir() if p.name.startswith(".gpuaug")], kill_at
    assert outcomes == {old, new}  # the kills fell on both sides of the commit


def test_export_keeps_other_files_and_replaces_only_its_own(tmp_path):
    folder = tmp_path / "export"
    old_export(folder)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    train.export_model(model, folder)
    user_files_intact(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["data", "model.keras", "notes.txt", "saved_model"]
    assert (folder / "saved_model" / "saved_model.pb").stat().st_size > 1000  # a real SavedModel
    keras.models.load_model(folder / "model.keras")


@pytest.mark.parametrize("make, name", [
    (lambda d: (d / "model.keras").mkdir(), "model.keras"),
    (lambda d: (d / "saved_model").write_text("a user's file"), "saved_model"),
    (lambda d: ((d / "saved_model").mkdir(), (d / "saved_model" / "mine.txt").write_text("x")), "saved_model"),
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
    assert sorted(p.name for p in work.iterdir()) == ["model.keras", "notes.txt", "saved_model", "src"]


def test_the_next_run_finishes_an_interrupted_export(tmp_path):
    """A run killed after its new export was complete (journal step 2) left
    it in the ready folder: train.py's next run installs it before training
    and says so, then writes its own."""
    folder = tmp_path / "export"
    old_export(folder)
    ready = folder / export.READY
    (ready / "saved_model").mkdir(parents=True)
    (ready / "saved_model" / "saved_model.pb").write_text("new graph")
    (ready / "model.keras").write_text("new model")
    (ready / export.MANIFEST).write_text("model.keras\nsaved_model\n")
    result = run_cli(*QUICK, "--export", str(folder))
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert out.index("finished installing the export of an interrupted run") < out.index("training on")
    user_files_intact(folder)
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".gpuaug")]
    keras.models.load_model(folder / "model.keras")  # and then this run's own export
