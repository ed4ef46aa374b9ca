"""Replaying the layer's parameters through the reference generator.

For parity checks: the legacy `ImageDataGenerator` (Keras'
`keras.src.legacy.preprocessing.image`, which needs scipy and pillow) applied
image by image with exactly the parameters a `RandomTransform` drew.
"""

import numpy as np


def reference_apply(generator, images, transformation):
    """`generator.apply_transform` on each image of `images` (numpy, N first)
    with its parameters from `transformation` (a dict of (N,) arrays or
    tensors, or None per key, as `get_random_transformation` returns)."""
    params = {
        key: None if value is None else np.asarray(value)
        for key, value in transformation.items()
    }
    outputs = []
    for i, image in enumerate(images):
        one = {k: None if v is None else v[i].item() for k, v in params.items()}
        outputs.append(generator.apply_transform(image, one))
    return np.stack(outputs)
