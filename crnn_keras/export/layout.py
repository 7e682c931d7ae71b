"""The versioned, atomic layout every export format shares.

`base_dir/<version>/` holds one export: a SavedModel, or `model.onnx` or
`model.tflite`, each with `labels.txt`. A version is written to a hidden
staging folder beside it (named with the exporter's process id) and renamed
into place, so a server watching `base_dir` never sees a half-written version,
and a later export removes the staging folders of killed exporters.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
import warnings
from typing import Iterator

from crnn_keras.atomic import pid_alive

STAGING = ".tmp-export-"
TRASH = ".tmp-old-"
# The file that marks a version folder as one format's (the SavedModel's proto,
# the single-file formats' model file).
FORMAT_FILES = {"saved_model": "saved_model.pb", "onnx": "model.onnx", "litert": "model.tflite"}
LABELS_FILE = "labels.txt"


def check_version(version: int | None) -> None:
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise ValueError(f"`version` must be a positive integer, got {version!r}.")


def check_class_names(class_names: list[str] | None, num_classes: int) -> list[str]:
    """The class names (`"0"`, `"1"`, ... when None), checked against the model."""
    class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {num_classes} classes.")
    if any("\n" in name for name in class_names):
        raise ValueError("Class names must not contain newlines.")
    return class_names


def labels_text(class_names: list[str]) -> str:
    """`labels.txt`: one class name a line, in class-id order."""
    return "\n".join(class_names) + "\n"


def write_labels(folder: str, class_names: list[str]) -> str:
    """Writes `folder/labels.txt` (a staging folder: it is published with the rest); returns its path."""
    path = os.path.join(folder, LABELS_FILE)
    with open(path, "w", encoding="utf-8") as f:
        f.write(labels_text(class_names))
    return path


def check_base_dir(base_dir: str, format: str) -> None:
    """Refuses a version folder as `base_dir`, and a `base_dir` whose versions
    are another format's (a server watching it would load the newest version,
    whatever its format)."""
    for marker in FORMAT_FILES.values():
        if os.path.exists(os.path.join(base_dir, marker)):
            raise ValueError(
                f"base_dir {base_dir!r} is itself an exported version (it holds {marker}); "
                f"pass the model's folder above it, {os.path.dirname(os.path.abspath(base_dir))!r} "
                "(with version= and overwrite=True to replace that version)."
            )
    if not os.path.isdir(base_dir):
        return
    suggestion = os.path.abspath(base_dir).rstrip(os.sep) + "_" + format
    for version in sorted((d for d in os.listdir(base_dir) if d.isdigit()), key=int):
        for name, marker in FORMAT_FILES.items():
            if name != format and os.path.exists(os.path.join(base_dir, version, marker)):
                raise ValueError(
                    f"base_dir {base_dir!r} holds {name} versions (version {version} has {marker}); "
                    f"write {format} exports to a folder of their own, e.g. "
                    f"{suggestion!r}."
                )


@contextlib.contextmanager
def staging_folder(base_dir: str) -> Iterator[str]:
    """Yields a fresh hidden folder in `base_dir` to write a version into; removes
    it (whatever is left in it) when the block ends, and `base_dir` too where
    this call created it and nothing else is in it. Stale staging folders of
    exporters that no longer run are removed first."""
    created = not os.path.isdir(base_dir)
    os.makedirs(base_dir, exist_ok=True)
    remove_stale_staging(base_dir)
    staging = os.path.join(base_dir, f"{STAGING}{os.getpid()}-{uuid.uuid4().hex}")
    os.makedirs(staging)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created:  # A failed first export leaves no empty model folder behind.
            with contextlib.suppress(OSError):
                os.rmdir(base_dir)


def remove_stale_staging(base_dir: str) -> None:
    """Removes the staging folders of exporters that no longer run (killed ones)."""
    for name in os.listdir(base_dir):
        if not name.startswith((STAGING, TRASH)):
            continue
        pid = name.split("-")[2]  # .tmp-export-<pid>-... and .tmp-old-<pid>-<version>-...
        if pid.isdigit() and pid_alive(int(pid)):
            continue
        path = os.path.join(base_dir, name)
        if name.startswith(TRASH):
            version = name.split("-")[3]
            if not os.path.exists(os.path.join(base_dir, version)):
                # Killed between moving the old version aside and publishing the new one.
                os.rename(path, os.path.join(base_dir, version))
                warnings.warn(f"Restored version {version} in {base_dir!r} from an interrupted "
                              "overwrite.", stacklevel=4)
                continue
        warnings.warn(f"Removing {path!r}, left by an interrupted export.", stacklevel=4)
        shutil.rmtree(path, ignore_errors=True)


def next_version(base_dir: str) -> int:
    versions = [int(d) for d in os.listdir(base_dir) if d.isdigit()] if os.path.isdir(base_dir) else []
    return max(versions, default=0) + 1


def publish(staging: str, base_dir: str, version: int | None, overwrite: bool) -> str:
    """Renames the staged export into place as an integer version; returns its path."""
    if version is not None:
        target = os.path.join(base_dir, str(version))
        if os.path.exists(target):
            if not overwrite:
                raise FileExistsError(
                    f"Version {version} already exists in {base_dir!r}; pass overwrite=True "
                    "or leave version unset for the next free one."
                )
            trash = os.path.join(base_dir, f"{TRASH}{os.getpid()}-{version}-{uuid.uuid4().hex}")
            os.rename(target, trash)
            os.rename(staging, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(staging, target)
        return target
    for _ in range(100):
        # Concurrent exporters may pick the same number: renaming onto a version
        # that another one just published fails, and we try the next number.
        target = os.path.join(base_dir, str(next_version(base_dir)))
        try:
            os.rename(staging, target)
            return target
        except OSError:
            continue
    raise RuntimeError(f"Could not claim a free version number in {base_dir!r}.")
