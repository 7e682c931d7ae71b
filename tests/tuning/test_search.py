import json
import os
import socket
import subprocess
import sys

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
    for tuner in ("hyperband", "bayesian"):
        assert main(["tune", "--tuner", tuner, "--max-trials", "2", "--dataset", DATASET, "--epochs", "2",
                     "--output-dir", tuner, "--verbose", "0", *NARROW]) == 0
        assert os.path.exists(f"{tuner}/best.yaml")


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
