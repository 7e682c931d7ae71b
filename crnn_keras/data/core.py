"""`load_dataset(spec)`: one way in for every data source, and the input pipeline."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from typing import Any, Callable

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE

# scheme -> module with `load(name, split, seed, **options) -> (dataset, DatasetInfo)`.
# The dataset yields unbatched `(uint8 image (H, W, C), int64 label)` pairs.
SCHEMES: dict[str, str] = {
    "builtin": "crnn_keras.data.builtin",
    "tfds": "crnn_keras.data.tfds",
    "folder": "crnn_keras.data.folder",
    "fashion_mnist": "crnn_keras.data.fashion_mnist",
}
DEFAULT_SPEC = "builtin:rooks"  # TrainConfig.dataset's default too (a test checks).


@dataclasses.dataclass
class DatasetInfo:
    """What a training, evaluation or export run needs to know about a dataset.

    Attributes:
        name: the spec it came from.
        num_classes: number of classes.
        class_names: one name per class index.
        image_shape: `(height, width, channels)` of the images the pipeline
            yields (`None` where sizes vary and no `image_size` was given).
        splits: number of examples in each split (`None` where unknown).
        flip_ok: whether horizontal flips keep labels valid.
        description: a line about the source.
        skipped_files: files of this split that could not be decoded.
        sources: where each of `train`/`validation`/`test` comes from, where it
            is not the source's split of that name (e.g. `train[90%:]`).
    """

    name: str
    num_classes: int
    class_names: list[str]
    image_shape: tuple
    splits: dict[str, int | None]
    flip_ok: bool = True
    description: str = ""
    skipped_files: list[str] = dataclasses.field(default_factory=list)
    sources: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["image_shape"] = list(self.image_shape)
        return data


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """`"scheme:name?key=value&..."` -> `(scheme, name, options)`."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"A dataset spec must be a non-empty string, got {spec!r}.")
    base, _, query = spec.partition("?")
    scheme, _, name = base.partition(":")
    if scheme not in SCHEMES:
        raise ValueError(
            f"Unknown dataset scheme {scheme!r} in {spec!r}. Expected one of "
            + ", ".join(f"'{s}:...'" for s in SCHEMES)
            + f", e.g. {DEFAULT_SPEC!r}, 'tfds:cifar10', 'folder:/data/indoor67', 'fashion_mnist'."
        )
    options = {}
    for item in filter(None, query.split("&")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"Bad option {item!r} in dataset spec {spec!r}; use key=value.")
        options[key] = value
    return scheme, name, options


_SPLIT = re.compile(r"^(\w+)(?:\[(-?\d+%?)?:(-?\d+%?)?\])?$")


def parse_split(split: str) -> tuple[str, str | None, str | None]:
    """TFDS-style `"train"`, `"train[:90%]"`, `"train[1000:]"` -> `(name, start, stop)`.

    Example:

    >>> parse_split("train[90%:]")
    ('train', '90%', None)
    """
    match = _SPLIT.match(split) if isinstance(split, str) else None
    if not match:
        raise ValueError(f"Bad split {split!r}: use a name, or a name and a slice of integers or "
                         "percents, e.g. 'train', 'train[:90%]', 'train[90%:]', 'train[1000:]'.")
    return match.group(1), match.group(2), match.group(3)


def slice_bounds(n: int, start: str | None, stop: str | None) -> tuple[int, int]:
    """`[start:stop)` of `n` examples; percents round to the closest example, as TFDS does.

    Example:

    >>> slice_bounds(60000, None, "10%"), slice_bounds(60000, "-1000", None)
    ((0, 6000), (59000, 60000))
    """

    def position(value: str | None, default: int) -> int:
        if value is None:
            return default
        if value.endswith("%"):
            percent = int(value[:-1])
            if abs(percent) > 100:
                raise ValueError(f"A split percent must be within -100%..100%, got {value!r}.")
            k = round(n * abs(percent) / 100)
            return k if percent >= 0 else n - k
        k = int(value)
        return k if k >= 0 else n + k

    i = min(max(position(start, 0), 0), n)
    return i, min(max(position(stop, n), i), n)


