"""Masks, boxes and keypoints moved with their images: masks against the
reference's images-and-masks idiom (two ImageDataGenerators, the mask one with
interpolation_order=0), boxes against the box of a warped filled rectangle,
keypoints against a warped marked pixel, and training with augmented masks
inside a jit-compiled step (TensorFlow here, JAX in a subprocess)."""

import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras.src.legacy.preprocessing.image import ImageDataGenerator

import gpuaug
from conftest import REPO, run_python
from gpuaug import targets
from gpuaug.reference import reference_apply

FILL_MODES = ["constant", "nearest", "reflect", "wrap"]
GEOMETRY = dict(rotation_range=35, width_shift_range=0.2, height_shift_range=0.2, shear_range=15,
                zoom_range=[0.7, 1.3], horizontal_flip=True, vertical_flip=True)


def label_images(n=6, height=20, width=24, classes=5, seed=0):
    """Blocky label maps (N, H, W, 1): regions of 4x4 pixels, classes 0..K-1."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, classes, (n, height // 4, width // 4, 1))
    return np.repeat(np.repeat(blocks, 4, axis=1), 4, axis=2)


@pytest.mark.parametrize("fill_mode", FILL_MODES)
@pytest.mark.parametrize("dtype", ["uint8", "int32", "float32"])
def test_masks_equal_the_reference_idiom(fill_mode, dtype):
    masks = label_images().astype(dtype)
    images = np.random.default_rng(1).uniform(0, 255, masks.shape[:3] + (3,)).astype("float32")
    layer = gpuaug.RandomTransform(**GEOMETRY, channel_shift_range=30.0, fill_mode=fill_mode, cval=7.0,
                                   mask_fill_value=9, seed=3)
    transformation = layer.get_random_transformation(images)
    ours = np.asarray(layer.transform_segmentation_masks(masks, transformation))
    # The documented idiom: a second generator with the same arguments, order 0
    # for the masks (and the mask's fill value as its cval).
    mask_generator = ImageDataGenerator(**GEOMETRY, fill_mode=fill_mode, cval=9.0, interpolation_order=0)
    expected = reference_apply(mask_generator, masks.astype("float64"),
                               dict(transformation, channel_shift_intensity=None))
    assert ours.dtype == np.dtype(dtype)  # dtype kept
    np.testing.assert_array_equal(ours, expected.astype(dtype))
    assert not np.array_equal(ours, masks)


def test_mask_fill_value_is_the_masks_own():
    masks = np.ones((2, 8, 8, 1), "int32")
    layer = gpuaug.RandomTransform(fill_mode="constant", cval=50.0, mask_fill_value=255)
    moved = np.asarray(layer.transform_segmentation_masks(masks, {"tx": np.array([3.0, -3.0])}))
    assert set(np.unique(moved)) == {1, 255}
    shifted = layer.transform_images(masks.astype("float32"), {"tx": np.array([3.0, 3.0])})
    assert set(np.unique(np.asarray(shifted))) == {1.0, 50.0}


def test_images_and_masks_agree():
    """A label image given as images (order 0) and as masks comes out the same."""
    labels = label_images(seed=2)
    layer = gpuaug.RandomTransform(**GEOMETRY, interpolation_order=0, fill_mode="reflect", seed=5)
    out = layer({"images": labels.astype("float32"), "segmentation_masks": labels, "labels": np.arange(6)},
                training=True)
    np.testing.assert_array_equal(np.asarray(out["images"]).astype("int64"), np.asarray(out["segmentation_masks"]))
    np.testing.assert_array_equal(np.asarray(out["labels"]), np.arange(6))  # passed through
    assert not np.array_equal(np.asarray(out["segmentation_masks"]), labels)
    # Rank-3 masks (N, H, W) work too and match.
    rank3 = gpuaug.RandomTransform(**GEOMETRY, interpolation_order=0, seed=5)
    t = rank3.get_random_transformation(labels)
    np.testing.assert_array_equal(np.asarray(rank3.transform_segmentation_masks(labels[..., 0], t)),
                                  np.asarray(rank3.transform_segmentation_masks(labels, t))[..., 0])


def box_of(mask):
    """xyxy (pixel edges) of the nonzero pixels of a (H, W) mask."""
    rows, cols = np.nonzero(mask)
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], "float32")


RECTANGLES = np.array([[3, 4, 11, 9], [10, 2, 20, 14], [1, 1, 6, 17]], "float32")  # xyxy


def rectangles(height=20, width=24):
    masks = np.zeros((len(RECTANGLES), height, width, 1), "int32")
    for mask, (x1, y1, x2, y2) in zip(masks, RECTANGLES.astype(int)):
        mask[y1:y2, x1:x2] = 1
    return masks


@pytest.mark.parametrize("kwargs", [dict(width_shift_range=0.2, height_shift_range=0.3),
                                    dict(zoom_range=[0.6, 1.4]), dict(horizontal_flip=True, vertical_flip=True),
                                    dict(width_shift_range=3, zoom_range=0.2, horizontal_flip=True)])
@pytest.mark.parametrize("shift_axes, center", [("reference", "reference"), ("named", "image")])
def test_boxes_equal_the_box_of_the_warped_rectangle(kwargs, shift_axes, center):
    masks = rectangles()  # 20 x 24: not square, so the two centres differ
    layer = gpuaug.RandomTransform(**kwargs, bounding_box_format="xyxy", fill_mode="constant", seed=11,
                                   shift_axes=shift_axes, center=center)
    for seed in range(4):
        t = layer.get_random_transformation(masks, seed=seed)
        warped = np.asarray(layer.transform_segmentation_masks(masks, t))
        boxes = np.asarray(layer.transform_bounding_boxes({"boxes": RECTANGLES[:, None]}, t, 20, 24)["boxes"])
        for box, mask in zip(boxes[:, 0], warped[..., 0]):
            if mask.any():
                np.testing.assert_allclose(box, box_of(mask), atol=1.0, err_msg=str(t))


@pytest.mark.parametrize("shift_axes, center", [("reference", "reference"), ("named", "image")])
def test_with_rotation_the_box_contains_the_warped_rectangle(shift_axes, center):
    masks = rectangles()
    layer = gpuaug.RandomTransform(rotation_range=45, shear_range=20, zoom_range=0.2, width_shift_range=0.1,
                                   bounding_box_format="xyxy", fill_mode="constant", seed=2,
                                   shift_axes=shift_axes, center=center)
    for seed in range(6):
        t = layer.get_random_transformation(masks, seed=seed)
        warped = np.asarray(layer.transform_segmentation_masks(masks, t))
        boxes = np.asarray(layer.transform_bounding_boxes({"boxes": RECTANGLES[:, None]}, t, 20, 24)["boxes"])
        for box, mask in zip(boxes[:, 0], warped[..., 0]):
            # A mask pixel is in when its centre pulls from the rectangle, so
            # its other half may stick out by up to half a pixel.
            inner = box_of(mask)
            assert box[0] <= inner[0] + 0.5 and box[1] <= inner[1] + 0.5
            assert box[2] >= inner[2] - 0.5 and box[3] >= inner[3] - 0.5


@pytest.mark.parametrize("bounding_box_format", targets.BOX_FORMATS)
def test_every_box_format_round_trips_and_moves_like_xyxy(bounding_box_format):
    boxes = keras.utils.bounding_boxes.convert_format(RECTANGLES[:, None], source="xyxy",
                                                      target=bounding_box_format, height=20, width=24)
    layer = gpuaug.RandomTransform(bounding_box_format=bounding_box_format)
    unmoved = layer.transform_bounding_boxes({"boxes": boxes}, {"tx": np.zeros(3)}, 20, 24)["boxes"]
    np.testing.assert_allclose(np.asarray(unmoved), np.asarray(boxes), atol=1e-4)
    t = {"tx": np.array([2.0, -3.0, 1.0]), "zx": np.array([1.2, 0.9, 1.0]), "flip_horizontal": np.array([1, 0, 1])}
    moved = layer.transform_bounding_boxes({"boxes": boxes}, t, 20, 24)["boxes"]
    reference = gpuaug.RandomTransform(bounding_box_format="xyxy").transform_bounding_boxes(
        {"boxes": RECTANGLES[:, None]}, t, 20, 24)["boxes"]
    np.testing.assert_allclose(np.asarray(keras.utils.bounding_boxes.convert_format(
        moved, source=bounding_box_format, target="xyxy", height=20, width=24)), np.asarray(reference), atol=1e-3)


def test_boxes_that_leave_the_image_are_marked_as_keras_marks_them():
    layer = gpuaug.RandomTransform(bounding_box_format="xyxy")
    out = layer.transform_bounding_boxes({"boxes": RECTANGLES[:2, None], "labels": np.array([[4], [5]])},
                                         {"tx": np.array([0.0, 0.0]), "ty": np.array([40.0, 2.0])}, 20, 24)
    np.testing.assert_array_equal(np.asarray(out["labels"]), [[-1], [5]])  # shifted out: no area, label -1
    assert np.all(np.asarray(out["boxes"]) >= 0) and np.all(np.asarray(out["boxes"])[..., 2] <= 24)


def forward_float64(layer, transformation, height, width, x, y):
    """Where the point (x, y) (continuous pixel coordinates) of image 0 goes,
    by the inverse of its pull matrix in float64 (numpy's own inverse)."""
    pull = np.asarray(layer._geometry(transformation, height, width).matrices, "float64")[0]
    fx, fy, w = np.linalg.inv(pull) @ np.array([x - 0.5, y - 0.5, 1.0])
    return fx / w + 0.5, fy / w + 0.5


def test_a_keypoint_on_a_marked_pixel_lands_on_the_marked_pixel():
    height, width = 24, 28
    rng = np.random.default_rng(4)
    layer = gpuaug.RandomTransform(rotation_range=40, width_shift_range=0.15, height_shift_range=0.15,
                                   zoom_range=0.15, horizontal_flip=True, vertical_flip=True,
                                   interpolation_order=0, fill_mode="constant", seed=6)
    checked = flagged = 0
    for trial in range(40):
        row, col = rng.integers(1, height - 1), rng.integers(1, width - 1)
        image = np.zeros((1, height, width, 1), "float32")
        image[0, row - 1:row + 2, col - 1:col + 2] = 1.0  # a 3x3 mark around (row, col)
        keypoints = np.array([[[col + 0.5, row + 0.5]]], "float32")  # the centre of its middle pixel
        t = layer.get_random_transformation(image)
        out = {"images": layer.transform_images(image, t), "transformation": t,
               "keypoints": layer.transform_keypoints(keypoints, t, height, width)}
        x, y = np.asarray(out["keypoints"])[0, 0]
        if x < 0:  # flagged: its float64 forward image must be outside the image
            assert (x, y) == (-1.0, -1.0)
            fx, fy = forward_float64(layer, out["transformation"], height, width, col + 0.5, row + 0.5)
            assert not (0 <= fx < width and 0 <= fy < height), (trial, fx, fy)
            flagged += 1
            continue
        assert np.asarray(out["images"])[0, int(y), int(x), 0] == 1.0, (trial, x, y)
        checked += 1
    assert checked >= 8 and flagged >= 1, (checked, flagged)


def test_keypoints_that_leave_the_image_get_the_sentinel():
    layer = gpuaug.RandomTransform()
    moved = np.asarray(layer.transform_keypoints(np.array([[[2.0, 3.0], [20.0, 3.0]]], "float32"),
                                                 {"tx": np.array([-5.0])}, 16, 24))
    # tx = -5 pulls from 5 pixels to the left: content moves 5 pixels right.
    np.testing.assert_allclose(moved, [[[7.0, 3.0], [-1.0, -1.0]]])


@pytest.mark.parametrize("settings", [
    dict(GEOMETRY),
    dict(GEOMETRY, data_format="channels_first", fill_mode="constant"),
    dict(rotation_range=10, perspective_range=0.3, distortion_range=[0.1, 0.02], fill_mode="reflect"),
], ids=["affine", "channels-first", "perspective-and-lens"])
def test_a_dict_call_computes_one_geometry_for_the_images_and_every_target(monkeypatch, settings):
    """One `geometry.geometry` (matrices, lens) and one inverse per call, not
    one per target; the outputs bit for bit those of the public per-target
    hooks called alone with the same transformation (each computing its own)."""
    from gpuaug import geometry as geometry_lib, matrices as matrices_lib

    calls = {"geometry": 0, "invert": 0}

    def counted(function, key):
        def wrapper(*args, **kwargs):
            calls[key] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(geometry_lib, "geometry", counted(geometry_lib.geometry, "geometry"))
    monkeypatch.setattr(matrices_lib, "invert", counted(matrices_lib.invert, "invert"))
    rng = np.random.default_rng(8)
    height, width = 20, 24
    first = settings.get("data_format") == "channels_first"
    images = rng.uniform(0, 255, (5, 3, height, width) if first else (5, height, width, 3)).astype("float32")
    masks = rng.integers(0, 5, (5, 1, height, width) if first else (5, height, width, 1)).astype("int32")
    boxes = {"boxes": np.tile(RECTANGLES[None, :3], (5, 1, 1)).astype("float32"), "labels": np.ones((5, 3), "int32")}
    keypoints = rng.uniform(0, 20, (5, 6, 2)).astype("float32")
    data = {"images": images, "segmentation_masks": masks, "bounding_boxes": boxes, "keypoints": keypoints,
            "labels": np.arange(5)}
    layer = gpuaug.RandomTransform(**settings, bounding_box_format="xyxy", seed=5)
    out = layer(data, training=True)
    assert calls == {"geometry": 1, "invert": 1}
    assert "_call_geometry" not in layer.__dict__  # nothing of the call kept

    alone = gpuaug.RandomTransform(**settings, bounding_box_format="xyxy", seed=5)
    t = alone.get_random_transformation(images)
    expected = {"images": alone.transform_images(images, t),
                "segmentation_masks": alone.transform_segmentation_masks(masks, t),
                "bounding_boxes": alone.transform_bounding_boxes(boxes, t, height, width),
                "keypoints": alone.transform_keypoints(keypoints, t, height, width)}
    assert calls == {"geometry": 5, "invert": 3}  # the hooks alone: one geometry each, boxes and keypoints invert
    assert set(out) == set(data) == set(targets.DICT_KEYS)
    for key, value in expected.items():
        for ours, theirs in zip(keras.tree.flatten(out[key]), keras.tree.flatten(value)):
            ours, theirs = np.asarray(ours), np.asarray(theirs)
            assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), key
    np.testing.assert_array_equal(np.asarray(out["labels"]), data["labels"])

    class StillKeypoints(gpuaug.RandomTransform):  # the dict call goes through the public hooks
        def transform_keypoints(self, keypoints, transformation, height, width):
            return keypoints

    kept = StillKeypoints(**settings, bounding_box_format="xyxy", seed=5)(data, training=True)
    np.testing.assert_array_equal(np.asarray(kept["keypoints"]), keypoints)
    np.testing.assert_array_equal(np.asarray(kept["segmentation_masks"]), np.asarray(out["segmentation_masks"]))


