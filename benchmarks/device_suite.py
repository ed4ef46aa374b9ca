"""Every GPU figure from one prepared command; a smoke run proves it on the CPU.

    python -m benchmarks.device_suite --out DIR           # the GPU machine (docs/benchmarks.md): at most --budget s
    python -m benchmarks.device_suite --smoke --out DIR   # the same code, tiny sizes, on the CPU (the tests run it)

Writes DIR/device_suite.json (every table) and DIR/device_suite.png (the
throughput and in-fit plots), and prints each table as it is measured. Three
stages, each in its own process with its own Keras backend (Keras fixes its
backend at import):

1. JAX: `environment` (versions, the device, and Keras checked against this
   JAX: a jitted RandomTransform against the reference), `parity`, `throughput`;
2. PyTorch: the same three;
3. JAX: `in_fit` (none / gpu / generator fed by host workers), `transfer`.

Every part and every contender is timed against the budget: one whose
estimate does not fit in the time left is skipped with a line saying so, and
so is one whose library is not installed; a part that fails, or a peer that
is installed but does not import, is recorded with its error and the suite
goes on. The whole run stays within --budget: each stage's worker is stopped
at its stage's end (a little before the budget runs out, so that the report
and the plot are written in time), and keeps what it measured: it rewrites
its file after every row, and a part cut short is marked `incomplete`.
DIR/device_suite.json is rewritten (atomically) after every stage; SIGINT or
SIGTERM stops the running worker, writes what finished (the stages not run
marked so) and exits non-zero with one line. A DIR holding a device_suite.json
that is not this suite's report, or a device_suite.png without one, is refused
(one line): a user's files are never replaced. Parts:

- environment: Python, numpy, Keras, the backend's version and device, the
  peers' versions; the Keras check's max |difference| from the reference.
- parity: per fill mode and order, the worst max |diff| and the fraction of
  values off by more than 1e-3 (0..255) between the layer on the device and
  ImageDataGenerator on the host, with the same parameters
  (benchmarks.parity.parity_rows).
- throughput: images/s at 32x32 (batch 256, 1024) and 224x224 (batch 32,
  256) of what every contender can express (`COMMON`: rotation +-15 degrees
  and a horizontal flip per image, bilinear, zero fill; augmax draws nothing
  more): gpuaug, Keras 3's layers, augmax (JAX); gpuaug eager and
  torch.compile'd, Keras' layers, Kornia eager and torch.compile'd,
  torchvision transforms.v2 (PyTorch); and gpuaug with ImageDataGenerator's
  settings (benchmarks.throughput.SETTINGS); each one's achieved bandwidth
  (input read plus output written) against a device-to-device copy of the
  same batch, and peak device memory.
- in_fit: the CIFAR-10 CNN and the one-convolution model, batch 32 and 128,
  on the CIFAR-10 subset: median epoch after the first, for no augmentation,
  gpuaug in the model, and ImageDataGenerator.flow fed by `os.cpu_count()`
  host threads.
- transfer: host-to-device seconds per epoch of the subset's batches, uint8
  against float32.
"""

import argparse
import dataclasses
import importlib.util
import json
import os
import pathlib
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks import REPO, file_mode, foreign_outputs, repo_relative

STAGES = (("jax", ("environment", "parity", "throughput")),
          ("torch", ("environment", "parity", "throughput")),
          ("jax", ("in_fit", "transfer")))
