"""Test metrics: top-1/top-5, per-class accuracy and the confusion matrix."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from crnn_keras.models import to_probabilities


def predict_dataset(model: keras.Model, dataset: tf.data.Dataset,
                    verbose: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`(probabilities (N, K), labels (N,))` over a dataset of `(images, int labels)`.

    Models that output logits are softmaxed (see `crnn_keras.models.outputs_logits`).
    """
    probs, labels = [], []
    steps = int(dataset.cardinality())
    progress = keras.utils.Progbar(steps if steps > 0 else None, verbose=verbose, unit_name="batch")
    for images, batch_labels in dataset:
        probs.append(np.asarray(to_probabilities(model, model(images, training=False)), np.float32))
        labels.append(batch_labels.numpy())
        progress.add(1)
    if not probs:
        raise ValueError("The evaluation dataset is empty.")
    return np.concatenate(probs), np.concatenate(labels).astype(np.int64)


def classification_metrics(probs: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    num_classes = probs.shape[1]
    predictions = probs.argmax(-1)
    k = min(5, num_classes - 1)  # top-k with k >= num_classes is always 1.0: not reported.
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    support = confusion.sum(1)
    per_class = {
        name: (float(confusion[i, i] / support[i]) if support[i] else None)
        for i, name in enumerate(class_names)
    }
    metrics = {
        "num_examples": int(len(labels)),
        "accuracy": float((predictions == labels).mean()),
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),
        "class_names": list(class_names),
    }
    if k >= 2:
        top_k = np.argsort(-probs, axis=-1)[:, :k]
        metrics[f"top{k}_accuracy"] = float((top_k == labels[:, None]).any(-1).mean())
    return metrics


def evaluate_model(model: keras.Model, dataset: tf.data.Dataset, class_names: list[str],
                   verbose: int = 0) -> dict[str, Any]:
    """Top-1, top-5 (top-k, k < classes, for fewer classes), per-class accuracy, confusion matrix."""
    probs, labels = predict_dataset(model, dataset, verbose=verbose)
    if probs.shape[1] != len(class_names):
        raise ValueError(
            f"The model predicts {probs.shape[1]} classes but the dataset has "
            f"{len(class_names)}; evaluate on the dataset the model was trained on."
        )
    return classification_metrics(probs, labels, class_names)
