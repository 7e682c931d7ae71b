"""The `tfds:NAME[/CONFIG]` scheme: any TFDS image-classification dataset.

The image and label keys come from the builder's features (its supervised
keys, else the single `Image` and `ClassLabel` features), never from a table.
Options: `data_dir=`, `manual_dir=` (e.g. the ILSVRC 2012 tars for
`tfds:imagenet2012`), `download=false` to never download.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_datasets as tfds

from crnn_keras.data.core import DatasetInfo, parse_split, slice_bounds

# Without a validation split, model selection reads this share of train (its end), never test.
VALIDATION_FROM_TRAIN = 10


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
    """Our `train`/`validation`/`test` -> TFDS splits.

    Validation never comes from test: a dataset without a validation split
    gives the last 10% of train to it (and trains on the rest); one without a
    test split is tested on its validation split, and validates on train's
    last 10%.

    Example:

    >>> split_plan(["train", "test"])["validation"]
    'train[90%:]'
    """
    test = "test" if "test" in available else ("validation" if "validation" in available else None)
    if "validation" in available and test != "validation":
        plan = {"train": "train", "validation": "validation"}
    else:
        cut = 100 - VALIDATION_FROM_TRAIN
        plan = {"train": f"train[:{cut}%]", "validation": f"train[{cut}%:]"}
    if test:
        plan["test"] = test
    return plan


def _resolve_split(builder, split: str) -> str:
    available = list(builder.info.splits.keys())
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
    split = _resolve_split(builder, split)
    read_config = tfds.ReadConfig(shuffle_seed=seed)
    dataset = builder.as_dataset(split=split, shuffle_files=split.startswith("train"), read_config=read_config)
    label_feature = builder.info.features[label_key]
    image_feature = builder.info.features[image_key]

    def to_pair(example):
        return example[image_key], tf.cast(example[label_key], tf.int64)

    shape = tuple(image_feature.shape)
    splits = {k: v.num_examples for k, v in builder.info.splits.items()}
    sources = split_plan(list(splits)) if splits else {}
    for ours, theirs in sources.items():
        if "[" in theirs:  # Sizes of the carved splits, rounded as TFDS rounds them.
            base, start, stop = parse_split(theirs)
            i, j = slice_bounds(builder.info.splits[base].num_examples, start, stop)
            splits[ours] = j - i
    info = DatasetInfo(
        name=f"tfds:{name}",
        num_classes=label_feature.num_classes,
        class_names=list(label_feature.names),
        image_shape=shape,
        splits=splits,
        description=f"TFDS {builder.info.full_name}",
        sources=sources,
    )
    return dataset.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE), info
