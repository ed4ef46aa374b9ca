"""Robustness: arguments and input shapes drawn by hypothesis, extreme sizes,
NaN/inf and integer pixels, and train.py's failure modes (nothing a user wrote
is lost, one line, exit 2)."""

import errno
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from keras.src.legacy.preprocessing.image import ImageDataGenerator

import gpuaug
import train
from conftest import CIFAR_DIR, REPO, assert_one_line_error, run_cli
from models.export import ExportError

FAST = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
finite = st.floats(-1e3, 1e3, allow_nan=False)
non_negative = st.floats(0, 90, allow_nan=False)
shift_ranges = st.one_of(
    st.floats(0, 0.99), st.floats(1, 8), st.integers(0, 6),
    st.lists(st.floats(0, 5), min_size=1, max_size=4),
)
valid_arguments = st.fixed_dictionaries({
    "rotation_range": non_negative,
    "width_shift_range": shift_ranges,
    "height_shift_range": shift_ranges,
    "shear_range": non_negative,
    "zoom_range": st.one_of(st.floats(0, 0.9), st.tuples(st.floats(0.2, 1.0), st.floats(1.0, 3.0))),
    "fill_mode": st.sampled_from(["constant", "nearest", "reflect", "wrap"]),
    "cval": finite,
    "horizontal_flip": st.booleans(),
    "vertical_flip": st.booleans(),
    "interpolation_order": st.sampled_from([0, 1]),
    "shift_axes": st.sampled_from(["reference", "named"]),
    "center": st.sampled_from(["reference", "image"]),
})
shapes = st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 12), st.integers(1, 4))


@FAST
@given(arguments=valid_arguments, shape=shapes, data_format=st.sampled_from(["channels_last", "channels_first"]))
def test_any_valid_arguments_and_shape_warp_within_the_input_range(arguments, shape, data_format):
    """Geometry resamples: every output value lies between the input's extremes
    (or is cval), whatever the arguments, the size (1x1 included) and format."""
    n, h, w, c = shape
    x = np.random.default_rng(sum(shape)).uniform(-50, 300, (n, h, w, c)).astype("float32")
    if data_format == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    layer = gpuaug.RandomTransform(**arguments, data_format=data_format, seed=0)
    out = np.asarray(layer(x, training=True))
    assert out.shape == x.shape and out.dtype == np.float32
    low, high = x.min(), x.max()
    if arguments["fill_mode"] == "constant":
        low, high = min(low, arguments["cval"]), max(high, arguments["cval"])
    tolerance = 1e-3 * max(abs(low), abs(high))
    assert np.all(out >= low - tolerance) and np.all(out <= high + tolerance)


@FAST
@given(arguments=valid_arguments)
def test_any_valid_arguments_round_trip_through_config(arguments):
    layer = gpuaug.RandomTransform(**arguments)
    clone = gpuaug.RandomTransform.from_config(layer.get_config())
    assert clone.augmentation == layer.augmentation


