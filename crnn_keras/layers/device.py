"""Where a sweep runs: GPU and XLA-context checks, and XLA compilation, for every sweep path."""

from __future__ import annotations

import keras


def gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU (on other backends: assumed, so that their own,
    possibly fused, paths are kept)."""
    if keras.backend.backend() != "tensorflow":
        return True
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def in_xla_context() -> bool:
    """Whether this TensorFlow trace is inside an XLA-compiled function."""
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util  # What tf.function itself checks.

    return not tf.executing_eagerly() and control_flow_util.GraphOrParentsInXlaContext(
        tf.compat.v1.get_default_graph())


def xla_function(fn):
    """`fn` as a TensorFlow function that XLA compiles, gradient included.
    Built once per trace of the enclosing function, so it costs nothing per step."""
    import tensorflow as tf

    return tf.function(fn, jit_compile=True, autograph=False)
