"""Finding the model and class names in a run directory."""

from __future__ import annotations

import json
import os


RUN_CONFIG_FILE = "config.yaml"  # A training run's resolved config: the mark of a run directory.
SEARCH_FILE = "search.json"  # A tuning search's request: the mark of a search directory.
REPLACED = ".replaced-"  # `<run_dir>.replaced-N`: a run being replaced (see `start_run`).


def replaced_runs(run_dir: str) -> list[str]:
    """The runs that `run_dir`'s run is replacing (`<run_dir>.replaced-N`), oldest first."""
    parent, name = os.path.split(os.path.normpath(run_dir))
    if not os.path.isdir(parent or "."):
        return []
    numbers = sorted(int(e[len(name + REPLACED):]) for e in os.listdir(parent or ".")
                     if e.startswith(name + REPLACED) and e[len(name + REPLACED):].isdigit())
    return [os.path.join(parent, f"{name}{REPLACED}{n}") for n in numbers]


def find_model(path: str) -> str:
    """A `.keras` path, given one or a run directory (best, else last)."""
    if os.path.isdir(path):
        for name in ("best.keras", "last.keras"):
            candidate = os.path.join(path, name)
            if os.path.exists(candidate):
                return candidate
        raise ValueError(f"{path!r} holds no best.keras or last.keras; is it a run directory?")
    if not os.path.exists(path):
        raise ValueError(f"Model {path!r} does not exist.")
    return path


def check_run_dir(config, overwrite: bool = False) -> bool:
    """Refuses an `output_dir` that is a file, or that holds a run with another
    config (naming the keys that differ), before anything is written.

    Returns True where `overwrite` lets the new run replace such a run (the
    caller removes it once the dataset has loaded); a run with the identical
    config is resumed (False).
    """
    from crnn_keras.training.config import load_config_file

    run_dir = config.output_dir
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise ValueError(f"--output-dir {run_dir!r} is a file; pass a folder for the run.")
    if os.path.exists(os.path.join(run_dir, SEARCH_FILE)):
        raise ValueError(f"--output-dir {run_dir!r} holds a tuning search ({SEARCH_FILE}); a run there would mix "
                         "its files with the search's. Choose another --output-dir.")
    path = os.path.join(run_dir, RUN_CONFIG_FILE)
    if not os.path.exists(path):
        return False
    try:
        old = load_config_file(path)
    except ValueError as err:
        old = {"(unreadable config.yaml)": str(err)}
    details = differences(old, config.to_dict(), ignore=("verbose",))
    if not details:
        return False
    if not overwrite:
        raise ValueError(f"{run_dir!r} holds a run with another config ({details}). Pass --overwrite to "
                         "replace that run, or choose another --output-dir.")
    return True


def differences(old: dict, new: dict, ignore: tuple = ()) -> str:
    """`"key: old there, new now, ..."` for the keys whose values differ ("" if none)."""
    keys = sorted(k for k in set(old) | set(new) if k not in ignore and old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in keys)


def load_run_model(path: str):
    """`(model, path)` for a `.keras` file or a run directory.

    A run stands for its best checkpoint (`best.keras`, best on validation);
    when that is missing or unreadable (a crash while it was written by an
    older version, say), `last.keras` is loaded with a warning.
    """
    import warnings
    import zipfile

    import keras

    import crnn_keras.models  # noqa: F401  (registers the model classes)

    def load(candidate: str):
        if not zipfile.is_zipfile(candidate):  # Keras would say "File not found".
            raise ValueError(f"{candidate!r} is not a .keras archive ({os.path.getsize(candidate)} bytes): "
                             "corrupt or truncated")
        return keras.saving.load_model(candidate, safe_mode=True)

    if not os.path.isdir(path):
        model_path = find_model(path)
        try:
            return load(model_path), path
        except ValueError as err:
            raise ValueError(f"Cannot load model {path!r}: {str(err)[:300].rstrip('.')}.") from err
    candidates = [os.path.join(path, n) for n in ("best.keras", "last.keras")]
    candidates = [c for c in candidates if os.path.exists(c)]
    if not candidates:
        find_model(path)  # Raises with the usual message.
    problems = []
    for candidate in candidates:
        try:
            model = load(candidate)
        except Exception as err:  # A truncated or empty file: try the next checkpoint.
            problems.append(f"{os.path.basename(candidate)}: {type(err).__name__}: {str(err)[:200]}")
            continue
        if problems:
            warnings.warn(f"Could not load {problems[0]}; using {candidate} instead.", stacklevel=2)
        return model, candidate
    raise ValueError(f"No checkpoint in {path!r} could be loaded ({'; '.join(problems)}). Train it again "
                     "into another --output-dir.")


def class_names_near(model_path: str, num_classes: int) -> list[str]:
    """Class names from the run's `dataset_info.json`, else `"0"`, `"1"`, ..."""
    info_path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "dataset_info.json")
    if os.path.exists(info_path):
        with open(info_path, encoding="utf-8") as f:
            names = json.load(f).get("class_names", [])
        if len(names) == num_classes:
            return list(names)
    return [str(i) for i in range(num_classes)]


def save_run_as_preset(run_dir: str, preset_dir: str, description: str = "",
                       verbose: int = 0) -> dict:
    """Writes a run's model (best, else last) as a keras-hub preset folder.

    The model is first scored on the run's full test split; `metadata.json`
    records the dataset, that accuracy, the parameter count, the class names,
    and the two commands that reproduce the folder. Returns the metadata.
    """
    from crnn_keras.data import load_dataset
    from crnn_keras.models import CRNNImageClassifier
    from crnn_keras.training.config import TrainConfig, load_config_file, to_command
    from crnn_keras.training.evaluation import evaluate_model

    config_path = os.path.join(run_dir, "config.yaml")
    if not os.path.isdir(run_dir) or not os.path.exists(config_path):
        raise ValueError(f"{run_dir!r} is not a run directory (no config.yaml).")
    config = TrainConfig.from_dict(load_config_file(config_path))
    from crnn_keras.models.preset_loading import check_replaceable

    check_replaceable(os.path.abspath(preset_dir))  # Before the scoring, not after it.
    model, model_path = load_run_model(run_dir)
    if not isinstance(model, CRNNImageClassifier):
        raise ValueError(f"{model_path!r} holds a {type(model).__name__}, not a CRNNImageClassifier; "
                         "train it again with this version of crnn-keras.")
    test, info = load_dataset(config.dataset, config.test_split, image_size=config.image_size,
                              channels=config.channels, batch_size=256, shuffle=False,
                              seed=config.seed)  # The run's seeded splits, not seed 0's.
    metrics = evaluate_model(model, test, info.class_names, verbose=verbose)
    metadata = {
        "description": description or f"{config.preset} trained on {config.dataset}.",
        "dataset": config.dataset,
        "test_split": config.test_split,
        "test_accuracy": round(metrics["accuracy"], 4),
        "test_examples": metrics["num_examples"],
        "checkpoint": os.path.basename(model_path),
        "class_names": info.class_names,
        "commands": [to_command(config),
                     f"crnn-keras save-preset {run_dir} {preset_dir}"],
        "training_config": config.to_dict(),
    }
    model.save_to_preset(preset_dir, metadata=metadata)
    with open(os.path.join(preset_dir, "metadata.json"), encoding="utf-8") as f:
        return json.load(f)
