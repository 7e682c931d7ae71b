import json

import keras
import numpy as np
import pytest

from crnn_keras.data import load_dataset
from crnn_keras.data.core import check_disjoint
from crnn_keras.training import TrainConfig, build_model, train
from crnn_keras.training.callbacks import EpochBackup, TrainingDivergedError
from crnn_keras.training.task import make_optimizer

SMALL = "builtin:rooks?train_size=64&validation_size=32&test_size=40"


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


def _run(tmp_path, **kw):
    config = dict(dataset=SMALL, output_dir=str(tmp_path / "run"), epochs=2, batch_size=32,
                  preset="crnn_tiny", sweep={"units": 4}, verbose=0)
    return {**config, **kw}


@pytest.mark.parametrize("val,test", [("test[:60%]", "test[40%:]"), ("test[:50%]", "test[:50%]"),
                                      ("test[10:30]", "test[-20:]"), ("test[:25]", "test[50%:]")])
def test_overlapping_slices_of_one_split_are_refused_before_any_work(tmp_path, val, test):
    with pytest.raises(ValueError, match="share examples .* test data would choose the checkpoint"):
        train(_run(tmp_path, validation_split=val, test_split=test))
    assert not (tmp_path / "run").exists()


def test_disjoint_slices_pass_the_overlap_check():
    for val, test in [("test[:50%]", "test[50%:]"), ("test[:20]", "test[-20:]"), ("test[:20]", "test[50%:]"),
                      ("validation", "test[:50%]")]:
        check_disjoint(SMALL, val, test)


def test_a_cluster_in_tf_config_needs_the_multi_worker_strategy(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                "task": {"type": "worker", "index": 1}}))
    with pytest.raises(ValueError, match="cluster of 2.*--strategy multi_worker"):
        train(_run(tmp_path))
    assert not (tmp_path / "run").exists()


def test_a_diverging_run_stops_with_an_error_and_commits_nothing_of_that_epoch(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match="training diverged: the loss is (nan|inf)"):
        train(_run(tmp_path, epochs=4, optimizer="sgd", learning_rate=1e12, schedule="constant"))
    assert not (run / "metrics.json").exists()
    finished = EpochBackup.finished_epochs(str(run / "backup"))
    history = run / "history.csv"
    rows = history.read_text().strip().splitlines()[1:] if history.exists() else []
    assert finished < 4 and len(rows) == finished  # Only finite epochs were logged and committed.
    assert all("nan" not in row and "inf" not in row for row in rows)


def test_constant_schedule_warms_up_then_stays():
    config = TrainConfig(schedule="constant", warmup_epochs=1.0, epochs=3, learning_rate=0.1).validate()
    lr = make_optimizer(config, steps_per_epoch=10)._learning_rate  # The schedule itself.
    rates = [float(lr(step)) for step in (0, 5, 10, 20, 29)]
    np.testing.assert_allclose(rates, [0.0, 0.05, 0.1, 0.1, 0.1], atol=1e-7)


def test_backup_restores_the_dropout_random_state(tmp_path):
    def model():
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.5), keras.layers.Dense(1)])
        m.compile("sgd", "mse")
        return m

    def states(m):
        return [keras.ops.convert_to_numpy(v).tolist() for v in m.variables if "seed" in v.path]

    trained = model()
    trained.fit(np.ones((8, 4)), np.ones((8, 1)), epochs=2, batch_size=4, verbose=0,
                callbacks=[EpochBackup(str(tmp_path))])
    fresh = model()
    assert states(fresh) != states(trained)  # The masks moved on while training.
    EpochBackup.restore(fresh, str(tmp_path))
    assert states(fresh) == states(trained)
    np.testing.assert_array_equal(fresh.predict_on_batch(np.ones((2, 4))), trained.predict_on_batch(np.ones((2, 4))))


def test_plot_curves_writes_a_png_and_refuses_nothing_to_plot(tmp_path):
    from crnn_keras.training.reports import plot_curves

    path = str(tmp_path / "curves.png")
    plot_curves({"crnn": ([1000, 2000], [0.5, 0.9]), "cnn": ([1000, 2000], [0.5, 0.6])}, path, title="t")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="at least one curve"):
        plot_curves({}, path, title="t")
