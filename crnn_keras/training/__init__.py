"""Training: config, distribution strategies, callbacks, `train`, run reports."""

from crnn_keras.training.config import TrainConfig, load_config_file, make_config
from crnn_keras.training.evaluation import classification_metrics, evaluate_model
from crnn_keras.training.task import build_model, get_strategy
from crnn_keras.training.train import train

__all__ = [
    "TrainConfig",
    "build_model",
    "classification_metrics",
    "evaluate_model",
    "get_strategy",
    "load_config_file",
    "make_config",
    "train",
]