STAGE_SHARES = (0.3, 0.4, 0.3)  # of the time left when a stage starts, over the stages left
PEERS = {"jax": ("augmax",), "torch": ("kornia", "torchvision")}
REPORT = "device_suite.json"
PLOT = "device_suite.png"
WORKER = ("-m", "benchmarks.device_suite")  # how the parent starts a stage's worker: python WORKER --worker ...
FINISH_SECONDS = 10.0  # at most, of the budget, kept after the last stage: stopping a worker, the report, the plot
GRACE_SECONDS = 10.0  # at most, of a stage's time, between its worker's deadline and its being stopped
STOP_SECONDS = 3.0  # a worker sent SIGTERM has this long to write its file and exit before it is killed
MIN_STAGE_SECONDS = 5.0  # a stage with less time than this is skipped (its worker could not even start)


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes and time estimates of one run (seconds on the machine it is for)."""

    budget: float
    sizes: tuple  # ((height, width), (batch, ...)), ...
    window: float  # timing window per contender
    parity_images: int
    parity_transforms: tuple  # names of benchmarks.parity.TRANSFORMS
    fit_models: tuple
    fit_batches: tuple
    fit_images: int
    fit_size: int  # images cropped to fit_size x fit_size (32: CIFAR as it is)
    fit_epochs: int
    estimates: dict  # part or contender kind -> seconds it needs at least
    compiled_at: tuple = ()  # (size, batch) where torch.compile'd contenders run (each shape compiles anew)


GPU = Config(budget=420.0, sizes=(((224, 224), (256, 32)), ((32, 32), (256, 1024))), window=1.0,
             parity_images=16, parity_transforms=("rotation", "shifts", "shear", "zoom", "flips",
                                                  "all + channel shift"),
             fit_models=("cnn", "tiny"), fit_batches=(128, 32), fit_images=5000, fit_size=32, fit_epochs=3,
             estimates={"environment": 20, "parity": 40, "throughput": 30, "in_fit": 30, "transfer": 10,
                        "contender": 5, "compiled": 45, "fit": 12},
             compiled_at=(((224, 224), 256), ((32, 32), 256)))
# The smoke run's budget is generous: it must reach every code path, whatever the machine's load.
# torch.compile runs at its smallest size only (each shape compiles anew: on the CPU, through gcc, the
# costliest part of the smoke run).
SMOKE = Config(budget=300.0, sizes=(((8, 8), (4,)), ((12, 12), (2,))), window=0.02, parity_images=2,
               parity_transforms=("all + channel shift",), fit_models=("tiny",), fit_batches=(16,),
               fit_images=48, fit_size=8, fit_epochs=2,
               estimates={"environment": 2, "parity": 2, "throughput": 2, "in_fit": 2, "transfer": 1,
                          "contender": 0.5, "compiled": 5, "fit": 1},
               compiled_at=(((8, 8), 4),))


def default_data_dir():
    """The CIFAR-10 batches: .device/'s copy on the GPU machine, else ../shared's."""
    for folder in (REPO / ".device" / "cifar10-mini" / "cifar-10-batches-py",
                   REPO.parent / "shared" / "data" / "cifar10-mini" / "cifar-10-batches-py"):
        if folder.is_dir():
            return folder
    return None


class Budget:
    """Time left before `deadline` (time.time() seconds)."""

    def __init__(self, deadline):
        self.deadline = deadline

    def left(self):
        return self.deadline - time.time()

    def skip_reason(self, needs):
        left = self.left()
        return None if left >= needs else f"skipped: needs about {needs:.0f} s, {max(left, 0):.0f} s left"


def say(line):
    print(line, flush=True)


def describe(error, limit=300):
    """`Type: first line of the message`, for a JSON field."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:limit]}" if text else type(error).__name__


def write_json(path, data):
    """Writes `data` as indented JSON to `path` atomically (a temporary file
    beside it, then os.replace): a reader, or a process killed while writing,
    never leaves half a file."""
    path = pathlib.Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w") as file:
            json.dump(data, file, indent=2)
        os.chmod(temporary, file_mode())  # mkstemp's 0o600 otherwise
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise
    return path


# Parts -------------------------------------------------------------------------

def cifar(data_dir, split, count):
    from gpuaug.cifar import read_batch

    names = ["test_batch"] if split == "test" else sorted(p.name for p in pathlib.Path(data_dir).glob("data_batch_*"))
    parts = [read_batch(pathlib.Path(data_dir) / name) for name in names]
    images = np.concatenate([p[0] for p in parts])[:count]
    labels = np.concatenate([p[1] for p in parts])[:count]
    return images, labels


def backend_version(backend):
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return {"jax": jax.__version__, "jaxlib": importlib.import_module("jaxlib").__version__,
                "platform": jax.default_backend(), "device": device.device_kind, "devices": jax.device_count()}
    import torch

    cuda = torch.cuda.is_available()
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "platform": "gpu" if cuda else "cpu",
            "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or platform.machine(),
            "devices": torch.cuda.device_count() if cuda else 1}


def to_device(array, backend):
    """A numpy array on the backend's default device (the GPU, if any)."""
    if backend == "torch":
        import torch

        return torch.as_tensor(array, device="cuda" if torch.cuda.is_available() else "cpu")
    import jax

    return jax.device_put(array)


