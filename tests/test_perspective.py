"""Perspective and lens distortion in the same single warp.

Against an independent float64 reference: the homography from the four point
pairs by numpy's linear solve, the radial map in float64, the image resampled
by scipy's `map_coordinates` at the same order and mode (scipy's boundary
rules are what gpuaug reproduces), with the documented rule for points that
sample nowhere (beyond the horizon, past the lens's fold), and the order-1
error bound relative to the sampling point's float32 condition
(`bound_check`; strong settings in tests/test_geometry_faults.py). Against a peer: Keras' RandomPerspective,
its own draws replayed. And the properties: straight lines stay straight, the
corners land where the draw allows, the draw is uniform, rotation plus
perspective is one resampling, keypoints go forward and back, k1 = 0 is the
affine path bit for bit."""

import keras
import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
import tensorflow as tf

import gpuaug
from conftest import run_python
from gpuaug import geometry, lens

FILL_MODES = ["constant", "nearest", "reflect", "wrap"]
TOLERANCE = 1e-3  # the affine parity tests' bound: on 0..255 data, float32 against float64
# With a homography's division or a lens map the error is relative to the
# sampling point's float32 condition (`bound_check`, docs/reference.md): for
# 32x32 images with d <= 0.6 and |k| <= 0.3, this (measured: 2.3e-3 on CIFAR).
PROJECTIVE_TOLERANCE = 5e-3
CORNERS = lambda h, w: np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], "float64")  # noqa: E731


def homography_float64(source, target):
    """The 3x3 H with H source_k ~ target_k for four point pairs (x, y): the
    classic 8x8 linear system, solved by numpy in float64."""
    rows, values = [], []
    for (x, y), (u, v) in zip(source, target):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        values += [u, v]
    return np.append(np.linalg.solve(np.array(rows), np.array(values)), 1.0).reshape(3, 3)


def fold_float64(k1, k2):
    """u* = r*^2: the smallest positive root of the radial map's slope
    1 + 3 k1 u + 5 k2 u^2 (numpy's roots), inf where there is none."""
    roots = np.roots([5.0 * k2, 3.0 * k1, 1.0]) if k2 != 0 else ([-1.0 / (3.0 * k1)] if k1 != 0 else [])
    positive = [r.real for r in np.atleast_1d(roots) if abs(np.imag(r)) < 1e-12 and r.real > 0]
    return min(positive) if positive else np.inf


def reference_points(pull, height, width, k1=0.0, k2=0.0):
    """The float64 sampling points of every output pixel under the documented
    rules (docs/reference.md): output (x, y) -> pull (a homography, w > 0 on
    the shown side) -> radial map; "nowhere" where w <= 0 or where the
    pre-lens point lies past the fold (r^2 > u*); a nowhere point samples the
    border pixel on its ray from the centre (the direction of its homogeneous
    coordinates beyond the horizon). Returns (x, y, nowhere, info): info has
    w, r2, u (u*) and the float64 condition numbers `condition` (of the
    sampling point's float32 evaluation, see `coordinate_error`)."""
    y, x = np.mgrid[0:height, 0:width].astype("float64")
    point = np.einsum("ij,jhw->ihw", pull, np.stack([x, y, np.ones_like(x)]))
    terms = np.einsum("ij,jhw->ihw", np.abs(pull), np.stack([np.abs(x), np.abs(y), np.ones_like(x)]))
    w = point[2]
    beyond = w <= 0
    safe = np.where(beyond, 1.0, w)
    sx, sy = point[0] / safe, point[1] / safe
    cx, cy = (width - 1) / 2, (height - 1) / 2
    half_diagonal = max(np.hypot(width - 1, height - 1) / 2, 0.5)
    r2 = ((sx - cx) ** 2 + (sy - cy) ** 2) / half_diagonal**2
    u = fold_float64(k1, k2)
    folded = ~beyond & (r2 > u)
    factor = r2 * (k1 + k2 * r2)
    px, py = sx + (sx - cx) * factor, sy + (sy - cy) * factor
    nowhere = beyond | folded
    dx = np.where(beyond, point[0] - cx * w, sx - cx)
    dy = np.where(beyond, point[1] - cy * w, sy - cy)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.minimum(np.where(dx != 0, cx / np.abs(dx), np.inf), np.where(dy != 0, cy / np.abs(dy), np.inf))
    t = np.where(np.isfinite(t), t, 0.0)
    bx, by = np.clip(cx + dx * t, 0, width - 1), np.clip(cy + dy * t, 0, height - 1)
    # The float32 evaluation's condition: the sum of the magnitudes of the
    # terms of X = (a x + b y + c) / w, relative to |w| (the forward error
    # bound of the rows and the division), then the lens's slope and terms.
    abs_w = np.maximum(np.abs(w), 1e-300)
    perspective = np.maximum(terms[0] + np.abs(sx) * terms[2], terms[1] + np.abs(sy) * terms[2]) / abs_w
    slope = 1 + np.abs(factor) + 2 * r2 * (abs(k1) + 2 * abs(k2) * r2)
    magnitude = np.maximum(np.abs(px), np.abs(py)) + np.hypot(sx - cx, sy - cy) * (1 + np.abs(factor))
    condition = slope * perspective + magnitude + max(height, width)
    # A nowhere point's border point: its direction's error, relative, times the reach (the image's size).
    direction = np.where(beyond, np.maximum(terms[0], terms[1]) + max(cx, cy) * terms[2], perspective)
    reach = np.maximum(np.hypot(dx, dy), 1e-300)
    condition = np.where(nowhere, max(height, width) * (1 + direction / reach), condition)
    info = dict(w=w, r2=r2, u=u, condition=condition)
    return np.where(nowhere, bx, px), np.where(nowhere, by, py), nowhere, info


