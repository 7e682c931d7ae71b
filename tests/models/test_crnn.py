import numpy as np
import pytest
import keras

from crnn_keras.layers import PixelScaling, SpatialSweep2D
from crnn_keras.models import build_cnn_baseline, build_crnn, get_preset, list_presets, resolve_config


def _sweeps(model):
    return [layer for layer in model.layers if isinstance(layer, SpatialSweep2D)]


@pytest.mark.parametrize("preset", ["crnn_tiny", "crnn_small", "crnn_fashion_mnist"])
def test_small_presets_output_probabilities(preset):
    model = build_crnn(7, preset=preset)
    shape = get_preset(preset)["input_shape"]
    x = np.random.default_rng(0).integers(0, 256, size=(3,) + tuple(shape)).astype("float32")
    probs = model.predict(x, verbose=0)
    assert probs.shape == (3, 7)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert len(_sweeps(model)) == 1
    assert isinstance(model.layers[1], PixelScaling)


def test_paper_preset_sweeps_the_conv5_map():
    model = build_crnn(397, preset="crnn_paper")
    assert model.input_shape == (None, 227, 227, 3)
    (sweep,) = _sweeps(model)
    assert sweep.input.shape == (None, 13, 13, 256)
    assert sweep.output.shape == (None, 13, 13, 512)
    assert model.get_layer("fc1").units == 4096 and model.get_layer("fc2").units == 4096
    assert model.output_shape == (None, 397)


def test_dynamic_input_size_and_grayscale():
    model = build_crnn(3, input_shape=(None, None, 1), preset="crnn_tiny")
    for size in [(28, 28), (40, 24), (4, 64)]:
        assert model.predict(np.zeros((2,) + size + (1,)), verbose=0).shape == (2, 3)


def test_overrides_merge_into_the_preset():
    config = resolve_config("crnn_small", sweep={"cell": "gru", "blocks": 2}, head={"dropout": 0.0})
    assert config["sweep"]["units"] == 64 and config["sweep"]["cell"] == "gru"
    model = build_crnn(4, preset="crnn_small", sweep={"cell": "gru", "blocks": 2, "units": 8})
    sweeps = _sweeps(model)
    assert len(sweeps) == 2 and sweeps[1].row_sweep.cell == "gru"


def test_keras_save_load_safe_mode_predicts_the_same(tmp_path):
    model = build_crnn(5, input_shape=(16, 16, 3), preset="crnn_tiny", sweep={"order": "parallel"})
    x = np.random.default_rng(1).integers(0, 256, size=(4, 16, 16, 3)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in loaded.layers)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("preset", ["crnn_tiny", "crnn_small", "crnn_fashion_mnist"])
def test_baseline_has_the_same_backbone_and_matched_parameters(preset):
    crnn = build_crnn(10, preset=preset)
    plain = build_cnn_baseline(10, preset=preset)
    matched = build_cnn_baseline(10, preset=preset, match_params=crnn)
    assert not _sweeps(plain) and not _sweeps(matched)
    crnn_convs = [l.name for l in crnn.layers if isinstance(l, keras.layers.Conv2D)]
    plain_convs = [l.name for l in plain.layers if isinstance(l, keras.layers.Conv2D)]
    assert crnn_convs == plain_convs
    assert plain.count_params() < crnn.count_params()
    assert abs(matched.count_params() - crnn.count_params()) / crnn.count_params() < 0.01
    assert matched.get_layer("match_block_conv").filters > 0


def test_application_backbone():
    model = build_crnn(4, input_shape=(32, 32, 3), backbone="MobileNetV3Small", sweep={"units": 8})
    assert model.predict(np.zeros((1, 32, 32, 3)), verbose=0).shape == (1, 4)
    assert model.get_layer("pixel_scaling").mode == "none"
    resnet = build_crnn(4, input_shape=(32, 32, 3), backbone="ResNet50V2", sweep={"units": 4})
    assert resnet.get_layer("pixel_scaling").mode == "tf"


def test_training_lowers_the_loss():
    # Is the top half brighter than the bottom half? The halves are far apart.
    rng = np.random.default_rng(0)
    levels = rng.uniform(30, 220, size=(128, 2, 1, 1, 1))
    x = np.concatenate([np.broadcast_to(levels[:, i], (128, 8, 16, 1)) for i in (0, 1)], axis=1)
    x = np.clip(x + rng.normal(0, 20, x.shape), 0, 255).astype("float32")
    y = (levels[:, 0, 0, 0, 0] > levels[:, 1, 0, 0, 0]).astype("int32")
    keras.utils.set_random_seed(0)
    model = build_crnn(2, input_shape=(16, 16, 1), preset="crnn_tiny")
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    losses = model.fit(x, y, epochs=6, batch_size=16, verbose=0).history["loss"]
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: build_crnn(1), "num_classes"),
        (lambda: build_crnn(3, preset="resnet_crnn"), "Unknown preset 'resnet_crnn'.*crnn_paper"),
        (lambda: build_crnn(3, input_shape=(32, 32)), "input_shape"),
        (lambda: build_crnn(3, backbone="NotANet"), "Unknown keras.applications backbone"),
        (lambda: build_crnn(3, backbone={"type": "vit"}), "Unknown backbone type"),
        (lambda: build_crnn(3, head={"pooling": "median"}), "Unknown pooling"),
        (lambda: build_crnn(3, head={"units": 4}), "Unknown head options"),
        (lambda: build_crnn(3, sweep={"blocks": 0}), "blocks"),
        (lambda: build_crnn(3, sweep={"cell": "tcn"}), "Unknown cell"),
        (lambda: build_crnn(3, (None, None, 3), head={"pooling": "flatten"}), "fixed input size"),
        (lambda: build_cnn_baseline(3, match_params=10), "no conv block can match"),
    ],
)
def test_bad_arguments_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_presets_are_listed():
    assert {"crnn_paper", "crnn_small", "crnn_tiny"} <= set(list_presets())


def test_sync_batch_norm_option_reaches_every_batch_norm():
    crnn = build_crnn(3, preset="crnn_tiny", backbone={"sync_batch_norm": True})
    base = build_cnn_baseline(3, preset="crnn_tiny", backbone={"sync_batch_norm": True}, match_params=crnn)
    for model in (crnn, base):
        norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
        assert norms and all(l.synchronized for l in norms)
    assert not any(l.synchronized for l in build_crnn(3, preset="crnn_tiny").layers
                   if isinstance(l, keras.layers.BatchNormalization))
