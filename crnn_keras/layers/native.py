"""Builds and loads the native LSTM sweep kernels (`fused_lstm_kernels.cc`) on first use.

The kernels are compiled with the C++ compiler (`$CXX`, else `g++`) against the installed
TensorFlow, for this machine's CPU, into a cache folder (`$CRNN_KERAS_CACHE`, else
`~/.cache/crnn_keras`), named by a hash of the source, TensorFlow's version and build flags
and the CPU's features; later processes load the cached library. The library is written to a
temporary name and renamed into place, so processes that build at once, or a build that fails
or is killed, never leave a broken library under the final name; a cached library that fails
to load is built again, once. Without a compiler, or if the build fails, `load()`
warns once and returns None, and the fused sweeps run in XLA instead. `CRNN_KERAS_NATIVE=0`
turns the kernels off.

Example:

>>> ops = load()
>>> ops is None or hasattr(ops, "crnn_lstm_forward")
True
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import platform
import shlex
import shutil
import subprocess
import tempfile
import warnings

SOURCE = pathlib.Path(__file__).with_name("fused_lstm_kernels.cc")
_loaded: dict = {}


def enabled() -> bool:
    """Whether `CRNN_KERAS_NATIVE` allows the kernels (anything but "0")."""
    return os.environ.get("CRNN_KERAS_NATIVE", "1") != "0"


def _cpu_features() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):  # x86, ARM.
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=600)


def _build(target: pathlib.Path, command: list[str], link_flags: list[str]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so.tmp", dir=target.parent)
    os.close(fd)
    try:
        result = _run([*command, "-o", tmp, *link_flags])
        if result.returncode:
            raise RuntimeError(result.stderr.strip()[-2000:] or f"exit status {result.returncode}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _load(tf):
    compiler = shlex.split(os.environ.get("CXX", "g++"))
    if not compiler or shutil.which(compiler[0]) is None:
        raise RuntimeError(f"no C++ compiler `{os.environ.get('CXX', 'g++')}` (set CXX)")
    command = [*compiler, "-std=c++17", "-shared", "-fPIC", "-O3", "-march=native", "-w",
               *tf.sysconfig.get_compile_flags(), str(SOURCE)]
    link_flags = tf.sysconfig.get_link_flags()
    version = _run([*compiler, "--version"]).stdout
    key = hashlib.sha256("\n".join([SOURCE.read_text(), tf.__version__, " ".join(command + link_flags), version,
                                    " ".join(platform.libc_ver()), _cpu_features()]).encode()).hexdigest()[:16]
    cache = os.environ.get("CRNN_KERAS_CACHE") or pathlib.Path.home() / ".cache" / "crnn_keras"
    target = pathlib.Path(cache) / f"fused_lstm_kernels-{key}.so"
    if target.exists():
        try:
            return tf.load_op_library(str(target))
        except Exception:  # noqa: BLE001 -- a stale or broken cached file: build it again, once.
            target.unlink(missing_ok=True)
    _build(target, command, link_flags)
    return tf.load_op_library(str(target))


def load():
    """The compiled kernels' op module (`crnn_lstm_forward`, `crnn_lstm_backward`), or None
    where they are turned off or cannot be built (with one warning)."""
    if not enabled():
        return None
    if "ops" in _loaded:
        return _loaded["ops"]
    ops = None
    try:
        import tensorflow as tf

        ops = _load(tf)
    except Exception as error:  # noqa: BLE001 -- any failure falls back to the XLA sweep, with its reason.
        warnings.warn(f"crnn_keras: the native LSTM sweep kernels are not available ({error}); the fused LSTM "
                      "sweep runs in XLA instead, with the same results. Set CRNN_KERAS_NATIVE=0 to silence this.",
                      RuntimeWarning, stacklevel=2)
    _loaded["ops"] = ops
    return ops
