"""ONNX and LiteRT exports, run in ONNX Runtime and the LiteRT interpreter in a
process that imports neither TensorFlow, Keras nor crnn_keras, against Keras."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from crnn_keras.export import FORMATS, QUANTIZATIONS, export_model, export_run
from crnn_keras.layers import CELL_NAMES
from crnn_keras.models import CRNNImageClassifier, preset_metadata

pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")

TRAINED = ("crnn_tiny_rooks", "crnn_pathfinder_trained", "crnn_fashion_mnist_trained")
# The formats each trained preset is checked in here. For the test budget,
# crnn_pathfinder_trained's LiteRT export (the same residual LSTM blocks as
# crnn_fashion_mnist_trained's, 13 s to convert) is checked by
# `python -m benchmarks.serving --preset crnn_pathfinder_trained` (max_diff_vs_keras).
PRESET_FORMATS = {"crnn_tiny_rooks": ("onnx", "litert"), "crnn_pathfinder_trained": ("onnx",),
                  "crnn_fashion_mnist_trained": ("onnx", "litert")}
ORDERS = ("rows_then_columns", "columns_then_rows", "parallel")
POOLINGS = ("avg", "max", "flatten")
DYNAMIC_SIZES = ((16, 16), (24, 20))  # ONNX of a model of dynamic size: batch 1 at one, 7 at the other.
LITERT_SIZE = 20

RUNNER = r"""
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "crnn_keras"):
            raise ImportError(name + " is blocked in this process")
sys.meta_path.insert(0, Block())
import numpy as np, onnxruntime
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert import schema_py_generated as schema

