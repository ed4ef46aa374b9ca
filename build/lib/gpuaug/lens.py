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

Targets need the inverse (a point of the input to where it is shown):
`undistort` solves the radial equation for the radius by Newton's method in
a fixed number of steps (`STEPS`); with 3 |k1| + 5 |k2| < 1 the map is
one-to-one over the image and the steps converge there to float32 precision
(tested: within 1e-3 pixels on 64x64 images, |k1| <= 0.3).
"""

from keras import ops

STEPS = 8


def _geometry(height, width):
    """(centre x, centre y, half-diagonal) in pixels, float32 scalars."""
    right = ops.cast(width, "float32") - 1.0
    bottom = ops.cast(height, "float32") - 1.0
    return right / 2.0, bottom / 2.0, ops.maximum(ops.sqrt(right * right + bottom * bottom) / 2.0, 0.5)


def _per_image(value, rank):
    return ops.reshape(ops.cast(value, "float32"), (-1,) + (1,) * (rank - 1))


def distort(x, y, k1, k2, height, width):
    """Moves sampling coordinates x, y ((N, ...) tensors) radially with each
    image's k1, k2 ((N,) or scalars); returns the moved x, y."""
    cx, cy, half_diagonal = _geometry(height, width)
    rank = len(ops.shape(x))
    k1, k2 = _per_image(k1, rank), _per_image(k2, rank)
    dx, dy = x - cx, y - cy
    r2 = (dx * dx + dy * dy) / (half_diagonal * half_diagonal)
    factor = r2 * (k1 + k2 * r2)
    return x + dx * factor, y + dy * factor


def undistort(x, y, k1, k2, height, width):
    """The inverse of `distort`: for input points x, y ((N, ...)), the
    points whose moved position they are, and a boolean tensor `found`
    (False where no point of the map's one-to-one part moves there: with
    k1 < 0 the outer ring of the input is shown nowhere). Returns (x, y, found).

    Newton's method on the radius, `STEPS` steps from r = the target radius:
    the radial map is convex (k1 > 0) or concave (k1 < 0) there, so the steps
    approach the root from one side without overshooting it."""
    cx, cy, half_diagonal = _geometry(height, width)
    rank = len(ops.shape(x))
    k1, k2 = _per_image(k1, rank), _per_image(k2, rank)
    dx, dy = (x - cx) / half_diagonal, (y - cy) / half_diagonal
    target = ops.sqrt(dx * dx + dy * dy)  # the moved radius: r (1 + k1 r^2 + k2 r^4) = target
    radius = target
    for _ in range(STEPS):
        r2 = radius * radius
        value = radius * (1.0 + r2 * (k1 + k2 * r2)) - target
        slope = ops.maximum(1.0 + r2 * (3.0 * k1 + 5.0 * k2 * r2), 1e-3)
        radius = ops.clip(radius - value / slope, 0.0, 4.0)
    r2 = radius * radius
    found = ops.abs(radius * (1.0 + r2 * (k1 + k2 * r2)) - target) <= 1e-4 * ops.maximum(target, 1.0)
    scale = ops.where(target > 0.0, radius / ops.where(target > 0.0, target, 1.0), 1.0)
    return cx + (x - cx) * scale, cy + (y - cy) * scale, found
