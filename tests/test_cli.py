"""The `crnn-keras` subcommands over one tiny trained run."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from crnn_keras.cli import main
from crnn_keras.data.builtin import generate

DATASET = "builtin:rooks?train_size=64&validation_size=32&test_size=32"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--dataset", DATASET, "--epochs", "1", "--batch-size", "32", "--sweep",
                 '{"units": 8}', "--output-dir", str(out), "--verbose", "0"]) == 0
    return out


def test_evaluate_prints_metrics_and_confusion(run_dir, capsys, tmp_path):
    assert main(["evaluate", str(run_dir), "--output", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "top-1 accuracy" in out and "confusion matrix" in out
    assert "top-2 accuracy" not in out  # Always 1.0 with 2 classes: not reported.
    assert "safe" in out and "attacking" in out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["num_examples"] == 32 and np.array(metrics["confusion_matrix"]).sum() == 32


def test_predict_gives_top_k_labels(run_dir, capsys, tmp_path):
    images, _ = generate("rooks", "test", 2, seed=3)
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"{i}.jpg"))
        Image.fromarray(image).save(paths[-1], quality=95)
    assert main(["predict", str(run_dir / "best.keras"), *paths, "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line, path in zip(lines, paths):
        assert line.startswith(path + ": ")
        labels = [part.split()[0] for part in line.split(": ", 1)[1].split(", ")]
        assert sorted(labels) == ["attacking", "safe"]


def test_predict_of_a_folder_predicts_every_image_in_it(run_dir, capsys, tmp_path):
    images, _ = generate("rooks", "test", 3, seed=4)
    (tmp_path / "pics" / "sub").mkdir(parents=True)
    (tmp_path / "pics" / "notes.txt").write_text("not an image")
    paths = [str(tmp_path / "pics" / name) for name in ("a.png", "b.jpg", "sub/c.png")]
    for image, path in zip(images, paths):
        Image.fromarray(image).save(path, quality=95)
    assert main(["predict", str(run_dir), str(tmp_path / "pics"), "--top-k", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(": ")[0] for line in lines] == paths
    (tmp_path / "none").mkdir()
    assert main(["predict", str(run_dir), str(tmp_path / "none")]) == 2
    assert "holds no images" in capsys.readouterr().err


def test_evaluate_output_and_tune_output_dir_are_checked_before_any_work(run_dir, capsys, tmp_path):
    assert main(["evaluate", str(run_dir), "--output", str(tmp_path)]) == 2
    assert f"--output {str(tmp_path)!r} is a folder; name a file" in capsys.readouterr().err
    assert main(["evaluate", str(run_dir), "--image-size", "0"]) == 2
    assert "--image-size must be a positive number of pixels, got 0" in capsys.readouterr().err
    assert main(["evaluate", str(run_dir / "best.keras")]) == 2
    assert "has no run config to read the dataset from; pass --dataset SPEC" in capsys.readouterr().err
    # A search into a training run, and a run into a search, would mix their files.
    assert main(["tune", "--output-dir", str(run_dir), "--dataset", DATASET]) == 2
    assert "holds a training run (config.yaml)" in capsys.readouterr().err
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "search.json").write_text("{}")
    assert main(["train", "--output-dir", str(tmp_path / "search"), "--dataset", DATASET]) == 2
    assert "holds a tuning search (search.json)" in capsys.readouterr().err


def test_predict_bad_image_is_a_clear_error(run_dir, capsys, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    assert main(["predict", str(run_dir), str(bad)]) == 2
    assert "Cannot decode" in capsys.readouterr().err


def test_export_cli_versions(run_dir, tmp_path, capsys):
    base = str(tmp_path / "sm")
    for _ in range(2):
        assert main(["export", str(run_dir), "--name", "rooks", "--base-dir", base]) == 0
    assert sorted(os.listdir(os.path.join(base, "rooks"))) == ["1", "2"]
    assert main(["export", str(run_dir), "--name", "rooks", "--base-dir", base, "--version", "1"]) == 2
    assert "Version 1 already exists in" in (err := capsys.readouterr().err) and "pass --overwrite" in err
    assert "overwrite=True" not in err  # The flag, not the API's argument.
    assert main(["export", str(run_dir), "--name", "", "--base-dir", base]) == 2  # Would write base/1.
    assert "--name '' must be a folder name" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["export", str(run_dir), "--name", "rooks", "--base-dir", str(tmp_path / "file")]) == 2
    assert f"--base-dir {str(tmp_path / 'file')!r} is a file" in capsys.readouterr().err
    labels = open(os.path.join(base, "rooks", "2", "assets", "labels.txt")).read().split()
    assert labels == ["safe", "attacking"]


def test_export_cli_onnx_with_the_run_s_labels(run_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    base = str(tmp_path / "exports")
    assert main(["export", str(run_dir), "--name", "rooks", "--base-dir", base, "--format", "onnx",
                 "--quantize", "dynamic_int8"]) == 0
    assert sorted(os.listdir(os.path.join(base, "rooks", "1"))) == ["labels.txt", "model.onnx"]
    assert open(os.path.join(base, "rooks", "1", "labels.txt")).read().split() == ["safe", "attacking"]
    # SavedModel-only options and another format in the same folder are refused before anything is written.
    assert main(["export", str(run_dir), "--name", "other", "--base-dir", base, "--format", "onnx",
                 "--top-k", "3"]) == 2
    assert "top_k apply to the SavedModel's signatures only" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--name", "rooks", "--base-dir", base]) == 2
    assert "holds onnx versions" in capsys.readouterr().err
    assert sorted(os.listdir(base)) == ["rooks"] and os.listdir(os.path.join(base, "rooks")) == ["1"]


def test_missing_run_dir(capsys, tmp_path):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "no best.keras or last.keras" in capsys.readouterr().err


def test_save_preset_scores_the_full_test_split_and_reloads(run_dir, capsys, tmp_path):
    from crnn_keras.models import CRNNImageClassifier
    from crnn_keras.training import evaluate_model

    folder = tmp_path / "preset"
    assert main(["save-preset", str(run_dir), str(folder), "--description", "tiny rooks"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["description"] == "tiny rooks" and meta["test_examples"] == 32
    assert meta["class_names"] == ["safe", "attacking"] and meta["checkpoint"] == "best.keras"
    assert meta["commands"][0].startswith(f"crnn-keras train --dataset '{DATASET}'")
    model = CRNNImageClassifier.from_preset(str(folder))
    from crnn_keras.data import load_dataset

    test, info = load_dataset(DATASET, "test", batch_size=8, shuffle=False)
    assert round(evaluate_model(model, test, info.class_names)["accuracy"], 4) == meta["test_accuracy"]
    assert main(["save-preset", str(tmp_path), str(tmp_path / "x")]) == 2  # Not a run directory.
    assert "not a run directory" in capsys.readouterr().err
    before = sorted(os.listdir(run_dir))
    assert main(["save-preset", str(run_dir), str(run_dir)]) == 2  # A folder of other work.
    assert "not empty and not a preset" in capsys.readouterr().err and sorted(os.listdir(run_dir)) == before
    assert main(["save-preset", str(run_dir), str(tmp_path / "crnn_tiny")]) == 2  # Would shadow a preset.
    assert "is named like the built-in preset 'crnn_tiny'" in capsys.readouterr().err
    assert not (tmp_path / "crnn_tiny").exists()


def test_run_files_are_whole_and_an_empty_best_checkpoint_fails_over_to_last(run_dir, tmp_path, capsys):
    import shutil

    names = sorted(os.listdir(run_dir))
    assert not [n for n in names if ".tmp-" in n], names  # Every file was renamed into place.
    assert {"best.keras", "last.keras", "config.yaml", "metrics.json", "dataset_info.json",
            "curves.png", "confusion_matrix.png", "history.csv"} <= set(names)
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "best.keras").write_bytes(b"")  # As a kill -9 mid-write left it in older versions.
    with pytest.warns(UserWarning, match="Could not load best.keras.*using .*last.keras"):
        assert main(["evaluate", str(broken)]) == 0
    assert "top-1 accuracy" in capsys.readouterr().out
    (broken / "last.keras").write_bytes(b"PK\x03\x04 torn")
    for target in (broken, broken / "last.keras"):
        assert main(["evaluate", str(target)]) == 2
        err = capsys.readouterr().err
        assert "last.keras' is not a .keras archive (9 bytes): corrupt or truncated" in err, err
        assert "File not found" not in err


def test_reports_leave_the_matplotlib_backend_alone():
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import crnn_keras.training.reports; "
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "svg"


@pytest.mark.parametrize("argv,message", [
    (["predict", "RUN", "x.png", "--top-k", "0"], "--top-k must be at least 1"),
    (["train", "--sweep", '{"units": 8', "--output-dir", "OUT"], "argument --sweep: not valid JSON"),
    (["train", "--config", "BAD_YAML"], "is not valid YAML: while parsing a flow sequence in"),  # One line.
    (["train", "--strategy", "multi_worker", "--output-dir", "OUT"], "TF_CONFIG is not valid JSON"),
])
def test_clear_errors_name_the_flag_or_file(run_dir, tmp_path, capsys, monkeypatch, argv, message):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("epochs: [1, 2\n")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    argv = [{"RUN": str(run_dir), "OUT": str(tmp_path / "out"), "BAD_YAML": str(bad_yaml)}.get(a, a) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # Nothing written.


def _run_entry(args, code=None):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "crnn_keras_cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_train_help_lists_every_flag_with_help_default_and_choices_without_tensorflow():
    import dataclasses

    from crnn_keras.training.config import FIELD_HELP, TrainConfig

    assert set(FIELD_HELP) == {f.name for f in dataclasses.fields(TrainConfig)}
    code = ("import sys, crnn_keras_cli\ntry:\n    crnn_keras_cli.main(['train', '--help'])\n"
            "except SystemExit as e:\n    print('EXIT', e.code, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = _run_entry(None, code)
    out = " ".join(result.stdout.split())  # argparse wraps lines.
    assert out.endswith("EXIT 0 False False"), result.stdout + result.stderr
    for field in dataclasses.fields(TrainConfig):
        assert "--" + field.name.replace("_", "-") in out
    assert out.count("(default:") + out.count("(default: the dataset's)") >= len(FIELD_HELP) - 2
    assert "--strategy {mirrored,multi_worker,default}" in out
    assert "--optimizer {sgd,adamw,adam}" in out and "--schedule {cosine,step,constant}" in out
    assert "crnn_pathfinder" in out and "crnn_fashion_mnist_trained" in out  # --preset choices.
    assert '--backbone JSON the CNN, as JSON, e.g. \'{"type": "conv"' in out
    assert result.stderr == ""


def test_a_run_prints_no_tensorflow_start_up_lines(tmp_path):
    # Training picks its devices (on a machine without a GPU, TensorFlow's cuInit fails, and says so).
    result = _run_entry(["train", "--dataset", "folder:/no/such/folder", "--output-dir", str(tmp_path / "r")])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: Image folder '/no/such/folder' does not exist or is not a directory."]


def test_evaluate_and_save_preset_read_the_runs_own_seeded_splits(run_dir, tmp_path, monkeypatch, capsys):
    # A folder's test draw and a carved validation depend on the seed: seed 0's would overlap
    # the training images of a run trained with another seed.
    import shutil

    import crnn_keras.data as data

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    config = (run / "config.yaml").read_text()
    assert "seed: 0\n" in config
    (run / "config.yaml").write_text(config.replace("seed: 0\n", "seed: 7\n"))
    real, seeds = data.load_dataset, []

    def spy(*args, **kwargs):
        seeds.append(kwargs.get("seed"))
        return real(*args, **kwargs)

    monkeypatch.setattr(data, "load_dataset", spy)
    assert main(["evaluate", str(run)]) == 0
    assert main(["save-preset", str(run), str(tmp_path / "preset")]) == 0
    assert main(["evaluate", str(run), "--seed", "2"]) == 0
    assert seeds == [7, 7, 2]