def reference_warp(image, pull, order, mode, cval, k1=0.0, k2=0.0, with_points=False):
    """scipy's map_coordinates on one (H, W, C) image at `reference_points`
    (nowhere points: `cval` with "constant")."""
    height, width = image.shape[:2]
    sx, sy, nowhere, info = reference_points(pull, height, width, k1, k2)
    out = np.stack([scipy.ndimage.map_coordinates(image[..., c].astype("float64"), [sy, sx], order=order,
                                                  mode=mode, cval=cval) for c in range(image.shape[-1])], axis=-1)
    if mode == "constant":
        out[nowhere] = cval
    return (out, dict(info, x=sx, y=sy, nowhere=nowhere)) if with_points else out


def affine_float64(layer, transformation, height, width):
    """(N, 3, 3) (or (1, 3, 3)) affine pull matrices of the dict, in float64
    (gpuaug's own: their parity with the reference is tested elsewhere)."""
    augmentation = layer.augmentation
    return np.asarray(gpuaug.transform_matrices({k: v for k, v in transformation.items() if k not in (
        "perspective", "distortion_k1", "distortion_k2")}, height, width, shift_axes=augmentation.shift_axes,
        center=augmentation.center), "float64")


def pull_float64(layer, transformation, index, height, width, affine=None):
    """The pull map of image `index` built in float64 from the dict: the
    affine matrix (`affine_float64`, or its matrix for this image given), times
    the homography solved from the moved corners to the corners, its sign
    chosen so that w > 0 on the majority of the moved corners (the documented
    side where the image is shown)."""
    if affine is None:
        affine = affine_float64(layer, transformation, height, width)
        affine = affine[index] if len(affine) > 1 else affine[0]
    offsets = transformation.get("perspective")
    if offsets is None:
        return affine
    corners = CORNERS(height, width)
    moved = corners + np.asarray(offsets, "float64")[index]
    homography = homography_float64(moved, corners)
    w = homography[2] @ np.concatenate([moved, np.ones((4, 1))], axis=1).T
    return affine @ (homography * np.sign(np.sign(w).sum()))


def compare(images, transformation, layer, order, mode):
    ours = np.asarray(layer.transform_images(images, transformation))
    reference = np.stack([
        reference_warp(image, pull_float64(layer, transformation, i, *images.shape[1:3]), order, mode, 7.0,
                       float(np.asarray(transformation.get("distortion_k1", np.zeros(len(images))))[i]),
                       float(np.asarray(transformation.get("distortion_k2", np.zeros(len(images))))[i]))
        for i, image in enumerate(images)])
    return ours, reference


