"""Long Range Arena Pathfinder: the `snakes2` generator of Linsley et al. (NeurIPS 2018).

A re-implementation, vectorised over images, of the generator that Long Range Arena
(Tay et al., 2021) used for its Pathfinder task (`drewlinsley/pathfinder`, `snakes2.py`
and `snakes.py`), with LRA's published settings. Each grayscale image holds two target
"snakes" of `contour_length` paddles (short antialiased dashes) whose tails lie
`SEED_DISTANCE` pixels apart, distractor snakes, and two round markers: one on the tail of a
target snake, the other on the head of the same snake (label 1, "connected") or of the other
one (label 0). Paths may touch and cross, as in the original.

The process follows the original step by step:

- a paddle is drawn at twice the resolution (PIL line) and resized with Lanczos; its
  occupancy mask is the same line dilated by `2 * MARGIN` px;
- a snake's first paddle is placed uniformly among the free positions where its mask fits
  (the original's orientation-shaped dilation); each next paddle starts 4 px past the
  previous pivot and turns toward a point 3 px away, drawn with weights
  `cos(min(turn * continuity, pi/2))**2` times the free space there, with 3 tries to find one
  whose mask overlaps the others by less than 1.8 (the mask lags one paddle, so a snake may
  cross its own recent past and the first target's last paddle, as in the original);
- the first target's tail lies in the centre (14 px from every border at 32 px); the
  second's tail is 7 px from it in a random direction; a pair that cannot grow is drawn again;
- distractors (`20 // (contour_length // 3)` snakes of `contour_length // 3` paddles) are
  tried 5 times each and skipped if they do not fit;
- markers are discs of radius 1.5 drawn at twice the resolution, byte-scaled, then resized
  with Lanczos, so they are as bright as a full-contrast path (the `scipy.misc.imresize`
  behaviour that LRA's images were made with; the repository's current PIL call leaves
  them at 1/255 of that);
- the image is byte-scaled to 0..255 (`scipy.misc.imsave`).

Targets are drawn at contrast 1.5 (paddle 0.75 x snake 2), distractors at 2, markers at 1,
before the byte scaling. Labels are balanced (the original draws each at random).

Example:

>>> images, labels = generate(8, seed=0)
>>> images.shape, images.dtype, int(labels.sum())
((8, 32, 32, 1), dtype('uint8'), 4)
"""

from __future__ import annotations

import functools
import math

import numpy as np

DIFFICULTIES = {"easy": 6, "intermediate": 9, "hard": 14}  # Contour lengths of LRA's three sets.
DEFAULTS = {"image_size": 32, "difficulty": "easy"}
# LRA's Pathfinder settings for snakes2.
PADDING = 1
PADDLE_LENGTH = 2
THICKNESS = 0.5
AA_SCALE = 2
MARGIN = 1
MARKER_RADIUS = 1.5
SEED_DISTANCE = 7
CONTINUITY = 1.0
PADDLE_CONTRAST = 0.75
SNAKE_CONTRAST = 2.0
DISTRACTOR_PADDLES = 20  # Distractor snakes: 20 // length of `contour_length // 3` paddles.
SEGMENT_TRIALS = 3  # max_paddle_retrial=2: three tries per paddle.
DISTRACTOR_TRIALS = 5  # max_distractor_contour_retrial=4.
STOP_WITH_AVAILABILITY = 0.01  # A distractor needs 1% of the image free.
FREE = 76  # Mask levels (0..255) at most this are free: ceil(mask - 0.3) == 0.
_HALF = PADDLE_LENGTH + math.ceil(THICKNESS) + MARGIN  # A paddle stamp is (2 * _HALF + 1)^2.
_STEP = PADDLE_LENGTH + MARGIN  # From a pivot to the next paddle's head.
_PAD = 8  # Canvas padding: every stamp lands inside the padded canvas.
_MARK = 5  # Marker stamps span +-_MARK px.
_CHUNK = 4096
_PROPOSALS = 24  # Rejection-sampling rounds for a paddle's position before the exact search.
_MAX_ROUNDS = 1000  # Redraws of the target pair before giving up on a setting.
_MIN_LANES = 1024  # Tries of the target pair per round, at least.


