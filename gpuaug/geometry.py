"""The whole geometric change of a transformation dict, for images and targets.

One pull matrix per image (rotation, shift, shear, zoom, flips and, when the
dict has `perspective`, the perspective homography composed into it) and,
when the dict has `distortion_k1`/`distortion_k2`, a radial lens map of the
sampling coordinates (`gpuaug.lens`). `warp.warp_images` resamples images
through it once; `gpuaug.targets` moves masks, boxes and keypoints with it.

Points that are "nowhere". Two output points sample no point of the input:
those beyond a perspective's horizon (w <= HORIZON, w the homography's third
coordinate, positive on the side where the image is shown: see
`matrices.perspective_matrices`), and those whose pre-lens point lies past the
lens's fold (`lens.fold`), where the radial map turns back and would show a
mirrored copy. One rule for both: with fill mode "constant" they get `cval`;
with the other modes ("nearest", "reflect", "wrap") they get the image's
border pixel on their ray from the input's centre c = ((W - 1) / 2,
(H - 1) / 2), i.e. the point where the half-line from c in the point's
direction meets the rectangle of the border pixels' centres (for a point
beyond the horizon the direction of its homogeneous coordinates,
(sx - cx w, sy - cy w): where it was heading as w fell to 0; for a folded
point, its pre-lens direction, which the radial lens keeps). Never a folded
copy, never float32 noise from a coordinate of 1e6 pixels. The affine path
(no perspective, no lens) has no such points and is computed as before.
"""

from typing import NamedTuple

from gpuaug.backend import ops

from gpuaug import lens, matrices as matrices_lib

# Output points with w <= this (w normalized by `matrices.perspective_matrices`:
# about 1 on the moved corners) are beyond a homography's horizon: "nowhere".
HORIZON = 1e-6


def border_point(dx, dy, height, width):
    """The point where the half-line from the centre c = ((W - 1) / 2,
    (H - 1) / 2) in direction (dx, dy) (tensors, any scale) meets the border
    pixels' centres (x in {0, W - 1} or y in {0, H - 1}): c + (dx, dy) t with
    t = min(cx / |dx|, cy / |dy|), in one division, clipped into the image
    (so that every fill mode reads the border pixel itself). A zero direction
    gives c. Returns (x, y) in pixel indices."""
    cx = (ops.cast(width, "float32") - 1.0) / 2.0
    cy = (ops.cast(height, "float32") - 1.0) / 2.0
    # t = cx cy / max(|dx| cy, |dy| cx), guarded for a zero direction or a one-pixel axis.
    reach = ops.maximum(ops.abs(dx) * cy, ops.abs(dy) * cx)
    t = (cx * cy) / ops.maximum(reach, 1e-30)
    return (ops.clip(cx + dx * t, 0.0, 2.0 * cx), ops.clip(cy + dy * t, 0.0, 2.0 * cy))


