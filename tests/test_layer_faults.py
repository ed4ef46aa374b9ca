"""Three faults users met in the 0.1.0 release, each on every backend here
(TensorFlow in this process; JAX, and PyTorch when installed, in fresh
interpreters running tests/layer_faults_script.py):

20. `RandomTransform` in a `tf.data` pipeline on JAX ("Cannot convert a
    symbolic tf.Tensor to a numpy array"): it now switches to TensorFlow's
    functions there, as Keras' own layers do (`gpuaug.backend`).
21. Seeds and argument types: one rule on every backend (seed None or an
    integer in [0, 2**32 - 1]; flags True/False, numpy bools, 0/1; numpy
    numbers), configs of plain Python values.
22. Turning on perspective or lens changed every other draw: they now draw
    from streams of their own.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import gpuaug
import layer_faults_script
from conftest import REPO, run_python

OTHER_BACKENDS = ["jax", "torch"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """results(mode, backend): `layer_faults_script.MODE()` on `backend`, once
    per module (several tests read each)."""
    cache = {}

    def get(mode, backend):
        if (mode, backend) in cache:
            return cache[mode, backend]
        if backend == "tensorflow":
            found = getattr(layer_faults_script, mode)()
        else:
            if importlib.util.find_spec(backend) is None:
                pytest.fail(f"{backend} is in requirements-test.txt and must be installed")
            target = tmp_path_factory.mktemp("layer_faults") / f"{mode}_{backend}.npz"
            env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'tests'}")
            env.setdefault("JAX_PLATFORMS", "cpu")
            done = subprocess.run([sys.executable, str(REPO / "tests" / "layer_faults_script.py"), mode, str(target)],
                                  env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
            with np.load(target) as loaded:
                found = dict(loaded)
            assert str(found.pop("backend")) == backend
        cache[mode, backend] = found
        return found

    return get


# 20. tf.data on every backend --------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow"] + OTHER_BACKENDS)
def test_tf_data_pipeline_augments_images_and_targets(backend, results):
    """In `Dataset.map` the layer augments images and dicts (masks keep
    their dtype), draws anew each epoch, returns its input at inference and
    keeps one variable (its own seed state: the TensorFlow generator it uses
    there is not tracked, so nothing changes in a saved model); the
    standardization layers run there too, with their eager values."""
    found = results("tf_data", backend)
    images = _data_images()
    assert found["images_0_0"].shape == (4, 16, 20, 3) and not np.allclose(found["images_0_0"], images[:4])
    assert not np.array_equal(found["images_0_0"], found["images_1_0"])  # a new draw in epoch 2
    assert not np.array_equal(found["images_0_0"], found["images_0_1"])
    np.testing.assert_array_equal(found["inference"], images[:4])
    assert found["variables"].tolist() == ["seed_generator/seed_generator_state"]
    for step in range(2):
        assert found[f"masks_{step}"].dtype == np.uint8 and found[f"boxes_{step}"].shape == (4, 2, 4)
        assert set(np.unique(found[f"masks_{step}"])) <= set(range(5)) | {255}
        assert found[f"keypoints_{step}"].shape == (4, 3, 2)
    for k in range(4):
        assert found[f"standardization_{k}"] <= 1e-5, k
    assert str(found["eager_type"]).split(".")[0] == {"tensorflow": "tensorflow", "jax": "jaxlib",
                                                       "torch": "torch"}[backend]


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_tf_data_on_other_backends_runs_tensorflows_functions(backend, results):
    """On JAX and PyTorch the pipeline computes exactly what it computes on
    the TensorFlow backend: the same TensorFlow functions (the warp's
    gather choices included, which follow `gpuaug.backend.name()`) and a
    TensorFlow seed generator with the layer's seed."""
    found, expected = results("tf_data", backend), results("tf_data", "tensorflow")
    for key, value in expected.items():
        if key not in ("eager_type",) and not key.startswith("standardization"):
            np.testing.assert_array_equal(found[key], value, err_msg=key)


def _data_images():
    return layer_faults_script._data()["images"]


