import numpy as np
import pytest

from crnn_keras.data import load_dataset, pathfinder


def _components(image):
    """Labels of the lit pixels' groups, joining pixels up to Chebyshev distance 2 (a dash gap)."""
    lit = list(zip(*np.nonzero(image)))
    label = {p: i for i, p in enumerate(lit)}
    parent = list(range(len(lit)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for (r, c), i in label.items():
        for dr in range(-2, 3):
            for dc in range(-2, 3):
                j = label.get((r + dr, c + dc))
                if j is not None:
                    parent[find(i)] = find(j)
    return {p: find(i) for p, i in label.items()}


def _markers(image):
    """Centres of the 3x3 blobs; dashes are one pixel wide, so only markers have them."""
    x = image > 0
    full = np.ones_like(x[1:-1, 1:-1])
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            full &= x[1 + dr : x.shape[0] - 1 + dr, 1 + dc : x.shape[1] - 1 + dc]
    return [(r + 1, c + 1) for r, c in zip(*np.nonzero(full))]


@pytest.mark.parametrize("options", [{}, {"path_length": 9, "distractors": 1}, {"distractors": 0}])
def test_labels_say_whether_one_path_joins_the_markers(options):
    images, labels = pathfinder.generate(60, seed=5, **options)
    distractors = options.get("distractors", pathfinder.DEFAULTS["distractors"])
    for image, label in zip(images[..., 0], labels):
        groups = _components(image)
        assert len(set(groups.values())) == 2 + distractors  # Paths never touch each other.
        markers = _markers(image)
        assert len(markers) == 2
        assert int(groups[markers[0]] == groups[markers[1]]) == label


def _statistics(images):
    """Simple image statistics a shortcut could hide in: ink, marker distance and places, spread."""
    x = images[..., 0] > 0
    half = x.shape[1] // 2
    rows = []
    for image in images[..., 0]:
        (r0, c0), (r1, c1) = _markers(image)
        rows.append([r0, c0, r1, c1, abs(r1 - r0), abs(c1 - c0), np.hypot(r1 - r0, c1 - c0)])
    quads = [x[:, :half, :half], x[:, :half, half:], x[:, half:, :half], x[:, half:, half:]]
    return np.column_stack([x.sum((1, 2)), *[q.sum((1, 2)) for q in quads], x.any(2).sum(1),
                            x.any(1).sum(1), np.array(rows)]).astype(float)


def _logistic_regression_accuracy(train, test):
    (xa, ya), (xb, yb) = train, test
    mu, sd = xa.mean(0), xa.std(0) + 1e-9
    xa = np.column_stack([(xa - mu) / sd, np.ones(len(xa))])
    xb = np.column_stack([(xb - mu) / sd, np.ones(len(xb))])
    w = np.zeros(xa.shape[1])
    for _ in range(500):  # Newton steps would overshoot on separable data; plain gradient descent.
        w -= 0.5 * xa.T @ (1 / (1 + np.exp(-xa @ w)) - ya) / len(xa)
    return float(((xb @ w > 0) == yb).mean())


def _sets(generate):
    return [(_statistics(x), y) for x, y in (generate(2000, [1, 0]), generate(1000, [1, 1]))]


def test_no_simple_image_statistic_gives_the_label_away():
    accuracy = _logistic_regression_accuracy(*_sets(lambda n, seed: pathfinder.generate(n, seed=seed)))
    assert accuracy < 0.56  # Chance is 0.5; with 1,000 test images 0.56 is 3.8 sigma above it.


def test_the_statistics_check_catches_a_planted_shortcut():
    # Negatives with one more path: more ink. The check must see it.
    def leaky(n, seed):
        pos, _ = pathfinder.generate(n, seed=seed, distractors=0)
        neg, _ = pathfinder.generate(n, seed=seed + [9], distractors=1)
        labels = np.arange(n) % 2
        return np.where(labels[:, None, None, None] == 1, pos, neg), labels

    assert _logistic_regression_accuracy(*_sets(leaky)) > 0.75


def test_balanced_deterministic_and_grayscale():
    a, la = pathfinder.generate(100, seed=3)
    b, lb = pathfinder.generate(100, seed=3)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert a.shape == (100, 32, 32, 1) and a.dtype == np.uint8
    assert la.sum() == 50 and set(np.unique(a)) == {0, 255}
    big, _ = pathfinder.generate(4, seed=3, image_size=48, path_length=10, distractors=4)
    assert big.shape == (4, 48, 48, 1)


def test_builtin_pathfinder_spec_and_bad_options():
    ds, info = load_dataset("builtin:pathfinder?train_size=32&path_length=7&distractors=0", "train[:50%]",
                            batch_size=8)
    assert info.num_classes == 2 and info.class_names == ["disconnected", "connected"]
    assert info.image_shape == (32, 32, 1) and info.splits["train"] == 32
    assert sum(len(y) for _, y in ds) == 16
    with pytest.raises(ValueError, match="path_length must be at least 3"):
        pathfinder.generate(4, path_length=2)
    with pytest.raises(ValueError, match="image_size=16 is too small for path_length=20"):
        pathfinder.generate(4, image_size=16, path_length=20)
    with pytest.raises(ValueError, match="Could not fit 22 paths.*fewer distractors"):
        pathfinder.generate(4, distractors=20)
