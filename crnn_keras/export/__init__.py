"""Export: SavedModel for TF Serving, ONNX and LiteRT, in one versioned, atomic layout."""

from crnn_keras.export.formats import FORMATS, QUANTIZATIONS, export_model, export_run
from crnn_keras.export.litert import export_litert
from crnn_keras.export.onnx import export_onnx
from crnn_keras.export.portable import portable_clone
from crnn_keras.export.saved_model import DEFAULT_MAX_PIXELS, export_saved_model

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMATS",
    "QUANTIZATIONS",
    "export_litert",
    "export_model",
    "export_onnx",
    "export_run",
    "export_saved_model",
    "portable_clone",
]
