"""Shared benchmark helpers: fixed threads, timing, tables, JSON."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

DEFAULT_THREADS = 2
THREADS = int(os.environ.get("BENCH_THREADS", str(DEFAULT_THREADS)))


def fix_threads(inter_op: int | None = 1) -> None:
    """Pins TF (and torch, if used) to THREADS intra-op threads and `inter_op`
    inter-op threads (None: TensorFlow's default pool, as the package runs)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    if inter_op is not None:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_calls(fn, warmup: int = 3, repeats: int = 20) -> list[float]:
    """Seconds per call of `fn` (after `warmup` calls)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median(times: list[float]) -> float:
    return statistics.median(times)


def run_child(module: str, *args: str) -> dict:
    """Runs `python -m benchmarks.<module> args` in a fresh process (own peak memory)."""
    out = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], capture_output=True,
                         text=True, check=False, cwd=os.path.dirname(os.path.dirname(__file__)))
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.rjust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).rjust(widths[c]) for c in columns))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return "-" if value is None else str(value)


def write_json(name: str, data) -> str:
    """Writes `benchmarks/results/<name>.json` atomically; with `BENCH_THREADS` other
    than 2, `<name>_<N>threads.json`, so that runs at other thread counts keep the
    2-thread results."""
    from crnn_keras.atomic import write_json as atomic_write_json

    if THREADS != DEFAULT_THREADS:
        name = f"{name}_{THREADS}threads"
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"{name}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_json(path, data)
    return path


def forward_macs(model) -> int:
    """Multiply-adds of one image's forward pass, counted from kernel sizes.

    Conv2D: output positions x kernel size. Dense: input positions x kernel
    size. A sweep layer: map positions x the sizes of its input and recurrent
    kernels (each position is one step of each directional RNN). Other layers
    (batch norm, pooling, activations) are not counted. Needs static shapes.
    """
    import math

    import keras

    from crnn_keras.layers import RowSweep, SpatialSweep2D

    def kernels(layer) -> int:
        return sum(math.prod(w.shape) for w in layer.weights if w.name in ("kernel", "recurrent_kernel"))

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += forward_macs(layer)
        elif isinstance(layer, (RowSweep, SpatialSweep2D)):
            total += math.prod(layer.input.shape[1:3]) * kernels(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            total += math.prod(layer.output.shape[1:3]) * kernels(layer)
        elif isinstance(layer, keras.layers.Dense):
            total += math.prod(layer.input.shape[1:-1]) * kernels(layer)
    return total


def matmul_peak_gflops(n: int = 1024) -> float:
    """Float32 GFLOP/s of a large TF matmul on THREADS threads: the machine's practical peak."""
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    seconds = median(time_calls(lambda: tf.linalg.matmul(a, b).numpy(), warmup=2, repeats=10))
    return 2 * n**3 / seconds / 1e9
