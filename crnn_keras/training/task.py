"""The pieces of one training task, shared by `model.fit` and the multi-worker loop.

The strategy, the model, its optimizer, loss and metrics (`compile_model`), the
data splits and the run report. Both training paths compile the model here and
run its one Keras `train_step`; see `train` and `train_multi_worker`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from typing import Any, Iterator

import keras
import tensorflow as tf

from crnn_keras.atomic import remove_stale_temporaries, write_json
from crnn_keras.data import DatasetInfo, load_dataset
from crnn_keras.data.core import check_disjoint
from crnn_keras.models import CRNNImageClassifier, SparseCategoricalCrossentropy, cnn_baseline
from crnn_keras.training.callbacks import EpochBackup
from crnn_keras.training.config import TrainConfig
from crnn_keras.training.evaluation import evaluate_model
from crnn_keras.training.reports import plot_confusion, plot_history
from crnn_keras.training.run_dir import REPLACED, load_run_model, replaced_runs


def check_tf_config(strategy: str = "multi_worker") -> None:
    """Refuses a malformed `TF_CONFIG` with a message that names it, and a cluster
    of several members with another strategy than `"multi_worker"` (each worker
    would train alone, all writing one run)."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON ({err}): {text[:200]!r}.") from err
    task = data.get("task") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("cluster"), dict) or not isinstance(task, dict) \
            or "type" not in task or "index" not in task:
        raise ValueError('TF_CONFIG must be {"cluster": {"worker": ["host:port", ...]}, "task": {"type": '
                         f'"worker", "index": 0}}}}, got {text[:200]!r}.')
    members = data["cluster"].get(task["type"])
    if not isinstance(members, list) or not isinstance(task["index"], int) or not 0 <= task["index"] < len(members):
        raise ValueError(f"TF_CONFIG task {task} is not in its cluster {data['cluster']}.")
    size = sum(len(m) for m in data["cluster"].values() if isinstance(m, list))
    if strategy != "multi_worker" and size > 1:
        raise ValueError(f"TF_CONFIG describes a cluster of {size}, but strategy={strategy!r} trains on this "
                         "machine alone (every worker would write the same run). Pass --strategy multi_worker, "
                         "or unset TF_CONFIG.")


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Keras's global dtype policy set to `name` for the block, then restored."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def get_strategy(name: str = "mirrored") -> tf.distribute.Strategy:
    """`"mirrored"`: all local GPUs, else all logical CPUs (one replica each);
    `"multi_worker"`: `MultiWorkerMirroredStrategy` from `TF_CONFIG`;
    `"default"`: no distribution."""
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multi_worker":
        check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"Unknown strategy {name!r}. Expected 'mirrored', 'multi_worker' or 'default'.")


def build_model(config: TrainConfig, info: DatasetInfo) -> CRNNImageClassifier:
    """The configured C-RNN (logits), or the CNN baseline matched to its parameter count.

    An architecture preset takes the config's `backbone`, `sweep` and `head`
    overrides; a trained preset starts from its weights (fine-tuning).
    """
    overrides = dict(cnn=config.backbone, sweep=config.sweep or None, head=config.head or None)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    crnn = CRNNImageClassifier.from_preset(
        config.preset, num_classes=info.num_classes, image_shape=tuple(info.image_shape),
        compile=False, **overrides,
    )
    if config.model == "crnn":
        return crnn
    return cnn_baseline(crnn, match_params=config.match_params, depth=config.baseline_depth)


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    total = config.epochs * steps_per_epoch
    warmup = int(config.warmup_epochs * steps_per_epoch)
    lr = config.learning_rate
    if config.schedule == "cosine" or (config.schedule == "constant" and warmup):
        schedule = keras.optimizers.schedules.CosineDecay(  # alpha=1: no decay, a constant after warm-up.
            lr if not warmup else 0.0, max(1, total - warmup), alpha=1.0 if config.schedule == "constant" else 0.0,
            warmup_target=lr if warmup else None, warmup_steps=warmup,
        )
    elif config.schedule == "step":
        boundaries = list(range(config.step_epochs * steps_per_epoch, total, config.step_epochs * steps_per_epoch))
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
            boundaries, [lr * config.step_gamma**i for i in range(len(boundaries) + 1)]
        ) if boundaries else lr
    else:
        schedule = lr
    clip = {"clipnorm": config.clipnorm} if config.clipnorm else {}
    if config.optimizer == "sgd":
        momentum = 0.9 if config.momentum is None else config.momentum
        return keras.optimizers.SGD(schedule, momentum=momentum,
                                    weight_decay=config.weight_decay or None, **clip)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay, **clip)
    # Keras applies `weight_decay` the decoupled way for every optimizer; Adam must not drop it.
    return keras.optimizers.Adam(schedule, weight_decay=config.weight_decay or None, **clip)


def make_loss(config: TrainConfig) -> keras.losses.Loss:
    """Cross-entropy on integer labels and logits, with the config's label smoothing."""
    return SparseCategoricalCrossentropy(from_logits=True, label_smoothing=config.label_smoothing)


def compile_model(model: keras.Model, config: TrainConfig, steps_per_epoch: int, num_classes: int) -> None:
    """Integer labels; top-5 accuracy (top-k with k < classes) only where it says something."""
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    k = min(5, num_classes - 1)
    if k >= 2:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(k=k, name=f"top{k}_accuracy"))
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=make_loss(config),
        metrics=metrics,
        jit_compile=config.xla,
    )


