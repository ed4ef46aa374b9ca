"""PyTorch's own resampling (`gpuaug.torch_warp`, what the layer runs on
PyTorch): the reference's pixels, and the `keras.ops` form's values, on the
torch backend (each run in its own interpreter: KERAS_BACKEND is read at
import). torch is in requirements-test.txt: these tests fail, not skip, where
it is missing."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


def torch_env():
    return dict(os.environ, KERAS_BACKEND="torch", PYTHONPATH=str(REPO))


@pytest.mark.slow
def test_the_reference_parity_suite_holds_on_pytorch():
    # tests/test_parity.py (every fill mode, order, key, the 1-D sweep with exact
    # equality, brightness's level rule) run as it is, on the torch backend.
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(REPO / "tests" / "test_parity.py")],
                            cwd=REPO, env=torch_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout and "skipped" not in result.stdout


def test_pytorchs_resampling_gives_the_keras_ops_forms_values():
    result = subprocess.run([sys.executable, str(REPO / "tests" / "torch_warp_script.py")],
                            cwd=REPO, env=torch_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["cases"] == 80  # 5 sizes (1x1 to 32x32) x affine / perspective+lens x 4 fill modes x 2 orders
    assert found["order_0_max"] == 0.0 and found["masks_max"] == 0.0  # gathers: the same values
    # Order 1: torch.lerp may round a blend's last bit otherwise (0..255 values: 1 ulp of 255 = 1.5e-5).
    assert found["order_1_max"] <= 1e-4 and found["chunked_max"] <= 1e-4
    assert found["past_2_24"] == [True, True]  # orders 0 and 1, a plane of 4100 x 4100 pixels
    assert found["empty_shape"] == [0, 5, 6, 3]
    assert found["nan_constant_is_cval"]
    assert found["gradient_max"] <= 1e-5
    assert found["layer_uses_it"]  # the layer's call runs it, and a convolution takes its view
