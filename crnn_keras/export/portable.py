"""`portable_clone`: a copy of a model that every export format can carry."""

from __future__ import annotations

import keras

from crnn_keras.export import layout

# What `quantize` accepts in the formats that quantize (ONNX, LiteRT).
QUANTIZATIONS = ("dynamic_int8",)


def portable_clone(model: keras.Model, unroll: bool | None = None, image_size: tuple | None = None) -> keras.Model:
    """A copy of `model` whose recurrent layers trace to plain TensorFlow ops.

    Keras traces LSTM/GRU to `CudnnRNNV3` when a GPU is visible, which CPU-only
    TF Serving cannot load, and the sweeps' `jit_compile="auto"` marks them for
    XLA, which a TF Serving build may lack and which reaches converters as an
    opaque `StatefulPartitionedCall`; the copy sets `use_cudnn=False` and
    `jit_compile=False` on every sweep, nested models (a `CRNNBackbone`)
    included. The native training kernels never run at inference, so they never
    reach an exported graph. `unroll=True` also unrolls every sweep (LiteRT's
    converter cannot lower the while loop of a batch-dynamic sweep); it needs
    a fixed image size. `image_size=(height, width)` fixes the copy's input
    size (a `CRNNBackbone`'s `image_shape` and the input layers of a model of
    dynamic size; saving traces the copy itself at its own input size, so an
    unrolled copy must not stay dynamic). A plain Keras LSTM/GRU of a user's own model is not
    changed: Keras does not serialize its `use_cudnn`.
    """

    def plain(node):
        if isinstance(node, dict):
            if "use_cudnn" in node:
                node["use_cudnn"] = False
                if node.get("unroll") is not None:  # A sweep layer's config.
                    node["jit_compile"] = False
                    if unroll is not None:
                        node["unroll"] = unroll
            if node.get("registered_name") == "crnn_keras>CRNNBackbone":
                node["config"]["sweep"]["use_cudnn"] = False
                node["config"]["sweep"]["jit_compile"] = False
                if unroll is not None:
                    node["config"]["sweep"]["unroll"] = unroll
                if image_size is not None:
                    node["config"]["image_shape"] = [*image_size, node["config"]["image_shape"][-1]]
            if image_size is not None and node.get("class_name") == "InputLayer":
                shape = node["config"].get("batch_shape")
                if shape is not None and len(shape) == 4:
                    node["config"]["batch_shape"] = [shape[0], *image_size, shape[3]]
            for value in node.values():
                plain(value)
        elif isinstance(node, list):
            for value in node:
                plain(value)

    config = keras.saving.serialize_keras_object(model)
    plain(config)
    config.pop("compile_config", None)
    copy = keras.saving.deserialize_keras_object(config)
    copy.set_weights(model.get_weights())
    return copy


def input_size(model: keras.Model, image_size: int | tuple[int, int] | None) -> tuple:
    """`(height, width)` of the exported input: `image_size` where given (it must
    agree with a model's fixed size), else the model's own (`None` where dynamic)."""
    _, height, width, _ = model.input_shape
    if image_size is None:
        return height, width
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
        raise ValueError(f"image_size must be a positive integer or (height, width), got {image_size!r}.")
    if height is not None and size != (height, width):
        raise ValueError(f"image_size={size} disagrees with the model's input {(height, width)}.")
    return size


def probabilities_model(model: keras.Model, size: tuple, unroll: bool | None = None) -> keras.Model:
    """The contract of the single-file formats, as a Keras model: `images`
    `[batch, *size, C]` float32 raw 0-255 pixels in, `{"probabilities": [batch, K]}`
    (a float32 softmax over the logits, or the model's own softmax) out."""
    from crnn_keras.models import outputs_logits

    channels = model.input_shape[-1]
    clone = portable_clone(model, unroll=unroll, image_size=None if None in size else size)
    images = keras.Input((*size, channels), name="images")
    outputs = clone(images)
    activation = "softmax" if outputs_logits(model) else "linear"
    probs = keras.layers.Activation(activation, dtype="float32", name="probabilities")(outputs)
    return keras.Model(images, {"probabilities": probs}, name=f"{model.name}_probabilities")


# Exported float models must answer within this of Keras (max abs difference of
# probabilities) in their runtime, or the export is refused.
RUNTIME_ATOL = 1e-4
# Where the exported input size is dynamic, the self-check feeds this size.
CHECK_SIDE = 64


def check_in_runtime(model: keras.Model, size: tuple, run, format: str, quantized: bool) -> float:
    """Feeds two images of random 0-255 pixels to `run` (the artifact loaded in
    its runtime: pixels -> probabilities) and to `model`; returns the largest
    difference of their probabilities. Raises ValueError where a float export
    differs by more than `RUNTIME_ATOL`, or an int8 one returns no distribution."""
    import numpy as np

    from crnn_keras.models import to_probabilities

    shape = (2, *(side or CHECK_SIDE for side in size), model.input_shape[-1])
    images = np.random.default_rng(0).integers(0, 256, shape).astype(np.float32)
    expected = np.asarray(to_probabilities(model, model(images, training=False)), np.float32)
    try:
        got = np.asarray(run(images))
    except Exception as err:  # The runtime's own reason, e.g. a node that fails to prepare.
        raise ValueError(f"The {format} runtime fails on the exported model: {err}. Nothing was written.") from err
    if got.shape != expected.shape:
        raise ValueError(f"The {format} export returned shape {got.shape} for input {shape}; "
                         f"Keras returns {expected.shape}. Nothing was written.")
    diff = float(np.max(np.abs(got - expected)))
    if quantized:
        if not np.all(np.isfinite(got)) or np.max(np.abs(got.sum(-1) - 1.0)) > 1e-3:
            raise ValueError(f"The quantized {format} export returned no probability distribution "
                             f"(row sums {got.sum(-1)}). Nothing was written.")
    elif not diff <= RUNTIME_ATOL:
        raise ValueError(f"The {format} export answers differently from Keras in its runtime (largest "
                         f"difference of probabilities {diff:.3g}, over {RUNTIME_ATOL}). Nothing was written.")
    return diff


def require(format: str, *modules: str) -> None:
    """Refuses an export whose converter or runtime is not installed, naming the fix."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m.replace("-", "_")) is None]
    if missing:
        raise ValueError(f"Exporting {format} needs {', '.join(missing)}: pip install 'crnn-keras[export]' "
                         f"(or pip install {' '.join(missing)}).")


def check_portable_export(model: keras.Model, base_dir: str, format: str, version: int | None,
                          class_names: list[str] | None, image_size, quantize: str | None,
                          modules: tuple[str, ...]) -> tuple[list[str], tuple]:
    """What the ONNX and LiteRT exports check before anything is written; returns the
    class names and the input size."""
    name = {"onnx": "ONNX", "litert": "LiteRT"}[format]
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantize={quantize!r} for {name}. Expected one of {QUANTIZATIONS} or None.")
    require(name, *modules)
    class_names = layout.check_class_names(class_names, model.output_shape[-1])
    layout.check_version(version)
    layout.check_base_dir(base_dir, format)
    return class_names, input_size(model, image_size)
