"""The exported model in each runtime, side by side: TF SavedModel, ONNX Runtime
and LiteRT (float and dynamic int8). p50/p99 latency at batch 1, images/s at
batch 32, the artifact's size, and top-1 accuracy on the real Fashion-MNIST
test images (10,000) where the preset was trained on them and the files exist.

    python -m benchmarks.serving [--preset crnn_fashion_mnist_trained] [--no-accuracy]

All in one process, one runtime after another, each on THREADS intra-op threads.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile

from benchmarks.common import THREADS, fix_threads, print_table, time_calls, write_json

fix_threads()
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402


def _size_mb(path: str) -> float:
    if os.path.isfile(path):
        return os.path.getsize(path) / 1e6
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files
               if f != "labels.txt") / 1e6


def _runtimes(model, root: str) -> dict:
    """`{name: (predict(float32 pixels) -> probabilities, artifact path)}`."""
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    from crnn_keras.export import export_model

    out = {}
    path = export_model(model, os.path.join(root, "saved_model"))
    signature = tf.saved_model.load(path).signatures["serve_uint8"]
    out["tf_saved_model"] = (lambda x: signature(images=tf.constant(x.astype(np.uint8)))["probabilities"].numpy(),
                             path)
    for quantize in (None, "dynamic_int8"):
        suffix = "_int8" if quantize else ""
        path = export_model(model, os.path.join(root, "onnx" + suffix), format="onnx", quantize=quantize)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
        session = onnxruntime.InferenceSession(os.path.join(path, "model.onnx"), options,
                                               providers=["CPUExecutionProvider"])
        out["onnxruntime" + suffix] = (
            lambda x, s=session: s.run(["probabilities"], {"images": x})[0], os.path.join(path, "model.onnx"))
        path = export_model(model, os.path.join(root, "litert" + suffix), format="litert", quantize=quantize)
        runner = Interpreter(model_path=os.path.join(path, "model.tflite"),
                             num_threads=THREADS).get_signature_runner()
        out["litert" + suffix] = (lambda x, r=runner: r(images=x)["probabilities"], os.path.join(path, "model.tflite"))
    return out


def _fashion_mnist_test():
    from crnn_keras.data import load_dataset

    try:
        test, _ = load_dataset("fashion_mnist", "test", batch_size=10_000, shuffle=False)
    except (FileNotFoundError, ValueError) as err:
        print(f"No Fashion-MNIST accuracy: {err}")
        return None
    images, labels = next(iter(test))
    return images.numpy().astype(np.float32), labels.numpy()


def _accuracy(predict, images, labels, batch: int = 250) -> float:
    predictions = np.concatenate([np.asarray(predict(images[i:i + batch])).argmax(-1)
                                  for i in range(0, len(images), batch)])
    return float(np.mean(predictions == labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="crnn_fashion_mnist_trained")
    parser.add_argument("--no-accuracy", action="store_true")
    args = parser.parse_args()

    from crnn_keras.models import CRNNImageClassifier, list_presets

    model = CRNNImageClassifier.from_preset(args.preset)
    shape = model.input_shape[1:]
    data = None
    trained_on = list_presets().get(args.preset, {}).get("dataset") or ""
    if not args.no_accuracy and trained_on.startswith("fashion_mnist"):
        data = _fashion_mnist_test()
    runtimes = _runtimes(model, tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    one, many = (rng.integers(0, 256, (b, *shape)).astype(np.float32) for b in (1, 32))
    rows = []
    if data is not None:
        rows.append({"runtime": "keras (reference)",
                     "accuracy": _accuracy(lambda x: model.predict_proba(x, verbose=0), *data)})
    for name, (predict, path) in runtimes.items():
        single = np.array(time_calls(lambda p=predict: p(one), warmup=10, repeats=200)) * 1000
        batch = np.array(time_calls(lambda p=predict: p(many), warmup=3, repeats=30))
        diff = float(np.max(np.abs(np.asarray(predict(many)) - model.predict_proba(many, verbose=0))))
        row = {"runtime": name, "p50_ms_b1": float(np.percentile(single, 50)),
               "p99_ms_b1": float(np.percentile(single, 99)), "img_s_b32": 32 / float(np.median(batch)),
               "size_mb": _size_mb(path), "max_diff_vs_keras": diff}
        if data is not None:
            row["accuracy"] = _accuracy(predict, *data)
        rows.append(row)
    # The SavedModel's PNG signature (decoding included), for TF Serving.
    signature = tf.saved_model.load(runtimes["tf_saved_model"][1]).signatures["serving_default"]
    buffer = io.BytesIO()
    Image.fromarray(one[0].astype(np.uint8).squeeze(-1) if shape[-1] == 1 else one[0].astype(np.uint8)).save(
        buffer, format="PNG")
    png = tf.constant([buffer.getvalue()])
    single = np.array(time_calls(lambda: signature(image_bytes=png), warmup=10, repeats=200)) * 1000
    rows.append({"runtime": "tf_saved_model (PNG bytes)", "p50_ms_b1": float(np.percentile(single, 50)),
                 "p99_ms_b1": float(np.percentile(single, 99))})
    print(f"{args.preset} {tuple(shape)}, {THREADS} threads")
    print_table(rows, ["runtime", "p50_ms_b1", "p99_ms_b1", "img_s_b32", "size_mb", "accuracy",
                       "max_diff_vs_keras"])
    print("written to", write_json("serving", {"preset": args.preset, "threads": THREADS, "rows": rows}))


if __name__ == "__main__":
    main()
