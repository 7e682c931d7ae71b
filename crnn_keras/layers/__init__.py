"""Keras layers: recurrent sweeps over 2D feature maps, pixel scaling, fused batch norm."""

from crnn_keras.layers.normalization import BatchNormalization
from crnn_keras.layers.preprocessing import PixelScaling
from crnn_keras.layers.sweep import CELL_NAMES, ColumnSweep, RowSweep, SpatialSweep2D, SweepBlock2D

__all__ = [
    "BatchNormalization", "CELL_NAMES", "ColumnSweep", "PixelScaling", "RowSweep", "SpatialSweep2D", "SweepBlock2D",
]
