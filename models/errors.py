"""train.py's errors: one base, `JobError`, for every problem the user can
fix (its message is one line; train.py's `main` prints it and exits with its
`exit_code`), subclassed by each layer's own error (`UsageError` here for
flags and clusters, `DataError` for the data layer (`models.data`,
`models.folders`, `models.inputs`), `models.cache.CacheError`,
`models.checkpoints.CheckpointError`, `models.export.ExportError`,
`models.jax_cluster.ClusterError`); and two facts of TensorFlow's file
handling: how it words a file-system refusal, and the paths it can take."""

import errno
import os

LOCAL_COPY_HINT = (
    "point --data-dir at a local copy (a cifar-10-batches-py/ folder, "
    "cifar-10-python.tar.gz, or a folder with one sub-folder of images per class)"
)


class JobError(Exception):
    """A problem the user can fix (flags, data, paths, a cluster); the
    message is one line. `exit_code` is train.py's exit status for it (the
    model is click's `ClickException`)."""

    exit_code = 2


class UsageError(JobError):
    """A flag, a flag combination or a cluster that cannot work."""


class DataError(JobError):
    """The data could not be found, read or split."""


def file_system_error(error):
    """`error` as an OSError when it is the file system's refusal (a full
    disk, a quota, a read-only or failing device, a denied write), however
    TensorFlow worded it (a full disk is its ResourceExhaustedError naming
    ENOSPC), else None."""
    if isinstance(error, OSError):
        return error
    text = str(error)
    for number in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO):
        if os.strerror(number) in text:
            return OSError(number, os.strerror(number))
    return None


def utf8_path(path):
    """Whether TensorFlow can take `path`: it encodes paths as UTF-8, and a
    name that is not valid UTF-8 reaches Python as surrogates."""
    try:
        os.path.abspath(path).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False
