"""Multi-worker training from `TF_CONFIG`: the task of `train`, in a loop of its own.

Keras 3's `model.fit` fails under `MultiWorkerMirroredStrategy` with two or
more workers (keras-team/keras#20585: its per-replica reduction,
`strategy.reduce("MEAN", v, axis=0)`, rejects the scalar metrics), so this
loop drives the same compiled model through the same Keras `train_step` and
`test_step` that `fit` runs: `strategy.run(model.train_step)` per global batch,
gradients all-reduced across workers, each worker reading its shard. Epoch
metrics are read from the model's metrics in cross-replica context, so they
cover every worker's examples. The loop calls the run directory's callbacks
(`run_callbacks`) as `fit` does, so a multi-worker run leaves the same
`best.keras`, `last.keras`, `history.csv`, TensorBoard logs and `backup/`
(`EpochBackup`) as a single-host one.

Every worker runs the callbacks (saving reads variables, which may be a
collective operation); only the chief's land in `output_dir`, the others'
go to a temporary folder that is removed at the end. Restarting every worker
with the same command resumes from the chief's last committed epoch.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import keras
import tensorflow as tf

from crnn_keras.training.callbacks import EpochBackup, run_callbacks
from crnn_keras.training.config import TrainConfig
from crnn_keras.training.task import (
    build_model, compile_model, finish_run, get_strategy, load_splits, start_run,
)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this worker writes the run directory: the `chief`, or worker 0 without one."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def _shard(dataset: tf.data.Dataset, policy) -> tf.data.Dataset:
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy
    return dataset.with_options(options)


def _logs(model: keras.Model, prefix: str = "") -> dict[str, float]:
    # Cross-replica read of the metrics' sync-on-read totals: summed over all replicas.
    return {prefix + k: float(v) for k, v in model.get_metrics_result().items()}


def train_multi_worker(config: TrainConfig, replace: bool = False) -> dict[str, Any]:
    """Runs `config` (validated, `strategy="multi_worker"`) on this worker of `TF_CONFIG`'s cluster."""
    from crnn_keras.data.core import load_source

    # The strategy must come before any other TensorFlow op of the process.
    strategy = get_strategy("multi_worker")
    load_source(config.dataset, "train", seed=config.seed)  # Resolves the dataset before writing.
    chief = is_chief(strategy)
    run_dir = config.output_dir
    write_dir = run_dir if chief else tempfile.mkdtemp(prefix="crnn-worker-")
    backup = os.path.join(run_dir, "backup")  # The chief's, read by every worker.
    try:
        keras.utils.set_random_seed(config.seed)
        global_batch = config.batch_size * strategy.num_replicas_in_sync
        initial_epoch = 0 if replace else EpochBackup.finished_epochs(backup)
        train_ds, val_ds, test_ds, info, steps = load_splits(config, global_batch, initial_epoch)
        with strategy.scope():  # Built before anything is written: a bad option fails first.
            model = build_model(config, info)
            compile_model(model, config, steps, info.num_classes)
        if chief:
            start_run(config, replace, info, model)
        # Training batches are split across workers; every worker scores all of
        # validation, so the summed metric totals stay exact for any split size.
        train_iter = iter(strategy.experimental_distribute_dataset(
            _shard(train_ds, tf.data.experimental.AutoShardPolicy.DATA)))
        dist_val = strategy.experimental_distribute_dataset(
            _shard(val_ds, tf.data.experimental.AutoShardPolicy.OFF))
        if initial_epoch:
            with strategy.scope():
                EpochBackup.restore(model, backup)

        @tf.function
        def train_step(batch):
            strategy.run(model.train_step, args=(batch,))

        @tf.function
        def test_step(batch):
            strategy.run(model.test_step, args=(batch,))

        callbacks = keras.callbacks.CallbackList(
            run_callbacks(write_dir, initial_epoch), add_history=True, add_progbar=bool(config.verbose and chief),
            model=model, verbose=config.verbose, epochs=config.epochs, steps=steps,
        )
        logs: dict[str, float] = {}
        callbacks.on_train_begin()
        for epoch in range(initial_epoch, config.epochs):
            model.reset_metrics()
            callbacks.on_epoch_begin(epoch)
            for step in range(steps):
                callbacks.on_train_batch_begin(step)
                train_step(next(train_iter))
                callbacks.on_train_batch_end(step)
            logs = _logs(model)
            model.reset_metrics()
            for batch in dist_val:
                test_step(batch)
            logs.update(_logs(model, "val_"))
            callbacks.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
        callbacks.on_train_end(logs)
        if not chief:
            return {"chief": False, "replicas": strategy.num_replicas_in_sync}
        return finish_run(config, model, test_ds, info, strategy.num_replicas_in_sync,
                          chief=True)
    finally:
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)
