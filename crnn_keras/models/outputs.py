"""Whether a classifier outputs logits or probabilities, and probabilities from either."""

from __future__ import annotations

import keras


def outputs_logits(model: keras.Model) -> bool:
    """True for logits (`CRNNImageClassifier` by default, or a final linear
    layer), False for probabilities (a final softmax). Raises where it cannot tell.

    Example:

    >>> from crnn_keras.models import CRNNImageClassifier
    >>> outputs_logits(CRNNImageClassifier.from_preset("crnn_tiny", num_classes=2))
    True
    """
    if hasattr(model, "outputs_logits"):
        return bool(model.outputs_logits)
    last = model.layers[-1]
    if isinstance(last, keras.Model):  # A nested model: its own last layer decides.
        return outputs_logits(last)
    if isinstance(last, keras.layers.Softmax):
        return False
    if not hasattr(last, "activation"):  # A Lambda, a Dropout, ...: a softmax may hide before or in it.
        raise ValueError(
            f"Cannot tell whether model {model.name!r} outputs logits or probabilities: its last "
            f"layer {last.name!r} ({type(last).__name__}) has no activation. End it in a linear "
            "layer (logits) or a softmax."
        )
    activation = last.activation
    if activation is keras.activations.softmax:
        return False
    if activation in (None, keras.activations.linear):
        return True
    raise ValueError(
        f"Cannot tell whether model {model.name!r} outputs logits or probabilities: its last "
        f"layer {last.name!r} has activation {activation!r}. End it in a linear layer (logits) "
        "or a softmax."
    )


def to_probabilities(model: keras.Model, outputs):
    """Class probabilities from `model`'s outputs (softmax over logits)."""
    if outputs_logits(model):
        return keras.ops.softmax(keras.ops.cast(outputs, "float32"), axis=-1)
    return outputs
