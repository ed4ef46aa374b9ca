"""A data file must never run code: CIFAR-10 batches are pickles, read with an
allow-list (gpuaug.cifar), from a folder, an archive, the download and the
preview alike; archives are read in memory, never extracted; no model is
loaded with Keras' safe_mode off."""

import ast
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

import train
from conftest import CIFAR_DIR, REPO, assert_one_line_error, run_cli
from gpuaug import cifar
from models.data import DataError, load_data


class Payload:
    """What an attacker pickles: unpickling calls `function(*arguments)`."""

    def __init__(self, function, *arguments):
        self.function, self.arguments = function, arguments

    def __reduce__(self):
        return self.function, self.arguments


def payloads(marker):
    """Pickled batches that would create `marker` if they ran, each its own way."""
    command = f"touch {marker}"
    real = pickle.loads((CIFAR_DIR / "test_batch").read_bytes(), encoding="bytes")
    return {
        "os.system": pickle.dumps(Payload(os.system, command)),
        "inside a real batch": pickle.dumps({**real, b"labels": Payload(os.system, command)}),
        "builtins.exec": pickle.dumps(Payload(exec, f"open({str(marker)!r}, 'w').close()")),
        "object array": pickle.dumps({b"data": np.array([Payload(os.system, command)], dtype=object),
                                      b"labels": [0]}),
        "protocol 0": pickle.dumps(Payload(os.system, command), protocol=0),
    }