def test_the_target_keys_are_one_table():
    assert targets.DICT_KEYS == ("images", "labels", "bounding_boxes", "segmentation_masks", "keypoints")
    assert targets.MOVED == ("bounding_boxes", "segmentation_masks", "keypoints")
    layer = gpuaug.RandomTransform(rotation_range=10)
    with pytest.raises(ValueError) as info:
        layer({"images": np.zeros((1, 4, 4, 1)), "masks": np.zeros((1, 4, 4))}, training=True)
    assert ("A dict input needs 'images' and may have 'labels', 'bounding_boxes', 'segmentation_masks', "
            "'keypoints'; received keys ['images', 'masks'].") in str(info.value)
    with pytest.raises(ValueError) as info:
        gpuaug.TrainWithTargets(keras.Sequential([]), layer, target="labels")
    assert str(info.value) == ("`target` must be one of 'segmentation_masks', 'bounding_boxes', 'keypoints'. "
                               "Received: 'labels'")
    for target in targets.MOVED:
        assert gpuaug.TrainWithTargets(keras.Sequential([]), layer, target=target).target == target


def test_inference_passes_targets_through_and_bad_inputs_are_value_errors():
    layer = gpuaug.RandomTransform(**GEOMETRY)
    data = {"images": np.zeros((2, 8, 8, 3), "uint8"), "segmentation_masks": np.ones((2, 8, 8, 1), "int32")}
    out = layer(data, training=False)
    assert np.asarray(out["images"]).dtype == np.float32
    np.testing.assert_array_equal(np.asarray(out["segmentation_masks"]), data["segmentation_masks"])
    with pytest.raises(ValueError, match="'images'"):
        layer({"segmentation_masks": data["segmentation_masks"]}, training=True)
    with pytest.raises(ValueError, match="bounding_box_format"):
        layer({"images": data["images"], "bounding_boxes": {"boxes": np.zeros((2, 1, 4))}}, training=True)
    with pytest.raises(ValueError, match="bounding_box_format"):
        gpuaug.RandomTransform(bounding_box_format="corners")
    with pytest.raises(ValueError, match="mask_fill_value"):
        gpuaug.RandomTransform(mask_fill_value="ignore")
    config = gpuaug.RandomTransform(bounding_box_format="center_xywh", mask_fill_value=255).get_config()
    again = gpuaug.RandomTransform.from_config(config)
    assert again.bounding_box_format == "center_xywh" and again.mask_fill_value == 255


