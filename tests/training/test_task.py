import pytest

from crnn_keras.data import load_dataset
from crnn_keras.training import TrainConfig, build_model


@pytest.mark.parametrize("model,depth", [("crnn", 1), ("cnn_baseline", 1), ("cnn_baseline", 3)])
def test_build_model_makes_the_configured_model_of_the_same_size(model, depth):
    _, info = load_dataset("builtin:rooks?train_size=8", "train", batch_size=8)
    crnn = build_model(TrainConfig(preset="crnn_tiny").validate(), info)
    config = TrainConfig(preset="crnn_tiny", model=model, baseline_depth=depth).validate()
    built = build_model(config, info)
    assert built.backbone.sweep_blocks == (1 if model == "crnn" else 0)
    if model == "cnn_baseline":
        assert built.backbone.match_depth == depth
        assert abs(built.count_params() - crnn.count_params()) < 0.02 * crnn.count_params()
