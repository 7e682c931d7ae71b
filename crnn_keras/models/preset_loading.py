"""`from_preset` and `save_to_preset` behind both model classes.

Names in `PRESETS` build an architecture (random weights). Trained preset
names, local preset folders and `kaggle://` / `hf://` handles go through
keras-hub's preset loader, after checks that name a missing or corrupt file.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import uuid
import warnings
from typing import Any, Iterator

import keras
from keras_hub.models import Backbone, ImageClassifier

from crnn_keras.atomic import pid_alive
from crnn_keras.models.presets import (
    HEAD_KEYS,
    METADATA_FILE,
    PRESETS,
    resolve_preset,
    trained_presets,
    unknown_preset_error,
)

CONFIG_FILE = "config.json"
TASK_FILE = "task.json"
WEIGHTS_FILE = "model.weights.h5"
TASK_WEIGHTS_FILE = "task.weights.h5"
# What a trained preset still accepts: the rest would not fit its weights.
_TRAINED_OPTIONS = ("num_classes", "dropout", "activation", "dtype", "image_shape", "name",
                    "compile", "preprocessor", "head_dtype", "trainable")
SHARDED_WEIGHTS_FILE = "model.weights.json"
# What `save_to_preset` writes (shards are `model_*.weights.h5`): a folder of
# these alone is a preset that a new save may replace.
_PRESET_FILES = (CONFIG_FILE, TASK_FILE, METADATA_FILE, SHARDED_WEIGHTS_FILE)


_STAGING: set[str] = set()


@contextlib.contextmanager
def atomic_preset_dir(preset_dir: str) -> Iterator[str]:
    """Yields a staging folder; on success it replaces `preset_dir` whole.

    Inside another save (a task saving its backbone) it yields that save's
    staging folder itself.
    """
    preset_dir = os.path.abspath(preset_dir)
    if preset_dir in _STAGING:
        yield preset_dir
        return
    if os.path.exists(preset_dir) and not os.path.isdir(preset_dir):
        raise ValueError(f"Preset folder {preset_dir!r} is a file; pass a folder path.")
    check_replaceable(preset_dir)
    parent = os.path.dirname(preset_dir)
    os.makedirs(parent, exist_ok=True)
    _clean_leftovers(preset_dir)
    # Names carry the process id, so a later save can tell a killed save's
    # leftovers from a concurrent save's work.
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging = f"{preset_dir}.tmp-{tag}"
    _STAGING.add(staging)
    try:
        yield staging
        old = f"{preset_dir}.old-{tag}"
        check_replaceable(preset_dir)  # Again: files may have come in during the save.
        if os.path.exists(preset_dir):
            os.rename(preset_dir, old)
        os.rename(staging, preset_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        _STAGING.discard(staging)
        shutil.rmtree(staging, ignore_errors=True)


def check_replaceable(preset_dir: str) -> None:
    """Refuses a `preset_dir` that holds anything but an earlier preset.

    A save replaces the folder whole, so a run directory or any other folder
    of work given as `preset_dir` would be deleted. A folder named like a
    built-in preset is refused too (but a trained preset's own folder): in the
    working directory it would make that name ambiguous (see `_check_unambiguous`).
    """
    name = os.path.basename(os.path.normpath(preset_dir))
    builtin = trained_presets().get(name)
    if name in PRESETS or (builtin and os.path.abspath(builtin) != os.path.abspath(preset_dir)):
        raise ValueError(
            f"Preset folder {preset_dir!r} is named like the built-in preset {name!r}: in the working "
            f"directory it would make `--preset {name}` ambiguous, and every later run there would be refused. "
            f"Choose another name, e.g. '{name}_mine'.")
    if not os.path.isdir(preset_dir):
        return
    names = os.listdir(preset_dir)
    others = sorted(n for n in names if not _is_preset_file(preset_dir, n))
    if others or (names and CONFIG_FILE not in names):
        shown = ", ".join(others[:5] or names[:5]) + (", ..." if len(others or names) > 5 else "")
        raise ValueError(
            f"Preset folder {preset_dir!r} is not empty and not a preset (it holds {shown}); "
            "saving replaces the folder whole and would delete them. Choose an empty or new folder."
        )


def _is_preset_file(folder: str, name: str) -> bool:
    if not os.path.isfile(os.path.join(folder, name)) or os.path.islink(os.path.join(folder, name)):
        return False
    return name in _PRESET_FILES or name.endswith(".weights.h5")


def _clean_leftovers(preset_dir: str) -> None:
    """Restores or removes what a killed save left beside `preset_dir`."""
    for path in sorted(glob.glob(glob.escape(preset_dir) + ".old-*")) + sorted(
            glob.glob(glob.escape(preset_dir) + ".tmp-*")):
        pid = path.rsplit(".", 1)[1].split("-")[1]
        if pid.isdigit() and pid_alive(int(pid)):
            continue
        if ".old-" in os.path.basename(path) and not os.path.exists(preset_dir):
            os.rename(path, preset_dir)  # Killed between moving the old preset aside and the new in.
            warnings.warn(f"Restored {preset_dir!r} from an interrupted save_to_preset.", stacklevel=4)
            continue
        warnings.warn(f"Removing {path!r}, left by an interrupted save_to_preset.", stacklevel=4)
        shutil.rmtree(path, ignore_errors=True)


def _is_handle(preset: str) -> bool:
    return "://" in preset


def _check_unambiguous(preset: Any) -> None:
    """Refuses a name that is both a built-in preset and a folder in the working directory."""
    if not isinstance(preset, str) or not os.path.isdir(preset):
        return
    builtin = trained_presets().get(preset)
    if preset in PRESETS or (builtin and not os.path.samefile(preset, builtin)):
        raise ValueError(
            f"{preset!r} is both a built-in preset and a folder in {os.getcwd()!r}. Pass "
            f"{'./' + preset!r} (or a full path) to load the folder, or rename the folder to "
            "load the built-in preset."
        )


def resolve_location(preset: Any) -> str:
    """A trained preset's folder, a checked local folder, or a remote handle."""
    if not isinstance(preset, str):
        raise unknown_preset_error(preset)
    if preset in trained_presets():
        preset = trained_presets()[preset]
    elif _is_handle(preset):
        return preset  # keras-hub downloads and checks it.
    elif not os.path.isdir(preset):
        raise unknown_preset_error(preset)
    backbone = _check_json(preset, CONFIG_FILE, required=True)
    task = _check_json(preset, TASK_FILE, required=False)
    _check_same_backbone(preset, backbone, task)
    return preset


def _check_same_backbone(folder: str, backbone: dict, task: dict | None) -> None:
    """Refuses a preset whose `task.json` describes another backbone than its `config.json`
    (the classifier would build one, `CRNNBackbone.from_preset` the other)."""
    inner = (task or {}).get("config", {}).get("backbone")
    if not isinstance(inner, dict):
        return
    ours, theirs = backbone.get("config", {}), inner.get("config", {})
    keys = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    if keys or backbone.get("registered_name") != inner.get("registered_name"):
        shown = ", ".join(f"{k}: {ours.get(k)!r} in {CONFIG_FILE}, {theirs.get(k)!r} in {TASK_FILE}"
                          for k in keys[:3]) or "the backbone class"
        raise ValueError(f"Preset folder {folder!r} is inconsistent: {CONFIG_FILE} and {TASK_FILE} describe "
                         f"different backbones ({shown}). Save the preset again with save_to_preset.")


def _check_json(folder: str, name: str, required: bool) -> dict | None:
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        if required:
            raise ValueError(f"Preset folder {folder!r} has no {name}; it is not a preset "
                             "written by `save_to_preset`.")
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"Preset file {path!r} is corrupt: {err}. Save the preset again.") from err
    if not isinstance(data, dict) or "config" not in data or "registered_name" not in data:
        raise ValueError(f"Preset file {path!r} is corrupt: not a serialized Keras object.")
    return data


