"""In-model pixel scaling, so callers pass raw 0-255 pixels."""

from __future__ import annotations

import keras
from keras import ops

# Per-channel RGB statistics on 0-255 pixels, as in keras.applications.imagenet_utils.
_IMAGENET_MEAN = (0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0)
_IMAGENET_STD = (0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
MODES = ("unit", "tf", "torch", "caffe", "none")


@keras.saving.register_keras_serializable(package="crnn_keras")
class PixelScaling(keras.layers.Layer):
    """Maps raw 0-255 pixels to what a backbone expects.

    Modes follow `keras.applications.imagenet_utils.preprocess_input`:
    `"unit"` scales to [0, 1], `"tf"` to [-1, 1], `"torch"` normalizes each
    RGB channel by ImageNet mean and std, `"caffe"` flips RGB to BGR and
    subtracts the ImageNet BGR mean, and `"none"` passes pixels through (for
    backbones that include their own preprocessing). The per-channel modes
    need 3 channels.

    Args:
        mode: one of `"unit"`, `"tf"`, `"torch"`, `"caffe"`, `"none"`.

    Example:

    >>> x = keras.ops.full((1, 2, 2, 3), 255.0)
    >>> float(PixelScaling("tf")(x)[0, 0, 0, 0])
    1.0
    """

    def __init__(self, mode: str = "unit", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"Unknown mode={mode!r}. Expected one of {MODES}.")
        self.mode = mode

    def build(self, input_shape):
        if self.mode in ("torch", "caffe") and input_shape[-1] != 3:
            raise ValueError(
                f"PixelScaling(mode={self.mode!r}) needs 3 RGB channels, got input "
                f"shape {tuple(input_shape)}. Use mode='unit' or convert to RGB."
            )
        self.built = True

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.array(_IMAGENET_MEAN, dtype=self.compute_dtype)
            std = ops.array(_IMAGENET_STD, dtype=self.compute_dtype)
            return (x - mean) / std
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.array(_CAFFE_MEAN_BGR, dtype=self.compute_dtype)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        return config
