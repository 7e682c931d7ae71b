"""Models: `CRNNBackbone`, `CRNNImageClassifier`, the CNN baseline, presets."""

from crnn_keras.models.backbones import APPLICATIONS
from crnn_keras.models.crnn_backbone import CRNNBackbone
from crnn_keras.models.image_classifier import CRNNImageClassifier, cnn_baseline
from crnn_keras.models.losses import SparseCategoricalCrossentropy
from crnn_keras.models.outputs import outputs_logits, to_probabilities
from crnn_keras.models.presets import (
    DEFAULT_PRESET,
    PRESETS,
    get_preset,
    list_presets,
    preset_metadata,
    resolve_preset,
)

__all__ = [
    "APPLICATIONS",
    "CRNNBackbone",
    "CRNNImageClassifier",
    "DEFAULT_PRESET",
    "PRESETS",
    "SparseCategoricalCrossentropy",
    "cnn_baseline",
    "get_preset",
    "list_presets",
    "outputs_logits",
    "preset_metadata",
    "resolve_preset",
    "to_probabilities",
]