def load_splits(config: TrainConfig, global_batch: int, initial_epoch: int = 0):
    """`(train, validation, test, info, steps_per_epoch)` for a config."""
    check_disjoint(config.dataset, config.validation_split, config.test_split, seed=config.seed)
    common = dict(image_size=config.image_size, channels=config.channels, seed=config.seed)
    train_ds, info = load_dataset(
        config.dataset, "train", batch_size=global_batch, augment=config.augment,
        translate=config.translate, epochs=config.epochs,
        initial_epoch=min(initial_epoch, config.epochs - 1),  # A finished run still builds its pipeline.
        **common,
    )
    val_ds, val_info = load_dataset(config.dataset, config.validation_split, batch_size=global_batch, **common)
    test_ds, test_info = load_dataset(config.dataset, config.test_split, batch_size=global_batch, **common)
    for split, other in ((config.validation_split, val_info), (config.test_split, test_info)):
        if tuple(other.image_shape) != tuple(info.image_shape):  # Native sizes of a folder, say.
            raise ValueError(f"{split!r} of {config.dataset!r} has images of shape {tuple(other.image_shape)}, "
                             f"training has {tuple(info.image_shape)}; pass --image-size to resize them all.")
    return train_ds, val_ds, test_ds, info, steps_per_epoch(config, info, global_batch)


def steps_per_epoch(config: TrainConfig, info: DatasetInfo, global_batch: int) -> int:
    """Batches of `global_batch` in one pass over the training split (the last one partial)."""
    n_train = info.splits.get("train")
    if not n_train:
        n_train = int(load_dataset(config.dataset, "train", batch_size=1, image_size=config.image_size,
                                   channels=config.channels, seed=config.seed)[0].cardinality())
    if n_train <= 0:
        raise ValueError(f"Cannot tell the size of the training split of {config.dataset!r}.")
    return math.ceil(n_train / global_batch)


def start_run(config: TrainConfig, replace: bool, info: DatasetInfo, model: keras.Model) -> None:
    """Writes the run's config and `dataset_info.json`, once the dataset has loaded and
    the model is built, and prints a short summary of the run (the config is in `config.yaml`).

    `replace` moves the older run aside to `<output_dir>.replaced-N`; `finish_run`
    deletes it once the new run has finished, so a failed or killed replacement loses
    nothing. A killed run's temporary files are removed (with a warning) before a
    resumed one writes."""
    if replace:
        aside, n = os.path.normpath(config.output_dir) + REPLACED, 1
        while os.path.exists(f"{aside}{n}"):
            n += 1
        os.replace(config.output_dir, f"{aside}{n}")
    os.makedirs(config.output_dir, exist_ok=True)
    remove_stale_temporaries(config.output_dir)
    config.save(os.path.join(config.output_dir, "config.yaml"))
    write_json(os.path.join(config.output_dir, "dataset_info.json"), info.to_dict())
    if config.verbose:
        print(run_summary(config, info, model), flush=True)


def run_summary(config: TrainConfig, info: DatasetInfo, model: keras.Model) -> str:
    """Two lines: what is trained on what, and how and where."""
    n_train = info.splits.get("train")
    shape = "x".join(str(d) for d in info.image_shape)
    model_name = config.preset if config.model == "crnn" else f"cnn_baseline of {config.preset}"
    return (f"Training {model_name} ({model.count_params():,} parameters) on {config.dataset}: "
            f"{info.num_classes} classes, {shape} images"
            + (f", {n_train:,} for training" if n_train else "") + ".\n"
            f"{config.epochs} epoch(s), batch {config.batch_size} per replica, {config.optimizer} at "
            f"{config.learning_rate:g} ({config.schedule}); the run goes to {config.output_dir} "
            "(full config in config.yaml).")


def finish_run(config: TrainConfig, model: keras.Model, test_ds: tf.data.Dataset, info: DatasetInfo,
               replicas: int, **extra: Any) -> dict[str, Any]:
    """Scores the run's checkpoint (best on validation, as `evaluate` and `export`
    of the run load it) once on the test split; writes `metrics.json` and the plots.
    `train_seconds` is the training time of all its epochs, across restarts."""
    train_seconds = EpochBackup.trained_seconds(os.path.join(config.output_dir, "backup"))
    scored, checkpoint = load_run_model(config.output_dir)
    metrics = evaluate_model(scored, test_ds, info.class_names, verbose=1 if config.verbose == 1 else 0)
    metrics.update(
        checkpoint=os.path.basename(checkpoint),
        model=config.model,
        params=int(model.count_params()),
        replicas=replicas,
        train_seconds=round(train_seconds, 2),
        epochs=config.epochs,
        dataset=config.dataset,
        **extra,
    )
    write_report(config.output_dir, metrics)
    _drop_replaced(config.output_dir)
    if config.verbose:
        print(f"{config.model}: test accuracy {metrics['accuracy']:.4f} "
              f"({metrics['num_examples']} examples), params {metrics['params']}", flush=True)
    return metrics


def _drop_replaced(run_dir: str) -> None:
    """Deletes the runs this finished run replaced (`<run_dir>.replaced-N`)."""
    for path in replaced_runs(run_dir):
        shutil.rmtree(path, ignore_errors=True)


def write_report(run_dir: str, metrics: dict[str, Any]) -> None:
    write_json(os.path.join(run_dir, "metrics.json"), metrics)
    history = os.path.join(run_dir, "history.csv")
    if os.path.exists(history):
        plot_history(history, os.path.join(run_dir, "curves.png"))
    plot_confusion(metrics["confusion_matrix"], metrics["class_names"],
                   os.path.join(run_dir, "confusion_matrix.png"))
