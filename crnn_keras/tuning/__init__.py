"""Keras Tuner search over the C-RNN design space."""

from crnn_keras.tuning.hypermodel import SEARCH_SPACE, CRNNHyperModel

__all__ = ["SEARCH_SPACE", "CRNNHyperModel"]
