"""LiteRT (TFLite) export: `base_dir/<version>/{model.tflite, labels.txt}` for
the LiteRT interpreter on phones and edge boards.

Signature `serving_default`: input `images` `[batch, H, W, C]` float32 raw 0-255
pixels (dynamic batch; fixed height and width), output `probabilities`
`[batch, K]`. The labels are also in the model's metadata, as the entry
`labels` (UTF-8, one per line). Written by Keras's own exporter
(`model.export(format="litert")`) from `portable_clone(model, unroll=True)`,
with builtin ops only, so the plain interpreter runs it (Keras's default also
allows TensorFlow ops, which need the Flex delegate). The sweeps are unrolled
and the size fixed because the converter cannot lower the while loop of a
sweep whose batch is dynamic (`failed to legalize operation
'tf.TensorListReserve'`).
"""

from __future__ import annotations

import os

import keras

from crnn_keras.export import layout
from crnn_keras.export.portable import check_in_runtime, check_portable_export, probabilities_model

LABELS_METADATA = "labels"


def export_litert(
    model: keras.Model,
    base_dir: str,
    version: int | None = None,
    class_names: list[str] | None = None,
    image_size: int | tuple[int, int] | None = None,
    quantize: str | None = None,
    overwrite: bool = False,
) -> str:
    """Exports `model` as `base_dir/<version>/model.tflite`; returns the version's path.

    Args:
        model: a Keras model from raw 0-255 pixels to class logits (a
            `CRNNImageClassifier`) or probabilities (a final softmax).
        base_dir: the model's folder, e.g. `"exports/crnn_litert"`.
        version: an integer; defaults to the next free one.
        class_names: one per class (`labels.txt` and the metadata);
            defaults to `"0"`, `"1"`, ...
        image_size: the input's `(height, width)`; required where the model's
            is not fixed (LiteRT's input size is), and must agree otherwise.
        quantize: `"dynamic_int8"` stores the weights as int8 (the converter's
            dynamic-range quantization).
        overwrite: replace an existing `version`.

    The file is run in the LiteRT interpreter before it is published: a model
    that the converter or the interpreter refuses, or whose float answers
    differ from Keras's by more than 1e-4, is refused with the reason and
    nothing is written.
    """
    class_names, size = check_portable_export(model, base_dir, "litert", version, class_names, image_size, quantize,
                                              ("ai-edge-litert",))
    if None in size:
        raise ValueError(
            f"LiteRT needs a fixed image size and the model's is {size}: its converter cannot lower "
            "the while loop of a sweep over rows of unknown length (tf.TensorListReserve). Pass "
            "image_size=(height, width) (--image-size in the CLI), or export ONNX, whose size may vary."
        )
    wrapper = probabilities_model(model, size, unroll=True)

    import tensorflow as tf
    from tensorflow.lite.python.convert import ConverterError

    with layout.staging_folder(base_dir) as staging:
        path = os.path.join(staging, layout.FORMAT_FILES["litert"])
        spec = tf.TensorSpec([None, *size, model.input_shape[-1]], tf.float32, name="images")
        options = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
        if quantize == "dynamic_int8":
            options["optimizations"] = [tf.lite.Optimize.DEFAULT]
        try:
            wrapper.export(path, format="litert", input_signature=[spec], verbose=False, **options)
        except ConverterError as err:
            errors = [line for line in str(err).splitlines() if "error:" in line] or [str(err)]
            raise ValueError(f"LiteRT cannot carry this model: {errors[0].strip()[:1000]}. "
                             "Nothing was written.") from err
        _add_labels(path, layout.labels_text(class_names))
        layout.write_labels(staging, class_names)
        check_in_runtime(model, size, _runner(path), "LiteRT", quantized=quantize is not None)
        return layout.publish(staging, base_dir, version, overwrite)


def _add_labels(path: str, text: str) -> None:
    """Adds the labels to the flatbuffer's metadata, as the entry `labels`."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    with open(path, "rb") as f:
        model = flatbuffer_utils.read_model_from_bytearray(bytearray(f.read()))
    buffer = schema.BufferT()
    buffer.data = list(text.encode("utf-8"))
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = LABELS_METADATA
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    with open(path, "wb") as f:
        f.write(flatbuffer_utils.convert_object_to_bytearray(model))


def _runner(path: str):
    from ai_edge_litert.interpreter import Interpreter

    try:
        runner = Interpreter(model_path=path).get_signature_runner()
    except Exception as err:  # The interpreter's own reason, e.g. an op it lacks.
        raise ValueError(f"The LiteRT interpreter refuses the exported model: {err}. Nothing was written.") from err
    return lambda images: runner(images=images)["probabilities"]
