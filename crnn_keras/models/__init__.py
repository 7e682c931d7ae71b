"""Model assembly: presets, backbones, the C-RNN and its CNN baseline."""

from crnn_keras.models.backbones import APPLICATIONS
from crnn_keras.models.crnn import build_cnn_baseline, build_crnn, resolve_config
from crnn_keras.models.presets import PRESETS, get_preset, list_presets

__all__ = [
    "APPLICATIONS",
    "PRESETS",
    "build_cnn_baseline",
    "build_crnn",
    "get_preset",
    "list_presets",
    "resolve_config",
]
