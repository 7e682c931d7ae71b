"""Crash-safe backups and the callbacks of a run directory."""

from __future__ import annotations

import csv
import io
import json
import os

import keras

from crnn_keras.atomic import atomic_path, write_text

BACKUP_METADATA = "training_metadata.json"


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` whose backups survive a `kill -9` at any moment.

    Each epoch's weights go to a new file; then the metadata naming that file
    and the finished epoch is replaced atomically (the commit point); then the
    older weights are removed. A crash mid-save leaves the last complete
    backup in force, so no epoch is lost or repeated.
    """

    def __init__(self, backup_dir: str):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)

    @staticmethod
    def restored_epoch(backup_dir: str) -> int:
        """The number of finished epochs recorded in `backup_dir` (0 if none)."""
        path = os.path.join(backup_dir, BACKUP_METADATA)
        if not os.path.exists(path):
            return 0
        with open(path, encoding="utf-8") as f:
            return int(json.load(f)["epoch"])

    def _load_model(self):
        path = os.path.join(self.backup_dir, BACKUP_METADATA)
        if not os.path.exists(path):
            return
        with open(path, encoding="utf-8") as f:
            metadata = json.load(f)
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.backup_dir, metadata["weights"]))
        self.model._initial_epoch = metadata["epoch"]

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch-{self._current_epoch:05d}.weights.h5"
        self.model.save_weights(os.path.join(self.backup_dir, name), overwrite=True)
        tmp = os.path.join(self.backup_dir, BACKUP_METADATA + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"epoch": self._current_epoch, "weights": name}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(self.backup_dir, BACKUP_METADATA))
        for old in os.listdir(self.backup_dir):
            if old.endswith(".weights.h5") and old != name:
                os.remove(os.path.join(self.backup_dir, old))


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
        keras.callbacks.TerminateOnNaN(),
        AtomicCSVLogger(history_csv),
        AtomicModelCheckpoint(os.path.join(run_dir, "best.keras"), monitor="val_accuracy", mode="max",
                              initial_value_threshold=best),
        AtomicModelCheckpoint(os.path.join(run_dir, "last.keras")),
        keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard")),
        AtomicBackupAndRestore(os.path.join(run_dir, "backup")),
    ]
