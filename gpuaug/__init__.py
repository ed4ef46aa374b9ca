"""gpuaug: ImageDataGenerator's augmentation as fused, per-sample Keras layers."""

from gpuaug.compat import from_image_data_generator
from gpuaug.layers import RandomTransform
from gpuaug.matrices import transform_matrices
from gpuaug.mixing import CutMix, MixUp, TrainWithMixing
from gpuaug.sampling import sample_transformation
from gpuaug.standardization import (
    FeaturewiseStandardization,
    ImagenetPreprocessing,
    SamplewiseStandardization,
    ZCAWhitening,
)
from gpuaug.training import TrainWithTargets
from gpuaug.warp import warp_images

__all__ = [
    "CutMix",
    "FeaturewiseStandardization",
    "ImagenetPreprocessing",
    "MixUp",
    "RandomTransform",
    "SamplewiseStandardization",
    "TrainWithMixing",
    "TrainWithTargets",
    "ZCAWhitening",
    "from_image_data_generator",
    "sample_transformation",
    "transform_matrices",
    "warp_images",
]
__version__ = "0.1.0"
