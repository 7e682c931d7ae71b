"""The `folder:PATH` scheme: one subfolder per class (the MIT Indoor 67 layout).

```
PATH/kitchen/int474.jpg
PATH/bedroom/...
PATH/TrainImages.txt   optional: lines like "kitchen/int474.jpg"
PATH/TestImages.txt    optional
```

With split files, `train` and `test` come from them, and `validation` is a
seeded stratified part of the training list. Without them, every class is
split (seeded, stratified) into train/validation/test by the fractions
`validation_fraction` (default 0.1) and `test_fraction` (default 0.1;
refused with split files, whose test list is the test split). One split file
without the other is refused.
JPEG, PNG, BMP and GIF (first frame) are read; other files are ignored. A file
that fails to decode is skipped, counted, and named in a warning.
Options: `validation_fraction=`, `test_fraction=`, `images_dir=` (a subfolder
holding the class folders, e.g. `Images` in the MIT Indoor 67 archive).
"""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import tensorflow as tf

from crnn_keras.data.core import DatasetInfo

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
SPLIT_FILES = {"train": "TrainImages.txt", "test": "TestImages.txt"}
log = logging.getLogger(__name__)


class CorruptImageWarning(UserWarning):
    """An image file could not be decoded and was skipped."""


def _list_classes(root: str) -> list[str]:
    return sorted(
        d for d in os.listdir(root)
        if os.path.isdir(os.path.join(root, d)) and not d.startswith(".")
    )


def _list_images(root: str, classes: list[str]) -> list[str]:
    files = []
    for name in classes:
        for dirpath, _, filenames in os.walk(os.path.join(root, name)):
            for filename in sorted(filenames):
                if filename.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.relpath(os.path.join(dirpath, filename), root))
    return sorted(files)


def _read_split_file(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip().replace("\\", "/") for line in f if line.strip()]


def _stratified(files: list[str], fractions: list[float], seed: int) -> list[list[str]]:
    """Splits `files` per class into parts of the given fractions (the rest first)."""
    parts = [[] for _ in range(len(fractions) + 1)]
    rng = np.random.default_rng(seed)
    for members in _by_class(files).values():
        rng.shuffle(members)
        start = 0
        counts = [int(round(len(members) * fr)) for fr in fractions]
        if len(members) - sum(counts) < 1:  # Keep at least one training image per class.
            counts = [min(c, max(0, len(members) - 1 - sum(counts[:i]))) for i, c in enumerate(counts)]
        for i, count in enumerate(counts, start=1):
            parts[i].extend(members[start : start + count])
            start += count
        parts[0].extend(members[start:])
    return [_interleave(p) for p in parts]


def _interleave(files: list[str]) -> list[str]:
    """`files` ordered so that every class is spread evenly along the list: a
    slice such as `train[:10%]` then holds about 10% of every class, not the
    first classes alone. Deterministic: each class's files by name, placed at
    their relative position within the class."""
    keyed = [((i + 0.5) / len(members), name, f)
             for name, members in _by_class(files).items() for i, f in enumerate(members)]
    return [f for _, _, f in sorted(keyed)]


def _by_class(files: list[str]) -> dict[str, list[str]]:
    """`{class: its files}` (`class/name` paths), classes and files sorted by name."""
    by_class: dict[str, list[str]] = {}
    for f in sorted(files):
        by_class.setdefault(f.split("/")[0], []).append(f)
    return {name: by_class[name] for name in sorted(by_class)}  # "a-b/" sorts before "a/".


def _decoded_size(path: str) -> tuple[int, int] | None:
    """`(height, width)` of an image file, or None where it does not decode."""
    try:
        data = tf.io.read_file(path)
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
        return None
    return (int(image.shape[0]), int(image.shape[1])) if image.shape[0] > 0 and image.shape[1] > 0 else None


def _check_files(root: str, files: list[str]) -> tuple[list[str], list[str], set[tuple[int, int]]]:
    """`(files that decode, files that do not, the sizes of those that do)`."""
    good, bad, sizes = [], [], set()
    for f in files:
        size = _decoded_size(os.path.join(root, f))
        (good if size else bad).append(f)
        if size:
            sizes.add(size)
    return good, bad, sizes


