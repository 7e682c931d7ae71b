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
        check_label_shape(y_true.shape, y_pred.shape)
        y_true = ops.reshape(_require_one_per_example(y_true, y_pred), ops.shape(y_pred)[:-1])
        # Keras hands the loss float labels; 0.5 would be cast to class 0. Refused where the
        # backend can raise (TensorFlow outside XLA, PyTorch); elsewhere their loss is NaN.
        labels = ops.cast(y_true, "float32")
        whole = ops.equal(labels, ops.round(labels))
        y_true = _require_whole(y_true, whole)
        # Keras's own sparse cross-entropy: it refuses labels outside [0, K) on
        # TensorFlow and PyTorch, where a one-hot of them would be all zeros.
        loss = ops.sparse_categorical_crossentropy(y_true, y_pred, from_logits=self.from_logits)
        if self.label_smoothing:
            if self.from_logits:
                log_probs = ops.log_softmax(y_pred, axis=-1)
            else:
                log_probs = ops.log(ops.clip(y_pred, 1e-7, 1.0))
            # -sum(((1 - s) one_hot + s / K) log p) = (1 - s) CE + s mean(-log p).
            loss = (1.0 - self.label_smoothing) * loss - self.label_smoothing * ops.mean(log_probs, axis=-1)
        return ops.where(whole, loss, float("nan"))

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}


NOT_WHOLE = ("labels must be whole class ids (integers 0..K-1), as the default loss takes; got a "
             "fractional label. For soft labels, " + "compile(loss=keras.losses.CategoricalCrossentropy("
             "from_logits=True), metrics=['categorical_accuracy'])")


SOFT_LABELS = ("compile(loss=keras.losses.CategoricalCrossentropy(from_logits=True), "
               "metrics=['categorical_accuracy'])")
NOT_ONE_PER_EXAMPLE = ("look one-hot (a column per class); the default loss takes integer class ids of shape "
                       f"(batch,): pass labels.argmax(-1), or {SOFT_LABELS}")


def check_label_shape(label_shape, logits_shape) -> None:
    """Refuses one-hot (or any per-class) labels: the loss takes class ids of shape `(batch,)`."""
    if getattr(label_shape, "rank", 0) is None:  # Unknown rank: checked when it runs (TensorFlow).
        return
    label_shape, logits_shape = tuple(label_shape), tuple(logits_shape)
    if len(label_shape) == len(logits_shape) and label_shape[-1] not in (None, 1):
        raise ValueError(f"Labels of shape {label_shape} for logits of shape {logits_shape} {NOT_ONE_PER_EXAMPLE}.")


def _require_one_per_example(y_true, y_pred):
    """`y_true`, after a run-time check (TensorFlow) that it holds one label per example."""
    if keras.backend.backend() != "tensorflow":
        return y_true
    import tensorflow as tf

    check = tf.debugging.Assert(
        tf.equal(tf.size(y_true), tf.size(y_pred) // tf.shape(y_pred)[-1]),
        [tf.strings.format("Labels of shape {} for logits of shape {} ", (tf.shape(y_true), tf.shape(y_pred))),
         NOT_ONE_PER_EXAMPLE])
    with tf.control_dependencies([check]):
        return tf.identity(y_true)


def _require_whole(y_true, whole):
    """`y_true`, after a check that every label is a whole number where the backend can raise."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        check = tf.debugging.Assert(tf.reduce_all(whole), [NOT_WHOLE, tf.boolean_mask(y_true, ~whole)[:3]])
        with tf.control_dependencies([check]):
            return tf.identity(y_true)
    if backend == "torch" and not bool(ops.all(whole)):
        raise ValueError(NOT_WHOLE + ".")
    return y_true
