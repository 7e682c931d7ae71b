"""Decoding image files and bytes to what a model expects."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def decode_for_model(data: bytes | tf.Tensor, input_shape: tuple, name: str = "image") -> np.ndarray:
    """Decodes JPEG/PNG/BMP/GIF (first frame) bytes to `(H, W, C)` float32 0-255,
    with the model's channels, resized to its input size where that is fixed."""
    channels = input_shape[-1]
    try:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except tf.errors.InvalidArgumentError as err:
        raise ValueError(f"Cannot decode {name}: not a JPEG, PNG, BMP or GIF image, or corrupt.") from err
    if channels == 1:
        image = tf.image.rgb_to_grayscale(image)
    image = tf.cast(image, tf.float32)
    height, width = input_shape[1:3] if len(input_shape) == 4 else input_shape[:2]
    if height and width:
        image = tf.image.resize(image, (height, width))
    return image.numpy()


def load_image_for_model(path: str, input_shape: tuple) -> np.ndarray:
    """`decode_for_model` of a file, with an error naming the file."""
    try:
        data = tf.io.read_file(path)
    except tf.errors.NotFoundError as err:
        raise ValueError(f"Image file {path!r} does not exist.") from err
    return decode_for_model(data, input_shape, name=repr(path))