def _check_options(scheme: str, load, options: dict[str, str], spec: str) -> None:
    """Refuses options that the scheme's `load` does not take (one that takes
    `**options` checks them itself; `name`, `split` and `seed` are never options)."""
    params = inspect.signature(load).parameters
    reserved = sorted({"name", "split", "seed"} & set(options))
    if reserved:
        raise ValueError(f"{reserved} in dataset spec {spec!r} are not source options: the split and the "
                         "seed are load_dataset's own arguments (--seed on the command line).")
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    known = [n for n, p in params.items() if n not in ("name", "split", "seed")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown} in dataset spec {spec!r}; '{scheme}:' takes "
                         + (", ".join(known) if known else "no options") + ".")


def load_source(spec: str, split: str, seed: int = 0) -> tuple[tf.data.Dataset, DatasetInfo]:
    """The unbatched `(image, label)` dataset of one split (slices applied), and its info.

    An empty split is refused: nothing could be trained, validated or tested on it."""
    scheme, name, options = parse_spec(spec)
    base, start, stop = parse_split(split)
    module = importlib.import_module(SCHEMES[scheme])
    _check_options(scheme, module.load, options, spec)
    if scheme == "tfds":  # TFDS slices natively.
        dataset, info = module.load(name, split, seed=seed, **options)
    else:
        dataset, info = module.load(name, base, seed=seed, **options)
        if start is not None or stop is not None:
            n = _size(dataset, info, base)
            i, j = slice_bounds(n, start, stop)
            if j <= i:
                raise ValueError(f"Split {split!r} selects none of the {n} examples of {base!r} in {spec!r}.")
            dataset = dataset.skip(i).take(j - i)
            info.splits = {**info.splits, split: j - i}
    if info.splits.get(base) == 0:
        raise ValueError(f"Split {base!r} of {spec!r} is empty; give it examples (see the source's options).")
    info.name = spec
    return dataset, info


def _size(dataset: tf.data.Dataset, info: DatasetInfo, split: str) -> int:
    """Examples in `split` (its recorded size, else the dataset's cardinality; < 0: unknown)."""
    n = info.splits.get(split)
    return int(dataset.cardinality()) if n is None else n


def check_disjoint(spec: str, split_a: str, split_b: str, seed: int = 0) -> None:
    """Refuses two parts of one split that share examples, such as a validation split
    `"test[:60%]"` and a test split `"test[40%:]"` (test data would choose the checkpoint).

    Example:

    >>> check_disjoint("builtin:rooks", "test[:50%]", "test[50%:]")  # Disjoint: no error.
    """
    (base, *slice_a), (other, *slice_b) = parse_split(split_a), parse_split(split_b)
    if base != other:
        return
    n = _size(*load_source(spec, base, seed), base)
    if n < 0:
        raise ValueError(f"Cannot tell whether {split_a!r} and {split_b!r} overlap: the size of {base!r} "
                         f"in {spec!r} is unknown. Use two different splits.")
    (i, j), (k, m) = slice_bounds(n, *slice_a), slice_bounds(n, *slice_b)
    if max(i, k) < min(j, m):
        raise ValueError(f"{split_a!r} and {split_b!r} share examples {max(i, k)} to {min(j, m) - 1} of the "
                         f"{n} of {base!r}: test data would choose the checkpoint. Use disjoint slices, "
                         f"e.g. '{base}[:50%]' and '{base}[50%:]'.")


def _convert_channels(image: tf.Tensor, channels: int | None) -> tf.Tensor:
    if channels is None or image.shape[-1] == channels:
        return image
    if channels == 1 and image.shape[-1] == 3:
        return tf.image.rgb_to_grayscale(image)
    if channels == 3 and image.shape[-1] == 1:
        return tf.image.grayscale_to_rgb(image)
    raise ValueError(f"Cannot convert {image.shape[-1]}-channel images to {channels} channels.")


