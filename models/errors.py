"""The one error of train.py's data layer (`models.data`, `models.folders`,
`models.inputs`): data that cannot be found, read or split."""

LOCAL_COPY_HINT = (
    "point --data-dir at a local copy (a cifar-10-batches-py/ folder, "
    "cifar-10-python.tar.gz, or a folder with one sub-folder of images per class)"
)


class DataError(Exception):
    """The data could not be found, read or split; the message is one line."""
