"""Keras layers: recurrent sweeps over 2D feature maps, and pixel scaling."""

from crnn_keras.layers.preprocessing import PixelScaling
from crnn_keras.layers.sweep import CELL_NAMES, ColumnSweep, RowSweep, SpatialSweep2D, SweepBlock2D

__all__ = ["CELL_NAMES", "ColumnSweep", "PixelScaling", "RowSweep", "SpatialSweep2D", "SweepBlock2D"]
