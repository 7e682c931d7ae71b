"""ONNX export: `base_dir/<version>/{model.onnx, labels.txt}` for ONNX Runtime,
OpenVINO, Triton's ONNX backend and the like.

Input `images` `[batch, H, W, C]` float32 raw 0-255 pixels (H and W dynamic
where the model's are and no `image_size` is given), output `probabilities`
`[batch, K]`. The labels are also in the model's metadata
(`metadata_props["labels"]`, one per line). The file is written by Keras's own
exporter (`model.export(format="onnx")`, tf2onnx underneath) from
`portable_clone`: on the model itself that exporter writes a graph that ONNX
Runtime refuses (`No Op registered for StatefulPartitionedCall`), because the
sweeps' XLA-compiled functions reach tf2onnx as opaque calls. The clone's
sweeps run as loops, not unrolled: tf2onnx turns them into ONNX's own LSTM and
GRU ops, and for `crnn_pathfinder_trained` the file is 3.6x smaller (0.53
against 1.9 MB; unrolled, tf2onnx copies the weights per step) and converts
3x faster, with the same answers.
"""

from __future__ import annotations

import os

import keras

from crnn_keras.export import layout
from crnn_keras.export.portable import check_in_runtime, check_portable_export, probabilities_model

OPSET = 17


def export_onnx(
    model: keras.Model,
    base_dir: str,
    version: int | None = None,
    class_names: list[str] | None = None,
    image_size: int | tuple[int, int] | None = None,
    quantize: str | None = None,
    overwrite: bool = False,
) -> str:
    """Exports `model` as `base_dir/<version>/model.onnx`; returns the version's path.

    Args:
        model: a Keras model from raw 0-255 pixels to class logits (a
            `CRNNImageClassifier`) or probabilities (a final softmax).
        base_dir: the model's folder, e.g. `"exports/crnn_onnx"`.
        version: an integer; defaults to the next free one.
        class_names: one per class (`labels.txt` and the metadata);
            defaults to `"0"`, `"1"`, ...
        image_size: fixes the input's `(height, width)` for a model of dynamic
            size; must agree with a fixed one.
        quantize: `"dynamic_int8"` stores the weights of matmuls and
            convolutions as int8 (ONNX Runtime's `quantize_dynamic`).
        overwrite: replace an existing `version`.

    The file is run in ONNX Runtime before it is published: a model that the
    runtime refuses, or whose float answers differ from Keras's by more than
    1e-4, is refused with the reason and nothing is written.
    """
    class_names, size = check_portable_export(model, base_dir, "onnx", version, class_names, image_size, quantize,
                                              ("onnx", "onnxruntime", "tf2onnx",))
    wrapper = probabilities_model(model, size, unroll=False)

    import onnx
    import tensorflow as tf

    with layout.staging_folder(base_dir) as staging:
        path = os.path.join(staging, layout.FORMAT_FILES["onnx"])
        float_path = os.path.join(staging, ".float.onnx")
        spec = tf.TensorSpec([None, *size, model.input_shape[-1]], tf.float32, name="images")
        wrapper.export(float_path, format="onnx", input_signature=[spec], opset_version=OPSET, verbose=False)
        proto = onnx.load(float_path)
        _replace_erfc(proto)
        try:
            onnx.checker.check_model(proto, full_check=True)
        except onnx.checker.ValidationError as err:
            raise ValueError(f"ONNX cannot carry this model: {str(err).splitlines()[0]}. Nothing was written.") from err
        onnx.save(proto, float_path)
        if quantize == "dynamic_int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(float_path, path, weight_type=QuantType.QInt8)
            proto = onnx.load(path)
        os.remove(float_path)
        proto.metadata_props.add(key="labels", value=layout.labels_text(class_names))
        onnx.save(proto, path)
        layout.write_labels(staging, class_names)
        check_in_runtime(model, size, _runner(path), "ONNX", quantized=quantize is not None)
        return layout.publish(staging, base_dir, version, overwrite)


def _runner(path: str):
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as err:  # The runtime's own reason, e.g. an op it lacks.
        raise ValueError(f"ONNX Runtime refuses the exported model: {err}. Nothing was written.") from err
    return lambda images: session.run(["probabilities"], {"images": images})[0]


def _replace_erfc(proto) -> None:
    """tf2onnx leaves TensorFlow's `Erfc` (in Keras's exact GELU) as an op that
    ONNX lacks; it becomes `1 - Erf(x)` (equal to float32 precision here, as
    GELU multiplies it by x/2)."""
    from onnx import TensorProto, helper

    graph = proto.graph
    nodes = list(graph.node)
    if not any(node.op_type == "Erfc" for node in nodes):
        return
    one = "crnn_keras_erfc_one"
    graph.initializer.append(helper.make_tensor(one, TensorProto.FLOAT, [], [1.0]))
    del graph.node[:]
    for node in nodes:
        if node.op_type != "Erfc":
            graph.node.append(node)
            continue
        erf = node.output[0] + "_erf"
        graph.node.append(helper.make_node("Erf", [node.input[0]], [erf], name=node.name + "_erf"))
        graph.node.append(helper.make_node("Sub", [one, erf], [node.output[0]], name=node.name))

