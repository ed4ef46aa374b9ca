"""Radial lens distortion of sampling coordinates (barrel and pincushion).

Lens distortion is not a matrix but a map of the coordinates, so it joins
the single resampling: once the matrix has given an output pixel the input
point p it samples (pixel indices, x along the columns, y down the rows), p
moves radially about the input's centre c = ((W - 1) / 2, (H - 1) / 2):

    p' = p + (p - c) (k1 r^2 + k2 r^4),   r = |p - c| / D,

with D the half-diagonal between the corner pixels' centres,
sqrt((W - 1)^2 + (H - 1)^2) / 2 (at least 0.5). Written as a displacement, so
that k1 = k2 = 0 gives p itself, bit for bit. As a sampling map (the form of
Kornia's RandomFisheye and albumentations' OpticalDistortion), k1 > 0 reaches
further out towards the corners: the picture's magnification falls with the
radius (barrel); k1 < 0 raises it (pincushion).

The fold. The radial map f(r) = r (1 + k1 r^2 + k2 r^4) is one-to-one only
while its slope g(u) = 1 + 3 k1 u + 5 k2 u^2 (u = r^2) is positive: up to the
first positive root u* of g (`fold`), at the pre-lens radius r* = sqrt(u*),
where the lens's magnification is infinite. Past r* the map folds back and
would sample a mirrored copy of the image, so a pre-lens point with r^2 > u*
is "nowhere" (`distort` flags it; `geometry.Geometry` gives it the fill). The
input shown is the disc of radius rho* = f(r*) D about c: with k1 < 0 its
outer ring is shown nowhere. 3 |k1| + 5 |k2| < 1 (the layer's condition) puts
r* beyond 1, the image's corners, so a lens alone never folds; a zoom-out, a
shift or a perspective can carry sampling points past it.

Targets need the inverse (a point of the input to where it is shown):
`undistort` solves the radial equation for the radius by Newton's method in
a fixed number of steps (`STEPS`), kept inside [0, r*]; a point is found when
its radius is below rho* (closed form). The steps converge to float32
precision away from the fold (tested: within 1e-3 pixels on 64x64 images,
|k1| <= 0.3; within 1e-2 pixels of float64 under a strong perspective and
zoom, tests/test_geometry_faults.py); at the fold itself the magnification is infinite, so a point
within a few hundredths of a pixel of rho* has no well-defined position.
"""

import math

from gpuaug.backend import ops

STEPS = 16
NO_FOLD = 1e30  # u* of a lens that never folds (k1 >= 0 and k2 >= 0, or no real root)


def _geometry(height, width):
    """(centre x, centre y, half-diagonal) in pixels, float32 scalars."""
    right = ops.cast(width, "float32") - 1.0
    bottom = ops.cast(height, "float32") - 1.0
    return right / 2.0, bottom / 2.0, ops.maximum(ops.sqrt(right * right + bottom * bottom) / 2.0, 0.5)


def _per_image(value, rank):
    return ops.reshape(ops.cast(value, "float32"), (-1,) + (1,) * (rank - 1))


def fold(k1, k2):
    """u* = r*^2, the first positive root of g(u) = 1 + 3 k1 u + 5 k2 u^2,
    per image ((N,) or scalars in, float32 out, same shape): the squared
    pre-lens radius (in half-diagonals) where the radial map stops being
    one-to-one; NO_FOLD (1e30) where g has no positive root.

    Closed form, in the form that does not cancel: u* = 2 / (-3 k1 + sqrt(d)),
    d = 9 k1^2 - 20 k2, which is the smaller positive root whenever one exists
    (k2 < 0: d > 0 and the roots have opposite signs; k2 > 0 > k1 and d >= 0:
    both positive; k2 = 0 > k1: 1 / (3 |k1|)); otherwise the denominator is not
    positive or d < 0: no fold."""
    k1, k2 = ops.cast(k1, "float32"), ops.cast(k2, "float32")
    discriminant = 9.0 * k1 * k1 - 20.0 * k2
    denominator = -3.0 * k1 + ops.sqrt(ops.maximum(discriminant, 0.0))
    exists = ops.logical_and(discriminant >= 0.0, denominator > 0.0)
    return ops.where(exists, 2.0 / ops.where(exists, denominator, 1.0), NO_FOLD)


