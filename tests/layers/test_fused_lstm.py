import os
import shutil

import keras
import pytest
import tensorflow as tf

from crnn_keras.layers.fused_gru import bidirectional_gru_sweep
from crnn_keras.layers.fused_lstm import bidirectional_lstm_sweep


def _cells(rnn, steps=5, channels=6):
    layer = keras.layers.Bidirectional(rnn)
    layer.build((None, steps, channels))
    return layer.forward_layer.cell, layer.backward_layer.cell


@pytest.mark.parametrize("rnn,message", [
    (keras.layers.GRU(3), "LSTMCell"),
    (keras.layers.LSTM(3, dropout=0.1), "no dropout"),
    (keras.layers.LSTM(3, activation="relu"), "default activations"),
    (keras.layers.LSTM(3, use_bias=False), "with a bias"),
])
def test_other_cells_are_refused(rnn, message):
    with pytest.raises(ValueError, match=message):
        bidirectional_lstm_sweep(tf.zeros((2, 4, 5, 6)), *_cells(rnn))


# The map checks are `_check_sweep`'s, shared by both fused sweeps: tested here for both.
@pytest.mark.parametrize("sweep,rnn", [(bidirectional_lstm_sweep, keras.layers.LSTM),
                                       (bidirectional_gru_sweep, keras.layers.GRU)])
@pytest.mark.parametrize("shape,transpose", [((2, 4, 5, 7), False), ((4, 5, 6), False), ((2, None, 5, 6), True)])
def test_bad_maps_are_refused(sweep, rnn, shape, transpose):
    cells = _cells(rnn(3))
    run = tf.function(lambda x: sweep(x, *cells, transpose=transpose))
    with pytest.raises(ValueError, match=r"\(batch, height, width, 6\) map with a known"):
        run.get_concrete_function(tf.TensorSpec(shape))


class _PeepholeLSTMCell(keras.layers.LSTMCell):
    """A subclass may compute otherwise: refused, not run as a plain LSTM."""


def test_mismatched_cells_dtypes_and_subclasses_are_refused():
    def built(cell, channels=6):
        cell.build((None, channels))
        return cell

    x = tf.zeros((2, 4, 5, 6))
    with pytest.raises(ValueError, match=r"kernels differ in shape: \(6, 12\) and \(4, 12\)"):
        bidirectional_lstm_sweep(x, built(keras.layers.LSTMCell(3)), built(keras.layers.LSTMCell(3), channels=4))
    with pytest.raises(ValueError, match="differ in shape"):
        bidirectional_lstm_sweep(x, built(keras.layers.LSTMCell(3)), built(keras.layers.LSTMCell(4)))
    with pytest.raises(ValueError, match="a float64 map and float32 and float32 cells. Cast the map"):
        bidirectional_lstm_sweep(tf.zeros((2, 4, 5, 6), tf.float64), *_cells(keras.layers.LSTM(3)))
    with pytest.raises(ValueError, match="no mixed precision"):
        bidirectional_lstm_sweep(x, *_cells(keras.layers.LSTM(3, dtype="mixed_float16")))
    with pytest.raises(ValueError, match="LSTMCell"):
        bidirectional_lstm_sweep(x, built(_PeepholeLSTMCell(3)), built(_PeepholeLSTMCell(3)))


needs_compiler = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                                    reason="no C++ compiler for the native kernels (scripts/test.sh installs g++)")


def _grads(sweep, x, weights):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = sweep(x)
        loss = tf.reduce_sum(y * tf.cos(y))  # Uneven upstream gradients.
    return y, tape.gradient(loss, [x, *weights])


@pytest.mark.parametrize("implementation", [pytest.param("native", marks=needs_compiler), "xla"])
@pytest.mark.parametrize("transpose", [False, True])
def test_both_implementations_equal_keras_lstm_with_nonzero_biases(implementation, transpose):
    rnn = keras.layers.Bidirectional(keras.layers.LSTM(3, return_sequences=True, bias_initializer="random_normal"))
    x = tf.random.normal((3, 4, 5, 6), seed=1)  # 12 or 15 sequences: uneven chunks on 2 threads (for columns).
    rnn.build((None, 4 if transpose else 5, 6))
    cells = rnn.forward_layer.cell, rnn.backward_layer.cell
    weights = [w for cell in cells for w in (cell.kernel, cell.recurrent_kernel, cell.bias)]

    def keras_sweep(x):
        xs = tf.transpose(x, (0, 2, 1, 3)) if transpose else x
        y = tf.reshape(rnn(tf.reshape(xs, (-1, *xs.shape[2:]))), (*xs.shape[:3], 6))
        return tf.transpose(y, (0, 2, 1, 3)) if transpose else y

    got = _grads(lambda x: bidirectional_lstm_sweep(x, *cells, transpose, implementation=implementation), x, weights)
    want = _grads(keras_sweep, x, weights)
    assert got[0].shape == (3, 4, 5, 6)
    for a, b in zip([got[0], *got[1]], [want[0], *want[1]]):
        assert float(tf.reduce_max(tf.abs(a - b))) < 1e-5


