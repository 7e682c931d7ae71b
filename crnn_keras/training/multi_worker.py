"""Multi-worker training from `TF_CONFIG` with a custom loop.

Keras 3's `model.fit` fails under `MultiWorkerMirroredStrategy` with two or
more workers (keras-team/keras#20585), so this runs the same model, optimizer,
loss and data as `train` in an explicit loop: `strategy.run` per step, gradients
all-reduced across workers, each worker reading its shard of every global
batch. All workers save each epoch's checkpoint (a collective operation); only
the chief's lands in `output_dir/backup`, and only the chief writes the run
directory's models, history and metrics. Restarting every worker with the same
command resumes from the last finished epoch.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import time
from typing import Any

import keras
import tensorflow as tf

from crnn_keras.atomic import atomic_path, write_json
from crnn_keras.training.config import TrainConfig


def _is_chief(strategy: tf.distribute.Strategy) -> bool:
    resolver = strategy.cluster_resolver
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def train_multi_worker(config: TrainConfig, strategy: tf.distribute.Strategy | None = None) -> dict[str, Any]:
    from crnn_keras.training.evaluation import evaluate_model
    from crnn_keras.training.train import (
        build_model, load_splits, make_loss, make_optimizer, write_report,
    )

    strategy = strategy or tf.distribute.MultiWorkerMirroredStrategy()
    chief = _is_chief(strategy)
    run_dir = config.output_dir
    keras.utils.set_random_seed(config.seed)
    global_batch = config.batch_size * strategy.num_replicas_in_sync

    with strategy.scope():
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    backup = os.path.join(run_dir, "backup") if chief else tempfile.mkdtemp(prefix="crnn-worker-")
    # The restored epoch is read before the data is built, so it starts at the right pass.
    probe = tf.train.Checkpoint(epoch=tf.Variable(0, dtype=tf.int64))
    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "backup"))
    if latest:
        probe.read(latest).expect_partial()
    initial_epoch = int(probe.epoch.numpy())

    train_ds, val_ds, test_ds, info, steps = load_splits(config, global_batch, initial_epoch)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dist_train = strategy.experimental_distribute_dataset(train_ds.with_options(options))

    with strategy.scope():
        model = build_model(config, info)
        optimizer = make_optimizer(config, steps)
        optimizer.build(model.trainable_variables)
        loss_fn = make_loss(config, reduction=None)
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch_var)
    if latest:
        checkpoint.restore(latest)
    manager = tf.train.CheckpointManager(checkpoint, backup, max_to_keep=1)

    def step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            per_example = loss_fn(labels, logits)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        correct = tf.cast(tf.equal(tf.argmax(logits, -1), labels), tf.float32)
        return loss, tf.reduce_sum(correct)

    @tf.function
    def distributed_step(batch):
        loss, correct = strategy.run(step, args=batch)
        return (strategy.reduce("SUM", loss, axis=None), strategy.reduce("SUM", correct, axis=None))

    history_csv = os.path.join(run_dir, "history.csv")
    if chief:
        os.makedirs(run_dir, exist_ok=True)
        from crnn_keras.training.callbacks import truncate_history

        truncate_history(history_csv, initial_epoch)
    start = time.time()
    iterator = iter(dist_train)
    n_train = info.splits.get("train") or steps * global_batch
    progress = keras.utils.Progbar(config.epochs, verbose=config.verbose if chief else 0, unit_name="epoch")
    for epoch in range(initial_epoch, config.epochs):
        total_loss, total_correct = 0.0, 0.0
        for _ in range(steps):
            loss, correct = distributed_step(next(iterator))
            total_loss += float(loss)
            total_correct += float(correct)
        row = {"epoch": epoch, "loss": total_loss / steps, "accuracy": total_correct / n_train}
        if chief:
            val = evaluate_model(model, val_ds, info.class_names)
            row["val_accuracy"] = val["accuracy"]
            new = not os.path.exists(history_csv)
            with open(history_csv, "a", encoding="utf-8", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(row))
                if new:
                    writer.writeheader()
                writer.writerow(row)
        epoch_var.assign(epoch + 1)
        manager.save()  # Collective: every worker saves; the chief's is the backup.
        progress.update(epoch + 1, [(k, v) for k, v in row.items() if k != "epoch"])
    if not chief:
        shutil.rmtree(backup, ignore_errors=True)
        return {"chief": False}
    with atomic_path(os.path.join(run_dir, "last.keras")) as tmp:
        model.save(tmp)
    write_json(os.path.join(run_dir, "dataset_info.json"), info.to_dict())
    from crnn_keras.training.run_dir import load_run_model

    scored, checkpoint = load_run_model(run_dir)  # last.keras: this loop keeps no best.
    metrics = evaluate_model(scored, test_ds, info.class_names)
    metrics.update(checkpoint=os.path.basename(checkpoint), model=config.model, params=int(model.count_params()),
                   replicas=strategy.num_replicas_in_sync, train_seconds=round(time.time() - start, 2),
                   epochs=config.epochs, dataset=config.dataset, chief=True)
    write_report(run_dir, metrics)
    return metrics
