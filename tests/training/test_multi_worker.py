import csv
import json
import os
import socket
import subprocess
import sys

import numpy as np

from crnn_keras.training import train

DATASET = "builtin:rooks?train_size=128&validation_size=32&test_size=32"

SCRIPT = """
import json, sys
from crnn_keras.training import train
config = json.loads(sys.argv[1])
metrics = train(config)
print("RESULT " + json.dumps({k: metrics.get(k) for k in ("chief", "replicas", "accuracy")}))
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(out, batch_size):
    # Synchronized batch norm: statistics over the global batch, as with one worker.
    return dict(dataset=DATASET, output_dir=str(out), epochs=2, batch_size=batch_size,
                backbone={"sync_batch_norm": True},
                strategy="multi_worker", sweep={"units": 8}, optimizer="sgd",
                learning_rate=0.02, schedule="constant", verbose=0)


def _run_workers(tmp_path, n, batch_size, name):
    ports = [_free_port() for _ in range(n)]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(n):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-c", SCRIPT, json.dumps(_config(tmp_path / name, batch_size))],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1].split("RESULT ", 1)[1]))
    return results


def test_two_workers_train_the_same_model_as_one(tmp_path):
    import keras

    import crnn_keras.layers  # noqa: F401  (registers the custom layers for loading)

    two = _run_workers(tmp_path, 2, 16, "two")
    assert [r["chief"] for r in two] == [True, False]
    assert two[0]["replicas"] == 2
    one = _run_workers(tmp_path, 1, 32, "one")
    assert one[0]["replicas"] == 1
    # Only the chief writes the run directory.
    run = tmp_path / "two"
    for name in ("last.keras", "metrics.json", "history.csv", "backup"):
        assert (run / name).exists(), name
    a = keras.saving.load_model(run / "last.keras")
    b = keras.saving.load_model(tmp_path / "one" / "last.keras")
    # Same global batch (2 x 16 = 32), data order and batch statistics: the same model.
    diffs = [np.abs(wa.numpy() - wb.numpy()).max() for wa, wb in zip(a.weights, b.weights)]
    assert max(diffs) < 1e-5, diffs

    # One training step: `model.fit` on one host trains the same weights as the loop,
    # and leaves the same run directory, history columns and epoch metrics included.
    config = dict(_config(tmp_path / "fit", 32), strategy="default")
    train(config)
    fit, loop = tmp_path / "fit", tmp_path / "two"
    c = keras.saving.load_model(fit / "last.keras")
    diffs = [np.abs(wa.numpy() - wc.numpy()).max() for wa, wc in zip(a.weights, c.weights)]
    assert max(diffs) < 1e-5, diffs
    assert sorted(os.listdir(fit)) == sorted(os.listdir(loop))
    assert sorted(os.listdir(fit / "backup")) == sorted(os.listdir(loop / "backup"))
    assert os.listdir(loop / "tensorboard")
    fit_rows, loop_rows = _history(fit), _history(loop)
    assert list(fit_rows[0]) == list(loop_rows[0])
    for fr, lr in zip(fit_rows, loop_rows):
        for key in fr:
            assert abs(float(fr[key]) - float(lr[key])) < 1e-4, (key, fr, lr)
    fit_metrics = json.loads((fit / "metrics.json").read_text())
    loop_metrics = json.loads((loop / "metrics.json").read_text())
    assert fit_metrics["checkpoint"] == loop_metrics["checkpoint"] == "best.keras"
    assert fit_metrics["accuracy"] == loop_metrics["accuracy"]


def _history(run):
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))
