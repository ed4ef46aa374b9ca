"""The benchmark scripts run, and what they write (and what is committed
under benchmarks/results/) names no machine's absolute paths."""

import json
import os
import pathlib

from benchmarks import epoch_time, parity, repo_relative
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


def test_epoch_time_writes_relative_paths(tmp_path, capsys):
    epoch_time.main(["--regimes", "tiny", "--epochs", "1", "--limit", "64", "--batch-size", "32",
                     "--data-dir", str(CIFAR_DIR.parent), "--out", str(tmp_path)])
    report = json.loads(next(tmp_path.glob("epoch_time-*.json")).read_text())
    assert report["args"]["data_dir"] == repo_relative(CIFAR_DIR.parent)
    assert_no_absolute_path(report)
    assert [row["augment"] for row in report["rows"]] == ["none", "generator", "gpu"]
    assert next(tmp_path.glob("epoch_time-*.png")).stat().st_size > 0
