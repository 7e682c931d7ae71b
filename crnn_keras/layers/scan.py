"""Scan cells: recurrences linear in the hidden state, swept over a whole map at once.

A scan cell's gates come from the input alone, so along a row (or column) its hidden
state follows `h[t] = a[t] * h[t-1] + b[t]` (from `h = 0`), with `a` and `b` computed for
every position by one projection of the map. `linear_scan` solves that recurrence for
all positions with O(length) work and a sequential depth of O(log length), on every
Keras backend:

- the sequence is cut into chunks of `CHUNK` steps; within every chunk at once the
  recurrence runs `CHUNK` elementwise steps, keeping the running product of `a`;
- the chunks' end states form a recurrence of the same kind, `CHUNK` times shorter,
  solved by the same function; each chunk then adds its predecessor's end state times
  its running product.

Only products of the coefficients and sums appear, as in the step-by-step loop, so no
range trick (log space, chunk-relative exponents) is needed: nothing can overflow that
the loop itself would not. The gradient is another such scan, run the other way
(`dh[t] = dy[t] + a[t+1] * dh[t+1]`). A sequence of unknown length (a TensorFlow trace
with unknown height or width) runs as a loop instead.

The cells (`MinGRU`, `MinLSTM`, `SelectiveScan`) are used by `RowSweep`, `ColumnSweep`,
`SpatialSweep2D` and `SweepBlock2D` through `cell="mingru"`, `"minlstm"`, `"selective"`
or an instance (e.g. `SelectiveScan(16, state_size=4)`); one is built per direction.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

# Steps per chunk of `linear_scan` (4 and 8 timed alike at 32x32 maps under XLA; 16 slower).
CHUNK = 4


def _take(x, axis: int, index):
    return x[(slice(None),) * axis + (index,)]


def _shift(x, axis: int, towards_end: bool):
    """`x` moved one step along `axis` (towards its end, or its start), zeros coming in."""
    zero = ops.zeros_like(_take(x, axis, slice(0, 1)))
    if towards_end:
        return ops.concatenate([zero, _take(x, axis, slice(0, -1))], axis)
    return ops.concatenate([_take(x, axis, slice(1, None)), zero], axis)


def _dims(x) -> list:
    """`x`'s shape, dynamic where the static shape is unknown."""
    dynamic = ops.shape(x)
    return [d if d is not None else dynamic[i] for i, d in enumerate(x.shape)]


def _loop_scan(a, b, axis: int, reverse: bool):
    """The recurrence as a loop over a sequence of unknown length."""
    a_steps, b_steps = ops.moveaxis(a, axis, 0), ops.moveaxis(b, axis, 0)

    def step(h, ab):
        h = ab[0] * h + ab[1]
        return h

    if keras.backend.backend() == "tensorflow":  # Keras's own `scan` needs a known length there.
        import tensorflow as tf

        # Reversed by hand, not with `reverse=True`: tf2onnx 1.17 converts a reversed
        # `tf.scan` into a graph that answers wrongly, without an error.
        flip = (lambda x: tf.reverse(x, [0])) if reverse else (lambda x: x)
        h = flip(tf.scan(step, (flip(a_steps), flip(b_steps)), initializer=tf.zeros_like(b_steps[0])))
    else:
        h = ops.scan(lambda h, ab: (step(h, ab),) * 2, ops.zeros_like(b_steps[0]), (a_steps, b_steps),
                     reverse=reverse)[1]
    return ops.moveaxis(h, 0, axis)


