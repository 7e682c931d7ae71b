import numpy as np
import pytest
import keras
import tensorflow as tf

from crnn_keras.layers import sweep as sweep_module
from crnn_keras.layers import ColumnSweep, RowSweep, SpatialSweep2D, SweepBlock2D

RNG = np.random.default_rng(0)


def _map(b=2, h=3, w=5, c=4):
    return RNG.normal(size=(b, h, w, c)).astype("float32")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _numpy_lstm(seq, kernel, recurrent, bias, reverse=False):
    """Keras-convention LSTM (gates i, f, c, o) written out in numpy."""
    b, t, _ = seq.shape
    units = recurrent.shape[0]
    h = np.zeros((b, units))
    c = np.zeros((b, units))
    out = np.zeros((b, t, units))
    steps = range(t - 1, -1, -1) if reverse else range(t)
    for s in steps:
        z = seq[:, s] @ kernel + h @ recurrent + bias
        i, f, g, o = np.split(z, 4, axis=-1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        out[:, s] = h
    return out


def test_row_sweep_matches_numpy_lstm_reference():
    x = _map()
    layer = RowSweep(3)
    y = keras.ops.convert_to_numpy(layer(x))
    fk, fr, fb, bk, br, bb = layer.get_weights()
    for row in range(x.shape[1]):
        fwd = _numpy_lstm(x[:, row], fk, fr, fb)
        bwd = _numpy_lstm(x[:, row], bk, br, bb, reverse=True)
        np.testing.assert_allclose(y[:, row], np.concatenate([fwd, bwd], -1), atol=1e-5)


@pytest.mark.parametrize("cell,ref_cls", [("lstm", keras.layers.LSTM), ("gru", keras.layers.GRU)])
def test_row_sweep_equals_bidirectional_on_each_row(cell, ref_cls):
    x = _map()
    layer = RowSweep(6, cell=cell)
    y = keras.ops.convert_to_numpy(layer(x))
    ref = keras.layers.Bidirectional(ref_cls(6, return_sequences=True))
    ref.build((None, x.shape[2], x.shape[3]))
    # Same weight order as the plain Keras layer: forward (kernel, recurrent, bias), then backward.
    ref.set_weights(layer.get_weights())
    for row in range(x.shape[1]):
        np.testing.assert_allclose(y[:, row], ref(x[:, row]), atol=1e-5)


def test_lstm_weights_are_in_keras_bidirectional_order():
    layer = RowSweep(5)
    layer.build((None, None, None, 4))
    ref = keras.layers.Bidirectional(keras.layers.LSTM(5))
    ref.build((None, None, 4))
    assert [w.shape for w in layer.weights] == [w.shape for w in ref.weights]
    names = [w.path.split("/")[-3:] for w in layer.weights]
    assert [n[0] for n in names] == ["forward_lstm"] * 3 + ["backward_lstm"] * 3
    assert [n[-1] for n in names] == ["kernel", "recurrent_kernel", "bias"] * 2


def test_column_sweep_equals_row_sweep_of_transposed_map():
    x = _map(h=4, w=6)
    cols = ColumnSweep(3, cell="gru", merge_mode="sum")
    y = keras.ops.convert_to_numpy(cols(x))
    rows = RowSweep(3, cell="gru", merge_mode="sum")
    rows.build((None, None, None, x.shape[-1]))
    rows.set_weights(cols.get_weights())
    ref = keras.ops.convert_to_numpy(rows(x.transpose(0, 2, 1, 3))).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_single_row_map_equals_plain_sequence_layer():
    x = _map(h=1, w=7)
    layer = RowSweep(4, cell="simple_rnn", merge_mode="ave")
    y = keras.ops.convert_to_numpy(layer(x))
    ref = keras.layers.Bidirectional(
        keras.layers.SimpleRNN(4, return_sequences=True), merge_mode="ave"
    )
    ref.build((None, 7, x.shape[-1]))
    ref.set_weights(layer.get_weights())
    np.testing.assert_allclose(y[:, 0], ref(x[:, 0]), atol=1e-5)


def test_spatial_sweep_orders_compose_the_axis_sweeps():
    x = _map(h=4, w=5)
    for order in ("rows_then_columns", "columns_then_rows", "parallel"):
        layer = SpatialSweep2D(3, order=order, parallel_merge="sum")
        y = keras.ops.convert_to_numpy(layer(x))
        rows, cols = layer.row_sweep, layer.column_sweep
        if order == "rows_then_columns":
            ref = cols(rows(x))
        elif order == "columns_then_rows":
            ref = rows(cols(x))
        else:
            ref = rows(x) + cols(x)
        np.testing.assert_allclose(y, ref, atol=1e-5)
        assert y.shape == (2, 4, 5, 6)


def test_rows_then_columns_output_depends_on_every_input_position():
    x = _map(b=1, h=4, w=5, c=2)
    layer = SpatialSweep2D(3)
    import tensorflow as tf

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        # Both directions together (one direction alone sees only one side).
        corner = tf.reduce_sum(layer(xt)[0, 0, 0, :])
    grad = tape.gradient(corner, xt).numpy()
    assert np.all(np.abs(grad).sum(-1) > 0)
    # A single row sweep sees only its own row.
    with tf.GradientTape() as tape:
        tape.watch(xt)
        corner = tf.reduce_sum(RowSweep(3)(xt)[0, 0, 0, :])
    grad = tape.gradient(corner, xt).numpy()
    assert np.all(np.abs(grad[0, 1:]).sum(-1) == 0) and np.all(np.abs(grad[0, 0]).sum(-1) > 0)


@pytest.mark.parametrize("shape", [(1, 1, 1, 3), (3, 1, 6, 3), (2, 6, 1, 3), (5, 7, 3, 3)])
def test_dynamic_height_width_and_batch(shape):
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, SpatialSweep2D(4, merge_mode="concat")(inputs))
    assert model.output_shape == (None, None, None, 8)
    y = model.predict(np.ones(shape, "float32"), verbose=0)
    assert y.shape == shape[:3] + (8,)
    assert np.all(np.isfinite(y))


