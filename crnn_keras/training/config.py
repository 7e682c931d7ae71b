"""Training configuration: a dataclass, validated before any work starts."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from typing import Any

OPTIMIZERS = ("sgd", "adamw", "adam")
SCHEDULES = ("cosine", "step", "constant")
MODELS = ("crnn", "cnn_baseline")
STRATEGIES = ("mirrored", "multi_worker", "default")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
CHOICES = {"model": MODELS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "strategy": STRATEGIES,
           "precision": PRECISIONS}
# One line per field: the CLI's `--help` and the config file's documentation.
FIELD_HELP = {
    "dataset": "dataset spec: builtin:NAME[?opts], tfds:NAME, folder:PATH or fashion_mnist[:DIR]",
    "output_dir": "run directory: checkpoints, logs, metrics, reports",
    "model": "the C-RNN, or its parameter-matched CNN baseline",
    "preset": "architecture preset the model starts from",
    "backbone": 'the CNN, as JSON, e.g. \'{"type": "conv", "filters": [32, 64]}\', or an application name',
    "sweep": 'sweep overrides as JSON, e.g. \'{"units": 32, "cell": "gru", "blocks": 2}\'',
    "head": 'head overrides as JSON, e.g. \'{"pooling": "max", "dropout": 0.3}\'',
    "match_params": "give the CNN baseline one conv block sized to match the C-RNN's parameters",
    "baseline_depth": "conv blocks of the CNN baseline's matched part (2nd on residual): a deeper control",
    "image_size": "resize images to this square size (default: the dataset's)",
    "channels": "1 or 3 image channels (default: the dataset's)",
    "epochs": "training epochs",
    "batch_size": "examples per replica per step (global batch = this x replicas)",
    "optimizer": "optimizer",
    "learning_rate": "peak learning rate, reached after the warm-up",
    "momentum": "SGD momentum (0.9 when unset); refused for adam and adamw",
    "weight_decay": "decoupled weight decay (0 for none)",
    "clipnorm": "clip each gradient to this norm (0 for no clipping)",
    "schedule": "learning-rate schedule after the warm-up",
    "warmup_epochs": "linear warm-up from 0, in epochs (may be fractional; cosine or constant schedule)",
    "step_epochs": "epochs between decays of the step schedule",
    "step_gamma": "factor of each step-schedule decay",
    "label_smoothing": "label smoothing of the cross-entropy",
    "augment": "random crops and flips (flips only where the dataset allows them)",
    "translate": "random translation, as a fraction of the size, when augmenting",
    "precision": "compute dtype policy",
    "xla": "compile the training step with XLA",
    "seed": "seed for weights, shuffling, augmentation and validation carving",
    "strategy": "distribution: all local GPUs, TF_CONFIG workers, or one device",
    "validation_split": "split for checkpoint selection (TFDS-style slices allowed)",
    "test_split": "split for the final evaluation, read once at the end",
    "verbose": "Keras progress output: 0 silent, 1 bar, 2 a line per epoch",
}


@dataclasses.dataclass
class TrainConfig:
    """Everything `train` needs. Field names are also the CLI flags and the
    keys of a YAML/JSON config file.

    `batch_size` is per replica; the global batch is it times the number of
    replicas. `learning_rate` is the peak rate, reached after `warmup_epochs`.
    """

    dataset: str = "builtin:rooks"
    output_dir: str = "runs/default"
    model: str = "crnn"
    preset: str = "crnn_tiny"
    backbone: Any = None
    sweep: dict = dataclasses.field(default_factory=dict)
    head: dict = dataclasses.field(default_factory=dict)
    match_params: bool = True
    baseline_depth: int = 1
    image_size: int | None = None
    channels: int | None = None
    epochs: int = 5
    batch_size: int = 64
    optimizer: str = "adamw"
    learning_rate: float = 3e-3
    momentum: float | None = None
    weight_decay: float = 1e-4
    clipnorm: float = 0.0
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    step_epochs: int = 30
    step_gamma: float = 0.1
    label_smoothing: float = 0.0
    augment: bool = False
    translate: float = 0.0
    precision: str = "float32"
    xla: bool = False
    seed: int = 0
    strategy: str = "mirrored"
    validation_split: str = "validation"
    test_split: str = "test"
    verbose: int = 1

    def validate(self) -> "TrainConfig":
        def fail(message: str):
            raise ValueError(f"Bad training config: {message}")

        hints = typing.get_type_hints(TrainConfig)
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not _matches(value, hints[field.name]):
                fail(f"{field.name}={value!r} should be of type {hints[field.name]}.")
            if isinstance(value, float) and not math.isfinite(value):
                fail(f"{field.name}={value} must be a finite number.")
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                fail(f"unknown {name}={getattr(self, name)!r}; expected one of {choices}.")
        for name in ("epochs", "batch_size", "step_epochs", "baseline_depth"):
            if getattr(self, name) < 1:
                fail(f"{name} must be >= 1, got {getattr(self, name)}.")
        if not self.learning_rate > 0:
            fail(f"learning_rate must be > 0, got {self.learning_rate}.")
        for name in ("weight_decay", "warmup_epochs", "momentum", "label_smoothing", "translate", "clipnorm"):
            if (getattr(self, name) or 0) < 0:
                fail(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.momentum is not None and self.optimizer != "sgd":
            fail(f"momentum={self.momentum} applies only to optimizer='sgd', not {self.optimizer!r}; "
                 "remove it or use --optimizer sgd.")
        if self.label_smoothing >= 1 or (self.momentum or 0) >= 1 or self.translate >= 0.5:
            fail("label_smoothing and momentum must be < 1, translate < 0.5.")
        if self.warmup_epochs >= self.epochs:
            fail(f"warmup_epochs={self.warmup_epochs} must be less than epochs={self.epochs}.")
        if self.warmup_epochs and self.schedule == "step":
            fail("warmup_epochs applies to schedule='cosine' or 'constant', not 'step'; remove it or "
                 "change the schedule.")
        if self.translate and not self.augment:
            fail(f"translate={self.translate} is an augmentation; add --augment or remove it.")
        if self.baseline_depth != 1 and (self.model != "cnn_baseline" or not self.match_params):
            fail(f"baseline_depth={self.baseline_depth} applies only to model='cnn_baseline' with "
                 "match_params=true; remove it or change those.")
        if self.image_size is not None and self.image_size < 8:
            fail(f"image_size must be >= 8, got {self.image_size}.")
        if self.channels not in (None, 1, 3):
            fail(f"channels must be 1 or 3, got {self.channels}.")
        if self.strategy == "multi_worker" and (self.precision != "float32" or self.xla):
            fail("strategy='multi_worker' runs a custom loop in float32 without XLA; "
                 "set precision='float32' and xla=false.")
        from crnn_keras.data.core import parse_spec, parse_split
        from crnn_keras.models import list_presets

        try:
            parse_spec(self.dataset)
        except ValueError as err:
            fail(f"dataset: {err}")
        splits = {}
        for name in ("validation_split", "test_split"):
            try:
                splits[name] = parse_split(getattr(self, name))
            except ValueError as err:
                fail(f"{name}: {err}")
        for name, (base, _, _) in splits.items():
            if base == "train":  # Training reads all of "train"; a slice of it would overlap.
                fail(f"{name}={getattr(self, name)!r} reads the training split, which training uses "
                     "whole, so the model would be selected or scored on its own training images. Use "
                     "'validation' (carved from train, disjoint, where a source has none) or 'test'.")
        (val_base, *val_slice), (test_base, *test_slice) = splits.values()
        if val_base == test_base and (not any(val_slice) or not any(test_slice)):
            fail(f"validation_split={self.validation_split!r} and test_split={self.test_split!r} overlap: "
                 "test data would choose the checkpoint. Use disjoint slices, e.g. 'test[:50%]' and "
                 "'test[50%:]', or the 'validation' split.")

        if self.preset not in list_presets():
            fail(f"unknown preset={self.preset!r}; expected one of {list_presets()}.")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"Bad training config: unknown key(s) {unknown}. Known keys: {sorted(known)}."
            )
        return cls(**data).validate()

    def save(self, path: str) -> None:
        """Writes YAML (`.yaml`/`.yml`) or JSON, atomically."""
        from crnn_keras.atomic import write_json, write_text

        if path.endswith((".yaml", ".yml")):
            import yaml

            write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))
        else:
            write_json(path, self.to_dict())


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_matches(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is not None:
        hint = origin
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def to_command(config: TrainConfig) -> str:
    """The `crnn-keras train` command line for `config` (flags for non-default fields).

    Example:

    >>> to_command(TrainConfig(dataset="fashion_mnist", epochs=8, augment=True))
    'crnn-keras train --dataset fashion_mnist --model crnn --preset crnn_tiny --epochs 8 --augment'
    """
    import shlex

    default = TrainConfig()
    parts = ["crnn-keras", "train"]
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        always = field.name in ("dataset", "preset", "model", "epochs")
        if (value == getattr(default, field.name) and not always) or field.name == "verbose":
            continue
        flag = "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + field.name.replace("_", "-"))
        elif isinstance(value, (dict, list)):
            parts += [flag, shlex.quote(json.dumps(value))]
        else:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def load_config_file(path: str) -> dict[str, Any]:
    """Reads a YAML or JSON config file into a dict."""
    if not os.path.exists(path):
        raise ValueError(f"Config file {path!r} does not exist.")
    if os.path.isdir(path):
        raise ValueError(f"Config file {path!r} is a folder; pass a YAML or JSON file.")
    import yaml

    is_yaml = path.endswith((".yaml", ".yml"))
    with open(path, encoding="utf-8") as f:
        try:
            data = (yaml.safe_load(f) or {}) if is_yaml else json.load(f)
        except (yaml.YAMLError, json.JSONDecodeError) as err:
            details = " ".join(str(err).split())  # The parser's message spans lines.
            raise ValueError(f"Config file {path!r} is not valid {'YAML' if is_yaml else 'JSON'}: {details}") from err
    if not isinstance(data, dict):
        raise ValueError(f"Config file {path!r} must hold a mapping of keys to values.")
    return data


def make_config(file: str | None = None, **overrides: Any) -> TrainConfig:
    """A validated config from an optional file, then `overrides` (None = unset)."""
    data = load_config_file(file) if file else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(data)
