"""Pathfinder: a contour-integration task (Linsley et al., NeurIPS 2018; Long Range Arena).

Each grayscale image shows two round markers and `2 + distractors` paths, each
made of `path_length` short dashes that turn by at most `max_turn` between
dashes. The label says whether one path joins the two markers (1) or the
markers sit on the ends of two different paths (0).

Both classes are drawn by the same process, so nothing but the connection
tells them apart:

- Path A grows from `a0` to `a1`; path B then grows from `b0`, a point at the
  same distance `|a1 - a0|` from `a0` in a random direction; then the
  distractors. Every path has the same number of dashes and pixels.
- Positive: markers at `a0` and `a1`. Negative: markers at `a0` and `b0`. The
  marker distance therefore has one distribution in both classes.
- Paths keep `CLEARANCE` pixels (Chebyshev) from each other, and every path end
  keeps a marker-sized zone clear, marked or not.

Generation is vectorised over images: 100,000 default images take about 35 s
on one core; longer paths and more distractors cost more, as more images are
drawn again. Once results are published against the defaults, keep them stable.

Example:

>>> images, labels = generate(8, seed=0)
>>> images.shape, images.dtype, labels.tolist()
((8, 32, 32, 1), dtype('uint8'), [0, 0, 1, 0, 1, 0, 1, 1])
"""

from __future__ import annotations

import math

import numpy as np

DEFAULTS = {"image_size": 32, "path_length": 6, "distractors": 2}
DASH, GAP = 2.0, 1.5  # Dash and gap lengths in pixels.
MAX_TURN = math.pi / 4  # Largest change of direction from one dash to the next.
CLEARANCE = 3  # Chebyshev distance between pixels of different paths (2 blank pixels).
MARKER_RADIUS = 1  # Markers are 3x3 blobs, wider than any dash.
_SAMPLES = int(math.ceil(DASH)) + 1  # Points drawn along each dash.
_TRIES = 20
_TURNS = 8
_CHUNK = 16384
_MIN_ATTEMPT = 64


def _dash(start, theta, leading_gap):
    """Pixels `(N, _SAMPLES, 2)` of dashes from `start` at angles `theta`, and their end points."""
    unit = np.stack([np.sin(theta), np.cos(theta)], -1)
    begin = start + leading_gap * unit
    points = begin[:, None] + np.linspace(0, DASH, _SAMPLES)[None, :, None] * unit[:, None]
    return np.rint(points).astype(np.int64), points[:, -1]


def _inside(pixels, margin, size):
    return ((pixels >= margin) & (pixels <= size - 1 - margin)).all((-1, -2))


def _hits(grid, rows, pixels):
    """Whether any of `pixels (M, P, 2)` is set in `grid[rows]`."""
    return grid[rows[:, None], pixels[..., 0], pixels[..., 1]].any(-1)


def _dilate(grid, radius):
    """Cells within Chebyshev `radius` of a set cell of `grid (N, S, S)`."""
    out = grid.copy()
    for axis in (1, 2):
        src = out.copy()
        for shift in range(1, radius + 1):
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[axis], hi[axis] = slice(None, -shift), slice(shift, None)
            out[tuple(lo)] |= src[tuple(hi)]
            out[tuple(hi)] |= src[tuple(lo)]
    return out


def _cells(pixels, size):
    """`(N, S, S)` grid with `pixels (N, P, 2)` set."""
    grid = np.zeros((len(pixels), size, size), bool)
    grid[np.arange(len(pixels))[:, None], pixels[..., 0], pixels[..., 1]] = True
    return grid


def _apart(a, b):
    """Smallest Chebyshev distance between `a (M, P, 2)` and `b (M, Q, 2)` (large if Q = 0)."""
    if not b.shape[1]:
        return np.full(len(a), 10**6)
    return np.abs(a[:, :, None] - b[:, None]).max(-1).min((1, 2))


_KEEP_CLEAR = CLEARANCE + MARKER_RADIUS  # Around path ends, where markers may go.


def _grow(rng, start_fn, near, wide, end_zone, size, path_length):
    """One path per image; `done` says where one fit. Paths that run into a wall
    or another path start again from a new start point, up to `_TRIES` times.

    `near`, `wide` and `end_zone` `(N, S, S)` flag the cells within
    `CLEARANCE - 1` and `_KEEP_CLEAR - 1` of drawn paths, and within
    `_KEEP_CLEAR - 1` of drawn path ends.
    """
    n = len(near)
    out = np.zeros((n, path_length * _SAMPLES, 2), np.int64)
    done = np.zeros(n, bool)
    for _ in range(_TRIES):
        rows = np.flatnonzero(~done)
        if not len(rows):
            break
        path, ok = _grow_once(rng, start_fn, rows, near, wide, end_zone, size, path_length)
        out[rows[ok]] = path[ok]
        done[rows[ok]] = True
    return out, done


