"""crnn-keras: convolutional recurrent networks (Zuo et al., 2015) for Keras 3."""

__version__ = "0.1.0"

from crnn_keras import layers, models  # noqa: E402

__all__ = ["__version__", "layers", "models"]
