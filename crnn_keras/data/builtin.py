"""Built-in procedurally generated datasets: no download, deterministic from a seed.

Tasks (32x32 RGB by default, labels balanced):

- `rooks` (default, 2 classes, chance 50%): four rooks, bright squares of
  random colours, on an 8x8 board of 4x4-pixel cells over a noisy background.
  The label says whether two rooks attack each other (share a row or a
  column). Attacking pairs are at least 4 cells (16 px) apart, beyond the
  receptive field of a small conv stack, and the rest of the board is a
  non-attacking placement. A row sweep tells each rook whether another one
  shares its row, so C-RNNs solve it; a local CNN with global pooling sees a
  bag of lone rooks either way.
- `relative_position` (4 classes, chance 25%): a filled square and a
  plus sign lie far apart on a noisy background, in random colours. The label
  says where the square is relative to the plus: `left`, `right`, `above`,
  `below`. The two shapes are at least `min_gap` pixels apart along that axis,
  farther than a small conv stack's receptive field. Row and column sweeps
  carry one shape's position to the other; but a CNN can learn absolute
  position from zero padding and compare the pooled positions of the two
  (distinct) shapes, so the CNN baseline also does well here on 32 px images
  (0.95 against 0.999 test accuracy with `crnn_tiny` after 8 epochs).
- `shapes` (4 classes, chance 25%): one shape (square, plus, ring, bar) at a
  random place. A purely local task, the control: CNNs and C-RNNs both solve it.
- `pathfinder` (2 classes, chance 50%, grayscale): contour integration. Two
  markers and several dashed paths; the label says whether one path joins the
  markers. Options `path_length` (dashes per path) and `distractors` set the
  difficulty; see `crnn_keras.data.pathfinder`.
- `lra_pathfinder` (2 classes, chance 50%, grayscale): Long Range Arena's
  Pathfinder, drawn by a re-implementation of the original `snakes2` generator:
  round markers, antialiased dashes, paths that touch and cross, short
  distractor snakes. Option `difficulty=easy|intermediate|hard` (contour length
  6, 9 or 14); see `crnn_keras.data.lra_pathfinder`.

Horizontal flips change `relative_position` labels, so its `DatasetInfo` says
`flip_ok=False` and the pipeline never flips it.
"""

from __future__ import annotations

import numpy as np

from crnn_keras.data import lra_pathfinder, pathfinder

SPLIT_SIZES = {"train": 8000, "validation": 1000, "test": 2000}
# `stream` keeps each task's random stream, and so its published bytes, fixed as tasks are added.
TASKS = {
    "rooks": {"class_names": ["safe", "attacking"], "chance": 0.5, "flip_ok": True, "stream": 1,
              "options": {"image_size": 32}, "splits": SPLIT_SIZES},
    "relative_position": {
        "class_names": ["left", "right", "above", "below"],
        "chance": 0.25,
        "flip_ok": False,
        "stream": 0,
        "options": {"image_size": 32, "min_gap": 14},
        "splits": SPLIT_SIZES,
    },
    "shapes": {"class_names": ["square", "plus", "ring", "bar"], "chance": 0.25, "flip_ok": True, "stream": 2,
               "options": {"image_size": 32}, "splits": SPLIT_SIZES},
    "pathfinder": {"class_names": ["disconnected", "connected"], "chance": 0.5, "flip_ok": True, "stream": 3,
                   "options": dict(pathfinder.DEFAULTS),
                   "splits": {"train": 50000, "validation": 5000, "test": 10000}},
    "lra_pathfinder": {"class_names": ["disconnected", "connected"], "chance": 0.5, "flip_ok": True, "stream": 4,
                       "options": dict(lra_pathfinder.DEFAULTS),
                       "splits": {"train": 50000, "validation": 5000, "test": 10000}},
}
DEFAULT_TASK = "rooks"
_SPLIT_SEED_OFFSET = {"train": 0, "validation": 1, "test": 2}
SHAPE_SIZE = 5
ROOK_GRID, ROOK_COUNT, ROOK_MIN_GAP = 8, 4, 4


