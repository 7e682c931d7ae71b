import io

import numpy as np
import pytest
from PIL import Image

from crnn_keras.export import export_saved_model
from crnn_keras.models import CRNNImageClassifier
from crnn_keras.serving import TFServingClient, TFServingConnectionError, TFServingError
from tests.serving.fake_tf_serving import serve

NAMES = ["safe", "attacking"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = CRNNImageClassifier.from_preset("crnn_tiny", num_classes=2, image_shape=(16, 16, 3), sweep={"units": 4})
    base = tmp_path_factory.mktemp("savedmodels") / "rooks"
    export_saved_model(model, str(base), class_names=NAMES)
    url, shutdown = serve(str(base), "rooks")
    yield url, model
    shutdown()


def _png(seed):
    array = np.random.default_rng(seed).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue(), array


def test_status_and_metadata(server):
    url, _ = server
    client = TFServingClient(url, "rooks")
    assert client.status()["model_version_status"][0]["state"] == "AVAILABLE"
    signatures = client.metadata()["metadata"]["signature_def"]["signature_def"]
    assert signatures["serving_default"]["inputs"]["image_bytes"]["dtype"] == "string"
    assert TFServingClient(url, "rooks", version=1).status()["model_version_status"][0]["version"] == "1"


def test_predict_decodes_labels_and_scores(server, tmp_path):
    url, model = server
    (a, array_a), (b, array_b) = _png(0), _png(1)
    path = tmp_path / "b.png"
    path.write_bytes(b)
    predictions = TFServingClient(url, "rooks").predict([a, str(path)])
    expected = model.predict_proba(np.stack([array_a, array_b]).astype(np.float32), verbose=0)
    for prediction, probs in zip(predictions, expected):
        np.testing.assert_allclose(prediction.probabilities, probs, atol=1e-5)
        assert prediction.labels == [NAMES[i] for i in np.argsort(-probs)]
        assert prediction.scores == sorted(prediction.scores, reverse=True)


def test_predict_pixels_sends_uint8_to_serve_uint8_and_refuses_other_dtypes(server):
    url, model = server
    arrays = np.stack([_png(0)[1], _png(1)[1]])
    client = TFServingClient(url, "rooks")
    predictions = client.predict_pixels(arrays)
    expected = model.predict_proba(arrays.astype(np.float32), verbose=0)
    np.testing.assert_allclose([p.probabilities for p in predictions], expected, atol=1e-5)
    with pytest.raises(ValueError, match="uint8 array of 0-255 pixels, got float32.*scale 0..1 floats by 255"):
        client.predict_pixels(arrays.astype(np.float32) / 255)


def test_errors_are_mapped(server):
    url, _ = server
    with pytest.raises(TFServingError, match="404.*Servable not found") as err:
        TFServingClient(url, "nope").status()
    assert err.value.status == 404
    with pytest.raises(TFServingError, match="404"):
        TFServingClient(url, "rooks", version=7).status()
    with pytest.raises(TFServingError, match="(?s)400.*not a JPEG, PNG, BMP or GIF"):
        TFServingClient(url, "rooks").predict([b"this is not an image, only some text here"])
    with pytest.raises(TFServingConnectionError, match="Cannot reach"):
        TFServingClient("http://127.0.0.1:9", "rooks", timeout=2).status()
    with pytest.raises(ValueError, match="http"):
        TFServingClient("localhost:8501", "rooks")


# TF Serving's REST API as documented at https://www.tensorflow.org/tfx/serving/api_rest
# (tensorflow_serving/g3doc/api_rest.md): "Model status API" (a GetModelStatusResponse),
# "Predict API / Response format" (row format: "predictions" is a list of objects, one key per
# named output, when the signature has several outputs), and errors as {"error": <message>}.
DOCUMENTED_STATUS = {"model_version_status": [
    {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
DOCUMENTED_NOT_FOUND = {"error": "Servable not found for request: Latest(half)"}


def _get(url, body=None):
    import json
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_stand_in_answers_match_the_documented_rest_responses(server):
    import base64

    url, _ = server
    code, status = _get(f"{url}/v1/models/rooks")
    assert code == 200 and set(status) == set(DOCUMENTED_STATUS)
    (entry,) = status["model_version_status"]
    documented = DOCUMENTED_STATUS["model_version_status"][0]
    assert set(entry) == set(documented) and set(entry["status"]) == set(documented["status"])
    assert isinstance(entry["version"], str) and entry["state"] == "AVAILABLE"
    assert entry["status"] == documented["status"]

    code, answer = _get(f"{url}/v1/models/half:predict", {"instances": [1.0]})
    assert code == 404 and set(answer) == set(DOCUMENTED_NOT_FOUND)
    assert answer["error"] == DOCUMENTED_NOT_FOUND["error"]

    png, _ = _png(0)
    code, answer = _get(f"{url}/v1/models/rooks:predict",
                        {"instances": [{"b64": base64.b64encode(png).decode()}] * 2})
    assert code == 200 and set(answer) == {"predictions"} and len(answer["predictions"]) == 2
    for row in answer["predictions"]:  # One object per instance, a key per named output.
        assert set(row) == {"probabilities", "top_k_scores", "top_k_classes", "top_k_labels"}
    code, answer = _get(f"{url}/v1/models/rooks:predict", {"instances": [{"b64": "bm90IGFuIGltYWdl"}]})
    assert code == 400 and set(answer) == {"error"} and isinstance(answer["error"], str)


def test_client_reads_the_documented_payloads_verbatim():
    """The client against TF Serving's own documented JSON, served as is."""
    import threading
    from http.server import ThreadingHTTPServer

    from tests.serving.fake_tf_serving import JSONHandler

    class Documented(JSONHandler):
        def do_GET(self):
            if self.path == "/v1/models/half_plus_three":
                self._send(200, DOCUMENTED_STATUS)
            else:
                self._send(404, DOCUMENTED_NOT_FOUND)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Documented)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        assert TFServingClient(url, "half_plus_three").status() == DOCUMENTED_STATUS
        with pytest.raises(TFServingError, match="404.*Servable not found for request: Latest\\(half\\)"):
            TFServingClient(url, "half").status()
    finally:
        httpd.shutdown()
        httpd.server_close()
