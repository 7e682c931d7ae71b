import json

import pytest

from crnn_keras.training import TrainConfig, make_config
from crnn_keras.cli import main


def test_defaults_are_valid():
    config = TrainConfig().validate()
    assert config.dataset == "builtin:rooks" and config.strategy == "mirrored"


def test_file_then_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\noptimizer: sgd\nsweep: {units: 8}\n")
    config = make_config(str(path), epochs=7, learning_rate=None)
    assert config.epochs == 7 and config.optimizer == "sgd" and config.sweep == {"units": 8}
    config.save(str(tmp_path / "out.json"))
    assert json.loads((tmp_path / "out.json").read_text())["epochs"] == 7


def test_disjoint_slices_of_one_split_are_allowed():
    config = TrainConfig.from_dict({"validation_split": "test[:50%]", "test_split": "test[50%:]"})
    assert config.validation_split == "test[:50%]"


@pytest.mark.parametrize(
    "data,message",
    [
        ({"epoch": 3}, r"unknown key\(s\) \['epoch'\]"),
        ({"epochs": "3"}, "epochs='3' should be of type"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"learning_rate": -1.0}, "learning_rate must be > 0"),
        ({"learning_rate": float("inf")}, "learning_rate=inf must be a finite number"),
        ({"learning_rate": float("nan")}, "learning_rate=nan must be a finite number"),
        ({"clipnorm": float("inf")}, "clipnorm=inf must be a finite number"),
        ({"optimizer": "rmsprop"}, "unknown optimizer='rmsprop'"),
        ({"precision": "float8"}, "unknown precision"),
        ({"warmup_epochs": 9, "epochs": 5}, "warmup_epochs"),
        ({"preset": "huge"}, "unknown preset='huge'"),
        ({"augment": "yes"}, "augment='yes'"),
        ({"strategy": "multi_worker", "precision": "mixed_float16"}, "multi_worker.*float32"),
        # An option the optimizer does not have is refused, not ignored.
        ({"optimizer": "adamw", "momentum": 0.5}, "momentum=0.5 applies only to optimizer='sgd'"),
        ({"optimizer": "sgd", "momentum": 1.0}, "momentum must be < 1"),
        ({"baseline_depth": 3}, "baseline_depth=3 applies only to model='cnn_baseline'"),
        ({"schedule": "step", "warmup_epochs": 1, "epochs": 3}, "warmup_epochs applies to schedule='cosine'"),
        ({"translate": 0.1}, "translate=0.1 is an augmentation; add --augment"),
        ({"model": "cnn_baseline", "match_params": False, "baseline_depth": 2}, "match_params=true"),
        ({"model": "cnn_baseline", "baseline_depth": 0}, "baseline_depth must be >= 1"),
        # Validation or test read from the data training uses, or test choosing the checkpoint.
        ({"validation_split": "train[90%:]"}, "validation_split='train\\[90%:\\]' reads the training split"),
        ({"test_split": "train"}, "test_split='train' reads the training split"),
        ({"validation_split": "test"}, "overlap"),
        ({"validation_split": "test[:50%]"}, "overlap"),
        ({"validation_split": "validation[:"}, "validation_split: Bad split"),
    ],
)
def test_bad_configs_fail_before_any_work(data, message, tmp_path):
    data.setdefault("output_dir", str(tmp_path / "run"))
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(data)
    assert not (tmp_path / "run").exists()


def test_cli_reports_bad_config(capsys, tmp_path):
    assert main(["train", "--epochs", "0", "--output-dir", str(tmp_path / "r")]) == 2
    assert "epochs must be >= 1" in capsys.readouterr().err


def test_to_command_round_trips_through_the_cli():
    import shlex

    from crnn_keras.cli import _config_from_args, build_parser
    from crnn_keras.training.config import to_command

    config = TrainConfig(dataset="builtin:rooks?train_size=64", preset="crnn_small", epochs=3,
                         sweep={"units": 48, "cell": "gru"}, backbone={"sync_batch_norm": True},
                         augment=True, match_params=False, learning_rate=2e-3).validate()
    deep = TrainConfig(model="cnn_baseline", baseline_depth=4, epochs=2).validate()
    assert _config_from_args(build_parser().parse_args(shlex.split(to_command(deep))[1:])) == deep
    argv = shlex.split(to_command(config))
    assert argv[:2] == ["crnn-keras", "train"]
    assert _config_from_args(build_parser().parse_args(argv[1:])) == config


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_every_optimizer_takes_weight_decay_and_clipnorm(optimizer):
    from crnn_keras.training import TrainConfig
    from crnn_keras.training.task import make_optimizer

    opt = make_optimizer(TrainConfig(optimizer=optimizer, weight_decay=0.01, clipnorm=2.0).validate(), 10)
    assert opt.weight_decay == pytest.approx(0.01) and opt.clipnorm == 2.0
    assert make_optimizer(TrainConfig(optimizer=optimizer).validate(), 10).clipnorm is None
    with pytest.raises(ValueError, match="clipnorm must be >= 0"):
        TrainConfig(clipnorm=-1.0).validate()
