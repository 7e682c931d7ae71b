import keras
import keras_tuner
import numpy as np
import pytest
import tensorflow as tf

from crnn_keras.data import load_dataset
from crnn_keras.layers import SpatialSweep2D, SweepBlock2D
from crnn_keras.training import TrainConfig, make_config
from crnn_keras.tuning import CRNNHyperModel

DATASET = "builtin:rooks?train_size=64&validation_size=32"


def test_fixed_and_narrowed_values_shape_the_model():
    hm = CRNNHyperModel(2, (32, 32, 3), fixed={"cell": "gru", "blocks": 2, "order": "parallel"},
                        ranges={"units": (8, 8), "backbone_width": [8]})
    model = hm.build(keras_tuner.HyperParameters())
    sweeps = [layer for layer in model.backbone.layers if isinstance(layer, SpatialSweep2D)]
    assert len(sweeps) == 2 and sweeps[0].order == "parallel"
    assert sweeps[0].row_sweep.cell == "gru" and sweeps[0].row_sweep.units == 8
    assert model.backbone.get_layer("stage1_1_conv").filters == 8


def test_unknown_hyperparameter():
    with pytest.raises(ValueError, match="Unknown hyperparameters \\['depth'\\]"):
        CRNNHyperModel(2, (32, 32, 3), fixed={"depth": 3})


@pytest.mark.parametrize("name, space, message", [
    ("units", 32, "--fix units=32"),  # Was a TypeError traceback.
    ("cell", "gru", "list of choices.*--fix cell=gru"),  # Was "could not convert string to float: 'u'".
    ("units", (16, 64, 0), "STEP > 0"),
    ("units", (8.0, 16), "integers"),
    ("order", (1, 2), "list of choices"),
])
def test_bad_ranges_are_refused_with_the_fix(name, space, message):
    with pytest.raises(ValueError, match=message):
        CRNNHyperModel(2, (16, 16, 3), ranges={name: space})


def test_dict_range_with_integer_bounds_is_an_int():
    hm = CRNNHyperModel(2, (16, 16, 3), ranges={"units": {"min_value": 16, "max_value": 64, "step": 16},
                                                "blocks": {"min_value": 1, "max_value": 2}})
    config = hm.config_for(keras_tuner.HyperParameters())
    assert type(config.sweep["units"]) is int and type(config.sweep["blocks"]) is int  # Was 16.0 and 1.0.


def test_base_precision_schedule_and_architecture_options_reach_the_trial_model():
    base = TrainConfig(precision="mixed_bfloat16", schedule="cosine", warmup_epochs=1, epochs=2,
                       sweep={"residual": True}, backbone={"sync_batch_norm": True})
    hm = CRNNHyperModel(2, (16, 16, 3), base_config=base, steps_per_epoch=3,
                        fixed={"units": 8, "backbone_width": 8, "blocks": 1, "convs_per_stage": 1})
    model = hm.build(keras_tuner.HyperParameters())
    assert keras.mixed_precision.global_policy().name == "float32"  # Restored after the build.
    assert model.backbone.get_layer("stage1_1_conv").compute_dtype == "bfloat16"
    assert model.backbone.get_layer("stage1_1_bn").synchronized
    assert any(isinstance(layer, SweepBlock2D) for layer in model.backbone.layers)
    schedule = model.optimizer._learning_rate
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay) and schedule.warmup_steps == 3


@pytest.mark.parametrize("base, message", [
    (dict(sweep={"units": 32}), "--fix units=32"),
    (dict(head={"dropout": 0.3}), "--fix dropout=0.3"),
    (dict(learning_rate=0.01), "--fix learning_rate=0.01"),
    (dict(backbone={"filters": [8, 16]}), "--fix backbone_width"),
    (dict(backbone="ResNet50"), "conv backbone"),
    (dict(schedule="step"), "steps_per_epoch"),  # No steps to lay the schedule over.
    (dict(warmup_epochs=1.0, epochs=2), "steps_per_epoch"),
])
def test_base_options_the_trials_would_not_follow_are_refused(base, message):
    with pytest.raises(ValueError, match=message):
        CRNNHyperModel(2, (16, 16, 3), base_config=TrainConfig(**{"schedule": "constant", **base}))


