"""A bidirectional GRU sweep with a hand-written gradient, for XLA on the TensorFlow backend.

The GRU counterpart of `fused_lstm` (see there for the design), for Keras's default
`GRUCell` (`reset_after=True`, cuDNN's variant):

    z = sigmoid(x_z + h W_z + b_z),  r = sigmoid(x_r + h W_r + b_r)
    h~ = tanh(x_h + r * (h W_h + b_h)),  h' = z * h + (1 - z) * h~

The hidden-state gradient's elementwise chain (`dh_t = dh_{t+1} * z_{t+1} + ...`) is
divided by a runtime 1.0 each step, for the reason `fused_lstm` gives for the cell state.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from crnn_keras.layers.fused_lstm import _check_sweep, _map_major, _time_major


def _forward(x, kernel, bias, recurrent_f, recurrent_b, recurrent_bias_f, recurrent_bias_b, transpose):
    """Outputs, and per direction (time-major) what the backward pass needs: the gate
    activations `[z, r, h~]`, the candidate's recurrent term `h W_h + b_h` and the
    previous hidden states."""
    units = recurrent_f.shape[0]
    xs = _time_major(x, transpose)
    steps = xs.shape[0]
    flat = tf.reshape(xs, (-1, xs.shape[-1]))
    proj = tf.reshape(tf.matmul(flat, kernel) + bias, (steps, -1, 6 * units))
    zeros = tf.zeros((tf.shape(xs)[1], units), x.dtype)
    saved, outputs = [], []
    for direction, (recurrent, recurrent_bias) in enumerate(((recurrent_f, recurrent_bias_f),
                                                             (recurrent_b, recurrent_bias_b))):
        h = zeros
        acts, candidates, hs, prevs = [None] * steps, [None] * steps, [None] * steps, [None] * steps
        for t in range(steps) if direction == 0 else reversed(range(steps)):
            p = proj[t, :, direction * 3 * units:(direction + 1) * 3 * units]
            m = tf.matmul(h, recurrent) + recurrent_bias
            z = tf.sigmoid(p[:, :units] + m[:, :units])
            r = tf.sigmoid(p[:, units:2 * units] + m[:, units:2 * units])
            hh = tf.tanh(p[:, 2 * units:] + r * m[:, 2 * units:])
            prevs[t] = h
            h = z * h + (1.0 - z) * hh
            acts[t], candidates[t], hs[t] = tf.concat([z, r, hh], -1), m[:, 2 * units:], h
        outputs.append(tf.stack(hs))
        saved += [tf.stack(acts), tf.stack(candidates), tf.reshape(tf.stack(prevs), (-1, units))]
    y = _map_major(tf.concat(outputs, -1), tf.unstack(tf.shape(x)[:3]), transpose)
    return (y, flat, *saved)


def _backward(dy, kernel_f, kernel_b, recurrent_f, recurrent_b, acts_f, candidates_f, prev_f, acts_b,
              candidates_b, prev_b, one, transpose, shape):
    """The recurrence's gradient: per direction the gradients of the input projection
    and of the recurrent projection `h W + b` (flattened time-major), and the input
    gradient."""
    units = recurrent_f.shape[0]
    dys = _time_major(dy, transpose)
    steps = dys.shape[0]
    zeros = tf.zeros((tf.shape(dys)[1], units), dy.dtype)
    grads = []
    for direction, (acts, candidates, prevs, recurrent) in enumerate(
            ((acts_f, candidates_f, prev_f, recurrent_f), (acts_b, candidates_b, prev_b, recurrent_b))):
        prevs = tf.reshape(prevs, (steps, -1, units))
        recurrent_t = tf.transpose(recurrent)
        dh_next = zeros
        dp, dm = [None] * steps, [None] * steps
        for t in reversed(range(steps)) if direction == 0 else range(steps):
            z, r, hh = acts[t, :, :units], acts[t, :, units:2 * units], acts[t, :, 2 * units:]
            dh = dys[t, :, direction * units:(direction + 1) * units] + dh_next
            dz = dh * (prevs[t] - hh) * z * (1.0 - z)
            dhh = dh * (1.0 - z) * (1.0 - hh * hh)
            dr = dhh * candidates[t] * r * (1.0 - r)
            dp[t] = tf.concat([dz, dr, dhh], -1)
            dm[t] = tf.concat([dz, dr, dhh * r], -1)
            dh_next = dh * z / one + tf.matmul(dm[t], recurrent_t)  # Materialized: see fused_lstm.
        grads += [tf.reshape(tf.stack(g), (-1, 3 * units)) for g in (dp, dm)]
    dx = tf.matmul(grads[0], kernel_f, transpose_b=True) + tf.matmul(grads[2], kernel_b, transpose_b=True)
    dx = _map_major(tf.reshape(dx, (steps, -1, kernel_f.shape[0])), shape, transpose)
    return (dx, *grads)


_forward_xla = tf.function(_forward, jit_compile=True, autograph=False)
_backward_xla = tf.function(_backward, jit_compile=True, autograph=False)


def bidirectional_gru_sweep(x, forward_cell, backward_cell, transpose: bool = False):
    """`Bidirectional(GRU(units, return_sequences=True))` (concat merge) along the rows
    of `x`, `(batch, height, width, channels)` (with `transpose`: along the columns),
    with the two cells' weights. The sweep length must be known.

    Differentiable in the cells' `kernel`, `recurrent_kernel` and `bias`, and in `x`.
    Returns `(batch, height, width, 2 * units)`: forward states, then backward.

    Example (equal to the Keras layer on each row):

    >>> import keras, numpy as np
    >>> rnn = keras.layers.Bidirectional(keras.layers.GRU(3, return_sequences=True))
    >>> x = tf.random.normal((2, 4, 5, 6))  # 2 maps of 4 rows of 5 steps
    >>> expected = tf.reshape(rnn(tf.reshape(x, (8, 5, 6))), (2, 4, 5, 6))
    >>> y = bidirectional_gru_sweep(x, rnn.forward_layer.cell, rnn.backward_layer.cell)
    >>> bool(np.allclose(y, expected, atol=1e-5))
    True
    """
    _check_sweep("bidirectional_gru_sweep", x, forward_cell, backward_cell, transpose, keras.layers.GRUCell,
                 "`reset_after=True`, ", lambda cell: cell.reset_after)
    units = forward_cell.units

    @tf.custom_gradient
    def sweep(x, kernel_f, recurrent_f, bias_f, kernel_b, recurrent_b, bias_b):
        y, flat, acts_f, candidates_f, prev_f, acts_b, candidates_b, prev_b = _forward_xla(
            x, tf.concat([kernel_f, kernel_b], 1), tf.concat([bias_f[0], bias_b[0]], 0), recurrent_f, recurrent_b,
            bias_f[1], bias_b[1], transpose)
        shape = tf.unstack(tf.shape(x)[:3])
        y.set_shape(tuple(x.shape[:3]) + (2 * units,))

        def grad(dy):
            dy = tf.convert_to_tensor(dy)  # IndexedSlices, e.g. below a gather.
            dy.set_shape(y.shape)
            dx, dp_f, dm_f, dp_b, dm_b = _backward_xla(
                dy, kernel_f, kernel_b, recurrent_f, recurrent_b, acts_f, candidates_f, prev_f, acts_b,
                candidates_b, prev_b, tf.ones((), dy.dtype), transpose, shape)
            dx.set_shape(x.shape)
            # Weight gradients: one large matmul each, outside XLA.
            return (dx,
                    tf.matmul(flat, dp_f, transpose_a=True), tf.matmul(prev_f, dm_f, transpose_a=True),
                    tf.stack([tf.reduce_sum(dp_f, 0), tf.reduce_sum(dm_f, 0)]),
                    tf.matmul(flat, dp_b, transpose_a=True), tf.matmul(prev_b, dm_b, transpose_a=True),
                    tf.stack([tf.reduce_sum(dp_b, 0), tf.reduce_sum(dm_b, 0)]))

        return y, grad

    cells = (forward_cell, backward_cell)
    return sweep(x, *[w.value for cell in cells for w in (cell.kernel, cell.recurrent_kernel, cell.bias)])