def load(path):
    if path.endswith(".onnx"):
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        labels = session.get_modelmeta().custom_metadata_map["labels"]
        return (lambda x: session.run(["probabilities"], {"images": x})[0]), labels
    runner = Interpreter(model_path=path).get_signature_runner()
    model = schema.Model.GetRootAs(open(path, "rb").read(), 0)
    entries = {model.Metadata(i).Name().decode(): model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
    labels = model.Buffers(entries["labels"]).DataAsNumpy().tobytes().decode()
    return (lambda x: runner(images=x)["probabilities"]), labels

cases = json.load(open(sys.argv[1]))
outputs, report = {}, {}
for name, case in cases.items():
    run, labels = load(case["path"])
    report[name] = {"labels": labels, "errors": []}
    for i, x in enumerate(np.load(case["inputs"]).values()):
        outputs[f"{name}/{i}"] = run(x)
    for bad in case.get("bad", []):
        try:
            load(case["path"])[0](np.zeros(bad, np.float32))  # A fresh interpreter: LiteRT's errors accumulate.
            report[name]["errors"].append(None)
        except Exception as err:
            report[name]["errors"].append(f"{type(err).__name__}: {err}")
np.savez(sys.argv[2], **outputs)
print(json.dumps(report))
assert not {"tensorflow", "keras", "crnn_keras"} & set(sys.modules)
"""


def _fresh_models():
    """A fresh model of every cell, every order and every pooling (each model
    takes one of each, in turn); flatten needs a fixed size, the others are dynamic."""
    out = {}
    for i, cell in enumerate(CELL_NAMES):
        order, pooling = ORDERS[i % 3], POOLINGS[i % 3]
        size = (16, 16) if pooling == "flatten" else (None, None)
        out[f"{cell}_{order}_{pooling}"] = CRNNImageClassifier.from_preset(
            "crnn_tiny", num_classes=3, image_shape=(*size, 3 if i % 2 == 0 else 1),
            sweep={"units": 4, "cell": cell, "order": order}, pooling=pooling)
    return out


def _native_trained(tmp_path_factory):
    """crnn_tiny trained a few steps with the fused LSTM sweep's native kernels."""
    from crnn_keras.layers import native

    if native.load() is None:
        pytest.skip("the native kernels cannot be built here (no C++ compiler)")
    model = CRNNImageClassifier.from_preset("crnn_tiny", num_classes=3, image_shape=(12, 12, 3), sweep={"units": 4})
    model.compile()
    before = [w.copy() for w in model.get_weights()]
    rng = np.random.default_rng(1)
    model.fit(rng.integers(0, 256, (32, 12, 12, 3)).astype(np.float32), rng.integers(0, 3, 32),
              batch_size=16, epochs=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    path = str(tmp_path_factory.mktemp("native") / "native.keras")
    model.save(path)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every case exported, then run in one process without TensorFlow or crnn_keras."""
    root = tmp_path_factory.mktemp("portable")
    rng = np.random.default_rng(0)
    cases, expected, models = {}, {}, {}

    def add(name, model, fmt, base_size=None, image_size=None, quantize=None, class_names=None, **kwargs):
        path = export_model(model, str(root / name), format=fmt, image_size=image_size, quantize=quantize,
                            class_names=class_names, **kwargs)
        channels = model.input_shape[-1]
        sizes = [base_size] * 2 if base_size else list(DYNAMIC_SIZES)
        inputs = [rng.integers(0, 256, (batch, *size, channels)).astype(np.float32)
                  for batch, size in zip((1, 7), sizes)]
        np.savez(root / f"{name}.npz", *inputs)
        artifact = os.path.join(path, "model.onnx" if fmt == "onnx" else "model.tflite")
        cases[name] = {"path": artifact, "inputs": str(root / f"{name}.npz")}
        expected[name] = [model.predict_proba(x, verbose=0) for x in inputs]
        models[name] = (model, path, class_names)
        return cases[name]

    for preset in TRAINED:
        model = CRNNImageClassifier.from_preset(preset)
        names = preset_metadata(preset)["class_names"]
        size = model.input_shape[1:3]
        for fmt in PRESET_FORMATS[preset]:
            add(f"{preset}-{fmt}", model, fmt, base_size=size, class_names=names)
    for name, model in _fresh_models().items():
        fixed = model.input_shape[1] is not None
        add(f"{name}-onnx", model, "onnx", base_size=model.input_shape[1:3] if fixed else None)
        add(f"{name}-litert", model, "litert", base_size=model.input_shape[1:3] if fixed else (LITERT_SIZE,) * 2,
            image_size=None if fixed else LITERT_SIZE)
    native_run = _native_trained(tmp_path_factory)
    native_model = keras.saving.load_model(native_run)
    for fmt in ("onnx",):  # The native kernels train only; any format exports the same inference graph.
        path = export_run(native_run, str(root / f"native-{fmt}"), format=fmt)
        artifact = os.path.join(path, "model.onnx" if fmt == "onnx" else "model.tflite")
        inputs = [rng.integers(0, 256, (b, 12, 12, 3)).astype(np.float32) for b in (1, 7)]
        np.savez(root / f"native-{fmt}.npz", *inputs)
        cases[f"native-{fmt}"] = {"path": artifact, "inputs": str(root / f"native-{fmt}.npz")}
        expected[f"native-{fmt}"] = [native_model.predict_proba(x, verbose=0) for x in inputs]
    # Wrong rank, channels and size: each runtime's own error (the README quotes them).
    cases["crnn_tiny_rooks-onnx"]["bad"] = [(1, 32, 32, 1), (32, 32, 3), (1, 40, 40, 3)]
    cases["crnn_tiny_rooks-litert"]["bad"] = [(1, 32, 32, 1), (32, 32, 3), (1, 40, 40, 3)]

    manifest = root / "cases.json"
    manifest.write_text(json.dumps(cases))
    result = subprocess.run([sys.executable, "-c", RUNNER, str(manifest), str(root / "out.npz")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    outputs = dict(np.load(root / "out.npz"))
    return {"expected": expected, "outputs": outputs, "report": report, "models": models, "root": root}


def test_every_case_answers_as_keras_in_its_runtime(runs):
    assert len(runs["expected"]) == sum(map(len, PRESET_FORMATS.values())) + 2 * len(CELL_NAMES) + 1
    for name, expected in runs["expected"].items():
        for i, want in enumerate(expected):
            got = runs["outputs"][f"{name}/{i}"]
            assert got.shape == want.shape, name
            np.testing.assert_allclose(got, want, atol=1e-4, err_msg=f"{name}, input {i}")
            np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)


def test_layout_labels_and_metadata(runs):
    for name, (_, path, class_names) in runs["models"].items():
        fmt = name.rsplit("-", 1)[1]
        assert sorted(os.listdir(path)) == ["labels.txt", "model.onnx" if fmt == "onnx" else "model.tflite"]
        assert os.path.basename(path) == "1"
        labels = open(os.path.join(path, "labels.txt"), encoding="utf-8").read()
        if class_names:
            assert labels.splitlines() == class_names
        assert runs["report"][name]["labels"] == labels


def test_bad_inputs_get_the_runtimes_errors(runs):
    onnx_errors = runs["report"]["crnn_tiny_rooks-onnx"]["errors"]
    litert_errors = runs["report"]["crnn_tiny_rooks-litert"]["errors"]
    assert all(onnx_errors) and all(litert_errors), (onnx_errors, litert_errors)
    assert "Got invalid dimensions for input: images" in onnx_errors[0] and "Got invalid dimensions" in onnx_errors[2]
    assert "Invalid rank for input: images Got: 3 Expected: 4" in onnx_errors[1]
    assert all("failed to prepare" in error for error in litert_errors)  # Wrong size included: no silent answer.
    assert "input_channel % filter_input_channel" in litert_errors[0]
    assert "input->dims->size != 4" in litert_errors[1]


def test_dynamic_int8_is_smaller_and_agrees_with_float(runs):
    model, _, _ = runs["models"]["crnn_tiny_rooks-onnx"]
    from crnn_keras.data import load_dataset

    test, _ = load_dataset("builtin:rooks?test_size=128", "test", batch_size=128)
    images = next(iter(test))[0].numpy().astype(np.float32)
    want = model.predict_proba(images, verbose=0).argmax(-1)
    for fmt in ("onnx", "litert"):
        path = export_model(model, str(runs["root"] / f"int8-{fmt}"), format=fmt, quantize="dynamic_int8")
        float_path = runs["models"][f"crnn_tiny_rooks-{fmt}"][1]
        artifact = "model.onnx" if fmt == "onnx" else "model.tflite"
        size, float_size = (os.path.getsize(os.path.join(p, artifact)) for p in (path, float_path))
        assert size < float_size, (fmt, size, float_size)
        if fmt == "onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(os.path.join(path, artifact))
            got = session.run(["probabilities"], {"images": images})[0]
        else:
            from ai_edge_litert.interpreter import Interpreter

            got = Interpreter(model_path=os.path.join(path, artifact)).get_signature_runner()(images=images)
            got = got["probabilities"]
        assert np.mean(got.argmax(-1) == want) >= 0.95, fmt


def test_refusals_write_nothing(tmp_path):
    dynamic = CRNNImageClassifier.from_preset("crnn_tiny", num_classes=3, image_shape=(None, None, 3),
                                              sweep={"units": 4})
    refusals = [
        (dict(format="litert"), "LiteRT needs a fixed image size .*TensorListReserve.*image_size"),
        (dict(format="tflite"), "Unknown format='tflite'"),
        (dict(format="saved_model", quantize="dynamic_int8", image_size=16), "applies to ONNX and LiteRT"),
        (dict(format="onnx", quantize="int4"), "Unknown quantize='int4'"),
        (dict(format="onnx", top_k=3), "top_k apply to the SavedModel's signatures only"),
        (dict(format="onnx", image_size=0), "image_size must be a positive integer"),
    ]
    for kwargs, message in refusals:
        with pytest.raises(ValueError, match=message):
            export_model(dynamic, str(tmp_path / "m"), **kwargs)
        assert not os.path.exists(tmp_path / "m")
    assert FORMATS == ("saved_model", "onnx", "litert") and QUANTIZATIONS == ("dynamic_int8",)


def test_a_model_the_format_cannot_carry_is_refused_with_the_reason(tmp_path):
    import tensorflow as tf

    class Lgamma(keras.layers.Layer):  # An op neither ONNX nor LiteRT's builtins have.
        def call(self, x):
            return tf.math.lgamma(x + 1.0)

    keras.saving.register_keras_serializable(package="test_portable")(Lgamma)
    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(Lgamma()(inputs))))
    with pytest.raises(ValueError, match="ONNX cannot carry this model: No Op registered for Lgamma"):
        export_model(model, str(tmp_path / "onnx"), format="onnx")
    with pytest.raises(ValueError, match="Nothing was written"):
        export_model(model, str(tmp_path / "litert"), format="litert")
    assert os.listdir(tmp_path) == []


def test_formats_do_not_mix_in_one_model_folder(runs, tmp_path):
    model, path, _ = runs["models"]["crnn_tiny_rooks-onnx"]
    base = os.path.dirname(path)
    with pytest.raises(ValueError, match="holds onnx versions .*folder of their own"):
        export_model(model, base, format="litert")
    assert os.listdir(base) == ["1"]


def test_cli_choices_are_the_package_s():
    from crnn_keras import cli

    assert cli.EXPORT_FORMATS == FORMATS and cli.EXPORT_QUANTIZATIONS == QUANTIZATIONS


def test_readme_deploying_snippets_run_as_written(runs, tmp_path, monkeypatch, capsys):
    import pathlib
    import re

    from PIL import Image

    text = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    start = text.index("## Deploying")
    onnx_code, litert_code = re.findall(r"```python\n(.*?)```", text[start:text.index("\n## ", start + 1)], re.DOTALL)
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 36, 3)).astype(np.uint8)).save("image.png")
    for code, fmt in ((onnx_code, "onnx"), (litert_code, "litert")):
        path = runs["models"][f"crnn_tiny_rooks-{fmt}"][1]
        code = code.replace(f"exports/crnn_demo_{fmt}/1", path)
        assert path in code
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
        label, prob = capsys.readouterr().out.split()
        assert label in ("safe", "attacking") and 0.5 <= float(prob) <= 1.0
