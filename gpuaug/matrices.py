"""Per-image 3x3 matrices composed exactly as the reference composes them.

Convention: a matrix maps an OUTPUT pixel, as homogeneous (x, y, 1) with
x = column index and y = row index, to the INPUT point sampled there (the
"pull" direction of `scipy.ndimage.affine_transform`).

The reference (`apply_affine_transform`) builds rotation . shift . shear . zoom,
conjugates it by an offset to the centre and applies flips after the warp; here
the flips are folded in, so one matrix describes the whole geometric change.
Two reference quirks are reproduced by default (see `shift_axes`, `center`).
"""

import math

import numpy as np

from gpuaug.backend import ops


def _per_image(value, like):
    """A scalar or (N,) value as a float32 (N,) tensor shaped like `like`."""
    return ops.cast(value, "float32") + ops.zeros_like(like)


def _rank(value):
    """The rank of a dict value: a tensor or array, or a plain Python number
    (as the reference's own `get_random_transform` returns), which only
    TensorFlow's `ops.shape` takes."""
    return len(value.shape) if hasattr(value, "shape") else len(np.shape(value))


def transform_matrices(
    transformation,
    height,
    width,
    shift_axes="reference",
    center="reference",
):
    """Composes one matrix per image from a transformation dict.

    Args:
        transformation: dict with (some of) the keys of
            `get_random_transform`; missing keys take the reference's
            defaults (no rotation, shift, shear, zoom 1, no flip). Values are
            scalars or shape-(N,) arrays: `theta`, `shear` in degrees; `tx`,
            `ty` in pixels; `zx`, `zy` factors (> 1 zooms out).
        height, width: image size in pixels (ints or scalar tensors).
        shift_axes: "reference" moves `tx` along the columns and `ty` along
            the rows, as the reference does (`tx` comes from
            `height_shift_range`: tf-keras issue 310); "named" moves `tx`
            along the rows (height) and `ty` along the columns (width).
        center: "reference" rotates, shears and zooms about the point
            (row = width / 2 - 0.5, col = height / 2 - 0.5), as the
            reference does (the two are swapped; only non-square images
            notice); "image" uses the true centre.

    Returns:
        float32 tensor of shape (N, 3, 3), N = the batch size of the values
        (1 if they are all scalars).
    """
    get = transformation.get
    names = ("theta", "tx", "ty", "shear", "zx", "zy", "flip_horizontal", "flip_vertical")
    values = [get(k) for k in names]
    # N comes from any per-image value, flips included; scalars broadcast.
    like = ops.zeros((1,), "float32")
    for value in values:
        if value is not None and _rank(value) > 0:
            like = ops.zeros_like(ops.cast(value, "float32"))
            break
    defaults = (0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0)
    theta, tx, ty, shear, zx, zy, flip_h, flip_v = (
        _per_image(d if v is None else v, like) for v, d in zip(values, defaults)
    )
    flip_h, flip_v = flip_h > 0.5, flip_v > 0.5
    height = ops.cast(height, "float32")
    width = ops.cast(width, "float32")

    theta = theta * (math.pi / 180.0)
    shear = shear * (math.pi / 180.0)
    cos_t, sin_t = ops.cos(theta), ops.sin(theta)
    # Linear part: rotation . shear . zoom, in (x, y) = (column, row).
    a00 = cos_t * zx
    a01 = (-cos_t * ops.sin(shear) - sin_t * ops.cos(shear)) * zy
    a10 = sin_t * zx
    a11 = (-sin_t * ops.sin(shear) + cos_t * ops.cos(shear)) * zy
    if shift_axes == "named":
        tx, ty = ty, tx
    # The shift is applied before shear and zoom, after the rotation.
    t0 = cos_t * tx - sin_t * ty
    t1 = sin_t * tx + cos_t * ty
    if center == "reference":
        ox, oy = height / 2.0 - 0.5, width / 2.0 - 0.5
    else:
        ox, oy = width / 2.0 - 0.5, height / 2.0 - 0.5
    # Conjugate by the centre offset: p -> A (p - o) + t + o.
    b0 = t0 + ox - (a00 * ox + a01 * oy)
    b1 = t1 + oy - (a10 * ox + a11 * oy)
    # Flips act on the output: x -> (width - 1) - x, y -> (height - 1) - y.
    b0 = ops.where(flip_h, b0 + a00 * (width - 1.0), b0)
    b1 = ops.where(flip_h, b1 + a10 * (width - 1.0), b1)
    a00, a10 = ops.where(flip_h, -a00, a00), ops.where(flip_h, -a10, a10)
    b0 = ops.where(flip_v, b0 + a01 * (height - 1.0), b0)
    b1 = ops.where(flip_v, b1 + a11 * (height - 1.0), b1)
    a01, a11 = ops.where(flip_v, -a01, a01), ops.where(flip_v, -a11, a11)
    zeros, ones = ops.zeros_like(a00), ops.ones_like(a00)
    rows = [
        ops.stack([a00, a01, b0], axis=-1),
        ops.stack([a10, a11, b1], axis=-1),
        ops.stack([zeros, zeros, ones], axis=-1),
    ]
    return ops.stack(rows, axis=-2)


