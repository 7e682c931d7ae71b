import numpy as np
import pytest
import keras

from crnn_keras.layers import PixelScaling, SpatialSweep2D
from crnn_keras.models import CRNNBackbone

TINY = dict(cnn={"type": "conv", "filters": [8, 16], "convs_per_stage": 1}, sweep={"units": 8})


def _sweeps(model):
    return [layer for layer in model.layers if isinstance(layer, SpatialSweep2D)]


def test_outputs_the_swept_map_and_scales_pixels_inside():
    backbone = CRNNBackbone(image_shape=(16, 16, 3), **TINY)
    x = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3)).astype("float32")
    assert backbone.predict(x, verbose=0).shape == (2, 4, 4, 16)
    assert isinstance(backbone.layers[1], PixelScaling)
    assert len(_sweeps(backbone)) == 1


def test_get_config_is_the_constructor_arguments():
    backbone = CRNNBackbone(image_shape=(None, None, 1), match_filters=4, name="bb", **TINY)
    config = backbone.get_config()
    assert {k: config[k] for k in ("image_shape", "cnn", "sweep", "match_filters", "name")} == {
        "image_shape": (None, None, 1), "cnn": TINY["cnn"], "sweep": TINY["sweep"],
        "match_filters": 4, "name": "bb"}
    clone = CRNNBackbone.from_config(config)
    clone.set_weights(backbone.get_weights())
    x = np.random.default_rng(1).uniform(0, 255, (2, 12, 20, 1)).astype("float32")
    np.testing.assert_allclose(clone(x), backbone(x), atol=1e-6)


def test_zero_blocks_is_the_cnn_and_blocks_stack():
    cnn = CRNNBackbone(image_shape=(16, 16, 3), cnn=TINY["cnn"], sweep={"blocks": 0})
    assert not _sweeps(cnn) and cnn.output_shape == (None, 4, 4, 16)
    two = CRNNBackbone(image_shape=(16, 16, 3), cnn=TINY["cnn"], sweep={"units": 4, "blocks": 2, "cell": "gru"})
    assert [s.row_sweep.cell for s in _sweeps(two)] == ["gru", "gru"]


