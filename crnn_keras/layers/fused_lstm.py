"""A bidirectional LSTM sweep with a hand-written gradient, for XLA on the TensorFlow backend.

`RowSweep` and `ColumnSweep` use it where their `jit_compile="auto"` would compile an
unrolled `Bidirectional(LSTM)`. Same weights, outputs and gradients (to float32
round-off), faster training on CPUs:

- The input projection of every step and both directions is one matmul.
- The backward pass runs only the recurrence in XLA. The weight gradients are large
  TensorFlow matmuls after it, which can run beside the rest of the backward pass.
- The recurrences run in native kernels (`fused_lstm_kernels.cc`, built on first use by
  `crnn_keras.layers.native`) where they can be built, for float32: each direction's
  sequences are split into chunks that each run their whole recurrence as one task on
  TensorFlow's threads, one small matmul and one elementwise pass per step.
- Otherwise they run in XLA. In the unrolled backward recurrence, XLA fuses the
  cell-state gradient's elementwise chain into every later step's fusion and recomputes
  it there (each step's fusion takes all earlier steps' tensors as inputs). Dividing
  that gradient by a runtime 1.0 stops it: XLA does not duplicate a division. The
  result is unchanged, since `x / 1.0 == x` exactly.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from crnn_keras.layers.device import gpu_visible, in_xla_context


def _time_major(x, transpose: bool):
    """`(batch, height, width, c)` to `(steps, sequences, c)`: the steps run along the
    width (rows) or, with `transpose`, along the height (columns)."""
    if transpose:
        return tf.reshape(tf.transpose(x, (1, 0, 2, 3)), (x.shape[1], -1, x.shape[-1]))
    return tf.reshape(tf.transpose(x, (2, 0, 1, 3)), (x.shape[2], -1, x.shape[-1]))


def _map_major(y, shape, transpose: bool):
    """The inverse of `_time_major`; `shape` is the map's `(batch, height, width)`."""
    batch, height, width = shape
    if transpose:
        return tf.transpose(tf.reshape(y, (height, batch, width, y.shape[-1])), (1, 0, 2, 3))
    return tf.transpose(tf.reshape(y, (width, batch, height, y.shape[-1])), (1, 2, 0, 3))


def _gates(a, units):
    """The four gates of `a`, `(n, 4 * units)`, in Keras's order: i, f, c~, o."""
    return [a[:, k * units:(k + 1) * units] for k in range(4)]


def _projection(x, kernel, bias, units, transpose):
    """The map's rows (`flat`, time-major) and their input projections for both
    directions, `(steps, sequences, 8 * units)`."""
    xs = _time_major(x, transpose)
    flat = tf.reshape(xs, (-1, xs.shape[-1]))
    return flat, tf.reshape(tf.matmul(flat, kernel) + bias, (xs.shape[0], -1, 8 * units))


def _input_gradient(dz_f, dz_b, kernel_f, kernel_b, steps, shape, transpose):
    """The map's gradient from both directions' flattened gate pre-activation gradients."""
    dx = tf.matmul(dz_f, kernel_f, transpose_b=True) + tf.matmul(dz_b, kernel_b, transpose_b=True)
    return _map_major(tf.reshape(dx, (steps, -1, kernel_f.shape[0])), shape, transpose)


def _cell_gradients(flat, prev, dz_prev, dz):
    """One cell's kernel, recurrent kernel and bias gradients: one large matmul each
    (`prev`, the steps' recurrent inputs, pairs with the rows `dz_prev` of `dz`)."""
    return (tf.matmul(flat, dz, transpose_a=True), tf.matmul(prev, dz_prev, transpose_a=True),
            tf.reduce_sum(dz, 0))


def _forward(x, kernel, bias, recurrent_f, recurrent_b, transpose):
    """Outputs, and what the backward pass needs: per direction the gate activations
    `[i, f, c~, o]`, the cell states and the previous hidden states, time-major."""
    units = recurrent_f.shape[0]
    flat, proj = _projection(x, kernel, bias, units, transpose)
    steps = proj.shape[0]
    zeros = tf.zeros((tf.shape(proj)[1], units), x.dtype)
    saved, outputs = [], []
    for direction, recurrent in enumerate((recurrent_f, recurrent_b)):
        h = c = zeros
        acts, cells, hs, prevs = [None] * steps, [None] * steps, [None] * steps, [None] * steps
        for t in range(steps) if direction == 0 else reversed(range(steps)):
            z = proj[t, :, direction * 4 * units:(direction + 1) * 4 * units] + tf.matmul(h, recurrent)
            i, f, g, o = _gates(z, units)
            i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
            prevs[t] = h
            c = f * c + i * g
            h = o * tf.tanh(c)
            acts[t], cells[t], hs[t] = tf.concat([i, f, g, o], -1), c, h
        outputs.append(tf.stack(hs))
        saved += [tf.stack(acts), tf.stack(cells), tf.reshape(tf.stack(prevs), (-1, units))]
    y = _map_major(tf.concat(outputs, -1), tf.unstack(tf.shape(x)[:3]), transpose)
    return (y, flat, *saved)