EPS = 2.0**-24  # float32's unit roundoff
# The documented bound (docs/reference.md): an order-1 value is off by at most
# the steepest step between neighbouring pixels times BOUND_FACTOR * EPS *
# condition pixels (the sampling point's float32 error), plus BLEND (the blend's
# own rounding on 0..255 data). Measured factor: at most 2.7 (TensorFlow and JAX).
BOUND_FACTOR = 8
BLEND = 2e-4


def lens_values(transformation, index, count):
    return tuple(float(np.asarray(transformation.get(key, np.zeros(count)))[index])
                 for key in ("distortion_k1", "distortion_k2"))


def bound_check(images, ours, layer, transformation, order, mode, cval=7.0):
    """Per pixel (max over channels): the error |ours - reference|, the bound,
    and the pixels left out because float32 may take either side of a
    decision within its error there: a "constant" border, a "wrap" seam
    (scipy's wrap jumps at every multiple of n - 1), an order-0 tie, the
    horizon (w within float32 error of 0; gpuaug's threshold is
    `geometry.HORIZON`), the fold (r^2 within float32 error of u*).
    Returns dict(error, bound, excluded, nowhere, inside, condition),
    each (N, H, W)."""
    n, height, width = images.shape[:3]
    keys = ("error", "bound", "excluded", "nowhere", "inside", "condition")
    result = {key: [] for key in keys}
    affines = affine_float64(layer, transformation, height, width)
    for i in range(n):
        pull = pull_float64(layer, transformation, i, height, width, affine=affines[i if len(affines) > 1 else 0])
        k1, k2 = lens_values(transformation, i, n)
        reference, info = reference_warp(images[i], pull, order, mode, cval, k1, k2, with_points=True)
        x, y, condition = info["x"], info["y"], info["condition"]
        delta = BOUND_FACTOR * EPS * condition
        excluded = np.zeros((height, width), bool)
        somewhere = ~info["nowhere"]  # a nowhere point's border point is clipped into the image
        for c, size in ((x, width), (y, height)):
            if mode == "constant":
                excluded |= somewhere & ((np.abs(c) <= delta) | (np.abs(c - (size - 1)) <= delta))
            if mode == "wrap" and size > 1:
                excluded |= somewhere & (np.abs(c - np.round(c / (size - 1)) * (size - 1)) <= delta)
            if order == 0:
                excluded |= np.abs(np.abs(c - np.floor(c)) - 0.5) <= delta
        offsets = transformation.get("perspective")
        if offsets is not None:
            moved = CORNERS(height, width) + np.asarray(offsets, "float64")[i]
            scale = np.abs(pull[2] @ np.concatenate([moved, np.ones((4, 1))], axis=1).T).mean()
            yy, xx = np.mgrid[0:height, 0:width]
            terms = np.abs(pull[2, 0] * xx) + np.abs(pull[2, 1] * yy) + np.abs(pull[2, 2])
            excluded |= np.abs(info["w"]) <= 10 * geometry.HORIZON * scale + BOUND_FACTOR * EPS * terms
        if np.isfinite(info["u"]):
            half_diagonal = max(np.hypot(width - 1, height - 1) / 2, 0.5)
            excluded |= np.abs(info["r2"] - info["u"]) <= BOUND_FACTOR * EPS * (
                4 * info["r2"] + 2 * np.sqrt(info["r2"]) * condition / half_diagonal)
        step = max(np.abs(np.diff(images[i], axis=0)).max(initial=0), np.abs(np.diff(images[i], axis=1)).max(initial=0))
        result["error"].append(np.abs(ours[i].astype("float64") - reference).max(axis=-1))
        result["bound"].append(step * BOUND_FACTOR * EPS * condition + BLEND)
        result["excluded"].append(excluded)
        result["nowhere"].append(info["nowhere"])
        result["inside"].append((x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1) & ~info["nowhere"])
        result["condition"].append(condition)
    return {key: np.stack(value) for key, value in result.items()}


