"""CIFAR-10's "python version" batches, read without running any code.

The batches are pickles, and `pickle.loads` (as Keras' own `load_batch`)
runs whatever callable a file names: a crafted `data_batch_1` runs a shell
command the moment it is read. `loads_batch` unpickles with an allow-list
instead: a real batch is a dict of bytes keys holding bytes, lists of ints
and bytes, and one numpy array of uint8, so the only callables a file may
name are numpy's own array and dtype reconstructors (`_reconstruct`,
`_frombuffer`, `ndarray`, `dtype`, restricted to booleans, integers and floats) and
`_codecs.encode` (how Python 3's protocol 2 spells bytes). Anything else
(`os.system`, `builtins.eval`, any class) is refused before it is called,
as is an object dtype, and the result is checked to hold nothing but those
types. The real batches (the official archive's, Python 2's cPickle
protocol 2, and re-pickled ones) load byte for byte as `pickle.loads` loads
them.
"""

import codecs
import importlib
import io
import pathlib
import pickle

import numpy as np

PLAIN_KINDS = "biuf"  # numpy dtype kinds a batch may hold: booleans, integers, floats


class UnsafeBatch(pickle.UnpicklingError):
    """The file asks for something a CIFAR-10 batch never holds; nothing of it ran."""


def _plain_dtype(*args):
    dtype = np.dtype(*args)
    if dtype.kind not in PLAIN_KINDS or dtype.hasobject:
        raise UnsafeBatch(f"a numpy array of dtype {dtype} (a batch holds numbers only)")
    return dtype


def _numpy(modules, name):
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy's {name} was not found")


def _reconstruct():
    return _numpy(("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct")


def _frombuffer():
    """numpy's protocol-5 array constructor, for plain dtypes only."""
    frombuffer = _numpy(("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer")

    def plain_frombuffer(buffer, dtype, shape, order):
        return frombuffer(buffer, _plain_dtype(dtype), shape, order)

    return plain_frombuffer


ALLOWED = {
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # pickles made with numpy < 2
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,  # protocol 5
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: _plain_dtype,
    ("_codecs", "encode"): lambda: codecs.encode,
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        make = ALLOWED.get((module, name))
        if make is None:
            raise UnsafeBatch(f"it names {module}.{name}, a callable that a CIFAR-10 batch never holds")
        return make()

    def persistent_load(self, pid):
        raise UnsafeBatch("it refers to a persistent object")


def _check_plain(value, depth=0):
    if depth > 8:
        raise UnsafeBatch("it nests deeper than a batch does")
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in PLAIN_KINDS or value.dtype.hasobject:
            raise UnsafeBatch(f"a numpy array of dtype {value.dtype} (a batch holds numbers only)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, depth + 1)
            _check_plain(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_plain(item, depth + 1)
    elif not isinstance(value, (bytes, str, int, float, bool, type(None))):
        raise UnsafeBatch(f"an object of type {type(value).__name__}")


def loads_batch(raw):
    """The dict a CIFAR-10 batch's bytes `raw` hold (bytes keys, as
    `pickle.loads(raw, encoding="bytes")` gives them). Raises `UnsafeBatch`
    (a `pickle.UnpicklingError`) for a file that names any other callable
    or holds any other type, before anything of it runs; other
    `UnpicklingError`s, `EOFError`, `ValueError` for files that are no pickle."""
    batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    _check_plain(batch)
    return batch


def batch_images(batch):
    """(uint8 (N, 32, 32, 3) images, int64 labels) of a loaded batch dict."""
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), labels


def read_batch(path):
    """(images, labels) of the batch file at `path` (see `batch_images`)."""
    return batch_images(loads_batch(pathlib.Path(path).read_bytes()))


# keras.datasets.cifar10.load_data()'s own download (its folder name, origin and
# SHA-256), without its `load_batch`, which unpickles with pickle.loads.
KERAS_CIFAR10 = dict(fname="cifar-10-batches-py-target",
                     origin="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                     file_hash="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce")


def download():
    """The batches folder of Keras' CIFAR-10 download (fetched once into
    ~/.keras/datasets, checked against its SHA-256, as
    `keras.datasets.cifar10.load_data()` fetches it); read it with `read_batch`."""
    import keras

    return pathlib.Path(keras.utils.get_file(extract=True, **KERAS_CIFAR10)) / "cifar-10-batches-py"