def adjugate(matrices):
    """(N, 3, 3) adjugates: the inverses up to a factor (the determinant)."""
    m = [[matrices[:, i, j] for j in range(3)] for i in range(3)]

    def cofactor(i, j):
        rows = [r for r in range(3) if r != i]
        cols = [c for c in range(3) if c != j]
        minor = m[rows[0]][cols[0]] * m[rows[1]][cols[1]] - m[rows[0]][cols[1]] * m[rows[1]][cols[0]]
        return minor if (i + j) % 2 == 0 else -minor

    # adj[i][j] = cofactor(j, i)
    return ops.stack([ops.stack([cofactor(j, i) for j in range(3)], axis=-1) for i in range(3)], axis=-2)


def normalized(matrices):
    """Homographies scaled so that their [2, 2] entry is 1 (affine ones are)."""
    return matrices / matrices[:, 2:3, 2:3]


def determinant(matrices):
    """(N,) determinants of (N, 3, 3) matrices (expansion along the first row)."""
    m = matrices
    return (m[:, 0, 0] * (m[:, 1, 1] * m[:, 2, 2] - m[:, 1, 2] * m[:, 2, 1])
            - m[:, 0, 1] * (m[:, 1, 0] * m[:, 2, 2] - m[:, 1, 2] * m[:, 2, 0])
            + m[:, 0, 2] * (m[:, 1, 0] * m[:, 2, 1] - m[:, 1, 1] * m[:, 2, 0]))


def invert(matrices, height=None, width=None):
    """(N, 3, 3) inverses of homographies (closed form: the adjugate), scaled
    so that the sides of the horizon correspond: with P a pull matrix and
    Q = invert(P), a point q has w_Q(q) > 0 exactly when its image p = Q q
    has w_P(p) > 0 (P Q is a positive multiple of the identity: the adjugate
    times the sign of P's determinant). The positive scale is
    |Q20| cx + |Q21| cy + |Q22| (c the image's centre, (0, 0) without a size):
    w_Q is of order 1 over the image, and for an affine P (Q20 = Q21 = 0) it
    divides by |Q22| = |det P|, giving the plain inverse (w = 1), bit for bit
    what dividing by Q22 gave."""
    matrices = ops.cast(matrices, "float32")
    adjugates = adjugate(matrices)
    sign = ops.where(determinant(matrices) < 0.0, -1.0, 1.0)[:, None, None]
    cx = 0.0 if width is None else (ops.cast(width, "float32") - 1.0) / 2.0
    cy = 0.0 if height is None else (ops.cast(height, "float32") - 1.0) / 2.0
    scale = (ops.abs(adjugates[:, 2:3, 0:1]) * cx + ops.abs(adjugates[:, 2:3, 1:2]) * cy
             + ops.abs(adjugates[:, 2:3, 2:3]))
    return (adjugates * sign) / scale


