"""Model presets: plain data read by `build_crnn` and `build_cnn_baseline`.

Each preset has `input_shape`, `backbone`, `sweep` and `head` entries; the
builders merge caller overrides into them key by key.

`crnn_paper` follows Zuo et al. (CVPR Workshops 2015): an AlexNet-style
5-conv backbone on 227x227x3 inputs, recurrent sweeps over the conv5 map, then
fully connected layers. Choices the paper leaves open, and what we chose:

- Normalisation: AlexNet's local response normalisation is replaced by batch
  normalisation after every conv (LRN is not a Keras 3 layer, and BN trains
  more reliably from scratch).
- Where the sweep reads: the conv5 map before pool5 (13x13x256 at 227 px), so
  the recurrence works at the finest conv5 resolution; pool5 follows it.
- Cell and size: bidirectional LSTM, 256 units per direction, rows then
  columns, concatenated (512 channels); the paper's plain RNN is available as
  `sweep={"cell": "simple_rnn"}`.
- Head: pool5 (3x3, stride 2) then flatten, two 4096-unit fully connected
  layers with ReLU and dropout 0.5, as in AlexNet.
"""

from __future__ import annotations

import copy
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "crnn_paper": {
        "description": "Zuo et al. 2015: AlexNet-style 5-conv backbone, sweeps over conv5.",
        "input_shape": (227, 227, 3),
        "backbone": {"type": "alexnet"},
        "sweep": {
            "units": 256,
            "cell": "lstm",
            "order": "rows_then_columns",
            "merge_mode": "concat",
            "blocks": 1,
        },
        "head": {
            "pool_size": 3,
            "pool_strides": 2,
            "pooling": "flatten",
            "hidden_units": [4096, 4096],
            "dropout": 0.5,
        },
    },
    "crnn_small": {
        "description": "For 32-64 px RGB images: 4 convs to a 1/4-size map, 64-unit LSTM sweeps.",
        "input_shape": (32, 32, 3),
        "backbone": {"type": "conv", "filters": [32, 64], "convs_per_stage": 2},
        "sweep": {"units": 64, "cell": "lstm", "order": "rows_then_columns", "blocks": 1},
        "head": {"pooling": "avg", "hidden_units": [], "dropout": 0.2},
    },
    "crnn_tiny": {
        "description": "For 28-64 px grayscale or RGB images and quick demos: small and fast.",
        "input_shape": (32, 32, 3),
        "backbone": {"type": "conv", "filters": [16, 32], "convs_per_stage": 1},
        "sweep": {"units": 32, "cell": "lstm", "order": "rows_then_columns", "blocks": 1},
        "head": {"pooling": "avg", "hidden_units": [], "dropout": 0.0},
    },
    "crnn_fashion_mnist": {
        "description": (
            "For 28x28 grayscale Fashion-MNIST on a CPU: one conv per stage to a 7x7x64 map, "
            "64-unit LSTM sweeps. Sized so an epoch takes about 2 minutes on 2 cores."
        ),
        "input_shape": (28, 28, 1),
        "backbone": {"type": "conv", "filters": [32, 64], "convs_per_stage": 1},
        "sweep": {"units": 64, "cell": "lstm", "order": "rows_then_columns", "blocks": 1},
        "head": {"pooling": "avg", "hidden_units": [], "dropout": 0.3},
    },
}


def list_presets() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> dict[str, Any]:
    """A deep copy of preset `name`."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}. Available presets: {', '.join(list_presets())}.")
    return copy.deepcopy(PRESETS[name])
