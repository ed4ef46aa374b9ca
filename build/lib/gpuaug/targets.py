"""The images' per-image geometry applied to targets: masks, boxes, keypoints.

Coordinates: boxes and keypoints are continuous pixel coordinates as in
Keras' `bounding_box_format`s, x along the columns and y along the rows,
with pixel (row i, column j) covering [j, j + 1) x [i, i + 1) (its centre at
j + 0.5, i + 0.5). The images' `geometry.Geometry` works on pixel indices (centre of
column j at x = j) and pulls (output -> input); targets need the push (input
-> output): its inverse, between a half-pixel shift. With a perspective the
enclosing box of a box's four moved corners contains the moved box (a
homography keeps lines straight); with a lens it is the box of the four
corners only (edges curve).
"""

import numpy as np
from keras import ops

from gpuaug import warp

KEYPOINT_OUTSIDE = -1.0  # both coordinates of a keypoint that leaves the image
BOX_FORMATS = ("xyxy", "yxyx", "xywh", "center_xywh", "center_yxhw",
               "rel_xyxy", "rel_yxyx", "rel_xywh", "rel_center_xywh")


def move_points(points, geometry, height, width):
    """Pushes (N, ..., 2) points (x, y, continuous pixel coordinates) through
    the images' `geometry.Geometry` (the inverse of its pull map: closed form
    for the matrix, `lens.undistort` for a lens). Returns float32 points of
    the same shape (no reshape, so empty batches and zero points pass on every
    backend) and `found` ((N, ...) booleans, or None without a lens: False
    where the lens shows the point nowhere)."""
    points = ops.cast(points, "float32") - 0.5  # pixel centres at integers
    x, y, found = geometry.forward_points(points[..., 0], points[..., 1], height, width)
    return ops.stack([x, y], axis=-1) + 0.5, found


def is_missing_keypoint(keypoints):
    """(N, K) booleans: True where a keypoint is (-1, -1) (KEYPOINT_OUTSIDE on
    both coordinates): one that left the image earlier, or padding."""
    keypoints = ops.cast(keypoints, "float32")
    return (keypoints[..., 0] == KEYPOINT_OUTSIDE) & (keypoints[..., 1] == KEYPOINT_OUTSIDE)


def transform_keypoints(keypoints, geometry, height, width):
    """(N, K, 2) keypoints (x, y) moved with their images (`geometry`: their
    `geometry.Geometry`); a keypoint that ends outside [0, width) x
    [0, height) (or that a lens shows nowhere) gets KEYPOINT_OUTSIDE (-1) for
    both coordinates, never a wrapped or clipped position. A keypoint that is
    already (-1, -1) (missing, or padding) stays (-1, -1): it is not moved."""
    moved, found = move_points(keypoints, geometry, height, width)
    x, y = moved[..., 0], moved[..., 1]
    inside = (x >= 0.0) & (x < ops.cast(width, "float32")) & (y >= 0.0) & (y < ops.cast(height, "float32"))
    keep = inside & ~is_missing_keypoint(keypoints)
    if found is not None:
        keep = keep & found
    return ops.where(keep[..., None], moved, KEYPOINT_OUTSIDE)