def perspective_matrices(offsets, height, width):
    """(N, 3, 3) pull homographies of a perspective distortion.

    Args:
        offsets: (N, 4, 2) displacements (dx, dy) in pixels of the corners
            top-left, top-right, bottom-right, bottom-left, placed at the
            corner pixels' centres (0, 0), (W - 1, 0), (W - 1, H - 1),
            (0, H - 1); x along the columns, y down the rows.
        height, width: the image's size in pixels.

    Returns:
        Matrices mapping an output (x, y, 1) to the input point sampled
        there, so that each displaced corner samples its original corner:
        the image appears inside the quadrilateral of the displaced corners.
        Solved in closed form (Heckbert's square-to-quadrilateral map,
        inverted by its adjugate); the identity for a degenerate
        quadrilateral (an image one pixel high or wide).

        A homography is defined up to a factor, and its sign decides which
        side of the horizon (the output line where w, its third coordinate,
        is 0) shows the image: w > 0 there (`geometry.HORIZON`). The sign is
        taken from the moved corners, w > 0 on (at least three of) them,
        and the scale makes the mean |w| over them 1. For d <= 2/3 the
        quadrilateral is convex and all four corners, hence all of it, lie on
        the shown side, wherever output pixel (0, 0) lies. For d > 2/3 it can
        be non-convex (one corner inside the triangle of the other three's
        side); no homography then maps the image onto it without crossing the
        horizon: w is positive on three corners, and the part of the image
        near the fourth lies beyond the horizon and is not shown.
    """
    offsets = ops.cast(offsets, "float32")
    right = ops.cast(width, "float32") - 1.0
    bottom = ops.cast(height, "float32") - 1.0
    corners = ((0.0, 0.0), (right, 0.0), (right, bottom), (0.0, bottom))
    x = [corners[k][0] + offsets[:, k, 0] for k in range(4)]
    y = [corners[k][1] + offsets[:, k, 1] for k in range(4)]
    # The projective map of the unit square onto the displaced corners:
    # (0, 0) -> corner 0, (1, 0) -> 1, (1, 1) -> 2, (0, 1) -> 3.
    sx, sy = x[0] - x[1] + x[2] - x[3], y[0] - y[1] + y[2] - y[3]
    dx1, dx2, dy1, dy2 = x[1] - x[2], x[3] - x[2], y[1] - y[2], y[3] - y[2]
    determinant = dx1 * dy2 - dx2 * dy1
    degenerate = ops.abs(determinant) < 1e-6
    determinant = ops.where(degenerate, 1.0, determinant)
    g = (sx * dy2 - dx2 * sy) / determinant
    h = (dx1 * sy - sx * dy1) / determinant
    ones = ops.ones_like(g)
    square_to_quad = ops.stack([
        ops.stack([x[1] - x[0] + g * x[1], x[3] - x[0] + h * x[3], x[0]], axis=-1),
        ops.stack([y[1] - y[0] + g * y[1], y[3] - y[0] + h * y[3], y[0]], axis=-1),
        ops.stack([g, h, ones], axis=-1),
    ], axis=-2)
    zeros = ops.zeros_like(g)
    square_to_image = ops.stack([
        ops.stack([ones * right, zeros, zeros], axis=-1),
        ops.stack([zeros, ones * bottom, zeros], axis=-1),
        ops.stack([zeros, zeros, ones], axis=-1),
    ], axis=-2)
    pull = ops.matmul(square_to_image, adjugate(square_to_quad))
    # w at the moved corners: the majority of their signs is the shown side (see above).
    w = [pull[:, 2, 0] * x[k] + pull[:, 2, 1] * y[k] + pull[:, 2, 2] for k in range(4)]
    votes = sum(ops.where(value > 0.0, 1.0, -1.0) for value in w)
    scale = sum(ops.abs(value) for value in w) / 4.0
    scale = ops.where(votes < 0.0, -scale, scale)
    pull = pull / ops.where(scale == 0.0, 1.0, scale)[:, None, None]
    identity = ops.broadcast_to(ops.eye(3, dtype="float32"), ops.shape(pull))
    return ops.where(degenerate[:, None, None], identity, pull)