@needs_compiler
def test_native_kernels_split_sequences_into_any_number_of_chunks():
    from crnn_keras.layers import native

    ops = native.load()
    units, steps, n = 3, 4, 7
    proj = tf.random.normal((steps, n, 8 * units), seed=2)
    rec = [tf.random.normal((units, 4 * units), seed=s) for s in (3, 4)]
    dy = tf.random.normal((steps, n, 2 * units), seed=5)
    runs = []
    for chunks in (1, 3, 7, 50):  # Uneven, one sequence each, more chunks than sequences.
        hs, acts, cells = ops.crnn_lstm_forward(proj, *rec, chunks=chunks)
        runs.append([hs, acts, cells, ops.crnn_lstm_backward(dy, acts, cells, *rec, chunks=chunks)])
    for run in runs[1:]:
        for a, b in zip(run, runs[0]):
            # Sequences are independent; only the kernels' vector and scalar tails round differently.
            assert float(tf.reduce_max(tf.abs(a - b))) < 1e-6
    with pytest.raises(tf.errors.InvalidArgumentError, match="recurrent kernels must be"):
        ops.crnn_lstm_forward(proj, rec[0][:, :4], rec[1])


def test_native_implementation_is_refused_where_it_cannot_run(monkeypatch):
    with pytest.raises(ValueError, match="float32 only.*float64"):
        bidirectional_lstm_sweep(tf.zeros((2, 4, 5, 6), tf.float64), *_cells(keras.layers.LSTM(3, dtype="float64")),
                                 implementation="native")
    cells = _cells(keras.layers.LSTM(3))
    monkeypatch.setenv("CRNN_KERAS_NATIVE", "0")
    with pytest.raises(ValueError, match="CRNN_KERAS_NATIVE=0"):
        bidirectional_lstm_sweep(tf.zeros((2, 4, 5, 6)), *cells, implementation="native")
    assert bidirectional_lstm_sweep(tf.zeros((2, 4, 5, 6)), *cells).shape == (2, 4, 5, 6)  # "auto": XLA.
    with pytest.raises(ValueError, match="implementation must be one of"):
        bidirectional_lstm_sweep(tf.zeros((2, 4, 5, 6)), *cells, implementation="cudnn")


@needs_compiler
def test_native_build_is_cached_and_a_failed_build_falls_back_with_a_warning(monkeypatch, tmp_path):
    from crnn_keras.layers import native

    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setenv("CRNN_KERAS_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with pytest.warns(RuntimeWarning, match="no C.. compiler.*runs in XLA instead"):
        assert native.load() is None
    assert list(tmp_path.iterdir()) == []  # Nothing half-written.
    assert native.load() is None  # Decided once per process.

    # A compiler that fails leaves no file behind either.
    fake = tmp_path / "fail.sh"
    fake.write_text("#!/bin/sh\necho 'broken build' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setenv("CXX", str(fake))
    with pytest.warns(RuntimeWarning, match="broken build"):
        assert native.load() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fail.sh"]

    # A library already in the cache is loaded without building.
    monkeypatch.undo()  # The environment as it was: the cache the tests above built into.
    monkeypatch.setattr(native, "_loaded", {})
    assert native.load() is not None
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setattr(native, "_build", lambda *a: pytest.fail("rebuilt a cached library"))
    assert native.load() is not None


@needs_compiler
def test_native_equals_xla_for_one_step_sweeps_and_empty_batches():
    cells = _cells(keras.layers.LSTM(3, bias_initializer="random_normal"), steps=1)
    weights = [w for cell in cells for w in (cell.kernel, cell.recurrent_kernel, cell.bias)]
    for x in (tf.random.normal((2, 3, 1, 6), seed=6), tf.zeros((0, 3, 1, 6))):
        runs = [_grads(lambda x, i=i: bidirectional_lstm_sweep(x, *cells, implementation=i), x, weights)
                for i in ("native", "xla")]
        for a, b in zip([runs[0][0], *runs[0][1]], [runs[1][0], *runs[1][1]]):
            assert a.shape == b.shape
            assert a.shape.num_elements() == 0 or float(tf.reduce_max(tf.abs(a - b))) < 1e-6


def test_inside_xla_auto_runs_the_xla_sweep_and_native_is_refused():
    cells = _cells(keras.layers.LSTM(3))
    x = tf.random.normal((2, 4, 5, 6))
    compiled = tf.function(lambda x: bidirectional_lstm_sweep(x, *cells), jit_compile=True)
    want = bidirectional_lstm_sweep(x, *cells, implementation="xla")
    assert float(tf.reduce_max(tf.abs(compiled(x) - want))) < 1e-6
    with pytest.raises(ValueError, match="inside an XLA-compiled function"):
        tf.function(lambda x: bidirectional_lstm_sweep(x, *cells, implementation="native"), jit_compile=True)(x)


def test_auto_leaves_the_native_kernels_alone_with_a_gpu_visible(monkeypatch):
    from crnn_keras.layers import native

    real = tf.config.list_logical_devices
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else real(kind))
    monkeypatch.setattr(native, "load", lambda: pytest.fail("the native kernels are CPU-only"))
    assert bidirectional_lstm_sweep(tf.zeros((2, 4, 5, 6)), *_cells(keras.layers.LSTM(3))).shape == (2, 4, 5, 6)
