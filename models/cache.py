"""Decoded pixels kept across epochs (train.py's `--cache`).

`--cache` (memory) keeps each split's decoded uint8 images in memory after
the first epoch; `--cache DIR` keeps them in files under DIR (for data larger
than memory), where a later run, a resumed one included, reads them again.
Either way the epochs after the first read no image file.

A file cache is named after what it holds: the split, the process's share,
and a fingerprint of its files (paths, sizes, modification times) and of the
image size. A folder whose files were added, removed or changed gives another
name, so its cache is rebuilt, never silently reused, and the outdated one is
deleted. A cache that a killed run left unfinished is rebuilt as well.
"""

import hashlib
import json
import os
import pathlib

MEMORY = "memory"
SHUFFLE_BYTES = 256 * 2**20  # the shuffle buffer after a file cache: about this many bytes of images
FORMAT = 1  # bumped when what a cache holds changes


class CacheError(Exception):
    """The cache folder cannot be used; the message is one line."""


def fingerprint(files):
    """A digest of `files` (`models.folders.ImageFiles`): every path in
    order, its size and modification time, and the image size."""
    digest = hashlib.sha256(json.dumps([FORMAT, list(files.image_size)]).encode())
    for path in files.paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


class PixelCache:
    """Where one split's decoded pixels are kept: memory, or files in `where`.

    name: the split and share (e.g. "train-process-0-of-2"), unique per
    process so that processes sharing DIR never share a file."""

    def __init__(self, where, name, files):
        self.where, self.name = where, name
        self.prefix, self.reused, self._lock_file = None, False, None
        if where == MEMORY:
            return
        folder = pathlib.Path(where)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._lock(folder / f".{name}.lock")
            self.prefix = folder / f"{name}-{fingerprint(files)}"
            self.reused = pathlib.Path(f"{self.prefix}.index").is_file()
            for path in folder.iterdir():
                outdated = path.name.startswith(f"{name}-") and not path.name.startswith(self.prefix.name)
                unfinished = not self.reused and path.name.startswith(self.prefix.name)
                if outdated or unfinished:
                    path.unlink()
        except OSError as error:
            raise CacheError(f"--cache {folder}: {error.strerror or error}") from None

    def _lock(self, path):
        """Holds an exclusive lock on `path` until `close` (or the process's
        end); a cache in use by another run is refused."""
        try:
            import fcntl
        except ImportError:  # Windows: no lock
            return
        handle = open(path, "a")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise CacheError(f"--cache {path.parent}: another run is using its {path.name[1:-5]} cache") from None
        self._lock_file = handle

    def close(self):
        """Releases the cache's lock (the files stay for later runs)."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def apply(self, dataset):
        """`dataset` (decoding images) cached in memory or in the files."""
        return dataset.cache("" if self.prefix is None else str(self.prefix))

    def shuffle_buffer(self, count, bytes_per_image):
        """Images to shuffle after the cache: all of them in memory; about
        `SHUFFLE_BYTES` worth from files (a buffer of every image would hold
        the whole data set in memory)."""
        if self.prefix is None:
            return count
        return max(1, min(count, SHUFFLE_BYTES // max(1, bytes_per_image)))

    def describe(self):
        if self.prefix is None:
            return f"{self.name}: decoded into memory during the first epoch"
        return f"{self.name}: {'reusing' if self.reused else 'building'} {self.prefix}"
