"""The images' per-image geometry applied to targets: masks, boxes, keypoints.

Coordinates: boxes and keypoints are continuous pixel coordinates as in
Keras' `bounding_box_format`s, x along the columns and y along the rows,
with pixel (row i, column j) covering [j, j + 1) x [i, i + 1) (its centre at
j + 0.5, i + 0.5). The matrices of `matrices.transform_matrices` work on pixel
indices (centre of column j at x = j) and pull (output -> input); targets need
the push (input -> output): the inverse matrix, between a half-pixel shift.
"""

from keras import ops

from gpuaug import warp

KEYPOINT_OUTSIDE = -1.0  # both coordinates of a keypoint that leaves the image
BOX_FORMATS = ("xyxy", "yxyx", "xywh", "center_xywh", "center_yxhw",
               "rel_xyxy", "rel_yxyx", "rel_xywh", "rel_center_xywh")


def forward_matrices(matrices):
    """(N, 3, 3) input -> output maps: the inverses of the pull matrices
    (affine, so in closed form)."""
    m = ops.cast(matrices, "float32")
    a, b, c = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    d, e, f = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    det = a * e - b * d
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
    ic, if_ = -(ia * c + ib * f), -(id_ * c + ie * f)
    zeros, ones = ops.zeros_like(a), ops.ones_like(a)
    rows = [ops.stack([ia, ib, ic], -1), ops.stack([id_, ie, if_], -1), ops.stack([zeros, zeros, ones], -1)]
    return ops.stack(rows, axis=-2)


def move_points(points, matrices):
    """Pushes (N, K, 2) points (x, y, continuous pixel coordinates) through
    the images' transforms; returns float32 (N, K, 2)."""
    forward = forward_matrices(matrices)
    points = ops.cast(points, "float32") - 0.5  # pixel centres at integers
    x, y = points[..., 0], points[..., 1]
    new_x = forward[:, None, 0, 0] * x + forward[:, None, 0, 1] * y + forward[:, None, 0, 2]
    new_y = forward[:, None, 1, 0] * x + forward[:, None, 1, 1] * y + forward[:, None, 1, 2]
    return ops.stack([new_x, new_y], axis=-1) + 0.5


def transform_keypoints(keypoints, matrices, height, width):
    """(N, K, 2) keypoints (x, y) moved with their images; a keypoint that
    ends outside [0, width) x [0, height) gets KEYPOINT_OUTSIDE (-1) for both
    coordinates, never a wrapped or clipped position."""
    moved = move_points(keypoints, matrices)
    x, y = moved[..., 0], moved[..., 1]
    inside = (x >= 0.0) & (x < ops.cast(width, "float32")) & (y >= 0.0) & (y < ops.cast(height, "float32"))
    return ops.where(inside[..., None], moved, KEYPOINT_OUTSIDE)


def transform_bounding_boxes(bounding_boxes, matrices, height, width, bounding_box_format):
    """Boxes moved with their images, as Keras' image layers do it.

    Args:
        bounding_boxes: {"boxes": (N, B, 4), "labels": (N, B)} (labels
            optional) in `bounding_box_format`.
        matrices: the images' (N, 3, 3) pull matrices.

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
    moved = ops.reshape(move_points(ops.reshape(corners, (ops.shape(corners)[0], -1, 2)), matrices),
                        ops.shape(corners))
    low, high = ops.min(moved, axis=-2), ops.max(moved, axis=-2)
    result = dict(bounding_boxes)
    result["boxes"] = ops.concatenate([low, high], axis=-1)
    clipped = converters.clip_to_image_size(result, height=height, width=width, bounding_box_format="xyxy")
    clipped["boxes"] = converters.convert_format(clipped["boxes"], source="xyxy", target=bounding_box_format,
                                                 height=height, width=width)
    return clipped


def transform_masks(masks, matrices, fill_mode, fill_value):
    """(N, H, W, C) masks resampled with their images' matrices: the nearest
    pixel (order 0), no colour change, `fill_value` outside for "constant"
    (other modes fill as the images do), in the masks' own dtype."""
    return warp.warp_images(masks, matrices, fill_mode=fill_mode, cval=fill_value,
                            interpolation_order=0, keep_dtype=True)
