"""Sparse categorical cross-entropy with label smoothing, for integer labels."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="crnn_keras")
class SparseCategoricalCrossentropy(keras.losses.Loss):
    """Cross-entropy on integer labels, with optional label smoothing.

    Equals `keras.losses.CategoricalCrossentropy(from_logits, label_smoothing)`
    on one-hot labels, without one-hot labels in the data pipeline (Keras's
    own sparse loss has no label smoothing).

    Args:
        from_logits: whether predictions are logits (else probabilities).
        label_smoothing: in [0, 1): the target is
            `(1 - label_smoothing) * one_hot + label_smoothing / num_classes`.

    Example:

    >>> loss = SparseCategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    >>> round(float(loss(keras.ops.array([1]), keras.ops.array([[0.0, 0.0]]))), 4)
    0.6931
    """

    def __init__(self, from_logits: bool = True, label_smoothing: float = 0.0,
                 name: str = "sparse_categorical_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        if not isinstance(label_smoothing, (int, float)) or not 0 <= label_smoothing < 1:
            raise ValueError(f"`label_smoothing` must be a float in [0, 1), got {label_smoothing!r}.")
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.reshape(y_true, ops.shape(y_pred)[:-1])
        # Keras's own sparse cross-entropy: it refuses labels outside [0, K) on
        # TensorFlow and PyTorch, where a one-hot of them would be all zeros.
        loss = ops.sparse_categorical_crossentropy(y_true, y_pred, from_logits=self.from_logits)
        if not self.label_smoothing:
            return loss
        if self.from_logits:
            log_probs = ops.log_softmax(y_pred, axis=-1)
        else:
            log_probs = ops.log(ops.clip(y_pred, 1e-7, 1.0))
        # -sum(((1 - s) one_hot + s / K) log p) = (1 - s) CE + s mean(-log p).
        return (1.0 - self.label_smoothing) * loss - self.label_smoothing * ops.mean(log_probs, axis=-1)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}