def test_dict_inputs_in_a_functional_model_and_in_tf_data():
    import tensorflow as tf

    layer = gpuaug.RandomTransform(**GEOMETRY, bounding_box_format="xyxy", seed=0)
    inputs = {"images": keras.Input((20, 24, 1), name="images"),
              "segmentation_masks": keras.Input((20, 24, 1), dtype="int32", name="segmentation_masks"),
              "keypoints": keras.Input((3, 2), name="keypoints")}
    outputs = layer(inputs)
    assert outputs["images"].dtype == "float32" and outputs["segmentation_masks"].dtype == "int32"
    assert outputs["keypoints"].shape == (None, 3, 2)
    labels = label_images()
    data = {"images": labels.astype("float32"), "segmentation_masks": labels.astype("int32"),
            "keypoints": np.full((6, 3, 2), 5.5, "float32")}
    model = keras.Model(inputs, outputs)
    predicted = model(data, training=True)
    assert predicted["segmentation_masks"].dtype == "int32"
    # In a tf.data pipeline, as Keras' own image layers are used.
    batch = next(iter(tf.data.Dataset.from_tensor_slices(data).batch(6).map(
        lambda d: layer(d, training=True))))
    assert batch["segmentation_masks"].dtype == tf.int32 and batch["images"].shape == (6, 20, 24, 1)