def _shift(image: tf.Tensor, fraction: float, seed: tf.Tensor) -> tf.Tensor:
    """A random shift by up to `fraction` of each side: zero-pad, then crop back."""
    shape = tf.shape(image)
    # Halves round up (tf.round would round them to even).
    pad_h = tf.cast(tf.floor(tf.cast(shape[0], tf.float32) * fraction + 0.5), tf.int32)
    pad_w = tf.cast(tf.floor(tf.cast(shape[1], tf.float32) * fraction + 0.5), tf.int32)
    padded = tf.pad(image, [[pad_h, pad_h], [pad_w, pad_w], [0, 0]])
    return tf.image.stateless_random_crop(padded, shape, seed)


def make_preprocess(
    image_size: tuple[int, int] | None,
    channels: int | None,
    training: bool,
    augment: bool,
    flip_ok: bool,
    translate: float = 0.0,
    crop_scale: float = 1.14,
) -> Callable:
    """The per-example map: channels, size, and (training) augmentation.

    Training with `augment` follows the paper: resize to `crop_scale` times the
    target (256 for 224) and take a random crop of the target size; without an
    `image_size`, zero-pad by `(crop_scale - 1) / 2` of each side and crop back
    (a shift: the scale stays that of evaluation). Then flip horizontally where
    `flip_ok`, and optionally translate by up to `translate` of the size.
    Evaluation resizes deterministically. Images stay on the 0-255 scale.
    """
    if not crop_scale >= 1.0:
        raise ValueError(f"`crop_scale` must be >= 1 (the crop is taken from an image that large), "
                         f"got {crop_scale!r}.")

    def preprocess(image, label, seed=None):
        """`seed`: a `[2]` int64 tensor for the stateless random ops (training)."""
        image = _convert_channels(image, channels)
        image = tf.cast(image, tf.float32)
        random = training and augment
        if random:
            seeds = tf.random.experimental.stateless_split(seed, 3)
            if image_size is not None:  # The paper's crop: resize up, crop the target size.
                h, w = image_size
                image = tf.image.resize(image, (int(round(h * crop_scale)), int(round(w * crop_scale))))
                image = tf.image.stateless_random_crop(image, (h, w, tf.shape(image)[-1]), seeds[0])
            else:  # At the image's own size the crop is a shift, so evaluation sees the same scale.
                image = _shift(image, round((crop_scale - 1) / 2, 4), seeds[0])
            if flip_ok:
                image = tf.image.stateless_random_flip_left_right(image, seeds[1])
            if translate:
                image = _shift(image, translate, seeds[2])
        elif image_size is not None:
            image = tf.image.resize(image, image_size)
        return tf.clip_by_value(image, 0.0, 255.0), label

    return preprocess