def test_every_op_gpuaug_calls_has_a_tensorflow_function():
    """Inside `tensorflow_scope()` every `ops.<name>` and `random.<name>` that
    gpuaug's modules write resolves to Keras' TensorFlow backend (a name
    without one would fail only inside a pipeline on another backend)."""
    from gpuaug import backend

    used = set()
    for path in (REPO / "gpuaug").glob("*.py"):
        text = path.read_text()
        used |= {("ops", name) for name in re.findall(r"\bops\.([a-z_]+)\(", text)}
        used |= {("random", name) for name in re.findall(r"\brandom\.([a-z_]+)\(", text)}
    used.discard(("ops", "convert_to_numpy"))  # host side only (layer constructors)
    assert ("ops", "take_along_axis") in used and ("random", "uniform") in used
    with backend.tensorflow_scope():
        assert backend.name() == "tensorflow"
        for namespace, name in sorted(used):
            function = getattr(getattr(backend, namespace), name)
            assert function.__module__.startswith("keras.src.backend.tensorflow"), (namespace, name)
    assert backend.ops.cast is keras.ops.cast and backend.random.uniform is keras.random.uniform


def test_backend_name_and_the_warps_choices_follow_the_scope_on_jax():
    code = (
        "import json, gpuaug\n"
        "from gpuaug import backend, warp\n"
        "def state():\n"
        "    return [backend.name(), warp.gather_form(), warp.x64_available(), warp.choose_index_mode(None, 8, 8)]\n"
        "outside = state()\n"
        "with backend.tensorflow_scope():\n"
        "    inside = state()\n"
        "print(json.dumps([outside, inside, state()]))\n"
    )
    done = run_python(code, backend="jax")
    assert done.returncode == 0, done.stderr[-3000:]
    outside, inside, after = json.loads(done.stdout.strip().splitlines()[-1])
    assert outside == after == ["jax", "scalar", False, "per_image"]
    assert inside == ["tensorflow", "separate", True, "int64"]


# 21. Seeds and argument types ---------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow"] + OTHER_BACKENDS)
def test_seeds_follow_one_rule_on_every_backend(backend, results):
    """0 and 2**32 - 1 (numpy's range) draw: distinct values, new ones on the
    next call, the same from a numpy seed; -1 and 2**32 are refused with a
    ValueError naming `seed` (JAX raised OverflowError, TensorFlow wrapped),
    by the layer and by `sample_transformation`."""
    found = results("seeds", backend)
    for label in ("zero", "top", "numpy_top", "numpy", "three"):
        assert f"{label}_error" not in found, found.get(f"{label}_error")
        theta, perspective = found[f"{label}_theta"], found[f"{label}_perspective"]
        assert np.all(np.abs(theta) <= 30) and len(np.unique(theta)) == theta.size  # two calls, 16 images each
        assert np.all(np.abs(perspective) <= 0.2 * 7 / 2 + 1e-6) and not np.array_equal(*perspective)
        assert np.all(np.isfinite(found.get(f"{label}_call", 0.0)))
    assert "top_call" in found and not np.array_equal(found["top_call"], found["zero_call"])
    assert not np.array_equal(found["zero_theta"], found["top_theta"])
    np.testing.assert_array_equal(found["numpy_top_theta"], found["top_theta"])
    np.testing.assert_array_equal(found["numpy_theta"], found["three_theta"])
    assert str(found["numpy_config_seed"]) == "3" and str(found["numpy_top_config_seed"]) == str(2**32 - 1)
    for label in ("minus_one", "past_top", "function_minus_one", "function_past_top"):
        error = str(found[f"{label}_error"])
        assert error.startswith("ValueError: `seed` must be None or an integer") and "2**32 - 1" in error, error


BAD_TYPES = [
    (dict(seed=-1), "seed"), (dict(seed=2**32), "seed"), (dict(seed=True), "seed"),
    (dict(seed=np.bool_(True)), "seed"), (dict(seed=np.float64(3.0)), "seed"), (dict(seed="3"), "seed"),
    (dict(horizontal_flip=2), "horizontal_flip"), (dict(vertical_flip=0.5), "vertical_flip"),
    (dict(vertical_flip=None), "vertical_flip"), (dict(horizontal_flip=np.float32(1)), "horizontal_flip"),
    (dict(mask_fill_value=True), "mask_fill_value"), (dict(mask_fill_value=np.bool_(False)), "mask_fill_value"),
    (dict(mask_fill_value="255"), "mask_fill_value"), (dict(interpolation_order=np.bool_(True)), "interpolation_order"),
]


