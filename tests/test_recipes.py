"""Keras 3's own colour and erasing layers after gpuaug keep the training step
compiled with XLA (docs/recipes.md): Keras turns `jit_compile` off for the
whole model when one layer says it cannot be compiled (`supports_jit`), as
`RandomRotation` does, so the test checks the compiled model's flag after a
`fit` step that ran, with that layer as the control. TensorFlow in this
process; JAX and PyTorch each in a fresh interpreter."""

import pytest

from conftest import run_python

# The recipe of docs/recipes.md: the layers of Keras 3 that compile with XLA.
RECIPE = """
import numpy as np, keras, gpuaug

def recipe():
    return [
        keras.layers.RandomColorJitter(value_range=(0, 255), brightness_factor=0.2, contrast_factor=0.2,
                                       saturation_factor=(0.5, 0.9), hue_factor=0.1, seed=1),
        keras.layers.RandomContrast(0.2, seed=2),
        keras.layers.RandomGrayscale(0.2, seed=3),
        keras.layers.RandomSharpness(0.5, value_range=(0, 255), seed=4),
        keras.layers.RandomGaussianBlur(factor=0.5, value_range=(0, 255), seed=5),
        keras.layers.RandomErasing(factor=0.5, scale=(0.02, 0.33), value_range=(0, 255), seed=6),
    ]

def trained(extra):
    model = keras.Sequential([keras.Input((16, 16, 3)),
                              gpuaug.RandomTransform(rotation_range=15, width_shift_range=2, horizontal_flip=True,
                                                     seed=0),
                              *extra, keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
    x = np.random.RandomState(0).uniform(0, 255, (16, 16, 16, 3)).astype("float32")
    history = model.fit(x, np.arange(16) % 10, batch_size=8, epochs=1, verbose=0)
    return model.jit_compile, float(history.history["loss"][-1])
"""

CHECK = RECIPE + """
jit, loss = trained(recipe())
control, _ = trained([keras.layers.RandomRotation(0.1, seed=7)])
print("RESULT", jit, np.isfinite(loss), control)
"""


@pytest.mark.slow
def test_the_recipe_keeps_xla_on_tensorflow():
    namespace = {}
    exec(RECIPE, namespace)
    jit, loss = namespace["trained"](namespace["recipe"]())
    assert jit is True and loss == loss
    control, _ = namespace["trained"]([namespace["keras"].layers.RandomRotation(0.1, seed=7)])
    assert control is False  # Keras' own geometry layer turns XLA off: the check can fail


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_recipe_keeps_jit_on_other_backends(backend):
    result = run_python(CHECK, backend=backend)
    assert result.returncode == 0, result.stderr[-3000:]
    line = [line for line in result.stdout.splitlines() if line.startswith("RESULT")][-1]
    assert line == "RESULT True True False", line
