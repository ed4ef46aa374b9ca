"""The images' per-image geometry applied to targets: masks, boxes, keypoints.

Coordinates: boxes and keypoints are continuous pixel coordinates as in
Keras' `bounding_box_format`s, x along the columns and y along the rows,
with pixel (row i, column j) covering [j, j + 1) x [i, i + 1) (its centre at
j + 0.5, i + 0.5). The images' `geometry.Geometry` works on pixel indices (centre of
column j at x = j) and pulls (output -> input); targets need the push (input
-> output): its inverse, between a half-pixel shift. Targets follow only
what the images show: a keypoint or the part of a box that a lens shows
nowhere (past its fold radius) or that lies beyond a perspective's horizon
is not followed (the keypoint becomes (-1, -1); a box becomes the enclosing
box of its shown part, or gets label -1 if none is shown).
"""

import numpy as np
from gpuaug.backend import ops

from gpuaug import geometry as geometry_lib, lens, warp

# The keys of a dict input (Keras 3's convention), in the order messages list
# them, each with what the layer does with it: "images" are resampled, the
# targets "moved" follow them with the same geometry, "labels" pass through.
IMAGES, LABELS = "images", "labels"
BOUNDING_BOXES, SEGMENTATION_MASKS, KEYPOINTS = "bounding_boxes", "segmentation_masks", "keypoints"
KEYS = ((IMAGES, "resampled"), (LABELS, "passed through"), (BOUNDING_BOXES, "moved"),
        (SEGMENTATION_MASKS, "moved"), (KEYPOINTS, "moved"))
DICT_KEYS = tuple(key for key, _ in KEYS)
MOVED = tuple(key for key, role in KEYS if role == "moved")

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


EDGE_STEPS = 8  # with a lens, each box edge is followed at EDGE_STEPS + 1 points (edges curve)
FOLD_POINTS = 64  # and the lens's fold circle at this many


