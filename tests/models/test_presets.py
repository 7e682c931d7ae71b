import json
import os
import shutil

import numpy as np
import pytest

from crnn_keras.data import load_dataset
from crnn_keras.models import CRNNBackbone, CRNNImageClassifier, list_presets, preset_metadata
from crnn_keras.models.presets import trained_presets

ARCHITECTURES = ["crnn_fashion_mnist", "crnn_paper", "crnn_small", "crnn_tiny"]
FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def test_list_presets_says_which_carry_weights():
    presets = list_presets()
    assert set(ARCHITECTURES) <= set(presets)
    assert not any(presets[name]["weights"] for name in ARCHITECTURES)
    trained = [name for name, p in presets.items() if p["weights"]]
    assert {"crnn_tiny_rooks", "crnn_fashion_mnist_trained", "crnn_pathfinder_trained"} <= set(trained)
    hub = CRNNImageClassifier.presets  # keras-hub's form.
    assert list(hub) == list(presets) and hub["crnn_tiny_rooks"]["metadata"]["params"] == 46834
    assert hub["crnn_small"]["kaggle_handle"] is None and hub["crnn_tiny_rooks"]["metadata"]["weights"]


@pytest.mark.parametrize("name", sorted(trained_presets()))
def test_trained_preset_layout_and_metadata(name):
    folder = trained_presets()[name]
    assert sorted(os.listdir(folder)) == ["config.json", "metadata.json", "model.weights.h5",
                                          "task.json", "task.weights.h5"]
    assert sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)) < 2_000_000
    meta = preset_metadata(name)
    model = CRNNImageClassifier.from_preset(name)
    assert meta["parameter_count"] == model.count_params()
    assert meta["num_classes"] == model.num_classes == len(meta["class_names"])
    command = meta["commands"][0]
    if "benchmarks.lra_pathfinder_search" in command:  # Fresh images each step, a curriculum: not `train`'s.
        difficulty = meta["training_config"]["difficulty"]
        assert command.endswith(f" {difficulty}") and meta["dataset"].startswith(
            f"builtin:lra_pathfinder?difficulty={difficulty}&")
        assert meta["curve"][-1]["seen"] == meta["training_config"]["images_seen"]
    else:
        assert command.startswith("crnn-keras train ") and meta["dataset"] in command
    assert 0 < meta["test_accuracy"] <= 1 and meta["test_examples"] > 0


def _reproduces_its_accuracy(name):
    meta = preset_metadata(name)
    model = CRNNImageClassifier.from_preset(name)
    test, info = load_dataset(meta["dataset"], meta["test_split"], batch_size=500, shuffle=False)
    assert info.class_names == meta["class_names"]
    correct = total = 0
    for x, y in test:
        correct += int((np.argmax(model.predict_on_batch(x), -1) == y.numpy()).sum())
        total += len(y)
    assert total == meta["test_examples"]
    assert abs(correct / total - meta["test_accuracy"]) <= 0.002, (correct / total, meta["test_accuracy"])


def test_rooks_preset_reproduces_its_test_accuracy():
    _reproduces_its_accuracy("crnn_tiny_rooks")


def test_pathfinder_preset_reproduces_its_test_accuracy():
    _reproduces_its_accuracy("crnn_pathfinder_trained")


def test_lra_pathfinder_preset_reproduces_its_test_accuracy():
    _reproduces_its_accuracy("crnn_lra_pathfinder_trained")  # Long Range Arena's Pathfinder-32 (easy).


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_preset_reproduces_its_accuracy_on_the_real_test_set():
    _reproduces_its_accuracy("crnn_fashion_mnist_trained")