def _chunked_scan(a, b, axis: int, reverse: bool):
    """The recurrence along `axis` of known length (see the module docstring)."""
    length = b.shape[axis]
    order = range(min(length, CHUNK))
    if reverse:
        order = reversed(order)
    if length <= CHUNK:
        h, outputs = None, [None] * length
        for k in order:
            h = _take(b, axis, k) if h is None else _take(a, axis, k) * h + _take(b, axis, k)
            outputs[k] = h
        return ops.stack(outputs, axis)
    chunks = -(-length // CHUNK)
    pad = chunks * CHUNK - length
    if pad:  # Padded steps come last in scan order, so they change no real step.
        widths = [(0, 0)] * len(b.shape)
        widths[axis] = (pad, 0) if reverse else (0, pad)
        a, b = ops.pad(a, widths), ops.pad(b, widths)
    dims = _dims(b)
    chunked = dims[:axis] + [chunks, CHUNK] + dims[axis + 1:]
    a, b = ops.reshape(a, chunked), ops.reshape(b, chunked)
    states, products = [None] * CHUNK, [None] * CHUNK
    h = p = None
    for k in order:  # Every chunk at once, from a zero state.
        a_k, b_k = _take(a, axis + 1, k), _take(b, axis + 1, k)
        h, p = (b_k, a_k) if h is None else (a_k * h + b_k, a_k * p)
        states[k], products[k] = h, p
    ends = _chunked_scan(p, h, axis, reverse)  # Each chunk's true end state.
    carried = _shift(ends, axis, towards_end=not reverse)  # Its predecessor's.
    h = ops.stack([states[k] + products[k] * carried for k in range(CHUNK)], axis + 1)
    h = ops.reshape(h, dims)
    if pad:
        h = _take(h, axis, slice(pad, None) if reverse else slice(0, length))
    return h


def _scan(a, b, axis: int, reverse: bool):
    if b.shape[axis] is None:
        return _loop_scan(a, b, axis, reverse)
    return _chunked_scan(a, b, axis, reverse)


def linear_scan(a, b, axis: int, reverse: bool = False):
    """`h[t] = a[t] * h[t-1] + b[t]` along `axis` from a zero state (with `reverse`:
    `h[t] = a[t] * h[t+1] + b[t]`), for every position of `a` and `b` (same shape).

    Differentiable in `a` and `b` on every backend; the gradient is a scan the other way.

    Example:

    >>> import numpy as np
    >>> a, b = np.full((1, 5), 0.5, "float32"), np.ones((1, 5), "float32")
    >>> np.asarray(linear_scan(a, b, axis=1)).round(4).tolist()
    [[1.0, 1.5, 1.75, 1.875, 1.9375]]
    """
    a, b = ops.convert_to_tensor(a), ops.convert_to_tensor(b)

    @ops.custom_gradient
    def scan(a, b):
        h = _scan(a, b, axis, reverse)

        def grad(*args, upstream=None):
            dy = args[0] if upstream is None else upstream
            # dh[t] = dy[t] + a[t+1] dh[t+1]: a scan the other way, of `a` moved one step.
            dh = _scan(_shift(a, axis, towards_end=reverse), dy, axis, not reverse)
            return dh * _shift(h, axis, towards_end=not reverse), dh

        return h, grad

    return scan(a, b)


class ScanCell(keras.layers.Layer):
    """Base of the scan cells: one direction of a scan sweep along one axis of a map.

    A subclass sets `projections` (how many `units`-wide and `state_size`-wide blocks
    its input projection has) and implements `recurrence(p)`, which maps the projected
    map `p` (float32) to the coefficients `(a, b)` of `h[t] = a * h[t-1] + b`, and
    `readout(h, p)`, the output at each position. The projection is one matmul over the
    whole map; the gates and the scan run in float32 under mixed precision.

    Args:
        units: positive int, the output size.
        go_backwards: whether to run from the last step to the first.
        **kwargs: base layer arguments.
    """

    projections = (1, 0)  # (units-wide blocks, state_size-wide blocks)
    bias_initializer = "zeros"

    def __init__(self, units: int, go_backwards: bool = False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise ValueError(f"`units` must be a positive integer, got units={units!r}.")
        self.units = units
        self.go_backwards = bool(go_backwards)
        self.kernel = self.bias = None

    @property
    def output_size(self) -> int:
        return self.units

    @property
    def projection_size(self) -> int:
        wide, narrow = self.projections
        return wide * self.units + narrow * getattr(self, "state_size", 0)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{type(self).__name__} needs a known number of channels, got shape {input_shape}.")
        self.kernel = self.add_weight(name="kernel", shape=(channels, self.projection_size),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.projection_size,), initializer=self.bias_initializer)
        self.built = True

    def call(self, inputs, axis: int = 2):
        """The outputs of a sweep along `axis` (1: columns, 2: rows) of a
        `(batch, height, width, channels)` map."""
        p = ops.cast(ops.matmul(inputs, self.kernel) + self.bias, "float32")
        a, b = self.recurrence(p)
        h = linear_scan(a, b, axis, reverse=self.go_backwards)
        return ops.cast(self.readout(h, p), self.compute_dtype)

    def recurrence(self, p):
        raise NotImplementedError

    def readout(self, h, p):
        return h

    def split(self, p) -> list:
        """The projection's blocks, in `projections` order."""
        wide, narrow = self.projections
        sizes = [self.units] * wide + [getattr(self, "state_size", 0)] * narrow
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return [p[..., s:s + n] for s, n in zip(starts, sizes)]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, go_backwards=self.go_backwards)
        return config