def environment(config, backend, data_dir, budget, progress=None):
    import keras

    import gpuaug
    from benchmarks.throughput import SETTINGS
    from gpuaug.reference import reference_apply
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    info = {"python": platform.python_version(), "numpy": np.__version__, "keras": keras.__version__,
            "backend": backend, "cpu_count": os.cpu_count(), **backend_version(backend),
            "peers": {name: version_of(name) for name in PEERS[backend]}}
    images = cifar(data_dir, "test", 4)[0].astype("float32")
    layer = gpuaug.RandomTransform(**SETTINGS, seed=0)
    transformation = layer.get_random_transformation(images)
    if backend == "jax":
        import jax

        apply = jax.jit(lambda x: layer.transform_images(x, transformation))
    else:
        apply = lambda x: layer.transform_images(x, transformation)  # noqa: E731
    ours = keras.ops.convert_to_numpy(apply(to_device(images, backend)))
    difference = float(np.abs(ours - reference_apply(ImageDataGenerator(**SETTINGS), images, transformation)).max())
    ok = difference <= 1e-3
    version = info.get("jax") or info.get("torch")
    info["keras_check"] = {
        "ok": ok, "max_abs_diff": difference,
        "message": (f"Keras {keras.__version__} {'runs' if ok else 'does NOT run correctly'} with {backend} {version} "
                    f"on {info['device']}: a compiled RandomTransform gives the reference's pixels within "
                    f"{difference:.1e} (0..255)")}
    say(info["keras_check"]["message"])
    say(f"peers: {info['peers']}")
    return info


def version_of(name):
    """The installed version of module `name` ("installed" where it has
    none), None where it is not installed, or {"error": ...} where it is
    installed but fails to import (so that only its contenders fail)."""
    try:
        if importlib.util.find_spec(name) is None:
            return None
        module = importlib.import_module(name)
    except Exception as error:  # noqa: BLE001 - a broken peer is a result, not the end of the part
        return {"error": describe(error)}
    return getattr(module, "__version__", "installed")


def contender_check(config, budget, needs, kind, shape):
    """Whether a throughput contender runs at `shape` ((height, width), batch):
    None, or ("skipped" or "error", why). Never raises: a failing check is that
    contender's error only."""
    try:
        version = version_of(needs) if needs else "-"
        if version is None:
            return "skipped", f"skipped: {needs} is not installed"
        if isinstance(version, dict):
            return "error", f"{needs} does not import: {version['error']}"
        if kind == "compiled" and shape not in config.compiled_at:
            return "skipped", "skipped: torch.compile runs at " + (", ".join(
                f"{h}x{w} batch {b}" for (h, w), b in config.compiled_at) or "no size in this run")
        reason = budget.skip_reason(config.estimates[kind] + config.window)
        return ("skipped", reason) if reason else None
    except Exception as error:  # noqa: BLE001
        return "error", f"its check failed: {describe(error)}"


def parity(config, backend, data_dir, budget, progress=None):
    from benchmarks.parity import TRANSFORMS, parity_rows

    images = cifar(data_dir, "test", config.parity_images)[0].astype("float32")
    transforms = {name: TRANSFORMS[name] for name in config.parity_transforms}
    say(f"parity on {backend}, {len(images)} CIFAR-10 test images: | fill mode | order | worst max |diff| | "
        "> 1e-3 | values |")
    return {"images": len(images), "transforms": list(transforms),
            "rows": parity_rows(images, transforms, report=say)}


# Throughput contenders: each a function (images NHWC on the device) -> step(images, i).
# COMMON is what every contender can express (augmax draws only rotations and
# flips, with zero fill): each is measured on it; gpuaug also on the full
# ImageDataGenerator settings (benchmarks.throughput.SETTINGS).
COMMON = dict(rotation_range=15, horizontal_flip=True, fill_mode="constant", cval=0.0)
COMMON_TEXT = "rotation +-15 degrees and a horizontal flip, per image, bilinear, zero fill"


def gpuaug_step(mode, settings=None):
    def make(images):
        from benchmarks.throughput import compiled, gpuaug_layer

        return compiled(gpuaug_layer(**(settings or COMMON)), mode)

    return make


def keras_layers_step(mode):
    def make(images):
        import keras

        from benchmarks.throughput import compiled

        layers = [keras.layers.RandomRotation(15 / 360, fill_mode="constant", seed=1),
                  keras.layers.RandomFlip("horizontal", seed=2)]
        return compiled(layers, mode)

    return make


