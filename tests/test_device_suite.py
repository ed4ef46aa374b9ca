"""benchmarks.device_suite --smoke: the GPU command's every code path, run
on the CPU with tiny sizes, so that the one prepared GPU run cannot be the
first time it runs."""

import importlib.util
import json
import os
import subprocess
import sys

from conftest import CIFAR_DIR, REPO


def test_the_smoke_run_reaches_every_part_and_writes_its_report(tmp_path):
    out = tmp_path / "device"
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-m", "benchmarks.device_suite", "--smoke", "--out", str(out),
                             "--data-dir", str(CIFAR_DIR)], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "device_suite.json").read_text())
    assert (out / "device_suite.png").stat().st_size > 10_000
    assert report["smoke"] is True and report["seconds"] <= report["budget_seconds"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".stage")]  # the workers' files merged
    stages = report["stages"]
    assert [stage["backend"] for stage in stages] == ["jax", "torch", "jax"]
    torch_installed = importlib.util.find_spec("torch") is not None
    ran = [stage for stage in stages if "skipped" not in stage]
    assert len(ran) == (3 if torch_installed else 2)
    if not torch_installed:
        assert stages[1]["skipped"] == "torch is not installed"
    for stage in ran:
        assert stage["exit_status"] == 0
        for part in stage["parts"]:
            entry = stage["parts"][part]
            assert "skipped" not in entry and "error" not in entry, (stage["backend"], part, entry)
    environment = stages[0]["parts"]["environment"]
    assert environment["keras_check"]["ok"] and "runs with jax" in environment["keras_check"]["message"]
    assert environment["keras_check"]["message"] in result.stdout  # the suite says it
    parity = stages[0]["parts"]["parity"]["rows"]
    assert len(parity) == 8 and all(row["mismatch_fraction"] == 0 for row in parity)
    rows = stages[0]["parts"]["throughput"]["rows"]
    measured = {row["contender"] for row in rows if row.get("images_per_second")}
    assert {"device copy (bandwidth reference)", "gpuaug RandomTransform (jit)",
            "Keras 3 RandomRotation + RandomFlip (jit)", "gpuaug, ImageDataGenerator's settings (jit)"} <= measured
    assert all(row.get("bandwidth_vs_copy") for row in rows if row.get("images_per_second"))
    for row in rows:  # a peer that is missing is a line, not a failure
        if row["contender"].startswith("augmax") and importlib.util.find_spec("augmax") is None:
            assert row["skipped"] == "skipped: augmax is not installed"
    fit = stages[2]["parts"]["in_fit"]["rows"]
    assert {row["augment"] for row in fit} == {"none", "gpu", "generator"}
    assert all(row["epoch_seconds"] > 0 for row in fit) and fit[0]["vs_none"] == 1.0
    transfer = stages[2]["parts"]["transfer"]
    assert [row["dtype"] for row in transfer["rows"]] == ["uint8", "float32"]
    assert transfer["rows"][1]["bytes_per_epoch"] == 4 * transfer["rows"][0]["bytes_per_epoch"]


def test_a_part_that_does_not_fit_in_the_time_left_is_skipped_with_a_line(tmp_path):
    from benchmarks.device_suite import Budget

    import time

    budget = Budget(time.time() + 5)
    assert budget.skip_reason(2) is None
    reason = budget.skip_reason(60)
    assert reason.startswith("skipped: needs about 60 s,") and reason.endswith("s left")
