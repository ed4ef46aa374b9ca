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

Pixels are gathered from the flattened batch (N*H*W rows of C values) with
int32 indices when every index fits (N*H*W <= 2**31, known when the graph is
built), and int64 indices otherwise (past 2**31 pixels, or a batch size only
known at run time); on JAX without `jax_enable_x64`, which has no int64, each
image is gathered on its own with indices below H*W (`index_mode`).
"""

from gpuaug import backend
from gpuaug.backend import ops

from gpuaug.geometry import Geometry

INT32_LIMIT = 2**31  # indices 0 .. 2**31 - 1 fit in int32
INDEX_MODES = ("int32", "int64", "per_image")
FILL_MODES = ("constant", "nearest", "reflect", "wrap")


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


def x64_available():
    """False only on JAX without `jax_enable_x64` (no int64 there)."""
    if backend.name() != "jax":
        return True
    import jax

    return bool(jax.config.read("jax_enable_x64"))


def choose_index_mode(batch, height, width):
    """How `warp_images` indexes a batch of `batch` images of height x width.

    Args: Python ints, or None (or a tensor) for a size known only at run time.

    Returns:
        "int32" when every flat index (0 .. N*H*W - 1) fits in int32;
        otherwise "int64", or "per_image" on JAX without x64 (indices below
        H*W within each image).
    """
    sizes = (batch, height, width)
    if all(isinstance(size, int) for size in sizes) and batch * height * width <= INT32_LIMIT:
        return "int32"
    return "int64" if x64_available() else "per_image"


def flat_index(image, row, col, height, width, dtype):
    """image * (height * width) + row * width + col, computed in `dtype`."""
    image, row, col = (ops.cast(v, dtype) for v in (image, row, col))
    return image * ops.cast(height * width, dtype) + row * ops.cast(width, dtype) + col


GATHER_FORMS = ("separate", "stacked", "scalar")


def gather_form():
    """How the taps are gathered, chosen by what the warp adds inside a
    compiled training step (`python -m benchmarks.in_step`):

    - "separate": one gather of (1, C) pixel rows per tap (TensorFlow's choice);
    - "stacked": one gather of (N, H, W, taps) row indices;
    - "scalar": one gather of single values per tap, at pixel * C + channel
      (JAX's choice: its XLA compiles row gathers about half as fast).
    """
    return "scalar" if backend.name() == "jax" else "separate"


def _gather(images, pairs, mode):
    """The pixels at each (row, column) index pair of every image.

    Args:
        images: float32 (N, H, W, C).
        pairs: list of (row, column) int32 index tensors, each (N, H, W).
        mode: an `INDEX_MODES` value (see `choose_index_mode`).

    Returns:
        One (N, H, W, C) tensor per pair, gathered in the `gather_form()`.
    """
    batch, height, width, channels = ops.shape(images)
    shape = (batch, height, width, channels)
    if mode == "per_image":  # indices below H*W within each image
        if isinstance(height, int) and isinstance(width, int) and height * width > INT32_LIMIT:
            raise ValueError(f"An image of {height} x {width} = {height * width:,} pixels has more than 2**31, "
                             "which int32 indices cannot address, and JAX has no int64 without 64-bit types: "
                             "enable them with jax.config.update('jax_enable_x64', True).")
        pixels = ops.reshape(images, (batch, -1, channels))
        taps = []
        for row, col in pairs:
            index = ops.reshape(flat_index(0, row, col, height, width, "int32"), (batch, -1, 1))
            index = ops.broadcast_to(index, ops.shape(index)[:2] + (channels,))
            taps.append(ops.reshape(ops.take_along_axis(pixels, index, axis=1), shape))
        return taps
    image = ops.arange(batch, dtype=mode)[:, None, None]
    indices = [flat_index(image, row, col, height, width, mode) for row, col in pairs]
    if gather_form() == "scalar":
        values = ops.reshape(images, (-1,))
        channel = ops.arange(channels, dtype=mode)
        return [ops.take(values, index[..., None] * ops.cast(channels, mode) + channel, axis=0) for index in indices]
    pixels = ops.reshape(images, (-1, channels))
    if gather_form() == "stacked" and len(indices) > 1:
        stacked = ops.take(pixels, ops.stack(indices, axis=-1), axis=0)  # (N, H, W, taps, C)
        return [stacked[..., k, :] for k in range(len(indices))]
    return [ops.reshape(ops.take(pixels, ops.reshape(index, (-1,)), axis=0), shape) for index in indices]


def _inside(x_inside, y_inside, nowhere):
    """Where "constant" samples the image ((N, H, W) boolean: inside on both
    axes and not "nowhere"); None for the other fill modes."""
    if x_inside is None:
        return None
    inside = ops.logical_and(x_inside, y_inside)
    return inside if nowhere is None else ops.logical_and(inside, ops.logical_not(nowhere))


def _lerp(a, b, t):
    """a + t (b - a): exact when a == b, so flat regions never overshoot."""
    return a + t * (b - a)


def materialized(values):
    """`values`, computed once inside a compiled step: values / (1 + 0 values).

    Exact for every finite value (x / 1 = x; an infinite one becomes NaN, as
    0 * inf is). Why: XLA fuses a cheap elementwise result into each of its
    consumers. In a training step the warped batch has two, the forward
    convolution and the filter gradient, which reads it in a transposed
    order: XLA recomputed the whole blend (and its coordinates) there, with
    scattered reads, and the warp cost 2 to 5 times more in the step than
    alone. XLA does not duplicate a division (an "expensive" instruction), so
    the warped batch is written once and the transpose reads it. The divisor
    is a full tensor, not a broadcast scalar, which XLA would turn into a
    multiplication by its reciprocal. `python -m benchmarks.in_step` shows
    the effect."""
    return values / (1.0 + 0.0 * values)


def warp_images(
    images, matrices, fill_mode="nearest", cval=0.0, interpolation_order=1, index_mode=None,
    keep_dtype=False, projective=False, distortion=None,
):
    """Resamples each image once through its matrix (and lens map).

    Args:
        images: float tensor (N, H, W, C), channels last.
        matrices: float32 (N, 3, 3) from `matrices.transform_matrices`
            (or (1, 3, 3) for every image), mapping output (column, row, 1)
            to the input point sampled; or a `geometry.Geometry`, whose
            `projective` and `distortion` then apply.
        fill_mode: "constant", "nearest", "reflect" or "wrap" (scipy's).
        cval: value outside the image for "constant", in pixel units.
        interpolation_order: 0 (nearest pixel) or 1 (bilinear).
        index_mode: None (chosen by `choose_index_mode(N, H, W)`), or one of
            "int32", "int64", "per_image" to force it (same pixels). On
            PyTorch, None resamples with PyTorch's own functions
            (`gpuaug.torch_warp`, the same rule); a forced mode runs the
            `keras.ops` form.
        keep_dtype: with order 0, gather in the input's dtype (exact for any
            integer, e.g. segmentation labels) and give `cval` that dtype.
        projective: divide by the matrices' third row (a homography: a
            perspective); False uses the affine rows only.
        distortion: None or (k1, k2) of a radial lens map (`gpuaug.lens`)
            applied to the sampling coordinates before the one gather.
            Output points beyond a perspective's horizon or past the lens's
            fold sample nowhere: `cval` with "constant", the border pixel on
            their ray from the centre otherwise (`gpuaug.geometry`).

    Returns:
        (N, H, W, C): float32, or the input's dtype with `keep_dtype`.
    """
    if isinstance(matrices, Geometry):
        matrices, projective, distortion = matrices.matrices, matrices.projective, matrices.distortion
    if keep_dtype and interpolation_order != 0:
        raise ValueError("`keep_dtype` needs `interpolation_order=0` (nearest pixel).")
    if not keep_dtype:
        images = ops.cast(images, "float32")
    shape = ops.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    rows = ops.cast(ops.arange(height), "float32")[None, :, None]
    cols = ops.cast(ops.arange(width), "float32")[None, None, :]
    # One matrix for all images (N = 1) is repeated: the gathers are flat.
    matrices = ops.broadcast_to(ops.cast(matrices, "float32"), (batch, 3, 3))
    # `nowhere`: None on the affine path; else True beyond a horizon or past a lens's fold
    # (`geometry`): "constant" gives them `cval`, the other modes the border point set there.
    x, y, nowhere = Geometry(matrices, projective, distortion).sample_points(cols, rows, height, width)
    if index_mode is not None and index_mode not in INDEX_MODES:
        raise ValueError(f"`index_mode` must be one of {INDEX_MODES} or None. Received: {index_mode!r}")
    if index_mode is None and backend.name() == "torch":
        from gpuaug import torch_warp

        return torch_warp.resample(images, x, y, nowhere, fill_mode, cval, interpolation_order)
    x_indices, x_fraction, x_inside = sample_points(
        x, width, fill_mode, interpolation_order
    )
    y_indices, y_fraction, y_inside = sample_points(
        y, height, fill_mode, interpolation_order
    )
    if interpolation_order == 1 and not keep_dtype:
        x_fraction, y_fraction = materialized(x_fraction), materialized(y_fraction)

    mode = index_mode or choose_index_mode(batch, height, width)
    # The taps: (row, column) index pairs, one for order 0, four for order 1.
    pairs = [(row, col) for row in y_indices for col in x_indices]
    taps = _gather(images, pairs, mode)
    if interpolation_order == 0:
        warped = taps[0]
    else:
        x_fraction, y_fraction = x_fraction[..., None], y_fraction[..., None]
        upper = _lerp(taps[0], taps[1], x_fraction)
        lower = _lerp(taps[2], taps[3], x_fraction)
        warped = _lerp(upper, lower, y_fraction)
    inside = _inside(x_inside, y_inside, nowhere)
    if inside is not None:
        warped = ops.where(inside[..., None], warped, ops.cast(cval, warped.dtype))
    if keep_dtype:  # masks: gathered in their dtype, nothing computed to duplicate
        return warped
    # The fractions and the blend, each computed once (see `materialized`).
    return materialized(warped)
