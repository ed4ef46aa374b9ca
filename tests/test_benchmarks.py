"""The benchmark scripts run, and what they write (and what is committed
under benchmarks/results/) names no machine's absolute paths."""

import json

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


def test_repo_relative():
    assert repo_relative(REPO / "benchmarks" / "results") == "benchmarks/results"
    assert repo_relative(CIFAR_DIR.parent) == "../shared/data/cifar10-mini"
    assert repo_relative("benchmarks/results") == "benchmarks/results"  # relative: kept


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
    assert report["data_dir"] == "../shared/data/cifar10-mini"
    assert_no_absolute_path(report)
    assert all(row["mismatch_fraction"] == 0 for row in report["rows"])


def test_epoch_time_writes_relative_paths(tmp_path, capsys):
    epoch_time.main(["--regimes", "tiny", "--epochs", "1", "--limit", "64", "--batch-size", "32",
                     "--data-dir", str(CIFAR_DIR.parent), "--out", str(tmp_path)])
    report = json.loads(next(tmp_path.glob("epoch_time-*.json")).read_text())
    assert report["args"]["data_dir"] == "../shared/data/cifar10-mini"
    assert_no_absolute_path(report)
    assert [row["augment"] for row in report["rows"]] == ["none", "generator", "gpu"]
    assert next(tmp_path.glob("epoch_time-*.png")).stat().st_size > 0
