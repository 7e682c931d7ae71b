import gzip
import os
import struct

import numpy as np
import pytest

from crnn_keras.data import fashion_mnist, load_dataset
from crnn_keras.data.fashion_mnist import FILES, IDXFormatError, read_idx


def _write_idx(path, array, magic=None):
    header = magic if magic is not None else struct.pack(">HBB", 0, 8, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_dir(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 10)):
        images, labels = FILES[split]
        _write_idx(tmp_path / images, rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / labels, np.arange(n) % 10)
    return tmp_path


def test_reads_generated_files(fake_dir):
    ds, info = load_dataset(f"fashion_mnist:{fake_dir}?validation_size=10", "train", batch_size=64)
    images, labels = next(iter(ds))
    assert images.shape == (20, 28, 28, 1) and info.num_classes == 10
    assert info.class_names[9] == "ankle boot"
    raw = read_idx(str(fake_dir / FILES["train"][0]), 3)
    assert np.array_equal(np.sort(images.numpy().ravel()), np.sort(raw[:20].ravel().astype(np.float32)))


def test_truncated_file_is_named(fake_dir):
    path = fake_dir / FILES["test"][0]
    data = gzip.decompress(path.read_bytes())
    with gzip.open(path, "wb") as f:
        f.write(data[:-100])
    with pytest.raises(IDXFormatError, match="t10k-images-idx3-ubyte.gz.*truncated"):
        load_dataset(f"fashion_mnist:{fake_dir}", "test")


def test_wrong_magic_number(fake_dir):
    path = fake_dir / FILES["train"][1]
    _write_idx(path, np.arange(30) % 10, magic=struct.pack(">HBB", 0, 0x0D, 1))
    with pytest.raises(IDXFormatError, match="train-labels-idx1-ubyte.gz.*magic number"):
        load_dataset(f"fashion_mnist:{fake_dir}", "train")


def test_garbage_file(fake_dir):
    (fake_dir / FILES["train"][0]).write_bytes(b"this is not gzip at all")
    with pytest.raises(IDXFormatError, match="train-images-idx3-ubyte.gz"):
        load_dataset(f"fashion_mnist:{fake_dir}", "train")


def test_missing_files_in_given_dir(tmp_path):
    with pytest.raises(ValueError, match="Fashion-MNIST files missing.*dataset-fashion-mnist"):
        load_dataset(f"fashion_mnist:{tmp_path}")


@pytest.mark.skipif(not os.path.isdir(fashion_mnist.SYSTEM_DIR),
                    reason="Debian's dataset-fashion-mnist is not installed (scripts/test.sh installs it)")
def test_real_debian_files():
    images, labels = fashion_mnist.load_arrays("test", fashion_mnist.SYSTEM_DIR)
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert np.array_equal(np.bincount(labels), [1000] * 10)
    train, train_labels = fashion_mnist.load_arrays("train", fashion_mnist.SYSTEM_DIR)
    assert train.shape == (60000, 28, 28) and np.bincount(train_labels).tolist() == [6000] * 10
    ds, info = load_dataset("fashion_mnist", "validation", batch_size=5000)
    assert info.splits == {"train": 55000, "validation": 5000, "test": None}  # Counted: test not read.
    batch = next(iter(ds))[0].numpy()
    np.testing.assert_array_equal(batch[..., 0], train[-5000:])


def test_slices_and_sizes_count_what_the_files_hold(fake_dir):
    ds, info = load_dataset(f"fashion_mnist:{fake_dir}?validation_size=10", "test[:50%]", batch_size=64,
                            shuffle=False)
    assert sum(int(x.shape[0]) for x, _ in ds) == 5 == info.splits["test[:50%]"]
    _, info = load_dataset(f"fashion_mnist:{fake_dir}?validation_size=10", "train", batch_size=64)
    assert info.splits["train"] == 20 and info.splits["validation"] == 10


@pytest.mark.parametrize("size,message", [("30", "leaves no training images"), ("70000", "leaves no training"),
                                          ("abc", "whole number"), ("-5", "whole number")])
def test_bad_validation_sizes_are_refused(fake_dir, size, message):
    with pytest.raises(ValueError, match=message):
        load_dataset(f"fashion_mnist:{fake_dir}?validation_size={size}", "train", batch_size=8)


def test_an_empty_validation_split_is_refused_and_other_splits_still_load(fake_dir):
    spec = f"fashion_mnist:{fake_dir}?validation_size=0"
    with pytest.raises(ValueError, match="validation_size=0 leaves the validation split empty"):
        load_dataset(spec, "validation", batch_size=8)
    assert load_dataset(spec, "train", batch_size=8)[1].splits["train"] == 30  # All of train.


@pytest.mark.parametrize("options, message", [
    ("foo=1", r"Unknown option\(s\) \['foo'\].*takes validation_size"),
    ("seed=3", r"\['seed'\].*not source options"),
])
def test_unknown_options_are_refused(fake_dir, options, message):
    with pytest.raises(ValueError, match=message):
        load_dataset(f"fashion_mnist:{fake_dir}?{options}", "train", batch_size=8)
