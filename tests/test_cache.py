"""train.py's --cache: decoded pixels kept across epochs and runs, in memory
or in files that only ever touch what the cache itself wrote, keyed by
everything that defines the feed, verified before reuse."""

import fcntl
import json
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from conftest import CIFAR_DIR, assert_one_line_error, run_cli
from folder_tools import two_level
from models.errors import DataError


def images_of(files):
    return np.stack([image for image, _ in files.dataset().as_numpy_iterator()])


def cache_prefix(folder, cache, split="train", **options):
    """The prefix a run of `cached_run(folder)` gives the split's cache in `cache`."""
    from models.cache import PREFIX, cache_key
    from models.folders import open_image_folder

    splits = open_image_folder(folder, (8, 8), **options)
    return pathlib.Path(cache) / f"{PREFIX}{split}-{cache_key(getattr(splits, split), split, splits.settings)}"


def cached_run(folder, *extra):
    return run_cli("--data-dir", str(folder), "--image-size", "8", "8", "--model", "tiny", "--verbose", "0",
                   "--batch-size", "8", *extra)


def opened(opens, folder, split):
    import collections

    return collections.Counter(opens.counts[str(p)] for p in (folder / split).rglob("*.png"))


@pytest.mark.slow
def test_cache_in_memory_reads_each_file_once(tmp_path):
    from file_opens import FileOpens

    two_level(tmp_path, ("train", "test"))
    with FileOpens(tmp_path) as opens:
        result = cached_run(tmp_path, "--epochs", "3", "--cache")
    assert result.returncode == 0, result.stderr[-2000:]
    # Its first bytes checked, then decoded once; epochs 2 and 3 read no file.
    assert opened(opens, tmp_path, "train") == {2: 18} and opened(opens, tmp_path, "test") == {2: 18}
    with FileOpens(tmp_path) as opens:
        result = cached_run(tmp_path, "--epochs", "3")
    assert opened(opens, tmp_path, "train") == {4: 18}  # without: every epoch decodes again


@pytest.mark.slow
def test_cache_files_are_reused_by_a_resumed_run_and_rebuilt_when_the_folder_changes(tmp_path):
    from file_opens import FileOpens

    folder, cache, checkpoints = tmp_path / "data", tmp_path / "cache", tmp_path / "checkpoints"
    two_level(folder, ("train", "test"))
    with FileOpens(folder) as opens:
        first = cached_run(folder, "--epochs", "1", "--cache", str(cache), "--checkpoint-dir", str(checkpoints))
    assert first.returncode == 0, first.stderr[-2000:]
    assert "--cache train: building" in first.stdout and opened(opens, folder, "train") == {2: 18}
    built = sorted(p.name for p in cache.iterdir())
    assert len(built) == 8  # train and test: an index, a data file, a manifest and a lock each
    with FileOpens(folder) as opens:
        resumed = cached_run(folder, "--epochs", "3", "--cache", str(cache), "--checkpoint-dir", str(checkpoints))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "1 epoch(s) already done" in resumed.stdout and "--cache train: reusing" in resumed.stdout
    assert sum(opens.counts.values()) == 0  # no image file opened at all
    assert sorted(p.name for p in cache.iterdir()) == built
    # One training image changes: its cache no longer matches and is rebuilt (the old one removed).
    changed = sorted((folder / "train" / "cat").iterdir())[0]
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(changed)
    with FileOpens(folder) as opens:
        again = cached_run(folder, "--epochs", "1", "--cache", str(cache))
    assert again.returncode == 0 and "--cache train: building" in again.stdout
    assert "--cache test: reusing" in again.stdout and opened(opens, folder, "test") == {0: 18}
    assert opened(opens, folder, "train") == {2: 18}
    names = sorted(p.name for p in cache.iterdir())
    assert len(names) == 8 and [n for n in names if "-test-" in n] == [n for n in built if "-test-" in n]
    assert set(names) != set(built)  # the outdated training cache removed


