"""Run by test_torch_warp.py under KERAS_BACKEND=torch: PyTorch's own
resampling (`gpuaug.torch_warp`, what `warp_images` runs on PyTorch) against
the `keras.ops` form (`index_mode` forced) on the same sample points, for
every fill mode, both orders, masks, perspective and lens, odd sizes, batches
cut into chunks, NaN points and gradients. Prints one JSON line of results."""

import json

import keras
import numpy as np
import torch

import gpuaug
from gpuaug import geometry, torch_warp, warp

assert keras.backend.backend() == "torch"
rng = np.random.default_rng(0)
calls = {"resample": 0}
resample = torch_warp.resample


def counted(*args, **kwargs):
    calls["resample"] += 1
    return resample(*args, **kwargs)


torch_warp.resample = counted
STRONG = dict(rotation_range=60, width_shift_range=0.3, height_shift_range=0.3, shear_range=30,
              zoom_range=[0.5, 1.6], horizontal_flip=True, vertical_flip=True)
BEYOND = dict(STRONG, perspective_range=0.6, distortion_range=0.2)
results = {"cases": 0, "order_0_max": 0.0, "order_1_max": 0.0, "masks_max": 0.0}


def both(images, geo, **kwargs):
    ours = warp.warp_images(torch.as_tensor(images), geo, **kwargs)
    form = warp.warp_images(torch.as_tensor(images), geo, index_mode="int32", **kwargs)
    assert ours.shape == form.shape and ours.dtype == form.dtype, (ours.shape, form.shape, ours.dtype, form.dtype)
    return keras.ops.convert_to_numpy(ours), keras.ops.convert_to_numpy(form)


for batch, height, width, channels in ((5, 1, 1, 3), (4, 1, 7, 1), (3, 6, 1, 4), (9, 7, 5, 3), (6, 32, 32, 3)):
    images = rng.uniform(0, 255, (batch, height, width, channels)).astype("float32")
    for settings in (STRONG, BEYOND):
        layer = gpuaug.RandomTransform(**settings, seed=batch)
        geo = geometry.geometry(layer.get_random_transformation(images), height, width)
        for fill_mode in warp.FILL_MODES:
            for order in (0, 1):
                ours, form = both(images, geo, fill_mode=fill_mode, cval=-7.0, interpolation_order=order)
                key = f"order_{order}_max"
                results[key] = max(results[key], float(np.abs(ours - form).max()))
                results["cases"] += 1
            masks = rng.integers(0, 200, (batch, height, width, 1)).astype("int32")
            ours, form = both(masks, geo, fill_mode=fill_mode, cval=255, interpolation_order=0, keep_dtype=True)
            assert ours.dtype == np.int32
            results["masks_max"] = max(results["masks_max"], float(np.abs(ours - form).max()))

# Batches cut into many chunks on the CPU (one image each), with a remainder.
torch_warp.CPU_CHUNK_BYTES = 1
images = rng.uniform(0, 255, (7, 12, 10, 3)).astype("float32")
geo = geometry.geometry(gpuaug.RandomTransform(**BEYOND, seed=1).get_random_transformation(images), 12, 10)
ours, form = both(images, geo, fill_mode="constant", cval=3.0)
results["chunked_max"] = float(np.abs(ours - form).max())
torch_warp.CPU_CHUNK_BYTES = 1 << 20

# One plane past 2**24 values (4100 x 4100, 1 channel): the index is computed in
# int64 there (float32 would round it to a neighbour's pixel, or past the planes).
side = 4100
images = torch.arange(side * side, dtype=torch.float32).reshape(1, side, side, 1)
shifted = {"ty": np.array([1.0], "float32")}  # one row up (the reference's `ty` moves rows), "nearest"
geo = geometry.geometry(shifted, side, side)
expected = torch.cat((images[:, 1:], images[:, -1:]), dim=1)
results["past_2_24"] = [bool(torch.equal(warp.warp_images(images, geo, interpolation_order=order), expected))
                        for order in (0, 1)]
del images, expected

# An empty batch.
empty = warp.warp_images(torch.zeros((0, 5, 6, 3)), np.eye(3, dtype="float32")[None], fill_mode="constant")
results["empty_shape"] = list(empty.shape)

# NaN sample points (a dict with a NaN angle): "constant" gives cval, as the keras.ops form.
nan = {"theta": np.array([np.nan, 10.0], "float32")}
images = rng.uniform(0, 255, (2, 8, 8, 3)).astype("float32")
ours, form = both(images, geometry.geometry(nan, 8, 8), fill_mode="constant", cval=5.0)
results["nan_constant_is_cval"] = bool(np.all(ours[0] == 5.0)) and bool(np.abs(ours[1] - form[1]).max() <= 1e-4)

# Gradients with respect to the images: the same as the keras.ops form's.
images = torch.tensor(rng.uniform(0, 255, (3, 9, 11, 2)).astype("float32"))
geo = geometry.geometry(gpuaug.RandomTransform(**STRONG, seed=4).get_random_transformation(images), 9, 11)
grads = []
for index_mode in (None, "int32"):
    source = images.clone().requires_grad_(True)
    (warp.warp_images(source, geo, fill_mode="reflect", index_mode=index_mode) ** 2).sum().backward()
    grads.append(source.grad.numpy())
results["gradient_max"] = float(np.abs(grads[0] - grads[1]).max() / np.abs(grads[1]).max())

# The layer on PyTorch goes through it, and its output feeds a convolution.
layer = gpuaug.RandomTransform(**STRONG, seed=2)
before = calls["resample"]
out = layer(rng.uniform(0, 255, (4, 16, 16, 3)).astype("float32"), training=True)
conv = keras.layers.Conv2D(2, 3)(out)
results["layer_uses_it"] = calls["resample"] == before + 1 and tuple(conv.shape) == (4, 14, 14, 2)
results["resample_calls"] = calls["resample"]
print(json.dumps(results))
