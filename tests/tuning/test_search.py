import json
import os
import re
import socket
import subprocess
import sys

import pytest
import yaml

from crnn_keras.cli import main
from crnn_keras.training import make_config

DATASET = "builtin:rooks?train_size=64&validation_size=32&test_size=32"
NARROW = ["--range", "units=8:16:8", "--range", "backbone_width=[8]", "--fix", "blocks=1",
          "--fix", "convs_per_stage=1"]


def test_cli_search_table_best_config_and_export(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["tune", "--tuner", "random", "--max-trials", "2", "--dataset", DATASET, "--epochs", "1",
            "--output-dir", "t", "--verbose", "0", "--export", "tuned", *NARROW]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "trial" in out and "COMPLETED" in out and "units=" in out
    result = json.loads(out[out.index("{\n"):])
    assert result["completed"] == 2 and result["failed"] == 0
    assert os.path.isdir("t/tuner/crnn")
    best = yaml.safe_load(open("t/best.yaml"))
    assert best["sweep"]["units"] in (8, 16) and best["dataset"] == DATASET
    # The best config is a valid training config: `crnn-keras train --config t/best.yaml`.
    config = make_config("t/best.yaml", epochs=1, output_dir="again", verbose=0)
    assert config.sweep == best["sweep"]
    assert os.path.exists(os.path.join(result["export"], "saved_model.pb"))


def test_hyperband_and_bayesian_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for tuner, trials in (("hyperband", []), ("bayesian", ["--max-trials", "2"])):
        assert main(["tune", "--tuner", tuner, *trials, "--dataset", DATASET, "--epochs", "2",
                     "--output-dir", tuner, "--verbose", "0", *NARROW]) == 0
        assert os.path.exists(f"{tuner}/best.yaml")


TUNE = ["tune", "--dataset", DATASET, "--epochs", "1", "--output-dir", "t", "--verbose", "0", *NARROW]


@pytest.mark.parametrize("flags, message", [
    (["--tuner", "hyperband", "--max-trials", "2"], "does not bound hyperband.*--epochs"),
    (["--tuner", "hyperband", "--schedule", "cosine"], "--schedule constant"),
    (["--sweep", '{"units": 32}'], "--fix units=32"),
    (["--strategy", "default"], "--distribution-strategy"),
    (["--range", "units=32"], "--fix units=32"),
    (["--range", "cell=gru"], "list of choices"),
    # Every listed or pinned value builds before the search, not failing in each trial.
    (["--range", 'cell=["lstm", "tcn"]'], "--range cell: the value 'tcn' does not build a model: Unknown cell"),
    (["--fix", "dropout=1.5"], "the pinned values .*--fix dropout=1.5 do not build a model: `dropout` must be"),
])
def test_options_the_search_cannot_follow_are_refused(tmp_path, monkeypatch, capsys, flags, message):
    monkeypatch.chdir(tmp_path)
    assert main([*TUNE, *flags]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not os.path.exists("t/tuner")


def test_trials_follow_precision_translate_schedule_and_base_options(tmp_path, monkeypatch):
    import keras

    from crnn_keras.layers import SweepBlock2D
    from crnn_keras.tuning import search

    monkeypatch.chdir(tmp_path)
    loads, built = [], []
    real_load, real_build = search.load_dataset, search.CRNNHyperModel.build
    monkeypatch.setattr(search, "load_dataset", lambda *a, **kw: loads.append(kw) or real_load(*a, **kw))

    def build(self, hp):
        model = real_build(self, hp)
        built.append((model.backbone.get_layer("stage1_1_conv").compute_dtype, model.optimizer._learning_rate,
                      any(isinstance(layer, SweepBlock2D) for layer in model.backbone.layers)))
        return model

    monkeypatch.setattr(search.CRNNHyperModel, "build", build)
    flags = ["--max-trials", "1", "--epochs", "2", "--precision", "mixed_bfloat16", "--augment",
             "--translate", "0.2", "--schedule", "cosine", "--warmup-epochs", "1", "--sweep",
             '{"residual": true}', "--backbone", '{"sync_batch_norm": true}']
    assert main([*TUNE, *flags]) == 0
    assert loads[0]["translate"] == 0.2
    dtype, schedule, residual = built[-1]
    assert dtype == "bfloat16" and residual
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay) and schedule.warmup_steps == 1
    assert keras.mixed_precision.global_policy().name == "float32"  # Restored after the search.
    best = yaml.safe_load(open("t/best.yaml"))
    assert best["sweep"]["residual"] and best["backbone"]["sync_batch_norm"] and best["schedule"] == "cosine"


def test_rerun_resumes_the_same_request_and_refuses_another_and_writes_state_atomically(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    replaced, real_replace = [], os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: replaced.append(os.path.relpath(dst)) or real_replace(src, dst))
    assert main([*TUNE, "--max-trials", "1", "--fix", "units=8"]) == 0
    # Keras Tuner's state and checkpoints went through a temporary file and a rename.
    for name in ("oracle.json", "trial_0/trial.json", "trial_0/checkpoint.weights.h5"):
        assert os.path.join("t", "tuner", "crnn", name) in replaced
    assert json.load(open("t/search.json"))["fixed"]["units"] == 8
    capsys.readouterr()
    assert main([*TUNE, "--max-trials", "1", "--fix", "units=8"]) == 0  # The same request: resumed.
    assert json.loads((out := capsys.readouterr().out)[out.index("{\n"):])["trials"] == 1
    assert main([*TUNE, "--max-trials", "1", "--fix", "units=16"]) == 2
    assert "fixed.units: 8 there, 16 now" in capsys.readouterr().err
    assert main([*TUNE, "--max-trials", "1", "--fix", "units=16", "--overwrite"]) == 0
    assert yaml.safe_load(open("t/best.yaml"))["sweep"]["units"] == 16


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_tuning_with_a_chief_and_two_workers(tmp_path):
    port = _free_port()
    args = [sys.executable, "-m", "crnn_keras.cli", "tune", "--tuner", "random", "--max-trials", "3",
            "--dataset", DATASET, "--epochs", "1", "--output-dir", str(tmp_path / "dist"),
            "--verbose", "0", *NARROW]
    procs = []
    for tuner_id in ("chief", "tuner0", "tuner1"):
        env = dict(os.environ, KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP="127.0.0.1",
                   KERASTUNER_ORACLE_PORT=str(port), TF_CPP_MIN_LOG_LEVEL="3")
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    chief = json.loads(outs[0][0][outs[0][0].index("{\n"):])
    assert chief["completed"] == 3 and chief["failed"] == 0
    trial_files = [f for f in os.listdir(tmp_path / "dist" / "tuner" / "crnn") if f.startswith("trial_")]
    assert len(trial_files) == 3
    workers = [json.loads(o[o.index("{\n"):]) for o, _ in outs[1:]]
    assert [w["worker"] for w in workers] == ["tuner0", "tuner1"]
