"""The `tfds:NAME[/CONFIG]` scheme: any TFDS image-classification dataset.

The image and label keys come from the builder's features (its supervised
keys, else the single `Image` and `ClassLabel` features), never from a table.
Options: `data_dir=`, `manual_dir=` (e.g. the ILSVRC 2012 tars for
`tfds:imagenet2012`), `download=false` to never download.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from crnn_keras.data.core import DatasetInfo

# Without a validation split, model selection reads this share of train (of every class), never test.
VALIDATION_FROM_TRAIN = 10
# Our split -> the TFDS split it reads, when validation is carved out of train.
CARVED = {"train": "train", "validation": "train"}
_carves: dict = {}  # (dataset, data_dir, seed) -> (validation tfds_ids, train size, validation size)


def _feature_keys(builder) -> tuple[str, str]:
    features = builder.info.features
    keys = builder.info.supervised_keys
    if keys and len(keys) == 2 and all(isinstance(k, str) for k in keys):
        image_key, label_key = keys
        if isinstance(features[image_key], tfds.features.Image) and isinstance(
            features[label_key], tfds.features.ClassLabel
        ):
            return image_key, label_key
    images = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
    labels = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
    if len(images) != 1 or not labels:
        raise ValueError(
            f"TFDS dataset {builder.name!r} is not an image-classification dataset this "
            f"loader understands: image features {images}, class-label features {labels}."
        )
    label = "label" if "label" in labels else labels[0]
    return images[0], label


def split_plan(available: list[str]) -> dict[str, str]:
    """Our `train`/`validation`/`test` -> TFDS splits (`carved` for a part of train).

    Validation never comes from test: a dataset without a validation split
    gives a seeded, stratified 10% of train (of every class) to it and trains
    on the rest; one without a test split is tested on its validation split,
    and validates on the carve from train.

    Example:

    >>> split_plan(["train", "test"])
    {'train': 'carved', 'validation': 'carved', 'test': 'test'}
    """
    test = "test" if "test" in available else ("validation" if "validation" in available else None)
    if "validation" in available and test != "validation":
        plan = {"train": "train", "validation": "validation"}
    else:
        plan = {"train": "carved", "validation": "carved"}
    if test:
        plan["test"] = test
    return plan


def carve_validation(builder, label_key: str, seed: int) -> tuple[np.ndarray, int]:
    """`(tfds_ids, train size)`: the ids of a seeded, stratified `VALIDATION_FROM_TRAIN`%
    of every class of the builder's train split (one pass over the labels, images undecoded)."""
    image_keys = [k for k, f in builder.info.features.items() if isinstance(f, tfds.features.Image)]
    ds = builder.as_dataset(split="train", shuffle_files=False, read_config=tfds.ReadConfig(add_tfds_id=True),
                            decoders={k: tfds.decode.SkipDecoding() for k in image_keys})
    ds = ds.map(lambda e: (e["tfds_id"], e[label_key]))
    ids, labels = [], []
    for batch_ids, batch_labels in ds.batch(4096).as_numpy_iterator():
        ids.append(batch_ids)
        labels.append(batch_labels)
    if not ids:
        raise ValueError(f"TFDS dataset {builder.name!r} has an empty train split.")
    ids, labels = np.concatenate(ids), np.concatenate(labels)
    order = np.argsort(ids, kind="stable")  # Independent of the reading order.
    ids, labels = ids[order], labels[order]
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = ids[labels == label]
        count = int(round(len(members) * VALIDATION_FROM_TRAIN / 100))
        chosen.append(rng.permutation(members)[:count])
    return np.sort(np.concatenate(chosen)), len(ids)


def _carve(builder, name: str, data_dir: str | None, label_key: str, seed: int):
    key = (name, data_dir, seed)
    if key not in _carves:
        validation, total = carve_validation(builder, label_key, seed)
        _carves[key] = (validation, total - len(validation), len(validation))
    return _carves[key]


def available_splits(builder) -> list[str]:
    return list(builder.info.splits.keys())


def _resolve_split(builder, split: str) -> str:
    """The TFDS split that our `split` reads; `"carved"` for a part of train."""
    available = available_splits(builder)
    base = split.split("[")[0]
    if not available or base in available and "[" in split:  # Explicit TFDS slices are used as given.
        return split
    plan = split_plan(available)
    if base in plan and "[" not in split:
        return plan[base]
    if base in available:
        return split
    raise ValueError(
        f"TFDS dataset {builder.name!r} has no split {split!r}. Available splits: {available}. "
        "Slices such as 'train[:90%]' and 'train[90%:]' make a validation split."
    )


def load(name: str, split: str, seed: int = 0, data_dir: str | None = None,
         manual_dir: str | None = None, download: str = "true"):
    if not name:
        raise ValueError("A tfds spec needs a dataset name, e.g. 'tfds:cifar10'.")
    if download.lower() not in ("1", "true", "yes", "0", "false", "no"):
        raise ValueError(f"tfds option download={download!r} must be true or false.")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as err:  # TFDS raises its own DatasetNotFoundError types.
        raise ValueError(
            f"Unknown TFDS dataset {name!r}: {err}. See `tfds.list_builders()` for names."
        ) from err
    image_key, label_key = _feature_keys(builder)
    if download.lower() in ("1", "true", "yes"):
        config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
        builder.download_and_prepare(download_config=config)
    theirs = _resolve_split(builder, split)
    carved = theirs == "carved"
    read_config = tfds.ReadConfig(shuffle_seed=seed, add_tfds_id=carved)
    theirs = "train" if carved else theirs
    dataset = builder.as_dataset(split=theirs, shuffle_files=theirs.startswith("train"), read_config=read_config)
    label_feature = builder.info.features[label_key]
    image_feature = builder.info.features[image_key]
    splits = {k: v.num_examples for k, v in builder.info.splits.items()}
    plan = split_plan(available_splits(builder)) if available_splits(builder) else {}
    sources = dict(plan)
    if "carved" in plan.values():
        validation_ids, n_train, n_val = _carve(builder, name, data_dir, label_key, seed)
        splits.update(train=n_train, validation=n_val)
        sources.update(train="train, less the validation carve",
                       validation=f"stratified {VALIDATION_FROM_TRAIN}% of every class of train, seed {seed}")
    if carved:
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(validation_ids), tf.ones(len(validation_ids), tf.int64)),
            default_value=0)
        wanted = 1 if split == "validation" else 0
        dataset = dataset.filter(lambda e: tf.equal(table.lookup(e["tfds_id"]), wanted))

    def to_pair(example):
        return example[image_key], tf.cast(example[label_key], tf.int64)

    info = DatasetInfo(
        name=f"tfds:{name}",
        num_classes=label_feature.num_classes,
        class_names=list(label_feature.names),
        image_shape=tuple(image_feature.shape),
        splits=splits,
        description=f"TFDS {builder.info.full_name}",
        sources=sources,
    )
    return dataset.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE), info