def _check_weights_file(folder: str, name: str) -> None:
    if _is_handle(folder):
        return
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        raise ValueError(f"Preset folder {folder!r} has no {name}; pass load_weights=False "
                         "for random weights, or save the preset again.")


def load_weights_checked(model: keras.Model, path: str) -> None:
    """`model.load_weights(path)`, with errors that name the file and the layer."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            stored = _h5_shapes(f)
    except OSError as err:
        raise ValueError(f"Weights file {path!r} is corrupt or not an HDF5 file: {err}.") from err
    expected = _model_shapes(model)
    for key, shape in expected.items():
        if key in stored and stored[key] != shape:
            raise ValueError(
                f"Weights file {path!r} does not fit the model: layer {key.rsplit('/vars', 1)[0]!r} "
                f"variable {key.rsplit('/', 1)[-1]} has shape {stored[key]} in the file and "
                f"{shape} in the model."
            )
    missing = sorted(set(expected) - set(stored))
    if missing:
        raise ValueError(
            f"Weights file {path!r} does not fit the model: it has no weights for layer "
            f"{missing[0].rsplit('/vars', 1)[0]!r}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
            + "."
        )
    extra = sorted({key.rsplit("/vars", 1)[0] for key in set(stored) - set(expected)})
    if extra:  # Keras would skip them without a word: the file is a larger model's.
        raise ValueError(
            f"Weights file {path!r} does not fit the model: it has weights for layers the model "
            f"lacks: {', '.join(map(repr, extra[:3]))}" + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
            + ". It was saved from a different architecture; save the preset again."
        )
    try:
        model.load_weights(path)
    except Exception as err:  # Keras's own message, with the file named.
        raise ValueError(f"Weights file {path!r} does not fit the model: {err}") from err


def _h5_shapes(f) -> dict[str, tuple]:
    import h5py

    shapes = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and "/vars/" in f"/{name}":
            shapes[name] = tuple(obj.shape)

    f.visititems(visit)
    return shapes


def _model_shapes(model: keras.Model) -> dict[str, tuple]:
    """Variable paths as Keras's `.weights.h5` writer names them."""
    import h5py
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        probe = os.path.join(tmp, "probe.weights.h5")
        model.save_weights(probe)
        with h5py.File(probe, "r") as f:
            return _h5_shapes(f)