def _outline(boxes, geometry, height, width):
    """The points whose pushed positions bound the visible part of each box.

    Args: boxes (N, B, 4) xyxy in pixel indices (pixel centres at integers).

    Returns (x, y, valid, chords): pre-lens input points (N, B, P), whether
    each is shown as far as the lens goes, and (i, j) index pairs of
    consecutive points along the outline (where a horizon may cut it).
    Without a lens: the four corners (a homography keeps the edges
    straight). With one: EDGE_STEPS + 1 points along each edge, first clipped
    to the shown disc (radius rho*, `lens.fold_radius`), and FOLD_POINTS
    points of the fold circle that lie inside the box, whose pre-lens points
    are on the circle of radius r* (closed form, no Newton)."""
    x1, y1, x2, y2 = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
    edges = (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1)))
    if geometry.distortion is None:
        x = ops.stack([start[0] for start, _ in edges], axis=-1)
        y = ops.stack([start[1] for start, _ in edges], axis=-1)
        return x, y, None, [(k, (k + 1) % 4) for k in range(4)]
    k1, k2 = geometry.distortion
    cx, cy = (ops.cast(width, "float32") - 1.0) / 2.0, (ops.cast(height, "float32") - 1.0) / 2.0
    r_fold, rho_fold = (ops.reshape(ops.cast(value, "float32"), (-1, 1))
                        for value in lens.fold_radius(k1, k2, height, width))  # r*, rho* in pixels, (N, 1)
    folds = rho_fold < 0.5 * np.sqrt(lens.NO_FOLD)  # this image's lens has a fold
    rho = ops.where(folds, rho_fold, 0.0)
    r_fold = ops.where(folds, r_fold, 0.0)
    steps = ops.convert_to_tensor(np.linspace(0.0, 1.0, EDGE_STEPS + 1), dtype="float32")
    first = ops.convert_to_tensor(np.arange(EDGE_STEPS + 1) == 0)
    last = ops.convert_to_tensor(np.arange(EDGE_STEPS + 1) == EDGE_STEPS)
    xs, ys, valids, chords = [], [], [], []
    for (ax, ay), (bx, by) in edges:
        # The part of the edge a + t (b - a), t in [0, 1], inside the disc |p - c| <= rho*.
        ex, ey, fx, fy = bx - ax, by - ay, ax - cx, ay - cy
        ee, fe, ff = ex * ex + ey * ey, fx * ex + fy * ey, fx * fx + fy * fy
        discriminant = fe * fe - ee * (ff - rho * rho)
        root = ops.sqrt(ops.maximum(discriminant, 0.0))
        ee_safe = ops.where(ee > 0.0, ee, 1.0)
        t0 = ops.where(folds, ops.maximum((-fe - root) / ee_safe, 0.0), 0.0)
        t1 = ops.where(folds, ops.minimum((-fe + root) / ee_safe, 1.0), 1.0)
        t1 = ops.where(ee > 0.0, t1, t0)  # an edge of no length: one point
        valid = ops.where(ee > 0.0, ops.logical_and(discriminant >= 0.0, t0 <= t1), ff <= rho * rho)
        valid = ops.logical_or(valid, ops.logical_not(folds))
        t = t0[..., None] + (t1 - t0)[..., None] * steps  # (N, B, EDGE_STEPS + 1)
        qx, qy = ax[..., None] + t * ex[..., None], ay[..., None] + t * ey[..., None]
        px, py, _ = lens.undistort(qx, qy, k1, k2, height, width)
        # Where the clip ends on the circle, the pre-lens point is on the fold circle exactly
        # (Newton converges slowly there: the map's slope is 0).
        on_circle = ops.logical_or(ops.logical_and(first, (t0 > 0.0)[..., None]),
                                   ops.logical_and(last, (t1 < 1.0)[..., None]))
        on_circle = ops.logical_and(on_circle, folds[..., None])
        ratio = r_fold[..., None] / ops.maximum(ops.sqrt((qx - cx) ** 2 + (qy - cy) ** 2), 1e-12)
        px = ops.where(on_circle, cx + (qx - cx) * ratio, px)
        py = ops.where(on_circle, cy + (qy - cy) * ratio, py)
        offset = len(xs) * (EDGE_STEPS + 1)
        chords += [(offset + j, offset + j + 1) for j in range(EDGE_STEPS)]
        xs.append(px)
        ys.append(py)
        valids.append(ops.broadcast_to(valid[..., None], ops.shape(px)))
    # The fold circle: input points at rho* (shown at the fold), inside the box.
    angles = np.linspace(0.0, 2.0 * np.pi, FOLD_POINTS, endpoint=False)
    cos, sin = (ops.convert_to_tensor(v, dtype="float32") for v in (np.cos(angles), np.sin(angles)))
    zero = ops.zeros_like(x1)[..., None]
    qx, qy = cx + rho[..., None] * cos + zero, cy + rho[..., None] * sin + zero  # (N, B, FOLD_POINTS)
    inside = (qx >= x1[..., None]) & (qx <= x2[..., None]) & (qy >= y1[..., None]) & (qy <= y2[..., None])
    offset = 4 * (EDGE_STEPS + 1)
    chords += [(offset + m, offset + (m + 1) % FOLD_POINTS) for m in range(FOLD_POINTS)]
    xs.append(cx + r_fold[..., None] * cos + zero)
    ys.append(cy + r_fold[..., None] * sin + zero)
    valids.append(ops.logical_and(inside, folds[..., None]))
    return (ops.concatenate(xs, axis=-1), ops.concatenate(ys, axis=-1), ops.concatenate(valids, axis=-1),
            chords)