def test_architecture_preset_overrides_and_backbone_from_preset():
    model = CRNNImageClassifier.from_preset("crnn_small", num_classes=4, image_shape=(None, None, 1),
                                            sweep={"cell": "gru", "blocks": 2}, dropout=0.0)
    assert model.backbone.sweep == {"units": 64, "cell": "gru", "order": "rows_then_columns", "blocks": 2}
    assert model.backbone.image_shape == (None, None, 1) and model.dropout == 0.0
    backbone = CRNNBackbone.from_preset("crnn_tiny_rooks")
    trained = CRNNImageClassifier.from_preset("crnn_tiny_rooks")
    for a, b in zip(backbone.get_weights(), trained.backbone.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_save_to_preset_round_trip_and_new_head(tmp_path):
    model = CRNNImageClassifier.from_preset("crnn_tiny_rooks")
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("float32")
    model.save_to_preset(str(tmp_path / "p"))
    again = CRNNImageClassifier.from_preset(str(tmp_path / "p"))
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    same = CRNNImageClassifier.from_preset(str(tmp_path / "p"), num_classes=2)  # The trained head.
    np.testing.assert_allclose(same.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    with pytest.warns(UserWarning, match="trained with 2 classes.*new, randomly initialised.*num_classes=5"):
        five = CRNNImageClassifier.from_preset("crnn_tiny_rooks", num_classes=5)
    assert five.output_shape == (None, 5)
    for a, b in zip(five.backbone.get_weights(), model.backbone.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_failed_save_leaves_the_earlier_preset_as_it_was(tmp_path, monkeypatch):
    from keras_hub.models import Task

    target = tmp_path / "p"
    CRNNImageClassifier.from_preset("crnn_tiny_rooks").save_to_preset(str(target))
    before = {f: (target / f).read_bytes() for f in os.listdir(target)}

    def crash(self, preset_dir, **kwargs):
        os.makedirs(preset_dir)
        with open(os.path.join(preset_dir, "config.json"), "w") as f:
            f.write("{partial")
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(Task, "save_to_preset", crash)
    with pytest.raises(KeyboardInterrupt):
        CRNNImageClassifier.from_preset("crnn_tiny", num_classes=3).save_to_preset(str(target))
    assert {f: (target / f).read_bytes() for f in os.listdir(target)} == before
    assert os.listdir(tmp_path) == ["p"]  # No staging folder left behind.
    monkeypatch.undo()
    (tmp_path / "p.tmp-999999999-beef").mkdir()  # As a kill -9 mid-save would leave it.
    with pytest.warns(UserWarning, match="left by an interrupted save_to_preset"):
        CRNNImageClassifier.from_preset("crnn_tiny", num_classes=3).save_to_preset(str(target))
    assert os.listdir(tmp_path) == ["p"] and CRNNImageClassifier.from_preset(str(target)).num_classes == 3


def test_sharded_presets_trainable_and_mixed_precision(tmp_path):
    model = CRNNImageClassifier.from_preset("crnn_tiny_rooks")
    model.save_to_preset(str(tmp_path / "sharded"), max_shard_size=0.0001)  # GB: several shards.
    assert "model.weights.json" in os.listdir(tmp_path / "sharded")
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("float32")
    again = CRNNImageClassifier.from_preset(str(tmp_path / "sharded"), trainable=False)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert not again.trainable
    mixed = CRNNImageClassifier.from_preset("crnn_tiny_rooks", dtype="mixed_bfloat16")
    assert mixed.get_layer("pooler").compute_dtype == "bfloat16"
    assert mixed.backbone.get_layer("stage1_1_conv").compute_dtype == "bfloat16"


def test_an_interrupted_save_is_restored_or_removed(tmp_path):
    target = tmp_path / "p"
    CRNNImageClassifier.from_preset("crnn_tiny_rooks").save_to_preset(str(target))
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    os.rename(target, tmp_path / f"p.old-{dead}-abc")  # Killed between the two renames.
    (tmp_path / f"p.tmp-{dead}-def").mkdir()
    (tmp_path / f"p.tmp-{os.getpid()}-live").mkdir()  # A concurrent save in this process: kept.
    with pytest.warns(UserWarning) as record:
        CRNNImageClassifier.from_preset("crnn_tiny", num_classes=3).save_to_preset(str(tmp_path / "q"))
        CRNNImageClassifier.from_preset("crnn_tiny", num_classes=3).save_to_preset(str(target))
    messages = " ".join(str(w.message) for w in record)
    assert "Restored" in messages and "left by an interrupted save_to_preset" in messages
    assert sorted(os.listdir(tmp_path)) == ["p", f"p.tmp-{os.getpid()}-live", "q"]
    assert CRNNImageClassifier.from_preset(str(target)).num_classes == 3


def test_hub_handles_pass_through_to_keras_hub(tmp_path, monkeypatch):
    from keras_hub.src.utils import preset_utils

    local = trained_presets()["crnn_tiny_rooks"]
    asked = []

    def fake_get_file(preset, path):  # Stands in for the Hugging Face download.
        asked.append(preset)
        assert preset == "hf://someone/crnn_tiny_rooks"
        return os.path.join(local, path)

    monkeypatch.setattr(preset_utils, "get_file", fake_get_file)
    model = CRNNImageClassifier.from_preset("hf://someone/crnn_tiny_rooks")
    assert model.num_classes == 2 and asked


def _broken_copy(tmp_path, name, content):
    folder = tmp_path / "broken"
    shutil.copytree(trained_presets()["crnn_tiny_rooks"], folder)
    if content is None:
        os.remove(folder / name)
    else:
        (folder / name).write_bytes(content)
    return str(folder)


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("config.json", None, "has no config.json"),
        ("config.json", b"{not json", "config.json' is corrupt"),
        ("task.json", b"[1, 2]", "task.json' is corrupt"),
        ("model.weights.h5", None, "has no model.weights.h5"),
        ("model.weights.h5", b"garbage", "model.weights.h5' is corrupt or not an HDF5 file"),
        ("task.weights.h5", b"garbage", "task.weights.h5' is corrupt or not an HDF5 file"),
    ],
)
def test_missing_or_corrupt_preset_files_are_named(tmp_path, name, content, message):
    with pytest.raises(ValueError, match=message):
        CRNNImageClassifier.from_preset(_broken_copy(tmp_path, name, content))


def test_a_preset_whose_task_and_backbone_configs_disagree_is_refused(tmp_path):
    folder = _broken_copy(tmp_path, "config.json", None)
    shutil.copy(os.path.join(trained_presets()["crnn_tiny_rooks"], "config.json"), folder)
    task = json.load(open(os.path.join(folder, "task.json")))
    task["config"]["backbone"]["config"]["sweep"]["units"] = 8
    with open(os.path.join(folder, "task.json"), "w") as f:
        json.dump(task, f)
    for cls, kwargs in ((CRNNImageClassifier, {}), (CRNNBackbone, {})):
        with pytest.raises(ValueError, match="is inconsistent: config.json and task.json describe different "
                                             "backbones \\(sweep: .*'units': 32.* in config.json, .*'units': 8"):
            cls.from_preset(folder, **kwargs)


def test_weights_that_do_not_fit_name_the_layer(tmp_path):
    other = CRNNImageClassifier.from_preset("crnn_tiny", num_classes=2, sweep={"units": 8})
    other.save_to_preset(str(tmp_path / "other"))
    folder = _broken_copy(tmp_path, "model.weights.h5", (tmp_path / "other" / "model.weights.h5").read_bytes())
    with pytest.raises(ValueError, match="does not fit the model: layer '.*spatial_sweep.*' variable"):
        CRNNImageClassifier.from_preset(folder)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: CRNNImageClassifier.from_preset("crnn_huge", num_classes=3),
         "Unknown preset 'crnn_huge'. Available presets: crnn_fashion_mnist, .*crnn_tiny_rooks"),
        (lambda: CRNNImageClassifier.from_preset("crnn_small"), "pass num_classes"),
        (lambda: CRNNImageClassifier.from_preset("crnn_tiny_rooks", sweep={"units": 4}),
         "do not fit the trained weights"),
        (lambda: CRNNImageClassifier.from_preset("crnn_small", num_classes=3, head={"units": 3}),
         "Unknown head options"),
        (lambda: CRNNBackbone.from_preset("crnn_tiny_rooks", cnn="alexnet"), "do not fit the trained weights"),
        (lambda: CRNNImageClassifier.from_preset("crnn_tiny", num_classes=3, foo=1), "unknown arguments \\['foo'\\]"),
        (lambda: CRNNBackbone.from_preset("crnn_tiny", pooling="avg"), "unknown arguments \\['pooling'\\]"),
    ],
)
def test_bad_preset_requests(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_metadata_json_is_plain_json():
    for folder in trained_presets().values():
        with open(os.path.join(folder, "metadata.json")) as f:
            assert isinstance(json.load(f)["training_config"], dict)


def _small(**kwargs):
    return CRNNImageClassifier.from_preset("crnn_tiny", num_classes=2, image_shape=(16, 16, 3),
                                           **{"sweep": {"units": 4}, **kwargs})


def test_save_to_preset_refuses_a_folder_of_other_work(tmp_path, monkeypatch):
    from keras_hub.models import Task

    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "best.keras").write_text("precious")
    model = _small()
    for folder in (run, tmp_path / "runs"):  # `crnn-keras save-preset runs/a runs` wiped every run.
        with pytest.raises(ValueError, match="is not empty and not a preset \\(it holds (best.keras|a)\\); "
                                             ".*Choose an empty or new folder"):
            model.save_to_preset(str(folder))
        with pytest.raises(ValueError, match="Choose an empty or new folder"):
            model.backbone.save_to_preset(str(folder))
    assert os.listdir(run) == ["best.keras"] and os.listdir(tmp_path / "runs") == ["a"]
    (tmp_path / "empty").mkdir()
    model.save_to_preset(str(tmp_path / "empty"))  # An empty folder, and a preset (sharded too):
    model.save_to_preset(str(tmp_path / "empty"), max_shard_size=0.00002)
    assert "model_00001.weights.h5" in os.listdir(tmp_path / "empty")
    model.save_to_preset(str(tmp_path / "empty"))
    assert "config.json" in os.listdir(tmp_path / "empty")
    before = {f: (tmp_path / "empty" / f).read_bytes() for f in os.listdir(tmp_path / "empty")}

    def save_while_a_file_comes_in(self, preset_dir, **kwargs):
        (tmp_path / "empty" / "notes.txt").write_text("written during the save")
        os.makedirs(preset_dir)
        with open(os.path.join(preset_dir, "metadata.json"), "w") as f:
            f.write("{}")

    monkeypatch.setattr(Task, "save_to_preset", save_while_a_file_comes_in)
    with pytest.raises(ValueError, match="it holds notes.txt"):
        model.save_to_preset(str(tmp_path / "empty"))
    assert {f: (tmp_path / "empty" / f).read_bytes() for f in os.listdir(tmp_path / "empty")} == {
        **before, "notes.txt": b"written during the save"}


