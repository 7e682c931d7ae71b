"""Crash-safe backups and the callbacks of a run directory."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time

import keras
import numpy as np

from crnn_keras.atomic import atomic_path, write_text
from crnn_keras.training.run_dir import replaced_runs

BACKUP_METADATA = "training_metadata.json"


class EpochBackup(keras.callbacks.Callback):
    """Crash-safe training state, the one checkpoint format of both training paths.

    After each epoch the weights and optimizer state go to a new
    `epoch-NNNNN.weights.h5`; then `training_metadata.json`, naming that file,
    the number of finished epochs, the training seconds they took in all
    (across restarts) and the random-number states of the model's layers
    (dropout's masks go on as if never stopped), is replaced atomically (the
    commit point); then older weights are removed. A `kill -9` at any moment
    leaves the last committed epoch in force: none is lost or repeated.

    Restoring is explicit and public-API only: `finished_epochs` tells where to
    start (the data pipeline needs it first), `restore` loads the state into a
    compiled model, and `model.fit(initial_epoch=...)` or the multi-worker loop
    goes on from there.

    Example:

    >>> import tempfile, numpy as np
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile("adam", "mse")
    >>> backup = tempfile.mkdtemp()
    >>> _ = model.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=2, verbose=0,
    ...               callbacks=[EpochBackup(backup)])
    >>> EpochBackup.finished_epochs(backup)
    2
    >>> EpochBackup.trained_seconds(backup) > 0
    True
    """

    def __init__(self, backup_dir: str):
        super().__init__()
        self.backup_dir = backup_dir
        self._start = self._seconds_before = None

    @staticmethod
    def _metadata(backup_dir: str) -> dict | None:
        path = os.path.join(backup_dir, BACKUP_METADATA)
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    @staticmethod
    def finished_epochs(backup_dir: str) -> int:
        """The number of finished epochs committed in `backup_dir` (0 if none)."""
        metadata = EpochBackup._metadata(backup_dir)
        return int(metadata["epoch"]) if metadata else 0

    @staticmethod
    def trained_seconds(backup_dir: str) -> float:
        """Seconds of training (validation included) of the committed epochs, summed over
        every run that resumed this one; 0 if none (or written by an older version)."""
        metadata = EpochBackup._metadata(backup_dir)
        return float(metadata.get("seconds", 0.0)) if metadata else 0.0

    @staticmethod
    def restore(model: keras.Model, backup_dir: str) -> int:
        """Loads the committed weights and optimizer state into `model` (compiled,
        under its strategy's scope if any); returns the finished epochs (0: nothing to load)."""
        metadata = EpochBackup._metadata(backup_dir)
        if not metadata:
            return 0
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # Its state is in the file too.
        model.load_weights(os.path.join(backup_dir, metadata["weights"]))
        states, saved = _seed_states(model), metadata.get("seed_states")
        if saved is not None:  # None: written by an older version.
            if len(saved) != len(states):
                raise ValueError(f"{backup_dir!r} holds {len(saved)} random-number states, the model has "
                                 f"{len(states)}: it was written by another model. Pass --overwrite to start over.")
            for variable, value in zip(states, saved):
                variable.assign(np.asarray(value, dtype=variable.dtype))
        return int(metadata["epoch"])

    def on_train_begin(self, logs=None):
        self._start, self._seconds_before = time.time(), self.trained_seconds(self.backup_dir)

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.backup_dir, exist_ok=True)
        if self._start is None:  # Driven without on_train_begin.
            self.on_train_begin()
        seconds = round(self._seconds_before + time.time() - self._start, 2)
        name = f"epoch-{epoch + 1:05d}.weights.h5"
        with atomic_path(os.path.join(self.backup_dir, name)) as tmp:
            self.model.save_weights(tmp)
        seeds = [keras.ops.convert_to_numpy(v).tolist() for v in _seed_states(self.model)]
        write_text(os.path.join(self.backup_dir, BACKUP_METADATA),
                   json.dumps({"epoch": epoch + 1, "weights": name, "seconds": seconds, "seed_states": seeds}))
        for old in os.listdir(self.backup_dir):  # Older epochs, and a killed save's leftovers.
            if old.endswith(".weights.h5") and old != name:
                os.remove(os.path.join(self.backup_dir, old))