class Geometry(NamedTuple):
    """matrices: float32 (N, 3, 3) (or (1, 3, 3)), output (x, y, 1) -> input
    point; projective: whether their last row matters (a perspective);
    distortion: None or (k1, k2), each scalar or (N,); inverse: None, or the
    push matrices `matrices.invert(matrices, height, width)` computed once
    for an image size (`with_inverse`), for targets moved at that size."""

    matrices: object
    projective: bool = False
    distortion: tuple = None
    inverse: object = None

    def with_inverse(self, height, width):
        """This geometry with `inverse` for images of height x width (the
        size every later `forward_points` or `push_homogeneous` call must
        pass), so that each target moved with it reuses one inverse."""
        if self.inverse is not None:
            return self
        return self._replace(inverse=matrices_lib.invert(self.matrices, height, width))

    def _rows(self, x, y):
        m = self.matrices
        rank = len(ops.shape(x))

        def entry(i, j):
            return ops.reshape(m[:, i, j], (-1,) + (1,) * (rank - 1))

        def row(i):  # (a x + c) + b y, in this order: the float32 values the parity tests hold
            return (entry(i, 0) * x + entry(i, 2)) + entry(i, 1) * y

        return row

    def sample_points(self, x, y, height, width):
        """The input points (x, y) that output points (x, y) sample, lens
        included, and where they sample nowhere. Pixel indices, (N, ...)
        tensors or tensors that broadcast to them (the warp passes the
        columns (1, 1, W) and the rows (1, H, 1): each row of the matrix is
        then a per-column term plus a per-row term, one addition per output
        pixel).

        Returns (sx, sy, nowhere): `nowhere` is None on the affine path (no
        perspective, no lens: every point is somewhere, and sx, sy are
        computed exactly as before), otherwise a boolean tensor, True beyond
        the horizon or past the lens's fold; there sx, sy are the border
        point of the module's rule (the warp gives `cval` instead with
        "constant")."""
        row = self._rows(x, y)
        sx, sy = row(0), row(1)
        if not self.projective and self.distortion is None:
            return sx, sy, None
        cx = (ops.cast(width, "float32") - 1.0) / 2.0
        cy = (ops.cast(height, "float32") - 1.0) / 2.0
        nowhere = None
        if self.projective:
            w = row(2)
            nowhere = w <= HORIZON
            # The direction from c of the homogeneous point (sx, sy, w): for
            # w > 0 that of the point itself, w (sx / w - cx, sy / w - cy), which
            # the radial lens keeps; beyond the horizon where it was heading
            # as w fell to 0 (continuous through w = 0). No select needed.
            dx, dy = sx - cx * w, sy - cy * w
            safe = ops.where(nowhere, 1.0, w)
            sx, sy = sx / safe, sy / safe
        else:
            dx, dy = sx - cx, sy - cy
        if self.distortion is not None:
            px, py, folded = lens.distort(sx, sy, *self.distortion, height, width, with_fold=True)
            nowhere = folded if nowhere is None else ops.logical_or(nowhere, folded)
            sx, sy = px, py
        bx, by = border_point(dx, dy, height, width)
        return ops.where(nowhere, bx, sx), ops.where(nowhere, by, sy), nowhere

    def source_points(self, x, y, height, width):
        """`sample_points` without the `nowhere` mask: (sx, sy), nowhere
        points at the border point of the module's rule."""
        sx, sy, _ = self.sample_points(x, y, height, width)
        return sx, sy

    def forward_points(self, x, y, height, width):
        """Where input points (x, y) ((N, ...), pixel indices) are shown:
        the inverse of `source_points`. Returns (x, y, found): `found` is
        False where the point is shown nowhere (past the lens's fold radius,
        or, with a perspective, on the far side of the horizon); None on the
        affine path, where every point is shown somewhere."""
        found = None
        if self.distortion is not None:
            x, y, found = lens.undistort(x, y, *self.distortion, height, width)
        hx, hy, w = self.push_homogeneous(x, y, height, width)
        if not self.projective:
            return hx / w, hy / w, found
        visible = w > HORIZON
        safe = ops.where(visible, w, 1.0)
        found = visible if found is None else ops.logical_and(found, visible)
        return hx / safe, hy / safe, found

    def push_homogeneous(self, x, y, height, width):
        """The inverse matrix (`matrices.invert`) applied to pre-lens input
        points x, y: homogeneous output coordinates (hx, hy, w), w > 0 exactly
        where the point is on the shown side of the horizon (w = 1 affine).
        Uses `inverse` when set (computed for this height and width)."""
        inverse = self.inverse if self.inverse is not None else matrices_lib.invert(self.matrices, height, width)
        forward = Geometry(inverse, projective=True)
        row = forward._rows(x, y)
        return row(0), row(1), row(2)


def geometry(transformation, height, width, shift_axes="reference", center="reference"):
    """The `Geometry` of a transformation dict (see `sampling` for its keys)."""
    matrices = matrices_lib.transform_matrices(transformation, height, width, shift_axes=shift_axes,
                                               center=center)
    offsets = transformation.get("perspective")
    if offsets is not None:
        matrices = ops.matmul(matrices, matrices_lib.perspective_matrices(offsets, height, width))
    k1, k2 = transformation.get("distortion_k1"), transformation.get("distortion_k2")
    distortion = None
    if k1 is not None or k2 is not None:
        distortion = tuple(ops.cast(0.0 if k is None else k, "float32") for k in (k1, k2))
    return Geometry(matrices, projective=offsets is not None, distortion=distortion)