def copy_step(images):
    """A device-to-device copy of the batch (reversed along N: nothing to elide)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        flip = jax.jit(lambda x: x[::-1])
        return lambda images, i: flip(images)
    import torch

    return lambda images, i: torch.flip(images, dims=(0,))


def augmax_step(images):
    """augmax's GeometricChain (its geometric ops in one warp), vmapped over
    the batch with one key per image, jitted."""
    import augmax
    import jax

    chain = augmax.GeometricChain(augmax.HorizontalFlip(), augmax.Rotate((-15, 15)))
    transform = jax.jit(jax.vmap(chain))

    def step(images, i):
        return transform(jax.random.split(jax.random.PRNGKey(i), images.shape[0]), images)

    return step


def kornia_step(compiled):
    def make(images):
        import kornia.augmentation as K
        import torch

        augment = K.AugmentationSequential(K.RandomAffine(degrees=15, p=1.0), K.RandomHorizontalFlip(p=0.5))
        augment = augment.to(images.device)
        function = torch.compile(augment) if compiled else augment
        return lambda images, i: function(images.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    return make


def torchvision_step(images):
    """transforms.v2 draws one transformation per call: per-image draws need
    one call per image (the tensors stay on the device)."""
    import torch
    from torchvision.transforms import v2

    augment = v2.Compose([v2.RandomRotation(15, interpolation=v2.InterpolationMode.BILINEAR),
                          v2.RandomHorizontalFlip()])

    def step(images, i):
        channels_first = images.permute(0, 3, 1, 2)
        return torch.stack([augment(image) for image in channels_first]).permute(0, 2, 3, 1)

    return step


def gpuaug_full(mode):
    from benchmarks.throughput import SETTINGS

    return gpuaug_step(mode, dict(SETTINGS))


CONTENDERS = {  # backend -> (name, needs (module or None), kind for the estimate, make)
    "jax": (("device copy (bandwidth reference)", None, "contender", copy_step),
            ("gpuaug RandomTransform (jit)", None, "contender", gpuaug_step("xla")),
            ("Keras 3 RandomRotation + RandomFlip (jit)", None, "contender", keras_layers_step("xla")),
            ("augmax GeometricChain (jit, vmapped)", "augmax", "contender", augmax_step),
            ("gpuaug, ImageDataGenerator's settings (jit)", None, "contender", gpuaug_full("xla"))),
    "torch": (("device copy (bandwidth reference)", None, "contender", copy_step),
              ("gpuaug RandomTransform (eager)", None, "contender", gpuaug_step("eager")),
              ("Kornia RandomAffine + RandomHorizontalFlip (eager)", "kornia", "contender", kornia_step(False)),
              ("gpuaug RandomTransform (torch.compile)", None, "compiled", gpuaug_step("xla")),
              ("Kornia RandomAffine + RandomHorizontalFlip (torch.compile)", "kornia", "compiled", kornia_step(True)),
              ("Keras 3 RandomRotation + RandomFlip (eager)", None, "contender", keras_layers_step("eager")),
              ("torchvision transforms.v2, per image", "torchvision", "contender", torchvision_step),
              ("gpuaug, ImageDataGenerator's settings (eager)", None, "contender", gpuaug_full("eager"))),
}


def peak_memory(backend, run):
    """(result of run(), peak device bytes it allocated, or None where the
    device does not say)."""
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            result = run()
            return result, torch.cuda.max_memory_allocated() - base
        return run(), None
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    result = run()
    after = jax.devices()[0].memory_stats() or {}
    return result, after.get("peak_bytes_in_use") if stats else None


def throughput(config, backend, data_dir, budget, progress=None):
    from benchmarks.throughput import describe_failure, measure

    rng = np.random.default_rng(0)
    rows = []
    result = {"augmentation": COMMON_TEXT, "full_settings": "benchmarks.throughput.SETTINGS"}
    say(f"throughput on {backend}: | size | batch | contender | images/s | GB/s | x copy | peak MB |")
    for (height, width), batches in config.sizes:
        for batch in batches:
            images = to_device(rng.uniform(0, 255, (batch, height, width, 3)).astype("float32"), backend)
            nbytes = batch * height * width * 3 * 4
            copy_rate = None
            for name, needs, kind, make in CONTENDERS[backend]:
                row = {"size": f"{height}x{width}", "batch": batch, "contender": name}
                check = contender_check(config, budget, needs, kind, ((height, width), batch))
                if check is None:
                    try:
                        step = make(images)
                        rate, peak = peak_memory(backend, lambda: measure(step, images, config.window))  # noqa: B023
                        row.update(images_per_second=rate, gb_per_second=2 * nbytes * rate / batch / 1e9,
                                   peak_bytes=peak)
                    except Exception as error:  # noqa: BLE001 - a contender that cannot run is a result
                        row["error"] = describe_failure(error)
                else:
                    row[check[0]] = check[1]
                if name.startswith("device copy") and "images_per_second" in row:
                    copy_rate = row["images_per_second"]
                if copy_rate and "images_per_second" in row:
                    row["bandwidth_vs_copy"] = row["images_per_second"] / copy_rate
                rows.append(row)
                if "images_per_second" in row:
                    peak = f"{row['peak_bytes'] / 2**20:,.0f}" if row.get("peak_bytes") is not None else "-"
                    say(f"| {row['size']} | {batch} | {name} | {row['images_per_second']:,.0f} | "
                        f"{row['gb_per_second']:,.1f} | {row.get('bandwidth_vs_copy', 0):.2f} | {peak} |")
                else:
                    say(f"| {row['size']} | {batch} | {name} | {row.get('error') or row.get('skipped')} |")
                if progress:
                    progress(dict(result, rows=rows))
    return dict(result, rows=rows)


class EpochTimes:
    """Seconds of each epoch of a fit (a Keras callback made on first use)."""

    @staticmethod
    def callback(times):
        import keras

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                times.append(time.perf_counter() - self.start)

        return Timer()


def in_fit(config, backend, data_dir, budget, progress=None):
    import keras
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    import gpuaug
    from benchmarks.throughput import SETTINGS
    from models.cifar10 import BUILDERS

    x, y = cifar(data_dir, "train", config.fit_images)
    x = np.ascontiguousarray(x[:, :config.fit_size, :config.fit_size])
    workers = os.cpu_count()
    rows = []
    result = {"images": len(x), "image_size": config.fit_size, "generator_workers": workers}

    def add(row):
        rows.append(row)
        if progress:
            progress(dict(result, rows=rows))
    say(f"in fit on {backend}, {len(x)} images {config.fit_size}x{config.fit_size}, generator with {workers} "
        "host threads: | model | batch | augment | median epoch s | first epoch s | x none |")
    for model_name in config.fit_models:
        for batch in config.fit_batches:
            base = None
            for augment in ("none", "gpu", "generator"):
                row = {"model": model_name, "batch": batch, "augment": augment}
                reason = budget.skip_reason(config.estimates["fit"] * config.fit_epochs)
                if reason:
                    row["skipped"] = reason
                    add(row)
                    say(f"| {model_name} | {batch} | {augment} | {reason} |")
                    continue
                layers = [gpuaug.RandomTransform(**SETTINGS, seed=0)] if augment == "gpu" else []
                model = BUILDERS[model_name](layers, input_shape=x.shape[1:], num_classes=10)
                model.compile(optimizer=keras.optimizers.RMSprop(1e-4), loss="sparse_categorical_crossentropy",
                              jit_compile=True)
                times = []
                fit = dict(epochs=config.fit_epochs, verbose=0, callbacks=[EpochTimes.callback(times)])
                try:
                    if augment == "generator":
                        flow = ImageDataGenerator(**SETTINGS).flow(x, y, batch_size=batch, shuffle=True, seed=0)
                        flow.workers = workers  # Keras' OrderedEnqueuer: host threads
                        model.fit(flow, **fit)
                    else:
                        model.fit(x, y, batch_size=batch, shuffle=True, **fit)
                except Exception as error:  # noqa: BLE001 - recorded, the suite goes on
                    row["error"] = describe(error, 200)
                    add(row)
                    say(f"| {model_name} | {batch} | {augment} | {row['error']} |")
                    continue
                steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
                base = steady if augment == "none" else base
                row.update(epoch_seconds=steady, first_epoch_seconds=times[0], epochs=times,
                           images_per_second=len(x) / steady, vs_none=steady / base if base else None)
                add(row)
                say(f"| {model_name} | {batch} | {augment} | {steady:.3f} | {times[0]:.2f} | "
                    + (f"{row['vs_none']:.3f} |" if row["vs_none"] else "- |"))
    return dict(result, rows=rows)


def transfer(config, backend, data_dir, budget, progress=None):
    from benchmarks.throughput import block

    x, _ = cifar(data_dir, "train", config.fit_images)
    batch = config.fit_batches[0]
    rows = []
    for dtype in ("uint8", "float32"):
        data = x.astype(dtype)
        seconds = []
        for _ in range(3):
            start = time.perf_counter()
            for index in range(0, len(data), batch):
                on_device = to_device(data[index:index + batch], backend)
            block(on_device)
            seconds.append(time.perf_counter() - start)
        median = statistics.median(seconds)
        rows.append({"dtype": dtype, "batch": batch, "images": len(data), "bytes_per_epoch": data.nbytes,
                     "seconds_per_epoch": median, "gb_per_second": data.nbytes / median / 1e9})
        say(f"host to device, {dtype}: {median * 1e3:.1f} ms per epoch of {len(data)} images "
            f"({data.nbytes / 2**20:.1f} MiB, {data.nbytes / median / 1e9:.2f} GB/s)")
    return {"rows": rows, "float32_over_uint8": rows[1]["seconds_per_epoch"] / rows[0]["seconds_per_epoch"]}


PARTS = {"environment": environment, "parity": parity, "throughput": throughput, "in_fit": in_fit,
         "transfer": transfer}


# Processes ----------------------------------------------------------------------

def raise_interrupt(signum, frame):
    """SIGTERM handled as Ctrl-C is: a KeyboardInterrupt (named by its signal)."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def signal_name(interrupt):
    """The signal a KeyboardInterrupt stands for: SIGTERM where raise_interrupt raised it, else SIGINT."""
    return "SIGTERM" if str(interrupt) == "SIGTERM" else "SIGINT"