def _translate(coord, orientation, dist):
    """`translate_coord`: the ceiling of `coord` moved `dist` along `orientation` (radians)."""
    return (np.ceil(coord[0] + float(dist) * np.sin(orientation)).astype(np.int64),
            np.ceil(coord[1] + float(dist) * np.cos(orientation)).astype(np.int64))


def _flip(orientation):
    return np.where(orientation < 0, orientation + np.pi, orientation - np.pi)


def _dilate(image, radius):
    """Grey dilation by a disc (out-of-image pixels ignored), like `cv2.dilate`."""
    padded = np.pad(image, radius)
    out = np.zeros_like(image)
    h, w = image.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= radius * radius:
                out = np.maximum(out, padded[radius + dy : radius + dy + h, radius + dx : radius + dx + w])
    return out


def _lanczos(image, size):
    """`scipy.misc.imresize(..., interp='lanczos')` of an image already in 0..255: uint8 out."""
    from PIL import Image

    small = Image.fromarray(np.asarray(image, np.uint8), "L").resize((size[1], size[0]), Image.Resampling.LANCZOS)
    return np.asarray(small, np.uint8)


def _paddle(orientation: float):
    """Line and mask stamps (uint8 levels, `(2 * _HALF + 1)^2`) of a paddle from the centre."""
    from PIL import Image, ImageDraw

    size, centre = 2 * _HALF * AA_SCALE + 1, _HALF * AA_SCALE
    head = _translate((centre, centre), orientation, PADDLE_LENGTH * AA_SCALE)
    blown = Image.new("F", (size, size), "black")
    ImageDraw.Draw(blown).line([(centre, centre), (int(head[1]), int(head[0]))], fill="white",
                               width=int(round(THICKNESS * AA_SCALE)))
    blown = np.asarray(blown)
    small = (2 * _HALF + 1,) * 2
    return _lanczos(blown, small), _lanczos(_dilate(blown, MARGIN * AA_SCALE), small)


@functools.lru_cache(maxsize=None)
def _tables():
    """Every stamp the generator places, computed once.

    Entries 0..359 are first paddles at integer degrees -180..179; the rest are later
    paddles, one per unique step toward a point `_STEP` px from the pivot.
    """
    seed_orientations = np.arange(-180, 180) * np.pi / 180
    # get_coords_cmf: one sample per pixel of arc, truncated to pixels, made unique.
    arc = np.arange(0, 360, 360.0 / (2 * _STEP * np.pi)) * np.pi / 180
    steps = np.stack([np.floor(_STEP * np.sin(arc)), np.floor(_STEP * np.cos(arc))], 1)
    steps = np.unique(steps.astype(np.int64), axis=0)
    step_orientations = np.arctan2(steps[:, 0], steps[:, 1])
    stamps = [_paddle(o) for o in seed_orientations] + [_paddle(o) for o in _flip(step_orientations)]
    lines = np.stack([s[0] for s in stamps])
    masks = np.stack([s[1] for s in stamps])
    # The first paddle's dilation kernel: the top-left 7x7 of its mask stamp, where it is 1.
    k = 2 * _STEP + 1
    kernels = masks[:360, :k, :k] == 255
    level = np.float64(np.arange(256, dtype=np.float32) / np.float32(255.0))
    fits = (level[:, None] + level[None, :]) < 1.8  # max(mask + m_im) < 1.8, in the original's floats.
    return {"lines": lines.astype(np.float32) / np.float32(255.0), "masks": masks, "kernels": kernels,
            "steps": steps, "step_orientations": step_orientations, "fits": fits}


@functools.lru_cache(maxsize=None)
def _seedable(size: int) -> np.ndarray:
    """Per degree, whether the original can place a first paddle at all.

    `cv2.dilate` gives `-DBL_MAX` where a kernel reaches only outside the image, and
    `find_available_coordinates` then reports no free cell anywhere ("mystery"), so the
    snake fails. That happens unless the kernel has cells in all four quadrants around its
    anchor, so first paddles mostly point up-left. LRA's images carry this quirk.
    """
    kernels = _tables()["kernels"]
    reach = kernels.shape[1] // 2
    padded = np.pad(np.zeros((size, size), np.int8), reach, constant_values=-1)
    out = np.zeros(len(kernels), bool)
    for d, kernel in enumerate(kernels):
        dilated = np.full((size, size), -2, np.int8)
        for i, j in zip(*np.nonzero(kernel)):
            dilated = np.maximum(dilated, padded[i : i + size, j : j + size])
        out[d] = dilated.min() >= 0
    return out