def _backward(dy, kernel_f, kernel_b, recurrent_f, recurrent_b, acts_f, cells_f, acts_b, cells_b, one, transpose,
              shape):
    """The recurrence's gradient: the gate pre-activation gradients of both directions
    (flattened time-major) and the input gradient."""
    units = recurrent_f.shape[0]
    dys = _time_major(dy, transpose)
    steps = dys.shape[0]
    zeros = tf.zeros((tf.shape(dys)[1], units), dy.dtype)
    dzs = []
    for direction, (acts, cells, recurrent) in enumerate(((acts_f, cells_f, recurrent_f),
                                                          (acts_b, cells_b, recurrent_b))):
        recurrent_t = tf.transpose(recurrent)
        dh_next = dc_next = zeros
        dz = [None] * steps
        for t in reversed(range(steps)) if direction == 0 else range(steps):
            prev = t - 1 if direction == 0 else t + 1
            c_prev = cells[prev] if 0 <= prev < steps else zeros
            i, f, g, o = _gates(acts[t], units)
            tanh_c = tf.tanh(cells[t])
            dh = dys[t, :, direction * units:(direction + 1) * units] + dh_next
            dc = dc_next + dh * o * (1.0 - tanh_c * tanh_c)
            dz[t] = tf.concat([dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - g * g),
                               dh * tanh_c * o * (1.0 - o)], -1)
            dc_next = dc * f / one  # Materialized: see the module docstring.
            dh_next = tf.matmul(dz[t], recurrent_t)
        dzs.append(tf.reshape(tf.stack(dz), (-1, 4 * units)))
    return _input_gradient(*dzs, kernel_f, kernel_b, steps, shape, transpose), dzs[0], dzs[1]


def _check_sweep(name, x, forward_cell, backward_cell, transpose, cell_type, needs="", supported=lambda cell: True):
    """Refuses, naming the fix, cells other than built `cell_type`s (not subclasses,
    which may compute otherwise) with a bias, no dropout, the default activations and
    one dtype (and `supported`, described by `needs`), and maps without a known sweep
    length or of another dtype."""
    for cell in (forward_cell, backward_cell):
        if type(cell) is not cell_type or not cell.built or not cell.use_bias or not supported(cell) or (
                cell.dropout or cell.recurrent_dropout or cell.compute_dtype != cell.variable_dtype
                or keras.activations.serialize(cell.activation) != "tanh"
                or keras.activations.serialize(cell.recurrent_activation) != "sigmoid"):
            raise ValueError(
                f"{name} needs two built `keras.layers.{cell_type.__name__}`s with a bias, {needs}no dropout, the "
                "default activations (tanh, sigmoid) and no mixed precision; got "
                f"{cell!r}. Run other cells through `keras.layers.RNN`.")
    if tuple(forward_cell.kernel.shape) != tuple(backward_cell.kernel.shape):
        raise ValueError(f"The two cells' kernels differ in shape: {tuple(forward_cell.kernel.shape)} and "
                         f"{tuple(backward_cell.kernel.shape)}. Build both for the map's channels, with one `units`.")
    if len(x.shape) != 4 or x.shape[-1] != forward_cell.kernel.shape[0] or x.shape[1 if transpose else 2] is None:
        raise ValueError(
            f"{name} needs a (batch, height, width, {forward_cell.kernel.shape[0]}) map with a known "
            f"{'height' if transpose else 'width'} (the sweep length); got shape {tuple(x.shape)}.")
    if x.dtype != forward_cell.variable_dtype or backward_cell.variable_dtype != forward_cell.variable_dtype:
        raise ValueError(f"{name} needs a map and cells of one dtype; got a {x.dtype.name} map and "
                         f"{forward_cell.variable_dtype} and {backward_cell.variable_dtype} cells. Cast the map.")


_forward_xla = tf.function(_forward, jit_compile=True, autograph=False)
_backward_xla = tf.function(_backward, jit_compile=True, autograph=False)


IMPLEMENTATIONS = ("auto", "native", "xla")


