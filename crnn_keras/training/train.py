"""`train(config)`: one training task, run by `model.fit` or, across workers, by
the multi-worker loop, into a run directory.

Run directory layout (the same for both)::

    config.yaml          the resolved config
    dataset_info.json    class names, image shape, split sizes
    best.keras last.keras
    history.csv          one row per finished epoch (kept across restarts)
    tensorboard/         TensorBoard logs
    backup/              crash-recovery state (see EpochBackup)
    metrics.json         test metrics of best.keras, parameter count, training seconds
    curves.png confusion_matrix.png
"""

from __future__ import annotations

import os
from typing import Any

import keras

from crnn_keras.training.callbacks import EpochBackup, run_callbacks
from crnn_keras.training.config import TrainConfig
from crnn_keras.training.multi_worker import train_multi_worker
from crnn_keras.training.run_dir import check_run_dir
from crnn_keras.training.task import (
    build_model, check_tf_config, compile_model, dtype_policy, finish_run, get_strategy, load_splits,
    start_run,
)


def train(config: TrainConfig | dict[str, Any], overwrite: bool = False) -> dict[str, Any]:
    """Trains per `config`; resumes from `output_dir/backup` after a crash.

    The config is validated, the output folder checked (see `check_run_dir`;
    `overwrite` replaces a run with another config), the dataset resolved and
    the model built before anything is written. A replaced run is kept aside
    until the new one finishes (see `start_run`). Returns the metrics also written to
    `output_dir/metrics.json`.
    """
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    config.validate()
    check_tf_config(config.strategy)
    replace = check_run_dir(config, overwrite)
    if config.strategy == "multi_worker":
        return train_multi_worker(config, replace)

    run_dir = config.output_dir
    backup = os.path.join(run_dir, "backup")
    with dtype_policy(config.precision):
        keras.utils.set_random_seed(config.seed)
        strategy = get_strategy(config.strategy)
        global_batch = config.batch_size * strategy.num_replicas_in_sync
        initial_epoch = 0 if replace else EpochBackup.finished_epochs(backup)
        train_ds, val_ds, test_ds, info, steps = load_splits(config, global_batch, initial_epoch)
        with strategy.scope():  # Built before anything is written: a bad option fails first.
            model = build_model(config, info)
            compile_model(model, config, steps, info.num_classes)
        start_run(config, replace, info, model)
        if initial_epoch:
            with strategy.scope():
                EpochBackup.restore(model, backup)
        if initial_epoch < config.epochs:
            if initial_epoch and config.verbose:
                print(f"Resuming after epoch {initial_epoch} from {backup}", flush=True)
            model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=config.epochs,
                initial_epoch=initial_epoch,
                steps_per_epoch=steps,
                callbacks=run_callbacks(run_dir, initial_epoch),
                verbose=config.verbose,
                shuffle=False,  # the pipeline shuffles; Keras 3 warns on Datasets otherwise
            )
        return finish_run(config, model, test_ds, info, strategy.num_replicas_in_sync)
