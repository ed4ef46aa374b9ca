"""Benchmarks: printed tables, JSON and PNG results under benchmarks/results/."""

import json
import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]


def repo_relative(path):
    """`path` as recorded in a committed result: relative to the repository
    root (POSIX separators), so no machine's absolute layout is kept."""
    if not path:
        return path
    return pathlib.Path(os.path.relpath(pathlib.Path(path).resolve(), REPO)).as_posix()


def write_report(out, name, report):
    """Writes `report` as indented JSON to `out`/`name` (the folder created);
    returns the file's path."""
    path = pathlib.Path(out) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    return path
