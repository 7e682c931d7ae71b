"""SavedModel export for TF Serving: versioned, atomic, CPU/GPU portable.

Layout: `base_dir/<version>/{saved_model.pb, variables/, assets/labels.txt}`.
A version is written to a hidden temporary folder beside it and renamed into
place, so a server watching `base_dir` never sees a half-written version.

Signatures:
- `serving_default`: `image_bytes` `[None]` string (encoded JPEG, PNG, BMP or
  GIF; TF Serving's REST API turns `{"b64": ...}` into these bytes).
- `serve_uint8`: `images` `[None, H, W, C]` uint8 pixels (0-255): the tensor
  input whose scale cannot be mistaken.
- `serve_tensor`: `images` `[None, H, W, C]` float32 pixels on the 0-255 scale
  (kept for compatibility; refuses images that lie within [-1, 1]).
All three return `probabilities` `[None, K]` (a softmax over the model's logits),
`top_k_scores` `[None, k]` float32, `top_k_classes` `[None, k]` int32 and
`top_k_labels` `[None, k]` string. Bad requests fail with `InvalidArgument`
naming the image and the problem (see `crnn_keras.export.requests`).
"""

from __future__ import annotations

import os
import shutil
import uuid

import keras
import tensorflow as tf

from crnn_keras.atomic import pid_alive
from crnn_keras.export.requests import check_pixels, check_uint8_pixels, decode_image_bytes
from crnn_keras.models import outputs_logits


DEFAULT_MAX_PIXELS = 40_000_000


def portable_clone(model: keras.Model) -> keras.Model:
    """A copy of `model` whose recurrent layers trace to plain TensorFlow ops.

    Keras traces LSTM/GRU to `CudnnRNNV3` when a GPU is visible, which CPU-only
    TF Serving cannot load, and the sweeps' `jit_compile="auto"` marks them for
    XLA, which a TF Serving build may lack; the copy sets `use_cudnn=False` and
    `jit_compile=False` on every sweep, nested models (a `CRNNBackbone`)
    included. A plain Keras LSTM/GRU of a user's own model is not changed:
    Keras does not serialize its `use_cudnn`.
    """

    def no_cudnn(node):
        if isinstance(node, dict):
            if "use_cudnn" in node:
                node["use_cudnn"] = False
                if node.get("unroll") is not None:  # A sweep layer's config.
                    node["jit_compile"] = False
            if node.get("registered_name") == "crnn_keras>CRNNBackbone":
                node["config"]["sweep"]["use_cudnn"] = False
                node["config"]["sweep"]["jit_compile"] = False
            for value in node.values():
                no_cudnn(value)
        elif isinstance(node, list):
            for value in node:
                no_cudnn(value)

    config = keras.saving.serialize_keras_object(model)
    no_cudnn(config)
    config.pop("compile_config", None)
    copy = keras.saving.deserialize_keras_object(config)
    copy.set_weights(model.get_weights())
    return copy


def _next_version(base_dir: str) -> int:
    versions = [int(d) for d in os.listdir(base_dir) if d.isdigit()] if os.path.isdir(base_dir) else []
    return max(versions, default=0) + 1