def set_handlers(handler):
    """Sets `handler` for SIGINT and SIGTERM (main thread only); returns the
    previous ones, for restore_handlers."""
    try:
        return {number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: nothing set
        return {}


def restore_handlers(previous):
    for number, handler in previous.items():
        signal.signal(number, handler)


def worker(args):
    """One stage in this process (its backend fixed by KERAS_BACKEND): each
    part timed against the deadline, the result rewritten (atomically) after
    every part and, for throughput and in_fit, after every row, so that a
    worker stopped mid-part leaves what it measured (marked `incomplete`).
    SIGINT or SIGTERM: the part running is marked interrupted, the file
    written, exit status 130."""
    previous = set_handlers(raise_interrupt)
    result_path = pathlib.Path(args.result)
    result = {"backend": STAGES[args.stage][0], "parts": {}}
    running = None
    try:
        sys.path.insert(0, str(REPO))
        config = SMOKE if args.smoke else GPU
        backend, parts = STAGES[args.stage]
        budget = Budget(args.deadline)
        for part in parts:
            reason = budget.skip_reason(config.estimates[part])
            start = time.time()
            running = (part, start)
            if reason:
                entry = {"skipped": reason}
                say(f"{part} on {backend}: {reason}")
            else:
                def progress(partial, part=part, start=start):
                    result["parts"][part] = dict(partial, incomplete="the part had not finished",
                                                 seconds=time.time() - start)
                    write_json(result_path, result)

                try:
                    entry = PARTS[part](config, backend, args.data_dir, budget, progress=progress)
                except Exception as error:  # noqa: BLE001 - recorded, the next part runs
                    entry = {"error": describe(error)}
                    say(f"{part} on {backend} failed: {entry['error']}")
            entry["seconds"] = time.time() - start
            result["parts"][part] = entry
            running = None
            write_json(result_path, result)
    except KeyboardInterrupt as interrupt:
        set_handlers(signal.SIG_IGN)
        if running:
            part, start = running
            entry = result["parts"].get(part, {})
            result["parts"][part] = dict(entry, incomplete=f"interrupted ({signal_name(interrupt)})",
                                         seconds=time.time() - start)
        write_json(result_path, result)
        return 130
    finally:
        restore_handlers(previous)
    return 0


def stop(process):
    """Ends a worker: SIGTERM (it writes what it has), then SIGKILL after STOP_SECONDS."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def merge(stage, result, ended):
    """Takes a stage's worker's file into `stage` and removes it. `ended`:
    None where the worker exited 0, else why it did not finish: a part it
    left incomplete says so, a part it never reported is marked."""
    try:
        data = json.loads(result.read_text())
    except FileNotFoundError:
        data = {}
    except ValueError as error:  # not expected (it is written atomically), but never the end of the report
        data = {}
        stage["result_error"] = describe(error)
    reported = data.pop("parts", {})
    stage.update(data)
    for part, entry in reported.items():
        if ended and "incomplete" in entry:
            entry["incomplete"] = ended
        stage["parts"][part] = entry
    if ended:
        for part in stage["parts"]:
            if part not in reported:
                stage["parts"][part] = ({"skipped": f"not run: {ended}"} if ended.startswith("interrupted")
                                        else {"error": f"{ended} before it reported this part"})
    result.unlink(missing_ok=True)


def run_stages(args, config):
    """Every stage's worker in turn, each stopped at its share of the budget;
    the report rewritten after every stage. On SIGINT (KeyboardInterrupt) or
    SIGTERM (made one by main), the running worker is stopped, what finished
    is kept, the stages not run are marked, and report["interrupted"] names
    the signal."""
    start = time.time()
    # The stages end before the budget does: the last worker may take
    # STOP_SECONDS to stop, then the report and the plot are written.
    stages_end = start + args.budget - min(FINISH_SECONDS, 0.1 * args.budget)
    report = {"benchmark": "device_suite", "smoke": args.smoke, "budget_seconds": args.budget,
              "data_dir": repo_relative(args.data_dir), "stages": []}
    out = pathlib.Path(args.out)
    runnable = [importlib.util.find_spec(backend) is not None for backend, _ in STAGES]
    for backend, parts in STAGES:
        # Every part has an entry, whatever becomes of the stage: its worker's
        # (written as each part ends) replaces these.
        report["stages"].append(
            {"backend": backend,
             "parts": {part: {"error": "its stage ended before it reported this part"} for part in parts}})

    def save():
        report["seconds"] = time.time() - start
        write_json(out / REPORT, report)

    done, current = set(), None  # current: (index, worker process, its result file)
    try:
        for index, stage in enumerate(report["stages"]):
            backend, parts = stage["backend"], tuple(stage["parts"])
            result = out / f".stage-{index}.json"
            result.unlink(missing_ok=True)  # an earlier run's, never this one's
            now = time.time()
            shares = [share for i, share in enumerate(STAGE_SHARES) if i >= index and runnable[i]]
            stage_end = now + (stages_end - now) * shares[0] / sum(shares) if runnable[index] else now
            if not runnable[index]:
                stage["skipped"] = f"{backend} is not installed"
            elif stage_end - now < MIN_STAGE_SECONDS:
                stage["skipped"] = f"skipped: {max(stage_end - now, 0):.0f} s left for it"
            if "skipped" in stage:
                stage["parts"] = {part: {"skipped": stage["skipped"]} for part in parts}
                say(f"stage {index + 1} ({backend}): {stage['skipped']}")
                done.add(index)
                save()
                continue
            # The worker stops starting parts and contenders a little before
            # its stage ends, when it is stopped: stopped, it keeps what it has.
            worker_deadline = stage_end - min(GRACE_SECONDS, 0.1 * (stage_end - now))
            say(f"stage {index + 1} ({backend}: {', '.join(parts)}), {stage_end - now:.0f} s")
            env = dict(os.environ, KERAS_BACKEND=backend, PYTHONUNBUFFERED="1",
                       PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
            command = [sys.executable, *WORKER, "--worker", "--stage", str(index), "--deadline",
                       str(worker_deadline), "--result", str(result), "--data-dir", str(args.data_dir)]
            process = subprocess.Popen(command + (["--smoke"] if args.smoke else []), cwd=REPO, env=env)
            current = (index, process, result)
            try:
                stage["exit_status"] = process.wait(timeout=max(0.0, stage_end - time.time()))
                ended = None if stage["exit_status"] == 0 else f"its worker exited with status {stage['exit_status']}"
            except subprocess.TimeoutExpired:
                stop(process)
                ended = stage["exit_status"] = "killed: past its deadline"
                say(f"stage {index + 1} killed: past its deadline")
            merge(stage, result, ended)
            done.add(index)
            current = None
            save()
    except KeyboardInterrupt as interrupt:
        set_handlers(signal.SIG_IGN)  # a second Ctrl-C does not cut the report short; main restores them
        name = signal_name(interrupt)
        report["interrupted"] = name
        if current:
            index, process, result = current
            stop(process)
            reason = report["stages"][index]["exit_status"] = f"interrupted ({name})"
            merge(report["stages"][index], result, reason)
            done.add(index)
        for index, stage in enumerate(report["stages"]):
            if index not in done:
                stage["skipped"] = f"not run: the suite was interrupted ({name})"
                stage["parts"] = {part: {"skipped": stage["skipped"]} for part in stage["parts"]}
    save()
    return report


def plot(report, path):
    """Draws the throughput and in-fit rows to `path` (PNG); returns it, or
    None where there is nothing to plot. An earlier run's picture is removed
    first, whatever is drawn."""
    path = pathlib.Path(path)
    path.unlink(missing_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # One panel per (size or model, batch) of each part: (part, grouping key,
    # bar name, bar value, title suffix, log scale).
    kinds = (("throughput", "size", "contender", "images_per_second", "", True),
             ("in_fit", "model", "augment", "epoch_seconds", " in fit", False))
    panels = []
    for stage in report["stages"]:
        for part, group, name, value, suffix, log in kinds:
            rows = stage["parts"].get(part, {}).get("rows", [])
            for key in dict.fromkeys((r[group], r["batch"]) for r in rows):
                points = [r for r in rows if (r[group], r["batch"]) == key and r.get(value)]
                if points:
                    title = f"{stage['backend']}{suffix}: {key[0]}, batch {key[1]}" + ("" if log else " (epoch s)")
                    panels.append((title, [r[name] for r in points], [r[value] for r in points], log))
    if not panels:
        return None
    columns = 2
    rows = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(7 * columns, 2.6 * rows), squeeze=False)
    for ax, (title, names, values, log) in zip(axes.ravel(), panels):
        ax.barh(names, values, color=["#dd8452" if "gpuaug" in n or n == "gpu" else "#4c72b0" for n in names])
        if log:
            ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:,.3g}", va="center", fontsize=7)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    device = next((s["parts"].get("environment", {}).get("device") for s in report["stages"]
                   if s["parts"].get("environment", {}).get("device")), "?")
    fig.suptitle(f"gpuaug device suite on {device}" + (" (smoke run: tiny sizes, not a measurement)"
                                                       if report["smoke"] else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def usable_out(out):
    """None where `out` is (or can be made) a folder this process writes
    in, else why not."""
    try:
        pathlib.Path(out).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".probe-"):
            pass
    except OSError as error:
        return error.strerror or describe(error)
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/device", help="folder for the JSON and the PNG")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: proves the code, measures nothing")
    parser.add_argument("--budget", type=float, default=None, help="seconds for every stage together "
                        f"(default {GPU.budget:.0f}; --smoke {SMOKE.budget:.0f})")
    parser.add_argument("--data-dir", default=default_data_dir(), help="a cifar-10-batches-py/ folder")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stage", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.data_dir is None or not (pathlib.Path(args.data_dir) / "test_batch").is_file():
        parser.error(f"--data-dir {args.data_dir}: no CIFAR-10 batches there (a cifar-10-batches-py/ folder)")
    if args.worker:
        return worker(args)
    config = SMOKE if args.smoke else GPU
    args.budget = config.budget if args.budget is None else args.budget
    problem = usable_out(args.out)
    if problem:
        parser.error(f"--out {args.out}: cannot write there ({problem})")
    problem = foreign_outputs(args.out, REPORT, PLOT, "device_suite")
    if problem:
        parser.error(f"--out {args.out}: {problem}")
    out = pathlib.Path(args.out)
    previous = set_handlers(raise_interrupt)  # SIGTERM as Ctrl-C: the report is written either way
    try:
        report = run_stages(args, config)
        if report.get("interrupted"):
            (out / PLOT).unlink(missing_ok=True)  # an earlier run's picture would not be this report's
            name = report["interrupted"]
            print(f"device_suite: interrupted ({name}): wrote what finished to {out / REPORT}, the stages not "
                  "run marked so", file=sys.stderr, flush=True)
            return 128 + signal.Signals[name].value
        picture = plot(report, out / PLOT)
        say(f"wrote {out / REPORT}" + (f" and {picture}" if picture else "") + f" in {report['seconds']:.0f} s")
        return 0
    except KeyboardInterrupt as interrupt:  # after the stages: the report is already written
        name = signal_name(interrupt)
        (out / PLOT).unlink(missing_ok=True)
        print(f"device_suite: interrupted ({name}) while plotting: {out / REPORT} is complete, no picture",
              file=sys.stderr, flush=True)
        return 128 + signal.Signals[name].value
    finally:
        restore_handlers(previous)


if __name__ == "__main__":
    sys.exit(main())
