"""What defines a run, recorded in its checkpoint and compared on resume:
`run_definition`, `check_same_run` (one line naming the flag that differs),
`continue_run` (what a resumed run changes and says), and `restore`."""

import json
import os
import pathlib

from models.errors import UsageError
from models.flags import flag, random_transform_arguments


def run_definition(args, splits, topology):
    """What defines a run (recorded in its checkpoint): the data, its
    splits and order, the batches, the augmentation and mixing, the model, the
    learning rate, the backend. JSON values: an image folder's class names
    (their order is the labels) and every split's count are part of it, so
    a folder whose classes or files changed is another run."""
    import keras

    return {
        "data_dir": None if args.data_dir is None else os.path.realpath(args.data_dir),
        "limit": args.limit,
        "validation_split": args.validation_split,
        "image_size": list(splits.image_shape[:2]),
        "class_names": list(splits.folder.class_names) if splits.kind == "folder" else None,
        "counts": dict(splits.counts),
        "files": folder_fingerprint(splits.folder, args.data_dir) if splits.kind == "folder" else None,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "replicas": topology.replicas,
        "augment": args.augment,
        "augmentation": json.loads(json.dumps(random_transform_arguments(args))) if args.augment != "none" else None,
        "model": args.model,
        "mixup": args.mixup,
        "cutmix": args.cutmix,
        "learning_rate": args.learning_rate,
        "backend": keras.backend.backend(),
    }


def folder_fingerprint(folder, data_dir):
    """A digest of every split's files and labels, in order, paths relative
    to --data-dir: an image added, removed, renamed or moved to another
    class changes it, a touched file does not."""
    import hashlib

    digest, root = hashlib.sha256(), os.path.abspath(data_dir)
    for name in ("train", "validation", "test"):
        part = getattr(folder, name)
        for path, label in part.pairs() if part is not None else ():
            relative = os.fsencode(os.path.relpath(os.path.abspath(path), root))
            digest.update(name.encode() + b"\0" + relative + b"\0" + str(int(label)).encode() + b"\n")
    return digest.hexdigest()[:20]


def _shown(value):
    if value is None:
        return "none"
    if isinstance(value, list):
        return " ".join(map(str, value))
    if isinstance(value, dict):
        return ", ".join(f"{key} {item}" for key, item in value.items())
    return str(value)


def check_same_run(args, run, recorded):
    """Refuses (one line naming the flag and both values) to resume a
    checkpoint whose run (`recorded`; None: an earlier gpuaug's, which
    recorded nothing) differs from this one (`run`) in what defines it: one
    model would be trained on two runs' data, batches or augmentation."""
    recorded = recorded or {}
    if recorded:  # recorded before --mixup and --cutmix existed: those runs mixed nothing
        recorded = {"mixup": None, "cutmix": None, **recorded}
    names = {"data_dir": "--data-dir", "replicas": "--strategy (devices sharing a batch)",
             "class_names": "--data-dir's class folders", "counts": "--data-dir's images per split",
             "files": "--data-dir's files and labels (digest)"}
    # Compared as JSON, so types count: --width-shift-range 4 (whole pixels) is
    # not 4.0 (any shift up to 4 pixels), as in ImageDataGenerator.
    same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # noqa: E731
    differences = [(names.get(key, flag(key)), recorded[key], run[key])
                   for key in ("data_dir", "limit", "validation_split", "image_size", "class_names", "counts", "files",
                               "seed",
                               "batch_size", "replicas", "augment", "model", "mixup", "cutmix")
                   if key in recorded and not same(recorded[key], run[key])]
    if not differences and recorded.get("augment") == run["augment"]:
        before, now = recorded.get("augmentation") or {}, run["augmentation"] or {}
        differences = [(flag(key), before[key], now.get(key)) for key in sorted(before)
                       if not same(before[key], now.get(key))]
    if differences:
        name, theirs, ours = differences[0]
        raise UsageError(f"--checkpoint-dir {args.checkpoint_dir} holds a run with {name} {_shown(theirs)}; this "
                         f"run has {_shown(ours)}: resume with the same flags, or use another --checkpoint-dir")


def continue_run(args, run, restored, model):
    """After a checkpoint loaded: applies this run's --learning-rate (the
    optimizer's state brought the interrupted run's) and says so when it
    changed; notes another backend, and a checkpoint that recorded no flags."""
    if restored.epochs == 0:
        return
    recorded = restored.run
    if recorded is None:
        print(f"--checkpoint-dir {args.checkpoint_dir}: written by an earlier gpuaug, which recorded no flags: "
              "this run's are not checked against the interrupted run's", flush=True)
        recorded = {}
    if model.optimizer is not None:
        model.optimizer.learning_rate = args.learning_rate
        if recorded.get("learning_rate", args.learning_rate) != args.learning_rate:
            print(f"--learning-rate {args.learning_rate}: the interrupted run trained with "
                  f"{recorded['learning_rate']}; training continues with {args.learning_rate}", flush=True)
    if recorded.get("backend", run["backend"]) != run["backend"]:
        print(f"--checkpoint-dir {args.checkpoint_dir}: written on the {recorded['backend']} backend, resumed on "
              f"{run['backend']}: the weights continue, the random draws come from {run['backend']}'s generator",
              flush=True)


def restore(model, checkpoint_dir, repair=True, check_run=None):
    """Loads the newest usable state of --checkpoint-dir (models/checkpoints.py)
    and returns it (`Restored`); a `CheckpointError` if none loads."""
    from models import checkpoints

    restored = checkpoints.restore(model, checkpoint_dir, repair=repair, check_run=check_run)
    if restored.message:
        print(restored.message, flush=True)
    return restored


def earlier_epoch_records(metrics_json, initial_epoch):
    """On a run resumed from a checkpoint of an earlier gpuaug (which kept
    no history), the per-epoch records of the epochs already done that
    --metrics-json FILE holds from the interrupted run (FILE is rewritten
    after every epoch); [] when there are none or FILE is unreadable."""
    if not metrics_json or initial_epoch == 0:
        return []
    try:
        records = json.loads(pathlib.Path(metrics_json).read_text())["epochs"]
        return [r for r in records if isinstance(r, dict) and isinstance(r.get("epoch"), int)
                and r["epoch"] <= initial_epoch]
    except (OSError, ValueError, KeyError, TypeError):
        return []