def bidirectional_lstm_sweep(x, forward_cell, backward_cell, transpose: bool = False, implementation: str = "auto"):
    """`Bidirectional(LSTM(units, return_sequences=True))` (concat merge) along the rows
    of `x`, `(batch, height, width, channels)` (with `transpose`: along the columns),
    with the two cells' weights. The sweep length must be known.

    Differentiable in the cells' `kernel`, `recurrent_kernel` and `bias`, and in `x`.
    Returns `(batch, height, width, 2 * units)`: forward states, then backward.
    `implementation`: "native" (the native kernels: float32, CPU, not inside an
    XLA-compiled function, first-order gradients; an error where they cannot run), "xla",
    or "auto" (native where it can run and no GPU is visible, else XLA).

    Example (equal to the Keras layer on each row):

    >>> import keras, numpy as np
    >>> rnn = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True))
    >>> x = tf.random.normal((2, 4, 5, 6))  # 2 maps of 4 rows of 5 steps
    >>> expected = tf.reshape(rnn(tf.reshape(x, (8, 5, 6))), (2, 4, 5, 6))
    >>> y = bidirectional_lstm_sweep(x, rnn.forward_layer.cell, rnn.backward_layer.cell)
    >>> bool(np.allclose(y, expected, atol=1e-5))
    True
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}; got {implementation!r}.")
    _check_sweep("bidirectional_lstm_sweep", x, forward_cell, backward_cell, transpose, keras.layers.LSTMCell)
    in_xla = in_xla_context()
    ops = None
    if implementation == "native" or (implementation == "auto" and not gpu_visible()):
        if x.dtype == tf.float32 and not in_xla:
            from crnn_keras.layers import native

            ops = native.load()
    if implementation == "native" and ops is None:
        why = ("they run float32 only" if x.dtype != tf.float32 else
               "they cannot run inside an XLA-compiled function" if in_xla else
               "they are turned off (CRNN_KERAS_NATIVE=0) or could not be built (see the warning)")
        raise ValueError(f"implementation='native' needs the native kernels, but {why}; got a {x.dtype.name} "
                         "map. Use implementation='xla' or 'auto'.")
    cells = (forward_cell, backward_cell)
    weights = [w.value for cell in cells for w in (cell.kernel, cell.recurrent_kernel, cell.bias)]
    if ops is not None:
        return _native_sweep(ops, x, forward_cell.units, transpose, weights)
    units = forward_cell.units

    @tf.custom_gradient
    def sweep(x, kernel_f, recurrent_f, bias_f, kernel_b, recurrent_b, bias_b):
        kernel = tf.concat([kernel_f, kernel_b], 1)
        bias = tf.concat([bias_f, bias_b], 0)
        y, flat, acts_f, cells_f, prev_f, acts_b, cells_b, prev_b = _forward_xla(
            x, kernel, bias, recurrent_f, recurrent_b, transpose)
        shape = tf.unstack(tf.shape(x)[:3])
        y.set_shape(tuple(x.shape[:3]) + (2 * units,))

        def grad(dy):
            dy = tf.convert_to_tensor(dy)  # IndexedSlices, e.g. below a gather.
            dy.set_shape(y.shape)
            dx, dz_f, dz_b = _backward_xla(dy, kernel_f, kernel_b, recurrent_f, recurrent_b, acts_f, cells_f,
                                           acts_b, cells_b, tf.ones((), dy.dtype), transpose, shape)
            dx.set_shape(x.shape)
            # Weight gradients: one large matmul each, outside XLA.
            return (dx, *_cell_gradients(flat, prev_f, dz_f, dz_f), *_cell_gradients(flat, prev_b, dz_b, dz_b))

        return y, grad

    return sweep(x, *weights)


def _native_sweep(ops, x, units, transpose, weights):
    """`bidirectional_lstm_sweep` with the recurrences in the native kernels."""

    @tf.custom_gradient
    def sweep(x, kernel_f, recurrent_f, bias_f, kernel_b, recurrent_b, bias_b):
        flat, proj = _projection(x, tf.concat([kernel_f, kernel_b], 1), tf.concat([bias_f, bias_b], 0), units,
                                 transpose)
        steps = proj.shape[0]
        hs, acts, cells = ops.crnn_lstm_forward(proj, recurrent_f, recurrent_b)  # Each (2, steps, n, ...).
        shape = tf.unstack(tf.shape(x)[:3])
        y = _map_major(tf.concat([hs[0], hs[1]], -1), shape, transpose)
        y.set_shape(tuple(x.shape[:3]) + (2 * units,))

        def grad(dy):
            dy = tf.convert_to_tensor(dy)  # IndexedSlices, e.g. below a gather.
            dy.set_shape(y.shape)
            dz = ops.crnn_lstm_backward(_time_major(dy, transpose), acts, cells, recurrent_f, recurrent_b)
            dz_f, dz_b = tf.reshape(dz[0], (-1, 4 * units)), tf.reshape(dz[1], (-1, 4 * units))
            dx = _input_gradient(dz_f, dz_b, kernel_f, kernel_b, steps, shape, transpose)
            dx.set_shape(x.shape)
            # Step t's recurrent input is h[t - 1] forward, h[t + 1] backward; the first step's is zero.
            rows = lambda t: tf.reshape(t, (-1, t.shape[-1]))  # noqa: E731
            return (dx, *_cell_gradients(flat, rows(hs[0][:-1]), rows(dz[0][1:]), dz_f),
                    *_cell_gradients(flat, rows(hs[1][1:]), rows(dz[1][:-1]), dz_b))

        return y, grad

    return sweep(x, *weights)
