"""Keras layers: recurrent sweeps over 2D feature maps, scan cells, pixel scaling, fused batch norm."""

from crnn_keras.layers.normalization import BatchNormalization
from crnn_keras.layers.preprocessing import PixelScaling
from crnn_keras.layers.scan import SCAN_CELLS, MinGRU, MinLSTM, ScanCell, SelectiveScan, linear_scan
from crnn_keras.layers.sweep import CELL_NAMES, ColumnSweep, RowSweep, SpatialSweep2D, SweepBlock2D

__all__ = [
    "BatchNormalization", "CELL_NAMES", "ColumnSweep", "MinGRU", "MinLSTM", "PixelScaling", "RowSweep", "SCAN_CELLS",
    "ScanCell", "SelectiveScan", "SpatialSweep2D", "SweepBlock2D", "linear_scan",
]