@functools.lru_cache(maxsize=None)
def _first_tails(size: int):
    """Free cells for the first target's tail, per degree: `(cells, counts)` over 360 kernels.

    The mask is then only the padding, and the tail keeps `2 * SEED_DISTANCE` px off every
    border, dilated by the paddle's shape.
    """
    lined = np.zeros((size, size), np.uint8)
    band = 2 * SEED_DISTANCE
    lined[:band], lined[size - band :], lined[:, :band], lined[:, size - band :] = 255, 255, 255, 255
    kernels = _tables()["kernels"]
    k = kernels.shape[1]
    reach = k // 2
    padded = np.pad(lined, reach)
    cells = []
    for kernel in kernels:
        blocked = np.zeros((size, size), bool)
        for i, j in zip(*np.nonzero(kernel)):
            blocked |= padded[i : i + size, j : j + size] > FREE
        cells.append(np.argwhere(~blocked))
    counts = np.where(_seedable(size), [len(c) for c in cells], 0)
    table = np.zeros((360, max(1, counts.max()), 2), np.int64)
    for d, c in enumerate(cells):
        table[d, : counts[d]] = c[: counts[d]]
    return table, counts


@functools.lru_cache(maxsize=None)
def _marker_stamps(size: int):
    """Marker stamps, uint8 `(size, size, 2 * _MARK + 1, 2 * _MARK + 1)`: one per position."""
    s = AA_SCALE
    big = np.arange(size * s)
    width = 2 * _MARK + 1
    out = np.zeros((size, size, width, width), np.uint8)
    interior = None
    for r in range(size):
        for c in range(size):
            inside = min(r, c, size - 1 - r, size - 1 - c) >= 2 * _MARK
            if inside and interior is not None:
                out[r, c] = interior
                continue
            disc = ((big[:, None] - r * s) ** 2 + (big[None, :] - c * s) ** 2) <= (MARKER_RADIUS * s) ** 2
            # scipy's bytescale maps the 0/1 disc to 0/255 before resizing.
            image = np.pad(_lanczos(disc.astype(np.uint8) * 255, (size, size)), _MARK)
            patch = image[r : r + width, c : c + width]
            if int(patch.sum()) != int(image.sum()):
                raise AssertionError("marker stamp wider than its patch")
            out[r, c] = patch
            if inside:
                interior = patch
    return out


class _Canvas:
    """Padded images (float, before byte scaling) and occupancy masks (uint8 levels) of a batch."""

    def __init__(self, n, size):
        self.size = size
        self.image = np.zeros((n, size + 2 * _PAD, size + 2 * _PAD), np.float32)
        self.mask = np.zeros((n, size + 2 * _PAD, size + 2 * _PAD), np.uint8)
        inner = self.mask[:, _PAD : _PAD + size, _PAD : _PAD + size]
        inner[:, :PADDING], inner[:, -PADDING:], inner[:, :, :PADDING], inner[:, :, -PADDING:] = 255, 255, 255, 255

    def take(self, idx):
        out = _Canvas.__new__(_Canvas)
        out.size, out.image, out.mask = self.size, self.image[idx], self.mask[idx]
        return out

    def put(self, idx, other, rows):
        self.image[idx] = other.image[rows]
        self.mask[idx] = other.mask[rows]


_W = 2 * _HALF + 1
_GRID = np.arange(_W) - _HALF


def _window(rows, cols):
    """Fancy indices of the stamp windows centred at `(rows, cols)` (image coordinates)."""
    r = rows[:, None, None] + _PAD + _GRID[None, :, None]
    c = cols[:, None, None] + _PAD + _GRID[None, None, :]
    return r, c


