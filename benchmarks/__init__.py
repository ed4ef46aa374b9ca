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


def file_mode():
    """The permissions a new file gets from this process's umask (0o666 less
    the umask): what a file written through `tempfile.mkstemp` (0o600) is
    given before it replaces an output, so outputs keep the usual mode."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def is_report(path, benchmark):
    """Whether `path` is a regular file holding a JSON report of `benchmark`
    (its "benchmark" field)."""
    try:
        return path.is_file() and json.loads(path.read_text()).get("benchmark") == benchmark
    except (OSError, ValueError, AttributeError):
        return False


def foreign_outputs(out, report, picture, benchmark):
    """Why folder `out` holds files a run of `benchmark` must not replace (a
    `report` that is not its report, a `picture` without its report beside
    it), or None: a benchmark replaces its own outputs only."""
    out = pathlib.Path(out)
    report_path, picture_path = out / report, out / picture
    if os.path.lexists(report_path) and not is_report(report_path, benchmark):
        return f"{report} there is not a benchmarks.{benchmark} report (not replaced: choose another --out)"
    if os.path.lexists(picture_path) and not (picture_path.is_file() and is_report(report_path, benchmark)):
        return f"{picture} there does not come with this benchmark's {report} (not replaced: choose another --out)"
    return None


def write_report(out, name, report):
    """Writes `report` as indented JSON to `out`/`name` (the folder created);
    returns the file's path."""
    path = pathlib.Path(out) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    return path
