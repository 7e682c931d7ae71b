"""Scan cells and the cross-scan order: against plain step-by-step loops (outputs and
gradients) on TensorFlow here and on JAX and PyTorch in subprocesses."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import ops

from crnn_keras.layers import (ColumnSweep, MinGRU, RowSweep, SelectiveScan, SpatialSweep2D, SweepBlock2D,
                               linear_scan)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _sigmoid(x):
    return 1.0 / (1.0 + ops.exp(-x))


def _g(x):  # Feng et al.'s log-space candidate activation.
    return ops.where(x >= 0, x + 0.5, _sigmoid(x))


def _step(cell, h, x, weights):
    """One step of `cell`'s recurrence from the formulas; returns (state, output)."""
    kernel, bias = weights[:2]
    p = ops.matmul(x, kernel) + bias
    units = weights[0].shape[1] // {"mingru": 2, "minlstm": 3}.get(cell, 1)
    if cell == "mingru":
        z, cand = _sigmoid(p[..., :units]), _g(p[..., units:])
        h = (1.0 - z) * h + z * cand
        return h, h
    if cell == "minlstm":
        f, i, cand = _sigmoid(p[..., :units]), _sigmoid(p[..., units:2 * units]), _g(p[..., 2 * units:])
        h = f / (f + i) * h + i / (f + i) * cand
        return h, h
    a_log, d = weights[2:]
    units, n = a_log.shape
    u, dt, z = p[..., :units], ops.log(1.0 + ops.exp(p[..., units:2 * units])), p[..., 2 * units:3 * units]
    b_in, c_out = p[..., 3 * units:3 * units + n], p[..., 3 * units + n:]
    h = ops.exp(dt[..., None] * -ops.exp(a_log)) * h + (dt * u)[..., None] * b_in[..., None, :]
    y = ops.sum(h * c_out[..., None, :], -1) + d * u
    return h, y * z * _sigmoid(z)


def _loop_sweep(cell, x, weights, axis, backwards):
    """`cell` run step by step along `axis` of the map `x`."""
    steps = x.shape[axis]
    take = (lambda t: x[:, :, t]) if axis == 2 else (lambda t: x[:, t])
    h = 0.0
    outputs = [None] * steps
    for t in reversed(range(steps)) if backwards else range(steps):
        h, outputs[t] = _step(cell, h, take(t), weights)
    return ops.stack(outputs, axis)


def _compiled(fn):
    """`fn` compiled on JAX (run op by op, the loops take minutes there)."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    return fn


def _grads(fn, args):
    """Gradients of the scalar `fn(*args)` in every argument, on this backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        args = [tf.constant(a) for a in args]
        with tf.GradientTape() as tape:
            tape.watch(args)
            value = fn(*args)
        return [np.asarray(g) for g in tape.gradient(value, args)]
    if backend == "jax":
        import jax

        return [np.asarray(g) for g in jax.jit(jax.grad(fn, argnums=tuple(range(len(args)))))(*args)]
    import torch

    args = [torch.tensor(a, requires_grad=True) for a in args]
    fn(*args).backward()
    return [a.grad.numpy() for a in args]


CELLS = {"mingru": "mingru", "minlstm": "minlstm", "selective": SelectiveScan(3, state_size=2)}


def _sweep_errors(name, cell, cls, shape, rng) -> dict:
    """A bidirectional sweep of `cell` against the loop: the largest output and gradient
    errors (relative to the largest value, where that exceeds 1)."""
    layer = cls(3, cell=cell, merge_mode="concat")
    layer.build(shape)
    x = rng.normal(size=shape).astype("float32")
    weights = [rng.normal(scale=0.5, size=w.shape).astype("float32") for w in layer.trainable_variables]
    half = len(weights) // 2
    axis = 1 if cls is ColumnSweep else 2

    def swept(x, *w):
        return layer.stateless_call(list(w), [], x)[0]

    def looped(x, *w):
        x, w = ops.convert_to_tensor(x), [ops.convert_to_tensor(v) for v in w]
        return ops.concatenate([_loop_sweep(name, x, w[:half], axis, False),
                                _loop_sweep(name, x, w[half:], axis, True)], -1)

    outputs = [np.asarray(ops.convert_to_numpy(_compiled(fn)(x, *weights))) for fn in (swept, looped)]
    grads = [_grads(lambda *a, fn=fn: ops.sum(ops.sin(fn(*a)) * 3.0), [x, *weights]) for fn in (swept, looped)]
    return {"output": float(np.abs(outputs[0] - outputs[1]).max() / max(1.0, np.abs(outputs[1]).max())),
            "grad": max(float(np.abs(a - b).max() / max(1.0, np.abs(b).max())) for a, b in zip(*grads))}


