"""`CRNNHyperModel`: a Keras Tuner search space over the C-RNN design.

`build(hp)` turns the hyperparameters into a `TrainConfig` and builds and
compiles through `crnn_keras.training` (which calls `crnn_keras.models`), so
there is one copy of the model code, and the best trial's config trains again
with `crnn-keras train --config best.yaml`.
"""

from __future__ import annotations

import dataclasses
import json
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
CATEGORICAL = ("cell", "order", "merge_mode", "optimizer")  # Searched over a list of choices only.
INTEGER = ("units", "blocks", "backbone_width", "convs_per_stage")  # Integer ranges only.
# Where each searched value lands in a `TrainConfig`; a base config must not set it too.
SWEEP_KEYS = ("cell", "units", "order", "blocks", "merge_mode")
BACKBONE_KEYS = {"filters": "backbone_width", "convs_per_stage": "convs_per_stage"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_space(name: str, space: Any) -> None:
    """Refuses a search space `CRNNHyperModel` cannot turn into a hyperparameter."""
    shown = ":".join(map(str, space)) if isinstance(space, tuple) else \
        json.dumps(space) if isinstance(space, (list, dict)) else str(space)
    where = f"--range {name}={shown}"
    forms = (f"use a list of choices (--range '{name}=[...]')" if name in CATEGORICAL else
             f"use LOW:HIGH[:STEP] (--range {name}=8:64:8), a list of choices (--range '{name}=[8, 16]') "
             "or a dict of keras_tuner Int/Float arguments")
    if isinstance(space, list):
        if not space:
            raise ValueError(f"{where}: an empty list of choices; give at least one.")
        return
    if name in CATEGORICAL or not isinstance(space, (tuple, dict)):
        pin = "" if isinstance(space, (tuple, dict)) else f"; to pin one value use --fix {name}={shown}"
        raise ValueError(f"{where} is not a search space for {name}: {forms}{pin}.")
    if isinstance(space, dict):
        keys = {"min_value", "max_value", "step", "sampling"}
        if not {"min_value", "max_value"} <= set(space) <= keys:
            raise ValueError(f"{where}: a dict range takes min_value, max_value and optionally step and "
                             f"sampling, got {sorted(space)}.")
        bounds = [space["min_value"], space["max_value"]] + ([space["step"]] if space.get("step") is not None else [])
    else:
        if len(space) not in (2, 3):
            raise ValueError(f"{where}: a range is LOW:HIGH or LOW:HIGH:STEP; {forms}.")
        bounds = list(space)
    if not all(_is_number(v) for v in bounds):
        raise ValueError(f"{where}: range bounds must be numbers; {forms}.")
    if bounds[0] > bounds[1] or (len(bounds) == 3 and bounds[2] <= 0):
        raise ValueError(f"{where}: needs LOW <= HIGH and a STEP > 0.")
    if name in INTEGER and not all(isinstance(v, int) for v in bounds):
        raise ValueError(f"{where}: {name} takes integers, so its bounds and step must be integers.")


class CRNNHyperModel(keras_tuner.HyperModel):
    """Searches cell, units, sweep order, stacked blocks, merge mode, backbone
    width and depth, dropout, learning rate and optimizer.

    Args:
        num_classes: number of classes.
        input_shape: `(height, width, channels)`.
        base_config: a `TrainConfig` (or dict) for everything not searched.
            Its `precision`, schedule (see `steps_per_epoch`) and
            `backbone`/`sweep`/`head` options apply to every trial; it must
            leave the searched values to the search (pin one with `fixed`).
        fixed: `{name: value}` pins a hyperparameter.
        ranges: `{name: space}` narrows one (a list, `(low, high[, step])`,
            or a dict of `keras_tuner` Int/Float arguments); `units`, `blocks`,
            `backbone_width` and `convs_per_stage` are Ints with integer bounds.
        steps_per_epoch: training steps of an epoch, for the learning-rate
            schedule and warm-up of `base_config`. Without it trials train at
            a constant rate (their configs say so), and a step schedule or a
            warm-up is refused.

    Example:

    >>> hm = CRNNHyperModel(2, (16, 16, 3), fixed={"cell": "gru"}, ranges={"units": (8, 16, 8)})
    >>> model = hm.build(keras_tuner.HyperParameters())
    >>> model.output_shape
    (None, 2)
    """

    def __init__(self, num_classes: int, input_shape: tuple, base_config: TrainConfig | dict | None = None,
                 fixed: dict[str, Any] | None = None, ranges: dict[str, Any] | None = None,
                 name: str = "crnn", tunable: bool = True, steps_per_epoch: int | None = None):
        super().__init__(name=name, tunable=tunable)
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        if isinstance(base_config, dict):
            base_config = TrainConfig.from_dict(base_config)
        self.base_config = base_config or TrainConfig()
        self.fixed = dict(fixed or {})
        self.ranges = dict(ranges or {})
        self.steps_per_epoch = steps_per_epoch
        unknown = sorted((set(self.fixed) | set(self.ranges)) - set(SEARCH_SPACE))
        if unknown:
            raise ValueError(f"Unknown hyperparameters {unknown}. Searchable: {sorted(SEARCH_SPACE)}.")
        for name, space in self.ranges.items():
            check_space(name, space)
        self._check_base()

    def _check_base(self) -> None:
        """Refuses base options the trials would not follow (never drops them quietly)."""
        base, default = self.base_config, TrainConfig()

        def searched(option: str, name: str, value: Any) -> None:
            if self.fixed.get(name, object()) != value:
                raise ValueError(f"{option} sets {name}, which the search chooses; pin it with "
                                 f"--fix {name}={value} or narrow it with --range, and remove {option}.")

        for name in SWEEP_KEYS:
            if name in base.sweep:
                searched(f"--sweep {name}", name, base.sweep[name])
        if "dropout" in base.head:
            searched("--head dropout", "dropout", base.head["dropout"])
        for name in ("learning_rate", "optimizer"):
            if getattr(base, name) != getattr(default, name):
                searched(f"--{name.replace('_', '-')}", name, getattr(base, name))
        backbone = {"type": "conv"} if base.backbone == "conv" else base.backbone
        if backbone is not None and (not isinstance(backbone, dict) or backbone.get("type", "conv") != "conv"):
            raise ValueError(f"--backbone {backbone!r}: the search tunes a conv backbone (backbone_width, "
                             "convs_per_stage); remove --backbone, or give conv options as a dict.")
        for key, name in BACKBONE_KEYS.items():
            if key in (backbone or {}):
                shape = " (filters [N, 2N])" if key == "filters" else ""
                raise ValueError(f"--backbone {key} is chosen by the search; pin it with --fix {name}=N{shape} "
                                 f"and remove it from --backbone.")
        if base.momentum is not None and self.fixed.get("optimizer") != "sgd":
            raise ValueError("--momentum applies only to sgd, which the search may not choose; add "
                             "--fix optimizer=sgd or remove --momentum.")
        if (base.schedule == "step" or base.warmup_epochs) and not self.steps_per_epoch:
            raise ValueError(f"schedule={base.schedule!r} with warmup_epochs={base.warmup_epochs} needs "
                             "steps_per_epoch; pass it, or use schedule='constant' without warm-up.")

    def _value(self, hp: keras_tuner.HyperParameters, name: str):
        if name in self.fixed:
            return hp.Fixed(name, self.fixed[name])
        space = self.ranges.get(name, SEARCH_SPACE[name])
        if isinstance(space, list):
            return hp.Choice(name, space)
        # Integer hyperparameters (whose bounds `check_space` made integers) are Ints.
        if isinstance(space, dict):
            return (hp.Int if name in INTEGER else hp.Float)(name, **space)
        low, high, *step = space
        if name in INTEGER:
            return hp.Int(name, low, high, step=step[0] if step else 1)
        return hp.Float(name, low, high, step=step[0] if step else None)

    def config_for(self, hp: keras_tuner.HyperParameters) -> TrainConfig:
        """The training config of a trial: `base_config` with the trial's values
        (its own backbone, sweep and head options kept under them)."""
        v = {name: self._value(hp, name) for name in SEARCH_SPACE}
        width = v["backbone_width"]
        base = self.base_config
        backbone = base.backbone if isinstance(base.backbone, dict) else {}
        return dataclasses.replace(
            base,
            backbone={**backbone, "type": "conv", "filters": [width, 2 * width],
                      "convs_per_stage": v["convs_per_stage"]},
            sweep={**base.sweep, **{name: v[name] for name in SWEEP_KEYS}},
            head={**base.head, "dropout": v["dropout"]},
            learning_rate=v["learning_rate"],
            optimizer=v["optimizer"],
            schedule=base.schedule if self.steps_per_epoch else "constant",
        ).validate()

    def check_values(self) -> None:
        """Builds the model with the pinned values, then with each listed choice and each
        range's ends, so that a bad one (`cell='tcn'`, `units=0`) fails before the search,
        not in every trial."""
        candidates = [(None, None)]
        for name, space in self.ranges.items():
            if isinstance(space, dict):
                candidates += [(name, space["min_value"]), (name, space["max_value"])]
            else:
                candidates += [(name, value) for value in (space if isinstance(space, list) else space[:2])]
        for name, value in candidates:
            fixed = dict(self.fixed) if name is None else {**self.fixed, name: value}
            ranges = {k: v for k, v in self.ranges.items() if k != name}
            probe = CRNNHyperModel(self.num_classes, self.input_shape, self.base_config, fixed=fixed,
                                   ranges=ranges, steps_per_epoch=self.steps_per_epoch)
            try:
                probe.build(keras_tuner.HyperParameters())
            except ValueError as err:
                what = (f"--range {name}: the value {value!r}" if name else
                        "the pinned values " + ", ".join(f"--fix {k}={v!r}" for k, v in self.fixed.items()))
                raise ValueError(f"{what} do{'es' if name else ''} not build a model: {err}") from err

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        from crnn_keras.training.task import build_model, compile_model, dtype_policy

        config = self.config_for(hp)
        info = DatasetInfo(name="", num_classes=self.num_classes,
                           class_names=[str(i) for i in range(self.num_classes)],
                           image_shape=self.input_shape, splits={})
        with dtype_policy(config.precision):  # Layers keep the policy they were built under.
            model = build_model(config, info)
            compile_model(model, config, steps_per_epoch=self.steps_per_epoch or 1,
                          num_classes=self.num_classes)
        return model