def _draw(canvas, idx, rows, cols, stamp, contrast):
    n = idx[:, None, None]
    r, c = _window(rows, cols)
    canvas.image[n, r, c] = np.maximum(canvas.image[n, r, c], _tables()["lines"][stamp] * np.float32(contrast))


def _add_mask(canvas, idx, segment):
    stamp, rows, cols = segment
    n = idx[:, None, None]
    r, c = _window(rows[idx], cols[idx])
    canvas.mask[n, r, c] = np.maximum(canvas.mask[n, r, c], _tables()["masks"][stamp[idx]])


def _fits(canvas, idx, rows, cols, stamp):
    r, c = _window(rows, cols)
    return _tables()["fits"][canvas.mask[idx[:, None, None], r, c], _tables()["masks"][stamp]].all((1, 2))


def _in_image(rows, cols, size):
    return (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)


def _free_for(canvas, idx, rows, cols, degrees):
    """Whether a first paddle at `degrees` may sit at `(rows, cols)`: seed_snake's dilation test."""
    kernels = _tables()["kernels"][degrees + 180]
    k = kernels.shape[1]
    off = np.arange(k) - k // 2
    qr = rows[:, None, None] + off[None, :, None]
    qc = cols[:, None, None] + off[None, None, :]
    size = canvas.size
    level = canvas.mask[idx[:, None, None], qr + _PAD, qc + _PAD]
    # The lined mask: the image's outermost rows and columns count as taken.
    edge = _in_image(qr, qc, size) & ((qr == 0) | (qr == size - 1) | (qc == 0) | (qc == size - 1))
    return ~((kernels & ((level > FREE) | edge)).any((1, 2)))


def _sample_free(rng, canvas, idx, degrees):
    """A uniform free position per image for a first paddle (`ok` False where there is none)."""
    size, n = canvas.size, len(idx)
    rows, cols = np.zeros(n, np.int64), np.zeros(n, np.int64)
    seedable = _seedable(size)[degrees + 180]
    todo = np.flatnonzero(seedable)
    for _ in range(_PROPOSALS):  # Uniform proposals, kept where free: uniform over the free cells.
        if not len(todo):
            break
        r, c = rng.integers(0, size, len(todo)), rng.integers(0, size, len(todo))
        good = _free_for(canvas, idx[todo], r, c, degrees[todo])
        rows[todo[good]], cols[todo[good]] = r[good], c[good]
        todo = todo[~good]
    ok = seedable.copy()
    all_r, all_c = np.divmod(np.arange(size * size), size)
    for t in todo:  # Rare: few free cells. Search them all.
        m = len(all_r)
        free = np.flatnonzero(_free_for(canvas, np.full(m, idx[t]), all_r, all_c, np.full(m, degrees[t])))
        if not len(free):
            ok[t] = False
            continue
        pick = free[rng.integers(len(free))]
        rows[t], cols[t] = all_r[pick], all_c[pick]
    return ok, rows, cols


def _place_first(rng, canvas, idx, tail_fn, seedable_first=False):
    """seed_snake's trials: orientation, tail, and a head and pivot inside the image.

    `seedable_first` draws the first trial's orientation among those that can be placed: the
    same outcome as the original's redrawing the whole pair when it draws another one.
    Returns `ok, degrees, tail_rows, tail_cols, pivot_rows, pivot_cols`.
    """
    size, n = canvas.size, len(idx)
    out = [np.zeros(n, np.int64) for _ in range(5)]
    ok, todo = np.zeros(n, bool), np.arange(n)
    allowed = np.flatnonzero(_seedable(size)) - 180
    for trial in range(SEGMENT_TRIALS):
        if not len(todo):
            break
        if trial == 0 and seedable_first:
            degrees = allowed[rng.integers(0, len(allowed), len(todo))]
        else:
            degrees = rng.integers(-180, 180, len(todo))
        found, tr, tc = tail_fn(todo, degrees)
        theta = degrees * np.pi / 180
        hr, hc = _translate((tr, tc), theta, PADDLE_LENGTH)
        pr, pc = _translate((hr, hc), _flip(theta), PADDLE_LENGTH + MARGIN)
        good = found & _in_image(hr, hc, size) & _in_image(pr, pc, size)
        for arr, val in zip(out, (degrees, tr, tc, pr, pc)):
            arr[todo[good]] = val[good]
        ok[todo[good]] = True
        todo = todo[~good & found]  # No free cell at all ends the snake at once, as in the original.
    return (ok, *out)


