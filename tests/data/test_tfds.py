import pytest
import tensorflow_datasets as tfds

from crnn_keras.data import load_dataset


@pytest.mark.parametrize(
    "name,num_classes,image_key",
    [
        ("sun397/standard-part1-120k", 397, "image"),
        ("cifar10", 10, "image"),
        ("places365_small", 365, "image"),
    ],
)
def test_tfds_path_with_mock_data(name, num_classes, image_key):
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        ds, info = load_dataset(f"tfds:{name}", "train", image_size=24, batch_size=4, augment=True)
        images, labels = next(iter(ds))
    assert info.num_classes == num_classes and len(info.class_names) == num_classes
    assert images.shape == (4, 24, 24, 3)
    assert labels.dtype.name == "int64"
    assert int(labels.numpy().max()) < num_classes


def test_validation_is_carved_from_train_never_test():
    from types import SimpleNamespace

    from crnn_keras.data.tfds import _resolve_split, split_plan

    builder = SimpleNamespace(name="cifar10", info=SimpleNamespace(splits={"train": 1, "test": 1}))
    assert [_resolve_split(builder, s) for s in ("train", "validation", "test", "train[:5%]")] == \
        ["carved", "carved", "test", "train[:5%]"]
    assert split_plan(["train", "validation"]) == {"train": "carved", "validation": "carved", "test": "validation"}
    assert split_plan(["train", "validation", "test"]) == {"train": "train", "validation": "validation",
                                                           "test": "test"}


def test_carved_validation_is_stratified_seeded_and_disjoint(monkeypatch):
    import collections

    import numpy as np

    from crnn_keras.data import tfds as source

    # Mock data has no split metadata; pretend cifar10 has train and test only.
    monkeypatch.setattr(source, "available_splits", lambda builder: ["train", "test"])
    monkeypatch.setattr(source, "_carves", {})
    with tfds.testing.mock_data(num_examples=200, policy=tfds.testing.MockPolicy.USE_CODE):
        builder = tfds.builder("cifar10")
        ids, total = source.carve_validation(builder, "label", seed=0)
        assert np.array_equal(ids, source.carve_validation(builder, "label", seed=0)[0])
        assert not np.array_equal(ids, source.carve_validation(builder, "label", seed=1)[0])
        every = {e["tfds_id"]: int(e["label"]) for e in
                 builder.as_dataset(split="train", read_config=tfds.ReadConfig(add_tfds_id=True)).as_numpy_iterator()}
        train, info = load_dataset("tfds:cifar10", "train", batch_size=256, cache=False)
        val, _ = load_dataset("tfds:cifar10", "validation", batch_size=256, cache=False)
        (_, train_labels), (_, val_labels) = next(iter(train)), next(iter(val))
    assert len(train_labels) + len(val_labels) == len(every) == total == 200
    assert info.splits["train"] == len(train_labels) and info.splits["validation"] == len(val_labels)
    assert "stratified" in info.sources["validation"] and info.sources["test"] == "test"
    # Every class gives its own rounded 10% to validation.
    total = collections.Counter(every.values())
    held = collections.Counter(every[i] for i in ids)
    assert held == collections.Counter({c: round(n * 0.1) for c, n in total.items() if round(n * 0.1)})
    assert collections.Counter(val_labels.numpy().tolist()) == held


def test_unknown_tfds_name():
    with pytest.raises(ValueError, match="Unknown TFDS dataset 'not_a_dataset_xyz'"):
        load_dataset("tfds:not_a_dataset_xyz")


def test_non_image_classification_dataset():
    with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
        with pytest.raises(ValueError, match="not an image-classification dataset"):
            load_dataset("tfds:imdb_reviews")
