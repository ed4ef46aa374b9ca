"""The functions gpuaug's model code calls: `keras.ops` and `keras.random`,
or the same functions of Keras' TensorFlow backend while a layer runs inside
a TensorFlow graph on another backend (a `tf.data` pipeline on JAX or PyTorch).

A `tf.data` map function is a TensorFlow graph: JAX and PyTorch functions
cannot take its symbolic tensors (JAX: "Cannot convert a symbolic tf.Tensor
to a numpy array"). Keras' own preprocessing layers work there on every
backend by switching to TensorFlow's functions for that call
(`keras.src.layers.preprocessing.data_layer.DataLayer`), with a TensorFlow
`SeedGenerator` of their own. gpuaug does the same: its modules write
`ops.<name>` and `random.<name>` from here, which are `keras.ops.<name>` and
`keras.random.<name>` normally and, inside `tensorflow_scope()`, the function
of that name in Keras' TensorFlow backend (`keras.src.backend.tensorflow`'s
`numpy`, `core`, `math`, ... modules: what `keras.ops.<name>` itself calls on
TensorFlow). `name()` is the backend the code is running for: choices made
by backend (`warp.gather_form`, `warp.x64_available`) ask it, so that they
follow the switch.

The scope is per thread (tf.data traces a map function in the thread that
calls `Dataset.map`), entered by a layer's `__call__`
(`RunsInTensorFlowGraphs`) and public methods (`switches_in_tensorflow_graphs`)
when `needs_tensorflow(inputs)`: the same test as Keras' `DataLayer` (inside
a TensorFlow graph, on concrete inputs, outside a JAX trace). On the
TensorFlow backend it is never entered: `keras.ops` is TensorFlow there.
Outside it a lookup costs about 2 microseconds (a cached dict read), some
130 to 230 per eager call of `RandomTransform`; in a compiled step, none (trace time).

`keras.src` is Keras' private tree: `pyproject.toml` pins Keras to 3.15.x,
whose `DataLayer`, `DynamicBackend` and `in_tf_graph` this follows.
"""

import contextlib
import functools
import importlib
import threading

import keras as _keras
from keras.src.utils import backend_utils, jax_utils


class _State(threading.local):
    depth = 0  # tensorflow_scope()s entered in this thread
    global_seed_generator = None  # draw_seed(None)'s inside the scope


_state = _State()

# keras.ops / keras.random functions are defined in these modules of keras.src;
# the TensorFlow backend has a module of the same functions for each.
_TENSORFLOW_MODULES = {
    "keras.src.ops.core": "core",
    "keras.src.ops.numpy": "numpy",
    "keras.src.ops.math": "math",
    "keras.src.ops.nn": "nn",
    "keras.src.ops.image": "image",
    "keras.src.ops.linalg": "linalg",
    "keras.src.random.random": "random",
}


def in_tensorflow_scope():
    """True inside `tensorflow_scope()` (in this thread)."""
    return _state.depth > 0


@contextlib.contextmanager
def tensorflow_scope():
    """`ops`, `random` and `name()` use Keras' TensorFlow backend inside."""
    _state.depth += 1
    try:
        yield
    finally:
        _state.depth -= 1


def name():
    """The backend gpuaug's code runs for now: "tensorflow" inside
    `tensorflow_scope()`, else `keras.backend.backend()`."""
    return "tensorflow" if in_tensorflow_scope() else _keras.backend.backend()


def needs_tensorflow(inputs):
    """Whether a layer called on `inputs` (a tensor or a nest of them) must
    run TensorFlow's functions: on a backend other than TensorFlow, inside a
    TensorFlow graph (a `tf.data` map function, a `tf.function`), with
    concrete inputs (not Keras' symbolic ones) and outside a JAX trace."""
    if _keras.backend.backend() == "tensorflow":
        return False
    flat = _keras.tree.flatten(inputs)
    sample = flat[0] if flat else None
    return (not isinstance(sample, _keras.KerasTensor) and backend_utils.in_tf_graph()
            and not jax_utils.is_in_jax_tracing_scope(sample))


def as_tensor(value):
    """Host arrays (numpy, lists of numbers) as tensors of their own dtype, of
    `name()`'s backend; its tensors, Keras' symbolic tensors and None as they are."""
    if value is None or _keras.backend.is_keras_tensor(value) or ops.is_tensor(value):
        return value
    return ops.convert_to_tensor(value)