def _fraction(option: str, text: str) -> float:
    """A `folder:` fraction option, refused unless it is a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1:
        raise ValueError(f"folder option {option}={text!r} must be a fraction of every class in [0, 1), "
                         f"e.g. {option}=0.1.")
    return value


def load(
    name: str,
    split: str,
    seed: int = 0,
    validation_fraction: str = "0.1",
    test_fraction: str | None = None,
    images_dir: str = "",
):
    root = os.path.expanduser(name)
    if not name:
        raise ValueError("A folder spec needs a path, e.g. 'folder:/data/indoor67'.")
    if not os.path.isdir(root):
        raise ValueError(f"Image folder {root!r} does not exist or is not a directory.")
    image_root = os.path.join(root, images_dir) if images_dir else root
    if not os.path.isdir(image_root):
        raise ValueError(f"folder option images_dir={images_dir!r}: {image_root!r} is not a folder; name "
                         f"the subfolder of {root!r} that holds the class folders.")
    if not images_dir and os.path.isdir(os.path.join(root, "Images")) and not _list_images(
        root, [c for c in _list_classes(root) if c != "Images"]
    ):
        image_root = os.path.join(root, "Images")  # The MIT Indoor 67 archive layout.
    classes = _list_classes(image_root)
    all_files = _list_images(image_root, classes)
    classes = sorted({f.split("/")[0] for f in all_files})
    if len(classes) < 2:
        raise ValueError(
            f"{'No classes' if not classes else 'Only one class (' + classes[0] + ')'} found in "
            f"{image_root!r}: expected one subfolder per class, at least two, holding images "
            f"({', '.join(IMAGE_EXTENSIONS)})."
        )
    val_fraction = _fraction("validation_fraction", validation_fraction)
    test_fraction_f = _fraction("test_fraction", test_fraction) if test_fraction is not None else 0.1
    base = split.split("[")[0]
    if base not in ("train", "validation", "test"):
        raise ValueError(f"Unknown split {split!r} for a folder; use train, validation or test.")
    split_files = {s: os.path.join(root, f) for s, f in SPLIT_FILES.items()}
    found = [f for s, f in SPLIT_FILES.items() if os.path.exists(split_files[s])]
    absent = [f for f in SPLIT_FILES.values() if f not in found]
    if found and absent:
        raise ValueError(f"{root!r} has {found[0]} but not {absent[0]}: a folder needs both split files "
                         "or neither (then it is split by validation_fraction and test_fraction).")
    if found and test_fraction is not None:
        raise ValueError(f"test_fraction={test_fraction} does not apply to {root!r}: its test split is "
                         f"{SPLIT_FILES['test']}. Remove the option, or the split files.")
    if not found and val_fraction + test_fraction_f >= 1:
        raise ValueError(f"folder options validation_fraction={val_fraction} and test_fraction={test_fraction_f} "
                         f"leave no training images in {root!r}: their sum must be below 1.")
    if found:
        available = set(all_files)
        listed = {s: _read_split_file(p) for s, p in split_files.items()}
        shared = sorted(set(listed["train"]) & set(listed["test"]))
        if shared:
            raise ValueError(
                f"{SPLIT_FILES['train']} and {SPLIT_FILES['test']} in {root!r} share {len(shared)} file(s), "
                f"e.g. {shared[:3]}: the test accuracy would be measured on training images. Remove them "
                "from one of the two lists.")
        missing = [f for files in listed.values() for f in files if f not in available]
        if missing:
            warnings.warn(
                f"{len(missing)} files named in the split files are missing under {image_root!r}, "
                f"e.g. {missing[:3]}; they are skipped.",
                stacklevel=2,
            )
        train, validation = _stratified([f for f in listed["train"] if f in available], [val_fraction], seed)
        parts = {"train": train, "validation": validation,
                 "test": _interleave([f for f in listed["test"] if f in available])}
        sources = {"train": f"{SPLIT_FILES['train']} less validation",
                   "validation": f"stratified {val_fraction:.0%} of {SPLIT_FILES['train']}, seed {seed}",
                   "test": SPLIT_FILES["test"]}
    else:
        train, validation, test = _stratified(all_files, [val_fraction, test_fraction_f], seed)
        parts = {"train": train, "validation": validation, "test": test}
        sources = {s: f"stratified {share:.0%} of every class, seed {seed}" for s, share in
                   (("train", 1 - val_fraction - test_fraction_f), ("validation", val_fraction),
                    ("test", test_fraction_f))}
    files, bad, sizes = _check_files(image_root, parts[base])
    if bad:
        warnings.warn(
            f"Skipped {len(bad)} corrupt or unreadable image(s) in {image_root!r}: "
            + ", ".join(bad[:10]) + (" ..." if len(bad) > 10 else ""),
            CorruptImageWarning,
            stacklevel=2,
        )
    if not files:
        raise ValueError(f"Split {split!r} of {image_root!r} has no readable images"
                         + (" (its share of every class rounds to none: raise validation_fraction or "
                            "test_fraction)." if parts[base] == [] and base != "train" else "."))
    index = {c: i for i, c in enumerate(classes)}
    paths = [os.path.join(image_root, f) for f in files]
    labels = np.array([index[f.split("/")[0]] for f in files], np.int64)

    def read(path, label):
        data = tf.io.read_file(path)
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image.set_shape((None, None, 3))
        return image, label

    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    dataset = dataset.map(read, num_parallel_calls=tf.data.AUTOTUNE)
    info = DatasetInfo(
        name=f"folder:{name}",
        num_classes=len(classes),
        class_names=classes,
        # Every file of the split was decoded above: one size among them is the split's size.
        image_shape=(*next(iter(sizes)), 3) if len(sizes) == 1 else (None, None, 3),
        # The loaded split counts the images that decode; the others are not read here.
        splits={s: len(files) if s == base else None for s in parts},
        description=f"Image folder {image_root}.",
        skipped_files=bad,
        sources=sources,
    )
    return dataset, info
