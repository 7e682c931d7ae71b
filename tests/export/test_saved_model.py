import io
import json
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from crnn_keras.export import export_saved_model, layout
from crnn_keras.models import CRNNImageClassifier

NAMES = ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def model():
    return CRNNImageClassifier.from_preset("crnn_tiny", num_classes=3, image_shape=(16, 16, 3), sweep={"units": 4})


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    base = tmp_path_factory.mktemp("savedmodels") / "crnn"
    path = export_saved_model(model, str(base), class_names=NAMES, top_k=2)
    return path


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_layout_and_labels(exported):
    assert os.path.basename(exported) == "1"
    assert {"assets", "saved_model.pb", "variables"} <= set(os.listdir(exported))
    assert open(os.path.join(exported, "assets", "labels.txt")).read().split() == NAMES


LOADER = """
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "crnn_keras":
            raise ImportError("crnn_keras is blocked in this process")
sys.meta_path.insert(0, Block())
try:
    import crnn_keras  # noqa
    raise SystemExit("crnn_keras should not be importable here")
except ImportError:
    pass
import numpy as np, tensorflow as tf
loaded = tf.saved_model.load(sys.argv[1])
data = np.load(sys.argv[2])
pngs = [open(p, "rb").read() for p in sys.argv[3:]]
by_bytes = loaded.signatures["serving_default"](image_bytes=tf.constant(pngs))
by_tensor = loaded.signatures["serve_tensor"](images=tf.constant(data))
by_uint8 = loaded.signatures["serve_uint8"](images=tf.constant(data.astype(np.uint8)))
out = {"bytes": {k: v.numpy().tolist() for k, v in by_bytes.items() if k != "top_k_labels"},
       "tensor": {k: v.numpy().tolist() for k, v in by_tensor.items() if k != "top_k_labels"},
       "uint8": by_uint8["probabilities"].numpy().tolist(),
       "labels": [[s.decode() for s in row] for row in by_bytes["top_k_labels"].numpy()]}
print(json.dumps(out))
"""


def test_loads_and_predicts_without_crnn_keras(model, exported, tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 16, 16, 3)).astype(np.uint8)
    np.save(tmp_path / "images.npy", images.astype(np.float32))
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"{i}.png"))
        open(paths[-1], "wb").write(_png(image))
    result = subprocess.run([sys.executable, "-c", LOADER, exported, str(tmp_path / "images.npy"), *paths],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    expected = model.predict_proba(images.astype(np.float32), verbose=0)
    np.testing.assert_allclose(out["tensor"]["probabilities"], expected, atol=1e-5)
    np.testing.assert_allclose(out["bytes"]["probabilities"], out["tensor"]["probabilities"], atol=1e-5)
    np.testing.assert_allclose(out["uint8"], out["tensor"]["probabilities"], atol=1e-6)
    top = np.argsort(-expected, axis=1)[:, :2]
    assert out["bytes"]["top_k_classes"] == top.tolist()
    assert out["labels"] == [[NAMES[i] for i in row] for row in top]
    np.testing.assert_allclose(out["bytes"]["top_k_scores"], np.sort(expected, 1)[:, ::-1][:, :2], atol=1e-5)


def test_saved_model_cli_lists_the_signatures(exported):
    cli = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable)) or shutil.which("saved_model_cli")
    assert cli, "saved_model_cli comes with tensorflow"
    text = subprocess.run([cli, "show", "--dir", exported, "--all"], capture_output=True, text=True,
                          timeout=300, check=True).stdout
    default = text.split("signature_def['serving_default']")[1].split("signature_def[")[0]
    assert "inputs['image_bytes'] tensor_info:" in default and "dtype: DT_STRING" in default
    assert "shape: (-1)" in default
    for name, dtype, shape in [("probabilities", "DT_FLOAT", "(-1, 3)"), ("top_k_scores", "DT_FLOAT", "(-1, 2)"),
                               ("top_k_classes", "DT_INT32", "(-1, 2)"), ("top_k_labels", "DT_STRING", "(-1, 2)")]:
        block = default.split(f"outputs['{name}'] tensor_info:")[1].split("outputs[")[0]
        assert f"dtype: {dtype}" in block and f"shape: {shape}" in block
    tensor = text.split("signature_def['serve_tensor']")[1].split("signature_def[")[0]
    assert "inputs['images'] tensor_info:" in tensor and "shape: (-1, 16, 16, 3)" in tensor
    uint8 = text.split("signature_def['serve_uint8']")[1].split("signature_def[")[0]
    assert "inputs['images'] tensor_info:" in uint8 and "dtype: DT_UINT8" in uint8 and "shape: (-1, 16, 16, 3)" in uint8