class _Snakes:
    """The growing state of one snake per image: pivot, orientation, last paddle, head."""

    def __init__(self, n):
        self.pivot = np.zeros((2, n), np.int64)
        self.orientation = np.zeros(n)
        self.stamp = np.zeros(n, np.int64)
        self.rows, self.cols = np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.tail = np.zeros((2, n), np.int64)

    def start(self, degrees, tail_rows, tail_cols, pivot_rows, pivot_cols):
        """The state after a first paddle at `degrees` from the tail."""
        self.pivot[:] = pivot_rows, pivot_cols
        self.orientation[:] = degrees * np.pi / 180
        self.stamp[:], self.rows[:], self.cols[:] = degrees + 180, tail_rows, tail_cols
        self.tail[:] = tail_rows, tail_cols

    @property
    def segment(self):
        return self.stamp, self.rows, self.cols


def _extend(rng, canvas, idx, snake, contrast):
    """extend_snake for the images `idx`; returns which succeeded (the others are unchanged)."""
    tables = _tables()
    steps, step_orientation = tables["steps"], tables["step_orientations"]
    size = canvas.size
    pr, pc = _translate(snake.pivot[:, idx], snake.orientation[idx], PADDLE_LENGTH + 2 * MARGIN)
    cr, cc = pr[:, None] + steps[None, :, 0], pc[:, None] + steps[None, :, 1]
    valid = _in_image(cr, cc, size)
    cr, cc = np.clip(cr, -1, size), np.clip(cc, -1, size)  # Reads stay in the padding; `valid` drops these.
    n = idx[:, None]
    # The mask dilated by the small disc (a plus), read at the candidate heads.
    level = canvas.mask[n, cr + _PAD, cc + _PAD]
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        level = np.maximum(level, canvas.mask[n, cr + dr + _PAD, cc + dc + _PAD])
    inverted = 1.0 - np.float64(level.astype(np.float32) / np.float32(255.0))
    turn = np.abs(step_orientation[None, :] - snake.orientation[idx, None])
    turn = np.minimum(np.minimum(turn, 2 * np.pi - turn) * CONTINUITY, 0.5 * np.pi)
    pmf = np.where(valid, inverted * np.maximum(np.cos(turn), 0) ** 2, 0.0)
    total = pmf.sum(1)
    alive = total >= 1e-4
    cmf = np.cumsum(pmf / np.where(alive, total, 1.0)[:, None], 1)
    chosen = np.full(len(idx), -1)
    todo = np.flatnonzero(alive)
    for _ in range(SEGMENT_TRIALS):
        if not len(todo):
            break
        pick = np.argmax(cmf[todo] - rng.random(len(todo))[:, None] > 0, 1)
        good = _fits(canvas, idx[todo], cr[todo, pick], cc[todo, pick], 360 + pick)
        chosen[todo[good]] = pick[good]
        todo = todo[~good]
    ok = chosen >= 0
    rows, sel = idx[ok], np.flatnonzero(ok)
    pick = chosen[ok]
    hr, hc = cr[sel, pick], cc[sel, pick]
    _draw(canvas, rows, hr, hc, 360 + pick, contrast)
    _add_mask(canvas, rows, snake.segment)  # The mask lags one paddle behind.
    snake.pivot[:, rows] = pr[sel], pc[sel]
    snake.orientation[rows] = step_orientation[pick]
    snake.stamp[rows], snake.rows[rows], snake.cols[rows] = 360 + pick, hr, hc
    return ok