def _default_dtype(location: str) -> str | None:
    """The dtype policy to load a preset with when none is passed.

    keras-hub loads a float preset under the global policy but fails on a
    saved mixed policy ("Invalid dtype: mixed_float16"): such a preset loads
    with its saved policy, or under a global policy set other than float32.
    """
    folder = location if not _is_handle(location) else os.path.dirname(_local(location, CONFIG_FILE))
    dtype = _check_json(folder, CONFIG_FILE, required=True)["config"].get("dtype")
    name = dtype.get("config", {}).get("name") if isinstance(dtype, dict) else dtype
    if not isinstance(name, str) or not name.startswith("mixed_"):
        return None  # keras-hub's own rule.
    current = keras.config.dtype_policy().name
    return name if current == "float32" else current


def _split_architecture(kwargs: dict) -> tuple[dict, dict]:
    arch = {k: kwargs.pop(k) for k in ("image_shape", "cnn", "sweep") if k in kwargs}
    return arch, kwargs


def load_backbone(cls, preset: Any, load_weights: bool, **kwargs) -> Backbone:
    _check_unambiguous(preset)
    if isinstance(preset, str) and preset in PRESETS:
        arch, rest = _split_architecture(dict(kwargs))
        config = resolve_preset(preset, **arch)
        return cls(image_shape=config["image_shape"], cnn=config["cnn"], sweep=config["sweep"], **rest)
    location = resolve_location(preset)
    refused = sorted(set(kwargs) - {"dtype", "image_shape", "name", "trainable"})
    if refused:
        raise ValueError(f"Options {refused} do not fit the trained weights of preset {preset!r}; "
                         "start from an architecture preset to change the architecture.")
    if kwargs.get("dtype") is None and (dtype := _default_dtype(location)):
        kwargs["dtype"] = dtype
    backbone = Backbone.from_preset.__func__(cls, location, load_weights=False, **kwargs)
    if load_weights:
        _load_backbone_weights(backbone, location)
    return backbone