def batches_folder(root, name, raw):
    """A cifar-10-batches-py/ with the real batches, `name` replaced by `raw`."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for real in ("data_batch_1", "test_batch", "batches.meta"):
        (folder / real).write_bytes((CIFAR_DIR / real).read_bytes())
    (folder / name).write_bytes(raw)
    return folder


@pytest.mark.parametrize("kind", ["os.system", "inside a real batch", "builtins.exec", "object array",
                                  "protocol 0"])
def test_a_crafted_batch_is_refused_and_runs_nothing(tmp_path, kind):
    marker = tmp_path / "ran"
    raw = payloads(marker)[kind]
    with pytest.raises(pickle.UnpicklingError):
        cifar.loads_batch(raw)
    assert not marker.exists()
    pickle.loads(raw, encoding="bytes")  # the payload is live: pickle.loads (Keras' load_batch's) runs it
    assert marker.exists()
    marker.unlink()
    folder = batches_folder(tmp_path / "data", "data_batch_1", raw)
    with pytest.raises(DataError, match=r"refused CIFAR-10 batch .*data_batch_1: .*nothing in it was run"):
        load_data(str(folder))
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("where", ["folder", "archive", "archive inside the folder"])
def test_train_py_refuses_a_crafted_batch_in_one_line_before_it_runs(tmp_path, where):
    marker = tmp_path / "ran"
    folder = batches_folder(tmp_path / "data", "test_batch", payloads(marker)["os.system"])
    data = folder
    if where != "folder":
        archive = tmp_path / ("data" if where.endswith("folder") else "") / "cifar-10-python.tar.gz"
        if where.endswith("folder"):
            for path in folder.iterdir():
                path.unlink()
            folder.rmdir()
            source = batches_folder(tmp_path / "staging", "test_batch", payloads(marker)["os.system"])
        else:
            source = folder
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(source, arcname="cifar-10-batches-py")
        data = archive if where == "archive" else tmp_path / "data"
    result = run_cli("--data-dir", str(data), "--epochs", "1")
    assert_one_line_error(result, "refused CIFAR-10 batch", "test_batch", "never holds")
    assert not marker.exists()


def test_the_real_batches_load_as_pickle_loads_them(tmp_path):
    """Byte for byte what pickle.loads gives, for every file of the shared
    subset, and for batches re-pickled with protocols 2 (Python 3 spells bytes
    with _codecs.encode there) to 5."""
    for path in sorted(CIFAR_DIR.iterdir()):
        raw = path.read_bytes()
        expected = pickle.loads(raw, encoding="bytes")
        loaded = cifar.loads_batch(raw)
        assert loaded.keys() == expected.keys()
        for key, value in expected.items():
            if isinstance(value, np.ndarray):
                assert loaded[key].dtype == value.dtype and np.array_equal(loaded[key], value)
            else:
                assert loaded[key] == value, (path.name, key)
        for protocol in (2, 3, 4, 5):
            again = cifar.loads_batch(pickle.dumps(expected, protocol=protocol))
            assert np.array_equal(again.get(b"data", np.zeros(0)), expected.get(b"data", np.zeros(0)))
    (x_train, y_train), (x_test, y_test) = load_data(str(CIFAR_DIR))
    real = pickle.loads((CIFAR_DIR / "data_batch_1").read_bytes(), encoding="bytes")
    np.testing.assert_array_equal(x_train, real[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(y_train, real[b"labels"])


def test_the_download_and_the_preview_read_with_the_allow_list(tmp_path, monkeypatch):
    """No --data-dir: the batches Keras downloads are read by gpuaug.cifar
    too (the download replaced by a folder: the tests have no network)."""
    from gpuaug import preview

    marker = tmp_path / "ran"
    folder = batches_folder(tmp_path / "downloaded", "data_batch_1", payloads(marker)["os.system"])
    monkeypatch.setattr(cifar, "download", lambda: folder)
    with pytest.raises(DataError, match="refused CIFAR-10 batch"):
        train.run(train.parse_args(["--epochs", "1"]))
    (folder / "data_batch_1").write_bytes((CIFAR_DIR / "data_batch_1").read_bytes())
    (folder / "test_batch").write_bytes(payloads(marker)["builtins.exec"])
    with pytest.raises(cifar.UnsafeBatch):
        preview.load_images(None, 4)
    with pytest.raises(cifar.UnsafeBatch):
        preview.load_images(str(folder.parent), 4)
    assert not marker.exists()


def test_archive_members_are_read_in_memory_never_extracted(tmp_path):
    """A member named ../../escaped/data_batch_1 writes nothing anywhere (it
    is read in memory, by its base name); a symbolic-link member is not a
    batch, so it is never followed."""
    archive = tmp_path / "cifar-10-python.tar.gz"
    secret = tmp_path / "secret"
    secret.write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}))
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("data_batch_1", "test_batch"):
            raw = (CIFAR_DIR / name).read_bytes()
            info = tarfile.TarInfo(f"../../escaped/{name}" if name == "data_batch_1" else f"batches/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
        link = tarfile.TarInfo("batches/data_batch_2")
        link.type, link.linkname = tarfile.SYMTYPE, str(secret)
        tar.addfile(link)
    (x_train, _), _ = load_data(str(archive))
    assert len(x_train) == 5000  # data_batch_1 only: the link member was not read
    assert not (tmp_path.parent.parent / "escaped").exists() and not (tmp_path / "escaped").exists()


def unsafe_calls(path):
    """Calls in a source file that turn Keras' safe_mode off."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", getattr(node.func, "id", ""))
        off = any(k.arg == "safe_mode" and isinstance(k.value, ast.Constant) and k.value.value is False
                  for k in node.keywords)
        if off or name == "enable_unsafe_deserialization":
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_model_is_loaded_with_keras_safe_mode_off():
    """Keras' safe_mode refuses a .keras file whose Lambda layers would run
    arbitrary code: no code of the project turns it off (the tests' own
    loads included; a warning may tell a user how to)."""
    sources = [REPO / "train.py", *sorted((REPO / "gpuaug").glob("*.py")), *sorted((REPO / "models").glob("*.py")),
               *sorted((REPO / "benchmarks").glob("*.py"))]
    assert [call for path in sources for call in unsafe_calls(path)] == []

def test_the_safe_mode_check_finds_a_call_that_turns_it_off(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import keras\nkeras.models.load_model('m.keras', safe_mode=False)\n")
    assert unsafe_calls(probe) == ["probe.py:2"]