def _two_snakes(rng, n, size, contour_length):
    """two_snakes for `n` images: `(ok, canvas, origin tips (2, 2, n), terminal tips (2, 2, n))`."""
    canvas = _Canvas(n, size)
    idx = np.arange(n)
    contrast = PADDLE_CONTRAST * SNAKE_CONTRAST
    table, counts = _first_tails(size)

    def first_tail(todo, degrees):
        found = counts[degrees + 180] > 0
        pick = (rng.random(len(todo)) * np.maximum(counts[degrees + 180], 1)).astype(np.int64)
        cell = table[degrees + 180, pick]
        return found, cell[:, 0], cell[:, 1]

    ok, d1, t1r, t1c, p1r, p1c = _place_first(rng, canvas, idx, first_tail, seedable_first=True)

    def second_tail(todo, degrees):
        angle = rng.integers(0, 360, len(todo)) * np.pi / 180
        rows = np.round(t1r[todo] + SEED_DISTANCE * np.sin(angle)).astype(np.int64)
        cols = np.round(t1c[todo] + SEED_DISTANCE * np.cos(angle)).astype(np.int64)
        return np.ones(len(todo), bool), rows, cols

    ok2, d2, t2r, t2c, p2r, p2c = _place_first(rng, canvas, idx, second_tail)
    ok &= ok2
    snakes = [_Snakes(n), _Snakes(n)]
    for snake, d, tr, tc, pr, pc in ((snakes[0], d1, t1r, t1c, p1r, p1c), (snakes[1], d2, t2r, t2c, p2r, p2c)):
        live = idx[ok]
        _draw(canvas, live, tr[live], tc[live], d[live] + 180, contrast)
        snake.start(d, tr, tc, pr, pc)
    for _ in range(contour_length - 1):
        for snake in snakes:
            live = idx[ok]
            ok[live] &= _extend(rng, canvas, live, snake, contrast)
    _add_mask(canvas, idx[ok], snakes[1].segment)  # Only the second snake's last paddle, as in the original.
    origin = np.stack([s.tail for s in snakes])
    terminal = np.stack([np.stack([s.rows, s.cols]) for s in snakes])
    return ok, canvas, origin, terminal


def _distractor(rng, canvas, idx, length):
    """make_snake for the images `idx` of `canvas`, in place where it succeeds; returns `ok`."""
    size = canvas.size
    trial = canvas.take(idx)
    local = np.arange(len(idx))
    inner = trial.mask[:, _PAD : _PAD + size, _PAD : _PAD + size]
    ok = (inner <= FREE).sum((1, 2)) / (size * size) >= STOP_WITH_AVAILABILITY

    def tail(todo, degrees):
        found, rows, cols = _sample_free(rng, trial, local[todo], degrees)
        return found, rows, cols

    placed, degrees, tr, tc, pr, pc = _place_first(rng, trial, local, tail)
    ok &= placed
    snake = _Snakes(len(idx))
    live = local[ok]
    _draw(trial, live, tr[live], tc[live], degrees[live] + 180, SNAKE_CONTRAST)
    snake.start(degrees, tr, tc, pr, pc)
    for _ in range(length - 1):
        live = local[ok]
        ok[live] &= _extend(rng, trial, live, snake, SNAKE_CONTRAST)
    _add_mask(trial, local[ok], snake.segment)
    canvas.put(idx[ok], trial, local[ok])
    return ok


