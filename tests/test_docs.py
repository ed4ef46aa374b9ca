"""Every code block of the README and docs/ runs as written.

Python blocks run in a fresh namespace with small fixtures for the names a block
leaves to the reader (`x_train`, `model`, a `data/train` folder, an export in
`exports/cifar10`), in a scratch working folder, with `fit` capped at one epoch.
Bash blocks: each train.py command runs with a short run's flags appended (the
CIFAR-10 subset, one epoch, 64 images: later flags win); `python -m` commands
run (a benchmark only parses its flags: `--help` is appended; another
script is found from the repository root and compiled); the set-up
commands (`python3 -m venv`, `pip install -r`, `pytest`) are what `.ci/run`
runs, and `pip install` of the package is tests/test_package.py's. A block
preceded by `<!-- not run: REASON -->` (a cluster of hosts) has its train.py
flags parsed only.
"""

import os
import re
import shlex
import subprocess
import sys

import keras
import numpy as np
import pytest

import train
from conftest import CIFAR_DIR, REPO
from folder_tools import write_image_folder

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!-- not run: (?P<reason>[^>]*?) -->\n)?```(?P<language>python|bash)\n(?P<code>.*?)```",
                   re.S)
SHORT_RUN = ["--data-dir", str(CIFAR_DIR), "--epochs", "1", "--limit", "64", "--verbose", "0"]


def code_blocks():
    for path in DOCS:
        text = path.read_text()
        for number, match in enumerate(BLOCK.finditer(text)):
            line = text[: match.start()].count("\n") + 1
            yield pytest.param(path, match["language"], match["code"], match["reason"],
                               id=f"{path.relative_to(REPO)}:{line}")


def commands(code):
    """The commands of a bash block: continuation lines joined, comments out."""
    joined = re.sub(r"\\\n\s*", " ", code)
    for line in joined.splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            yield line


def test_the_docs_have_code_blocks_and_no_placeholders():
    names = [p.name for p in DOCS]
    assert {"README.md", "reference.md", "train.md", "scale-out.md", "benchmarks.md", "tests.md"} <= set(names)
    assert len(list(code_blocks())) >= 15
    for path in DOCS:
        assert "{{" not in path.read_text(), f"{path}: a figure left to fill in"


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A working folder with the files the blocks name, and fit capped at one epoch."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    write_image_folder(tmp_path / "data" / "train", rng.integers(0, 256, (24, 70, 60, 3), dtype=np.uint8),
                       [i % 3 for i in range(24)])
    fit = keras.Model.fit

    def one_epoch(self, *args, **kwargs):
        kwargs["epochs"] = 1
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", one_epoch)
    return tmp_path


def fixtures(code, folder):
    """The names a block uses without defining them."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (64, 32, 32, 3)).astype("float32")
    names = {"x_train": images, "y_train": rng.integers(0, 10, 64)}
    if "segmentation_masks" in code or "interpolation_order=0" in code:  # a segmenter and its masks
        inputs = keras.Input((32, 32, 3))
        names["model"] = keras.Model(inputs, keras.layers.Conv2D(3, 1, activation="softmax")(
            keras.layers.Rescaling(1 / 255.0)(inputs)))
        names["model"].compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        names.update(x=images, y=rng.integers(0, 3, (64, 32, 32, 1)))
    else:
        inputs = keras.Input(((64, 64, 3) if "flow_from_directory" in code else (32, 32, 3)))
        names["model"] = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(
            keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255.0)(inputs))))
        names["model"].compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    if "exports/cifar10" in code:
        model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
        train.export_model(model, folder / "exports" / "cifar10")
    return names


def run_bash_command(command, reason, folder):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    words = shlex.split(command)
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    if not words:
        return
    program, arguments = words[0], words[1:]
    if os.path.basename(program) in ("python3", "pip") or arguments[:2] in (["-m", "venv"], ["-m", "pytest"]):
        return  # set-up: .ci/run runs these; pip install of the package: tests/test_package.py
    assert program == ".venv/bin/python", f"{command}: the README's interpreter, .venv/bin/python"
    if arguments[0] == "train.py":
        train.parse_args(arguments[1:])  # every flag as written parses
        if reason:
            return
        arguments = arguments + SHORT_RUN
    elif arguments[:2] == ["-m", "gpuaug.preview"]:
        arguments = arguments + ["--images", "2", "--draws", "1"]
    elif arguments[0] == "-m" and arguments[1].startswith("benchmarks."):
        arguments = arguments + ["--help"]
    elif arguments[0].endswith(".py"):  # a script of minutes: found and compiled (test_targets.py runs tests/ ones)
        script = REPO / arguments[0]
        assert script.is_file(), command
        compile(script.read_text(), str(script), "exec")
        return
    env.setdefault("JAX_PLATFORMS", "cpu")
    script = [str(REPO / "train.py")] if arguments[0] == "train.py" else []
    result = subprocess.run([sys.executable, *script, *arguments[1 if script else 0:]], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("path, language, code, reason", list(code_blocks()))
def test_code_block_runs(path, language, code, reason, scratch):
    if language == "python":
        namespace = fixtures(code, scratch)
        exec(compile(code, str(path), "exec"), namespace)
        return
    for command in commands(code):
        for part in command.split(" && "):
            run_bash_command(part, reason, scratch)