def fold_radius(k1, k2, height, width):
    """(r*, rho*): the fold's pre-lens radius r* = sqrt(u*) and the input
    radius rho* = f(r*) it samples, both in pixels (float32, shaped like k1;
    about 1e15 where the lens never folds). Input points farther than rho*
    from the centre are shown nowhere."""
    _, _, half_diagonal = _geometry(height, width)
    k1, k2 = ops.cast(k1, "float32"), ops.cast(k2, "float32")
    u = fold(k1, k2)
    radius = ops.sqrt(u)
    shown = radius * (1.0 + u * (k1 + k2 * u))
    folds = u < 0.5 * NO_FOLD
    return (ops.where(folds, radius * half_diagonal, math.sqrt(NO_FOLD)),
            ops.where(folds, shown * half_diagonal, math.sqrt(NO_FOLD)))


def distort(x, y, k1, k2, height, width, with_fold=False):
    """Moves sampling coordinates x, y ((N, ...) tensors) radially with each
    image's k1, k2 ((N,) or scalars); returns the moved x, y, and with
    `with_fold` also `folded`: True where the point lies past the fold
    (r^2 > u*), which the lens shows nowhere (its moved position is then
    meaningless: a folded copy)."""
    cx, cy, half_diagonal = _geometry(height, width)
    rank = len(ops.shape(x))
    dx, dy = x - cx, y - cy
    r2 = (dx * dx + dy * dy) / (half_diagonal * half_diagonal)
    k1_, k2_ = _per_image(k1, rank), _per_image(k2, rank)
    factor = r2 * (k1_ + k2_ * r2)
    moved = (x + dx * factor, y + dy * factor)
    if not with_fold:
        return moved
    return moved + (r2 > _per_image(fold(k1, k2), rank),)


def undistort(x, y, k1, k2, height, width):
    """The inverse of `distort`: for input points x, y ((N, ...)), the
    points whose moved position they are, and a boolean tensor `found`
    (False where no point of the map's one-to-one part moves there: past
    rho*, with k1 < 0 the outer ring of the input, is shown nowhere). Returns
    (x, y, found).

    Newton's method on the radius, `STEPS` steps from r = the target radius,
    each step kept in [0, r*] (the one-to-one part, where the root lies):
    the steps approach the root from one side where the map is convex or
    concave there, and the clamp stops an overshoot past the fold."""
    cx, cy, half_diagonal = _geometry(height, width)
    rank = len(ops.shape(x))
    u = _per_image(fold(k1, k2), rank)
    k1, k2 = _per_image(k1, rank), _per_image(k2, rank)
    limit = ops.minimum(ops.sqrt(u), 1e4)  # r*, or far beyond any image
    shown = limit * (1.0 + limit * limit * (k1 + k2 * limit * limit))  # rho* (in half-diagonals)
    dx, dy = (x - cx) / half_diagonal, (y - cy) / half_diagonal
    target = ops.sqrt(dx * dx + dy * dy)  # the moved radius: r (1 + k1 r^2 + k2 r^4) = target
    radius = ops.minimum(target, limit)
    for _ in range(STEPS):
        r2 = radius * radius
        value = radius * (1.0 + r2 * (k1 + k2 * r2)) - target
        slope = ops.maximum(1.0 + r2 * (3.0 * k1 + 5.0 * k2 * r2), 1e-6)
        radius = ops.clip(radius - value / slope, 0.0, limit)
    found = ops.logical_or(u >= 0.5 * NO_FOLD, target <= shown)
    scale = ops.where(target > 0.0, radius / ops.where(target > 0.0, target, 1.0), 1.0)
    return cx + (x - cx) * scale, cy + (y - cy) * scale, found
