import keras
import pytest
import tensorflow as tf

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


@pytest.mark.parametrize("shape,transpose", [((2, 4, 5, 7), False), ((4, 5, 6), False), ((2, None, 5, 6), True)])
def test_bad_maps_are_refused(shape, transpose):
    cells = _cells(keras.layers.LSTM(3))
    run = tf.function(lambda x: bidirectional_lstm_sweep(x, *cells, transpose=transpose))
    with pytest.raises(ValueError, match=r"\(batch, height, width, 6\) map with a known"):
        run.get_concrete_function(tf.TensorSpec(shape))
