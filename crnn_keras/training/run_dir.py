"""Finding the model and class names in a run directory."""

from __future__ import annotations

import json
import os


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


def class_names_near(model_path: str, num_classes: int) -> list[str]:
    """Class names from the run's `dataset_info.json`, else `"0"`, `"1"`, ..."""
    info_path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "dataset_info.json")
    if os.path.exists(info_path):
        with open(info_path, encoding="utf-8") as f:
            names = json.load(f).get("class_names", [])
        if len(names) == num_classes:
            return list(names)
    return [str(i) for i in range(num_classes)]
