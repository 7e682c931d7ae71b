"""`build_crnn` and `build_cnn_baseline`: assembly of backbone, sweeps and head."""

from __future__ import annotations

import math
from typing import Any

import keras

from crnn_keras.layers import SpatialSweep2D
from crnn_keras.models.backbones import APPLICATIONS, apply_backbone, conv_block
from crnn_keras.models.presets import get_preset

DEFAULT_PRESET = "crnn_small"
POOLINGS = ("avg", "max", "flatten")


def _merge(base: dict | None, override: Any, what: str) -> dict:
    if override is None:
        return dict(base or {})
    if not isinstance(override, dict):
        raise ValueError(f"`{what}` must be a dict of options, got {override!r}.")
    return {**(base or {}), **override}


def _backbone_spec(base: dict, backbone: Any) -> dict:
    if backbone is None:
        return dict(base)
    if isinstance(backbone, str):
        if backbone in ("conv", "alexnet"):
            return {"type": backbone}
        return {"type": "application", "name": backbone}
    if isinstance(backbone, dict):
        if backbone.get("type", base.get("type")) != base.get("type"):
            return dict(backbone)
        return {**base, **backbone}
    raise ValueError(
        f"`backbone` must be 'conv', 'alexnet', a keras.applications name "
        f"({', '.join(sorted(APPLICATIONS))}) or a dict, got {backbone!r}."
    )


def resolve_config(
    preset: str | None = None,
    input_shape: tuple | None = None,
    backbone: Any = None,
    sweep: dict | None = None,
    head: dict | None = None,
) -> dict[str, Any]:
    """The full model config: a preset with the caller's overrides merged in."""
    config = get_preset(preset or DEFAULT_PRESET)
    config["preset"] = preset or DEFAULT_PRESET
    if input_shape is not None:
        config["input_shape"] = tuple(input_shape)
    shape = tuple(config["input_shape"])
    if len(shape) != 3 or shape[-1] is None:
        raise ValueError(
            f"`input_shape` must be (height, width, channels) with known channels, got {shape}."
        )
    config["input_shape"] = shape
    config["backbone"] = _backbone_spec(config["backbone"], backbone)
    config["sweep"] = _merge(config["sweep"], sweep, "sweep")
    config["head"] = _merge(config["head"], head, "head")
    return config


def _check_num_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an integer >= 2, got {num_classes!r}.")
    return num_classes


def _apply_sweeps(x, sweep: dict):
    sweep = dict(sweep)
    blocks = sweep.pop("blocks", 1)
    if not isinstance(blocks, int) or blocks < 1:
        raise ValueError(f"sweep `blocks` must be a positive integer, got {blocks!r}.")
    for i in range(1, blocks + 1):
        x = SpatialSweep2D(name=f"spatial_sweep_{i}", **sweep)(x)
    return x


def _apply_head(x, num_classes: int, head: dict):
    head = dict(head)
    pool_size = head.pop("pool_size", None)
    pool_strides = head.pop("pool_strides", None)
    pooling = head.pop("pooling", "avg")
    hidden_units = head.pop("hidden_units", [])
    dropout = head.pop("dropout", 0.0)
    if head:
        raise ValueError(
            f"Unknown head options {sorted(head)}. Expected pool_size, pool_strides, "
            "pooling, hidden_units, dropout."
        )
    if pool_size:
        x = keras.layers.MaxPooling2D(pool_size, strides=pool_strides, name="pool5")(x)
    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    elif pooling == "flatten":
        if None in x.shape[1:]:
            raise ValueError(
                "pooling='flatten' needs a fixed input size; pass input_shape with "
                f"height and width, or use pooling='avg'. Feature map shape: {x.shape}."
            )
        x = keras.layers.Flatten(name="flatten")(x)
    else:
        raise ValueError(f"Unknown pooling {pooling!r}. Expected one of {POOLINGS}.")
    for i, units in enumerate(hidden_units, start=1):
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"fc{i}_dropout")(x)
        x = keras.layers.Dense(units, activation="relu", name=f"fc{i}")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="classifier_dropout")(x)
    x = keras.layers.Dense(num_classes, name="logits")(x)
    # Probabilities in float32, also under mixed precision.
    return keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)


