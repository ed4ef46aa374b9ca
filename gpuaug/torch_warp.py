"""The PyTorch backend's resampling: `warp`'s rule, in planes, with PyTorch's own functions.

Why a form of its own: PyTorch runs every `keras.ops` call eagerly, one kernel
and one new tensor per operation, and on its CPU kernels an innermost axis of
C = 3 channels defeats vectorization: a blend broadcast over (N, H, W, 1)
fractions took 17 times an addition, a gather of (1, C) pixel rows 2.5 ms for a
batch of 256 images of 32 x 32. The `keras.ops` form ran at a quarter of
Kornia's speed (`python -m benchmarks.peers`). Here the images are gathered as
planes (N, C, H * W), each tap one `torch.gather` whose index is shared by the
channels, and blended with `torch.lerp` (one kernel per blend), the fractions
broadcast over the channel axis. The result is a channels-last view of an
(N, C, H, W) tensor, which Keras' convolutions on PyTorch take as it is.

The same rule as `warp` (scipy's): the coordinates are folded by the fill
mode, order 0 takes the pixel floor(c + 0.5), order 1 blends floor(c) and
floor(c) + 1 with indices clamped into the image, and "constant" gives `cval`
to points outside the image or "nowhere". The same float32 values: folded
coordinates, fractions and taps are computed as in `warp`; `torch.lerp(a, b,
t)` is a + t (b - a) for t < 0.5 and b - (1 - t) (b - a) above, exact where a
equals b, so a blend may differ from `warp`'s in its last bit (tests hold
every backend to the same bounds against the reference).

Not used for `grid_sample`: it takes coordinates normalized to [-1, 1] and
weighs the four taps by products of the fractions, so a whole-pixel
coordinate or a flat region comes back a bit below its level (13 as
12.999999), and brightness, which truncates to 8-bit levels as the
reference's PIL path does, then lands a level lower on thousands of pixels.
"""

import torch

from gpuaug import warp


def _folded(coordinate, size, fill_mode):
    """Coordinates folded by the fill mode (`warp._fold`'s rule), then
    clamped into [0, size - 1] (NaN to 0), and `inside` for "constant".

    Clamping changes no pixel: a point outside [0, size - 1] after folding
    reads the edge pixel in both taps in `warp` (indices clamped), and so it
    does here, with a fraction of 0."""
    if fill_mode not in ("constant", "nearest"):
        coordinate, _ = warp._fold(coordinate, size, fill_mode)
    clamped = coordinate.clamp(0.0, float(size - 1))
    inside = clamped == coordinate if fill_mode == "constant" else None  # False for NaN
    return clamped.nan_to_num_(nan=0.0), inside


def _planes(images, pad, tail, cval):
    """The images as planes (N, C, L + tail), in the images' dtype: each
    image's (H + pad) x (W + pad) pixels, with `pad` = 1 replicating the last
    column and row (the clamped "+ 1" taps), then `tail` values of `cval`
    (where points outside the image read)."""
    batch, height, width, channels = images.shape
    length = (height + pad) * (width + pad)
    planes = images.new_empty((batch, channels, length + tail))
    grid = planes[..., :length].view(batch, channels, height + pad, width + pad)
    grid[:, :, :height, :width] = images.permute(0, 3, 1, 2)
    if pad:
        grid[:, :, :height, width] = grid[:, :, :height, width - 1]
        grid[:, :, height, :] = grid[:, :, height - 1, :]
    if tail:
        planes[..., length:] = cval
    return planes, length


# On the CPU the batch is resampled a few images at a time, about this many
# bytes of planes per chunk (of 1, 2, 4 and 8 MB, 2 MB was the fastest on 2
# cores): a chunk's planes, indices and taps stay in the cache, and its
# temporaries are reused by the allocator instead of being new pages each
# (224 x 224 images: 4 times faster than the whole batch at once). On an
# accelerator, or inside `torch.compile`, the whole batch is one chunk.
CPU_CHUNK_BYTES = 2 << 20
FLOAT32_WHOLE_NUMBERS = 2**24  # float32 holds every whole number up to this one