def load_dataset(
    spec: str = DEFAULT_SPEC,
    split: str = "train",
    image_size: int | tuple[int, int] | None = None,
    batch_size: int = 32,
    augment: bool = False,
    shuffle: bool | None = None,
    seed: int = 0,
    cache: bool = True,
    channels: int | None = None,
    translate: float = 0.0,
    deterministic: bool = False,
    drop_remainder: bool = False,
    shuffle_buffer: int = 10_000,
    epochs: int | None = None,
    initial_epoch: int = 0,
) -> tuple[tf.data.Dataset, DatasetInfo]:
    """Loads a split of a dataset as a batched, prefetched `tf.data.Dataset`.

    Args:
        spec: `"builtin:NAME"`, `"tfds:NAME[/CONFIG]"`, `"folder:PATH"` or
            `"fashion_mnist[:DIR]"`, optionally followed by `?key=value&...`
            source options.
        split: `"train"`, `"validation"` or `"test"` (TFDS split strings,
            such as `"train[:90%]"`, work for `tfds:`).
        image_size: resize to this `(height, width)` (an int means square).
            Required when the source's images vary in size.
        batch_size: the global batch size. Under a distribution strategy pass
            per-replica batch x `strategy.num_replicas_in_sync`.
        augment: training augmentation: a random crop (of a 1.14x resize
            with `image_size`; without it, a shift of up to 7% of a side
            with zero padding), a flip where labels allow, translation.
        shuffle: defaults to `split == "train"` (any training split).
        seed: seeds shuffling, augmentation, splits and built-in data.
        cache: cache decoded images in memory (before augmentation).
        channels: convert to 1 (grayscale) or 3 (RGB) channels.
        translate: max random translation, as a fraction of the size.
        deterministic: a reproducible order (slower parallel decoding).
        drop_remainder: drop a last partial batch (static batch shapes).
        shuffle_buffer: shuffle buffer size.
        epochs: if set, the dataset holds passes `initial_epoch` to
            `epochs - 1` back to back, each shuffled and augmented from
            `(seed, epoch)` alone: a run resumed at an epoch sees exactly the
            batches an uninterrupted run saw (use with `steps_per_epoch`).
        initial_epoch: the first pass, with `epochs`.

    Returns:
        `(dataset, info)`: batches of `(float32 images 0-255 (B, H, W, C),
        int64 labels (B,))`, and a `DatasetInfo`.

    Example:

    >>> ds, info = load_dataset("builtin:shapes?train_size=64", "train", batch_size=16)
    >>> info.num_classes, info.class_names[0]
    (4, 'square')
    >>> images, labels = next(iter(ds))
    >>> tuple(images.shape), str(images.dtype)
    ((16, 32, 32, 3), "<dtype: 'float32'>")
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    if image_size is not None and (
            not isinstance(image_size, (tuple, list)) or len(image_size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in image_size)):
        raise ValueError(f"`image_size` must be a positive integer or (height, width) of them, got {image_size!r}.")
    if channels not in (None, 1, 3):
        raise ValueError(f"`channels` must be 1 (grayscale), 3 (RGB) or None (the dataset's), got {channels!r}.")
    dataset, info = load_source(spec, split, seed=seed)
    training = split.startswith("train")
    shuffle = training if shuffle is None else shuffle
    if image_size is None and None in tuple(info.image_shape[:2]):
        raise ValueError(
            f"Images in {spec!r} vary in size; pass image_size, e.g. image_size=224."
        )
    if cache:
        dataset = dataset.cache()
    preprocess = make_preprocess(
        image_size, channels, training, augment, info.flip_ok, translate=translate
    )
    random_augment = augment and training

    def one_pass(pass_seed, reshuffle: bool):
        ds = dataset
        if shuffle:
            ds = ds.shuffle(shuffle_buffer, seed=pass_seed, reshuffle_each_iteration=reshuffle)
        if random_augment:
            # Stateless augmentation, reproducible from the seed.
            seeds = tf.data.Dataset.random(seed=pass_seed, rerandomize_each_iteration=reshuffle)
            ds = tf.data.Dataset.zip(ds, seeds.batch(2)).map(lambda pair, s: (*pair, s))
        ds = ds.map(preprocess, num_parallel_calls=AUTOTUNE, deterministic=deterministic or None)
        return ds.batch(batch_size, drop_remainder=drop_remainder)

    if epochs is None:
        dataset = one_pass(seed, reshuffle=True)
    else:
        passes = [one_pass(seed * 100_003 + e, reshuffle=False) for e in range(initial_epoch, epochs)]
        if not passes:
            raise ValueError(f"initial_epoch={initial_epoch} leaves no passes before epochs={epochs}.")
        dataset = passes[0]
        for later in passes[1:]:
            dataset = dataset.concatenate(later)
    dataset = dataset.prefetch(AUTOTUNE)
    height, width = image_size if image_size else info.image_shape[:2]
    info.image_shape = (height, width, channels or info.image_shape[2])
    return dataset, info
