"""Batch normalization that runs TensorFlow's fused kernel."""

from __future__ import annotations

import keras

# FusedBatchNormV3's smallest accepted epsilon.
_FUSED_MIN_EPSILON = 1.001e-5


@keras.saving.register_keras_serializable(package="crnn_keras")
class BatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization`, run as one fused op on TensorFlow.

    Keras computes the batch moments and the normalization as separate ops;
    on a CPU that is about 40% of the small conv stems' training step. On the
    TensorFlow backend this layer calls `FusedBatchNormV3` instead (oneDNN on
    a CPU, cuDNN on a GPU) for channels-last 4D inputs. The variables, their
    updates (the biased batch variance, as Keras) and the outputs are those
    of the Keras layer. Everything else, other backends and the options the
    fused op lacks (`synchronized`, `renorm`, masks, another axis, epsilon
    below 1.001e-5), runs Keras's own code. The class name is Keras's, so
    weight files of models built with either layer load into the other.

    Args: those of `keras.layers.BatchNormalization`.

    Example:

    >>> layer = BatchNormalization()
    >>> y = layer(keras.ops.ones((2, 4, 4, 3)), training=True)
    >>> tuple(y.shape), [w.name for w in layer.weights]
    ((2, 4, 4, 3), ['gamma', 'beta', 'moving_mean', 'moving_variance'])
    """

    def _fusable(self, inputs, mask) -> bool:
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.synchronized
            and not self.renorm
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and self.epsilon >= _FUSED_MIN_EPSILON
            and self.variable_dtype == "float32"
            and keras.backend.standardize_dtype(inputs.dtype) in ("float16", "bfloat16", "float32")
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = tf.cast(inputs, "float32")  # Keras, too, normalizes in float32.
        gamma = self.gamma if self.scale else tf.ones_like(self.moving_mean)
        beta = self.beta if self.center else tf.zeros_like(self.moving_mean)
        if training and self.trainable:
            y, mean, unbiased, *_ = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True
            )
            # The op returns the unbiased variance; Keras's moving average takes the biased one.
            n = tf.cast(tf.size(x, out_type=tf.int64) // tf.shape(x, out_type=tf.int64)[-1], "float32")
            variance = unbiased * (n - 1.0) / tf.maximum(n, 1.0)
            momentum = self.momentum
            self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
            self.moving_variance.assign(self.moving_variance * momentum + variance * (1.0 - momentum))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, mean=self.moving_mean, variance=self.moving_variance,
                epsilon=self.epsilon, data_format="NHWC", is_training=False,
            )
        return tf.cast(y, self.compute_dtype)
