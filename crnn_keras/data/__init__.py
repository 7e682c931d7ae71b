"""Datasets: `load_dataset(spec)` for builtin, TFDS, image folders and Fashion-MNIST."""

from crnn_keras.data.core import DEFAULT_SPEC, SCHEMES, DatasetInfo, load_dataset, parse_spec

__all__ = ["DEFAULT_SPEC", "SCHEMES", "DatasetInfo", "load_dataset", "parse_spec"]