@pytest.fixture(scope="module")
def images(cifar_test_images):
    return cifar_test_images[:16]


@pytest.mark.parametrize("order", [0, 1])
@pytest.mark.parametrize("mode", FILL_MODES)
@pytest.mark.parametrize("kwargs", [dict(perspective_range=0.6), dict(distortion_range=0.3),
                                    dict(distortion_range=[0.1, 0.1]),
                                    dict(perspective_range=0.4, distortion_range=0.2, rotation_range=30,
                                         zoom_range=0.2, horizontal_flip=True)])
def test_pixels_equal_a_float64_scipy_reference(images, order, mode, kwargs):
    layer = gpuaug.RandomTransform(**kwargs, fill_mode=mode, interpolation_order=order, cval=7.0, seed=4)
    transformation = layer.get_random_transformation(images)
    ours, reference = compare(images, transformation, layer, order, mode)
    difference = np.abs(ours - reference)
    check = bound_check(images, ours, layer, {k: np.asarray(v) for k, v in transformation.items() if v is not None},
                        order, mode)
    kept = ~check["excluded"]
    if order == 0:
        # Order 0 picks a pixel: a sampling point within float32 rounding of a
        # half-pixel tie may pick its neighbour (the homography's division and
        # the lens's polynomial round where the affine path does not); elsewhere
        # it is the reference's pixel.
        assert (difference > 0).mean() <= 2e-4, (difference > 0).sum()
        assert np.all(check["error"][kept] == 0)
    else:
        # Bilinear: float32 sampling points (a few millionths of a pixel off
        # float64's) times the steepest pixel step: within the stated bound.
        assert difference.max() <= PROJECTIVE_TOLERANCE, difference.max()
        assert np.all(check["error"][kept] <= check["bound"][kept])
    assert check["excluded"].mean() < 1e-3
    assert not np.array_equal(ours, images)


@pytest.mark.slow
def test_both_data_formats_and_xla(images):
    layer = gpuaug.RandomTransform(perspective_range=0.5, distortion_range=0.2, rotation_range=20, seed=1)
    transformation = layer.get_random_transformation(images)
    last = np.asarray(layer.transform_images(images, transformation))
    first = gpuaug.RandomTransform(perspective_range=0.5, distortion_range=0.2, rotation_range=20,
                                   data_format="channels_first")
    np.testing.assert_array_equal(
        np.asarray(first.transform_images(images.transpose(0, 3, 1, 2), transformation)).transpose(0, 2, 3, 1), last)
    compiled = tf.function(lambda x: layer.transform_images(x, transformation), jit_compile=True)
    np.testing.assert_allclose(np.asarray(compiled(images)), last, atol=1e-3)


def test_jit_on_jax_gives_tensorflows_pixels(images, tmp_path):
    layer = gpuaug.RandomTransform(perspective_range=0.5, distortion_range=[0.15, 0.05], seed=2)
    transformation = {k: np.asarray(v) for k, v in layer.get_random_transformation(images).items() if v is not None}
    np.savez(tmp_path / "in.npz", images=images, **transformation)
    expected = np.asarray(layer.transform_images(images, transformation))
    result = run_python(f"""
import numpy as np, jax, gpuaug
data = dict(np.load({str(tmp_path / 'in.npz')!r}))
images = data.pop("images")
layer = gpuaug.RandomTransform(perspective_range=0.5, distortion_range=[0.15, 0.05])
out = jax.jit(lambda x, t: layer.transform_images(x, t))(images, data)
np.save({str(tmp_path / 'out.npy')!r}, np.asarray(out))
""", backend="jax")
    assert result.returncode == 0, result.stderr[-3000:]
    # Each within the bound of the float64 pixels (measured here: 1.3e-3 apart).
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=PROJECTIVE_TOLERANCE)