CIFAR_LIKE = dict(rotation_range=15, width_shift_range=0.1, height_shift_range=0.1, zoom_range=0.1,
                  horizontal_flip=True)


def test_missing_keypoints_stay_missing_through_one_layer_and_several():
    rng = np.random.default_rng(7)
    keypoints = rng.uniform(0, 32, (64, 6, 2)).astype("float32")
    keypoints[:, ::2] = -1.0  # half of them missing (left the image earlier, or padding)
    images = np.zeros((64, 32, 32, 3), "float32")
    once = gpuaug.RandomTransform(**CIFAR_LIKE, seed=1)({"images": images, "keypoints": keypoints},
                                                         training=True)
    missing_once = np.all(np.asarray(once["keypoints"]) == -1.0, axis=-1)
    assert missing_once[:, ::2].all()
    twice = gpuaug.RandomTransform(**CIFAR_LIKE, fill_mode="reflect", seed=2)(once, training=True)
    missing_twice = np.all(np.asarray(twice["keypoints"]) == -1.0, axis=-1)
    assert missing_twice[missing_once].all()  # once missing, missing for good
    present = ~missing_twice[:, 1::2]
    assert present.mean() > 0.5  # the others still move (and mostly stay inside)
    assert not np.allclose(np.asarray(twice["keypoints"])[:, 1::2][present], keypoints[:, 1::2][present])