def _stamp(kind: str) -> np.ndarray:
    """A SHAPE_SIZE x SHAPE_SIZE boolean mask."""
    s = SHAPE_SIZE
    mask = np.zeros((s, s), bool)
    mid = s // 2
    if kind == "square":
        mask[:] = True
    elif kind == "plus":
        mask[mid, :] = True
        mask[:, mid] = True
    elif kind == "ring":
        mask[[0, -1], :] = True
        mask[:, [0, -1]] = True
    elif kind == "bar":
        mask[mid - 1 : mid + 2, :] = True
    return mask


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.uniform(0, 60, size=(1, 1, 3))
    return np.clip(base + rng.normal(0, 12, size=(size, size, 3)), 0, 255)


def _colour(rng: np.random.Generator) -> np.ndarray:
    colour = rng.uniform(60, 255, size=3)
    colour[rng.integers(3)] = 255.0  # Always bright against the dark background.
    return colour


def _paint(image: np.ndarray, mask: np.ndarray, row: int, col: int, colour: np.ndarray) -> None:
    region = image[row : row + SHAPE_SIZE, col : col + SHAPE_SIZE]
    region[mask] = colour


def _relative_position(rng: np.random.Generator, label: int, size: int, min_gap: int):
    """Top-left corners of the square and the plus, for `label`."""
    hi = size - SHAPE_SIZE
    while True:
        a = rng.integers(0, hi + 1, size=2)  # (row, col) of the square
        b = rng.integers(0, hi + 1, size=2)  # of the plus
        d_row, d_col = a[0] - b[0], a[1] - b[1]
        axis_gap, other_gap = (d_col, d_row) if label < 2 else (d_row, d_col)
        sign_ok = axis_gap < 0 if label in (0, 2) else axis_gap > 0
        if sign_ok and abs(axis_gap) >= min_gap and abs(other_gap) <= abs(axis_gap) - 4:
            return a, b


def _rooks(rng: np.random.Generator, attacking: bool, grid: int, count: int, min_gap: int):
    """Cells (row, col) of `count` rooks on a `grid` x `grid` board.

    Safe: all rows and columns distinct. Attacking: exactly one pair shares a
    row or a column, at least `min_gap` cells apart; the rest are safe.
    """
    while True:
        rows = rng.permutation(grid)[:count]
        cols = rng.permutation(grid)[:count]
        cells = np.stack([rows, cols], 1)
        if not attacking:
            return cells
        axis = rng.integers(2)  # 0: share a row, 1: share a column.
        other = 1 - axis
        cells[1, axis] = cells[0, axis]
        # The freed line must stay empty of the others; the pair must be far apart.
        if abs(int(cells[1, other]) - int(cells[0, other])) >= min_gap:
            return cells


