"""Scale-out: independent per-replica randomness under tf.distribute, and
train.py --strategy on two logical CPU devices (TensorFlow) and two host
devices (JAX's DataParallel)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import CIFAR_DIR, REPO, assert_one_line_error, run_cli

QUICK = ["--data-dir", str(CIFAR_DIR), "--limit", "256", "--epochs", "1",
         "--batch-size", "32", "--verbose", "0"]


def python(*args, env=None, timeout=300):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]), **(env or {}))
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def draws(seed, *extra):
    out = python(str(REPO / "tests" / "distribute_script.py"), str(seed), *extra)
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
def test_replicas_draw_independently_and_seeded_runs_repeat():
    first = draws(1)
    assert first["replicas"] == 2
    for step in first["steps"]:
        replica_0, replica_1 = step
        assert len(replica_0) == len(replica_1) == 4  # 8 images split over 2 replicas
        assert replica_0 != replica_1  # each replica draws its own parameters
    assert first["steps"][0] != first["steps"][1]  # and new ones every step
    assert draws(1) == first  # same seed, same parameters
    assert draws(2) != first


@pytest.mark.slow
def test_negative_control_keras_seed_generator_repeats_across_replicas():
    """The bug the layer avoids: one mirrored seed state, identical draws."""
    plain = draws(1, "plain")
    assert all(step[0] == step[1] for step in plain["steps"])


@pytest.mark.slow
def test_train_mirrored_on_two_logical_devices(tmp_path):
    out = python(str(REPO / "tests" / "logical_cpus.py"), "2", *QUICK,
                 "--strategy", "mirrored", "--export", str(tmp_path / "export"))
    assert "batch 64, 2 replica(s)" in out  # global batch = 32 per replica x 2
    assert "test accuracy:" in out and (tmp_path / "export" / "model.keras").exists()


@pytest.mark.slow
def test_generator_under_mirrored_with_an_uneven_last_batch():
    """Keras' generator input under MirroredStrategy failed on a batch that
    splits unevenly over the replicas (256 images in batches of 96 on three
    replicas: the last, 64, split 22/22/20 gave "AddN must have the same
    size", or hung); train.py leaves one image out so that every batch
    splits evenly."""
    out = python(str(REPO / "tests" / "logical_cpus.py"), "3", *QUICK, "--model", "tiny",
                 "--augment", "generator", "--strategy", "mirrored")
    assert "so 1 training image(s) are left out" in out and "training on 255 images" in out
    assert "batch 96, 3 replica(s)" in out and "test accuracy:" in out


@pytest.mark.slow
def test_mirrored_trims_a_last_training_batch_smaller_than_the_replicas():
    """65 training images in batches of 64 on two replicas: the last batch,
    one image, left one replica empty ("AddN must have the same size" from
    fit). The training split is trimmed to a multiple of the replicas; fewer
    images than replicas is one line."""
    out = python(str(REPO / "tests" / "logical_cpus.py"), "2", *QUICK[:2], "--limit", "65", *QUICK[4:],
                 "--model", "tiny", "--strategy", "mirrored")
    assert "so 1 training image(s) are left out" in out and "training on 64 images" in out and "epoch 1:" in out
    result = subprocess.run([sys.executable, str(REPO / "tests" / "logical_cpus.py"), "2", *QUICK[:2], "--limit", "1",
                             *QUICK[4:], "--model", "tiny", "--strategy", "mirrored"], cwd=REPO, capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                                [str(REPO), str(REPO / "tests")])))
    assert_one_line_error(result, "--strategy mirrored over 2 devices: 1 training image(s) are fewer than the 2")


@pytest.mark.slow
def test_mirrored_evaluates_an_odd_split_smaller_than_a_batch(tmp_path):
    """25 validation images in one evaluation batch split 13/12 over two
    replicas: Keras' evaluate failed with "AddN must have the same size".
    The evaluated splits are padded to a multiple of the replicas with
    weight-0 images, and the figures are those of one device."""
    import keras
    import numpy as np

    import gpuaug  # noqa: F401  (registers the layer for load_model)
    from models.data import open_data

    out = python(str(REPO / "tests" / "logical_cpus.py"), "2", *QUICK, "--limit", "250", "--validation-split", "0.1",
                 "--model", "tiny", "--strategy", "mirrored", "--export", str(tmp_path / "export"))
    assert "2 replica(s)" in out and "validation after each epoch: 25 images" in out, out
    line = next(line for line in out.splitlines() if line.startswith("epoch 1:"))
    model = keras.models.load_model(tmp_path / "export" / "model.keras")
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    images, labels = open_data(str(CIFAR_DIR), limit=250, validation_split=0.1).validation
    loss, accuracy = model.evaluate(images.astype(np.float32), labels, verbose=0)
    assert f"validation loss {loss:.4f}, validation accuracy {accuracy:.4f}" in line, (line, loss, accuracy)


@pytest.mark.slow
def test_train_data_parallel_on_jax_with_two_devices():
    # 256 images, int(25.6) = 25 held out: 231 to train, an odd number; every batch
    # (the last partial one too) must split over the two devices, so one is left out.
    out = python(str(REPO / "train.py"), *QUICK, "--limit", "256", "--validation-split", "0.1",
                 "--strategy", "mirrored",
                 env={"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
                      "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert "batch 64, 2 replica(s)" in out and "backend jax" in out
    assert "so 1 training image(s) are left out" in out and "training on 230 images" in out
    assert "validation after each epoch: 25 images" in out and "test accuracy:" in out


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_together(tmp_path, name, commands, timeout):
    """Starts every (args, env) of `commands` at once, each logging to
    tmp_path/<name><i>.log; all are killed if they outlive `timeout`.
    Returns the logs, after checking that every process exited with 0."""
    processes = []
    for index, (args, env) in enumerate(commands):
        log = open(tmp_path / f"{name}{index}.log", "w")
        processes.append((subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    try:
        codes = [process.wait(timeout=timeout) for process, _ in processes]
    finally:
        for process, log in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.close()
    outputs = [(tmp_path / f"{name}{i}.log").read_text() for i in range(len(commands))]
    assert codes == [0] * len(commands), "\n".join(o[-3000:] for o in outputs)
    return outputs


def run_two_workers(tmp_path, *extra, timeout=300, worker_env=lambda index: {}):
    """Two train.py worker processes on 127.0.0.1 under TF_CONFIG (and the
    variables `worker_env(index)` adds); both are killed if they outlive
    `timeout`."""
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    commands = [([sys.executable, str(REPO / "train.py"), *QUICK, "--strategy", "multiworker", *extra],
                 dict(os.environ, PYTHONPATH=str(REPO), **worker_env(index),
                      TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})))
                for index in range(2)]
    return run_together(tmp_path, "worker", commands, timeout)


def test_train_multiworker_two_local_processes(tmp_path):
    export, checkpoints = tmp_path / "export", tmp_path / "checkpoints"
    metrics = tmp_path / "metrics.json"
    chief, worker = run_two_workers(tmp_path, "--export", str(export), "--checkpoint-dir", str(checkpoints),
                                    "--metrics-json", str(metrics))
    for out in (chief, worker):
        assert "batch 64, 2 replica(s)" in out and "epoch 1:" in out
    epoch_line = lambda out: next(line for line in out.splitlines() if line.startswith("epoch 1:"))  # noqa: E731
    # Synchronous training: both workers report the same loss and accuracy, and
    # the same test loss and accuracy after the epoch (each worker evaluates alone).
    assert epoch_line(chief).split(", ", 2)[2] == epoch_line(worker).split(", ", 2)[2]
    assert ", test loss " in epoch_line(chief) and ", test accuracy " in epoch_line(chief)
    record = json.loads(metrics.read_text())["epochs"][0]  # written by the chief
    assert record["test_loss"] > 0 and 0 <= record["test_accuracy"] <= 1
    assert f"test accuracy {record['test_accuracy']:.4f}" in epoch_line(chief)
    assert "exported to" in chief and "not the chief worker" in worker
    assert sorted(p.name for p in export.iterdir()) == [".gpuaug-export", "model.keras", "saved_model"]
    assert json.loads((checkpoints / "training_metadata.json").read_text())["epoch"] == 1
    # Resume: a second run to 2 epochs trains only epoch 2 on both workers.
    resumed = run_two_workers(tmp_path, "--epochs", "2", "--checkpoint-dir", str(checkpoints))
    for out in resumed:
        assert "1 epoch(s) already done" in out and "epoch 2:" in out and "epoch 1:" not in out
    # The chief keeps the state before the last one too (the backup a damaged latest falls back to).
    assert json.loads((checkpoints / "training_metadata.json.bkp").read_text())["epoch"] == 1
    assert json.loads((checkpoints / "training_metadata.json").read_text())["epoch"] == 2


@pytest.mark.slow
def test_jit_compile_under_multiworker_compiles_with_xla(tmp_path):
    """--jit-compile under --strategy multiworker: each replica's forward and
    backward pass runs through XLA, as the start-up line says. XLA's own dump
    (XLA_FLAGS=--xla_dump_to) is the witness: TensorFlow's "Compiled cluster
    using XLA" log line is not, since it is lost whenever the cluster's gRPC
    server initialises absl logging first (INFO then no longer reaches stderr)."""
    def compiled_modules(mode):
        dumps = [tmp_path / f"xla-{mode}-{index}" for index in range(2)]
        outs = run_two_workers(tmp_path, "--model", "tiny", "--limit", "128", f"--{mode}",
                               worker_env=lambda index: {"XLA_FLAGS": f"--xla_dump_to={dumps[index]}"})
        modules = [sorted(p.name for p in dump.glob("module_*forward_backward*"))
                   if dump.is_dir() else [] for dump in dumps]
        return outs, modules

    outs, modules = compiled_modules("jit-compile")
    for out, names in zip(outs, modules):
        assert "jit_compile=True" in out and "epoch 1:" in out
        assert names, out[-3000:]
    plain, modules = compiled_modules("no-jit-compile")
    for out, names in zip(plain, modules):
        assert "jit_compile=False" in out and "epoch 1:" in out
        assert names == []


@pytest.mark.slow
@pytest.mark.parametrize("config, fragments", [
    ("{not json", ["TF_CONFIG is not valid JSON"]),
    (json.dumps({"task": {"type": "worker", "index": 0}}), ["TF_CONFIG needs a \"cluster\""]),
    (json.dumps({"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}),
     ['cluster job "worker" must be a list of "host:port"']),
    (json.dumps({"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 2}}),
     ["task index 2 is not one of the 2", "(0 .. 1)"]),
    (json.dumps({"cluster": {"worker": ["localhost:1"]}, "task": {"type": "chief", "index": 0}}),
     ['"task" whose "type" is one of [\'worker\']']),
])
def test_a_malformed_tf_config_is_one_line(config, fragments):
    result = run_cli(*QUICK, "--strategy", "multiworker", env=dict(os.environ, TF_CONFIG=config), timeout=120)
    assert_one_line_error(result, *fragments)


def write_small_folder(root, seed):
    """root/train (105 random 12x12 images) and root/test (30), 3 classes."""
    import numpy as np
    from folder_tools import write_image_folder

    rng = np.random.default_rng(seed)
    write_image_folder(root / "train", rng.integers(0, 256, (105, 12, 12, 3)), [i % 3 for i in range(105)])
    write_image_folder(root / "test", rng.integers(0, 256, (30, 12, 12, 3)), [i % 3 for i in range(30)])
    return root


def single_process_evaluation(model, folder, image_size=(12, 12)):
    """(loss, accuracy) of `model` on folder/test, in this one process."""
    from models.folders import class_folders, index_files, open_image_folder

    test = open_image_folder(folder, image_size).test
    assert len(test) == len(index_files(folder / "test", class_folders(folder / "train")))
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model.evaluate(test.dataset().batch(7), verbose=0)


def assert_each_file_read_by_one_process(opens, folder, passes_train, passes_test, left_out, peek=0):
    """Every training file of the shares opened `passes_train` times in all
    (its first bytes checked once, then once per epoch), plus at most `peek`
    (JAX: Keras' fit reads a first batch before training, to build its
    metrics, and tf.data reads ahead of it), the `left_out` ones never; every
    test file `passes_test` times. Had every process read every file (or the
    same shard), files would be opened twice as often, or never."""
    import collections

    train = collections.Counter(opens.counts[str(p)] for p in (folder / "train").rglob("*.png"))
    test = collections.Counter(opens.counts[str(p)] for p in (folder / "test").rglob("*.png"))
    assert train[0] == left_out and sum(train.values()) == 105, train
    assert set(train) - {0} <= set(range(passes_train, passes_train + peek + 1)), train
    assert test == collections.Counter({passes_test: 30}), test


@pytest.mark.slow
def test_train_multiworker_from_an_image_folder(tmp_path):
    """TensorFlow workers on an image folder: each reads and decodes only its
    share (105 images: 52 per worker, one left out; the test set 15 each),
    in lockstep, and the loss and accuracy they report are those of a
    single-process evaluation of the trained model on the whole test set."""
    import keras

    import gpuaug  # noqa: F401  (registers the layer for load_model)
    from file_opens import FileOpens

    folder = write_small_folder(tmp_path / "images", seed=0)
    export = tmp_path / "export"
    with FileOpens(folder) as opens:
        outs = run_two_workers(tmp_path, "--data-dir", str(folder), "--image-size", "12", "12", "--model", "tiny",
                               "--epochs", "2", "--export", str(export))
    for out in outs:
        assert "training on 104 images" in out and "batch 64, 2 replica(s)" in out and "streamed from" in out
        assert "2 processes of 1 device(s): every batch must split evenly over them, so 1 training image(s) are " \
               "left out" in out  # the line docs/scale-out.md promises
        assert "epoch 2:" in out and "test accuracy:" in out
    epoch_lines = [[line.split(", ", 2)[2] for line in out.splitlines() if line.startswith("epoch ")] for out in outs]
    assert epoch_lines[0] == epoch_lines[1] and len(epoch_lines[0]) == 2
    assert all(", test loss " in line for line in epoch_lines[0])
    # 1 check + 2 epochs; the test set: 1 check + 2 epochs' evaluation + the final one.
    assert_each_file_read_by_one_process(opens, folder, passes_train=3, passes_test=4, left_out=1)
    loss, accuracy = single_process_evaluation(keras.models.load_model(export / "model.keras"), folder)
    last = epoch_lines[0][-1]
    assert f"test loss {loss:.4f}, test accuracy {accuracy:.4f}" in last, (last, loss, accuracy)
    assert f"test accuracy: {accuracy:.4f}" in outs[0]


@pytest.mark.slow
def test_data_parallel_on_jax_draws_per_image_across_devices():
    """Under DataParallel each device holds half of the batch; the images of
    both halves get their own parameters (8 identical inputs, 8 different
    outputs), and the sharded program draws what one device draws."""
    out = python(str(REPO / "tests" / "jax_data_parallel_script.py"), "3",
                 env={"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
                      "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    result = json.loads(out.strip().splitlines()[-1])
    assert result["devices"] == 2
    images = [json.dumps(image) for image in result["distributed"]]
    assert len(set(images)) == 8  # no two images, on one device or across them, share a draw
    assert set(images[:4]).isdisjoint(images[4:])
    assert result["distributed"] == result["single"]


def run_jax_cluster(tmp_path, *extra, processes=2, timeout=300):
    """train.py as `processes` JAX processes on 127.0.0.1 (one CPU device
    each), through tests/jax_cluster_script.py; all are killed if they
    outlive `timeout`. Returns each process's log and results."""
    import numpy as np

    address = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    env.pop("XLA_FLAGS", None)
    commands = [([sys.executable, str(REPO / "tests" / "jax_cluster_script.py"), str(tmp_path), *QUICK,
                  "--model", "tiny", "--strategy", "multiworker", "--coordinator-address", address,
                  "--num-processes", str(processes), "--process-id", str(index), *extra], env)
                for index in range(processes)]
    logs = run_together(tmp_path, "process", commands, timeout)
    results = []
    for index in range(processes):
        data = dict(np.load(tmp_path / f"process{index}.npz"))
        data["summary"] = json.loads(str(data["summary"]))
        results.append(data)
    return logs, results


@pytest.mark.slow
def test_jax_multi_host_trains_in_lockstep_draws_per_image_and_resumes(tmp_path):
    import numpy as np

    checkpoints, export = tmp_path / "checkpoints", tmp_path / "export"
    logs, results = run_jax_cluster(tmp_path, "--epochs", "2", "--checkpoint-dir", str(checkpoints),
                                    "--export", str(export))
    for index, log in enumerate(logs):
        # 256 images: a seeded shard of 128 per process, 32 per process and step.
        assert f"process {index} of 2: 128 training and 500 test images" in log
        assert "training on 256 images" in log and "2 replica(s)" in log
    # Lockstep: the same steps, the same parameters, the same (global) metrics.
    assert results[0]["iterations"] == results[1]["iterations"] == 2 * 4
    weights = sorted(k for k in results[0] if k.startswith("weight"))
    for key in weights:
        np.testing.assert_array_equal(results[0][key], results[1][key], err_msg=key)
    assert results[0]["summary"]["test_accuracy"] == results[1]["summary"]["test_accuracy"]
    # Every image of the global batch draws its own parameters: 8 identical
    # inputs (4 per process), 8 different outputs, no repeat across processes.
    assert [int(r["first_image"]) for r in results] == [0, 4]
    warped = [image.tobytes() for r in results for image in r["warped"]]
    assert len(set(warped)) == 8
    # Only the chief writes the export and the checkpoints.
    assert (export / "model.keras").exists() and "not the chief worker" in logs[1]
    assert (checkpoints / "training_metadata.json").exists()

    logs, again = run_jax_cluster(tmp_path, "--epochs", "3", "--checkpoint-dir", str(checkpoints))
    for log, result in zip(logs, again):
        assert "2 epoch(s) already done" in log and "epoch 3:" in log and "epoch 1:" not in log
        assert result["summary"]["epochs_run"] == 1 and result["iterations"] == 3 * 4
    for key in weights:
        np.testing.assert_array_equal(again[0][key], again[1][key], err_msg=key)
    assert all(not np.array_equal(again[0][key], results[0][key]) for key in weights)  # trained on


@pytest.mark.parametrize("backend, flags, message", [
    ("jax", ["--process-id", "1"], "need --strategy multiworker"),
    ("jax", ["--strategy", "multiworker", "--num-processes", "0"], "--num-processes must be >= 1"),
    ("jax", ["--strategy", "multiworker", "--num-processes", "2", "--process-id", "2"],
     "--process-id must be in 0 .. 1"),
    ("tensorflow", ["--strategy", "multiworker", "--num-processes", "2"], "TensorFlow's multiworker reads"),
])
def test_jax_cluster_flag_errors(backend, flags, message):
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    result = run_cli(*QUICK, *flags, env=env)
    assert_one_line_error(result, message)


@pytest.mark.slow
def test_jax_multi_host_streams_an_image_folder(tmp_path):
    """Two JAX processes on a folder: each reads and decodes only its share
    (105 images: 52 each, one left out; the test set 15 each), in lockstep,
    and the figures are those of a single-process evaluation."""
    import numpy as np

    from file_opens import FileOpens
    from models.cifar10 import build_tiny_model

    folder = write_small_folder(tmp_path / "images", seed=1)
    with FileOpens(folder) as opens:
        logs, results = run_jax_cluster(tmp_path, "--data-dir", str(folder), "--image-size", "12", "12")
    for index, log in enumerate(logs):
        assert f"process {index} of 2: 52 training and 15 test images" in log
        assert "training on 104 images" in log and "streamed from" in log
    assert results[0]["iterations"] == results[1]["iterations"] == 2  # 52 per process: 32 + 20
    for key in (k for k in results[0] if k.startswith("weight")):
        np.testing.assert_array_equal(results[0][key], results[1][key], err_msg=key)
    summary = results[0]["summary"]
    assert summary["test_accuracy"] == results[1]["summary"]["test_accuracy"]
    # 1 check + 1 epoch (+ fit's first-batch peek); the test set: 1 check + the epoch's evaluation + the final one.
    assert_each_file_read_by_one_process(opens, folder, passes_train=2, passes_test=3, left_out=1, peek=1)
    model = build_tiny_model(input_shape=(12, 12, 3), num_classes=3)
    model.set_weights([results[0][f"weight{k}"] for k in range(len(model.get_weights()))])
    loss, accuracy = single_process_evaluation(model, folder)
    assert summary["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert summary["epochs"][-1]["test_loss"] == pytest.approx(loss, rel=1e-5)
