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
