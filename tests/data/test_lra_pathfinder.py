import numpy as np
import pytest
from PIL import Image

from crnn_keras.data import load_dataset, lra_pathfinder
from tests.data.test_pathfinder import _logistic_regression_accuracy


def _chunk(n, seed, difficulty="easy"):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images, parts = lra_pathfinder._generate_chunk(rng, labels, 32, lra_pathfinder.DIFFICULTIES[difficulty])
    return images, labels, parts


def _scipy_era_circle(size, coordinate, radius=1.5, aa=2):
    """snakes2.draw_circle as LRA ran it: the 0/1 disc byte-scaled to 0/255, then Lanczos."""
    (r, c) = coordinate
    y, x = np.ogrid[-r * aa : (size - r) * aa, -c * aa : (size - c) * aa]
    disc = ((x**2 + y**2) <= (radius * aa) ** 2).astype(np.uint8) * 255
    return np.asarray(Image.fromarray(disc, "L").resize((size, size), Image.Resampling.LANCZOS))


@pytest.mark.parametrize("where", [(15, 15), (0, 0), (3, 30), (31, 12), (20, 1)])
def test_markers_are_the_original_round_markers_at_full_brightness(where):
    stamps = lra_pathfinder._marker_stamps(32)
    reference = _scipy_era_circle(32, where)
    mine = np.zeros((42, 42), np.uint8)
    mine[where[0] : where[0] + 11, where[1] : where[1] + 11] = stamps[where]
    np.testing.assert_array_equal(mine[5:-5, 5:-5], reference)
    assert reference.max() >= 250  # Not the 1/255 of the generator's current PIL call.
    if 2 <= min(where) and max(where) <= 29:
        assert 5 <= (reference >= 128).sum() <= 13  # A disc of radius 1.5 px.


def test_dashes_have_the_original_length_width_and_direction():
    tables = lra_pathfinder._tables()
    lines, masks = tables["lines"], tables["masks"]
    grid = np.arange(9) - 4
    for degrees in range(-180, 180, 15):
        line = lines[degrees + 180]
        lit = line > 0.15
        assert 2 <= lit.sum() <= 5 and line.max() <= 0.75  # A 2 px dash, antialiased (thickness 0.5 at 2x).
        weights = line / line.sum()
        centre = np.array([(weights.sum(1) * grid).sum(), (weights.sum(0) * grid).sum()])
        theta = np.deg2rad(degrees)
        along = centre @ [np.sin(theta), np.cos(theta)]
        assert 0.5 <= along <= 1.6, degrees  # From the tail toward `degrees`.
        assert (masks[degrees + 180][lit] >= 150).all()  # The occupancy mask covers the dash.
    assert tables["steps"].shape == (18, 2) and (np.abs(tables["steps"]) <= 3).all()


def test_markers_sit_on_the_target_tips_crossings_occur_and_labels_balance():
    images, labels, parts = _chunk(400, seed=4)
    rows = np.arange(len(images))
    for tip in (parts["origin"], parts["terminal"]):
        assert (images[rows, tip[0], tip[1]] >= 200).all()  # Markers as bright as the brightest paths.
        assert (parts["targets"][rows, tip[0], tip[1]] > 0).mean() > 0.9  # On a target path.
    crossing = ((parts["targets"] > 0.3) & (parts["distractors"] > 0.3)).any((1, 2))
    assert 0.05 < crossing.mean() < 0.9  # Paths cross, as in the original; not everywhere.
    same = (np.abs(parts["origin"] - parts["terminal"]).max(0) == 0)
    assert not same.any()
    a, la = lra_pathfinder.generate(64, seed=3, difficulty="intermediate")
    b, lb = lra_pathfinder.generate(64, seed=3, difficulty="intermediate")
    assert np.array_equal(a, b) and np.array_equal(la, lb) and la.sum() == 32
    assert a.shape == (64, 32, 32, 1) and a.dtype == np.uint8 and (a.max((1, 2, 3)) == 255).all()


def _statistics(images, parts):
    x = images[..., 0] if images.ndim == 4 else images
    ink = x > 64
    (r0, c0), (r1, c1) = parts["origin"], parts["terminal"]
    quads = [ink[:, :16, :16], ink[:, :16, 16:], ink[:, 16:, :16], ink[:, 16:, 16:]]
    return np.column_stack([ink.sum((1, 2)), x.mean((1, 2)), *[q.sum((1, 2)) for q in quads],
                            ink.any(2).sum(1), ink.any(1).sum(1), r0, c0, r1, c1, np.abs(r1 - r0),
                            np.abs(c1 - c0), np.hypot(r1 - r0, c1 - c0)]).astype(float)


def test_no_simple_image_statistic_gives_the_label_away():
    sets = []
    for n, seed in ((2000, 11), (1000, 12)):
        images, labels, parts = _chunk(n, seed)
        sets.append((_statistics(images, parts), labels))
    assert _logistic_regression_accuracy(*sets) < 0.56  # 3.8 sigma above chance with 1,000 test images.


def test_builtin_spec_and_bad_options():
    ds, info = load_dataset("builtin:lra_pathfinder?difficulty=hard&train_size=8", "train", batch_size=4)
    assert info.image_shape == (32, 32, 1) and info.class_names == ["disconnected", "connected"]
    assert sum(len(y) for _, y in ds) == 8
    with pytest.raises(ValueError, match="Unknown difficulty 'medium'.*easy, intermediate, hard"):
        load_dataset("builtin:lra_pathfinder?difficulty=medium&train_size=8", "train")
    with pytest.raises(ValueError, match="image_size=16 is too small"):
        lra_pathfinder.generate(4, image_size=16)


def test_contour_length_for_curricula():
    """Shorter paths (a curriculum's first stages) draw fewer target paddles; the distractors
    follow the original's rule; bad lengths are refused."""
    targets = {}
    for length in (2, 6):
        rng = np.random.default_rng(5)
        _, parts = lra_pathfinder._generate_chunk(rng, np.arange(200) % 2, 32, length)
        targets[length] = (parts["targets"] > 0.3).sum((1, 2)).mean()
    assert 2.0 < targets[6] / targets[2] < 4.5, targets  # 12 paddles against 4 (the tails overlap).
    easy = lra_pathfinder.generate(6, seed=3, difficulty="easy")
    np.testing.assert_array_equal(lra_pathfinder.generate(6, seed=3, contour_length=6)[0], easy[0])
    for bad in (0, 15, 2.0, True):
        with pytest.raises(ValueError, match="contour_length=.* must be an int from 1 to 14"):
            lra_pathfinder.generate(4, contour_length=bad)
