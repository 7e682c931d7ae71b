"""Model presets: architectures as plain data, and trained preset folders.

An architecture preset has `image_shape`, `cnn`, `sweep` and `head` entries:
`cnn` and `sweep` are `CRNNBackbone` arguments, `head` the
`CRNNImageClassifier` head arguments. Callers' overrides merge into them key
by key (`resolve_preset`).

A trained preset is a keras-hub preset folder shipped in the package under
`crnn_keras/models/weights/<name>/` (`config.json`, `task.json`,
`model.weights.h5`, `task.weights.h5`, `metadata.json`); its metadata says
what it was trained on, its test accuracy and the command that made it.

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
import json
import os
from typing import Any

DEFAULT_PRESET = "crnn_small"
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
METADATA_FILE = "metadata.json"

PRESETS: dict[str, dict[str, Any]] = {
    "crnn_paper": {
        "description": "Zuo et al. 2015: AlexNet-style 5-conv backbone, sweeps over conv5.",
        "image_shape": (227, 227, 3),
        "cnn": {"type": "alexnet"},
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
        "image_shape": (32, 32, 3),
        "cnn": {"type": "conv", "filters": [32, 64], "convs_per_stage": 2},
        "sweep": {"units": 64, "cell": "lstm", "order": "rows_then_columns", "blocks": 1},
        "head": {"pooling": "avg", "hidden_units": [], "dropout": 0.2},
    },
    "crnn_tiny": {
        "description": "For 28-64 px grayscale or RGB images and quick demos: small and fast.",
        "image_shape": (32, 32, 3),
        "cnn": {"type": "conv", "filters": [16, 32], "convs_per_stage": 1},
        "sweep": {"units": 32, "cell": "lstm", "order": "rows_then_columns", "blocks": 1},
        "head": {"pooling": "avg", "hidden_units": [], "dropout": 0.0},
    },
    "crnn_fashion_mnist": {
        "description": (
            "For 28x28 grayscale Fashion-MNIST on a CPU: one conv per stage to a 7x7x64 map, "
            "64-unit LSTM sweeps. Sized so an epoch takes about 2 minutes on 2 cores."
        ),
        "image_shape": (28, 28, 1),
        "cnn": {"type": "conv", "filters": [32, 64], "convs_per_stage": 1},
        "sweep": {"units": 64, "cell": "lstm", "order": "rows_then_columns", "blocks": 1},
        "head": {"pooling": "avg", "hidden_units": [], "dropout": 0.3},
    },
    "crnn_fashion_mnist_wide": {
        "description": (
            "For 28x28 grayscale Fashion-MNIST: two convs per stage to a 7x7x64 map, 96-unit "
            "LSTM sweeps. About twice crnn_fashion_mnist's cost."
        ),
        "image_shape": (28, 28, 1),
        "cnn": {"type": "conv", "filters": [32, 64], "convs_per_stage": 2},
        "sweep": {"units": 96, "cell": "lstm", "order": "rows_then_columns", "blocks": 1},
        "head": {"pooling": "avg", "hidden_units": [], "dropout": 0.3},
    },
    "crnn_fashion_mnist_residual": {
        "description": (
            "For 28x28 grayscale Fashion-MNIST: crnn_fashion_mnist_wide's convs to a 7x7x64 map, "
            "then two residual parallel 66-unit LSTM sweep blocks (Sequencer2D style) that add "
            "context to the conv features instead of replacing them. The accuracy-table recipe."
        ),
        "image_shape": (28, 28, 1),
        "cnn": {"type": "conv", "filters": [32, 64], "convs_per_stage": 2},
        "sweep": {"units": 66, "cell": "lstm", "order": "parallel", "blocks": 2, "residual": True,
                  "mlp_ratio": 2},
        "head": {"pooling": "avg", "hidden_units": [], "dropout": 0.3},
    },
    "crnn_pathfinder": {
        "description": (
            "For contour integration (builtin:pathfinder) and other long-range tasks on 32 px "
            "grayscale: 3 convs to a 16x16x32 map, then two residual parallel LSTM sweep blocks "
            "(Sequencer2D style) at that fine map."
        ),
        "image_shape": (32, 32, 1),
        "cnn": {"type": "conv", "filters": [32, 32], "convs_per_stage": [2, 1], "final_pool": False},
        "sweep": {"units": 32, "cell": "lstm", "order": "parallel", "blocks": 2, "residual": True,
                  "mlp_ratio": 2},
        "head": {"pooling": "avg", "hidden_units": [], "dropout": 0.0},
    },
}
HEAD_KEYS = ("pooling", "hidden_units", "dropout", "pool_size", "pool_strides")


def trained_presets() -> dict[str, str]:
    """`{name: folder}` of the trained presets shipped in the package."""
    if not os.path.isdir(WEIGHTS_DIR):
        return {}
    return {
        name: os.path.join(WEIGHTS_DIR, name)
        for name in sorted(os.listdir(WEIGHTS_DIR))
        if os.path.exists(os.path.join(WEIGHTS_DIR, name, "config.json"))
    }


def preset_metadata(name: str) -> dict[str, Any]:
    """The `metadata.json` of trained preset `name` (dataset, accuracy, command...)."""
    folder = trained_presets().get(name)
    if folder is None:
        raise ValueError(f"{name!r} is not a trained preset. Trained presets: "
                         f"{', '.join(trained_presets()) or 'none'}.")
    with open(os.path.join(folder, METADATA_FILE), encoding="utf-8") as f:
        return json.load(f)


def list_presets() -> dict[str, dict[str, Any]]:
    """Every preset name with its description and whether it carries weights.

    Example:

    >>> presets = list_presets()
    >>> presets["crnn_small"]["weights"]
    False
    """
    out = {name: {"description": p["description"], "weights": False} for name, p in PRESETS.items()}
    for name in trained_presets():
        meta = preset_metadata(name)
        out[name] = {"description": meta.get("description", ""), "weights": True,
                     "dataset": meta.get("dataset"), "test_accuracy": meta.get("test_accuracy")}
    return dict(sorted(out.items()))


BASE_KWARGS = ("name", "trainable", "dtype")


def check_base_kwargs(cls_name: str, kwargs: dict) -> None:
    """Refuses keyword arguments that Keras's functional `Model` would drop silently."""
    unknown = sorted(set(kwargs) - set(BASE_KWARGS))
    if unknown:
        raise ValueError(f"{cls_name} got unknown arguments {unknown}; see help({cls_name}) "
                         "for the accepted ones.")