INVALID = st.one_of(
    st.tuples(st.just("rotation_range"), st.one_of(st.floats(-1e3, -1e-3), st.just(float("inf")), st.text(max_size=3))),
    st.tuples(st.just("shear_range"), st.one_of(st.floats(-90, -1e-3), st.just(float("nan")), st.none())),
    st.tuples(st.just("width_shift_range"), st.one_of(st.floats(-5, -1e-3), st.integers(-5, -1), st.just([]))),
    st.tuples(st.just("height_shift_range"), st.one_of(st.just([0.1, None]), st.just({"a": 1}))),
    st.tuples(st.just("zoom_range"), st.one_of(
        st.floats(-5, -1e-3), st.floats(1, 5), st.tuples(st.floats(1.01, 3), st.floats(0.1, 0.99)),
        st.tuples(st.just(0), st.floats(0.5, 2)), st.lists(st.floats(0.5, 2), min_size=3, max_size=4))),
    st.tuples(st.just("channel_shift_range"), st.floats(-100, -1e-3)),
    st.tuples(st.just("brightness_range"), st.one_of(
        st.floats(0, 2), st.lists(st.floats(0, 2), min_size=3, max_size=3), st.lists(st.floats(0, 2), max_size=1),
        st.tuples(st.floats(1.01, 2), st.floats(0, 0.99)), st.tuples(st.floats(-2, -0.01), st.floats(0, 1)))),
    st.tuples(st.just("fill_mode"),
              st.text(max_size=8).filter(lambda s: s not in ("constant", "nearest", "reflect", "wrap"))),
    st.tuples(st.just("interpolation_order"), st.one_of(st.integers(2, 5), st.integers(-3, -1), st.just(1.5))),
    st.tuples(st.just("horizontal_flip"), st.one_of(st.just(1), st.just("yes"), st.none())),
    st.tuples(st.just("cval"), st.one_of(st.just(float("nan")), st.just("0"))),
    st.tuples(st.just("data_format"), st.just("NHWC")),
    st.tuples(st.just("seed"), st.one_of(st.floats(0, 10), st.just("1"))),
)


@FAST
@given(invalid=INVALID)
def test_every_invalid_argument_raises_value_error_naming_it(invalid):
    name, value = invalid
    with pytest.raises(ValueError, match=f"`{name}` must"):
        gpuaug.RandomTransform(**{name: value})


@pytest.mark.parametrize("shape", [(5,), (4, 4), (1, 2, 4, 4, 3), ()])
def test_wrong_rank_is_a_value_error(shape):
    with pytest.raises(ValueError, match="rank 4 or one image of rank 3"):
        gpuaug.RandomTransform(rotation_range=5)(np.zeros(shape, "float32"), training=True)


@pytest.mark.parametrize("shape", [(0, 8, 8, 3), (2, 0, 8, 3), (2, 8, 0, 3), (2, 8, 8, 0)])
def test_zero_sized_batches_and_images_pass_through(shape):
    layer = gpuaug.RandomTransform(rotation_range=5, zoom_range=0.1, channel_shift_range=3.0, seed=0)
    out = np.asarray(layer(np.zeros(shape, "float32"), training=True))
    assert out.shape == shape


def test_one_by_one_images_in_every_mode():
    for mode in ("constant", "nearest", "reflect", "wrap"):
        x = np.full((4, 1, 1, 3), 42.0, "float32")
        layer = gpuaug.RandomTransform(rotation_range=90, width_shift_range=0.5, zoom_range=0.5,
                                       fill_mode=mode, cval=7.0, seed=0)
        out = np.asarray(layer(x, training=True))
        assert set(np.unique(out)) <= {42.0, 7.0}
        reference = ImageDataGenerator(fill_mode=mode, cval=7.0).apply_transform(x[0], {"theta": 30, "zx": 0.7})
        ours = layer.transform_images(x[0], {"theta": 30.0, "zx": 0.7})
        np.testing.assert_array_equal(np.asarray(ours), reference)


@pytest.mark.parametrize("dtype", ["uint8", "int16", "int32", "int64", "float16", "float64"])
def test_integer_and_other_float_inputs(dtype):
    x = np.random.default_rng(0).integers(0, 255, (2, 8, 8, 3)).astype(dtype)
    layer = gpuaug.RandomTransform(rotation_range=20, seed=0)
    t = layer.get_random_transformation(x)
    out = layer.transform_images(x, t)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    expected = layer.transform_images(x.astype("float32"), t)
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-6)


