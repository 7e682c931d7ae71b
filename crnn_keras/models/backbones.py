"""Convolutional backbones: an AlexNet-style stack, a small VGG-style stack, or
any `keras.applications` model. Each maps raw 0-255 pixels to a feature map."""

from __future__ import annotations

import inspect
from typing import Any

import keras

from crnn_keras.layers import BatchNormalization, PixelScaling

# keras.applications name -> the pixel scaling it expects (`"none"`: built in).
APPLICATIONS: dict[str, str] = {
    "ResNet50": "caffe",
    "ResNet101": "caffe",
    "ResNet50V2": "tf",
    "MobileNetV2": "tf",
    "MobileNetV3Small": "none",
    "MobileNetV3Large": "none",
    "EfficientNetB0": "none",
    "EfficientNetV2B0": "none",
    "EfficientNetV2S": "none",
    "DenseNet121": "torch",
    "ConvNeXtTiny": "none",
    "VGG16": "caffe",
}
BACKBONE_TYPES = ("conv", "alexnet", "application")


def _conv_bn_relu(x, filters, kernel_size, name, strides=1, padding="same", sync_batch_norm=False):
    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, use_bias=False, name=f"{name}_conv"
    )(x)
    # synchronized: statistics over the global batch of all replicas. Fused on TensorFlow.
    x = BatchNormalization(synchronized=sync_batch_norm, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def conv_block(x, filters: int, name: str, sync_batch_norm: bool = False):
    """One 3x3 conv + BN + ReLU; also the baseline's parameter-matching block."""
    return _conv_bn_relu(x, filters, 3, name, sync_batch_norm=sync_batch_norm)


def _conv_backbone(x, filters=(32, 64), convs_per_stage=2, pool="max", final_pool=True, sync_batch_norm=False):
    """VGG-style stages: `convs_per_stage` 3x3 convs (one int, or one per
    stage), then 2x2 pooling; `final_pool=False` leaves the last stage
    unpooled, for sweeps at a finer map.

    `sync_batch_norm=True` makes batch norm use the global batch under a
    distribution strategy, so that N replicas train the same model as one.
    """
    if not isinstance(filters, (list, tuple)) or not filters or not all(
            isinstance(f, int) and not isinstance(f, bool) and f >= 1 for f in filters):
        raise ValueError(f"`filters` must be a list of positive ints (one per stage), e.g. [32, 64], "
                         f"got {filters!r}.")
    filters = list(filters)
    per_stage = [convs_per_stage] * len(filters) if isinstance(convs_per_stage, int) else list(convs_per_stage)
    if len(per_stage) != len(filters) or not all(isinstance(n, int) and n >= 1 for n in per_stage):
        raise ValueError(f"`convs_per_stage` must be an int >= 1 or one per stage ({len(filters)} for "
                         f"filters={filters}), got {convs_per_stage!r}.")
    if pool not in ("max", "avg"):
        raise ValueError(f"Unknown pool={pool!r}. Expected 'max' or 'avg'.")
    x = PixelScaling("unit", name="pixel_scaling")(x)
    for stage, (stage_filters, convs) in enumerate(zip(filters, per_stage), start=1):
        for i in range(1, convs + 1):
            x = conv_block(x, stage_filters, name=f"stage{stage}_{i}", sync_batch_norm=sync_batch_norm)
        if final_pool or stage < len(filters):
            pool_layer = keras.layers.MaxPooling2D if pool == "max" else keras.layers.AveragePooling2D
            x = pool_layer(2, name=f"stage{stage}_pool")(x)
    return x


def _alexnet_backbone(x):
    """AlexNet's five convs (Krizhevsky et al. 2012), ending at conv5 (no pool5)."""
    x = PixelScaling("unit", name="pixel_scaling")(x)
    x = _conv_bn_relu(x, 96, 11, "conv1", strides=4, padding="valid")
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = _conv_bn_relu(x, 256, 5, "conv2")
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = _conv_bn_relu(x, 384, 3, "conv3")
    x = _conv_bn_relu(x, 384, 3, "conv4")
    return _conv_bn_relu(x, 256, 3, "conv5")


def _application_backbone(x, name: str, weights: str | None = None, **kwargs):
    if name not in APPLICATIONS:
        raise ValueError(
            f"Unknown keras.applications backbone {name!r}. Supported: "
            f"{', '.join(sorted(APPLICATIONS))}."
        )
    constructor = getattr(keras.applications, name)
    extra = {"include_preprocessing": True} if APPLICATIONS[name] == "none" and (
        name.startswith(("MobileNetV3", "EfficientNetV2"))
    ) else {}
    net = constructor(
        include_top=False, weights=weights, input_shape=tuple(x.shape[1:]), **extra, **kwargs
    )
    x = PixelScaling(APPLICATIONS[name], name="pixel_scaling")(x)
    return net(x)


def apply_backbone(x, spec: dict[str, Any]):
    """Applies the backbone described by `spec` to the input tensor `x`."""
    spec = dict(spec)
    kind = spec.pop("type", "conv")
    if kind == "conv":
        unknown = sorted(set(spec) - set(inspect.signature(_conv_backbone).parameters) - {"x"})
        if unknown:
            raise ValueError(f"Unknown conv backbone options {unknown}. Expected some of filters, convs_per_stage, "
                             "pool, final_pool, sync_batch_norm.")
        return _conv_backbone(x, **spec)
    if kind == "alexnet":
        if spec:
            raise ValueError(f"The alexnet backbone takes no options, got {sorted(spec)}.")
        return _alexnet_backbone(x)
    if kind == "application":
        return _application_backbone(x, **spec)
    raise ValueError(f"Unknown backbone type {kind!r}. Expected one of {BACKBONE_TYPES}.")
