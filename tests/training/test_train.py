import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from crnn_keras.training import train

SMALL = "builtin:rooks?train_size=192&validation_size=64&test_size=64"


def _config(tmp_path, **kw):
    config = dict(dataset=SMALL, output_dir=str(tmp_path / "run"), epochs=2, batch_size=32,
                  preset="crnn_tiny", sweep={"units": 8}, verbose=0)
    config.update(kw)
    return config


def test_run_directory_contents(tmp_path, capsys):
    metrics = train(_config(tmp_path, optimizer="sgd", learning_rate=0.05, schedule="step",
                            step_epochs=1, label_smoothing=0.1, augment=True, translate=0.1, verbose=2))
    run = tmp_path / "run"
    # A short summary before the first epoch, not the whole config (that is in config.yaml).
    out = capsys.readouterr().out
    assert out.startswith(f"Training crnn_tiny ({metrics['params']:,} parameters) on {SMALL}: 2 classes, "
                          f"32x32x3 images, 192 for training.\n2 epoch(s), batch 32 per replica, sgd at 0.05 "
                          f"(step); the run goes to {run} (full config in config.yaml).\n")
    assert "Resolved config" not in out and '"dataset"' not in out
    for name in ("config.yaml", "dataset_info.json", "best.keras", "last.keras", "history.csv",
                 "metrics.json", "curves.png", "confusion_matrix.png"):
        assert (run / name).exists(), name
    assert os.listdir(run / "tensorboard")
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["accuracy"] == metrics["accuracy"] and saved["num_examples"] == 64
    # One number for one run: metrics.json scores the checkpoint that `evaluate` and `export` load.
    assert saved["checkpoint"] == "best.keras"
    from crnn_keras.cli import main

    assert main(["evaluate", str(run), "--output", str(tmp_path / "evaluated.json")]) == 0
    assert json.loads((tmp_path / "evaluated.json").read_text())["accuracy"] == saved["accuracy"]
    assert np.array(saved["confusion_matrix"]).sum() == 64
    assert set(saved["per_class_accuracy"]) == {"safe", "attacking"}
    with open(run / "history.csv") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1"]


def test_training_lowers_loss(tmp_path):
    train(_config(tmp_path, dataset="builtin:shapes?train_size=1024&test_size=64&validation_size=64",
                  epochs=4, learning_rate=1e-2))
    with open(tmp_path / "run" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < 0.85 * losses[0], losses
    assert float(rows[-1]["accuracy"]) > 0.4  # Chance is 0.25.


def test_mirrored_strategy_with_two_replicas_matches_one(tmp_path):
    # Two logical CPUs (set before TF initializes) in a fresh process.
    script = textwrap.dedent(f"""
        import json, sys, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from crnn_keras.training import train
        out = {{}}
        for name, strategy, batch in (("two", "mirrored", 16), ("one", "default", 32)):
            m = train(dict(dataset="{SMALL}", output_dir=sys.argv[1] + "/" + name, epochs=1,
                           batch_size=batch, strategy=strategy, sweep={{"units": 8}}, verbose=0,
                           optimizer="sgd", learning_rate=0.01, schedule="constant",
                           backbone={{"sync_batch_norm": True}}))
            out[name] = m
        print(json.dumps({{k: [v["replicas"], v["accuracy"]] for k, v in out.items()}}))
    """)
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["two"][0] == 2 and out["one"][0] == 1
    import keras

    a = keras.saving.load_model(tmp_path / "two" / "last.keras")
    b = keras.saving.load_model(tmp_path / "one" / "last.keras")
    # Same global batch (2 x 16 = 32), data order and (synchronized) batch-norm
    # statistics: the same weights up to float noise.
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_allclose(wa.numpy(), wb.numpy(), atol=1e-5)


TRAIN_SCRIPT = """
import sys
from crnn_keras.training import train
train(dict(dataset=sys.argv[2], output_dir=sys.argv[1], epochs=int(sys.argv[3]), batch_size=32,
           sweep={"units": 8}, verbose=2, optimizer="adamw", learning_rate=3e-3))
"""


def _history(run):
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def test_kill_9_then_resume_matches_uninterrupted_run(tmp_path):
    dataset = "builtin:rooks?train_size=320&validation_size=32&test_size=64"
    epochs = 4
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    straight = tmp_path / "straight"
    subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, str(straight), dataset, str(epochs)],
                   check=True, env=env, capture_output=True, timeout=600)

    crashed = tmp_path / "crashed"
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, str(crashed), dataset, str(epochs)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metadata = crashed / "backup" / "training_metadata.json"
    deadline = time.time() + 300
    while time.time() < deadline:  # Kill in the middle of epoch 3 (after 2 finished).
        if metadata.exists() and json.loads(metadata.read_text())["epoch"] >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (crashed / "metrics.json").exists()
    finished = json.loads(metadata.read_text())["epoch"]
    assert 2 <= finished < epochs

    resumed = subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, str(crashed), dataset, str(epochs)],
                             env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming after epoch {finished}" in resumed.stdout
    # No epoch lost or repeated: one history row per epoch, in order.
    rows = _history(crashed)
    assert [r["epoch"] for r in rows] == [str(e) for e in range(epochs)]
    for a, b in zip(rows, _history(straight)):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-3, abs=1e-4)
    m1 = json.loads((crashed / "metrics.json").read_text())
    m2 = json.loads((straight / "metrics.json").read_text())
    assert m1["accuracy"] == pytest.approx(m2["accuracy"], abs=1 / 64 + 1e-9)
    # Training time sums the committed epochs of both processes.
    assert m1["train_seconds"] > 0.5 * m2["train_seconds"]


