"""Recurrent sweeps over 2D feature maps: rows, columns, and both."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import keras
from keras import ops

from crnn_keras.layers.device import gpu_visible as _gpu_visible
from crnn_keras.layers.device import in_xla_context as _in_xla_context
from crnn_keras.layers.device import xla_function as _xla_function
from crnn_keras.layers.scan import SCAN_CELLS, ScanCell, scan_cell

CELL_NAMES = ("lstm", "gru", "simple_rnn", *SCAN_CELLS)
MERGE_MODES = ("concat", "sum", "mul", "ave")
ORDERS = ("rows_then_columns", "columns_then_rows", "parallel", "cross_scan")
PARALLEL_MERGES = ("concat", "sum")
_USE_CUDNN = ("auto", True, False)
_UNROLL = ("auto", True, False)
_JIT_COMPILE = ("auto", False)
# `unroll="auto"` unrolls sequences up to this length (see `_resolve_unroll`).
AUTO_UNROLL_MAX_STEPS = 16
_SWEEP_ARGS = (
    "units", "cell", "bidirectional", "merge_mode", "dropout",
    "recurrent_dropout", "use_cudnn", "unroll", "jit_compile",
)


def _check_units(units: Any) -> int:
    if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
        raise ValueError(f"`units` must be a positive integer, got units={units!r}.")
    return units


def _check_choice(name: str, value: Any, choices: tuple) -> Any:
    if value not in choices:
        raise ValueError(
            f"Unknown {name}={value!r}. Expected one of: "
            + ", ".join(repr(c) for c in choices)
            + "."
        )
    return value


def _check_rate(name: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"`{name}` must be a float in [0, 1), got {name}={value!r}.")
    return float(value)


def _resolve_cell(cell: Any) -> Any:
    """Checks `cell`: a known name, a scan cell or a Keras RNN cell instance."""
    if isinstance(cell, str):
        return _check_choice("cell", cell.lower(), CELL_NAMES)
    if isinstance(cell, ScanCell):
        return cell
    if isinstance(cell, keras.layers.Layer) and hasattr(cell, "state_size"):
        return cell
    if isinstance(cell, dict):  # A serialized cell, from `get_config`.
        return keras.saving.deserialize_keras_object(cell)
    raise ValueError(
        f"Unknown cell={cell!r}. Expected one of {', '.join(map(repr, CELL_NAMES))}, "
        "a scan cell instance (e.g. `crnn_keras.layers.SelectiveScan(16, state_size=4)`) "
        "or a Keras RNN cell instance (a layer with `state_size`, e.g. "
        "`keras.layers.LSTMCell(16)`)."
    )


def _copy_cell(cell: keras.layers.Layer) -> keras.layers.Layer:
    """A fresh, unbuilt cell with the same configuration."""
    return keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(cell)
    )


_SHARING_KEYS = ("shared_objects/id_to_obj_map", "shared_objects/id_to_config_map")


@contextlib.contextmanager
def _without_object_sharing() -> Iterator[None]:
    """Suspends Keras's object-sharing scope, which is active while a model loads.

    That scope matches objects by `id()`. `Bidirectional` serializes and rebuilds
    the layer it wraps; the short-lived wrapped layers of different sweeps can
    reuse one id, and the scope then hands one sweep another sweep's LSTM (a
    load error, or silently shared weights). Our layers are rebuilt from their
    own arguments, so nothing inside them needs sharing.
    """
    from keras.src.backend.common import global_state

    saved = [global_state.get_global_attribute(key) for key in _SHARING_KEYS]
    for key in _SHARING_KEYS:
        global_state.set_global_attribute(key, None)
    try:
        yield
    finally:
        for key, value in zip(_SHARING_KEYS, saved):
            global_state.set_global_attribute(key, value)


def _check_rank4(input_shape: tuple, layer_name: str) -> None:
    if len(input_shape) != 4:
        raise ValueError(
            f"{layer_name} expects a rank-4 input (batch, height, width, channels), "
            f"got shape {tuple(input_shape)} (rank {len(input_shape)}). "
            "Add a channels axis for grayscale maps, e.g. `x[..., None]`."
        )
    if 0 in tuple(input_shape)[1:3]:
        raise ValueError(f"{layer_name} got a map with no rows or columns, shape {tuple(input_shape)}: "
                         "there is nothing to sweep. Use larger images, or fewer poolings before the sweep.")
    if input_shape[-1] is None:
        raise ValueError(
            f"{layer_name} needs a known number of channels, got shape "
            f"{tuple(input_shape)}. Declare it, e.g. `keras.Input((None, None, 64))`."
        )


@keras.saving.register_keras_serializable(package="crnn_keras")
class RowSweep(keras.layers.Layer):
    """Sweeps a recurrent network along every row of a feature map.

    Each row of a `(batch, height, width, channels)` map is a sequence along
    the width axis. All rows are batched into one RNN call (the map is reshaped
    to `(batch * height, width, channels)`), swept in both directions when
    `bidirectional=True`, and reshaped back. Every output position then sees
    its whole row.

    For the named cells this uses `keras.layers.LSTM`, `GRU` or `SimpleRNN`
    (subclasses of `keras.layers.RNN`), so GPUs get the cuDNN kernel. With
    `cell="lstm"`, `bidirectional=True` and `merge_mode="concat"`, the weights
    are exactly those of
    `keras.layers.Bidirectional(keras.layers.LSTM(units))`, in Keras order.

    The scan cells (`"mingru"`, `"minlstm"`, `"selective"`: see
    `crnn_keras.layers.scan`) are linear in their hidden state, with gates
    from the input alone: each direction is one projection of the whole map
    and one `linear_scan` along the rows, with no reshape and no per-step
    matmul. `use_cudnn` and `unroll` do not apply to them.

    Args:
        units: positive int, hidden size of each direction.
        cell: `"lstm"`, `"gru"`, `"simple_rnn"`, a scan cell (`"mingru"`,
            `"minlstm"`, `"selective"`, or an instance such as
            `SelectiveScan(units, state_size=4)`), or any Keras RNN cell
            instance (wrapped with `keras.layers.RNN`).
        bidirectional: whether to sweep both ways along the row.
        merge_mode: how the two directions combine: `"concat"`, `"sum"`,
            `"mul"` or `"ave"`. Ignored when `bidirectional=False`.
        dropout: input dropout rate of the named Keras cells.
        recurrent_dropout: recurrent dropout rate of the named Keras cells.
        use_cudnn: `"auto"`, `True` or `False`, passed to LSTM and GRU.
        unroll: `True`, `False`, or `"auto"` (default): unroll when the row
            length is known and at most 16, unless cuDNN can run (an LSTM
            or GRU on a visible GPU with `use_cudnn` not `False`). On a CPU
            the unrolled sweep's training step is 10-23% faster, with equal
            results; longer rows stay a loop (unrolling costs trace time).
        jit_compile: `"auto"` (default) or `False`. With `"auto"`, on the
            TensorFlow backend, an unrolled sweep of a named cell without
            dropout runs as one XLA-compiled function inside traced (not
            eager) calls, while the rest of the model keeps TensorFlow's own
            kernels (XLA's CPU convolutions are slower than oneDNN's). On a
            2-core CPU this makes `crnn_small`'s training step about 15%
            faster and inference about 40% faster, with equal results.
            A float32 bidirectional LSTM or GRU trains through
            `fused_lstm.bidirectional_lstm_sweep` or
            `fused_gru.bidirectional_gru_sweep` there (the Keras layer's
            weights, a hand-written gradient): about 5% (LSTM) and 1-8%
            (GRU) faster again.
            `False` never compiles (exports use it: TF Serving builds may
            lack XLA).
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Input shape: `(batch, height, width, channels)`; height and width may be
        unknown. Output shape: `(batch, height, width, D)` where `D` is
        `2 * units` for a bidirectional concat and `units` otherwise.

    Example:

    >>> x = keras.random.normal((2, 5, 7, 3))
    >>> tuple(RowSweep(4)(x).shape)
    (2, 5, 7, 8)
    """

    _transpose = False

    def __init__(
        self,
        units: int,
        cell: Any = "lstm",
        bidirectional: bool = True,
        merge_mode: str = "concat",
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        use_cudnn: Any = "auto",
        unroll: Any = "auto",
        jit_compile: Any = "auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = _check_units(units)
        self.cell = _resolve_cell(cell)
        self.bidirectional = bool(bidirectional)
        self.merge_mode = _check_choice("merge_mode", merge_mode, MERGE_MODES)
        self.dropout = _check_rate("dropout", dropout)
        self.recurrent_dropout = _check_rate("recurrent_dropout", recurrent_dropout)
        self.use_cudnn = _check_choice("use_cudnn", use_cudnn, _USE_CUDNN)
        unroll = _check_choice("unroll", unroll, _UNROLL)
        self.unroll = unroll if isinstance(unroll, str) else bool(unroll)
        self.jit_compile = "auto" if _check_choice("jit_compile", jit_compile, _JIT_COMPILE) == "auto" else False
        if self._scans and (self.dropout or self.recurrent_dropout):
            raise ValueError(
                f"`dropout` and `recurrent_dropout` apply to Keras RNN cells; the scan cell {cell!r} has "
                "neither (its gates read the input only). Set both to 0, or use dropout around the sweep."
            )
        if not isinstance(self.cell, str) and (self.dropout or self.recurrent_dropout):
            raise ValueError(
                "`dropout` and `recurrent_dropout` apply to the named cells only; "
                "with a cell instance set them on the cell, e.g. "
                "`keras.layers.LSTMCell(units, dropout=0.1)`."
            )
        if not isinstance(self.cell, str):
            size = getattr(self.cell, "output_size", None) or self.cell.state_size
            size = size[0] if isinstance(size, (list, tuple)) else size
            if size != self.units:
                raise ValueError(
                    f"The cell instance outputs {size} features but units={self.units}. "
                    "Pass the cell's own size as `units`."
                )
        if self._scans:
            directions = ("forward", "backward") if self.bidirectional else ("forward",)
            name = self.cell if isinstance(self.cell, str) else type(self.cell).__name__.lower()
            self.rnn = None
            self.scan_cells = [scan_cell(self.cell, self.units, go_backwards=d == "backward",
                                         dtype=self.dtype_policy, name=f"{d}_{name}") for d in directions]
            return
        with _without_object_sharing():
            self.rnn = self._make_rnn()

    @property
    def _scans(self) -> bool:
        """Whether the cell is a scan cell (`crnn_keras.layers.scan`)."""
        return isinstance(self.cell, ScanCell) or (isinstance(self.cell, str) and self.cell in SCAN_CELLS)

    def _make_rnn(self) -> keras.layers.Layer:
        common = dict(return_sequences=True, unroll=self.unroll is True, dtype=self.dtype_policy)
        named = dict(dropout=self.dropout, recurrent_dropout=self.recurrent_dropout)
        if self.cell == "lstm":
            rnn = keras.layers.LSTM(self.units, use_cudnn=self.use_cudnn, **named, **common)
        elif self.cell == "gru":
            rnn = keras.layers.GRU(self.units, use_cudnn=self.use_cudnn, **named, **common)
        elif self.cell == "simple_rnn":
            rnn = keras.layers.SimpleRNN(self.units, **named, **common)
        else:
            rnn = keras.layers.RNN(_copy_cell(self.cell), **common)
        if self.bidirectional:
            rnn = keras.layers.Bidirectional(
                rnn, merge_mode=self.merge_mode, dtype=self.dtype_policy
            )
        return rnn

    @property
    def output_channels(self) -> int:
        if self.bidirectional and self.merge_mode == "concat":
            return 2 * self.units
        return self.units

    def build(self, input_shape):
        _check_rank4(input_shape, type(self).__name__)
        if self._scans:
            for cell in self.scan_cells:
                cell.build(tuple(input_shape))
        else:
            seq_len = input_shape[1] if self._transpose else input_shape[2]
            self.rnn.build((None, seq_len, input_shape[-1]))
        self.built = True

    def _resolve_unroll(self, seq_len) -> bool:
        """`unroll="auto"`: short known sequences, where cuDNN cannot run."""
        if seq_len is None or seq_len > AUTO_UNROLL_MAX_STEPS:
            return False
        if self.cell in ("lstm", "gru") and self.use_cudnn is not False and _gpu_visible():
            return False
        return True

    def call(self, inputs, training=None):
        if self._scans:
            if self._compiles() and self._unrolls(inputs.shape[1 if self._transpose else 2]):
                return _xla_function(self._scan)(inputs)
            return self._scan(inputs)
        if self._fuses(inputs.shape, training):
            return self._fused(inputs)
        x = ops.transpose(inputs, (0, 2, 1, 3)) if self._transpose else inputs
        shape = ops.shape(x)
        seqs = ops.reshape(x, (-1, shape[2], x.shape[-1]))
        unroll = self._unrolls(seqs.shape[1])
        if self.unroll == "auto":  # Decided per trace, from this call's static sequence length.
            for rnn in [self.rnn.forward_layer, self.rnn.backward_layer] if self.bidirectional else [self.rnn]:
                rnn.unroll = unroll
        if unroll is True and self._compiles():
            y = _xla_function(lambda s: self.rnn(s, training=training))(seqs)
        else:
            y = self.rnn(seqs, training=training)
        y = ops.reshape(y, (shape[0], shape[1], shape[2], self.output_channels))
        return ops.transpose(y, (0, 2, 1, 3)) if self._transpose else y

    def _scan(self, inputs):
        """Each direction's scan cell along the rows (columns), merged."""
        outputs = [cell(inputs, axis=1 if self._transpose else 2) for cell in self.scan_cells]
        return self._merge(*outputs) if self.bidirectional else outputs[0]

    def _unrolls(self, seq_len) -> bool:
        """Whether the sweep runs as a fixed graph (unrolled; for scan cells: a known
        length, so the scan's chunking is static), which XLA may compile."""
        if self._scans:
            return seq_len is not None
        return self._resolve_unroll(seq_len) if self.unroll == "auto" else self.unroll

    def _fuses(self, shape, training) -> bool:
        """Where a float32 bidirectional LSTM or GRU would compile unrolled, a training
        call runs `fused_lstm.bidirectional_lstm_sweep` or
        `fused_gru.bidirectional_gru_sweep` (same results, faster training; inference
        stays on the compiled Keras layer, which is as fast there)."""
        seq_len = shape[1] if self._transpose else shape[2]
        return (
            training is True and self.cell in ("lstm", "gru") and self.bidirectional
            and self.compute_dtype == "float32"
            and self.use_cudnn is not True  # Keras refuses it on a CPU: so does the fused sweep.
            and seq_len is not None and self._unrolls(seq_len) is True and self._compiles()
        )

    def _fused(self, inputs):
        if self.cell == "lstm":
            from crnn_keras.layers.fused_lstm import bidirectional_lstm_sweep as sweep
        else:
            from crnn_keras.layers.fused_gru import bidirectional_gru_sweep as sweep

        inputs = ops.cast(inputs, self.compute_dtype)  # As Keras's RNNs do, also with `autocast=False`.
        y = sweep(inputs, self.rnn.forward_layer.cell, self.rnn.backward_layer.cell, transpose=self._transpose)
        return y if self.merge_mode == "concat" else self._merge(y[..., :self.units], y[..., self.units:])

    def _merge(self, forward, backward):
        """The two directions' outputs, combined by `merge_mode`."""
        if self.merge_mode == "concat":
            return ops.concatenate([forward, backward], axis=-1)
        if self.merge_mode == "sum":
            return forward + backward
        if self.merge_mode == "mul":
            return forward * backward
        return (forward + backward) / 2.0

    def _compiles(self) -> bool:
        """`jit_compile="auto"`: a traced TensorFlow call of a named or scan cell
        without dropout, not already inside an XLA-compiled function (whose nested
        compiled functions TensorFlow would compile again at every step)."""
        if self.jit_compile is False or not (isinstance(self.cell, str) or self._scans) or self.dropout or \
                self.recurrent_dropout:
            return False
        if keras.backend.backend() != "tensorflow":
            return False
        import tensorflow as tf

        return not tf.executing_eagerly() and not _in_xla_context()

    def compute_output_shape(self, input_shape):
        _check_rank4(input_shape, type(self).__name__)
        return tuple(input_shape[:3]) + (self.output_channels,)

    def get_config(self):
        config = super().get_config()
        cell = self.cell
        if not isinstance(cell, str):
            cell = keras.saving.serialize_keras_object(cell)
        config.update(
            units=self.units,
            cell=cell,
            bidirectional=self.bidirectional,
            merge_mode=self.merge_mode,
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            use_cudnn=self.use_cudnn,
            unroll=self.unroll,
            jit_compile=self.jit_compile,
        )
        return config


