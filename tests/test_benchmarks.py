"""The benchmark scripts run, and what they write (and what is committed
under benchmarks/results/) names no machine's absolute paths."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

from benchmarks import epoch_time, parity, peers, repo_relative
from conftest import CIFAR_DIR, REPO

RESULTS = REPO / "benchmarks" / "results"


def strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


def assert_no_absolute_path(report):
    for text in strings(report):
        assert not text.startswith(("/", "~")) and str(REPO.parent) not in text, text


def test_repo_relative(tmp_path):
    assert repo_relative(REPO / "benchmarks" / "results") == "benchmarks/results"
    # Where ../shared really is (it may be a symbolic link to elsewhere), from the repository.
    expected = pathlib.Path(os.path.relpath(CIFAR_DIR.parent.resolve(), REPO.resolve())).as_posix()
    assert repo_relative(CIFAR_DIR.parent) == expected
    assert repo_relative("benchmarks/results") == "benchmarks/results"  # relative: kept
    # A folder reached through a symbolic link is recorded where it really is.
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    assert repo_relative(tmp_path / "link") == repo_relative(tmp_path / "target")


def test_committed_results_record_no_absolute_path():
    reports = sorted(RESULTS.glob("*.json"))
    assert {p.name for p in reports} >= {"parity.json", "epoch_time-tensorflow.json",
                                         "throughput-tensorflow.json"}
    for path in reports:
        assert_no_absolute_path(json.loads(path.read_text()))


def test_committed_parity_report_has_no_mismatch():
    report = json.loads((RESULTS / "parity.json").read_text())
    assert len(report["rows"]) == 8  # 4 fill modes x 2 orders
    for row in report["rows"]:
        assert row["mismatch_fraction"] == 0 and row["worst_max_abs_diff"] < 1e-3, row


def test_parity_report_writes_relative_paths(tmp_path, capsys):
    out = tmp_path / "parity.json"
    parity.main(["--images", "4", "--data-dir", str(CIFAR_DIR.parent), "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["data_dir"] == repo_relative(CIFAR_DIR.parent) and not report["data_dir"].startswith("/")
    assert_no_absolute_path(report)
    assert all(row["mismatch_fraction"] == 0 for row in report["rows"])


@pytest.mark.slow
def test_epoch_time_writes_relative_paths(tmp_path, capsys):
    epoch_time.main(["--regimes", "tiny", "--epochs", "1", "--limit", "64", "--batch-size", "32",
                     "--data-dir", str(CIFAR_DIR.parent), "--out", str(tmp_path)])
    report = json.loads(next(tmp_path.glob("epoch_time-*.json")).read_text())
    assert report["args"]["data_dir"] == repo_relative(CIFAR_DIR.parent)
    assert_no_absolute_path(report)
    assert [row["augment"] for row in report["rows"]] == ["none", "generator", "gpu"]
    assert next(tmp_path.glob("epoch_time-*.png")).stat().st_size > 0


@pytest.mark.slow
def test_peers_quick_run_reports_every_backend_and_contender(tmp_path):
    """`python -m benchmarks.peers --quick`: every backend, a row for every
    contender (a rate, or a status with its reason), the ratios, the fit and
    the picture. torch is in .venv; without it its rows say so."""
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-m", "benchmarks.peers", "--quick", "--out", str(tmp_path)], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "peers.json").read_text())
    assert_no_absolute_path(report)
    assert report["quick"] and report["repeats"] == 1 and report["settings"] == peers.COMMON
    assert set(report["capabilities"]) >= {"gpuaug", "ImageDataGenerator", "Keras 3 layers", "keras-aug", "augmax",
                                           "dm_pix", "Kornia", "torchvision"}
    for library, features in report["capabilities"].items():
        assert set(report["features"]) <= set(features), library
    assert list(report["backends"]) == list(peers.BACKENDS)
    for backend, entry in report["backends"].items():
        installed = importlib.util.find_spec(backend) is not None
        assert entry["status"] == ("ok" if installed else "not installed"), (backend, entry["reason"])
        assert [s["size"] for s in entry["sizes"]] == list(peers.QUICK.sizes)
        for section in entry["sizes"]:
            rows = section["rows"]
            assert [r["contender"] for r in rows] == [c.name for c in peers.CONTENDERS[backend]]
            for row in rows:
                if row["status"] == "ok":
                    assert row["images_per_second"] > 0 and row["gpuaug_best_over_this"] > 0, row
                else:
                    assert row["images_per_second"] is None and row["reason"], row
            summary = section["summary"]
            if installed:
                assert summary["gpuaug_best"].startswith("gpuaug") and summary["gpuaug_over_fastest_peer"] > 0
                assert summary["fastest_peer"] in [r["contender"] for r in rows if r["kind"] == "peer"]
        fit = entry["in_fit"]["rows"]
        assert [r["augment"] for r in fit] == [v for v, _, _ in peers.FIT_VARIANTS]
        for row in fit:
            assert (row["vs_none"] > 0 and isinstance(row["jit_compile"], bool)) if row["status"] == "ok" \
                else row["reason"], row
    tensorflow, torch = report["backends"]["tensorflow"], report["backends"]["torch"]
    if tensorflow["status"] == "ok":
        tf_rows = {r["contender"]: r for r in tensorflow["sizes"][0]["rows"]}
        assert tf_rows["ImageDataGenerator.flow (CPU reference)"]["status"] == "ok"
        assert tensorflow["sizes"][0]["summary"]["gpuaug_over_reference"] > 0
        # Keras' RandomRotation turns XLA off for the whole model: recorded as such.
        keras_fit = next(r for r in tensorflow["in_fit"]["rows"] if r["augment"].startswith("Keras"))
        assert keras_fit["jit_compile"] is False
    if torch["status"] == "ok":
        torch_rows = {r["contender"]: r for r in torch["sizes"][0]["rows"]}
        vision = torch_rows["torchvision transforms.v2, one call per image"]
        assert vision["status"] == "ok" or (vision["status"] == "not installed" and "torch 2.13.0" in vision["reason"])
        # --quick compiles nothing; a peer not installed (CI installs no peers) says that first.
        assert all((r["status"] == "skipped" and "--quick" in r["reason"])
                   or (r["status"] == "not installed" and r["library"] != "gpuaug")
                   for name, r in torch_rows.items() if "torch.compile" in name)
        assert torch_rows["gpuaug RandomTransform (torch.compile)"]["status"] == "skipped"
    assert (tmp_path / "peers.png").stat().st_size > 0
    assert "gpuaug best / fastest peer" in result.stdout
