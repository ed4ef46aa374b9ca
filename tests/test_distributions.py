"""The layer's parameters follow `ImageDataGenerator.get_random_transform`.

For each argument form, DRAWS parameters come from the layer (one batch) and
from the reference (one call per image, numpy seeded), on a non-square image
so that scaling by the wrong side is caught. Continuous parameters: two-sample
Kolmogorov-Smirnov test; discrete ones: same support and a chi-square test of
the counts. Seeds are fixed, so the outcome is deterministic; P_MIN = 1e-3.
"""

import numpy as np
import pytest
from keras.src.legacy.preprocessing.image import ImageDataGenerator
from scipy import stats

import gpuaug

DRAWS = 4000
P_MIN = 1e-3
SHAPE = (20, 40, 1)  # height 20, width 40


def draw_both(**kwargs):
    layer = gpuaug.RandomTransform(seed=11, **kwargs)
    ours = layer.get_random_transformation(np.zeros((DRAWS,) + SHAPE, "float32"))
    ours = {k: None if v is None else np.asarray(v, "float64") for k, v in ours.items()}
    generator = ImageDataGenerator(**kwargs)
    np.random.seed(12)
    draws = [generator.get_random_transform(SHAPE) for _ in range(DRAWS)]
    reference = {
        key: None if draws[0][key] is None else np.array([d[key] for d in draws], "float64")
        for key in draws[0]
    }
    return ours, reference


def assert_same_continuous(ours, reference):
    assert stats.ks_2samp(ours, reference).pvalue > P_MIN


def assert_same_discrete(ours, reference):
    support = np.union1d(ours, reference)
    assert set(np.unique(ours)) == set(np.unique(reference)) == set(support)
    counts = np.array(
        [[np.sum(ours == v) for v in support], [np.sum(reference == v) for v in support]]
    )
    if len(support) > 1:
        assert stats.chi2_contingency(counts).pvalue > P_MIN


CONTINUOUS = [
    ("theta", dict(rotation_range=30)),
    ("shear", dict(shear_range=17.5)),
    ("tx", dict(height_shift_range=0.3)),  # fraction of the HEIGHT
    ("ty", dict(width_shift_range=0.3)),  # fraction of the width
    ("tx", dict(height_shift_range=4.5)),  # float >= 1: pixels
    ("ty", dict(width_shift_range=2.0)),
    ("zx", dict(zoom_range=0.25)),
    ("zy", dict(zoom_range=0.25)),
    ("zx", dict(zoom_range=[0.5, 2.0])),
    ("zy", dict(zoom_range=(0.8, 0.9))),
    ("channel_shift_intensity", dict(channel_shift_range=40.0)),
    ("brightness", dict(brightness_range=[0.4, 1.7])),
]
DISCRETE = [
    ("tx", dict(height_shift_range=5)),  # int: 0..4 with a random sign
    ("ty", dict(width_shift_range=3)),
    ("tx", dict(height_shift_range=[0.1, 0.25])),  # list of fractions
    ("ty", dict(width_shift_range=[1, 2, 5])),  # list of pixels
    ("ty", dict(width_shift_range=(0.5, 3.0))),
    ("flip_horizontal", dict(horizontal_flip=True)),
    ("flip_vertical", dict(vertical_flip=True)),
    ("flip_horizontal", dict(horizontal_flip=False)),
]


@pytest.mark.parametrize("key, kwargs", CONTINUOUS, ids=lambda v: str(v))
def test_continuous_parameters(key, kwargs):
    ours, reference = draw_both(**kwargs)
    assert_same_continuous(ours[key], reference[key])


@pytest.mark.parametrize("key, kwargs", DISCRETE, ids=lambda v: str(v))
def test_discrete_parameters(key, kwargs):
    ours, reference = draw_both(**kwargs)
    assert_same_discrete(ours[key], reference[key])


def test_zoom_factors_are_independent():
    ours, _ = draw_both(zoom_range=0.3)
    assert abs(np.corrcoef(ours["zx"], ours["zy"])[0, 1]) < 0.05
    assert not np.allclose(ours["zx"], ours["zy"])


def test_all_parameters_together_and_unused_keys():
    kwargs = dict(
        rotation_range=20, width_shift_range=0.1, height_shift_range=3,
        shear_range=5, zoom_range=0.1, horizontal_flip=True,
    )
    ours, reference = draw_both(**kwargs)
    assert set(ours) == set(reference)
    for key in ("theta", "ty", "shear", "zx", "zy"):
        assert_same_continuous(ours[key], reference[key])
    for key in ("tx", "flip_horizontal", "flip_vertical"):
        assert_same_discrete(ours[key], reference[key])
    # Unset colour ranges give None, as in the reference.
    assert ours["channel_shift_intensity"] is None is reference["channel_shift_intensity"]
    assert ours["brightness"] is None is reference["brightness"]


def test_a_wrong_scale_would_be_caught():
    """The KS test used above rejects a shift scaled by the other side."""
    ours, reference = draw_both(height_shift_range=0.3)
    assert stats.ks_2samp(ours["tx"] * 2.0, reference["tx"]).pvalue < P_MIN