def _visible_extent(boxes, geometry, height, width):
    """(low, high): (N, B, 2) corners (pixel indices, x then y) of the
    enclosing box of the visible part of each box's pushed outline;
    low = high = 0 where nothing of the box is shown."""
    x, y, valid, chords = _outline(boxes, geometry, height, width)
    hx, hy, w = geometry.push_homogeneous(x, y, height, width)
    shown = valid
    if geometry.projective:
        # Points beyond the horizon are shown nowhere; where a chord of the
        # outline crosses it, the visible part runs off to infinity: the point
        # of the chord at w = 2 HORIZON stands for it (clipped to the image).
        beyond_w = 2.0 * geometry_lib.HORIZON
        ahead = w > geometry_lib.HORIZON
        shown = ahead if shown is None else ops.logical_and(shown, ahead)
        extra = []
        for i, j in chords:
            crosses = ops.logical_xor(ahead[..., i], ahead[..., j])
            if valid is not None:
                crosses = crosses & valid[..., i] & valid[..., j]
            step = w[..., j] - w[..., i]
            s = (beyond_w - w[..., i]) / ops.where(crosses, step, 1.0)
            extra.append((hx[..., i] + s * (hx[..., j] - hx[..., i]), hy[..., i] + s * (hy[..., j] - hy[..., i]),
                          crosses))
        hx = ops.concatenate([hx] + [e[0][..., None] for e in extra], axis=-1)
        hy = ops.concatenate([hy] + [e[1][..., None] for e in extra], axis=-1)
        w = ops.concatenate([w] + [ops.zeros_like(e[0])[..., None] + beyond_w for e in extra], axis=-1)
        shown = ops.concatenate([shown] + [e[2][..., None] for e in extra], axis=-1)
    safe = ops.where(shown, w, 1.0)
    px, py = hx / safe, hy / safe
    big = 3e38
    low = [ops.min(ops.where(shown, v, big), axis=-1, initial=big) for v in (px, py)]
    high = [ops.max(ops.where(shown, v, -big), axis=-1, initial=-big) for v in (px, py)]
    anything = ops.any(shown, axis=-1)[..., None]
    low, high = ops.stack(low, axis=-1), ops.stack(high, axis=-1)
    return ops.where(anything, low, 0.0), ops.where(anything, high, 0.0)


def transform_bounding_boxes(bounding_boxes, geometry, height, width, bounding_box_format):
    """Boxes moved with their images, as Keras' image layers do it.

    Args:
        bounding_boxes: {"boxes": (N, B, 4), "labels": (N, B)} (labels
            optional) in `bounding_box_format`.
        geometry: the images' `geometry.Geometry`.

    Returns:
        The same structure: each box becomes the enclosing box of the part
        of the moved box that is shown, clipped to the image, in the input
        format; boxes left with no area (moved out of the image, or shown
        nowhere: past a lens's fold radius, beyond a horizon) get label -1,
        as Keras' `clip_to_image_size` marks them (Keras' converters do the
        formats). Affine: the box of the four moved corners. Perspective:
        the four corners, and where an edge crosses the horizon the box
        reaches the image's border there. Lens: points along the edges
        (EDGE_STEPS + 1 each: edges curve) clipped to the shown disc, and the
        fold circle's points inside the box; a box is thus followed to
        within a few hundredths of a pixel (tested against the warped mask).
    """
    import keras

    converters = keras.utils.bounding_boxes
    boxes = converters.convert_format(ops.cast(bounding_boxes["boxes"], "float32"), source=bounding_box_format,
                                      target="xyxy", height=height, width=width)
    if geometry.distortion is None and not geometry.projective:
        x1, y1, x2, y2 = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
        corners = ops.stack([ops.stack([x1, y1], -1), ops.stack([x2, y1], -1),
                             ops.stack([x1, y2], -1), ops.stack([x2, y2], -1)], axis=-2)  # (N, B, 4, 2)
        moved, _ = move_points(corners, geometry, height, width)
        # Element-wise over the four corners, not a reduction: TensorFlow's
        # reductions refuse empty tensors, and (N, 0, 4) boxes must pass through.
        corner = [moved[..., k, :] for k in range(4)]
        low = ops.minimum(ops.minimum(corner[0], corner[1]), ops.minimum(corner[2], corner[3]))
        high = ops.maximum(ops.maximum(corner[0], corner[1]), ops.maximum(corner[2], corner[3]))
    else:
        # Reductions with an `initial` value: TensorFlow's refuse empty tensors otherwise.
        low, high = _visible_extent(boxes - 0.5, geometry, height, width)
        low, high = low + 0.5, high + 0.5
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
