"""Shared fixtures and checks: the real CIFAR-10 files in ../shared, train.py
run as a user runs it, its one-line errors."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("GPUAUG_SHARED", REPO.parent / "shared"))
CIFAR_DIR = SHARED / "data" / "cifar10-mini" / "cifar-10-batches-py"


@pytest.fixture(scope="session")
def cifar_test_images():
    """The first 64 real CIFAR-10 test images, float32 0..255, (N, 32, 32, 3)."""
    from gpuaug.cifar import read_batch

    path = CIFAR_DIR / "test_batch"
    if not path.exists():
        pytest.fail(
            f"{path} not found: the tests read the CIFAR-10 subset from "
            "../shared beside the repository (or set GPUAUG_SHARED)."
        )
    images, _ = read_batch(path)
    return images[:64].astype("float32")


def run_cli(*args, cwd=REPO, env=None, timeout=300):
    """`python train.py ARGS` in a fresh interpreter (from `cwd`, with the
    repository importable); the CompletedProcess, output captured as text."""
    env = dict(os.environ if env is None else env)
    env.setdefault("PYTHONPATH", str(REPO))
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result, *fragments):
    """train.py's contract for a problem the user can fix: exit status 2,
    one `train.py: error:` line holding every fragment, no traceback."""
    assert result.returncode == 2, result.stdout[-1000:] + result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("train.py")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def run_python(code, backend="tensorflow", timeout=300, env=None):
    """`python -c CODE` in a fresh interpreter under KERAS_BACKEND=backend
    (JAX on the CPU), with the repository importable."""
    env = dict(os.environ if env is None else env, KERAS_BACKEND=backend, PYTHONPATH=str(REPO))
    env.setdefault("JAX_PLATFORMS", "cpu")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