def test_static_shapes_and_compute_output_shape():
    cases = [
        (RowSweep(4), 8),
        (RowSweep(4, bidirectional=False), 4),
        (ColumnSweep(4, merge_mode="mul"), 4),
        (SpatialSweep2D(4, order="parallel", parallel_merge="concat"), 16),
        (SpatialSweep2D(4, order="parallel", parallel_merge="sum", merge_mode="sum"), 4),
    ]
    for layer, channels in cases:
        assert layer.compute_output_shape((None, 6, 9, 2)) == (None, 6, 9, channels)
        inputs = keras.Input((6, 9, 2))
        assert layer(inputs).shape == (None, 6, 9, channels)


@pytest.mark.parametrize(
    "cls,kwargs",
    [
        (RowSweep, dict(units=4, cell="gru", merge_mode="sum", use_cudnn=False, unroll=True, dropout=0.1)),
        (ColumnSweep, dict(units=3, bidirectional=False, recurrent_dropout=0.2, use_cudnn=True)),
        (SpatialSweep2D, dict(units=3, cell=keras.layers.LSTMCell(3), order="columns_then_rows")),
        (SpatialSweep2D, dict(units=2, cell="simple_rnn", order="parallel", parallel_merge="sum", unroll=True)),
        (SpatialSweep2D, dict(units=2, jit_compile=False)),
    ],
)
def test_config_round_trip(cls, kwargs):
    layer = cls(**kwargs)
    config = layer.get_config()
    for key, value in kwargs.items():  # The constructor arguments, as given.
        if key == "cell" and not isinstance(value, str):
            assert config["cell"]["class_name"] == "LSTMCell" and config["cell"]["config"]["units"] == 3
        else:
            assert config[key] == value, key
    clone = cls.from_config(config)
    assert clone.get_config() == config
    for key in ("units", "merge_mode", "use_cudnn", "unroll", "jit_compile", "dropout", "recurrent_dropout", "order"):
        if key in kwargs:
            holder = clone.row_sweep if isinstance(clone, SpatialSweep2D) and key != "order" else clone
            assert getattr(holder, key) == kwargs[key], key