@keras.saving.register_keras_serializable(package="crnn_keras")
class ColumnSweep(RowSweep):
    """Sweeps a recurrent network along every column of a feature map.

    The same as `RowSweep` with the roles of height and width swapped: each
    column is a sequence along the height axis, and a column sweep of a map
    equals the transposed row sweep of the transposed map. All arguments are
    those of `RowSweep`.

    Example:

    >>> x = keras.random.normal((2, 5, 7, 3))
    >>> tuple(ColumnSweep(4, cell="gru", merge_mode="sum")(x).shape)
    (2, 5, 7, 4)
    """

    _transpose = True


@keras.saving.register_keras_serializable(package="crnn_keras")
class SpatialSweep2D(keras.layers.Layer):
    """A row sweep and a column sweep over a feature map, composed.

    With `order="rows_then_columns"` (ReNet-style) the column sweep reads the
    row sweep's output, so every output position depends on the whole map.
    `"columns_then_rows"` is the transpose. With `"parallel"` both sweeps read
    the same input and their outputs are merged by `parallel_merge`
    (`"concat"` or `"sum"`).

    `"cross_scan"` is VMamba's SS2D cross-scan (Liu et al. 2024): the map is
    read as one sequence of `height * width` steps in row-major order (the row
    sweep's cell, both directions) and one in column-major order (the column
    sweep's cell, both directions), so each of the four routes carries context
    across the whole map; a 1x1 fusion (a `Dense` on the channels,
    `route_fuse`) merges them to the sweep's output channels. Any cell works;
    the scan cells suit its long sequences best.

    Args:
        units: positive int, hidden size of each direction of each sweep.
        order: `"rows_then_columns"`, `"columns_then_rows"`, `"parallel"` or
            `"cross_scan"`.
        parallel_merge: `"concat"` or `"sum"`, for `order="parallel"`.
        cell, bidirectional, merge_mode, dropout, recurrent_dropout,
        use_cudnn, unroll, jit_compile: as in `RowSweep`, shared by both
        sweeps. Where both sweeps compile, XLA compiles them as one function.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Input shape: `(batch, height, width, channels)`. Output shape:
        `(batch, height, width, D)` with `D` the sweep's output channels,
        doubled for a parallel concat.

    Example:

    >>> x = keras.random.normal((2, 6, 6, 3))
    >>> tuple(SpatialSweep2D(8)(x).shape)
    (2, 6, 6, 16)
    >>> tuple(SpatialSweep2D(8, order="parallel", parallel_merge="concat")(x).shape)
    (2, 6, 6, 32)
    >>> tuple(SpatialSweep2D(8, cell="mingru", order="cross_scan")(x).shape)
    (2, 6, 6, 16)
    """

    def __init__(
        self,
        units: int,
        cell: Any = "lstm",
        bidirectional: bool = True,
        merge_mode: str = "concat",
        order: str = "rows_then_columns",
        parallel_merge: str = "concat",
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        use_cudnn: Any = "auto",
        unroll: Any = "auto",
        jit_compile: Any = "auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.order = _check_choice("order", order, ORDERS)
        self.parallel_merge = _check_choice("parallel_merge", parallel_merge, PARALLEL_MERGES)
        sweep_args = dict(
            units=units,
            cell=cell,
            bidirectional=bidirectional,
            merge_mode=merge_mode,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            use_cudnn=use_cudnn,
            unroll=unroll,
            jit_compile=jit_compile,
            dtype=self.dtype_policy,
        )
        self.row_sweep = RowSweep(name="row_sweep", **sweep_args)
        self.column_sweep = ColumnSweep(name="column_sweep", **sweep_args)
        self.route_fuse = None

    @property
    def output_channels(self) -> int:
        channels = self.row_sweep.output_channels
        if self.order == "parallel" and self.parallel_merge == "concat":
            return 2 * channels
        return channels

    def build(self, input_shape):
        _check_rank4(input_shape, type(self).__name__)
        input_shape = tuple(input_shape)
        if self.order == "cross_scan":
            rows, columns = self._route_shapes(input_shape)
            self.row_sweep.build(rows)
            self.column_sweep.build(columns)
            self.route_fuse = keras.layers.Dense(self.output_channels, dtype=self.dtype_policy, name="route_fuse")
            self.route_fuse.build(input_shape[:3] + (2 * self.row_sweep.output_channels,))
        elif self.order == "parallel":
            self.row_sweep.build(input_shape)
            self.column_sweep.build(input_shape)
        else:
            first, second = self._ordered()
            first.build(input_shape)
            second.build(first.compute_output_shape(input_shape))
        self.built = True

    def _route_shapes(self, shape) -> tuple:
        """The map shapes the row and column sweeps see: the input's, or for
        `"cross_scan"` the map flattened to one row (one column) of `height * width`."""
        if self.order != "cross_scan":
            return tuple(shape), tuple(shape)
        length = shape[1] * shape[2] if shape[1] is not None and shape[2] is not None else None
        return (shape[0], 1, length, shape[3]), (shape[0], length, 1, shape[3])

    def _ordered(self):
        if self.order == "columns_then_rows":
            return self.column_sweep, self.row_sweep
        return self.row_sweep, self.column_sweep

    def call(self, inputs, training=None):
        if self._compiles_whole(inputs.shape, training):
            return _xla_function(lambda x: self._sweep(x, training))(inputs)
        return self._sweep(inputs, training)

    def _compiles_whole(self, shape, training=None) -> bool:
        """Where both sweeps would compile, XLA compiles them as one function:
        the transposes between them fuse (about 5% faster than two). Not where
        they run fused (`RowSweep._fuses`), which is faster still."""
        rows, columns = self._route_shapes(shape)
        if self.row_sweep._fuses(rows, training) or self.column_sweep._fuses(columns, training):
            return False  # (Sweeps keep the map's height and width, all `_fuses` reads.)
        return (
            self.row_sweep._compiles()
            and self.column_sweep._compiles()
            and self.row_sweep._unrolls(rows[2]) is True
            and self.column_sweep._unrolls(columns[1]) is True
        )

    def _sweep(self, inputs, training):
        if self.order == "cross_scan":
            return self._cross_scan(inputs, training)
        if self.order == "parallel":
            rows = self.row_sweep(inputs, training=training)
            cols = self.column_sweep(inputs, training=training)
            if self.parallel_merge == "concat":
                return ops.concatenate([rows, cols], axis=-1)
            return rows + cols
        first, second = self._ordered()
        return second(first(inputs, training=training), training=training)

    def _cross_scan(self, inputs, training):
        dynamic = ops.shape(inputs)
        batch, height, width = (d if d is not None else dynamic[i] for i, d in enumerate(inputs.shape[:3]))
        channels, out = inputs.shape[-1], self.row_sweep.output_channels
        length = height * width  # A Python int where both are known, so the scans' chunking stays static.
        rows = ops.reshape(inputs, (batch, 1, length, channels))
        columns = ops.reshape(ops.transpose(inputs, (0, 2, 1, 3)), (batch, length, 1, channels))
        rows = ops.reshape(self.row_sweep(rows, training=training), (batch, height, width, out))
        columns = ops.reshape(self.column_sweep(columns, training=training), (batch, width, height, out))
        routes = ops.concatenate([rows, ops.transpose(columns, (0, 2, 1, 3))], axis=-1)
        return self.route_fuse(routes)

    def compute_output_shape(self, input_shape):
        _check_rank4(input_shape, type(self).__name__)
        return tuple(input_shape[:3]) + (self.output_channels,)

    def get_config(self):
        config = super().get_config()
        sweep_config = self.row_sweep.get_config()
        config.update({key: sweep_config[key] for key in _SWEEP_ARGS})
        config.update(order=self.order, parallel_merge=self.parallel_merge)
        return config


@keras.saving.register_keras_serializable(package="crnn_keras")
class SweepBlock2D(keras.layers.Layer):
    """A residual sweep block in the Sequencer2D style (Tatsunami & Taki, NeurIPS 2022).

    `x + fuse(sweep(norm(x)))`: layer norm, a `SpatialSweep2D`, and a 1x1
    projection (a `Dense` on the channels) that fuses the sweep's row and
    column features back to the input's channels. Then, with `mlp_ratio > 0`,
    a residual channel MLP: `x + mlp(norm(x))`, hidden size `mlp_ratio *
    channels`, GELU. The output has the input's shape, so blocks stack, and
    each one adds to what the CNN saw rather than replacing it.

    Args:
        units: hidden size of each direction of each sweep.
        order: the `SpatialSweep2D` order; `"parallel"` (the default, as in
            Sequencer2D) runs the row and column sweeps on the same input.
        mlp_ratio: hidden size of the channel MLP over the channels; 0 for
            no MLP.
        cell, bidirectional, merge_mode, parallel_merge, dropout,
        recurrent_dropout, use_cudnn, unroll, jit_compile: as in
        `SpatialSweep2D`. Where its sweeps compile, XLA compiles the whole
        block as one function.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Input shape: `(batch, height, width, channels)`, known channels. Output
        shape: the same.

    Example:

    >>> x = keras.random.normal((2, 6, 6, 8))
    >>> block = SweepBlock2D(4)
    >>> tuple(block(x).shape)
    (2, 6, 6, 8)
    >>> SweepBlock2D.from_config(block.get_config()).mlp_ratio
    2
    """

    def __init__(
        self,
        units: int,
        cell: Any = "lstm",
        bidirectional: bool = True,
        merge_mode: str = "concat",
        order: str = "parallel",
        parallel_merge: str = "concat",
        mlp_ratio: int = 2,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        use_cudnn: Any = "auto",
        unroll: Any = "auto",
        jit_compile: Any = "auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, int) or mlp_ratio < 0:
            raise ValueError(f"`mlp_ratio` must be an integer >= 0 (0: no MLP), got mlp_ratio={mlp_ratio!r}.")
        self.mlp_ratio = mlp_ratio
        self.sweep = SpatialSweep2D(
            units, cell=cell, bidirectional=bidirectional, merge_mode=merge_mode, order=order,
            parallel_merge=parallel_merge, dropout=dropout, recurrent_dropout=recurrent_dropout,
            use_cudnn=use_cudnn, unroll=unroll, jit_compile=jit_compile, dtype=self.dtype_policy, name="sweep",
        )
        self.sweep_norm = keras.layers.LayerNormalization(epsilon=1e-6, dtype=self.dtype_policy, name="sweep_norm")
        self.mlp_norm = self.mlp_in = self.mlp_out = self.fuse = None

    def build(self, input_shape):
        _check_rank4(input_shape, type(self).__name__)
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{type(self).__name__} needs a known number of channels, got input shape {input_shape}.")
        dtype = self.dtype_policy
        self.sweep_norm.build(input_shape)
        self.sweep.build(input_shape)
        self.fuse = keras.layers.Dense(channels, dtype=dtype, name="fuse")
        self.fuse.build(tuple(input_shape[:-1]) + (self.sweep.output_channels,))
        if self.mlp_ratio:
            self.mlp_norm = keras.layers.LayerNormalization(epsilon=1e-6, dtype=dtype, name="mlp_norm")
            self.mlp_norm.build(input_shape)
            self.mlp_in = keras.layers.Dense(self.mlp_ratio * channels, activation="gelu", dtype=dtype, name="mlp_in")
            self.mlp_in.build(input_shape)
            self.mlp_out = keras.layers.Dense(channels, dtype=dtype, name="mlp_out")
            self.mlp_out.build(tuple(input_shape[:-1]) + (self.mlp_ratio * channels,))
        self.built = True

    def call(self, inputs, training=None):
        if self.sweep._compiles_whole(inputs.shape, training):  # Norms, sweeps and MLP as one XLA function.
            return _xla_function(lambda x: self._block(x, training))(inputs)
        return self._block(inputs, training)

    def _block(self, inputs, training):
        x = inputs + self.fuse(self.sweep(self.sweep_norm(inputs), training=training))
        if self.mlp_ratio:
            x = x + self.mlp_out(self.mlp_in(self.mlp_norm(x)))
        return x

    def compute_output_shape(self, input_shape):
        _check_rank4(input_shape, type(self).__name__)
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        sweep_config = self.sweep.get_config()
        config.update({key: sweep_config[key] for key in _SWEEP_ARGS})
        config.update(order=sweep_config["order"], parallel_merge=sweep_config["parallel_merge"],
                      mlp_ratio=self.mlp_ratio)
        return config