def test_graph_uses_only_standard_ops_no_cudnn_and_no_xla(exported):
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import op_def_registry

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(open(os.path.join(exported, "saved_model.pb"), "rb").read())
    ops = set()
    for meta in proto.meta_graphs:
        ops |= {node.op for node in meta.graph_def.node}
        for function in meta.graph_def.library.function:
            ops |= {node.op for node in function.node_def}
    function_names = {f.signature.name for m in proto.meta_graphs for f in m.graph_def.library.function}
    ops -= function_names
    assert ops and not any(op.startswith("Cudnn") for op in ops)
    assert [op for op in ops if op_def_registry.get(op) is None] == []
    # The sweeps' XLA compilation stays in Python: TF Serving builds may lack XLA.
    assert not [f.signature.name for m in proto.meta_graphs for f in m.graph_def.library.function
                if "_XlaMustCompile" in f.attr and f.attr["_XlaMustCompile"].b]


@pytest.mark.parametrize(
    "data,message",
    [
        (b"definitely not an image, just some text bytes", "not a JPEG, PNG, BMP or GIF"),
        (b"tiny", "too short"),
        ("truncated", "image 1 of 2: truncated PNG"),
    ],
)
def test_bad_bytes_give_invalid_argument(exported, data, message):
    loaded = tf.saved_model.load(exported)
    png = _png(np.zeros((16, 16, 3), np.uint8))
    if data == "truncated":
        data = png[: len(png) // 2]
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures["serving_default"](image_bytes=tf.constant([png, data]))


def test_pixel_limit(model, tmp_path):
    path = export_saved_model(model, str(tmp_path / "m"), max_pixels=100 * 100)
    loaded = tf.saved_model.load(path)
    ok = loaded.signatures["serving_default"](image_bytes=tf.constant([_png(np.zeros((90, 100, 3), np.uint8))]))
    assert ok["probabilities"].shape == (1, 3)
    for fmt in ("PNG", "GIF", "BMP", "JPEG"):
        buffer = io.BytesIO()
        Image.fromarray(np.zeros((101, 100, 3), np.uint8)).save(buffer, format=fmt)
        message = "image 0 of 1: 100 x 101 = 10100 pixels, over the limit max_pixels=10000"
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            loaded.signatures["serving_default"](image_bytes=tf.constant([buffer.getvalue()]))


def test_versions_never_overwritten_unless_asked(model, tmp_path):
    base = str(tmp_path / "m")
    assert export_saved_model(model, base).endswith("/1")
    assert export_saved_model(model, base).endswith("/2")
    with pytest.raises(FileExistsError, match="Version 1 already exists"):
        export_saved_model(model, base, version=1)
    assert export_saved_model(model, base, version=1, overwrite=True).endswith("/1")
    assert sorted(os.listdir(base)) == ["1", "2"]


def test_failure_mid_export_leaves_no_version(model, tmp_path, monkeypatch):
    real_save = tf.saved_model.save

    def crash(obj, export_dir, *args, **kwargs):
        real_save(obj, export_dir, *args, **kwargs)  # Files are on disk, then a crash.
        raise RuntimeError("injected failure")

    monkeypatch.setattr(tf.saved_model, "save", crash)
    base = tmp_path / "m"
    with pytest.raises(RuntimeError, match="injected failure"):
        export_saved_model(model, str(base))
    assert not os.path.exists(base)  # Not even the empty model folder that the export created.


def test_concurrent_publishers_get_distinct_versions(tmp_path):
    base = str(tmp_path / "m")
    os.makedirs(base)
    stagings = []
    for i in range(8):
        staging = os.path.join(base, f".tmp-export-{i}")
        os.makedirs(os.path.join(staging, "variables"))
        open(os.path.join(staging, "saved_model.pb"), "w").write(str(i))
        stagings.append(staging)
    results = []
    threads = [threading.Thread(target=lambda s=s: results.append(layout.publish(s, base, None, False)))
               for s in stagings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(int(os.path.basename(p)) for p in results) == list(range(1, 9))
    contents = sorted(open(os.path.join(p, "saved_model.pb")).read() for p in results)
    assert contents == [str(i) for i in range(8)]


def test_bad_arguments(model, tmp_path):
    with pytest.raises(ValueError, match="2 class names for a model with 3 classes"):
        export_saved_model(model, str(tmp_path / "m"), class_names=["a", "b"])
    with pytest.raises(ValueError, match="disagrees"):
        export_saved_model(model, str(tmp_path / "m"), image_size=32)
    dynamic = CRNNImageClassifier.from_preset("crnn_tiny", num_classes=3, image_shape=(None, None, 3),
                                              sweep={"units": 4})
    with pytest.raises(ValueError, match="pass image_size"):
        export_saved_model(dynamic, str(tmp_path / "m"))


def test_softmax_models_export_their_probabilities_and_others_are_refused(tmp_path):
    import keras

    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Flatten()(inputs)
    softmax = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    path = export_saved_model(softmax, str(tmp_path / "softmax"))
    images = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 1)).astype(np.float32)
    out = tf.saved_model.load(path).signatures["serve_tensor"](images=tf.constant(images))
    np.testing.assert_allclose(out["probabilities"].numpy(), softmax.predict(images, verbose=0), atol=1e-6)
    sigmoid = keras.Model(inputs, keras.layers.Dense(3, activation="sigmoid")(x))
    with pytest.raises(ValueError, match="logits or probabilities"):
        export_saved_model(sigmoid, str(tmp_path / "sigmoid"))


