"""`export_model`: one entry point over the export formats, and `export_run`."""

from __future__ import annotations

import keras

from crnn_keras.export.portable import QUANTIZATIONS  # noqa: F401  (re-exported)

FORMATS = ("saved_model", "onnx", "litert")
# Options only the SavedModel's signatures use.
_SAVED_MODEL_ONLY = ("top_k", "max_pixels")


def export_model(
    model: keras.Model,
    base_dir: str,
    format: str = "saved_model",
    version: int | None = None,
    class_names: list[str] | None = None,
    image_size: int | tuple[int, int] | None = None,
    quantize: str | None = None,
    overwrite: bool = False,
    **kwargs,
) -> str:
    """Exports `model` as `base_dir/<version>/` in `format`; returns that path.

    Every format takes raw 0-255 pixels (`images`, `[batch, H, W, C]` float32)
    and returns `probabilities` (`[batch, K]`, a softmax), with `labels.txt`
    in the version's folder:

    - `"saved_model"`: for TF Serving (`crnn_keras.export.export_saved_model`;
      also encoded images, top-k classes and labels, request checks).
    - `"onnx"`: `model.onnx` (`crnn_keras.export.export_onnx`).
    - `"litert"`: `model.tflite`, fixed height and width
      (`crnn_keras.export.export_litert`).

    Args:
        quantize: `"dynamic_int8"` (ONNX and LiteRT): int8 weights.
        kwargs: the SavedModel's `top_k` and `max_pixels`.
        Others as in the format's function.
    """
    if format not in FORMATS:
        raise ValueError(f"Unknown format={format!r}. Expected one of {FORMATS}.")
    common = dict(version=version, class_names=class_names, image_size=image_size, overwrite=overwrite)
    if format == "saved_model":
        if quantize is not None:
            raise ValueError(f"quantize={quantize!r} applies to ONNX and LiteRT exports; the SavedModel "
                             "keeps float weights. Pass format='onnx' or 'litert', or no quantize.")
        from crnn_keras.export.saved_model import export_saved_model

        return export_saved_model(model, base_dir, **common, **kwargs)
    extra = sorted(kwargs)
    if extra:
        known = [k for k in extra if k in _SAVED_MODEL_ONLY]
        raise ValueError(f"{', '.join(extra)} apply to the SavedModel's signatures only, not to format={format!r}."
                         if known == extra else f"Unknown export options {extra}.")
    if format == "onnx":
        from crnn_keras.export.onnx import export_onnx

        return export_onnx(model, base_dir, quantize=quantize, **common)
    from crnn_keras.export.litert import export_litert

    return export_litert(model, base_dir, quantize=quantize, **common)


def export_run(path: str, base_dir: str, version: int | None = None, **kwargs) -> str:
    """Exports a run directory's best (else last) model, or a `.keras` file,
    with the class names the run recorded; `kwargs` as in `export_model`."""
    from crnn_keras.training.run_dir import class_names_near, load_run_model

    model, model_path = load_run_model(path)
    names = class_names_near(model_path, model.output_shape[-1])
    return export_model(model, base_dir, version=version, class_names=names, **kwargs)