def check_against_loops(columns: bool = True) -> dict:
    """For each cell, bidirectional row and (with `columns`) column sweeps against the
    loop, at lengths that are padded to whole chunks (longer ones: `linear_scan`'s test)."""
    rng = np.random.default_rng(0)
    sweeps = ((RowSweep, (2, 2, 6, 4)), (ColumnSweep, (2, 9, 3, 4)))[:2 if columns else 1]
    errors = {f"{name}/{cls.__name__}": _sweep_errors(name, cell, cls, shape, rng)
              for name, cell in CELLS.items() for cls, shape in sweeps}
    block = SweepBlock2D(3, cell="minlstm", order="cross_scan", mlp_ratio=1)
    errors["cross_scan_shape"] = list(ops.shape(block(rng.normal(size=(2, 3, 5, 4)).astype("float32"))))
    return errors


def _assert_close(errors):
    for key, value in errors.items():
        if key != "cross_scan_shape":
            assert value["output"] < 1e-5 and value["grad"] < 1e-5, (key, value)
    assert errors["cross_scan_shape"] == [2, 3, 5, 4]


def test_scan_cells_equal_step_by_step_loops_on_tensorflow():
    _assert_close(check_against_loops())


@pytest.mark.slow
def test_scan_cells_equal_step_by_step_loops_on_jax_and_torch():
    backends = [b for b in ("jax", "torch") if __import__("importlib").util.find_spec(b)]
    if not backends:
        pytest.skip("neither JAX nor PyTorch is installed")
    # Rows only (columns differ in the axis alone, checked above): compiling the loops' gradients is slow on JAX.
    script = ("import json, keras; from tests.layers.test_scan import check_against_loops; "
              "print('RESULT ' + keras.backend.backend() + ' ' + json.dumps(check_against_loops(False)))")
    procs = {backend: subprocess.Popen(  # Side by side: most of each is start-up and compilation.
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu",
             "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}) for backend in backends}
    for backend, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        name, result = out.split("RESULT ", 1)[1].split(" ", 1)
        assert name == backend
        _assert_close(json.loads(result))


@pytest.mark.parametrize("length", [1, 4, 5, 16, 70])
@pytest.mark.parametrize("reverse", [False, True])
def test_linear_scan_equals_the_recurrence_with_extreme_coefficients(length, reverse):
    import tensorflow as tf

    rng = np.random.default_rng(length)
    # Coefficients that vanish or are 1, and large inputs: no range trick can fail here.
    a = rng.choice([0.0, 1e-30, 0.3, 0.999, 1.0], size=(3, length, 2)).astype("float32")
    b = (rng.normal(size=(3, length, 2)) * rng.choice([1e-3, 1.0, 1e4], size=(3, length, 2))).astype("float32")
    steps = range(length - 1, -1, -1) if reverse else range(length)
    expected, h = np.zeros_like(b), np.zeros_like(b[:, 0])
    for t in steps:
        h = a[:, t] * h + b[:, t]
        expected[:, t] = h
    np.testing.assert_allclose(np.asarray(linear_scan(a, b, axis=1, reverse=reverse)), expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max())
    # Its gradient, against TensorFlow's gradient of the same loop.
    dy = rng.normal(size=b.shape).astype("float32")
    at, bt = tf.constant(a), tf.constant(b)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([at, bt])
        scanned = tf.reduce_sum(linear_scan(at, bt, axis=1, reverse=reverse) * dy)
        h, hs = tf.zeros_like(bt[:, 0]), [None] * length
        for t in steps:
            h = at[:, t] * h + bt[:, t]
            hs[t] = h
        looped = tf.reduce_sum(tf.stack(hs, 1) * dy)
    for mine, theirs in zip(tape.gradient(scanned, [at, bt]), tape.gradient(looped, [at, bt])):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-5 * np.abs(theirs).max())


def _traced(layer, signature=None):
    import tensorflow as tf

    @tf.function(input_signature=signature)
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.cos(y))
        return y, tape.gradient(loss, [x] + layer.trainable_variables)

    return run


def _xla_functions(fn, *args):
    graph = fn.get_concrete_function(*args).graph.as_graph_def()
    return sum("_XlaMustCompile" in f.attr and f.attr["_XlaMustCompile"].b for f in graph.library.function)