def test_a_killed_export_is_cleaned_up_by_the_next_one(model, tmp_path):
    base = tmp_path / "m"
    first = export_saved_model(model, str(base))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (base / f".tmp-export-{dead}-abc").mkdir()              # A killed exporter's staging folder,
    (base / f".tmp-export-{dead}-abc-labels").mkdir()       # and its labels,
    os.rename(first, base / f".tmp-old-{dead}-1-abc")       # killed mid-overwrite of version 1,
    (base / f".tmp-export-{os.getpid()}-live").mkdir()      # and a running exporter's folder.
    with pytest.warns(UserWarning) as record:
        second = export_saved_model(model, str(base))
    messages = " ".join(str(w.message) for w in record)
    assert "Restored version 1" in messages and "left by an interrupted export" in messages
    assert sorted(os.listdir(base)) == [f".tmp-export-{os.getpid()}-live", "1", "2"]
    assert os.path.basename(second) == "2" and os.path.exists(base / "1" / "saved_model.pb")


def test_bad_top_k_and_a_version_folder_as_base_dir_are_refused(model, exported, tmp_path):
    for top_k in (0, -5, 1.5):
        with pytest.raises(ValueError, match=f"`top_k` must be a positive integer, got {top_k}"):
            export_saved_model(model, str(tmp_path / "m"), top_k=top_k)
    before = sorted(os.listdir(exported))
    with pytest.raises(ValueError, match="is itself an exported version .*pass the model's folder above it"):
        export_saved_model(model, exported)  # E.g. --name crnn/1: it would write crnn/1/1.
    assert sorted(os.listdir(exported)) == before
    assert not os.path.exists(tmp_path / "m")
