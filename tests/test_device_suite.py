"""benchmarks.device_suite --smoke: the GPU command's every code path, run
on the CPU with tiny sizes, so that the one prepared GPU run cannot be the
first time it runs."""

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import CIFAR_DIR, REPO

# The suite with test doubles, run as `python harness.py ARGS` (parent and
# workers alike: the parent starts its workers through it). TEST_SUITE (JSON)
# gives the stages and their shares; "hang" makes the third JAX contender
# sleep for an hour (after the copy and gpuaug are measured), so that a stage
# can be interrupted or run past its deadline while it has rows.
HARNESS = """
import dataclasses, json, os, sys, time

from benchmarks import device_suite as suite

plan = json.loads(os.environ["TEST_SUITE"])
suite.STAGES = tuple((backend, tuple(parts)) for backend, parts in plan["stages"])
suite.STAGE_SHARES = tuple(plan["shares"])
suite.SMOKE = dataclasses.replace(suite.SMOKE, sizes=(((8, 8), (4,)),))


def hang(images):
    time.sleep(3600)


if plan.get("hang"):
    suite.CONTENDERS = dict(suite.CONTENDERS, jax=suite.CONTENDERS["jax"][:2] + (("hangs", None, "contender", hang),))
suite.WORKER = (__file__,)
sys.exit(suite.main(sys.argv[1:]))
"""
MEASURED_BEFORE_THE_HANG = ["device copy (bandwidth reference)", "gpuaug RandomTransform (jit)"]


