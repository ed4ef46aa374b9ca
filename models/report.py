"""The epoch report: after every epoch, its record, the checkpoint, the
--metrics-json FILE and the epoch's printed line, in that order."""

import time

import keras

from models.outputs import write_json_atomically


class EpochReport(keras.callbacks.Callback):
    """After every epoch, in this order: builds its record (wall time,
    images/s, the training and validation metrics) into `records`; calls
    `after_epoch()`; `save(model, epochs_done, history)` (the checkpoint,
    with `earlier`, the records of a resumed run's epochs already done, and
    `records`); with `metrics_json`, rewrites that file (atomically) with
    them; prints the epoch's line. `initial_epoch`: the epochs a resumed
    run had done (where fit starts)."""

    def __init__(self, images_per_epoch, validation_name="test", metrics_json=None, earlier=(),
                 validation_metrics=None, save=None, after_epoch=None, initial_epoch=0):
        super().__init__()
        self.initial_epoch = initial_epoch
        self.save, self.after_epoch = save, after_epoch
        self.images_per_epoch = images_per_epoch
        self.validation_name = validation_name
        self.validation_metrics = validation_metrics or (lambda logs: (logs["val_loss"], logs["val_accuracy"]))
        self.metrics_json = metrics_json
        self.earlier = list(earlier)
        self.seconds = []
        self.records = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        self.seconds.append(seconds)
        logs = {key: float(value) for key, value in (logs or {}).items()}
        record = {"epoch": epoch + 1, "seconds": seconds, "images_per_second": self.images_per_epoch / seconds,
                  "loss": logs.get("loss"), "accuracy": logs.get("accuracy")}
        line = (f"epoch {epoch + 1}: {seconds:.2f} s, {self.images_per_epoch / seconds:,.0f} images/s, "
                f"loss {logs.get('loss', float('nan')):.4f}, accuracy {logs.get('accuracy', float('nan')):.4f}")
        if "val_loss" in logs:
            name = self.validation_name
            loss, accuracy = self.validation_metrics(logs)
            record.update({f"{name}_loss": loss, f"{name}_accuracy": accuracy})
            line += f", {name} loss {loss:.4f}, {name} accuracy {accuracy:.4f}"
        self.records.append(record)
        if self.after_epoch is not None:
            self.after_epoch()
        if self.save is not None:  # the state, with every epoch's record so far
            self.save(self.model, epoch + 1, self.earlier + self.records)
        if self.metrics_json:  # so that an interrupted run keeps what it measured
            write_json_atomically(self.metrics_json, {"epochs": self.earlier + self.records,
                                                      "finished": False})
        print(line, flush=True)
