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
        ["train[:90%]", "train[90%:]", "test", "train[:5%]"]
    assert split_plan(["train", "validation"]) == {"train": "train[:90%]", "validation": "train[90%:]",
                                                   "test": "validation"}
    assert split_plan(["train", "validation", "test"]) == {"train": "train", "validation": "validation",
                                                           "test": "test"}
    with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
        ds, info = load_dataset("tfds:cifar10", "validation", batch_size=2)
        images, _ = next(iter(ds))
    assert images.shape == (2, 32, 32, 3) and info.image_shape == (32, 32, 3)


def test_unknown_tfds_name():
    with pytest.raises(ValueError, match="Unknown TFDS dataset 'not_a_dataset_xyz'"):
        load_dataset("tfds:not_a_dataset_xyz")


def test_non_image_classification_dataset():
    with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
        with pytest.raises(ValueError, match="not an image-classification dataset"):
            load_dataset("tfds:imdb_reviews")