def generate(
    task: str = DEFAULT_TASK,
    split: str = "train",
    num_examples: int | None = None,
    seed: int = 0,
    **options: int | str,
) -> tuple[np.ndarray, np.ndarray]:
    """Images `(N, S, S, C)` uint8 and labels `(N,)` int64 for one split.

    `options` are the task's (`TASKS[task]["options"]` lists them and their
    defaults). The same `(task, split, seed, options)` always gives the same
    bytes; splits use different streams of the same seed, so they never share
    images.
    """
    if task not in TASKS:
        raise ValueError(f"Unknown builtin task {task!r}. Available: {', '.join(sorted(TASKS))}.")
    meta = TASKS[task]
    if split not in meta["splits"]:
        raise ValueError(f"Unknown split {split!r} for builtin:{task}. Expected one of {sorted(meta['splits'])}.")
    unknown = set(options) - set(meta["options"])
    if unknown:
        raise ValueError(f"Unknown options {sorted(unknown)} for builtin:{task}. "
                         f"It takes {sorted(meta['options'])}.")
    n = meta["splits"][split] if num_examples is None else int(num_examples)
    seeds = [seed, _SPLIT_SEED_OFFSET[split], meta["stream"]]
    values = {**meta["options"], **options}
    if task == "pathfinder":
        return pathfinder.generate(n, seed=seeds, **values)
    if task == "lra_pathfinder":
        return lra_pathfinder.generate(n, seed=seeds, **values)
    image_size, min_gap = values["image_size"], values.get("min_gap", 14)
    if image_size < 2 * SHAPE_SIZE + min_gap:
        raise ValueError(f"image_size={image_size} is too small; use at least {2 * SHAPE_SIZE + min_gap}.")
    rng = np.random.default_rng(seeds)
    num_classes = len(TASKS[task]["class_names"])
    labels = np.arange(n) % num_classes  # Balanced, then shuffled.
    rng.shuffle(labels)
    images = np.empty((n, image_size, image_size, 3), np.uint8)
    square, plus = _stamp("square"), _stamp("plus")
    cell = image_size // ROOK_GRID
    for i, label in enumerate(labels):
        image = _background(rng, image_size)
        if task == "rooks":
            for row, col in _rooks(rng, bool(label), ROOK_GRID, ROOK_COUNT, ROOK_MIN_GAP):
                image[row * cell : row * cell + cell - 1, col * cell : col * cell + cell - 1] = _colour(rng)
        elif task == "relative_position":
            a, b = _relative_position(rng, int(label), image_size, min_gap)
            _paint(image, square, a[0], a[1], _colour(rng))
            _paint(image, plus, b[0], b[1], _colour(rng))
        else:
            kind = TASKS["shapes"]["class_names"][label]
            row, col = rng.integers(0, image_size - SHAPE_SIZE + 1, size=2)
            _paint(image, _stamp(kind), row, col, _colour(rng))
        images[i] = np.round(image).astype(np.uint8)
    return images, labels.astype(np.int64)


def load(name: str, split: str, seed: int = 0, **options: str):
    """The `builtin:` scheme. Options: `train_size`, `validation_size`,
    `test_size`, and the task's own (`TASKS[task]["options"]`): integers, except
    `lra_pathfinder`'s `difficulty` (a word)."""
    import tensorflow as tf

    from crnn_keras.data.core import DatasetInfo

    task = name or DEFAULT_TASK
    if task not in TASKS:
        raise ValueError(f"Unknown builtin task {task!r}. Available: {', '.join(sorted(TASKS))}.")
    splits = TASKS[task]["splits"]
    known = {f"{s}_size" for s in splits} | set(TASKS[task]["options"])
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"Unknown options {sorted(unknown)} for builtin:{task}. Expected some of {sorted(known)}.")
    zero_ok = {"distractors"}
    words = {key for key, default in TASKS[task]["options"].items() if isinstance(default, str)}
    bad = {key: value for key, value in options.items() if key not in words
           and (not value.isdigit() or (int(value) < 1 and key not in zero_ok))}
    if bad:
        raise ValueError(f"builtin options must be whole numbers >= 1 (distractors >= 0), got {bad}.")
    values = {key: value if key in words else int(value) for key, value in options.items()}
    sizes = {s: values.pop(f"{s}_size", splits[s]) for s in splits}
    base_split = split.split("[")[0]
    images, labels = generate(task, base_split, sizes.get(base_split), seed=seed, **values)
    meta = TASKS[task]
    info = DatasetInfo(
        name=f"builtin:{task}",
        num_classes=len(meta["class_names"]),
        class_names=list(meta["class_names"]),
        image_shape=images.shape[1:],
        splits=sizes,
        flip_ok=meta["flip_ok"],
        description=f"Built-in {task} task (chance accuracy {meta['chance']:.0%}).",
    )
    return tf.data.Dataset.from_tensor_slices((images, labels)), info