def test_cached_pixels_equal_decoded_ones_and_an_unfinished_cache_is_rebuilt(tmp_path):
    from models.cache import PixelCache
    from models.folders import open_image_folder

    two_level(tmp_path / "data", ("train",), size=10)
    files = open_image_folder(tmp_path / "data", (8, 8)).train  # resized: rounded uint8
    plain = images_of(files)
    cache = PixelCache(tmp_path / "cache", "train", files)
    prefix = str(cache.prefix)
    # What a run killed during its first epoch leaves: tf.data's lock and partial file.
    pathlib.Path(prefix + "_0.lockfile").write_text("")
    pathlib.Path(prefix + "_0.data-00000-of-00001.tempstate123").write_text("partial")
    cache.close()
    cache = PixelCache(tmp_path / "cache", "train", files)  # as the next run would: rebuilds
    assert not cache.reused and not list((tmp_path / "cache").glob("*tempstate*"))
    cached = np.stack([image for image, _ in files.dataset(cache=cache).as_numpy_iterator()])
    np.testing.assert_array_equal(cached, plain)
    again = np.stack([image for image, _ in files.dataset(cache=cache).as_numpy_iterator()])
    np.testing.assert_array_equal(again, plain)


@pytest.mark.slow
def test_a_cache_in_use_by_another_run_is_refused(tmp_path):
    import fcntl

    two_level(tmp_path / "data", ("train", "test"))
    (tmp_path / "cache").mkdir()
    with open(f"{cache_prefix(tmp_path / 'data', tmp_path / 'cache')}.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = cached_run(tmp_path / "data", "--epochs", "1", "--cache", str(tmp_path / "cache"))
    assert_one_line_error(result, "another run is using its train cache")


@pytest.mark.slow
def test_cache_on_cifar_batches_is_refused():
    result = run_cli("--data-dir", str(CIFAR_DIR), "--cache", "--epochs", "1")
    assert_one_line_error(result, "--cache keeps the decoded images of a folder")


USER_FILES = {"train-log.txt": "epoch 1: ok\n", "test-results.csv": "a,b\n1,2\n",
              "validation-notes.md": "# notes\n", "train-0123456789abcdef0123.index": "mine, not a cache",
              "gpuaug-cache-notes.txt": "still mine"}


@pytest.mark.slow
def test_the_cache_never_touches_files_it_did_not_write(tmp_path):
    """A cache folder that holds the user's own files (names beginning like
    a split's, one even shaped like an earlier cache's file): after runs
    that build, rebuild (the folder changed) and remove an outdated cache,
    every one of them is still there, byte for byte."""
    folder, cache = tmp_path / "data", tmp_path / "cache"
    two_level(folder, ("train", "test"))
    cache.mkdir()
    for name, text in USER_FILES.items():
        (cache / name).write_text(text)
    first = cached_run(folder, "--epochs", "1", "--cache", str(cache))
    assert first.returncode == 0, first.stderr[-2000:]
    assert sorted(name for name in USER_FILES if (cache / name).exists()) == sorted(USER_FILES)
    assert "an earlier gpuaug's cache" in first.stdout  # the look-alike is reported, not removed
    Image.fromarray(np.full((8, 8, 3), 9, np.uint8)).save(sorted((folder / "train" / "dog").iterdir())[0])
    again = cached_run(folder, "--epochs", "1", "--cache", str(cache))
    assert again.returncode == 0 and "--cache train: building" in again.stdout, again.stderr[-2000:]
    for name, text in USER_FILES.items():
        assert (cache / name).read_text() == text, name
    ours = [p.name for p in cache.iterdir() if p.name not in USER_FILES]
    assert len(ours) == 8 and all(name.startswith("gpuaug-cache-") for name in ours)


@pytest.mark.slow
def test_a_one_process_run_leaves_a_two_process_runs_cache_alone(tmp_path):
    """Another run's cache in the same folder, with another share name, one
    it is still writing (its lock held, tf.data's lockfile there): a
    one-process run neither removes nor reads it."""
    from models.cache import PREFIX

    folder, cache = tmp_path / "data", tmp_path / "cache"
    two_level(folder, ("train", "test"))
    cache.mkdir()
    other = cache / f"{PREFIX}train-process-0-of-2-{'a' * 20}"
    files = {f"{other}.index": "index", f"{other}.data-00000-of-00001": "data", f"{other}_0.lockfile": "",
             f"{other}_0.data-00000-of-00001.tempstate42": "writing"}
    for path, text in files.items():
        pathlib.Path(path).write_text(text)
    with open(f"{other}.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the two-process run, still writing
        result = cached_run(folder, "--epochs", "1", "--cache", str(cache))
    assert result.returncode == 0, result.stderr[-2000:]
    for path, text in files.items():
        assert pathlib.Path(path).read_text() == text


@pytest.mark.slow
def test_an_outdated_cache_in_use_by_another_run_is_not_removed(tmp_path):
    folder, cache = tmp_path / "data", tmp_path / "cache"
    two_level(folder, ("train", "test"))
    assert cached_run(folder, "--epochs", "1", "--cache", str(cache)).returncode == 0
    prefix = cache_prefix(folder, cache)
    with open(f"{prefix}.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a run with the old settings still reads it
        result = cached_run(folder, "--epochs", "1", "--cache", str(cache), "--seed", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert pathlib.Path(f"{prefix}.index").is_file() and pathlib.Path(f"{prefix}.manifest.json").is_file()


@pytest.mark.slow
def test_an_empty_class_folder_added_rebuilds_the_cache_with_the_new_labels(tmp_path):
    """The issue's case: an added (empty) class folder shifts every label
    by one while no file changes; the cached feed must not keep the old
    labels."""
    from models.cache import PixelCache
    from models.folders import open_image_folder

    folder, cache = tmp_path / "data", tmp_path / "cache"
    two_level(folder, ("train",))
    before = open_image_folder(folder, (8, 8))
    built = PixelCache(cache, "train", before.train, before.settings)
    list(before.train.dataset(cache=built).as_numpy_iterator())
    built.finalize()
    built.close()
    (folder / "train" / "aardvark").mkdir()  # sorts first: cat 0 -> 1, dog 1 -> 2, ship 2 -> 3
    after = open_image_folder(folder, (8, 8))
    cached = PixelCache(cache, "train", after.train, after.settings)
    assert not cached.reused
    labels = sorted(int(label) for _, label in after.train.dataset(cache=cached).as_numpy_iterator())
    assert labels == sorted(after.train.labels) and min(labels) == 1
    cached.finalize()
    cached.close()
    result = cached_run(folder, "--epochs", "1", "--cache", str(cache))
    assert result.returncode == 0 and "--cache train: reusing" in result.stdout, result.stderr[-2000:]


@pytest.mark.parametrize("change", ["class folder added", "class renamed", "file moved to another class",
                                    "seed", "limit", "validation split", "image size", "split", "decoder version",
                                    "file rewritten", "weights"])
def test_the_cache_key_covers_everything_that_defines_the_feed(tmp_path, monkeypatch, change):
    from models import cache as cache_lib, folders
    from models.folders import open_image_folder

    folder = tmp_path / "data"
    two_level(folder, ("train", "test"))

    def key(split="train", size=(8, 8), **options):
        splits = open_image_folder(folder, size, **options)
        return cache_lib.cache_key(getattr(splits, split), split, splits.settings)

    before = key()
    if change == "class folder added":
        (folder / "train" / "aardvark").mkdir()
        (folder / "test" / "aardvark").mkdir()
        after = key()
    elif change == "class renamed":  # dog becomes a class sorted first: the mapping changes too
        (folder / "train" / "dog").rename(folder / "train" / "aadog")
        (folder / "test" / "dog").rename(folder / "test" / "aadog")
        after = key()
    elif change == "file moved to another class":
        path = sorted((folder / "train" / "cat").iterdir())[0]
        path.rename(folder / "train" / "dog" / path.name.replace(".png", "-moved.png"))
        after = key()
    elif change == "seed":
        after = key(seed=1)
    elif change == "limit":
        after = key(limit=17)
    elif change == "validation split":
        after = key(validation_split=0.25)
    elif change == "image size":
        after = key(size=(6, 6))
    elif change == "split":
        after = key("test")
    elif change == "decoder version":
        monkeypatch.setattr(folders, "DECODER", folders.DECODER + ".1")
        after = key()
    elif change == "file rewritten":  # same size, same modification time: only its change time differs
        path = sorted((folder / "train" / "cat").iterdir())[0]
        stat = path.stat()
        data = bytearray(path.read_bytes())
        data[-20] ^= 1
        path.write_bytes(bytes(data))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        after = key()
    else:  # an evaluation share's weights (padding)
        splits = open_image_folder(folder, (8, 8))
        padded = splits.test.select(range(len(splits.test)), [1.0] * (len(splits.test) - 1) + [0.0])
        unpadded = splits.test.select(range(len(splits.test)), [1.0] * len(splits.test))
        before = cache_lib.cache_key(unpadded, "test", splits.settings)
        after = cache_lib.cache_key(padded, "test", splits.settings)
    assert after != before and before == before.lower() and len(before) == 20


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "a byte changed", "index removed", "manifest removed"])
def test_a_damaged_cache_is_rebuilt_with_one_line(tmp_path, damage):
    folder, cache = tmp_path / "data", tmp_path / "cache"
    two_level(folder, ("train", "test"))
    assert cached_run(folder, "--epochs", "1", "--cache", str(cache)).returncode == 0
    prefix = cache_prefix(folder, cache)
    data = pathlib.Path(f"{prefix}.data-00000-of-00001")
    if damage == "truncated":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    elif damage == "a byte changed":
        content = bytearray(data.read_bytes())
        content[len(content) // 2] ^= 0xFF
        data.write_bytes(bytes(content))
    elif damage == "index removed":
        pathlib.Path(f"{prefix}.index").unlink()
    else:
        pathlib.Path(f"{prefix}.manifest.json").unlink()
    result = cached_run(folder, "--epochs", "1", "--cache", str(cache))
    assert result.returncode == 0, result.stderr[-2000:]
    notes = [line for line in result.stdout.splitlines() if "rebuilding it" in line]
    assert len(notes) == 1 and "the train cache" in notes[0], result.stdout
    assert ("unfinished" in notes[0]) == (damage == "manifest removed")
    assert "--cache train: building" in result.stdout and "--cache test: reusing" in result.stdout
    manifest = json.loads(pathlib.Path(f"{prefix}.manifest.json").read_text())
    assert manifest["content"][".data-00000-of-00001"]["size"] == data.stat().st_size
    again = cached_run(folder, "--epochs", "1", "--cache", str(cache))
    assert "--cache train: reusing" in again.stdout and "rebuilding" not in again.stdout


@pytest.mark.slow
def test_cache_with_the_generator_says_it_keeps_the_evaluated_splits_only(tmp_path):
    folder, cache = tmp_path / "data", tmp_path / "cache"
    two_level(folder, ("train", "test"))
    result = cached_run(folder, "--epochs", "1", "--cache", str(cache), "--augment", "generator")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--augment generator reads the training images with flow_from_directory every epoch" in result.stdout
    assert "--cache test: building" in result.stdout and "--cache train" not in result.stdout


def test_a_full_disk_while_the_cache_is_written_is_one_line(tmp_path, monkeypatch):
    """tf.data reports a full disk while it writes the cache as a
    ResourceExhaustedError naming ENOSPC, from inside fit: train.py says so
    in one line naming --cache (before: a traceback)."""
    import keras
    import tensorflow as tf

    import train

    two_level(tmp_path / "data", ("train", "test"))

    def disk_full(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{tmp_path}/cache/gpuaug-cache-train-0_0.data-00000-of-00001.tempstate1; "
                        "No space left on device\n\t [[{{node IteratorGetNext}}]]")

    monkeypatch.setattr(keras.Model, "fit", disk_full)
    args = train.parse_args(["--data-dir", str(tmp_path / "data"), "--image-size", "8", "8", "--model", "tiny",
                             "--verbose", "0", "--cache", str(tmp_path / "cache")])
    with pytest.raises(DataError, match=r"^--cache .*/cache: No space left on device while training"):
        train.run(args)


@pytest.mark.slow
def test_a_real_full_disk_while_the_cache_is_written_is_one_line(tmp_path):
    """The same on a tmpfs too small for the cache (where the machine lets a test mount one)."""
    from test_export import small_disk

    two_level(tmp_path / "data", ("train", "test"), per_class=40, size=32)
    disk = small_disk(tmp_path, "100k")
    result = run_cli("--data-dir", str(tmp_path / "data"), "--model", "tiny", "--verbose", "0", "--batch-size", "16",
                     "--epochs", "1", "--cache", str(disk / "cache"))
    assert_one_line_error(result, "--cache", "No space left on device")


@pytest.mark.slow
def test_a_cache_cut_short_with_tf_datas_shard_index_left_is_rebuilt(tmp_path):
    """A full disk stops tf.data after it wrote its shard index (`_0.index`):
    the rebuild removed every other file of ours but that one, and tf.data
    then refused to start ("Existing cache files found") on every rerun."""
    two_level(tmp_path / "data", ("train", "test"))
    (tmp_path / "cache").mkdir()
    prefix = cache_prefix(tmp_path / "data", tmp_path / "cache")
    for suffix in (".index", "_0.index", "_0.lockfile", ".data-00000-of-00001"):
        pathlib.Path(f"{prefix}{suffix}").write_bytes(b"")
    result = cached_run(tmp_path / "data", "--epochs", "1", "--cache", str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "is unfinished" in result.stdout and "rebuilding it" in result.stdout
    assert pathlib.Path(f"{prefix}.manifest.json").exists()
