"""Run by test_robustness.py: one 2048x2048x3 image through the layer on the
CPU; prints the peak resident memory before and after, in MiB."""

import json
import resource

import numpy as np

import gpuaug

image = np.random.default_rng(0).uniform(0, 255, (1, 2048, 2048, 3)).astype("float32")
layer = gpuaug.RandomTransform(rotation_range=20, width_shift_range=0.1, zoom_range=0.1,
                               horizontal_flip=True, seed=0)
layer(image[:, :8, :8], training=True)  # load kernels on a tiny input first
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out = np.asarray(layer(image, training=True))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"before_mib": before, "after_mib": after, "image_mib": image.nbytes / 2**20,
                  "shape": list(out.shape), "finite": bool(np.isfinite(out).all())}))