class RunsInTensorFlowGraphs:
    """A mixin for Keras layers whose call is written with this module's
    `ops`: inside a TensorFlow graph on another backend (`needs_tensorflow`:
    a `tf.data` pipeline on JAX or PyTorch), `__call__` converts the inputs
    to TensorFlow tensors (dtypes kept) and runs the layer in
    `tensorflow_scope()`, as Keras' `DataLayer` does; otherwise it is Keras'
    `__call__`. Put it before `keras.layers.Layer` among the bases."""

    def __call__(self, inputs, *args, **kwargs):
        if not needs_tensorflow(inputs):
            return super().__call__(inputs, *args, **kwargs)
        with tensorflow_scope():
            inputs = _keras.tree.map_structure(as_tensor, inputs)
            # Keras would convert the inputs (and positional tensors) with the
            # configured backend, which cannot take TensorFlow's: the call
            # casts what it needs itself.
            saved = self._convert_input_args, self._allow_non_tensor_positional_args
            self._convert_input_args, self._allow_non_tensor_positional_args = False, True
            try:
                return super().__call__(inputs, *args, **kwargs)
            finally:
                self._convert_input_args, self._allow_non_tensor_positional_args = saved


def switches_in_tensorflow_graphs(method):
    """Decorates a layer's public method whose first argument (after self)
    is a tensor or a nest of them: called directly inside a TensorFlow graph
    on another backend (`needs_tensorflow`), it runs in `tensorflow_scope()`,
    as the layer's call does there."""

    @functools.wraps(method)
    def wrapper(self, inputs, *args, **kwargs):
        if in_tensorflow_scope() or not needs_tensorflow(inputs):
            return method(self, inputs, *args, **kwargs)
        with tensorflow_scope():
            return method(self, inputs, *args, **kwargs)

    return wrapper


def _tensorflow_function(namespace, attribute, function):
    module = _TENSORFLOW_MODULES.get(getattr(function, "__module__", None))
    found = None if module is None else getattr(
        importlib.import_module(f"keras.src.backend.tensorflow.{module}"), attribute, None)
    if found is None:
        raise NotImplementedError(f"{namespace}.{attribute} has no function in Keras' TensorFlow backend for "
                                  "gpuaug to call inside a tf.data pipeline on another backend.")
    return found


class _Namespace:
    """`keras.ops` (or `keras.random`), or Keras' TensorFlow backend's
    function of the same name inside `tensorflow_scope()`."""

    def __init__(self, namespace, module):
        self._namespace, self._module, self._tensorflow = namespace, module, {}
        # Filled once, here: a lookup never changes it, so torch.compile's
        # guards on it hold (a dict filled on first use recompiled the layer).
        self._keras = {name: getattr(module, name) for name in dir(module) if not name.startswith("_")}

    def __getattr__(self, attribute):
        # Called for every op of every call: cached, and the thread's scope
        # read from a class default (no exception when never entered).
        if _state.depth:
            found = self._tensorflow.get(attribute)
            if found is None:
                found = self._tensorflow[attribute] = _tensorflow_function(
                    self._namespace, attribute, getattr(self._module, attribute))
            return found
        found = self._keras.get(attribute)
        if found is None:
            found = self._keras[attribute] = getattr(self._module, attribute)
        return found

    def __dir__(self):
        return dir(self._module)


ops = _Namespace("keras.ops", _keras.ops)
random = _Namespace("keras.random", _keras.random)


def tensorflow_backend():
    """Keras' TensorFlow backend as a `SeedGenerator`'s `backend=`."""
    return backend_utils.DynamicBackend("tensorflow")


def seed_dtype():
    """The dtype of a seed state (`random_seed_dtype`) for `name()`."""
    module = "keras.src.backend.tensorflow" if in_tensorflow_scope() else "keras.src.backend"
    return importlib.import_module(module).random_seed_dtype()


class DrawnSeed(_keras.random.SeedGenerator):
    """A seed already drawn (a (2,) tensor of `seed_dtype()`), as the `seed=`
    of `random`'s functions, which take a `SeedGenerator`, an int or None:
    its `next()` returns the tensor. It holds no state (nothing to track or
    save), so one draw of a generator can seed several calls."""

    def __init__(self, value):  # no state variable, unlike a SeedGenerator
        self.value = value

    def next(self, ordered=True):
        return self.value


def draw_seed(seed):
    """The (2,) seed tensor that `random.uniform(..., seed=seed)` would use:
    a `SeedGenerator`'s `next()` (advancing it once), [seed, 0] for an int,
    the global generator's next seed for None, as Keras' `draw_seed` (in
    TensorFlow's dtype inside `tensorflow_scope()`)."""
    from keras.src.random import seed_generator

    if isinstance(seed, _keras.random.SeedGenerator) or not in_tensorflow_scope():
        return seed_generator.draw_seed(seed)
    if seed is None:
        generator = _state.global_seed_generator
        if generator is None:
            generator = _state.global_seed_generator = _keras.random.SeedGenerator(backend=tensorflow_backend())
        return generator.next(ordered=False)
    return ops.convert_to_tensor([seed, 0], dtype=seed_dtype())
