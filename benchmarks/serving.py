"""p50/p99 latency of an exported SavedModel, batch 1 and 32, both signatures.

    python -m benchmarks.serving [SAVEDMODEL_DIR]

Without a path, exports an untrained `crnn_small` (32x32x3) to a temp dir.
"""

from __future__ import annotations

import io
import sys
import tempfile

from benchmarks.common import THREADS, fix_threads, print_table, time_calls, write_json

fix_threads()
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402


def main() -> None:
    if len(sys.argv) > 1:
        path = sys.argv[1]
    else:
        from crnn_keras.export import export_saved_model
        from crnn_keras.models import CRNNImageClassifier

        model = CRNNImageClassifier.from_preset("crnn_small", num_classes=10, image_shape=(32, 32, 3))
        path = export_saved_model(model, tempfile.mkdtemp())
    loaded = tf.saved_model.load(path)
    by_bytes, by_tensor = loaded.signatures["serving_default"], loaded.signatures["serve_tensor"]
    shape = by_tensor.structured_input_signature[1]["images"].shape[1:]
    rng = np.random.default_rng(0)
    rows = []
    for batch in (1, 32):
        images = rng.integers(0, 256, (batch, *shape)).astype(np.uint8)
        pngs = []
        for image in images:
            buffer = io.BytesIO()
            Image.fromarray(image.squeeze() if shape[-1] == 1 else image).save(buffer, format="PNG")
            pngs.append(buffer.getvalue())
        inputs = {"serving_default": lambda pngs=pngs: by_bytes(image_bytes=tf.constant(pngs)),
                  "serve_tensor": lambda images=images: by_tensor(images=tf.constant(images, tf.float32))}
        for name, fn in inputs.items():
            times = np.array(time_calls(fn, warmup=5, repeats=100)) * 1000
            rows.append({"signature": name, "batch": batch, "p50_ms": float(np.percentile(times, 50)),
                         "p99_ms": float(np.percentile(times, 99)),
                         "img_s": batch / float(np.percentile(times, 50)) * 1000})
    print(f"SavedModel {path}, {THREADS} threads")
    print_table(rows, ["signature", "batch", "p50_ms", "p99_ms", "img_s"])
    print("written to", write_json("serving", rows))


if __name__ == "__main__":
    main()