def _chunk_size(images):
    batch, height, width, channels = images.shape
    if images.device.type != "cpu" or torch.compiler.is_compiling():
        return max(batch, 1)
    return max(1, CPU_CHUNK_BYTES // max(1, 4 * channels * (height + 1) * (width + 1)))


def resample(images, x, y, nowhere, fill_mode, cval, interpolation_order):
    """Samples every image at its points, in `warp.warp_images`' rule.

    Args:
        images: (N, H, W, C) channels last, float32; or, with order 0, any
            dtype, gathered as it is (`warp.warp_images`' `keep_dtype`).
        x, y: float32 (N, H, W) sample coordinates (column, row; pixel
            indices), not yet folded.
        nowhere: None or a boolean (N, H, W), True where the point samples
            nowhere (`geometry`): `cval` with "constant".
        fill_mode, cval, interpolation_order: as `warp.warp_images` (`cval`
            is given the images' dtype).

    Returns:
        (N, H, W, C) in the images' dtype, a channels-last view of an
        (N, C, H, W) tensor.
    """
    if fill_mode not in warp.FILL_MODES:
        warp._fold(x, 1, fill_mode)  # its error
    x, y = torch.broadcast_to(x, y.shape), torch.broadcast_to(y, x.shape)
    step = _chunk_size(images)
    chunks = [_resample(images[i:i + step], x[i:i + step], y[i:i + step],
                        None if nowhere is None else nowhere[i:i + step], fill_mode, cval, interpolation_order)
              for i in range(0, images.shape[0], step)]
    if not chunks:  # an empty batch
        return images.new_empty((0,) + tuple(images.shape[1:]))
    sampled = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
    return sampled.permute(0, 2, 3, 1)


def _resample(images, x, y, nowhere, fill_mode, cval, interpolation_order):
    """`resample` of one chunk: (n, C, H, W)."""
    batch, height, width, channels = images.shape
    (x, x_inside), (y, y_inside) = _folded(x, width, fill_mode), _folded(y, height, fill_mode)
    inside = None if x_inside is None else x_inside & y_inside if nowhere is None else x_inside & y_inside & ~nowhere
    pad = 1 if interpolation_order == 1 else 0
    # "constant": points outside read `cval` from the tail, in every tap.
    tail = 0 if inside is None else width + 3
    planes, length = _planes(images, pad, tail, cval)
    if interpolation_order == 0:
        x, y = torch.floor(x + 0.5).clamp(max=width - 1), torch.floor(y + 0.5).clamp(max=height - 1)
    else:
        x_start, y_start = torch.floor(x), torch.floor(y)
        x_fraction, y_fraction = (x - x_start)[:, None], (y - y_start)[:, None]
        x, y = x_start, y_start
    # The top-left tap's index in the planes, and `length`, the tail, outside.
    if length + tail <= FLOAT32_WHOLE_NUMBERS:  # one addition of whole numbers, exact in float32
        index = torch.add(x, y, alpha=width + pad).to(torch.int64)
    else:  # planes past 2**24 values: float32 would round the index (a neighbour's pixel)
        index = torch.add(x.to(torch.int64), y.to(torch.int64), alpha=width + pad)
    if inside is not None:
        index = torch.where(inside, index, length)
    index = index.reshape(batch, 1, height * width).expand(batch, channels, height * width)

    def tap(offset):  # the pixels `offset` places after each index: one gather, the index shared by the channels
        return torch.gather(planes[..., offset:offset + length + 1], 2, index).view(batch, channels, height, width)

    if interpolation_order == 0:
        return tap(0)
    # Three blends, each in place in a tap (one new tensor less each).
    upper = tap(0).lerp_(tap(1), x_fraction)
    lower = tap(width + 1).lerp_(tap(width + 2), x_fraction)
    return upper.lerp_(lower, y_fraction)