def test_keras_random_perspective_draws_replayed_give_its_pixels(images):
    """Keras' RandomPerspective draws start and end points (its top-left
    corner never moves: end = start + start * factor); replayed through
    gpuaug as corner displacements (end - start, in gpuaug's corner order),
    the pixels agree away from the borders (the two fill rules differ)."""
    peer = keras.layers.RandomPerspective(factor=1.0, scale=0.6, interpolation="bilinear", seed=3)
    draw = peer.get_random_transformation(images, training=True)
    theirs = np.asarray(peer.transform_images(images, draw, training=True))
    start, end = np.asarray(draw["start_points"]), np.asarray(draw["end_points"])
    assert np.all(end[:, 0] == 0) and np.all(start[:, 0] == 0)  # its top-left corner stays
    order = [0, 1, 3, 2]  # Keras: TL, TR, BL, BR; gpuaug: TL, TR, BR, BL
    applied = np.asarray(draw["apply_perspective"])  # Keras applies it to a random part of the batch only
    assert 0 < applied.sum() < len(applied)
    offsets = (end - start)[:, order] * applied[:, None, None]
    layer = gpuaug.RandomTransform(fill_mode="constant")
    ours = np.asarray(layer.transform_images(images, {"perspective": offsets}))
    # Compare where the sampling point is at least a pixel inside the image.
    rows, cols = np.mgrid[0:32, 0:32].astype("float32")
    geo = geometry.geometry({"perspective": offsets}, 32, 32)
    sx, sy = (np.asarray(v) for v in geo.source_points(np.broadcast_to(cols, (16, 32, 32)),
                                                       np.broadcast_to(rows, (16, 32, 32)), 32, 32))
    inside = (sx >= 1) & (sx <= 30) & (sy >= 1) & (sy <= 30)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(ours[inside], theirs[inside], atol=2e-3)  # measured: 7.2e-4


def test_straight_lines_stay_straight_and_corners_land_in_their_range():
    height, width, d = 40, 60, 0.7
    layer = gpuaug.RandomTransform(perspective_range=d, seed=5)
    t = layer.get_random_transformation(np.zeros((32, height, width, 1)))
    # Points on lines of the input (a diagonal, a row, a column) stay on one line.
    s = np.linspace(0, 1, 9)
    for line in ([s * (width - 1) + 0.5, s * (height - 1) + 0.5], [s * (width - 1) + 0.5, np.full(9, 17.5)],
                 [np.full(9, 33.5), s * (height - 1) + 0.5]):
        points = np.broadcast_to(np.stack(line, -1), (32, 9, 2)).astype("float32")
        moved, _ = gpuaug.targets.move_points(points, layer._geometry(t, height, width), height, width)
        moved = np.asarray(moved, "float64")
        direction = moved[:, -1] - moved[:, 0]
        offsets = moved - moved[:, :1]
        cross = direction[:, None, 0] * offsets[..., 1] - direction[:, None, 1] * offsets[..., 0]
        assert np.abs(cross / np.linalg.norm(direction, axis=-1)[:, None]).max() < 1e-3
    # The corners' centres land on the moved corners, each inward by at most d times half the size.
    corners = np.broadcast_to(CORNERS(height, width) + 0.5, (32, 4, 2)).astype("float32")
    moved, _ = gpuaug.targets.move_points(corners, layer._geometry(t, height, width), height, width)
    inward = (np.asarray(moved) - corners) * np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]])
    np.testing.assert_allclose(np.asarray(moved) - corners, np.asarray(t["perspective"]), atol=1e-3)
    assert inward.min() >= -1e-3
    assert inward[..., 0].max() <= d * (width - 1) / 2 + 1e-3 and inward[..., 1].max() <= d * (height - 1) / 2 + 1e-3


def test_corner_offsets_are_uniform_over_their_range():
    height, width, d = 30, 50, 0.5
    t = gpuaug.RandomTransform(perspective_range=d, seed=6).get_random_transformation(
        np.zeros((4000, height, width, 1), "float32"))
    inward = np.asarray(t["perspective"]) * np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]])
    limits = np.array([d * (width - 1) / 2, d * (height - 1) / 2])
    for corner in range(4):
        for axis in range(2):
            assert scipy.stats.kstest(inward[:, corner, axis] / limits[axis], "uniform").pvalue > 1e-3
    assert abs(np.corrcoef(inward[:, 0, 0], inward[:, 1, 0])[0, 1]) < 0.1  # independent corners


