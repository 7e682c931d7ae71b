"""Writing files so that a crash never leaves a partial one: a temporary name
in the same folder, then an atomic rename into place."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from typing import Any, Iterator


_ACTIVE: set[str] = set()  # This process's temporaries being written now.


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path beside `path` (same extension); renames it onto
    `path` when the block succeeds, and removes it when the block fails.

    Example:

    >>> import tempfile
    >>> target = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> with atomic_path(target) as tmp:
    ...     _ = open(tmp, "w").write("done")
    >>> open(target).read()
    'done'
    """
    folder, name = os.path.split(os.path.abspath(path))
    stem, dot, ext = name.partition(".")
    # The writer's pid in the name tells a killed writer's leftover from a live one's.
    tmp = os.path.join(folder, f".{stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{dot}{ext}")
    _ACTIVE.add(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        _ACTIVE.discard(tmp)
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path: str, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_json(path: str, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def remove_stale_temporaries(folder: str) -> list[str]:
    """Removes, with a warning, the `atomic_path` temporaries under `folder` whose
    writer no longer runs (a killed run's); returns their paths. A file named
    with this process's own pid is stale unless this process is writing it (a
    restarted container often gets the killed process's pid back). Writers on
    other machines sharing the folder are not seen.

    Example:

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> open(os.path.join(folder, ".best.tmp-999999999-0a1b2c3d.keras"), "w").close()
    >>> import warnings
    >>> with warnings.catch_warnings(record=True):
    ...     [os.path.basename(p) for p in remove_stale_temporaries(folder)]
    ['.best.tmp-999999999-0a1b2c3d.keras']
    """
    import re
    import warnings

    removed = []
    for root, _, files in os.walk(folder):
        for name in files:
            match = re.match(r"\.[^.]*\.tmp-(\d+)-[0-9a-f]{8}(\.|$)", name)
            path = os.path.join(root, name)
            if not match or os.path.abspath(path) in _ACTIVE:
                continue
            pid = int(match.group(1))
            if pid == os.getpid() or not pid_alive(pid):
                with contextlib.suppress(FileNotFoundError):  # A concurrent clean-up got it first.
                    os.remove(path)
                    removed.append(path)
    if removed:
        warnings.warn(f"Removed {len(removed)} temporary file(s) left by an interrupted run in {folder!r}: "
                      f"{', '.join(os.path.relpath(p, folder) for p in removed)}.", stacklevel=2)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (for telling a killed writer's
    leftovers, whose names carry its pid, from a running writer's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
