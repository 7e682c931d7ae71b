"""Keras Tuner search over the C-RNN design space."""

from crnn_keras.tuning.hypermodel import SEARCH_SPACE, CRNNHyperModel
from crnn_keras.tuning.search import TUNERS, make_tuner, results_table, run_search

__all__ = ["SEARCH_SPACE", "TUNERS", "CRNNHyperModel", "make_tuner", "results_table", "run_search"]
