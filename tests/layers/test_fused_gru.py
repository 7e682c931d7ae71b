import keras
import numpy as np
import pytest
import tensorflow as tf

from crnn_keras.layers.fused_gru import bidirectional_gru_sweep
from tests.layers.test_fused_lstm import _cells


@pytest.mark.parametrize("transpose", [False, True])
def test_equals_keras_gru_with_nonzero_biases(transpose):
    # Keras's GRU starts with zero biases; random ones check where the input and the
    # recurrent bias (the one scaled by the reset gate) go, in value and gradient.
    keras.utils.set_random_seed(0)
    rnn = keras.layers.Bidirectional(keras.layers.GRU(3, return_sequences=True, bias_initializer="random_normal"))
    rnn.build((None, 4, 2))
    x = tf.random.normal((2, 4, 4, 2))
    upstream = tf.random.normal((2, 4, 4, 6))
    rows = (lambda t: tf.transpose(t, (0, 2, 1, 3))) if transpose else (lambda t: t)

    def grads(run):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = run(x)
            loss = tf.reduce_sum(y * upstream)
        return [y, *tape.gradient(loss, [x] + [w.value for w in rnn.weights])]

    fused = grads(lambda x: bidirectional_gru_sweep(x, rnn.forward_layer.cell, rnn.backward_layer.cell, transpose))
    expected = grads(lambda x: rows(tf.reshape(rnn(tf.reshape(rows(x), (8, 4, 2))), (2, 4, 4, 6))))
    assert len(fused) == 2 + 6
    for a, b in zip(fused, expected):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rnn,message", [
    (keras.layers.LSTM(3), "GRUCell"),
    (keras.layers.GRU(3, reset_after=False), "reset_after=True"),
    (keras.layers.GRU(3, recurrent_dropout=0.1), "no dropout"),
    (keras.layers.GRU(3, recurrent_activation="hard_sigmoid"), "default activations"),
    (keras.layers.GRU(3, use_bias=False), "with a bias"),
])
def test_other_cells_are_refused(rnn, message):
    with pytest.raises(ValueError, match=message):
        bidirectional_gru_sweep(tf.zeros((2, 4, 5, 6)), *_cells(rnn))