def test_use_cudnn_and_unroll_are_kept(tmp_path):
    inputs = keras.Input((4, 4, 2))
    layer = SpatialSweep2D(3, cell="gru", use_cudnn=False, unroll=True, order="parallel")
    model = keras.Model(inputs, layer(inputs))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    reloaded = loaded.layers[1]
    assert isinstance(reloaded, SpatialSweep2D)
    assert reloaded.row_sweep.use_cudnn is False and reloaded.row_sweep.unroll is True
    assert reloaded.row_sweep.rnn.forward_layer.unroll is True
    x = _map(h=4, w=4, c=2)
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-6)


def _inner_unroll(sweep):
    return sweep.rnn.forward_layer.unroll


def test_auto_unroll_is_default_and_equals_the_loop():
    auto, loop = SpatialSweep2D(4), SpatialSweep2D(4, unroll=False)
    x = _map(h=5, w=7)
    auto(x), loop(x)
    loop.set_weights(auto.get_weights())
    grads = []
    for layer in (auto, loop):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x) ** 2)
        grads.append(tape.gradient(loss, layer.trainable_variables))
    assert auto.get_config()["unroll"] == "auto"
    assert _inner_unroll(auto.row_sweep) is True and _inner_unroll(loop.row_sweep) is False
    np.testing.assert_allclose(auto(x), loop(x), atol=1e-6)
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_auto_unroll_keeps_the_loop_for_long_or_unknown_lengths():
    layer = RowSweep(2)
    assert layer(_map(w=17)).shape == (2, 3, 17, 4)
    assert _inner_unroll(layer) is False
    layer(_map(w=16))
    assert _inner_unroll(layer) is True
    # Built on a static shape, then traced with an unknown width: no unrolling.
    fn = tf.function(layer, input_signature=[tf.TensorSpec((None, None, None, 4))])
    assert fn(_map(w=9)).shape == (2, 3, 9, 4)
    assert _inner_unroll(layer) is False


def test_auto_unroll_leaves_cudnn_on_gpus(monkeypatch):
    monkeypatch.setattr(sweep_module, "_gpu_visible", lambda: True)
    assert RowSweep(2)._resolve_unroll(8) is False
    assert RowSweep(2, use_cudnn=False)._resolve_unroll(8) is True
    assert RowSweep(2, cell="simple_rnn")._resolve_unroll(8) is True
    # Nor do the fused sweeps take over training there (checked in a graph, as traced).
    with tf.Graph().as_default():
        for cell in ("lstm", "gru"):
            assert not RowSweep(2, cell=cell)._fuses((2, 3, 8, 4), True)
            monkeypatch.setattr(sweep_module, "_gpu_visible", lambda: False)
            assert RowSweep(2, cell=cell)._fuses((2, 3, 8, 4), True)
            monkeypatch.setattr(sweep_module, "_gpu_visible", lambda: True)


def _xla_functions(fn, *args):
    """How many functions of `fn`'s graph (and its gradient's) XLA must compile."""
    graph = fn.get_concrete_function(*args).graph.as_graph_def()
    return sum("_XlaMustCompile" in f.attr and f.attr["_XlaMustCompile"].b for f in graph.library.function)


def _traced_grads(layer, loss=lambda y: tf.reduce_sum(y**2), training=True, input_signature=None, wrt_input=False):
    """A traced call of `layer`: its output and the gradients of `loss(output)`."""
    @tf.function(input_signature=input_signature)
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            value = loss(y)
        return y, tape.gradient(value, ([x] if wrt_input else []) + layer.trainable_variables)
    return run


def _assert_same_run(a, b):
    (ya, ga), (yb, gb) = a, b
    np.testing.assert_allclose(ya, yb, atol=1e-5)
    assert len(ga) == len(gb)
    for u, v in zip(ga, gb):
        # Relative too, to each gradient's own scale: a block's bias gradients sum to 100-400
        # terms, and XLA's float32 sums round differently (1e-5 off in an element near 0).
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-5 + 1e-6 * float(np.abs(v).max()))