@pytest.mark.parametrize("kwargs, name", BAD_TYPES, ids=lambda v: str(v))
def test_bad_seeds_flags_and_numbers_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}` must be") as info:
        gpuaug.RandomTransform(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(info.value)


NUMPY_FORMS = dict(seed=np.int64(3), mask_fill_value=np.int64(255), horizontal_flip=1, vertical_flip=np.bool_(True),
                   rotation_range=np.float32(10), width_shift_range=np.int64(3), height_shift_range=np.float32(0.25),
                   zoom_range=np.array([0.75, 1.25], "float32"), shear_range=np.int32(5), cval=np.float32(2.0),
                   channel_shift_range=np.float64(4.0), brightness_range=(np.float32(0.5), 1.5),
                   interpolation_order=np.int64(0), perspective_range=np.float32(0.25),
                   distortion_range=np.array([0.125]))
PYTHON_FORMS = dict(seed=3, mask_fill_value=255, horizontal_flip=True, vertical_flip=True, rotation_range=10.0,
                    width_shift_range=3, height_shift_range=0.25, zoom_range=[0.75, 1.25], shear_range=5, cval=2.0,
                    channel_shift_range=4.0, brightness_range=[0.5, 1.5], interpolation_order=0,
                    perspective_range=0.25, distortion_range=[0.125])


def _plain(value):
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_plain(v) for v in value.values())
    return value is None or type(value) in (bool, int, float, str)


def test_numpy_scalars_and_integer_flags_are_accepted_and_configs_hold_python_values(tmp_path):
    """The forms ImageDataGenerator takes: numpy seeds and numbers, 0/1 and
    numpy bools as flags. The config holds plain Python values (JSON), the
    same as the Python forms give, and the layer draws as the Python-form
    layer does; a model holding it saves and reloads."""
    layer = gpuaug.RandomTransform(**NUMPY_FORMS)
    config = layer.get_config()
    assert _plain(config) and json.loads(json.dumps(config)) == config
    python = gpuaug.RandomTransform(**PYTHON_FORMS).get_config()
    assert {key: config[key] for key in PYTHON_FORMS} == {key: python[key] for key in PYTHON_FORMS}
    assert type(config["width_shift_range"]) is int and type(config["rotation_range"]) is float  # forms kept
    assert gpuaug.RandomTransform(horizontal_flip=0).get_config()["horizontal_flip"] is False
    images = np.random.default_rng(0).uniform(0, 255, (6, 12, 16, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(layer(images, training=True)),
                                  np.asarray(gpuaug.RandomTransform(**PYTHON_FORMS)(images, training=True)))

    inputs = keras.Input((12, 16, 3))
    model = keras.Model(inputs, gpuaug.RandomTransform(**NUMPY_FORMS, name="augment")(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert {**loaded.get_layer("augment").get_config(), "name": None} == {**config, "name": None}
    np.testing.assert_array_equal(np.asarray(loaded.get_layer("augment")(images, training=True)),
                                  np.asarray(gpuaug.RandomTransform(**PYTHON_FORMS)(images, training=True)))


# 22. Perspective and lens change no other draw ----------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow"] + OTHER_BACKENDS)
def test_perspective_and_lens_change_no_other_draw(backend, results):
    """Same seed, two successive calls: the reference's keys are identical
    with and without perspective and lens; the perspective's draws do not
    depend on the lens, nor k1's on k2; the seed generator advances the same
    way (so the next batch's draws do not change either)."""
    found = results("streams", backend)
    extras = layer_faults_script.EXTRAS
    for call in range(2):
        for name in extras:
            for key in layer_faults_script.REFERENCE_KEYS:
                np.testing.assert_array_equal(found[f"{name}_{call}_{key}"], found[f"none_{call}_{key}"],
                                              err_msg=f"{name} {call} {key}")
            np.testing.assert_array_equal(found[f"{name}_{call}_state"], found[f"none_{call}_state"])
        np.testing.assert_array_equal(found[f"both_{call}_perspective"], found[f"perspective_{call}_perspective"])
        for lens in ("both", "lens_k2"):
            np.testing.assert_array_equal(found[f"{lens}_{call}_distortion_k1"], found[f"lens_{call}_distortion_k1"])
        # The extra streams are new numbers, not copies of the reference's.
        assert not np.array_equal(found["perspective_0_perspective"], found["perspective_1_perspective"])
        assert np.abs(np.corrcoef(found[f"lens_{call}_distortion_k1"], found[f"none_{call}_theta"])[0, 1]) < 0.99
    assert "none_0_perspective" not in found and "lens_0_distortion_k2" not in found


def test_draws_without_perspective_or_lens_are_those_of_one_uniform_call():
    """With neither on, the draws are what they were (users' seeded runs):
    one `keras.random.uniform((N, columns))` from the layer's seed, in the
    columns' order. (A guard: it holds on the 0.1.0 release too.)"""
    layer = gpuaug.RandomTransform(rotation_range=20, shear_range=5, zoom_range=0.2, horizontal_flip=True, seed=5)
    generator = keras.random.SeedGenerator(5)
    images = np.zeros((10, 8, 8, 1), "float32")
    for _ in range(2):
        drawn = layer.get_random_transformation(images)
        u = np.asarray(keras.random.uniform((10, 5), dtype="float32", seed=generator))  # theta, shear, zx, zy, flip
        np.testing.assert_array_equal(np.asarray(drawn["theta"]), np.float32(-20) + np.float32(40) * u[:, 0])
        np.testing.assert_array_equal(np.asarray(drawn["shear"]), np.float32(-5) + np.float32(10) * u[:, 1])
        np.testing.assert_array_equal(np.asarray(drawn["flip_horizontal"]), u[:, 4] < 0.5)


@pytest.mark.slow
def test_replicas_still_draw_apart_with_perspective_under_mirrored_strategy():
    """tf.distribute's per-replica offset (`ReplicaSeedGenerator`) reaches the
    extra streams: two replicas draw different perspectives, and each
    replica's reference draws are the ones it draws without perspective."""
    code = (
        "import json, numpy as np, tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "import gpuaug\n"
        "strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])\n"
        "out = {}\n"
        "for name, extra in (('none', {}), ('perspective', {'perspective_range': 0.3})):\n"
        "    with strategy.scope():\n"
        "        layer = gpuaug.RandomTransform(rotation_range=30, width_shift_range=0.2, seed=4, **extra)\n"
        "        layer.build((None, 8, 8, 1))\n"
        "    @tf.function\n"
        "    def draw(images):\n"
        "        def replica(batch):\n"
        "            t = layer.get_random_transformation(batch)\n"
        "            p = t.get('perspective', tf.zeros((4, 4, 2)))\n"
        "            return tf.stack([t['theta'], t['ty']], -1), tf.reshape(p, (-1, 8))\n"
        "        return strategy.run(replica, args=(images,))\n"
        "    data = tf.data.Dataset.from_tensor_slices(np.zeros((8, 8, 8, 1), 'float32')).batch(8)\n"
        "    for batch in strategy.experimental_distribute_dataset(data):\n"
        "        reference, perspective = draw(batch)\n"
        "        out[name] = [[r.numpy().tolist() for r in strategy.experimental_local_results(v)]\n"
        "                     for v in (reference, perspective)]\n"
        "print(json.dumps(out))\n"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    (none_reference, _), (reference, perspective) = out["none"], out["perspective"]
    assert reference == none_reference and len(reference) == 2
    assert reference[0] != reference[1] and perspective[0] != perspective[1]


# The reference's dicts (Python numbers) on every backend --------------------------

@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow"] + OTHER_BACKENDS)
def test_a_dict_of_python_numbers_applies_on_every_backend(backend, results):
    """`get_random_transform` returns Python floats and ints; on JAX and
    PyTorch `ops.shape` of a Python float raised AttributeError in every
    transform_* method. Now the reference's own dict replays its pixels, and
    plain numbers give TensorFlow's matrices and targets."""
    found, on_tensorflow = results("python_numbers", backend), results("python_numbers", "tensorflow")
    assert found["difference"] < 1e-3
    for key in ("matrices", "keypoints", "masks"):
        np.testing.assert_allclose(found[key], on_tensorflow[key], atol=1e-4)
    assert not np.array_equal(found["masks"][0], np.arange(64).reshape(8, 8))  # they moved


# Numbers that float32 cannot hold -----------------------------------------------

@pytest.mark.parametrize("name, large", [
    ("rotation_range", 1e39), ("shear_range", 1e39), ("width_shift_range", 1e39), ("height_shift_range", [2, 1e39]),
    ("zoom_range", [0.5, 1e39]), ("brightness_range", [0.5, 1e39]), ("channel_shift_range", 1e39), ("cval", -1e39),
])
def test_a_range_float32_cannot_hold_is_refused_by_name(name, large):
    """Finite in float64, accepted before, then drawn in float32: inf, and
    an all-NaN batch on JAX or a gather out of range on TensorFlow. Now a
    ValueError names the argument; at the largest accepted magnitude every
    pixel stays finite."""
    extra = {"fill_mode": "constant"} if name == "cval" else {}
    with pytest.raises(ValueError, match=f"`{name}` must hold numbers of magnitude at most 1e"):
        gpuaug.RandomTransform(**{name: large}, **extra)
    accepted = [v if abs(v) < 1e30 else np.sign(v) * 1e30 for v in large] if isinstance(large, list) else 1e30
    if name == "cval":
        accepted = -1e30
    layer = gpuaug.RandomTransform(**{name: accepted}, **extra, seed=0)
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    assert np.isfinite(keras.ops.convert_to_numpy(layer(images, training=True))).all()