def test_dynamic_sizes():
    backbone = CRNNBackbone(image_shape=(None, None, 1), **TINY)
    for size in [(28, 28), (40, 24), (4, 64)]:
        out = backbone.predict(np.zeros((2,) + size + (1,)), verbose=0)
        assert out.shape == (2, size[0] // 4, size[1] // 4, 16)


def test_paper_cnn_sweeps_the_conv5_map():
    backbone = CRNNBackbone.from_preset("crnn_paper")
    (sweep,) = _sweeps(backbone)
    assert backbone.input_shape == (None, 227, 227, 3)
    assert sweep.input.shape == (None, 13, 13, 256) and sweep.output.shape == (None, 13, 13, 512)


def test_application_cnn():
    backbone = CRNNBackbone(image_shape=(32, 32, 3), cnn={"type": "application", "name": "MobileNetV3Small"},
                            sweep={"units": 4})
    assert backbone.predict(np.zeros((1, 32, 32, 3)), verbose=0).shape[-1] == 8
    assert backbone.get_layer("pixel_scaling").mode == "none"


def test_mixed_precision_dtype_reaches_every_layer():
    backbone = CRNNBackbone(image_shape=(16, 16, 3), dtype="mixed_bfloat16", **TINY)
    assert backbone.get_layer("stage1_1_conv").compute_dtype == "bfloat16"
    assert keras.config.dtype_policy().name == "float32"  # Left as it was.


def test_sync_batch_norm_reaches_every_batch_norm():
    cnn = {**TINY["cnn"], "sync_batch_norm": True}
    backbone = CRNNBackbone(image_shape=(16, 16, 3), cnn=cnn, sweep={"blocks": 0}, match_filters=3)
    norms = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 3 and all(layer.synchronized for layer in norms)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(image_shape=(32, 32)), "image_shape"),
        (dict(cnn={"type": "vit"}), "Unknown backbone type"),
        (dict(cnn={"type": "application", "name": "NotANet"}), "Unknown keras.applications backbone"),
        (dict(sweep={"blocks": -1, "units": 4}), "blocks"),
        (dict(sweep={"blocks": 1}), "needs `units`"),
        (dict(sweep={"units": 4, "width": 3}), "Unknown sweep options \\['width'\\]"),
        (dict(sweep={"units": 4, "cell": "tcn"}), "Unknown cell"),
        (dict(match_filters=0), "match_filters"),
        (dict(sweep={"units": 4, "mlp_ratio": 2}), "mlp_ratio.*residual"),
        (dict(sweep={"units": 4, "residual": "yes"}), "residual"),
        (dict(sweep={"units": 4, "passes": 2}), "passes.*residual"),
        (dict(sweep={"units": 4, "residual": True, "passes": 0}), "passes"),
        (dict(cnn={"type": "conv", "filters": [4, 8], "convs_per_stage": [1]}), "one per stage"),
        (dict(cnn={"type": "conv", "pool": "min"}), "Unknown pool"),
        (dict(cnn={"type": "conv", "filters": "32"}), "`filters` must be a list of positive ints.*got '32'"),
        (dict(cnn={"type": "conv", "filters": ["32"]}), "`filters` must be a list of positive ints"),
        (dict(cnn={"type": "conv", "filterz": [8]}), "Unknown conv backbone options \\['filterz'\\]"),
        (dict(image_shape=(0, 0, 3)), "`image_shape` must be .* positive ints.*got \\(0, 0, 3\\)"),
        (dict(image_shape=(2, 2, 3)), "image_shape=\\(2, 2, 3\\) is too small for cnn"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CRNNBackbone(**{"image_shape": (16, 16, 3), "sweep": {"units": 4}, **kwargs})


def test_residual_sweep_blocks_keep_the_cnn_channels_at_an_unpooled_map():
    from crnn_keras.layers import SweepBlock2D

    cnn = {"type": "conv", "filters": [8, 12], "convs_per_stage": [2, 1], "final_pool": False}
    backbone = CRNNBackbone(image_shape=(None, None, 1), cnn=cnn,
                            sweep={"units": 4, "blocks": 2, "residual": True, "mlp_ratio": 1})
    convs = [layer for layer in backbone.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [8, 8, 12]
    blocks = [layer for layer in backbone.layers if isinstance(layer, SweepBlock2D)]
    assert [b.get_config()["order"] for b in blocks] == ["parallel", "parallel"]
    assert backbone.layers[-1].name == "sweep_output_norm"
    assert backbone.predict(np.zeros((2, 20, 12, 1)), verbose=0).shape == (2, 10, 6, 12)
    clone = CRNNBackbone.from_config(backbone.get_config())
    assert clone.count_params() == backbone.count_params()


def test_passes_iterate_each_residual_block_with_shared_weights():
    from crnn_keras.layers import SweepBlock2D

    cnn = {"type": "conv", "filters": [6], "convs_per_stage": 1, "final_pool": False}
    sweep = {"units": 3, "blocks": 1, "residual": True, "mlp_ratio": 1}
    once = CRNNBackbone(image_shape=(8, 8, 1), cnn=cnn, sweep=sweep)
    thrice = CRNNBackbone(image_shape=(8, 8, 1), cnn=cnn, sweep={**sweep, "passes": 3})
    assert thrice.count_params() == once.count_params()
    thrice.set_weights(once.get_weights())
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 1)).astype("float32")
    # The same block applied to its own output three times, then the output norm.
    inner = keras.Model(once.input, once.get_layer("sweep_block_1").output)
    block, norm = once.get_layer("sweep_block_1"), once.get_layer("sweep_output_norm")
    expected = norm(block(block(inner(x))))
    np.testing.assert_allclose(thrice.predict(x, verbose=0), keras.ops.convert_to_numpy(expected), atol=1e-5)
    assert len([layer for layer in thrice.layers if isinstance(layer, SweepBlock2D)]) == 1
    assert CRNNBackbone.from_config(thrice.get_config()).sweep["passes"] == 3