# A simple RNN: LSTM and GRU training calls run the fused sweeps (their own test, below).
@pytest.mark.parametrize("cell,layer", [("simple_rnn", SpatialSweep2D), ("simple_rnn", SweepBlock2D)])
def test_traced_sweeps_compile_with_xla_and_equal_the_plain_ones(cell, layer):
    keras.utils.set_random_seed(0)  # The same weights and map whichever tests ran before.
    auto, plain = layer(4, cell=cell), layer(4, cell=cell, jit_compile=False)
    x = np.random.default_rng(0).normal(size=(2, 5, 7, 4)).astype("float32")
    auto(x), plain(x)
    plain.set_weights(auto.get_weights())

    runs = _traced_grads(auto), _traced_grads(plain)
    assert _xla_functions(runs[0], x) >= 1 and _xla_functions(runs[1], x) == 0
    _assert_same_run(runs[0](x), runs[1](x))
    # Not inside a function XLA compiles already (model.compile(jit_compile=True)), where
    # TensorFlow would compile a nested one again at every call.
    assert _xla_functions(tf.function(lambda x: auto(x), jit_compile=True), x) == 0
    # Not where XLA would not help or cannot run: a loop, dropout, or a custom cell.
    for layer in (RowSweep(4, unroll=False), RowSweep(4, dropout=0.1), RowSweep(4, cell=keras.layers.LSTMCell(4))):
        assert _xla_functions(tf.function(lambda x, layer=layer: layer(x, training=True)), x) == 0
    with pytest.raises(ValueError, match="jit_compile=True.*'auto', False"):
        RowSweep(2, jit_compile=True)


@pytest.mark.parametrize(
    "make", [SpatialSweep2D, lambda units: SpatialSweep2D(units, order="parallel"), SweepBlock2D]
)
def test_both_sweeps_compile_as_one_function(monkeypatch, make):
    compiled = []
    real = sweep_module._xla_function
    monkeypatch.setattr(sweep_module, "_xla_function", lambda fn: compiled.append(fn) or real(fn))
    layer, x = make(4), _map(h=5, w=7)
    layer(x)  # Built eagerly (not compiled).
    tf.function(lambda x: layer(x))(x)
    assert [fn.__qualname__.split(".")[0] for fn in compiled] == [type(layer).__name__]  # The whole layer.
    # A sweep that cannot compile (here: a loop over 20 rows) leaves the other to compile alone.
    compiled.clear()
    tf.function(lambda x: layer(x))(_map(h=20, w=7))
    assert len(compiled) == 1


def _counting_fused(monkeypatch):
    """Records the cell of every fused sweep that runs."""
    from crnn_keras.layers import fused_gru, fused_lstm

    calls = []
    for module, cell in ((fused_lstm, "lstm"), (fused_gru, "gru")):
        name = f"bidirectional_{cell}_sweep"
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, real=real, cell=cell, **k: calls.append(cell) or real(*a, **k))
    return calls


@pytest.mark.parametrize("make", [
    lambda: RowSweep(4), lambda: ColumnSweep(4, merge_mode="mul"), lambda: RowSweep(4, merge_mode="ave"),
    lambda: SpatialSweep2D(4, merge_mode="sum"), lambda: SweepBlock2D(4),
    lambda: SpatialSweep2D(4, cell="gru", order="parallel"),
])
def test_fused_training_sweep_equals_the_keras_layer(monkeypatch, make):
    calls = _counting_fused(monkeypatch)
    fused = make()
    plain = type(fused).from_config({**fused.get_config(), "jit_compile": False})
    x = tf.constant(_map(b=3, h=5, w=7, c=6))
    fused(x), plain(x)
    plain.set_weights(fused.get_weights())

    for training in (True, False):
        calls.clear()
        runs = [_traced_grads(layer, lambda y: tf.reduce_sum(y * tf.cos(y)), training,  # Uneven upstream grads.
                              [tf.TensorSpec((None, 5, 7, 6))], wrt_input=True)(x) for layer in (fused, plain)]
        # Training calls run the fused sweep; inference keeps the compiled Keras layer.
        assert set(calls) == ({fused.get_config()["cell"]} if training else set())
        assert len(runs[0][1]) == 1 + len(fused.trainable_variables)
        _assert_same_run(*runs)