def build_crnn(
    num_classes: int,
    input_shape: tuple | None = None,
    preset: str | None = None,
    backbone: Any = None,
    sweep: dict | None = None,
    head: dict | None = None,
    name: str = "crnn",
) -> keras.Model:
    """Builds a C-RNN: conv backbone, `SpatialSweep2D` over its map, classifier.

    Args:
        num_classes: number of classes (>= 2).
        input_shape: `(height, width, channels)`; height and width may be
            `None`. Defaults to the preset's.
        preset: a name from `crnn_keras.models.list_presets()`; defaults to
            `"crnn_small"`.
        backbone: `"conv"`, `"alexnet"`, a `keras.applications` name such as
            `"ResNet50"`, or a dict of options merged into the preset's.
        sweep: `SpatialSweep2D` arguments plus `blocks` (stacked sweeps),
            merged into the preset's.
        head: `pooling` (`"avg"`, `"max"`, `"flatten"`), `hidden_units`,
            `dropout`, `pool_size`, `pool_strides`, merged into the preset's.
        name: model name.

    Returns:
        A functional `keras.Model` from raw 0-255 pixels to class
        probabilities.

    Example:

    >>> model = build_crnn(10, input_shape=(32, 32, 3), preset="crnn_tiny")
    >>> model.output_shape
    (None, 10)
    """
    num_classes = _check_num_classes(num_classes)
    config = resolve_config(preset, input_shape, backbone, sweep, head)
    inputs = keras.Input(config["input_shape"], name="image")
    x = apply_backbone(inputs, config["backbone"])
    x = _apply_sweeps(x, config["sweep"])
    outputs = _apply_head(x, num_classes, config["head"])
    return keras.Model(inputs, outputs, name=name)


def build_cnn_baseline(
    num_classes: int,
    input_shape: tuple | None = None,
    preset: str | None = None,
    backbone: Any = None,
    head: dict | None = None,
    match_params: int | keras.Model | None = None,
    name: str = "cnn_baseline",
) -> keras.Model:
    """The C-RNN's backbone and head with no sweep, for ablations.

    Args:
        num_classes, input_shape, preset, backbone, head: as in `build_crnn`.
        match_params: a parameter count, or a model whose count to match. A
            3x3 conv block is added after the backbone with as many filters
            as brings the parameter count closest to it.
        name: model name.

    Example:

    >>> crnn = build_crnn(10, input_shape=(32, 32, 3), preset="crnn_tiny")
    >>> cnn = build_cnn_baseline(10, (32, 32, 3), "crnn_tiny", match_params=crnn)
    >>> abs(cnn.count_params() - crnn.count_params()) / crnn.count_params() < 0.02
    True
    """
    num_classes = _check_num_classes(num_classes)
    config = resolve_config(preset, input_shape, backbone, None, head)
    inputs = keras.Input(config["input_shape"], name="image")
    features = apply_backbone(inputs, config["backbone"])
    if match_params is not None:
        target = match_params.count_params() if isinstance(match_params, keras.Model) else match_params
        if not isinstance(target, int) or target <= 0:
            raise ValueError(f"`match_params` must be a positive int or a model, got {match_params!r}.")

        sync = bool(config["backbone"].get("sync_batch_norm", False))

        def count(filters: int) -> int:
            block = conv_block(features, filters, name="match_block", sync_batch_norm=sync)
            return keras.Model(inputs, _apply_head(block, num_classes, config["head"])).count_params()

        # The count is linear in the block's filters: conv, BN and the head's fan-in.
        base = count(1)
        per_filter = count(2) - base
        filters = math.floor((target - base) / per_filter + 1.5)
        if filters < 1:
            raise ValueError(
                f"The baseline with a 1-filter block already has {base} parameters, more "
                f"than match_params={target}; no conv block can match it."
            )
        features = conv_block(features, filters, name="match_block", sync_batch_norm=sync)
    outputs = _apply_head(features, num_classes, config["head"])
    return keras.Model(inputs, outputs, name=name)
