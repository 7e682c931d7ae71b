"""The `crnn-keras` console script: a fast, quiet front door to `crnn_keras.cli`.

Importing `crnn_keras` imports TensorFlow, which takes seconds and prints
start-up log lines from C++ before any Python setting can stop them. So:

- `--help` (and a bare `crnn-keras`) builds the parser from
  `crnn_keras/cli.py`, `crnn_keras/training/config.py` and
  `crnn_keras/models/presets.py`, loaded by path without the package's
  `__init__`; they import only the standard library at the top. No
  TensorFlow is imported.
- Every other call imports the package and loads TensorFlow's device
  platforms with the process's native stderr caught, writes back all but
  TensorFlow's start-up noise (the failed `cuInit` of a machine without a GPU
  included), then runs `crnn_keras.cli.main`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import tempfile

# TensorFlow's start-up lines on a CPU-only machine; anything else is written back.
_NOISE = re.compile(
    r"absl::InitializeLog|cudart_stub\.cc|cpu_feature_guard\.cc|To enable the following instructions"
    r"|oneDNN custom operations are on|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered|TF-TRT Warning|cuda_(executor|diagnostics)\.cc"
    r"|failed call to cuInit"
)
_LIGHT = ("cli", "training/config", "models/presets")


def light_modules() -> dict:
    """The standard-library-only modules the parser needs, loaded without `crnn_keras.__init__`."""
    root = importlib.util.find_spec("crnn_keras").submodule_search_locations[0]
    out = {}
    for rel in _LIGHT:
        name = "_crnn_keras_light_" + rel.replace("/", "_")
        spec = importlib.util.spec_from_file_location(name, os.path.join(root, rel + ".py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up here.
        spec.loader.exec_module(module)
        out[rel] = module
    return out


@contextlib.contextmanager
def quiet_native_stderr():
    """Catches file descriptor 2 (C++ logging included); writes back all but `_NOISE`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines(keepends=True):
                if not _NOISE.search(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or "-h" in argv or "--help" in argv:
        light = light_modules()
        parser = light["cli"].build_parser(light["training/config"], light["models/presets"])
        parser.parse_args(argv)  # Prints the help or the usage error, and exits.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet_native_stderr():
        import tensorflow as tf

        from crnn_keras.cli import main as run

        # Loads the device platforms now, while their start-up lines are caught (without a GPU,
        # TensorFlow logs its failed cuInit when a command first looks for devices).
        tf.config.list_physical_devices()
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