def test_fused_sweep_only_where_it_applies(monkeypatch):
    calls = _counting_fused(monkeypatch)
    x = tf.constant(_map(h=5, w=7))

    def built(layer):
        layer.build(x.shape)
        return layer

    def train(layer, **kwargs):
        tf.function(lambda x: layer(x, training=True), **kwargs)(x)

    for layer in (RowSweep(4, cell="simple_rnn"), RowSweep(4, bidirectional=False), RowSweep(4, jit_compile=False),
                  RowSweep(4, unroll=False), RowSweep(4, dropout=0.1), RowSweep(4, dtype="mixed_bfloat16")):
        train(built(layer))
    built(RowSweep(4))(x, training=True)  # Eager.
    train(built(RowSweep(4)), jit_compile=True)  # Inside an XLA function already.
    with pytest.raises(ValueError, match="use_cudnn=True"):  # Refused on a CPU, as by Keras's LSTM.
        train(built(RowSweep(4, use_cudnn=True)))
    assert calls == []
    train(built(RowSweep(4))), train(built(RowSweep(4, cell="gru")))
    assert calls == ["lstm", "gru"]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fused_sweep_takes_other_input_dtypes_and_sparse_gradients(cell):
    x = tf.constant(_map(h=3, w=5), dtype="float64")
    fused, plain = RowSweep(3, cell, autocast=False), RowSweep(3, cell, autocast=False, jit_compile=False)
    fused.build(x.shape), plain.build(x.shape)
    plain.set_weights(fused.get_weights())

    loss = lambda y: tf.reduce_sum(tf.gather(y, [0]) ** 2)  # noqa: E731  Its gradient is IndexedSlices.
    runs = [_traced_grads(layer, loss)(x) for layer in (fused, plain)]
    assert runs[0][0].dtype == runs[1][0].dtype == tf.float32
    _assert_same_run(*runs)


def test_unroll_values_are_checked():
    assert RowSweep(2, unroll=1).unroll is True
    with pytest.raises(ValueError, match="unroll='yes'.*'auto'"):
        RowSweep(2, unroll="yes")


def test_custom_cell_instance_is_wrapped_in_rnn():
    layer = RowSweep(3, cell=keras.layers.GRUCell(3))
    y = layer(_map())
    assert y.shape == (2, 3, 5, 6)
    assert type(layer.rnn.forward_layer) is keras.layers.RNN
    assert isinstance(layer.rnn.forward_layer.cell, keras.layers.GRUCell)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy):
    keras.mixed_precision.set_global_policy(policy)
    layer = SpatialSweep2D(4)
    y = layer(_map())
    assert keras.backend.standardize_dtype(y.dtype) == policy.split("_")[1]
    assert all(w.dtype == "float32" for w in layer.weights)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(y, "float32"))))


def test_gradients_reach_every_weight():
    import tensorflow as tf

    layer = SpatialSweep2D(3, order="parallel")
    x = tf.constant(_map())
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert len(grads) == 12
    assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)


def test_training_lowers_loss_on_a_context_task():
    # The label compares the two far corners of the map: no local window sees both.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 6, 6, 1)).astype("float32")
    y = (x[:, 0, 0, 0] > x[:, -1, -1, 0]).astype("float32")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 1))
    h = SpatialSweep2D(8)(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(1, activation="sigmoid")(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(0.02), "binary_crossentropy")
    history = model.fit(x, y, epochs=8, batch_size=32, verbose=0).history["loss"]
    assert history[-1] < 0.7 * history[0], history


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"units": 0}, "units"),
        ({"units": -3}, "units"),
        ({"units": 4, "cell": "transformer"}, "'lstm', 'gru', 'simple_rnn'"),
        ({"units": 4, "cell": 3}, "RNN cell instance"),
        ({"units": 4, "merge_mode": "max"}, "merge_mode='max'"),
        ({"units": 4, "dropout": 1.5}, "dropout"),
        ({"units": 4, "use_cudnn": "yes"}, "use_cudnn"),
        ({"units": 4, "cell": keras.layers.LSTMCell(5)}, "outputs 5 features"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RowSweep(**kwargs)


def test_bad_order_raises():
    with pytest.raises(ValueError, match="order='diagonal'.*rows_then_columns"):
        SpatialSweep2D(4, order="diagonal")
    with pytest.raises(ValueError, match="parallel_merge"):
        SpatialSweep2D(4, parallel_merge="max")


@pytest.mark.parametrize("layer_cls", [RowSweep, ColumnSweep, SpatialSweep2D])
def test_wrong_rank_raises(layer_cls):
    with pytest.raises(ValueError, match="rank-4 input.*rank 3"):
        layer_cls(4)(np.zeros((2, 5, 3), "float32"))
    with pytest.raises(ValueError, match="known number of channels"):
        layer_cls(4).build((None, 5, 5, None))


def _layer_norm(x, gamma, beta, eps=1e-6):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _gelu(x):
    from math import erf

    return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))


