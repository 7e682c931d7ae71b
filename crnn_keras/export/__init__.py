"""SavedModel export for TF Serving."""

from crnn_keras.export.saved_model import (
    DEFAULT_MAX_PIXELS,
    export_run,
    export_saved_model,
    portable_clone,
)

__all__ = ["DEFAULT_MAX_PIXELS", "export_run", "export_saved_model", "portable_clone"]
