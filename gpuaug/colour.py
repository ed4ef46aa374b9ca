"""Channel shift and brightness, per image, as the reference computes them.

Both take channels-last float32 batches (N, H, W, C) and one value per image.
"""

from gpuaug.backend import ops

_IMAGE_AXES = (1, 2, 3)


def _per_image(value):
    return ops.reshape(ops.cast(value, "float32"), (-1, 1, 1, 1))


def channel_shift(images, intensity):
    """Adds `intensity` (pixel units) to every channel, then clips each image
    to its own [min, max] before the shift (`apply_channel_shift`)."""
    low = ops.min(images, axis=_IMAGE_AXES, keepdims=True)
    high = ops.max(images, axis=_IMAGE_AXES, keepdims=True)
    return ops.minimum(ops.maximum(images + _per_image(intensity), low), high)


def brightness_shift(images, factor):
    """Scales brightness by `factor` the way the reference does it through PIL
    (`apply_brightness_shift(x, factor, scale=False)`).

    Each image becomes 8-bit first (truncated; rescaled to 0..255 only if it
    has values outside 0..255), colour channels become floor(factor * level)
    clipped to 0..255, an alpha channel (4th of 4) is kept, and rescaled
    images are mapped back to their original range. So the output is
    quantized to whole levels. Channel count must be 1, 3 or 4.
    """
    factor = _per_image(factor)
    low = ops.min(images, axis=_IMAGE_AXES, keepdims=True)
    high = ops.max(images, axis=_IMAGE_AXES, keepdims=True)
    rescale = ops.logical_or(low < 0.0, high > 255.0)
    shifted = images - low
    span = ops.max(shifted, axis=_IMAGE_AXES, keepdims=True)
    scaled = ops.where(span != 0.0, shifted / ops.where(span != 0.0, span, 1.0), shifted)
    levels = ops.floor(ops.where(rescale, scaled * 255.0, images))
    enhanced = ops.clip(ops.floor(factor * levels), 0.0, 255.0)
    if ops.shape(images)[-1] == 4:
        keep_alpha = ops.arange(4) == 3
        enhanced = ops.where(keep_alpha, levels, enhanced)
    return ops.where(rescale, enhanced / 255.0 * (high - low) + low, enhanced)