def start_harness(tmp_path, plan, *args, pythonpath=(), **popen):
    harness = tmp_path / "harness.py"
    harness.write_text(HARNESS)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *map(str, pythonpath)]), JAX_PLATFORMS="cpu",
               TEST_SUITE=json.dumps(plan))
    return subprocess.Popen([sys.executable, str(harness), "--smoke", "--data-dir", str(CIFAR_DIR), *args],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def measured(entry):
    return [row["contender"] for row in entry.get("rows", []) if row.get("images_per_second")]


def in_process_args(out, budget=60):
    return argparse.Namespace(out=str(out), smoke=True, budget=budget, data_dir=str(CIFAR_DIR))


@pytest.fixture
def one_stage(monkeypatch):
    """device_suite with one JAX stage whose worker exits at once with status 3."""
    from benchmarks import device_suite

    monkeypatch.setattr(device_suite, "STAGES", (("jax", ("transfer",)),))
    monkeypatch.setattr(device_suite, "STAGE_SHARES", (1.0,))
    monkeypatch.setattr(device_suite, "WORKER", ("-c", "import sys; sys.exit(3)"))
    return device_suite


@pytest.mark.slow
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
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # the workers' files merged, no temp files
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
    if torch_installed:  # torch.compile runs at the one tiny size SMOKE compiles (8x8, batch 4) and only there
        rows = stages[1]["parts"]["throughput"]["rows"]
        compiled = [row for row in rows if row["contender"] == "gpuaug RandomTransform (torch.compile)"]
        assert [row["size"] for row in compiled if row.get("images_per_second")] == ["8x8"], compiled
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


def test_smoke_compiles_one_tiny_size():
    from benchmarks.device_suite import SMOKE

    assert len(SMOKE.compiled_at) == 1
    (size, batch), = SMOKE.compiled_at
    assert any(size == shape and batch in batches for shape, batches in SMOKE.sizes)


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_an_interrupt_stops_the_worker_and_writes_what_finished(tmp_path, signal_name):
    """SIGTERM to the suite, or Ctrl-C (SIGINT to its process group), during
    its second stage: the first stage's tables, the second's rows so far, the
    third marked not run, one line, a non-zero exit."""
    out = tmp_path / "device"
    out.mkdir()
    (out / "device_suite.json").write_text(json.dumps({"benchmark": "device_suite", "stages": []}))  # an earlier run's
    (out / "device_suite.png").write_bytes(b"an earlier run's picture")
    plan = {"stages": [["jax", ["transfer"]], ["jax", ["throughput"]], ["jax", ["transfer"]]],
            "shares": [0.3, 0.4, 0.3], "hang": True}
    process = start_harness(tmp_path, plan, "--out", str(out), "--budget", "240", start_new_session=True)
    try:
        partial, give_up = out / ".stage-1.json", time.time() + 120
        while time.time() < give_up and process.poll() is None:
            try:
                if measured(json.loads(partial.read_text())["parts"]["throughput"]) == MEASURED_BEFORE_THE_HANG:
                    break
            except (FileNotFoundError, KeyError, ValueError):
                pass
            time.sleep(0.2)
        # Written after every stage: the first's tables are there before any signal.
        written = json.loads((out / "device_suite.json").read_text())["stages"]
        assert [row["dtype"] for row in written[0]["parts"]["transfer"]["rows"]] == ["uint8", "float32"]
        if signal_name == "SIGTERM":
            process.send_signal(signal.SIGTERM)  # the suite only
        else:
            os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the worker gets it too
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signal.Signals[signal_name].value, stdout[-2000:] + stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith(f"device_suite: interrupted ({signal_name}): wrote ")
    report = json.loads((out / "device_suite.json").read_text())
    assert report["interrupted"] == signal_name
    first, second, third = report["stages"]
    assert first["exit_status"] == 0 and [row["dtype"] for row in first["parts"]["transfer"]["rows"]] == [
        "uint8", "float32"]
    assert second["exit_status"] == f"interrupted ({signal_name})"
    assert second["parts"]["throughput"]["incomplete"] == f"interrupted ({signal_name})"
    assert measured(second["parts"]["throughput"]) == MEASURED_BEFORE_THE_HANG
    assert third["skipped"] == f"not run: the suite was interrupted ({signal_name})"
    assert third["parts"] == {"transfer": {"skipped": third["skipped"]}}
    assert not (out / "device_suite.png").exists()  # not this report's
    assert sorted(p.name for p in out.iterdir()) == ["device_suite.json"]


@pytest.mark.slow
def test_a_peer_that_fails_to_import_is_that_contenders_error_only(tmp_path):
    broken = tmp_path / "broken" / "augmax"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('broken on purpose')\n")
    out = tmp_path / "device"
    plan = {"stages": [["jax", ["environment", "throughput"]]], "shares": [1.0]}
    process = start_harness(tmp_path, plan, "--out", str(out), "--budget", "120", pythonpath=[broken.parent])
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stdout[-2000:] + stderr[-2000:]
    stage, = json.loads((out / "device_suite.json").read_text())["stages"]
    environment, throughput = stage["parts"]["environment"], stage["parts"]["throughput"]
    assert "error" not in environment and environment["keras_check"]["ok"]
    assert environment["peers"] == {"augmax": {"error": "ImportError: broken on purpose"}}
    assert "error" not in throughput
    augmax = [row for row in throughput["rows"] if row["contender"].startswith("augmax")]
    assert [row["error"] for row in augmax] == ["augmax does not import: ImportError: broken on purpose"]
    assert set(measured(throughput)) == {row["contender"] for row in throughput["rows"]} - {augmax[0]["contender"]}


def test_a_stale_stage_file_from_an_earlier_run_is_not_merged(tmp_path, one_stage):
    (tmp_path / ".stage-0.json").write_text(json.dumps(
        {"backend": "jax", "stale": True, "parts": {"transfer": {"rows": ["an earlier run's"]}}}))
    report = one_stage.run_stages(in_process_args(tmp_path), one_stage.SMOKE)
    stage, = report["stages"]
    assert stage["exit_status"] == 3 and "stale" not in stage
    assert stage["parts"] == {"transfer": {"error": "its worker exited with status 3 before it reported this part"}}
    assert not (tmp_path / ".stage-0.json").exists()


@pytest.mark.slow
def test_a_stage_past_its_deadline_keeps_its_rows_and_the_run_stays_within_the_budget(tmp_path):
    out, budget = tmp_path / "device", 20
    plan = {"stages": [["jax", ["throughput"]]], "shares": [1.0], "hang": True}
    start = time.time()
    process = start_harness(tmp_path, plan, "--out", str(out), "--budget", str(budget))
    stdout, stderr = process.communicate(timeout=budget + 60)
    wall = time.time() - start
    assert process.returncode == 0, stdout[-2000:] + stderr[-2000:]
    report = json.loads((out / "device_suite.json").read_text())
    assert report["seconds"] <= budget and wall <= budget + 5  # + this interpreter's start
    stage, = report["stages"]
    assert stage["exit_status"] == "killed: past its deadline"
    throughput = stage["parts"]["throughput"]
    assert throughput["incomplete"] == "killed: past its deadline"
    assert measured(throughput) == MEASURED_BEFORE_THE_HANG
    assert (out / "device_suite.png").is_file()  # what it measured is plotted


def test_nothing_to_plot_removes_an_earlier_runs_picture(tmp_path):
    from benchmarks.device_suite import plot

    picture = tmp_path / "device_suite.png"
    picture.write_bytes(b"an earlier run's picture")
    report = {"smoke": True, "stages": [{"backend": "jax", "parts": {"throughput": {"skipped": "skipped: ..."}}}]}
    assert plot(report, picture) is None
    assert not picture.exists()


@pytest.mark.parametrize("where", ["a file", "below a file"])
def test_an_unusable_out_is_one_error_line(tmp_path, capsys, where):
    from benchmarks.device_suite import main

    (tmp_path / "file").write_text("")
    out = tmp_path / "file" if where == "a file" else tmp_path / "file" / "device"
    with pytest.raises(SystemExit) as exit_:
        main(["--smoke", "--out", str(out), "--data-dir", str(CIFAR_DIR)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f": error: --out {out}: cannot write there (" in err.strip().splitlines()[-1]


def test_the_report_records_data_dir_relative_to_the_repository(tmp_path, one_stage):
    from benchmarks import repo_relative

    report = one_stage.run_stages(in_process_args(tmp_path), one_stage.SMOKE)
    assert report["data_dir"] == repo_relative(CIFAR_DIR) and not os.path.isabs(report["data_dir"])
    assert json.loads((tmp_path / "device_suite.json").read_text())["data_dir"] == report["data_dir"]


def test_files_a_user_wrote_in_out_are_never_replaced(tmp_path, capsys):
    from benchmarks.device_suite import main

    for name, content in (("device_suite.json", '{"mine": 1}'), ("device_suite.png", "my picture")):
        out = tmp_path / name.replace(".", "-")
        out.mkdir()
        (out / name).write_text(content)
        with pytest.raises(SystemExit) as exit_:
            main(["--smoke", "--out", str(out), "--data-dir", str(CIFAR_DIR)])
        assert exit_.value.code == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"error: --out {out}: {name} there " in line and "(not replaced: choose another --out)" in line
        assert (out / name).read_text() == content and sorted(p.name for p in out.iterdir()) == [name]