def test_random_search_reload_and_best_config_round_trip(tmp_path):
    train, _ = load_dataset(DATASET, "train", batch_size=32)
    val, _ = load_dataset(DATASET, "validation", batch_size=32)
    base = TrainConfig(dataset=DATASET, epochs=1, preset="crnn_tiny")
    hm = CRNNHyperModel(2, (32, 32, 3), base_config=base,
                        ranges={"units": (8, 16, 8), "backbone_width": [8], "blocks": (1, 1)})
    kwargs = dict(objective="val_accuracy", max_trials=2, seed=1, directory=str(tmp_path), project_name="t")
    tuner = keras_tuner.RandomSearch(hm, **kwargs)
    tuner.search(train, validation_data=val, epochs=1, verbose=0)
    trials = tuner.oracle.trials.values()
    assert len(trials) == 2
    # Keras Tuner records failed trials quietly: check every one completed with a score.
    assert all(t.status == "COMPLETED" and t.score is not None for t in trials)

    reloaded = keras_tuner.RandomSearch(hm, overwrite=False, **kwargs)
    original = {k: (t.hyperparameters.values, t.score) for k, t in tuner.oracle.trials.items()}
    assert {k: (t.hyperparameters.values, t.score) for k, t in reloaded.oracle.trials.items()} == original
    best_hp = tuner.get_best_hyperparameters(1)[0]

    path = tmp_path / "best.yaml"
    hm.config_for(best_hp).save(str(path))
    again = make_config(str(path))
    assert again.sweep["units"] == best_hp.get("units") and again.learning_rate == best_hp.get("learning_rate")
    from crnn_keras.training import build_model
    from crnn_keras.data import DatasetInfo

    info = DatasetInfo("", 2, ["0", "1"], (32, 32, 3), {})
    assert build_model(again, info).count_params() == hm.build(best_hp).count_params()


def test_plain_search_on_integer_numpy_labels_and_the_best_model_reloads(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (48, 24, 24, 1)).astype("float32")
    y = rng.integers(0, 3, 48)  # Integer labels, as keras.datasets gives them.
    hm = CRNNHyperModel(3, (24, 24, 1), ranges={"units": (8, 16, 8), "backbone_width": [8],
                                                 "blocks": (1, 1), "convs_per_stage": (1, 1)})
    tuner = keras_tuner.RandomSearch(hm, objective="val_accuracy", max_trials=2, seed=0,
                                     directory=str(tmp_path), project_name="ints")
    tuner.search(x[:32], y[:32], validation_data=(x[32:], y[32:]), epochs=1, verbose=0)
    trials = tuner.oracle.trials.values()
    assert len(trials) == 2 and all(t.status == "COMPLETED" for t in trials)
    (best,) = tuner.get_best_models(1)
    assert best.predict(x[:2], verbose=0).shape == (2, 3)


def test_search_under_mirrored_strategy(tmp_path):
    from crnn_keras.training import get_strategy

    train, _ = load_dataset(DATASET, "train", batch_size=32)
    hm = CRNNHyperModel(2, (32, 32, 3), fixed={"units": 8, "backbone_width": 8, "blocks": 1,
                                               "convs_per_stage": 1})
    strategy = get_strategy("mirrored")
    tuner = keras_tuner.RandomSearch(hm, objective="loss", max_trials=1, directory=str(tmp_path),
                                     distribution_strategy=strategy)
    tuner.search(train, epochs=1, verbose=0)
    (trial,) = tuner.oracle.trials.values()
    assert trial.status == "COMPLETED" and trial.score is not None
    assert isinstance(tuner.distribution_strategy, tf.distribute.MirroredStrategy)
