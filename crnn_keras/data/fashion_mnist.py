"""The `fashion_mnist[:DIR]` scheme: the four IDX `.gz` files of Fashion-MNIST.

Searched in order: DIR, `$CRNN_DATA_DIR` (and its `fashion-mnist/`),
`~/.keras/datasets/fashion-mnist`, `/usr/share/datasets/fashion-mnist`
(Debian's `dataset-fashion-mnist`). Magic numbers and sizes are checked; a
truncated or wrong file is an error that names it. Where no files are found,
`keras.datasets.fashion_mnist` downloads them (needs the network).
`validation` is the last `validation_size` (default 5000) training images.
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import tensorflow as tf

from crnn_keras.data.core import DatasetInfo

CLASS_NAMES = [
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
]
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
EXPECTED_COUNTS = {"train": 60000, "test": 10000}
SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"
_IDX_UBYTE = 0x08


class IDXFormatError(ValueError):
    """An IDX file is truncated, has the wrong magic number, or a bad size."""


def read_idx(path: str, expected_ndim: int) -> np.ndarray:
    """Reads a (gzipped) IDX file of unsigned bytes, checking its header and size."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:
        raise IDXFormatError(f"Cannot read IDX file {path!r}: {err} (truncated or not gzip?).") from err
    if len(data) < 4:
        raise IDXFormatError(f"IDX file {path!r} is truncated: {len(data)} bytes, no header.")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != _IDX_UBYTE or ndim != expected_ndim:
        raise IDXFormatError(
            f"IDX file {path!r} has magic number 0x{data[:4].hex()}; expected "
            f"0x0000080{expected_ndim} (unsigned bytes, {expected_ndim} dimensions)."
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(f"IDX file {path!r} is truncated inside its header.")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise IDXFormatError(
            f"IDX file {path!r} holds {len(data) - header} data bytes but its header "
            f"{dims} says {expected} (truncated or corrupt)."
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def candidate_dirs(directory: str | None = None) -> list[str]:
    """Where the files are looked for: only `directory` when one is given."""
    if directory:
        return [os.path.expanduser(directory)]
    dirs = []
    env = os.environ.get("CRNN_DATA_DIR")
    if env:
        dirs += [os.path.join(env, "fashion-mnist"), env]
    dirs += [os.path.expanduser("~/.keras/datasets/fashion-mnist"), SYSTEM_DIR]
    return dirs


def find_dir(directory: str | None = None) -> str | None:
    for d in candidate_dirs(directory):
        if all(os.path.exists(os.path.join(d, f)) for pair in FILES.values() for f in pair):
            return d
    return None


def load_arrays(split: str, directory: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`(images (N, 28, 28) uint8, labels (N,) uint8)` of `train` or `test`."""
    found = find_dir(directory)
    if found is None:
        if directory:
            missing = [f for pair in FILES.values() for f in pair
                       if not os.path.exists(os.path.join(directory, f))]
            raise ValueError(
                f"Fashion-MNIST files missing in {directory!r}: {missing}. Install Debian's "
                f"`dataset-fashion-mnist`, or put the four IDX .gz files there."
            )
        try:
            import keras

            (xtr, ytr), (xte, yte) = keras.datasets.fashion_mnist.load_data()
        except Exception as err:
            raise ValueError(
                "Fashion-MNIST files not found in " + ", ".join(candidate_dirs())
                + f" and the download failed ({err}). Install Debian's `dataset-fashion-mnist`, "
                "or set CRNN_DATA_DIR to a folder holding the four IDX .gz files."
            ) from err
        return (xtr, ytr) if split == "train" else (xte, yte)
    image_file, label_file = FILES[split]
    images = read_idx(os.path.join(found, image_file), 3)
    labels = read_idx(os.path.join(found, label_file), 1)
    if len(images) != len(labels) or images.shape[1:] != (28, 28):
        raise IDXFormatError(
            f"Fashion-MNIST {split} files in {found!r} disagree: {images.shape} images, "
            f"{labels.shape} labels; expected (N, 28, 28) and (N,)."
        )
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise IDXFormatError(f"{os.path.join(found, label_file)!r} has labels >= {len(CLASS_NAMES)}.")
    return images, labels


def load(name: str, split: str, seed: int = 0, validation_size: str = "5000"):
    base = split.split("[")[0]
    if base not in ("train", "validation", "test"):
        raise ValueError(f"Unknown split {split!r} for fashion_mnist; use train, validation or test.")
    if not validation_size.isdigit():
        raise ValueError(f"fashion_mnist validation_size must be a whole number >= 0, got {validation_size!r}.")
    n_val = int(validation_size)
    if base == "validation" and not n_val:
        raise ValueError("fashion_mnist?validation_size=0 leaves the validation split empty, and training needs "
                         "it to choose its checkpoint; use validation_size >= 1 (default 5000).")
    images, labels = load_arrays("test" if base == "test" else "train", name or None)
    if base != "test" and n_val >= len(images):
        raise ValueError(f"fashion_mnist validation_size={n_val} leaves no training images of the "
                         f"{len(images)}; use at most {len(images) - 1}.")
    # Counts of what the files hold, not of the files the dataset should have.
    if base == "test":
        splits = {"train": None, "validation": None, "test": len(images)}
    else:
        splits = {"train": len(images) - n_val, "validation": n_val, "test": None}
        cut = len(images) - n_val
        images, labels = (images[:cut], labels[:cut]) if base == "train" else (images[cut:], labels[cut:])
    info = DatasetInfo(
        name="fashion_mnist",
        num_classes=len(CLASS_NAMES),
        class_names=list(CLASS_NAMES),
        image_shape=(28, 28, 1),
        splits=splits,
        description="Fashion-MNIST (Xiao et al. 2017), 28x28 grayscale.",
        sources={"train": f"train[:-{n_val}]", "validation": f"train[-{n_val}:]", "test": "test"}
        if n_val else {"test": "test"},
    )
    dataset = tf.data.Dataset.from_tensor_slices((images[..., None], labels.astype(np.int64)))
    return dataset, info