def test_nan_and_inf_pixels_propagate_like_the_reference():
    """Documented behaviour, no crash: an output pixel is NaN wherever the
    reference's is; it is non-finite only where the reference's is (an inf
    pixel blended by a + t (b - a) can give NaN where scipy's weighted sum
    gives inf); every other pixel matches."""
    x = np.random.default_rng(0).uniform(0, 255, (10, 12, 3)).astype("float32")
    x[3, 4, 0] = np.nan
    x[7, 8, 1] = np.inf
    params = {"theta": 12.0, "tx": 0.5, "zx": 1.1}
    ours = np.asarray(gpuaug.RandomTransform().transform_images(x, params))
    reference = ImageDataGenerator().apply_transform(x, params)
    assert np.all(np.isnan(ours)[np.isnan(reference)])
    np.testing.assert_array_equal(~np.isfinite(ours), ~np.isfinite(reference))
    finite = np.isfinite(reference)
    np.testing.assert_allclose(ours[finite], reference[finite], atol=1e-3)
    assert 0 < np.isnan(ours).sum() < 12 and np.isfinite(ours[..., 2]).all()


@pytest.mark.slow
def test_very_large_image_memory():
    """A 2048x2048x3 image warps on the CPU; the peak resident memory it adds
    stays within a small multiple of the image (48 MiB)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, str(REPO / "tests" / "large_image_script.py")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"\n2048x2048x3 image: peak RSS {report['before_mib']:.0f} -> {report['after_mib']:.0f} MiB "
          f"(+{(report['after_mib'] - report['before_mib']) / report['image_mib']:.1f} x the image)")
    assert report["shape"] == [1, 2048, 2048, 3] and report["finite"]
    assert report["after_mib"] - report["before_mib"] < 20 * report["image_mib"]


# train.py: nothing a user has written is lost -------------------------------


@pytest.mark.slow
def test_unwritable_export_location_fails_before_training():
    # /proc refuses new entries even to root (permission bits do not stop root).
    result = run_cli("--data-dir", str(CIFAR_DIR), "--export", "/proc/gpuaug-export")
    assert_one_line_error(result, "--export", "cannot write")
    assert "epoch 1" not in result.stdout


@pytest.mark.slow
def test_unwritable_checkpoint_dir_fails_before_training():
    result = run_cli("--data-dir", str(CIFAR_DIR), "--checkpoint-dir", "/proc/gpuaug-checkpoints")
    assert_one_line_error(result, "--checkpoint-dir", "cannot write")


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC, errno.EACCES])
def test_export_failures_keep_the_previous_export(tmp_path, monkeypatch, code):
    from models.export import publish

    export = tmp_path / "export"
    publish(export, lambda folder: (folder / "model.keras").write_bytes(b"the user's previous export"))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])

    def failing_save(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(model, "save", failing_save)
    with pytest.raises(ExportError, match="previous export .* still installed") as info:
        train.export_model(model, export)
    assert "\n" not in str(info.value)
    assert (export / "model.keras").read_bytes() == b"the user's previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


@pytest.mark.slow
def test_corrupted_checkpoint_is_reported_and_kept(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "latest.weights.h5").write_bytes(b"not an h5 file")
    (checkpoints / "training_metadata.json").write_text('{"epoch": 1}')
    result = run_cli("--data-dir", str(CIFAR_DIR), "--limit", "64", "--epochs", "2",
                     "--checkpoint-dir", str(checkpoints))
    assert_one_line_error(result, "cannot load latest.weights.h5", "left untouched")
    assert (checkpoints / "latest.weights.h5").read_bytes() == b"not an h5 file"


@pytest.mark.slow
def test_corrupted_checkpoint_metadata(tmp_path):
    (tmp_path / "training_metadata.json").write_text("{broken")
    result = run_cli("--data-dir", str(CIFAR_DIR), "--checkpoint-dir", str(tmp_path))
    assert_one_line_error(result, "unreadable checkpoint")
    assert (tmp_path / "training_metadata.json").read_text() == "{broken"


@pytest.mark.slow
def test_unreadable_data_file(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes((CIFAR_DIR / "test_batch").read_bytes())
    (folder / "data_batch_1").mkdir()  # a directory where a file is expected: unreadable
    (folder / "data_batch_2").write_bytes(b"")  # and an empty one
    assert_one_line_error(run_cli("--data-dir", str(tmp_path)), "data_batch")