def transform_bounding_boxes(bounding_boxes, geometry, height, width, bounding_box_format):
    """Boxes moved with their images, as Keras' image layers do it.

    Args:
        bounding_boxes: {"boxes": (N, B, 4), "labels": (N, B)} (labels
            optional) in `bounding_box_format`.
        geometry: the images' `geometry.Geometry`.

    Returns:
        The same structure: each box's four corners pushed through the
        transform, their enclosing box clipped to the image, in the input
        format; boxes left with no area get label -1, as Keras'
        `clip_to_image_size` marks them (Keras' converters do the formats).
    """
    import keras

    converters = keras.utils.bounding_boxes
    boxes = converters.convert_format(ops.cast(bounding_boxes["boxes"], "float32"), source=bounding_box_format,
                                      target="xyxy", height=height, width=width)
    x1, y1, x2, y2 = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
    corners = ops.stack([ops.stack([x1, y1], -1), ops.stack([x2, y1], -1),
                         ops.stack([x1, y2], -1), ops.stack([x2, y2], -1)], axis=-2)  # (N, B, 4, 2)
    moved, _ = move_points(corners, geometry, height, width)
    # Element-wise over the four corners, not a reduction: TensorFlow's
    # reductions refuse empty tensors, and (N, 0, 4) boxes must pass through.
    corner = [moved[..., k, :] for k in range(4)]
    low = ops.minimum(ops.minimum(corner[0], corner[1]), ops.minimum(corner[2], corner[3]))
    high = ops.maximum(ops.maximum(corner[0], corner[1]), ops.maximum(corner[2], corner[3]))
    result = dict(bounding_boxes)
    result["boxes"] = ops.concatenate([low, high], axis=-1)
    clipped = converters.clip_to_image_size(result, height=height, width=width, bounding_box_format="xyxy")
    clipped["boxes"] = converters.convert_format(clipped["boxes"], source="xyxy", target=bounding_box_format,
                                                 height=height, width=width)
    return clipped


def check_mask_fill_value(fill_value, dtype):
    """Raises ValueError unless `fill_value` is exactly representable in the
    masks' `dtype` (an integer within an integer dtype's range; a finite value
    within a float dtype's range), so that it never wraps or rounds."""
    import keras

    dtype = np.dtype(keras.backend.standardize_dtype(dtype))
    if dtype == np.bool_:
        accepted, fits = "0 or 1", fill_value in (0, 1)
    elif np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        accepted = f"an integer in [{info.min}, {info.max}]"
        fits = float(fill_value).is_integer() and info.min <= fill_value <= info.max
    else:
        info = np.finfo(dtype)
        accepted = f"a finite number in [{info.min:.4g}, {info.max:.4g}]"
        fits = bool(np.isfinite(fill_value)) and -float(info.max) <= fill_value <= float(info.max)
    if not fits:
        raise ValueError(f"`mask_fill_value` must be {accepted} for {dtype.name} segmentation masks "
                         f"(it would wrap or round otherwise). Received: {fill_value!r}")


def check_masks_survive_the_backend(masks):
    """Raises ValueError when the backend cannot hold a host array of masks
    exactly: JAX without `jax_enable_x64` turns int64 into int32 (uint64 into
    uint32, float64 into float32), and a label such as 2**40 + 3 would become
    3 without a word. Values that fit pass (and come back in the 32-bit
    dtype); backend tensors were converted already and are not checked."""
    import keras

    if keras.backend.backend() != "jax" or warp.x64_available():
        return
    if not isinstance(masks, np.ndarray) or masks.dtype.itemsize < 8 or masks.dtype.kind not in "iuf":
        return
    narrow = masks.dtype.str.replace("8", "4")  # int64 -> int32, uint64 -> uint32, float64 -> float32
    if not np.array_equal(masks.astype(narrow).astype(masks.dtype), masks, equal_nan=masks.dtype.kind == "f"):
        raise ValueError(f"`segmentation_masks` of dtype {masks.dtype.name} hold values that JAX without 64-bit "
                         f"types cannot keep (it would store them as {np.dtype(narrow).name} and wrap or round "
                         "them): enable them with jax.config.update('jax_enable_x64', True) before building "
                         f"the model, or relabel the masks into {np.dtype(narrow).name}'s range.")


def transform_masks(masks, geometry, fill_mode, fill_value):
    """(N, H, W, C) masks resampled with their images' `geometry.Geometry`:
    the nearest pixel (order 0), no colour change, `fill_value` outside for
    "constant" (other modes fill as the images do), in the masks' own dtype."""
    return warp.warp_images(masks, geometry, fill_mode=fill_mode, cval=fill_value,
                            interpolation_order=0, keep_dtype=True)
