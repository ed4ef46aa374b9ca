"""Decoded pixels kept across epochs (train.py's `--cache`).

`--cache` (memory) keeps each split's decoded uint8 images in memory after
the first epoch; `--cache DIR` keeps them in files under DIR (for data larger
than memory), where a later run, a resumed one included, reads them again.
Either way the epochs after the first read no image file.

A file cache only ever touches files it owns, recognised by their whole name:

    DIR/gpuaug-cache-<share>-<key>.index              tf.data's cache
    DIR/gpuaug-cache-<share>-<key>.data-00000-of-00001
    DIR/gpuaug-cache-<share>-<key>_0.lockfile          (tf.data, while writing)
    DIR/gpuaug-cache-<share>-<key>.manifest.json       sizes and SHA-256 of the two
    DIR/gpuaug-cache-<share>-<key>.lock                held while a run uses it

<share> is the split and the process's share ("train", "test",
"train-process-0-of-2"); <key> is a digest of everything that defines what
the cache holds (`cache_key`): the decoder and its version, the image size,
the split, the folder's settings (seed, --limit, --validation-split, the class
list in its order) and, for every file in order, its path, label, weight,
size, modification and change times and inode. Any change gives another key,
so the cache is rebuilt, never silently reused. Any other file in DIR (a
user's `train-log.txt`, a cache of another share or process count) is never
read, replaced or removed.

A cache is reused only when its manifest, written once tf.data has finished
it (`finalize`), matches its files (sizes and SHA-256): a cache a killed run
left unfinished, or a file truncated or corrupted since, is rebuilt, with one
line saying why. Caches of the same share made for other settings are
removed (their files only, and only when no run holds their lock).
"""

import hashlib
import json
import os
import pathlib
import re

from models.locks import try_lock
from models.errors import JobError

MEMORY = "memory"
SHUFFLE_BYTES = 256 * 2**20  # the shuffle buffer after a file cache: about this many bytes of images
FORMAT = 2  # bumped when what a cache holds or how it is named changes
PREFIX = "gpuaug-cache-"
KEY_LENGTH = 20
# Every name a cache of share <share> and key <key> may give a file (tf.data's
# own files, its files while writing, the manifest and the lock).
OWNED = re.compile(PREFIX + r"(?P<share>.+)-(?P<key>[0-9a-f]{%d})" % KEY_LENGTH
                   + r"(?P<suffix>\.index|\.data-\d{5}-of-\d{5}|_\d+\.lockfile|_\d+\.index"
                   r"|_\d+\.data-\d{5}-of-\d{5}\.tempstate\d+|\.manifest\.json|\.manifest\.json\.partial|\.lock)")
# The names an earlier gpuaug's caches had (FORMAT 1): reported, never removed.
EARLIER = re.compile(r"(train|validation|test)(-process-\d+-of-\d+)?-[0-9a-f]{20}\.(index|data-\d{5}-of-\d{5})")
CONTENT = (".index", ".data-00000-of-00001")  # what the manifest covers
CHUNK = 4 * 2**20


class CacheError(JobError):
    """The cache folder cannot be used; the message is one line."""


def decoder_version():
    """What decodes the pixels a cache holds: the decoding code's own version
    (`models.folders.DECODER`) and TensorFlow's."""
    import tensorflow as tf

    from models.folders import DECODER

    return f"{DECODER} tensorflow {tf.__version__}"


def cache_key(files, share, settings):
    """The digest naming a cache of `files` (`models.folders.ImageFiles`) for
    `share`; `settings`: what else defines the feed (a JSON-able dict, e.g.
    `FolderSplits.settings`: seed, limit, validation split, class names)."""
    head = {"format": FORMAT, "decoder": decoder_version(), "image_size": list(files.image_size), "share": share,
            "settings": settings}
    digest = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    weights = files.weights if files.weights is not None else (None,) * len(files)
    for path, label, weight in zip(files.paths, files.labels, weights):
        stat = os.stat(path)
        digest.update(os.fsencode(path) + b"\0")
        digest.update(f"{label}\0{weight}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}\0"
                      f"{stat.st_ino}\n".encode())
    return digest.hexdigest()[:KEY_LENGTH]


