"""TF Serving REST client."""

from crnn_keras.serving.client import (
    Prediction,
    TFServingClient,
    TFServingConnectionError,
    TFServingError,
)

__all__ = ["Prediction", "TFServingClient", "TFServingConnectionError", "TFServingError"]