def test_a_bad_or_different_rerun_leaves_the_finished_run_as_it_was(tmp_path, capsys):
    from crnn_keras.cli import main

    run = tmp_path / "run"
    args = ["train", "--dataset", SMALL, "--epochs", "1", "--batch-size", "32", "--sweep", '{"units": 8}',
            "--output-dir", str(run), "--verbose", "0"]
    assert main(args) == 0
    files = ("config.yaml", "metrics.json", "best.keras", "history.csv")
    before = {f: (run / f).read_bytes() for f in files}
    assert main(args[:2] + ["foo:bar"] + args[3:]) == 2
    assert "Unknown dataset scheme 'foo'" in capsys.readouterr().err
    assert main(args + ["--preset", "crnn_small"]) == 2
    assert "preset: 'crnn_tiny' there, 'crnn_small' now" in capsys.readouterr().err
    # A replacement that fails before training (a bad option) writes nothing.
    assert main(args + ["--sweep", '{"unit": 8}', "--overwrite"]) == 2
    assert "Unknown sweep options" in capsys.readouterr().err
    assert {f: (run / f).read_bytes() for f in files} == before
    assert main(args[:-3] + [str(tmp_path / "fresh"), "--sweep", '{"unit": 8}']) == 2
    assert not (tmp_path / "fresh").exists()  # So the corrected command is not refused.
    # One that fails while training (here: it diverges) keeps the replaced run aside.
    diverging = ["--optimizer", "sgd", "--learning-rate", "1e12", "--schedule", "constant", "--epochs", "3"]
    assert main(args + diverging + ["--overwrite"]) == 2
    aside = tmp_path / "run.replaced-1"
    err = capsys.readouterr().err
    assert "training diverged" in err  # Naming the kept run, which a finished rerun would delete.
    assert f"The finished run this one replaces is kept in {str(aside)!r}; a rerun with --overwrite that " \
           f"finishes deletes it. To restore it instead, delete {str(run)!r} and rename {str(aside)!r} to it." in err
    assert {f: (aside / f).read_bytes() for f in files} == before
    shutil.rmtree(run)
    os.replace(aside, run)  # Put back by hand.
    assert {f: (run / f).read_bytes() for f in files} == before
    # A killed writer's temporaries go on the next run; a live writer's stay.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    # A restarted container often gets the killed process's pid back: our own pid's files are stale too.
    stale = [run / f".best.tmp-{dead}-0123abcd.keras", run / "backup" / f".epoch-00001.tmp-{dead}-0123abcd.weights.h5",
             run / f".metrics.tmp-{os.getpid()}-0123abcd.json"]
    live = run / f".last.tmp-{os.getppid()}-0123abcd.keras"
    for path in stale + [live]:
        path.write_bytes(b"partial")
    with pytest.warns(UserWarning, match="left by an interrupted run"):
        assert main(args) == 0  # The identical config resumes (here: already finished).
    # The re-scored run still reports the training time of its epochs, not the rerun's.
    assert json.loads((run / "metrics.json").read_text())["train_seconds"] == \
        json.loads(before["metrics.json"])["train_seconds"] > 0
    assert not any(p.exists() for p in stale) and live.exists()
    assert {f: (run / f).read_bytes() for f in ("config.yaml", "best.keras", "history.csv")} == \
        {f: before[f] for f in ("config.yaml", "best.keras", "history.csv")}
    assert main(args + diverging + ["--overwrite"]) == 2  # Leaves run.replaced-1 again.
    assert main(args + ["--sweep", '{"units": 4}', "--overwrite"]) == 0
    assert '"units": 4' in json.dumps(__import__("yaml").safe_load((run / "config.yaml").read_text()))
    assert not list(tmp_path.glob("run.replaced-*"))  # Deleted once the new run finished.
    (tmp_path / "file").write_text("not a folder")
    assert main(args[:-4] + ["--output-dir", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_history_is_written_whole_each_epoch(tmp_path):
    import keras

    from crnn_keras.training.callbacks import AtomicCSVLogger

    path = tmp_path / "history.csv"
    logger = AtomicCSVLogger(str(path))
    logger.set_model(keras.Sequential())
    assert not path.exists()  # Nothing, not an empty file, before the first epoch ends.
    logger.on_epoch_end(0, {"loss": 0.5, "accuracy": 0.75})
    logger.on_epoch_end(1, {"loss": 0.25, "accuracy": 1.0})
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [(r["epoch"], float(r["loss"])) for r in rows] == [("0", 0.5), ("1", 0.25)]
    assert not [p for p in os.listdir(tmp_path) if p != "history.csv"]