def _checksum(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _content(prefix):
    """{suffix: {"size", "sha256"}} of a cache's two tf.data files."""
    return {suffix: {"size": os.path.getsize(f"{prefix}{suffix}"), "sha256": _checksum(f"{prefix}{suffix}")}
            for suffix in CONTENT}


def _owned(folder):
    """{(share, key): [paths]} of the files in `folder` a cache owns."""
    found = {}
    for path in folder.iterdir():
        match = OWNED.fullmatch(path.name)
        if match and not path.is_dir():
            found.setdefault((match["share"], match["key"]), []).append(path)
    return found


class PixelCache:
    """Where one split's decoded pixels are kept: memory, or files in `where`.

    share: the split and share (e.g. "train-process-0-of-2"), unique per
    process so that processes sharing DIR never share a file; settings: what
    else defines the feed (see `cache_key`). `notes` holds the lines to print
    about it (a damaged or unfinished cache rebuilt, an earlier gpuaug's
    files left)."""

    def __init__(self, where, share, files, settings=None):
        self.where, self.name = where, share
        self.prefix, self.reused, self._lock_file, self.notes = None, False, None, []
        self._finalized = False
        if where == MEMORY:
            return
        folder = pathlib.Path(where)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            key = cache_key(files, share, settings or {})
            self.prefix = folder / f"{PREFIX}{share}-{key}"
            self._lock_file = try_lock(f"{self.prefix}.lock")
            if self._lock_file is None:
                raise CacheError(f"--cache {folder}: another run is using its {share} cache ({self.prefix.name})")
            owned = _owned(folder)
            self.reused = self._verified(owned.pop((share, key), []))
            for (other_share, _), paths in owned.items():
                if other_share == share:  # the same share, other settings: outdated
                    self._remove_outdated(paths)
            earlier = sorted(p.name for p in folder.iterdir() if EARLIER.fullmatch(p.name))
            if earlier:
                self.notes.append(f"--cache {folder}: {len(earlier)} file(s) of an earlier gpuaug's cache (e.g. "
                                  f"{earlier[0]}) are not used and left as they are; delete them if you wish")
        except OSError as error:
            self.close()
            raise CacheError(f"--cache {folder}: {error.strerror or error}") from None
        self._finalized = self.reused

    def _verified(self, paths):
        """Whether this cache's files are a whole cache its manifest vouches
        for; otherwise they are removed (all of them, ours by name) and a
        note says why, unless there were none."""
        manifest = pathlib.Path(f"{self.prefix}.manifest.json")
        ours = [path for path in paths if not path.name.endswith(".lock")]
        if not ours:
            return False
        problem = None
        try:
            recorded = json.loads(manifest.read_text())["content"]
        except FileNotFoundError:
            problem = "unfinished (its run stopped before it was complete)"
        except (OSError, ValueError, KeyError, TypeError):
            problem = "its manifest is unreadable"
        if problem is None:
            for suffix in CONTENT:
                path = pathlib.Path(f"{self.prefix}{suffix}")
                expected = recorded.get(suffix, {})
                if not path.is_file():
                    problem = f"{path.name} is missing"
                elif path.stat().st_size != expected.get("size"):
                    problem = f"{path.name} has {path.stat().st_size:,} bytes, {expected.get('size')} expected"
                elif _checksum(path) != expected.get("sha256"):
                    problem = f"{path.name} does not match its checksum"
                if problem:
                    break
        if problem is None:
            return True
        for path in ours:
            path.unlink(missing_ok=True)
        state = problem if problem.startswith("unfinished") else f"damaged ({problem})"
        self.notes.append(f"--cache {self.prefix.parent}: the {self.name} cache {self.prefix.name} is {state}: "
                          "rebuilding it")
        return False

    @staticmethod
    def _remove_outdated(paths):
        """Removes another cache's files, unless a run holds its lock."""
        lock = next((path for path in paths if path.name.endswith(".lock")), None)
        held = try_lock(lock) if lock is not None else None
        if lock is not None and held is None:
            return  # in use by another run
        try:
            for path in paths:
                if path != lock:
                    path.unlink(missing_ok=True)
            if lock is not None:
                lock.unlink(missing_ok=True)
        finally:
            if held is not None:
                held.close()

    def finalize(self):
        """Once tf.data has finished writing this cache (its index is there
        and its lockfile gone), records its files' sizes and checksums in
        the manifest that later runs verify. Cheap when already done."""
        if self.prefix is None or self._finalized:
            return
        prefix = str(self.prefix)
        writing = any(p.name.endswith(".lockfile") for p in self.prefix.parent.glob(f"{self.prefix.name}_*"))
        if writing or not os.path.isfile(prefix + CONTENT[0]):
            return
        manifest = pathlib.Path(f"{prefix}.manifest.json")
        partial = manifest.with_name(manifest.name + ".partial")
        partial.write_text(json.dumps({"format": FORMAT, "content": _content(prefix)}))
        os.replace(partial, manifest)
        self._finalized = True

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