@pytest.mark.parametrize("shape", [(3, 0, 4), (0, 2, 4), (0, 0, 4)])
def test_no_boxes_and_empty_batches_pass_through(shape):
    import tensorflow as tf

    layer = gpuaug.RandomTransform(**GEOMETRY, bounding_box_format="xyxy", seed=0)
    data = {"images": np.zeros(shape[:1] + (8, 8, 3), "float32"),
            "bounding_boxes": {"boxes": np.zeros(shape, "float32"), "labels": np.zeros(shape[:2], "int32")}}
    for run in (lambda d: layer(d, training=True),
                tf.function(lambda d: layer(d, training=True), jit_compile=True)):
        out = run(data)
        assert tuple(out["bounding_boxes"]["boxes"].shape) == shape
        assert tuple(out["bounding_boxes"]["labels"].shape) == shape[:2]
        assert tuple(out["images"].shape) == shape[:1] + (8, 8, 3)


@pytest.mark.slow
def test_no_boxes_pass_through_on_jax():
    result = run_python("""
import numpy as np, jax, gpuaug
layer = gpuaug.RandomTransform(rotation_range=20, horizontal_flip=True, bounding_box_format="xyxy", seed=0)
for shape in [(3, 0, 4), (0, 2, 4)]:
    data = {"images": np.zeros(shape[:1] + (8, 8, 3), "float32"),
            "bounding_boxes": {"boxes": np.zeros(shape, "float32"), "labels": np.zeros(shape[:2], "int32")}}
    out = layer(data, training=True)
    assert out["bounding_boxes"]["boxes"].shape == shape, out["bounding_boxes"]["boxes"].shape
    t = layer.get_random_transformation(data["images"])
    moved = jax.jit(lambda b, t: layer.transform_bounding_boxes(b, t, 8, 8))(data["bounding_boxes"], t)
    assert moved["boxes"].shape == shape and moved["labels"].shape == shape[:2]
print("passed through")
""", backend="jax")
    assert result.returncode == 0 and "passed through" in result.stdout, result.stderr[-3000:]