def _load_backbone_weights(backbone, location: str) -> None:
    """`model.weights.h5`, or keras-hub's sharded `model.weights.json` with its shards."""
    if not _is_handle(location) and not os.path.exists(os.path.join(location, WEIGHTS_FILE)) \
            and os.path.exists(os.path.join(location, SHARDED_WEIGHTS_FILE)):
        index = _local(location, SHARDED_WEIGHTS_FILE)
        with open(index, encoding="utf-8") as f:
            shards = {v for value in json.load(f)["weight_map"].values()
                      for v in (value if isinstance(value, list) else [value])}
        for shard in sorted(shards):
            _check_weights_file(location, shard)
        backbone.load_weights(index)
        return
    _check_weights_file(location, WEIGHTS_FILE)
    load_weights_checked(backbone, _local(location, WEIGHTS_FILE))


def _local(location: str, name: str) -> str:
    from keras_hub.src.utils.preset_utils import get_file

    return get_file(location, name)


def load_classifier(cls, preset: Any, load_weights: bool, **kwargs) -> ImageClassifier:
    """See `CRNNImageClassifier.from_preset`."""
    _check_unambiguous(preset)
    num_classes = kwargs.pop("num_classes", None)
    if isinstance(preset, str) and preset in PRESETS:
        if num_classes is None:
            raise ValueError(f"Preset {preset!r} is an architecture without a trained head: "
                             "pass num_classes.")
        arch, rest = _split_architecture(kwargs)
        head = rest.pop("head", None)
        config = resolve_preset(preset, head=head, **arch)
        head = {**config["head"], **{k: rest.pop(k) for k in HEAD_KEYS if k in rest}}
        backbone = cls.backbone_cls(image_shape=config["image_shape"], cnn=config["cnn"],
                                    sweep=config["sweep"], dtype=rest.pop("dtype", None))
        return cls(backbone=backbone, num_classes=num_classes, **head, **rest)

    location = resolve_location(preset)
    refused = sorted(set(kwargs) - set(_TRAINED_OPTIONS))
    if refused:
        raise ValueError(f"Options {refused} do not fit the trained weights of preset {preset!r}; "
                         "start from an architecture preset to change the architecture.")
    task_config = _task_config(location)
    saved_classes = task_config["config"].get("num_classes") if task_config else None
    if task_config is None and num_classes is None:
        raise ValueError(f"Preset {preset!r} holds a backbone only (no {TASK_FILE}); "
                         "pass num_classes to add a new head.")
    if num_classes is not None and num_classes != saved_classes:
        trained = (f"was trained with {saved_classes} classes" if task_config
                   else "holds a trained backbone only")
        warnings.warn(
            f"Preset {preset!r} {trained}; building a new, randomly initialised classification "
            f"head for num_classes={num_classes}. The backbone keeps its trained weights; "
            "fine-tune before use.",
            stacklevel=3,
        )
        kwargs["num_classes"] = num_classes
    if kwargs.get("dtype") is None and (dtype := _default_dtype(location)):
        kwargs["dtype"] = dtype
    if kwargs.get("dtype") is not None and "head_dtype" not in kwargs:
        kwargs["head_dtype"] = kwargs["dtype"]  # keras-hub passes `dtype` to the backbone only.
    task = ImageClassifier.from_preset.__func__(cls, location, load_weights=False, **kwargs)
    if load_weights:
        _load_backbone_weights(task.backbone, location)
        if "num_classes" not in kwargs and task.has_task_weights():
            _check_weights_file(location, TASK_WEIGHTS_FILE)
            _load_task_weights_checked(task, _local(location, TASK_WEIGHTS_FILE))
    return task


def _task_config(location: str) -> dict | None:
    """The preset's `task.json`, also behind a kaggle:// or hf:// handle; None if it has none."""
    if not _is_handle(location):
        return _check_json(location, TASK_FILE, required=False)
    from keras_hub.src.utils.preset_utils import check_file_exists

    if not check_file_exists(location, TASK_FILE):
        return None
    return _check_json(os.path.dirname(_local(location, TASK_FILE)), TASK_FILE, required=True)


def _load_task_weights_checked(task, path: str) -> None:
    try:
        with warnings.catch_warnings():
            # The file may hold the optimizer state of the run that saved it.
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            task.load_task_weights(path)
    except OSError as err:
        raise ValueError(f"Weights file {path!r} is corrupt or not an HDF5 file: {err}.") from err
    except Exception as err:
        raise ValueError(f"Weights file {path!r} does not fit the classification head: {err}") from err