def _generate_chunk(rng, labels, size, contour_length):
    """Byte-scaled images `(n, size, size)`, and what they are made of: the targets alone
    (float, before byte scaling), the distractors alone, and the marked tips `(2, n)` each."""
    n = len(labels)
    canvas = _Canvas(n, size)
    origin = np.zeros((2, 2, n), np.int64)
    terminal = np.zeros((2, 2, n), np.int64)
    todo = np.arange(n)
    for _ in range(_MAX_ROUNDS):
        if not len(todo):
            break
        # Several independent tries per image at once, the first success kept: fewer rounds.
        reps = -(-_MIN_LANES // len(todo))
        ok, drawn, o, t = _two_snakes(rng, reps * len(todo), size, contour_length)
        ok = ok.reshape(reps, len(todo))
        found = ok.any(0)
        lane = ok.argmax(0)[found] * len(todo) + np.flatnonzero(found)
        done = todo[found]
        canvas.put(done, drawn, lane)
        origin[..., done], terminal[..., done] = o[..., lane], t[..., lane]
        todo = todo[~found]
    if len(todo):
        raise ValueError(f"Could not draw two snakes of {contour_length} paddles in {size}x{size} images; "
                         "use a larger image_size or an easier difficulty.")
    targets = canvas.image[:, _PAD : _PAD + size, _PAD : _PAD + size].copy()
    length = max(1, contour_length // 3)
    for _ in range(DISTRACTOR_PADDLES // length):
        todo = np.arange(n)
        for _ in range(DISTRACTOR_TRIALS):  # A distractor that never fits is left out.
            if not len(todo):
                break
            todo = todo[~_distractor(rng, canvas, todo, length)]
    # Markers on one target's tail and on the head of the same target or of the other one.
    first = rng.integers(0, 2, n)
    second = np.where(labels == 1, first, 1 - first)
    rows = np.arange(n)
    image = canvas.image[:, _PAD : _PAD + size, _PAD : _PAD + size].astype(np.float64)
    stamps = _marker_stamps(size)
    markers = np.zeros((n, size + 2 * _MARK, size + 2 * _MARK), np.uint8)
    grid = np.arange(2 * _MARK + 1)
    marked = []
    for tips, which in ((origin, first), (terminal, second)):
        r, c = tips[which, 0, rows], tips[which, 1, rows]
        marked.append(np.stack([r, c]))
        rr, cc = r[:, None, None] + grid[None, :, None], c[:, None, None] + grid[None, None, :]
        markers[rows[:, None, None], rr, cc] = np.maximum(markers[rows[:, None, None], rr, cc], stamps[r, c])
    marks = markers[:, _MARK : _MARK + size, _MARK : _MARK + size].astype(np.float32) / np.float32(255.0)
    image = np.maximum(image, marks)
    # scipy.misc.imsave: byte-scale each image from its minimum to its maximum.
    low = image.min((1, 2), keepdims=True)
    span = image.max((1, 2), keepdims=True) - low
    scaled = (image - low) * (255.0 / np.where(span == 0, 1.0, span))
    distractors = np.where(canvas.image[:, _PAD : _PAD + size, _PAD : _PAD + size] > targets,
                           canvas.image[:, _PAD : _PAD + size, _PAD : _PAD + size], 0)
    return (np.clip(scaled, 0, 255) + 0.5).astype(np.uint8), {
        "targets": targets, "distractors": distractors, "origin": marked[0], "terminal": marked[1]}


def generate(
    num_examples: int,
    seed: int | list[int] = 0,
    image_size: int = DEFAULTS["image_size"],
    difficulty: str = DEFAULTS["difficulty"],
    contour_length: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Images `(N, S, S, 1)` uint8 and balanced labels `(N,)` int64, the same bytes for the same seed.

    `difficulty` is LRA's contour length: `easy` (6), `intermediate` (9) or `hard` (14).
    `contour_length` (1 to 14) replaces it, for curricula of shorter paths; distractors follow
    the original's rule (`20 // (L // 3)` snakes of `L // 3` paddles, at least 1).
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"Unknown difficulty {difficulty!r} for lra_pathfinder; use one of "
                         f"{', '.join(DIFFICULTIES)} (contour lengths {', '.join(map(str, DIFFICULTIES.values()))}).")
    if image_size < 32:
        raise ValueError(f"image_size={image_size} is too small for LRA Pathfinder; use 32 (LRA's Pathfinder-32), "
                         "64, 128 (Path-X) or any size >= 32.")
    if contour_length is None:
        contour_length = DIFFICULTIES[difficulty]
    elif (isinstance(contour_length, bool) or not isinstance(contour_length, (int, np.integer))
          or not 1 <= contour_length <= 14):
        raise ValueError(f"contour_length={contour_length!r} must be an int from 1 to 14 (LRA uses 6, 9, 14).")
    rng = np.random.default_rng(seed)
    labels = np.arange(num_examples) % 2
    rng.shuffle(labels)
    images = np.zeros((num_examples, image_size, image_size, 1), np.uint8)
    for begin in range(0, num_examples, _CHUNK):  # Chunks bound the memory.
        end = min(begin + _CHUNK, num_examples)
        images[begin:end, ..., 0] = _generate_chunk(rng, labels[begin:end], image_size, contour_length)[0]
    return images, labels.astype(np.int64)