def _g(x):
    """minGRU's and minLSTM's candidate activation in log-space form (Feng et al. 2024):
    `x + 0.5` for `x >= 0`, else `sigmoid(x)`: positive and continuous."""
    return ops.where(x >= 0, x + 0.5, ops.sigmoid(x))


@keras.saving.register_keras_serializable(package="crnn_keras")
class MinGRU(ScanCell):
    """minGRU (Feng et al. 2024, "Were RNNs All We Needed?"), log-space form:

        z = sigmoid(x W_z + b_z),  h~ = g(x W_h + b_h),  h[t] = (1 - z) * h[t-1] + z * h~

    with `g(x) = x + 0.5` for `x >= 0`, else `sigmoid(x)` (so `h~ > 0`, as the paper's
    log-space version requires). Gates come from the input alone, so a sweep is one
    `linear_scan`; it is exact, so the log-space arithmetic itself is not needed.

    Example:

    >>> x = keras.random.normal((2, 3, 5, 4))
    >>> tuple(MinGRU(6)(x, axis=2).shape)
    (2, 3, 5, 6)
    """

    projections = (2, 0)

    def recurrence(self, p):
        gate, candidate = self.split(p)
        return ops.sigmoid(-gate), ops.sigmoid(gate) * _g(candidate)


@keras.saving.register_keras_serializable(package="crnn_keras")
class MinLSTM(ScanCell):
    """minLSTM (Feng et al. 2024), with the paper's length-independent normalised gates:

        f = sigmoid(x W_f + b_f),  i = sigmoid(x W_i + b_i),  h~ = g(x W_h + b_h)
        h[t] = f / (f + i) * h[t-1] + i / (f + i) * h~

    (`g` as in `MinGRU`). `f / (f + i)` is computed as the paper's log-space form does,
    `sigmoid(softplus(-x_i) - softplus(-x_f))`, which never divides by a vanishing sum.

    Example:

    >>> x = keras.random.normal((2, 3, 5, 4))
    >>> tuple(MinLSTM(6, go_backwards=True)(x, axis=1).shape)
    (2, 3, 5, 6)
    """

    projections = (3, 0)

    def recurrence(self, p):
        forget, inp, candidate = self.split(p)
        diff = ops.softplus(-inp) - ops.softplus(-forget)  # log f - log i
        return ops.sigmoid(diff), ops.sigmoid(-diff) * _g(candidate)


def _dt_bias(shape, dtype=None):
    """Mamba's step initialisation: softplus(bias) log-uniform in [1e-3, 1e-1]."""
    dt = ops.exp(keras.random.uniform(shape, math.log(1e-3), math.log(1e-1)))
    return ops.cast(dt + ops.log(-ops.expm1(-dt)), dtype or "float32")  # softplus^-1(dt)


