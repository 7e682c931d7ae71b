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


import keras
import tensorflow as tf

from crnn_keras.export import layout
from crnn_keras.export.portable import input_size, portable_clone
from crnn_keras.export.requests import check_pixels, check_uint8_pixels, decode_image_bytes
from crnn_keras.models import outputs_logits


DEFAULT_MAX_PIXELS = 40_000_000


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
    image_size = input_size(model, image_size)
    if None in image_size:
        raise ValueError("The model's input size is not fixed; pass image_size=(height, width).")
    class_names = layout.check_class_names(class_names, num_classes)
    layout.check_version(version)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"`top_k` must be a positive integer, got {top_k!r}.")
    layout.check_base_dir(base_dir, "saved_model")
    k = min(top_k, num_classes)
    logits = outputs_logits(model)

    # The labels file is written to a staging folder of its own: the SavedModel
    # copies it into its assets.
    with layout.staging_folder(base_dir) as staging, layout.staging_folder(base_dir) as labels_dir:
        labels_path = layout.write_labels(labels_dir, class_names)
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
        return layout.publish(staging, base_dir, version, overwrite)

