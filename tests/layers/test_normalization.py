import numpy as np
import pytest
import keras
import tensorflow as tf

from crnn_keras.layers import BatchNormalization

RNG = np.random.default_rng(0)


def _pair(**kwargs):
    """Our layer and Keras's, built alike with the same (non-trivial) variables."""
    ours, theirs = BatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)
    for layer in (ours, theirs):
        layer.build((None, 5, 6, 3))
    weights = [RNG.normal(size=3).astype("float32") for _ in range(2)]
    stats = [RNG.normal(size=3).astype("float32"), RNG.uniform(0.5, 2, size=3).astype("float32")]
    for layer in (ours, theirs):
        layer.set_weights(weights[:int(layer.scale)] + weights[1:1 + int(layer.center)] + stats)
    return ours, theirs, stats


def _fused_ops(layer, x, training):
    graph = tf.function(lambda t: layer(t, training=training)).get_concrete_function(
        tf.TensorSpec(x.shape)).graph
    return [op.type for op in graph.get_operations() if op.type.startswith("FusedBatchNorm")]


@pytest.mark.parametrize("training", [True, False])
def test_outputs_gradients_and_moving_statistics_equal_keras(training):
    x = tf.constant(RNG.normal(2.0, 3.0, size=(4, 5, 6, 3)).astype("float32"))
    ours, theirs, stats = _pair(momentum=0.9)
    assert _fused_ops(ours, x, training) and not _fused_ops(theirs, x, training)
    results = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(y * tf.sin(y))
        grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append([y, *grads, layer.moving_mean, layer.moving_variance])
    for a, b in zip(*results):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    # Training moves the moving averages (by Keras's biased-variance rule, as compared above).
    moved = [not np.allclose(np.asarray(v), s) for v, s in zip((ours.moving_mean, ours.moving_variance), stats)]
    assert moved == [training, training]


@pytest.mark.parametrize("kwargs", [{"synchronized": True}, {"axis": 1}, {"epsilon": 1e-6},
                                    {"center": False, "scale": False}])
def test_options_the_fused_op_lacks_fall_back_to_keras(kwargs):
    x = tf.constant(RNG.normal(size=(4, 5, 6, 3)).astype("float32"))
    ours, theirs = BatchNormalization(**kwargs), keras.layers.BatchNormalization(**kwargs)
    np.testing.assert_allclose(ours(x, training=True), theirs(x, training=True), rtol=1e-5, atol=1e-5)
    if kwargs.get("center") is False:  # Fusable: constant scale and offset.
        assert _fused_ops(ours, x, True)
    else:
        assert not _fused_ops(ours, x, True)


def test_mixed_precision_matches_keras():
    x = tf.constant(RNG.normal(size=(4, 5, 6, 3)).astype("float32"))
    ours = BatchNormalization(dtype="mixed_float16")
    theirs = keras.layers.BatchNormalization(dtype="mixed_float16")
    a, b = ours(tf.cast(x, "float16"), training=True), theirs(tf.cast(x, "float16"), training=True)
    assert a.dtype == b.dtype == tf.float16
    np.testing.assert_allclose(np.asarray(a, "float32"), np.asarray(b, "float32"), atol=2e-3)


def test_weights_of_keras_batch_norm_models_load_and_config_round_trips(tmp_path):
    def model(norm):
        inputs = keras.Input((5, 6, 3))
        x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
        return keras.Model(inputs, norm(name="bn")(x))

    x = RNG.normal(size=(2, 5, 6, 3)).astype("float32")
    keras_model = model(keras.layers.BatchNormalization)
    keras_model.get_layer("bn").set_weights([RNG.uniform(0.5, 2, size=4).astype("float32") for _ in range(4)])
    keras_model.save_weights(tmp_path / "a.weights.h5")
    ours = model(BatchNormalization)
    ours.load_weights(tmp_path / "a.weights.h5")
    np.testing.assert_allclose(ours(x), keras_model(x), rtol=1e-5, atol=1e-5)
    ours.save(tmp_path / "ours.keras")
    loaded = keras.saving.load_model(tmp_path / "ours.keras")
    assert type(loaded.get_layer("bn")) is BatchNormalization
    np.testing.assert_allclose(loaded(x), ours(x), rtol=1e-6)
    layer = BatchNormalization(momentum=0.8, epsilon=2e-3)
    assert BatchNormalization.from_config(layer.get_config()).get_config() == layer.get_config()


def test_unknown_shapes_xla_and_frozen_layers_match_keras():
    x = tf.constant(RNG.normal(size=(4, 5, 6, 3)).astype("float32"))
    ours, theirs, _ = _pair(center=False)
    spec = tf.TensorSpec((None, None, None, 3))
    for jit in (False, True):
        fns = [tf.function(lambda t, layer=layer: layer(t, training=True), input_signature=[spec],
                           jit_compile=jit) for layer in (ours, theirs)]
        np.testing.assert_allclose(fns[0](x), fns[1](x), rtol=1e-5, atol=1e-5)
    ours.trainable = theirs.trainable = False  # Frozen: moving statistics, even in training.
    before = ours.moving_mean.numpy()
    np.testing.assert_allclose(ours(x, training=True), theirs(x, training=True), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ours.moving_mean.numpy(), before)