def test_traced_scan_sweeps_compile_and_unknown_sizes_loop_with_equal_results(cell="selective"):
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(1).normal(size=(2, 5, 7, 4)).astype("float32"))
    layer = SweepBlock2D(3, cell=cell, order="parallel", mlp_ratio=0)
    plain = SweepBlock2D.from_config({**layer.get_config(), "jit_compile": False})
    layer(x), plain(x)
    plain.set_weights(layer.get_weights())
    compiled, eager = _traced(layer), _traced(plain)
    assert _xla_functions(compiled, x) >= 1 and _xla_functions(eager, x) == 0
    # Unknown height and width: the scans run as loops (`_loop_scan`).
    dynamic = _traced(plain, [tf.TensorSpec((None, None, None, 4))])
    (y, grads), *others = compiled(x), eager(x), dynamic(x)
    for y_other, grads_other in others:
        np.testing.assert_allclose(y_other, y, atol=1e-5)
        for a, b in zip(grads_other, grads):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_cross_scan_routes_read_the_whole_map_in_raster_order():
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(2).normal(size=(1, 3, 4, 2)).astype("float32"))
    layer = SpatialSweep2D(2, cell="mingru", order="cross_scan", bidirectional=False)
    layer(x)
    assert layer.output_channels == 2 and len(layer.route_fuse.weights) == 2
    # One direction only: the row-major route at (1, 1) has read rows 0 and (1, 0..1), the
    # column-major one columns 0 and (0..1, 1); together, every position before either.
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = tf.reduce_sum(layer(x)[0, 1, 1])
    seen = np.abs(tape.gradient(value, x).numpy()[0]).sum(-1) > 0
    expected = np.zeros((3, 4), bool)
    expected[0, :] = expected[1, :2] = True  # Row-major.
    expected[:, 0] = True
    expected[:2, 1] = True  # Column-major.
    np.testing.assert_array_equal(seen, expected)


def test_scan_sweeps_save_load_and_export_with_equal_outputs(tmp_path):
    import tensorflow as tf

    from crnn_keras.export import export_saved_model
    from crnn_keras.models import CRNNBackbone, CRNNImageClassifier

    backbone = CRNNBackbone(image_shape=(12, 12, 1), cnn={"type": "conv", "filters": [4], "convs_per_stage": 1},
                            sweep={"units": 3, "cell": "selective", "order": "cross_scan", "blocks": 1,
                                   "residual": True, "mlp_ratio": 1})
    model = CRNNImageClassifier(backbone, num_classes=3)
    x = np.random.default_rng(3).integers(0, 256, (2, 12, 12, 1)).astype("float32")
    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-6)
    path = export_saved_model(model, str(tmp_path / "export"))
    served = tf.saved_model.load(path).signatures["serve_tensor"](tf.constant(x))
    np.testing.assert_allclose(served["probabilities"], tf.nn.softmax(expected), atol=1e-5)
    # A scan cell instance keeps its own settings through a round trip.
    layer = RowSweep(4, cell=SelectiveScan(4, state_size=3))
    clone = RowSweep.from_config(layer.get_config())
    assert [c.state_size for c in clone.scan_cells] == [3, 3]
    assert [c.go_backwards for c in clone.scan_cells] == [False, True]


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_scan_cells_under_mixed_precision(policy):
    x = np.random.default_rng(4).normal(size=(2, 4, 6, 3)).astype("float32")
    reference = SpatialSweep2D(4, cell="selective", order="cross_scan")
    expected = np.asarray(reference(x))
    keras.mixed_precision.set_global_policy(policy)
    try:
        layer = SpatialSweep2D(4, cell="selective", order="cross_scan")
        layer(x)
        layer.set_weights(reference.get_weights())
        y = layer(x)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert keras.backend.standardize_dtype(y.dtype) == policy.split("_")[1]
    assert all(w.dtype == "float32" for w in layer.weights)
    np.testing.assert_allclose(np.asarray(ops.cast(y, "float32")), expected, atol=0.1)


@pytest.mark.parametrize("kwargs,message", [
    ({"cell": "mingru", "dropout": 0.1}, "scan cell 'mingru' has neither"),
    ({"cell": "transformer"}, "'mingru', 'minlstm', 'selective'"),
    ({"cell": MinGRU(5)}, "outputs 5 features"),
])
def test_bad_scan_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RowSweep(4, **kwargs)
    with pytest.raises(ValueError, match="state_size=0"):
        SelectiveScan(4, state_size=0)