def test_rotation_plus_perspective_is_one_resampling(images):
    """One gather pass in the traced graph (as many gathers as the affine
    warp), and the pixels of the float64 composite, not of two chained warps."""
    def gathers(**kwargs):
        layer = gpuaug.RandomTransform(**kwargs, seed=0)
        graph = tf.function(lambda x: layer(x, training=True)).get_concrete_function(
            tf.TensorSpec((8, 32, 32, 3), tf.float32)).graph
        return sum(op.type in ("GatherV2", "GatherNd", "ResourceGather") for op in graph.get_operations())

    assert gathers(rotation_range=30, perspective_range=0.5, distortion_range=0.2) == gathers(rotation_range=30) > 0
    layer = gpuaug.RandomTransform(rotation_range=40, perspective_range=0.6, seed=7)
    t = layer.get_random_transformation(images)
    ours, composite = compare(images, t, layer, 1, "nearest")
    rotated = gpuaug.RandomTransform().transform_images(images, {"theta": t["theta"]})
    chained = np.asarray(gpuaug.RandomTransform().transform_images(rotated, {"perspective": t["perspective"]}))
    assert np.abs(ours - composite).max() < PROJECTIVE_TOLERANCE < 1.0 < np.abs(chained - composite).max()


def test_lens_keypoints_go_forward_and_back_within_1e3_pixels():
    height, width = 64, 64
    rng = np.random.default_rng(8)
    points = rng.uniform(0, 64, (20, 50, 2)).astype("float32")
    for k1, k2 in ((0.3, 0.0), (-0.3, 0.0), (0.1, 0.1), (-0.1, -0.1), (0.2, -0.1)):
        k = (np.full(20, k1, "float32"), np.full(20, k2, "float32"))
        x, y, found = lens.undistort(points[..., 0], points[..., 1], *k, height, width)
        back = np.stack([np.asarray(v) for v in lens.distort(x, y, *k, height, width)], -1)
        found = np.asarray(found)
        assert found.mean() > 0.5
        assert np.abs(back[found] - points[found]).max() < 1e-3, (k1, k2)
        # Not found: the lens shows that point nowhere (k1 < 0 hides the outer ring).
        if not found.all():
            assert k1 < 0 or k2 < 0


def test_with_k1_zero_the_output_is_the_affine_paths_bit_for_bit(images):
    layer = gpuaug.RandomTransform(rotation_range=30, zoom_range=0.2, horizontal_flip=True, seed=9)
    t = layer.get_random_transformation(images)
    affine = np.asarray(layer.transform_images(images, t))
    zero = np.zeros(len(images), "float32")
    np.testing.assert_array_equal(np.asarray(layer.transform_images(images, dict(t, distortion_k1=zero))), affine)
    np.testing.assert_array_equal(np.asarray(layer.transform_images(
        images, dict(t, distortion_k1=zero, distortion_k2=zero))), affine)
    # And without the new arguments nothing is drawn differently.
    again = gpuaug.RandomTransform(rotation_range=30, zoom_range=0.2, horizontal_flip=True, seed=9)
    assert set(again.get_random_transformation(images)) == set(t) and "perspective" not in t


def test_the_lens_bends_lines_the_documented_way():
    """k1 > 0: barrel, the middle of an off-centre straight line lies further
    from the centre than its ends do; k1 < 0: pincushion, the reverse."""
    height = width = 65
    for k1, barrel in ((0.3, True), (-0.3, False)):
        layer = gpuaug.RandomTransform()
        image = np.zeros((1, height, width, 1), "float32")
        image[0, :, 50] = 255.0  # a vertical line 18 pixels right of the centre
        out = np.asarray(layer.transform_images(image, {"distortion_k1": np.array([k1])}))[0, :, :, 0]
        columns = [np.argmax(out[row]) for row in (5, 32, 59)]
        middle_further = abs(columns[1] - 32) > max(abs(columns[0] - 32), abs(columns[2] - 32))
        assert middle_further == barrel, (k1, columns)


