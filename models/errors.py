"""The one error of train.py's data layer (`models.data`, `models.folders`,
`models.inputs`): data that cannot be found, read or split; and two facts
of TensorFlow's file handling: how it words a file-system refusal, and the
paths it can take."""

import errno
import os

LOCAL_COPY_HINT = (
    "point --data-dir at a local copy (a cifar-10-batches-py/ folder, "
    "cifar-10-python.tar.gz, or a folder with one sub-folder of images per class)"
)


class DataError(Exception):
    """The data could not be found, read or split; the message is one line."""


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