@keras.saving.register_keras_serializable(package="crnn_keras")
class SelectiveScan(ScanCell):
    """A selective state-space cell in the style of Mamba / VMamba (Gu & Dao 2023; Liu et
    al. 2024): diagonal state matrix, input-dependent step and input/output projections.

    Each of `units` channels carries `state_size` states. At every position, from the
    input alone: the channel input `u = x W_u`, the step `dt = softplus(x W_dt + b_dt)`
    (per channel), the input and output projections `B = x W_B` and `C = x W_C` (per
    state) and a gate `z = x W_z`. With `A = -exp(A_log)` (per channel and state):

        h[t] = exp(dt * A) * h[t-1] + dt * B * u          (per channel and state)
        y[t] = (sum over states of C * h[t] + D * u) * silu(z)

    `A_log` starts at `log(1..state_size)` and `dt` log-uniform in [1e-3, 1e-1], as in
    Mamba; `D` at 1.

    Args:
        units: positive int, the output size (channels of the scan).
        state_size: positive int, states per channel (`d_state`).
        go_backwards: whether to run from the last step to the first.

    Example:

    >>> x = keras.random.normal((2, 3, 5, 4))
    >>> tuple(SelectiveScan(6, state_size=2)(x, axis=2).shape)
    (2, 3, 5, 6)
    """

    projections = (3, 2)  # u, dt, z; B, C.

    def __init__(self, units: int, state_size: int = 1, go_backwards: bool = False, **kwargs):
        if isinstance(state_size, bool) or not isinstance(state_size, int) or state_size <= 0:
            raise ValueError(f"`state_size` must be a positive integer, got state_size={state_size!r}.")
        self.state_size = state_size
        super().__init__(units, go_backwards=go_backwards, **kwargs)
        self.a_log = self.d = None

    def build(self, input_shape):
        super().build(input_shape)
        n = self.state_size
        # Used in float32 under mixed precision (`autocast=False`), as the scan is.
        states = lambda shape, dtype=None: ops.tile(ops.arange(1, n + 1, dtype="float32"), (shape[0], 1))  # noqa: E731
        self.a_log = self.add_weight(name="a_log", shape=(self.units, n), autocast=False,
                                     initializer=lambda shape, dtype=None: ops.log(states(shape)))
        self.d = self.add_weight(name="d", shape=(self.units,), initializer="ones", autocast=False)

    def bias_initializer(self, shape, dtype=None):
        u = self.units  # Zero except the step's block.
        return ops.concatenate([ops.zeros((u,), dtype), _dt_bias((u,), dtype),
                                ops.zeros((shape[0] - 2 * u,), dtype)], 0)

    # The states lie flat, channel-major (`units * state_size` wide): the scan and its
    # gates then run on full-width tensors (a trailing axis of 1 state was 3x slower).
    def _per_state(self, x):
        """`(..., units)` to each channel's value at each of its states."""
        return x if self.state_size == 1 else ops.repeat(x, self.state_size, axis=-1)

    def _per_channel(self, x):
        """`(..., state_size)` to each state's value in every channel."""
        return x if self.state_size == 1 else ops.tile(x, (1,) * (len(x.shape) - 1) + (self.units,))

    def recurrence(self, p):
        u, dt, _, b_in, _ = self.split(p)
        dt = ops.softplus(dt)
        a = ops.exp(self._per_state(dt) * -ops.exp(ops.reshape(self.a_log, (-1,))))
        return a, self._per_state(dt * u) * self._per_channel(b_in)

    def readout(self, h, p):
        u, _, z, _, c_out = self.split(p)
        y = h * self._per_channel(c_out)
        if self.state_size > 1:
            y = ops.sum(ops.reshape(y, tuple(_dims(y)[:-1]) + (self.units, self.state_size)), -1)
        return (y + self.d * u) * ops.silu(z)

    def get_config(self):
        config = super().get_config()
        config["state_size"] = self.state_size
        return config


SCAN_CELLS = {"mingru": MinGRU, "minlstm": MinLSTM, "selective": SelectiveScan}


def scan_cell(cell: Any, units: int, go_backwards: bool, dtype: Any, name: str) -> ScanCell:
    """A fresh scan cell for one direction: from a name in `SCAN_CELLS`, or a copy of an
    instance's configuration."""
    if isinstance(cell, str):
        return SCAN_CELLS[cell](units, go_backwards=go_backwards, dtype=dtype, name=name)
    config = {**cell.get_config(), "go_backwards": go_backwards, "name": name, "dtype": dtype}
    return type(cell).from_config(config)
