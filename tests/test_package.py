"""The installable package: the wheel built from the checkout holds the library
only, and installed into a fresh environment outside the repository (as the
README says, from the repository's URL) it imports and works."""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

import gpuaug
from conftest import REPO

WORKS = r'''
import os, sys
import numpy as np
import keras, gpuaug
assert gpuaug.__version__ == sys.argv[1], gpuaug.__version__
assert os.path.dirname(gpuaug.__file__).endswith(os.path.join("site-packages", "gpuaug")), gpuaug.__file__
inputs = keras.Input((16, 16, 3))
x = gpuaug.RandomTransform(rotation_range=10, horizontal_flip=True, seed=0)(inputs)
for layer in gpuaug.from_image_data_generator(dict(width_shift_range=0.1, rescale=1 / 255.0), seed=1):
    x = layer(x)
model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
images = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
model.save("model.keras")
again = keras.models.load_model("model.keras")
np.testing.assert_allclose(again.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-6)
print("works with", keras.backend.backend())
'''


def build_wheel(folder):
    """The wheel of a clean copy of the source tree: pip builds in the tree it
    is given (build/, *.egg-info), so the checkout is neither written to nor
    read for what an earlier build left there."""
    source = pathlib.Path(folder) / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".device", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                             str(folder), str(source)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (wheel,) = pathlib.Path(folder).glob("gpuaug-*.whl")
    return wheel


@pytest.mark.slow
def test_the_wheel_holds_the_library_and_its_metadata_only(tmp_path):
    wheel = build_wheel(tmp_path)
    assert wheel.name == f"gpuaug-{gpuaug.__version__}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    assert all(n.startswith(("gpuaug/", f"gpuaug-{gpuaug.__version__}.dist-info/")) for n in names), names
    library = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "gpuaug").glob("*.py"))
    assert sorted(n for n in names if n.startswith("gpuaug/")) == library
    metadata = zipfile.ZipFile(wheel).read(f"gpuaug-{gpuaug.__version__}.dist-info/METADATA").decode()
    assert "Requires-Dist: keras<3.16,>=3.15.1" in metadata and 'extra == "jax"' in metadata
    assert "# gpuaug" in metadata  # the README is the long description
    assert "License-Expression: Apache-2.0" in metadata
    print(f"{wheel.name}: {wheel.stat().st_size:,} bytes, {len(names)} files")


def test_one_version_and_the_readmes_extras_exist():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["dynamic"] == ["version"] and "version" not in project
    extras = set(project["optional-dependencies"])
    readme = (REPO / "README.md").read_text()
    for named in re.findall(r'pip install "?(?:\.|gpuaug)\[(\w+)\]', readme):
        assert named in extras, named
    assert {"tensorflow", "jax", "reference", "test"} <= extras


def interpreters():
    """This Python, and 3.12 where the machine has it (the range pyproject.toml
    promises: >= 3.11, < 3.13)."""
    found = [pytest.param(sys.executable, id=f"python{sys.version_info.major}.{sys.version_info.minor}")]
    if sys.version_info[:2] == (3, 12):
        return found
    for candidate in ("/root/.pyenv/versions/3.12.1/bin/python3.12", "python3.12"):
        path = shutil.which(candidate) or (candidate if os.path.exists(candidate) else None)
        # A pyenv shim is found even where it has no 3.12 to run: ask the interpreter.
        if path and subprocess.run([path, "-c", "import venv"], capture_output=True).returncode == 0:
            found.append(pytest.param(path, id="python3.12"))
            break
    return found


@pytest.mark.slow
@pytest.mark.parametrize("interpreter", interpreters())
def test_installed_from_the_repository_url_in_a_fresh_environment(tmp_path, interpreter):
    """`pip install "gpuaug[jax] @ git+URL"` (here the checkout's file:// URL:
    its committed state) into a new virtual environment, then the layer used,
    saved and reloaded from a folder outside the repository."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    environment = tmp_path / "venv"
    subprocess.run([interpreter, "-m", "venv", str(environment)], check=True)
    python = environment / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], capture_output=True,
                   timeout=600)
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"gpuaug[jax] @ git+file://{REPO}"],
                             capture_output=True, text=True, timeout=1200)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    result = subprocess.run([str(python), "-c", WORKS, gpuaug.__version__], cwd=work, capture_output=True,
                            text=True, timeout=600,
                            env={k: v for k, v in dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu").items()
                                 if k != "PYTHONPATH"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "works with jax" in result.stdout