@pytest.mark.parametrize("mlp_ratio", [0, 2])
def test_sweep_block_is_a_residual_sweep_then_a_residual_mlp(mlp_ratio):
    from crnn_keras.layers import SweepBlock2D

    x = _map(h=3, w=4, c=6)
    block = SweepBlock2D(3, mlp_ratio=mlp_ratio)
    y = keras.ops.convert_to_numpy(block(x))
    # The same weights, composed by hand from an independent SpatialSweep2D and numpy.
    sweep = SpatialSweep2D(3, order="parallel")
    sweep.build(x.shape)
    sweep.set_weights(block.sweep.get_weights())
    gamma, beta = (keras.ops.convert_to_numpy(w) for w in block.sweep_norm.weights)
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in block.fuse.weights)
    ref = x + keras.ops.convert_to_numpy(sweep(_layer_norm(x, gamma, beta))) @ kernel + bias
    if mlp_ratio:
        g2, b2 = (keras.ops.convert_to_numpy(w) for w in block.mlp_norm.weights)
        k1, c1 = (keras.ops.convert_to_numpy(w) for w in block.mlp_in.weights)
        k2, c2 = (keras.ops.convert_to_numpy(w) for w in block.mlp_out.weights)
        ref = ref + _gelu(_layer_norm(ref, g2, b2) @ k1 + c1) @ k2 + c2
    assert y.shape == x.shape
    np.testing.assert_allclose(y, ref, atol=1e-4)
    assert len(block.weights) == 12 + 2 + 2 + (6 if mlp_ratio else 0)


def test_sweep_block_config_dynamic_shapes_and_bad_arguments(tmp_path):
    from crnn_keras.layers import SweepBlock2D

    inputs = keras.Input((None, None, 8))
    model = keras.Model(inputs, SweepBlock2D(4, cell="gru", order="rows_then_columns", mlp_ratio=1)(inputs))
    x = _map(h=5, w=3, c=8)
    path = str(tmp_path / "block.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    config = loaded.layers[-1].get_config()
    assert (config["cell"], config["order"], config["mlp_ratio"], config["units"]) == ("gru", "rows_then_columns", 1, 4)
    assert tuple(model(_map(h=2, w=7, c=8)).shape) == (2, 2, 7, 8)
    with pytest.raises(ValueError, match="mlp_ratio.*integer >= 0"):
        SweepBlock2D(4, mlp_ratio=-1)
    with pytest.raises(ValueError, match="known number of channels"):
        SweepBlock2D(4).build((None, 4, 4, None))


def test_sweeps_built_while_a_model_loads_leave_the_object_sharing_scope_alone():
    # Loading runs inside Keras's object-sharing scope, which matches objects by id().
    # Bidirectional copies the layer it wraps by serializing it; recorded there, a freed
    # copy's id can come back for another sweep's copy, and the load then hands that sweep
    # an earlier sweep's LSTM (seen: "Forward layer and backward layer should have
    # different `go_backwards`" on about one load in five of crnn_pathfinder).
    from keras.src.backend.common import global_state
    from keras.src.saving.serialization_lib import ObjectSharingScope

    with ObjectSharingScope():
        sweeps = [RowSweep(4), ColumnSweep(4, cell="gru"), SpatialSweep2D(4, cell="simple_rnn")]
        assert global_state.get_global_attribute("shared_objects/id_to_config_map") == {}
        assert global_state.get_global_attribute("shared_objects/id_to_obj_map") == {}
    rnns = [sweeps[0].rnn, sweeps[1].rnn, sweeps[2].row_sweep.rnn, sweeps[2].column_sweep.rnn]
    assert not any(r.forward_layer.go_backwards for r in rnns)
    assert all(r.backward_layer.go_backwards for r in rnns)
