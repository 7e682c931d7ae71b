"""The sweep layer alone, for each implementation choice, and its scaling.

    python -m benchmarks.sweep            # choices at 8x8x64, batch 64
    python -m benchmarks.sweep --scaling  # map sizes 8x8 .. 64x64, and shapes of equal area
    python -m benchmarks.sweep --scan     # scan cells against the fused LSTM sweep, 16x16 .. 64x64

Forward + backward time of `SpatialSweep2D(64)` (rows then columns). Scaling
reports time per map position (flat means linear in H*W) and the sequential
depth (H + W steps for rows then columns).
"""

from __future__ import annotations

import sys

from benchmarks.common import THREADS, fix_threads, median, print_table, time_calls, write_json

fix_threads()
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from crnn_keras.layers import SCAN_CELLS, SpatialSweep2D, SweepBlock2D  # noqa: E402


def measure(layer, shape, jit=False, repeats=10):
    x = tf.random.normal(shape)
    layer(x)

    @tf.function(jit_compile=jit)
    def step(x):
        with tf.GradientTape() as tape:
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, layer.trainable_variables)

    return median(time_calls(lambda: step(x), warmup=2, repeats=repeats))


def choices(batch=64, size=8, channels=64, units=64):
    shape = (batch, size, size, channels)
    cases = [
        ("lstm, batched reshape, while loop", SpatialSweep2D(units, unroll=False), False),
        ("lstm, unroll='auto' (default: unrolled)", SpatialSweep2D(units), False),
        ("lstm, while loop + XLA", SpatialSweep2D(units, unroll=False), True),
        ("lstm, unrolled + XLA", SpatialSweep2D(units), True),
        ("gru, while loop", SpatialSweep2D(units, cell="gru", unroll=False), False),
        ("gru, unrolled", SpatialSweep2D(units, cell="gru"), False),
        ("keras.layers.RNN(LSTMCell)", SpatialSweep2D(units, cell=keras.layers.LSTMCell(units)), False),
        ("simple_rnn", SpatialSweep2D(units, cell="simple_rnn"), False),
    ]
    rows = []
    for name, layer, jit in cases:
        try:
            seconds = measure(layer, shape, jit)
            rows.append({"choice": name, "ms_fwd_bwd": 1000 * seconds})
        except Exception as err:  # e.g. XLA unavailable.
            rows.append({"choice": name, "error": str(err).splitlines()[0][:60]})
    base = rows[0].get("ms_fwd_bwd")
    for r in rows:
        if r.get("ms_fwd_bwd") and base:
            r["vs_loop"] = r["ms_fwd_bwd"] / base
    print(f"SpatialSweep2D({units}) fwd+bwd, input {shape}, {THREADS} threads")
    print_table(rows, ["choice", "ms_fwd_bwd", "vs_loop", "error"])
    print("written to", write_json("sweep_choices", rows))


# Square maps grow area and depth together; the 256-position maps of other
# shapes vary the depth (W + H sequential steps) at a fixed area.
SHAPES = ((8, 8), (16, 16), (32, 32), (64, 64), (4, 64), (8, 32), (32, 8), (64, 4))


def scaling(batch=16, channels=32, units=32):
    rows = []
    for h, w in SHAPES:
        # One implementation at every size: "auto" would unroll only the small maps.
        seconds = measure(SpatialSweep2D(units, unroll=False), (batch, h, w, channels), repeats=5)
        rows.append({"map": f"{h}x{w}", "positions": h * w, "depth_steps": h + w,
                     "ms": 1000 * seconds, "us_per_position": 1e6 * seconds / (batch * h * w)})
    print(f"SpatialSweep2D({units}) fwd+bwd, batch {batch}, {channels} channels, {THREADS} threads")
    print_table(rows, ["map", "positions", "depth_steps", "ms", "us_per_position"])
    print("written to", write_json("sweep_scaling", rows))


SCAN_SIZES = (16, 32, 64)


def scan_cells(batch=8, channels=64, units=64, rounds=5, sizes=SCAN_SIZES):
    """A training pass (forward and backward) of one `SweepBlock2D` (parallel rows and
    columns, `mlp_ratio=2`) per cell, at each map size. The LSTM row is the fused sweep
    (`unroll=True`: what `"auto"` picks up to 16 steps, kept at every size so that the
    fused path runs). Rounds interleave the cells; each ratio is the per-round median
    of LSTM time over the cell's."""
    rows = []
    for size in sizes:
        shape = (batch, size, size, channels)
        x = tf.random.normal(shape)
        cells = {"lstm (fused)": SweepBlock2D(units, unroll=True)}
        cells.update({name: SweepBlock2D(units, cell=name) for name in SCAN_CELLS})
        steps = {}
        for name, layer in cells.items():
            layer(x)
            steps[name] = _training_pass(layer)
            steps[name](x)  # Traced and compiled before timing.
        times = {name: [] for name in cells}
        for _ in range(rounds):
            for name, step in steps.items():
                times[name].append(median(time_calls(lambda step=step, x=x: step(x), warmup=1, repeats=3)))
        for name in cells:
            ratios = [lstm / mine for lstm, mine in zip(times["lstm (fused)"], times[name])]
            rows.append({"map": f"{size}x{size}", "cell": name, "ms": 1000 * median(times[name]),
                         "speedup_vs_lstm": median(ratios), "min_ratio": min(ratios), "max_ratio": max(ratios)})
            print(rows[-1], flush=True)
    print(f"SweepBlock2D({units}) training pass, batch {batch}, {channels} channels, {THREADS} threads, "
          f"{rounds} interleaved rounds")
    print_table(rows, ["map", "cell", "ms", "speedup_vs_lstm", "min_ratio", "max_ratio"])
    print("written to", write_json("sweep_scan_cells", rows))


def _training_pass(layer):
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, layer.trainable_variables)

    return lambda x: [g.numpy() for g in step(x)]


if __name__ == "__main__":
    if "--scan" in sys.argv:
        scan_cells()
    else:
        scaling() if "--scaling" in sys.argv else choices()