@pytest.mark.parametrize("dtype, value, accepted", [
    ("uint8", 300, r"an integer in \[0, 255\] for uint8"), ("uint8", -1, r"\[0, 255\]"),
    ("int8", 128, r"\[-128, 127\]"), ("int32", 2.5, "int32"), ("bool", 2, "0 or 1"),
    ("float16", 1e6, "float16")])
def test_mask_fill_value_outside_the_masks_dtype_is_refused(dtype, value, accepted):
    layer = gpuaug.RandomTransform(rotation_range=10, fill_mode="constant", mask_fill_value=value)
    with pytest.raises(ValueError, match="mask_fill_value.*" + accepted):
        layer.transform_segmentation_masks(np.zeros((1, 4, 4), dtype), {"tx": np.array([2.0])})
    with pytest.raises(ValueError, match="mask_fill_value"):
        layer({"images": np.zeros((1, 4, 4, 1)), "segmentation_masks": np.zeros((1, 4, 4), dtype)}, training=True)


@pytest.mark.parametrize("dtype, value", [("uint8", 255), ("uint8", 0), ("int8", -128), ("int32", 2**31 - 1),
                                          ("float16", 65504.0), ("bool", 1)])
def test_mask_fill_value_at_the_edge_of_the_range_is_kept(dtype, value):
    layer = gpuaug.RandomTransform(fill_mode="constant", mask_fill_value=value)
    moved = np.asarray(layer.transform_segmentation_masks(np.zeros((1, 4, 4), dtype), {"tx": np.array([2.0])}))
    assert moved.dtype == np.dtype(dtype) and moved[0, 0, 3] == value and moved[0, 0, 0] == 0


