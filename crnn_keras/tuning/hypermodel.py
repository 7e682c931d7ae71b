"""`CRNNHyperModel`: a Keras Tuner search space over the C-RNN design.

`build(hp)` turns the hyperparameters into a `TrainConfig` and builds and
compiles through `crnn_keras.training` (which calls `crnn_keras.models`), so
there is one copy of the model code, and the best trial's config trains again
with `crnn-keras train --config best.yaml`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import keras_tuner

from crnn_keras.data import DatasetInfo
from crnn_keras.training.config import TrainConfig

# name -> default search space: a list is a choice, (low, high[, step]) a range,
# and a dict holds `keras_tuner` Float/Int arguments.
SEARCH_SPACE: dict[str, Any] = {
    "cell": ["lstm", "gru"],
    "units": (16, 128, 16),
    "order": ["rows_then_columns", "columns_then_rows", "parallel"],
    "blocks": (1, 2, 1),
    "merge_mode": ["concat", "sum"],
    "backbone_width": [16, 32, 64],
    "convs_per_stage": (1, 3, 1),
    "dropout": (0.0, 0.5, 0.1),
    "learning_rate": {"min_value": 1e-4, "max_value": 1e-2, "sampling": "log"},
    "optimizer": ["adamw", "sgd"],
}


class CRNNHyperModel(keras_tuner.HyperModel):
    """Searches cell, units, sweep order, stacked blocks, merge mode, backbone
    width and depth, dropout, learning rate and optimizer.

    Args:
        num_classes: number of classes.
        input_shape: `(height, width, channels)`.
        base_config: a `TrainConfig` (or dict) for everything not searched.
        fixed: `{name: value}` pins a hyperparameter.
        ranges: `{name: space}` narrows one (a list, `(low, high[, step])`,
            or a dict of `keras_tuner` arguments).

    Example:

    >>> hm = CRNNHyperModel(2, (16, 16, 3), fixed={"cell": "gru"}, ranges={"units": (8, 16, 8)})
    >>> model = hm.build(keras_tuner.HyperParameters())
    >>> model.output_shape
    (None, 2)
    """

    def __init__(self, num_classes: int, input_shape: tuple, base_config: TrainConfig | dict | None = None,
                 fixed: dict[str, Any] | None = None, ranges: dict[str, Any] | None = None,
                 name: str = "crnn", tunable: bool = True):
        super().__init__(name=name, tunable=tunable)
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        if isinstance(base_config, dict):
            base_config = TrainConfig.from_dict(base_config)
        self.base_config = base_config or TrainConfig()
        self.fixed = dict(fixed or {})
        self.ranges = dict(ranges or {})
        unknown = sorted((set(self.fixed) | set(self.ranges)) - set(SEARCH_SPACE))
        if unknown:
            raise ValueError(f"Unknown hyperparameters {unknown}. Searchable: {sorted(SEARCH_SPACE)}.")

    def _value(self, hp: keras_tuner.HyperParameters, name: str):
        if name in self.fixed:
            return hp.Fixed(name, self.fixed[name])
        space = self.ranges.get(name, SEARCH_SPACE[name])
        if isinstance(space, list):
            return hp.Choice(name, space)
        if isinstance(space, dict):
            return hp.Float(name, **space)
        low, high, *step = space
        if all(isinstance(v, int) for v in (low, high, *step)):
            return hp.Int(name, low, high, step=step[0] if step else 1)
        return hp.Float(name, low, high, step=step[0] if step else None)

    def config_for(self, hp: keras_tuner.HyperParameters) -> TrainConfig:
        """The training config of a trial: `base_config` with the trial's values."""
        v = {name: self._value(hp, name) for name in SEARCH_SPACE}
        width = v["backbone_width"]
        return dataclasses.replace(
            self.base_config,
            backbone={"type": "conv", "filters": [width, 2 * width], "convs_per_stage": v["convs_per_stage"]},
            sweep={"cell": v["cell"], "units": v["units"], "order": v["order"],
                   "blocks": v["blocks"], "merge_mode": v["merge_mode"]},
            head={**self.base_config.head, "dropout": v["dropout"]},
            learning_rate=v["learning_rate"],
            optimizer=v["optimizer"],
            schedule="constant",
        ).validate()

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        from crnn_keras.training.task import build_model, compile_model

        config = self.config_for(hp)
        info = DatasetInfo(name="", num_classes=self.num_classes,
                           class_names=[str(i) for i in range(self.num_classes)],
                           image_shape=self.input_shape, splits={})
        model = build_model(config, info)
        compile_model(model, config, steps_per_epoch=1, num_classes=self.num_classes)
        return model