def _seed_states(model: keras.Model) -> list:
    """The state variables of the model's random layers (dropout, ...), in layer order;
    `save_weights` leaves them out."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


class TrainingDivergedError(ValueError):
    """The training loss became NaN or infinite."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training with `TrainingDivergedError` when the loss becomes NaN or
    infinite, after a batch or in an epoch's logs. Placed first, it raises
    before the epoch's history row, checkpoints and backup are written, so the
    last committed epoch stays the one a rerun resumes from.

    Example:

    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    >>> model.compile(keras.optimizers.SGD(1e30), "mse")
    >>> try:
    ...     model.fit(np.ones((8, 1)) * 1e10, np.ones((8, 1)), epochs=3, verbose=0,
    ...               callbacks=[StopOnNonFiniteLoss()])
    ... except TrainingDivergedError as err:
    ...     print(str(err)[:34])
    training diverged: the loss is inf
    """

    def __init__(self, run_dir: str | None = None):
        super().__init__()
        self.run_dir = run_dir

    def _check(self, logs, where: str) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            message = (f"training diverged: the loss is {float(loss)} {where}. Nothing of this epoch was "
                       "saved; the run keeps its last finished epoch. Lower the learning rate or set "
                       "clipnorm, then rerun with --overwrite (or another --output-dir).")
            kept = replaced_runs(self.run_dir) if self.run_dir else []
            finished = [k for k in kept if os.path.exists(os.path.join(k, "metrics.json"))]
            if kept:  # A replacement diverged: the run it replaces is still whole, aside.
                aside = (finished or kept)[-1]
                message += (f" The {'finished ' if finished else ''}run this one replaces is kept in {aside!r}; "
                            "a rerun with --overwrite that finishes deletes it. To restore it instead, delete "
                            f"{self.run_dir!r} and rename {aside!r} to it.")
            raise TrainingDivergedError(message)

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs, f"after batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, f"at the end of epoch {epoch + 1}")


def best_so_far(history_csv: str, monitor: str) -> float | None:
    """The best `monitor` value in a CSV history (for resuming a run)."""
    if not os.path.exists(history_csv):
        return None
    with open(history_csv, encoding="utf-8") as f:
        values = [float(row[monitor]) for row in csv.DictReader(f) if row.get(monitor)]
    return max(values) if values else None


def truncate_history(history_csv: str, finished_epochs: int) -> None:
    """Drops CSV rows of epochs past the restored one (logged, then lost in a crash)."""
    if not os.path.exists(history_csv):
        return
    with open(history_csv, encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if rows:
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) < finished_epochs]
        buffer = io.StringIO(newline="")
        csv.writer(buffer).writerows(kept)
        write_text(history_csv, buffer.getvalue())


class AtomicCSVLogger(keras.callbacks.Callback):
    """One CSV row per finished epoch (`epoch`, then the logs' keys, sorted),
    the whole file rewritten atomically each time: a crash never leaves an
    empty or half-written `history.csv`, and rows from earlier runs are kept."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch, **{k: float(v) for k, v in sorted((logs or {}).items())}}
        rows, fields = [], list(row)
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8", newline="") as f:
                reader = csv.DictReader(f)
                rows = list(reader)
                fields = list(reader.fieldnames or fields)
        fields += [k for k in row if k not in fields]
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows + [row])
        write_text(self.path, buffer.getvalue())


class AtomicModelCheckpoint(keras.callbacks.Callback):
    """Saves the whole model to `path` after each epoch, or only when `monitor`
    improves, to a temporary file renamed into place: a crash mid-save leaves
    the previous file whole.

    Args:
        path: a `.keras` file.
        monitor: a metric of the epoch logs (e.g. `"val_accuracy"`), or None
            to save every epoch.
        mode: `"max"` or `"min"`: which way `monitor` improves.
        initial_value_threshold: the best value so far (when resuming).
    """

    def __init__(self, path: str, monitor: str | None = None, mode: str = "max",
                 initial_value_threshold: float | None = None):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}.")
        self.path, self.monitor, self.mode = path, monitor, mode
        self.best = initial_value_threshold

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor is not None:
            value = (logs or {}).get(self.monitor)
            if value is None:
                raise ValueError(f"AtomicModelCheckpoint monitors {self.monitor!r}, which the epoch "
                                 f"logs do not have; they have {sorted(logs or {})}.")
            if self.best is not None and (value <= self.best if self.mode == "max" else value >= self.best):
                return
            self.best = float(value)
        with atomic_path(self.path) as tmp:
            self.model.save(tmp)


def run_callbacks(run_dir: str, initial_epoch: int) -> list[keras.callbacks.Callback]:
    history_csv = os.path.join(run_dir, "history.csv")
    truncate_history(history_csv, initial_epoch)
    best = best_so_far(history_csv, "val_accuracy")
    # The backup is the commit point of an epoch, so it runs last: a crash before
    # it repeats the epoch, and the history rows it logged are dropped on resume.
    return [
        StopOnNonFiniteLoss(run_dir),
        AtomicCSVLogger(history_csv),
        AtomicModelCheckpoint(os.path.join(run_dir, "best.keras"), monitor="val_accuracy", mode="max",
                              initial_value_threshold=best),
        AtomicModelCheckpoint(os.path.join(run_dir, "last.keras")),
        keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard")),
        EpochBackup(os.path.join(run_dir, "backup")),
    ]
