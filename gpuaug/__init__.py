"""gpuaug: ImageDataGenerator's augmentation as fused, per-sample Keras layers."""

from gpuaug.layers import RandomTransform
from gpuaug.matrices import transform_matrices
from gpuaug.sampling import sample_transformation
from gpuaug.warp import warp_images

__all__ = [
    "RandomTransform",
    "sample_transformation",
    "transform_matrices",
    "warp_images",
]
__version__ = "0.1.0"