def test_a_folder_named_like_a_builtin_preset_is_ambiguous(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = CRNNImageClassifier.from_preset("crnn_tiny_rooks")
    for name in ("crnn_tiny", "crnn_tiny_rooks"):
        # Saving one is refused (every later `--preset NAME` run here would be), wherever it goes.
        for folder in (name, str(tmp_path / "presets" / name)):
            with pytest.raises(ValueError, match=f"is named like the built-in preset '{name}'.*'{name}_mine'"):
                model.save_to_preset(folder)
        assert not os.path.exists(name)
        shutil.copytree(trained_presets()["crnn_tiny_rooks"], name)  # One made by hand.
        for cls, kwargs in ((CRNNImageClassifier, {"num_classes": 2}), (CRNNBackbone, {})):
            with pytest.raises(ValueError, match=f"'{name}' is both a built-in preset and a folder.*"
                                                 f"Pass './{name}'"):
                cls.from_preset(name, **kwargs)
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("float32")
    again = CRNNImageClassifier.from_preset("./crnn_tiny")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_presets_round_trip(tmp_path, policy):
    import keras

    keras.mixed_precision.set_global_policy(policy)  # As training with --precision does.
    model = _small()
    keras.mixed_precision.set_global_policy("float32")
    model.save_to_preset(str(tmp_path / "p"))
    x = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3)).astype("float32")
    again = CRNNImageClassifier.from_preset(str(tmp_path / "p"))
    assert again.dtype_policy.name == again.backbone.dtype_policy.name == policy
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    assert CRNNBackbone.from_preset(str(tmp_path / "p")).dtype_policy.name == policy
    other = "mixed_bfloat16" if policy == "mixed_float16" else "mixed_float16"
    keras.mixed_precision.set_global_policy(other)  # A global policy that was set wins, as in keras-hub.
    assert CRNNImageClassifier.from_preset(str(tmp_path / "p")).backbone.dtype_policy.name == other
    keras.mixed_precision.set_global_policy("float32")
    assert CRNNImageClassifier.from_preset(str(tmp_path / "p"), dtype="float32").dtype_policy.name == "float32"


def test_weights_of_a_larger_model_are_refused(tmp_path):
    _small(sweep={"units": 4, "blocks": 2}).save_to_preset(str(tmp_path / "two"))
    _small(sweep={"units": 4, "blocks": 1}).save_to_preset(str(tmp_path / "one"))
    shutil.copy(tmp_path / "two" / "model.weights.h5", tmp_path / "one" / "model.weights.h5")
    with pytest.raises(ValueError, match="does not fit the model: it has weights for layers the model "
                                         "lacks: '.*spatial_sweep.*'.*save the preset again"):
        CRNNImageClassifier.from_preset(str(tmp_path / "one"))