@pytest.mark.parametrize("mask_shape", [(2, 8, 10), (2, 16, 16, 1), (2, 8, 16, 1)])
def test_masks_of_another_size_than_the_images_are_refused(mask_shape):
    layer = gpuaug.RandomTransform(rotation_range=10)
    with pytest.raises(ValueError, match=r"segmentation_masks. of shape \(2, .*images, of shape \(2, 16, 8, 3\)"):
        layer({"images": np.zeros((2, 16, 8, 3), "float32"),
               "segmentation_masks": np.zeros(mask_shape, "int32")}, training=True)


def test_int64_labels_on_jax_without_x64_are_exact_or_refused():
    result = run_python("""
import numpy as np, keras, gpuaug
layer = gpuaug.RandomTransform(rotation_range=10, seed=0)
images = np.zeros((2, 4, 4, 1), "float32")
small = np.full((2, 4, 4), 2**31 - 1, "int64")
out = layer({"images": images, "segmentation_masks": small}, training=True)["segmentation_masks"]
assert str(out.dtype) == "int32" and int(np.asarray(out).min()) == 2**31 - 1, out
try:
    layer({"images": images, "segmentation_masks": np.full((2, 4, 4), 2**40 + 3, "int64")}, training=True)
except ValueError as error:
    print("refused:", error)
inputs = keras.Input((4, 4, 1))
trainer = gpuaug.TrainWithTargets(keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs)), layer)
trainer.compile(loss="sparse_categorical_crossentropy")
try:
    trainer.fit({"images": images, "segmentation_masks": np.full((2, 4, 4), 2**40 + 1, "int64")}, verbose=0)
except ValueError as error:
    print("fit refused:", error)
""", backend="jax")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "refused: `segmentation_masks` of dtype int64" in result.stdout and "jax_enable_x64" in result.stdout
    assert "fit refused: `segmentation_masks`" in result.stdout, result.stdout


def test_train_with_targets_config_round_trip():
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    trainer = gpuaug.TrainWithTargets(model, gpuaug.RandomTransform(rotation_range=5, mask_fill_value=3))
    again = gpuaug.TrainWithTargets.from_config(trainer.get_config())
    assert again.target == "segmentation_masks" and again.augmentation.mask_fill_value == 3
    assert [type(layer).__name__ for layer in again.model.layers] == ["InputLayer", "Conv2D"]
    with pytest.raises(ValueError, match="target"):
        gpuaug.TrainWithTargets(model, trainer.augmentation, target="masks")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_segmentation_trains_with_aligned_masks_in_a_jit_step(backend, tmp_path):
    # Under torch 2.13 a second trainer of another class in one process crashed
    # inside torch.compile's recompilation report (KeyError on a variable path);
    # the script resets torch.compile's cache between its trainers.
    if backend == "torch" and importlib.util.find_spec("torch") is None:
        pytest.fail("torch is in requirements-test.txt and must be installed")
    result = subprocess.run([sys.executable, str(REPO / "tests" / "segmentation_script.py"), str(tmp_path)],
                            cwd=REPO, env=dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu",
                                               PYTHONPATH=str(REPO)),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "aligned: True" in result.stdout, result.stdout
    assert f"backend {backend}, jit_compile True: done" in result.stdout, result.stdout
