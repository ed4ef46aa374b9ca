"""benchmarks.peers as a user runs it: its outputs, its errors and its
interrupts, with workers that stand in for the real ones (the real run is
tests/test_benchmarks.py's --quick test)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO

# A harness: benchmarks.peers' main, with each backend's worker replaced by
# WORKER_CODE (given its arguments: --worker BACKEND --result PATH).
HARNESS = """
import json, os, sys
from benchmarks import peers
peers.WORKER = ("-c", os.environ["WORKER_CODE"])
sys.exit(peers.main(sys.argv[1:]))
"""
# Writes an empty but complete result, or, with HANG, its pid and then sleeps.
FAKE_WORKER = """
import json, os, sys, time
backend, result = sys.argv[sys.argv.index("--worker") + 1], sys.argv[sys.argv.index("--result") + 1]
if os.environ.get("BROKEN") == backend:
    raise ImportError("no module named " + backend + " (a broken install)")
if os.environ.get("HANG"):
    with open(os.path.join(os.environ["HANG"], backend + ".pid"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(600)
json.dump({"backend": backend, "status": "ok", "reason": None, "versions": {}, "sizes": [],
           "in_fit": {"rows": []}}, open(result, "w"))
"""


def start(tmp_path, *args, **env):
    harness = tmp_path / "harness.py"
    harness.write_text(HARNESS)
    environment = dict(os.environ, PYTHONPATH=str(REPO), WORKER_CODE=FAKE_WORKER, **env)
    return subprocess.Popen([sys.executable, str(harness), *args], cwd=REPO, env=environment, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def run(tmp_path, *args, timeout=120, **env):
    process = start(tmp_path, *args, **env)
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def one_line(stderr):
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr[-3000:]
    return lines[-1]


@pytest.mark.slow
def test_an_unusable_out_is_one_error_line(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for out in (a_file, a_file / "below", tmp_path / "dangling"):
        status, _, stderr = run(tmp_path, "--quick", "--out", str(out))
        assert status == 2 and one_line(stderr).startswith("harness.py: error: --out "), stderr
    assert a_file.read_text() == "mine"


@pytest.mark.slow
@pytest.mark.parametrize("content", [None, "not json{", "[1, 2]", '{"benchmark": "something else"}',
                                     '{"benchmark": "peers", "backends": {"tensorflow": {}}}'])
def test_plot_only_without_a_report_is_one_line_and_keeps_the_picture(tmp_path, content):
    out = tmp_path / "out"
    out.mkdir()
    if content is not None:
        (out / "peers.json").write_text(content)
    (out / "peers.png").write_bytes(b"an earlier picture")
    status, _, stderr = run(tmp_path, "--plot-only", "--out", str(out))
    assert status == 2 and "error: --out" in one_line(stderr), stderr
    assert (out / "peers.png").read_bytes() == b"an earlier picture"


@pytest.mark.slow
def test_files_a_user_wrote_are_never_replaced_or_removed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "peers.json").write_text('{"mine": "my own notes"}')
    status, _, stderr = run(tmp_path, "--quick", "--out", str(out))
    assert status == 2 and "peers.json there is not a benchmarks.peers report" in one_line(stderr)
    (out / "peers.json").unlink()
    (out / "peers.png").write_bytes(b"my picture")
    status, _, stderr = run(tmp_path, "--quick", "--out", str(out))
    assert status == 2 and "peers.png there does not come with" in one_line(stderr)
    assert (out / "peers.png").read_bytes() == b"my picture"
    (out / "peers.png").unlink()
    # Files of the names the workers once used, and others, survive a run.
    for name in (".peers-jax.json", ".peers-torch.json", "notes.txt"):
        (out / name).write_text('{"user": 1}')
    status, stdout, stderr = run(tmp_path, "--quick", "--out", str(out))
    assert status == 0, stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [".peers-jax.json", ".peers-torch.json", "notes.txt",
                                                     "peers.json", "peers.png"]
    assert all((out / name).read_text() == '{"user": 1}' for name in (".peers-jax.json", "notes.txt"))
    # A second run replaces its own report and picture, with the umask's permissions (not mkstemp's 0o600).
    status, _, stderr = run(tmp_path, "--quick", "--out", str(out))
    assert status == 0 and json.loads((out / "peers.json").read_text())["benchmark"] == "peers"
    umask = os.umask(0)
    os.umask(umask)
    for name in ("peers.json", "peers.png"):
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


@pytest.mark.slow
def test_a_broken_backend_is_its_rows_with_the_reason(tmp_path):
    out = tmp_path / "out"
    status, stdout, stderr = run(tmp_path, "--quick", "--out", str(out), BROKEN="torch")
    assert status == 0, stderr[-3000:]
    assert "Traceback" not in stdout + stderr
    torch = json.loads((out / "peers.json").read_text())["backends"]["torch"]
    expected = "its worker exited with status 1: ImportError: no module named torch (a broken install)"
    assert torch["status"] == "failed" and torch["reason"] == expected
    assert all(row["reason"] == expected for section in torch["sizes"] for row in section["rows"])


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is not alive
        return stat.read().split()[2] != "Z"


def wait_for_workers(tmp_path, count=3, seconds=60):
    give_up = time.time() + seconds
    while time.time() < give_up:
        pids = list(tmp_path.glob("*.pid"))
        if len(pids) == count and all(p.read_text() for p in pids):
            return [int(p.read_text()) for p in pids]
        time.sleep(0.1)
    raise AssertionError("the workers did not start")


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_an_interrupt_stops_every_worker_and_leaves_nothing(tmp_path, signal_name):
    out = tmp_path / "out"
    process = start(tmp_path, "--quick", "--out", str(out), HANG=str(tmp_path))
    try:
        workers = wait_for_workers(tmp_path)
        if signal_name == "SIGTERM":
            process.send_signal(signal.SIGTERM)
        else:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the workers get it too
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signal.Signals[signal_name].value, stderr[-3000:]
    assert one_line(stderr) == f"peers: interrupted ({signal_name}): the workers were stopped, nothing was written"
    time.sleep(0.5)
    assert not any(alive(pid) for pid in workers)
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_a_second_run_on_the_same_out_is_refused(tmp_path):
    out = tmp_path / "out"
    first = start(tmp_path, "--quick", "--out", str(out), HANG=str(tmp_path))
    try:
        wait_for_workers(tmp_path)
        status, _, stderr = run(tmp_path, "--quick", "--out", str(out))
        assert status == 2 and one_line(stderr).endswith("another benchmarks.peers run is writing there")
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)


def test_a_report_that_cannot_be_written_is_one_line_and_keeps_the_earlier_one(tmp_path, monkeypatch, capsys):
    from benchmarks import peers

    out = tmp_path / "out"
    out.mkdir()
    earlier = {"benchmark": "peers", "earlier": True}
    (out / "peers.json").write_text(json.dumps(earlier))
    monkeypatch.setattr(peers, "run", lambda config, out, quick: {"benchmark": "peers"})

    def full_disk(data, file, *args, **kwargs):
        file.write('{"benchmark": "pe')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", full_disk)
    assert peers.main(["--quick", "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip() == f"peers: could not write {out / 'peers.json'}: No space left on device"
    assert json.loads((out / "peers.json").read_text()) == earlier  # written beside it, never in place
    assert sorted(p.name for p in out.iterdir()) == ["peers.json"]
