"""The whole geometric change of a transformation dict, for images and targets.

One pull matrix per image (rotation, shift, shear, zoom, flips and, when the
dict has `perspective`, the perspective homography composed into it) and,
when the dict has `distortion_k1`/`distortion_k2`, a radial lens map of the
sampling coordinates (`gpuaug.lens`). `warp.warp_images` resamples images
through it once; `gpuaug.targets` moves masks, boxes and keypoints with it.
"""

from typing import NamedTuple

from keras import ops

from gpuaug import lens, matrices as matrices_lib


class Geometry(NamedTuple):
    """matrices: float32 (N, 3, 3) (or (1, 3, 3)), output (x, y, 1) -> input
    point; projective: whether their last row matters (a perspective);
    distortion: None or (k1, k2), each scalar or (N,)."""

    matrices: object
    projective: bool = False
    distortion: tuple = None

    def source_points(self, x, y, height, width):
        """The input points (x, y) that output points (x, y) sample, lens
        included: pixel indices, (N, ...) tensors or tensors that broadcast
        to them (the warp passes the columns (1, 1, W) and the rows (1, H, 1):
        each row of the matrix is then a per-column term plus a per-row term,
        one addition per output pixel)."""
        m = self.matrices
        rank = len(ops.shape(x))

        def entry(i, j):
            return ops.reshape(m[:, i, j], (-1,) + (1,) * (rank - 1))

        def row(i):  # (a x + c) + b y, in this order: the float32 values the parity tests hold
            return (entry(i, 0) * x + entry(i, 2)) + entry(i, 1) * y

        sx, sy = row(0), row(1)
        if self.projective:
            w = ops.maximum(row(2), HORIZON)
            sx, sy = sx / w, sy / w
        if self.distortion is not None:
            sx, sy = lens.distort(sx, sy, *self.distortion, height, width)
        return sx, sy

    def forward_points(self, x, y, height, width):
        """Where input points (x, y) ((N, ...), pixel indices) are shown:
        the inverse of `source_points`. Returns (x, y, found): `found` is
        False where the lens map shows the point nowhere (None without lens)."""
        found = None
        if self.distortion is not None:
            x, y, found = lens.undistort(x, y, *self.distortion, height, width)
        forward = Geometry(matrices_lib.invert(self.matrices), projective=True)
        x, y = forward.source_points(x, y, height, width)
        return x, y, found


# Output points with w <= this sample "beyond the horizon" of a homography (only
# a perspective_range close to 1 puts the horizon inside the image): they count
# as infinitely far, in the direction they were heading.
HORIZON = 1e-6


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