@pytest.mark.slow
def test_targets_move_with_perspective_and_lens():
    height, width = 40, 48
    rng = np.random.default_rng(10)
    layer = gpuaug.RandomTransform(perspective_range=0.5, distortion_range=0.15, rotation_range=20,
                                   interpolation_order=0, fill_mode="constant", bounding_box_format="xyxy",
                                   seed=11)
    checked = 0
    for trial in range(20):
        row, col = rng.integers(8, height - 8), rng.integers(8, width - 8)
        image = np.zeros((1, height, width, 1), "float32")
        image[0, row - 2:row + 3, col - 2:col + 3] = 1.0  # a 5x5 mark
        t = layer.get_random_transformation(image)
        warped = np.asarray(layer.transform_images(image, t))[0, ..., 0]
        masks = np.asarray(layer.transform_segmentation_masks(image.astype("int32"), t))[0, ..., 0]
        np.testing.assert_array_equal(masks, warped.astype("int32"))  # masks: the images' nearest pixels
        x, y = np.asarray(layer.transform_keypoints(np.array([[[col + 0.5, row + 0.5]]], "float32"), t,
                                                    height, width))[0, 0]
        box = np.asarray(layer.transform_bounding_boxes(
            {"boxes": np.array([[[col - 2, row - 2, col + 3, row + 3]]], "float32")}, t, height, width)["boxes"])[0, 0]
        if x < 0 or not warped.any():
            continue
        assert warped[int(y), int(x)] == 1.0, (trial, x, y)
        rows, cols = np.nonzero(warped)
        assert box[0] <= cols.min() + 1 and box[1] <= rows.min() + 1  # the box holds the warped mark
        assert box[2] >= cols.max() and box[3] >= rows.max()
        checked += 1
    assert checked >= 12


@pytest.mark.parametrize("kwargs, match", [
    (dict(perspective_range=1.0), "perspective_range"), (dict(perspective_range=-0.1), "perspective_range"),
    (dict(distortion_range=0.34), "distortion_range.*3 k \\+ 5 k2 < 1"),
    (dict(distortion_range=[0.1, 0.2]), "distortion_range"), (dict(distortion_range=-0.1), "distortion_range"),
    (dict(distortion_range=[0.1, 0.1, 0.1]), "distortion_range")])
def test_bad_ranges_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gpuaug.RandomTransform(**kwargs)


def test_config_round_trip_and_a_compiled_training_step():
    layer = gpuaug.RandomTransform(perspective_range=0.3, distortion_range=[0.1, 0.05], seed=1)
    again = gpuaug.RandomTransform.from_config(layer.get_config())
    assert again.augmentation == layer.augmentation
    inputs = keras.Input((16, 16, 3))
    x = gpuaug.RandomTransform(perspective_range=0.3, distortion_range=0.1, seed=2)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x)))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", jit_compile=True)
    history = model.fit(np.random.default_rng(0).uniform(0, 255, (16, 16, 16, 3)).astype("float32"),
                        np.arange(16) % 2, epochs=1, batch_size=8, verbose=0)
    assert model.jit_compile and np.isfinite(history.history["loss"][0])


@pytest.mark.slow
def test_train_py_flags():
    from conftest import CIFAR_DIR, assert_one_line_error, run_cli

    result = run_cli("--data-dir", str(CIFAR_DIR), "--limit", "64", "--epochs", "1", "--model", "tiny",
                     "--verbose", "0", "--perspective-range", "0.3", "--distortion-range", "0.1", "0.05")
    assert result.returncode == 0, result.stderr[-2000:]
    assert_one_line_error(run_cli("--perspective-range", "1.5"), "--perspective-range")
    assert_one_line_error(run_cli("--distortion-range", "0.4"), "--distortion-range", "3 k + 5 k2 < 1")
    assert_one_line_error(run_cli("--augment", "generator", "--perspective-range", "0.2"), "need --augment gpu")


def test_preview_shows_perspective(tmp_path):
    from gpuaug import preview

    preview.main(["--out", str(tmp_path / "grid.png"), "--images", "2", "--draws", "1",
                  "--perspective-range", "0.5", "--distortion-range", "0.2"])
    assert (tmp_path / "grid.png").stat().st_size > 1000
