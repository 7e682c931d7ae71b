"""A client for TF Serving's REST API, for models exported by `crnn_keras.export`."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import urllib.error
import urllib.request
from typing import Any


class TFServingError(RuntimeError):
    """TF Serving answered with an error (bad request, unknown model, bad image)."""

    def __init__(self, status: int, message: str, url: str):
        super().__init__(f"TF Serving error {status} at {url}: {message}")
        self.status = status
        self.message = message
        self.url = url


class TFServingConnectionError(ConnectionError):
    """TF Serving could not be reached."""


@dataclasses.dataclass
class Prediction:
    labels: list[str]
    scores: list[float]
    classes: list[int]
    probabilities: list[float]


class TFServingClient:
    """Talks to `tensorflow_model_server --rest_api_port=...`.

    Args:
        base_url: e.g. `"http://localhost:8501"`.
        model_name: the served model's name.
        version: a version number, or `None` for the latest.
        signature_name: defaults to TF Serving's `serving_default`.
        timeout: seconds per request.

    Example (needs a running server):

        client = TFServingClient("http://localhost:8501", "crnn_demo")
        client.status()
        client.predict([open("cat.png", "rb").read()])[0].labels
    """

    def __init__(self, base_url: str, model_name: str, version: int | None = None,
                 signature_name: str | None = None, timeout: float = 30.0):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}.")
        if not model_name:
            raise ValueError("model_name must not be empty.")
        self.base_url = base_url.rstrip("/")
        self.model_name = model_name
        self.version = version
        self.signature_name = signature_name
        self.timeout = timeout

    @property
    def model_url(self) -> str:
        url = f"{self.base_url}/v1/models/{self.model_name}"
        return url + (f"/versions/{self.version}" if self.version is not None else "")

    def _request(self, url: str, body: dict | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read().decode())
        except urllib.error.HTTPError as err:
            text = err.read().decode(errors="replace")
            try:
                message = json.loads(text).get("error", text)
            except json.JSONDecodeError:
                message = text or err.reason
            raise TFServingError(err.code, message, url) from None
        except (urllib.error.URLError, OSError) as err:
            raise TFServingConnectionError(f"Cannot reach TF Serving at {url}: {err}") from None

    def status(self) -> dict[str, Any]:
        """`GET /v1/models/NAME[/versions/N]`: the model's version states."""
        return self._request(self.model_url)

    def metadata(self) -> dict[str, Any]:
        """`GET .../metadata`: signatures with input and output names, dtypes, shapes."""
        return self._request(self.model_url + "/metadata")

    def predict(self, images: list[bytes | str]) -> list[Prediction]:
        """Top-k labels and scores for encoded images (bytes, or file paths)."""
        instances = []
        for image in images:
            if isinstance(image, (str, os.PathLike)):
                with open(image, "rb") as f:
                    image = f.read()
            instances.append({"b64": base64.b64encode(image).decode()})
        return self._predict(instances, self.signature_name)

    def predict_pixels(self, images: Any) -> list[Prediction]:
        """Top-k labels and scores for a `[batch, H, W, C]` uint8 array of 0-255 pixels,
        through the export's `serve_uint8` signature. Other dtypes are refused: pixels
        scaled to 0..1 would be read as all but black."""
        import numpy as np

        array = np.asarray(images)
        if array.dtype != np.uint8 or array.ndim != 4:
            raise ValueError(f"predict_pixels takes a [batch, height, width, channels] uint8 array of 0-255 "
                             f"pixels, got {array.dtype} of shape {array.shape}. Convert 0-255 floats with "
                             ".astype('uint8'); scale 0..1 floats by 255 first.")
        return self._predict(array.tolist(), "serve_uint8")

    def _predict(self, instances: list, signature_name: str | None) -> list[Prediction]:
        body: dict[str, Any] = {"instances": instances}
        if signature_name:
            body["signature_name"] = signature_name
        result = self._request(self.model_url + ":predict", body)
        if "predictions" not in result:
            raise TFServingError(200, f"response has no 'predictions': {str(result)[:200]}", self.model_url)
        return [
            Prediction(
                labels=list(p["top_k_labels"]),
                scores=[float(s) for s in p["top_k_scores"]],
                classes=[int(c) for c in p["top_k_classes"]],
                probabilities=[float(s) for s in p["probabilities"]],
            )
            for p in result["predictions"]
        ]