def _grow_once(rng, start_fn, rows, near, wide, end_zone, size, path_length):
    """Paths for `rows`, grown dash by dash; each dash gets `_TURNS` random turns to find room."""
    m = len(rows)
    out = np.zeros((m, path_length, _SAMPLES, 2), np.int64)
    done = np.ones(m, bool)
    tip = np.zeros((m, 2))
    theta = np.zeros(m)
    for k in range(path_length):
        placed = np.zeros(m, bool)
        for _ in range(_TURNS):
            idx = np.flatnonzero(done & ~placed)
            if not len(idx):
                break
            if k == 0:
                start = start_fn(rows[idx])
                angle = rng.uniform(0, 2 * math.pi, size=len(idx))
            else:
                start = tip[idx]
                angle = theta[idx] + rng.uniform(-MAX_TURN, MAX_TURN, size=len(idx))
            cand, end = _dash(start, angle, GAP if k else 0.0)
            ok = _inside(cand, 1, size)
            cand = np.clip(cand, 0, size - 1)
            ok &= ~_hits(near, rows[idx], cand) & ~_hits(end_zone, rows[idx], cand)
            # Clear of its own dashes up to k - 2, and of its own start.
            ok &= _apart(cand, out[idx, : max(k - 1, 0)].reshape(len(idx), -1, 2)) >= CLEARANCE
            if k == 0:
                ok &= _inside(cand[:, :1], MARKER_RADIUS, size) & ~_hits(wide, rows[idx], cand[:, :1])
            if k >= 3:
                ok &= _apart(cand, out[idx, 0, :1]) >= _KEEP_CLEAR
            if k == path_length - 1:  # Room for a marker at the far end too.
                last = cand[:, -1:]
                ok &= _inside(last, MARKER_RADIUS, size) & ~_hits(wide, rows[idx], last)
                ok &= _apart(last, out[idx, : max(k - 2, 0)].reshape(len(idx), -1, 2)) >= _KEEP_CLEAR
            good = idx[ok]
            out[good, k] = cand[ok]
            tip[good], theta[good] = end[ok], angle[ok]
            placed[good] = True
        done &= placed
    return out.reshape(m, -1, 2), done


def _render(pixels, markers, size):
    n = len(pixels)
    images = np.zeros((n, size, size), np.uint8)
    rows = np.repeat(np.arange(n), pixels.shape[1])
    images[rows, pixels[..., 0].ravel(), pixels[..., 1].ravel()] = 255
    r = MARKER_RADIUS
    disc = [(dr, dc) for dr in range(-r, r + 1) for dc in range(-r, r + 1)]
    for dr, dc in disc:
        for m in range(markers.shape[1]):
            images[np.arange(n), markers[:, m, 0] + dr, markers[:, m, 1] + dc] = 255
    return images[..., None]


def _attempt(rng, labels, size, path_length, distractors):
    """Images for `labels`, and which of them were drawn in full."""
    n = len(labels)
    near, wide, end_zone = (np.zeros((n, size, size), bool) for _ in range(3))
    ok = np.ones(n, bool)
    paths = []

    def anywhere(rows):
        return rng.uniform(MARKER_RADIUS, size - 1 - MARKER_RADIUS, size=(len(rows), 2))

    def beside_a0(rows):  # |a1 - a0| away from a0, in a random direction.
        a = paths[0][rows]
        radius = np.linalg.norm(a[:, -1] - a[:, 0], axis=-1, keepdims=True)
        angle = rng.uniform(0, 2 * math.pi, size=len(rows))
        return a[:, 0] + radius * np.stack([np.sin(angle), np.cos(angle)], -1)

    for p in range(2 + distractors):
        path, grown = _grow(rng, beside_a0 if p == 1 else anywhere, near, wide, end_zone, size, path_length)
        ok &= grown
        paths.append(path)
        if p < 1 + distractors:
            drawn = np.concatenate(paths, 1)
            ink = _cells(drawn, size)
            near, wide = _dilate(ink, CLEARANCE - 1), _dilate(ink, _KEEP_CLEAR - 1)
            ends = np.concatenate([path[:, [0, -1]] for path in paths], 1)
            end_zone = _dilate(_cells(ends, size), _KEEP_CLEAR - 1)
    a, b = paths[0], paths[1]
    second = np.where(labels[:, None].astype(bool), a[:, -1], b[:, 0])
    markers = np.stack([a[:, 0], second], 1)
    return _render(np.concatenate(paths, 1), markers, size), ok


def generate(
    num_examples: int,
    seed: int | list[int] = 0,
    image_size: int = DEFAULTS["image_size"],
    path_length: int = DEFAULTS["path_length"],
    distractors: int = DEFAULTS["distractors"],
) -> tuple[np.ndarray, np.ndarray]:
    """Images `(N, S, S, 1)` uint8 and balanced labels `(N,)` int64, the same bytes for the same seed."""
    if path_length < 3:
        raise ValueError(f"path_length must be at least 3 dashes, got {path_length}.")
    if distractors < 0:
        raise ValueError(f"distractors must be >= 0, got {distractors}.")
    reach = path_length * (DASH + GAP)
    if image_size < 16 or image_size < reach / 3:
        raise ValueError(f"image_size={image_size} is too small for path_length={path_length}; "
                         f"use at least {max(16, math.ceil(reach / 3))}, or shorter paths.")
    rng = np.random.default_rng(seed)
    labels = np.arange(num_examples) % 2
    rng.shuffle(labels)
    images = np.zeros((num_examples, image_size, image_size, 1), np.uint8)
    for begin in range(0, num_examples, _CHUNK):  # Chunks bound the memory.
        todo = np.arange(begin, min(begin + _CHUNK, num_examples))
        while len(todo):
            # Draw at least _MIN_ATTEMPT images, so a setting that cannot fit is told apart from bad luck.
            reps = -(-_MIN_ATTEMPT // len(todo))
            drawn, ok = _attempt(rng, np.tile(labels[todo], reps), image_size, path_length, distractors)
            if not ok.any():
                raise ValueError(
                    f"Could not fit {2 + distractors} paths of {path_length} dashes into "
                    f"{image_size}x{image_size} images in {len(ok)} tries; use fewer distractors, shorter "
                    "paths or a larger image_size.")
            ok = ok.reshape(reps, len(todo))
            found = ok.any(0)
            first = ok.argmax(0)[found]
            images[todo[found]] = drawn.reshape(reps, len(todo), *drawn.shape[1:])[first, np.flatnonzero(found)]
            todo = todo[~found]
    return images, labels.astype(np.int64)
