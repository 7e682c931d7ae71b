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