def export_saved_model(
    model: keras.Model,
    base_dir: str,
    version: int | None = None,
    class_names: list[str] | None = None,
    image_size: int | tuple[int, int] | None = None,
    top_k: int = 5,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    overwrite: bool = False,
) -> str:
    """Exports `model` as `base_dir/<version>/` for TF Serving; returns that path.

    Args:
        model: a Keras model from raw 0-255 pixels to class logits (a
            `CRNNImageClassifier`) or probabilities (a final softmax).
        base_dir: the model's folder, e.g. `"savedmodels/crnn"`.
        version: an integer; defaults to the next free one.
        class_names: one per class (written to `assets/labels.txt`);
            defaults to `"0"`, `"1"`, ...
        image_size: input `(height, width)`; required where the model's is
            not fixed, and otherwise must agree with it.
        top_k: how many top classes the signatures return (at least 1, capped at K).
        max_pixels: decoded images larger than this are refused.
        overwrite: replace an existing `version`.
    """
    num_classes = model.output_shape[-1]
    _, height, width, channels = model.input_shape
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    if image_size is None:
        if height is None or width is None:
            raise ValueError("The model's input size is not fixed; pass image_size=(height, width).")
        image_size = (height, width)
    elif height is not None and tuple(image_size) != (height, width):
        raise ValueError(f"image_size={tuple(image_size)} disagrees with the model's input {(height, width)}.")
    class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {num_classes} classes.")
    if any("\n" in name for name in class_names):
        raise ValueError("Class names must not contain newlines.")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise ValueError(f"`version` must be a positive integer, got {version!r}.")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"`top_k` must be a positive integer, got {top_k!r}.")
    if os.path.exists(os.path.join(base_dir, "saved_model.pb")):
        raise ValueError(
            f"base_dir {base_dir!r} is itself an exported version (it holds saved_model.pb); "
            f"pass the model's folder above it, {os.path.dirname(os.path.abspath(base_dir))!r} "
            "(with version= and overwrite=True to replace that version)."
        )
    k = min(top_k, num_classes)
    logits = outputs_logits(model)

    os.makedirs(base_dir, exist_ok=True)
    _remove_stale_staging(base_dir)
    # Staging names carry the exporter's process id, so that a later export can
    # tell the leftovers of a killed one from a concurrent one's work.
    staging = os.path.join(base_dir, f"{_STAGING}{os.getpid()}-{uuid.uuid4().hex}")
    labels_dir = staging + "-labels"  # Beside the staging folder, removed with it.
    try:
        os.makedirs(labels_dir)
        labels_path = os.path.join(labels_dir, "labels.txt")
        with open(labels_path, "w", encoding="utf-8") as f:
            f.write("\n".join(class_names) + "\n")
        serving_model = portable_clone(model)
        table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                labels_path, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
                tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
            ),
            default_value="",
        )

        def outputs(images):
            # An empty batch has empty outputs (Keras's convolutions fail on one).
            probs = tf.cond(tf.shape(images)[0] > 0,
                            lambda: tf.cast(serving_model(images, training=False), tf.float32),
                            lambda: tf.zeros([0, num_classes], tf.float32))
            if logits:
                probs = tf.nn.softmax(probs, axis=-1)
            scores, classes = tf.math.top_k(probs, k=k)
            return {
                "probabilities": probs,
                "top_k_scores": scores,
                "top_k_classes": classes,
                "top_k_labels": table.lookup(tf.cast(classes, tf.int64)),
            }

        def serve_bytes(image_bytes):
            return outputs(decode_image_bytes(image_bytes, channels, image_size, max_pixels))

        def serve_pixels(check):
            def serve(images):
                images = check(images, height, width, channels)
                if (height, width) != tuple(image_size):
                    images = tf.image.resize(images, image_size)
                return outputs(images)
            return serve

        archive = keras.export.ExportArchive()
        archive.track(serving_model)
        archive.track(table)
        archive.add_endpoint(
            "serving_default", serve_bytes,
            input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
        )
        for name, check, dtype in (("serve_uint8", check_uint8_pixels, tf.uint8),
                                   ("serve_tensor", check_pixels, tf.float32)):
            archive.add_endpoint(
                name, serve_pixels(check),
                input_signature=[tf.TensorSpec([None, height, width, channels], dtype, name="images")],
            )
        archive.write_out(staging, verbose=False)
        return _publish(staging, base_dir, version, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(labels_dir, ignore_errors=True)


_STAGING = ".tmp-export-"
_TRASH = ".tmp-old-"


def _remove_stale_staging(base_dir: str) -> None:
    """Removes the staging folders of exporters that no longer run (killed ones)."""
    import warnings

    for name in os.listdir(base_dir):
        if not name.startswith((_STAGING, _TRASH)):
            continue
        pid = name.split("-")[2]  # .tmp-export-<pid>-... and .tmp-old-<pid>-<version>-...
        if pid.isdigit() and pid_alive(int(pid)):
            continue
        path = os.path.join(base_dir, name)
        if name.startswith(_TRASH):
            version = name.split("-")[3]
            if not os.path.exists(os.path.join(base_dir, version)):
                # Killed between moving the old version aside and publishing the new one.
                os.rename(path, os.path.join(base_dir, version))
                warnings.warn(f"Restored version {version} in {base_dir!r} from an interrupted "
                              "overwrite.", stacklevel=3)
                continue
        warnings.warn(f"Removing {path!r}, left by an interrupted export.", stacklevel=3)
        shutil.rmtree(path, ignore_errors=True)


def _publish(staging: str, base_dir: str, version: int | None, overwrite: bool) -> str:
    """Renames the staged export into place as an integer version."""
    if version is not None:
        target = os.path.join(base_dir, str(version))
        if os.path.exists(target):
            if not overwrite:
                raise FileExistsError(
                    f"Version {version} already exists in {base_dir!r}; pass overwrite=True "
                    "or leave version unset for the next free one."
                )
            trash = os.path.join(base_dir, f"{_TRASH}{os.getpid()}-{version}-{uuid.uuid4().hex}")
            os.rename(target, trash)
            os.rename(staging, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(staging, target)
        return target
    for _ in range(100):
        # Concurrent exporters may pick the same number: renaming onto a version
        # that another one just published fails, and we try the next number.
        target = os.path.join(base_dir, str(_next_version(base_dir)))
        try:
            os.rename(staging, target)
            return target
        except OSError:
            continue
    raise RuntimeError(f"Could not claim a free version number in {base_dir!r}.")


def export_run(path: str, base_dir: str, version: int | None = None, **kwargs) -> str:
    """Exports a run directory's best (else last) model, or a `.keras` file,
    with the class names the run recorded."""
    from crnn_keras.training.run_dir import class_names_near, load_run_model

    model, model_path = load_run_model(path)
    names = class_names_near(model_path, model.output_shape[-1])
    return export_saved_model(model, base_dir, version=version, class_names=names, **kwargs)
