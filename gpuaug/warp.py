"""Resampling a batch of images through per-image matrices, in `keras.ops` only.

Boundary handling reproduces `scipy.ndimage.affine_transform` (scipy >= 1.6),
which the reference uses, for orders 0 and 1. Per axis, a sample coordinate c
on an axis of n pixels is first folded by the fill mode:

- "nearest":  clamped to [0, n - 1];
- "reflect":  half-sample symmetric (d c b a | a b c d | d c b a);
- "wrap":     scipy's "wrap", which repeats with period n - 1 (the first and
              last pixels overlap), not n as TensorFlow's "wrap" does;
- "constant": any c outside [0, n - 1] on either axis gives `cval`; there
              is no blending with `cval` inside the border.

Then order 0 takes the pixel floor(c + 0.5) and order 1 blends pixels
floor(c) and floor(c) + 1, with indices past the edge clamped.
"""

from keras import ops


def _fold(coordinate, size, fill_mode):
    """Folds coordinates on an axis of `size` pixels; returns (folded, inside).

    `inside` is a boolean tensor for "constant" and None otherwise.
    """
    n = ops.cast(size, "float32")
    last = n - 1.0
    if fill_mode == "constant":
        inside = ops.logical_and(coordinate >= 0.0, coordinate <= last)
        return ops.where(inside, coordinate, 0.0), inside
    if fill_mode == "nearest":
        return ops.minimum(ops.maximum(coordinate, 0.0), last), None
    if fill_mode == "reflect":
        period = 2.0 * n
        folded = ops.mod(coordinate + 0.5, period)
        folded = ops.where(folded >= n, period - folded, folded) - 0.5
    elif fill_mode == "wrap":
        step = ops.maximum(last, 1.0)
        below = coordinate + step * (ops.floor(-coordinate / step) + 1.0)
        above = coordinate - step * ops.floor(coordinate / step)
        folded = ops.where(
            coordinate < 0.0, below, ops.where(coordinate > last, above, coordinate)
        )
    else:
        raise ValueError(
            "`fill_mode` must be one of 'constant', 'nearest', 'reflect', "
            f"'wrap'. Received: {fill_mode!r}"
        )
    # A single-pixel axis has one value to repeat.
    return ops.where(n > 1.0, folded, 0.0), None


def _pixel_index(index, size):
    return ops.cast(ops.clip(index, 0.0, ops.cast(size, "float32") - 1.0), "int32")


def sample_points(coordinates, size, fill_mode, interpolation_order):
    """Pixel indices along one axis and the fraction between them.

    Returns (indices, fraction, inside): one int32 index tensor for order 0
    (fraction None), two (floor and floor + 1) for order 1; inside as in
    `_fold`.
    """
    folded, inside = _fold(coordinates, size, fill_mode)
    if interpolation_order == 0:
        return [_pixel_index(ops.floor(folded + 0.5), size)], None, inside
    start = ops.floor(folded)
    indices = [_pixel_index(start, size), _pixel_index(start + 1.0, size)]
    return indices, folded - start, inside


def _lerp(a, b, t):
    """a + t (b - a): exact when a == b, so flat regions never overshoot."""
    return a + t * (b - a)


def warp_images(
    images, matrices, fill_mode="nearest", cval=0.0, interpolation_order=1
):
    """Resamples each image once through its matrix.

    Args:
        images: float tensor (N, H, W, C), channels last.
        matrices: float32 (N, 3, 3) from `matrices.transform_matrices`,
            mapping output (column, row, 1) to the input point sampled.
        fill_mode: "constant", "nearest", "reflect" or "wrap" (scipy's).
        cval: value outside the image for "constant", in pixel units.
        interpolation_order: 0 (nearest pixel) or 1 (bilinear).

    Returns:
        float32 tensor (N, H, W, C).
    """
    images = ops.cast(images, "float32")
    shape = ops.shape(images)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    rows = ops.cast(ops.arange(height), "float32")[None, :, None]
    cols = ops.cast(ops.arange(width), "float32")[None, None, :]
    m = ops.cast(matrices, "float32")[:, :2, :, None, None]
    # Separable: a per-column term (N, 1, W) plus a per-row term (N, H, 1),
    # so each output pixel costs one addition per coordinate.
    x = (m[:, 0, 0] * cols + m[:, 0, 2]) + m[:, 0, 1] * rows
    y = (m[:, 1, 0] * cols + m[:, 1, 2]) + m[:, 1, 1] * rows
    x_indices, x_fraction, x_inside = sample_points(
        x, width, fill_mode, interpolation_order
    )
    y_indices, y_fraction, y_inside = sample_points(
        y, height, fill_mode, interpolation_order
    )

    # One gather over the flattened batch: rows of (N*H*W, C).
    pixels = ops.reshape(images, (-1, channels))
    first = ops.arange(batch, dtype="int32")[:, None, None] * (height * width)
    indices = [
        first + row * width + col for row in y_indices for col in x_indices
    ]
    if len(indices) == 1:
        warped = ops.take(pixels, indices[0], axis=0)
    else:
        taps = ops.take(pixels, ops.stack(indices, axis=-1), axis=0)
        x_fraction, y_fraction = x_fraction[..., None], y_fraction[..., None]
        top = _lerp(taps[..., 0, :], taps[..., 1, :], x_fraction)
        bottom = _lerp(taps[..., 2, :], taps[..., 3, :], x_fraction)
        warped = _lerp(top, bottom, y_fraction)
    if fill_mode == "constant":
        inside = ops.logical_and(x_inside, y_inside)[..., None]
        warped = ops.where(inside, warped, ops.cast(cval, "float32"))
    return warped