class classproperty(property):
    """A read-only property of the class (keras-hub's `Model.presets` style)."""

    def __get__(self, _, owner):
        return self.fget(owner)


def hub_presets() -> dict[str, dict[str, Any]]:
    """Presets in keras-hub's `Model.presets` form: `{name: {"metadata": ..., "kaggle_handle": ...}}`.

    The handle of a trained preset is its folder in the package; an
    architecture preset has none (it carries no files).
    """
    out = {}
    for name, entry in list_presets().items():
        folder = trained_presets().get(name)
        params = preset_metadata(name).get("parameter_count") if folder else None
        out[name] = {"metadata": {"description": entry["description"], "params": params,
                                  "path": "crnn", "weights": entry["weights"]},
                     "kaggle_handle": folder}
    return out


def unknown_preset_error(name: Any) -> ValueError:
    return ValueError(
        f"Unknown preset {name!r}. Available presets: {', '.join(list_presets())} "
        "(or a preset folder written by `save_to_preset`, or a kaggle:// or hf:// handle)."
    )


def get_preset(name: str) -> dict[str, Any]:
    """A deep copy of architecture preset `name`."""
    if name not in PRESETS:
        raise unknown_preset_error(name)
    return copy.deepcopy(PRESETS[name])


def _merge(base: dict | None, override: Any, what: str) -> dict:
    if override is None:
        return dict(base or {})
    if not isinstance(override, dict):
        raise ValueError(f"`{what}` must be a dict of options, got {override!r}.")
    return {**(base or {}), **override}


def merge_cnn(base: dict, cnn: Any) -> dict:
    """`cnn` overrides: a name (`"conv"`, `"alexnet"`, a keras.applications
    model) replaces the CNN; a dict of the same type merges into it."""
    if cnn is None:
        return dict(base)
    if isinstance(cnn, str):
        return {"type": cnn} if cnn in ("conv", "alexnet") else {"type": "application", "name": cnn}
    if isinstance(cnn, dict):
        if cnn.get("type", base.get("type")) != base.get("type"):
            return dict(cnn)
        return {**base, **cnn}
    raise ValueError(
        f"`cnn` (the `backbone` option of a training config) must be 'conv', 'alexnet', a "
        f"keras.applications name such as 'ResNet50', or a dict, got {cnn!r}."
    )


def resolve_preset(
    preset: str | None = None,
    image_shape: tuple | None = None,
    cnn: Any = None,
    sweep: dict | None = None,
    head: dict | None = None,
) -> dict[str, Any]:
    """Architecture preset `preset` with the caller's overrides merged in.

    Example:

    >>> resolve_preset("crnn_small", sweep={"cell": "gru"})["sweep"]["cell"]
    'gru'
    """
    config = get_preset(preset or DEFAULT_PRESET)
    if image_shape is not None:
        config["image_shape"] = tuple(image_shape)
    shape = tuple(config["image_shape"])
    if len(shape) != 3 or shape[-1] is None:
        raise ValueError(
            f"`image_shape` must be (height, width, channels) with known channels, got {shape}."
        )
    config["image_shape"] = shape
    config["cnn"] = merge_cnn(config["cnn"], cnn)
    config["sweep"] = _merge(config["sweep"], sweep, "sweep")
    config["head"] = _merge(config["head"], head, "head")
    unknown = sorted(set(config["head"]) - set(HEAD_KEYS))
    if unknown:
        raise ValueError(f"Unknown head options {unknown}. Expected {', '.join(HEAD_KEYS)}.")
    return config
