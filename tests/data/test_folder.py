import os

import numpy as np
import pytest
from PIL import Image

from crnn_keras.data import load_dataset
from crnn_keras.data.folder import CorruptImageWarning

CLASSES = ["bedroom", "kitchen", "office"]


def _save(path, fmt, size=(20, 16), seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    array = np.random.default_rng(seed).integers(0, 256, size=size[::-1] + (3,)).astype(np.uint8)
    Image.fromarray(array).save(path, format=fmt)


@pytest.fixture
def indoor(tmp_path):
    """A tiny MIT-67-style tree: Images/<class>/..., split files, junk files."""
    root = tmp_path / "indoor"
    formats = [("jpg", "JPEG"), ("png", "PNG"), ("bmp", "BMP"), ("gif", "GIF")]
    train, test = [], []
    for c, name in enumerate(CLASSES):
        for i in range(6):
            ext, fmt = formats[i % 4]
            rel = f"{name}/img{i}.{ext}"
            _save(str(root / "Images" / rel), fmt, size=(20 + i, 16 + c), seed=10 * c + i)
            (test if i >= 4 else train).append(rel)
    (root / "Images" / "kitchen" / "notes.txt").write_text("not an image")
    (root / "Images" / "office" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    train.append("office/broken.jpg")
    (root / "TrainImages.txt").write_text("\n".join(train) + "\n")
    (root / "TestImages.txt").write_text("\n".join(test) + "\n")
    return root


def test_mit67_layout_with_split_files(indoor):
    with pytest.warns(CorruptImageWarning, match="broken.jpg"):
        ds, info = load_dataset(f"folder:{indoor}?validation_fraction=0.25", "train",
                                image_size=12, batch_size=64)
    assert info.class_names == CLASSES and info.num_classes == 3
    assert info.skipped_files == ["office/broken.jpg"]
    images, labels = next(iter(ds))
    assert images.shape == (9, 12, 12, 3) and info.splits["train"] == 9  # 4 listed a class, 1 to validation.
    assert sorted(np.bincount(labels.numpy())) == [3, 3, 3]
    test_ds, test_info = load_dataset(f"folder:{indoor}", "test", image_size=12, batch_size=64)
    assert test_info.splits["test"] == 6
    assert len(next(iter(test_ds))[1]) == 6
    val, _ = load_dataset(f"folder:{indoor}?validation_fraction=0.25", "validation",
                          image_size=12, batch_size=64)
    assert len(next(iter(val))[1]) == 3


def test_seeded_stratified_split_without_split_files(indoor):
    os.remove(indoor / "TrainImages.txt")
    os.remove(indoor / "TestImages.txt")
    spec = f"folder:{indoor / 'Images'}?validation_fraction=0.34&test_fraction=0.17"
    with pytest.warns(CorruptImageWarning) as record:
        infos = [load_dataset(spec, split, image_size=8, seed=1)[1] for split in ("train", "validation", "test")]
    assert sum("broken.jpg" in str(w.message) for w in record) == 1
    # 6 images a class (7 listed in office, 1 broken) -> 3 (4) train, 2 validation, 1 test.
    # Sizes count the images that decode: 5 of the 6 validation files (broken.jpg fell there).
    assert [info.splits[s] for info, s in zip(infos, ("train", "validation", "test"))] == [10, 5, 3]
    assert infos[0].sources["validation"] == "stratified 34% of every class, seed 1"
    a = next(iter(load_dataset(spec, "validation", image_size=8, seed=1, batch_size=64)[0]))[1]
    b = next(iter(load_dataset(spec, "validation", image_size=8, seed=1, batch_size=64)[0]))[1]
    assert np.array_equal(np.sort(a.numpy()), np.sort(b.numpy()))
    other_seed = load_dataset(spec, "validation", image_size=8, seed=2)[1]
    assert other_seed.splits["validation"] in (5, 6)  # 6 files, broken.jpg among them or not.


def test_decoded_pixels_match_the_files(indoor):
    # Variable-size images need image_size; read one PNG through the pipeline at its own size.
    png = indoor / "Images" / "bedroom" / "img5.png"
    single = indoor.parent / "single"
    os.makedirs(single / "only")
    os.link(png, single / "only" / "a.png")
    _save(str(single / "other" / "b.png"), "PNG", size=(21, 16))
    ds, _ = load_dataset(f"folder:{single}?validation_fraction=0&test_fraction=0", "train",
                         image_size=(16, 25), batch_size=4, shuffle=False)
    images, labels = next(iter(ds))
    expected = np.asarray(Image.open(png).convert("RGB"), np.float32)
    np.testing.assert_allclose(images.numpy()[list(labels.numpy()).index(0)], expected)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "cls" / "readme.txt").write_text("x")
    (tmp_path / "one" / "cats").mkdir(parents=True)
    _save(str(tmp_path / "one" / "cats" / "a.png"), "PNG")
    with pytest.raises(ValueError, match="Only one class \\(cats\\) found"):
        load_dataset(f"folder:{tmp_path / 'one'}")
    with pytest.raises(ValueError, match="No classes found"):
        load_dataset(f"folder:{tmp_path / 'empty'}", image_size=8)
    _save(str(tmp_path / "sized" / "a" / "x.png"), "PNG")
    _save(str(tmp_path / "sized" / "b" / "y.png"), "PNG", size=(24, 16))
    with pytest.raises(ValueError, match="vary in size; pass image_size"):
        load_dataset(f"folder:{tmp_path / 'sized'}?validation_fraction=0&test_fraction=0")


def test_slices_are_honoured(indoor):
    full, info = load_dataset(f"folder:{indoor}", "train", batch_size=64, shuffle=False, image_size=16)
    half, half_info = load_dataset(f"folder:{indoor}", "train[:50%]", batch_size=64, shuffle=False, image_size=16)
    rest, _ = load_dataset(f"folder:{indoor}", "train[50%:]", batch_size=64, shuffle=False, image_size=16)
    n = info.splits["train"]
    labels = lambda ds: np.concatenate([y.numpy() for _, y in ds])  # noqa: E731
    assert len(labels(half)) == half_info.splits["train[:50%]"] == round(n / 2)
    np.testing.assert_array_equal(np.concatenate([labels(half), labels(rest)]), labels(full))
    # A slice is a share of every class, not the first classes (the files are grouped by class).
    per_class = np.bincount(labels(full), minlength=info.num_classes)
    assert per_class.min() >= 2
    assert np.abs(np.bincount(labels(half), minlength=info.num_classes) - per_class / 2).max() <= 1


def test_split_file_options_that_cannot_apply_are_refused(indoor):
    with pytest.raises(ValueError, match="test_fraction=0.2 does not apply.*TestImages.txt"):
        load_dataset(f"folder:{indoor}?test_fraction=0.2", "test", image_size=8)
    os.remove(indoor / "TestImages.txt")
    with pytest.raises(ValueError, match="has TrainImages.txt but not TestImages.txt"):
        load_dataset(f"folder:{indoor}", "train", image_size=8)


def test_test_files_listed_for_training_are_refused(indoor):
    with open(indoor / "TrainImages.txt", "a") as f:
        f.write("kitchen/img4.jpg\noffice/img5.png\n")  # Both in TestImages.txt.
    with pytest.raises(ValueError, match=r"share 2 file\(s\), e.g. \['kitchen/img4.jpg', 'office/img5.png'\]"):
        load_dataset(f"folder:{indoor}", "train", image_size=8)


@pytest.mark.parametrize("options, message", [
    ("validation_fraction=-0.2", "validation_fraction='-0.2' must be a fraction of every class in \\[0, 1\\)"),
    ("validation_fraction=1", "validation_fraction='1' must be"),
    ("test_fraction=1.4", "test_fraction='1.4' must be"),
    ("test_fraction=nan", "test_fraction='nan' must be"),
    ("validation_fraction=ten", "validation_fraction='ten' must be"),
    ("validation_fraction=0.5&test_fraction=0.5", "leave no training images.*sum must be below 1"),
    ("fraction=0.1", r"Unknown option\(s\) \['fraction'\].*takes validation_fraction, test_fraction, images_dir"),
    ("images_dir=Pictures", "images_dir='Pictures'.*is not a folder"),
])
def test_impossible_or_unknown_options_are_refused(indoor, options, message):
    os.remove(indoor / "TrainImages.txt")
    os.remove(indoor / "TestImages.txt")
    with pytest.raises(ValueError, match=message):
        load_dataset(f"folder:{indoor / 'Images'}?{options}", "train", image_size=8)


def test_a_folder_of_one_image_size_needs_no_image_size(tmp_path):
    for c in ("a", "b"):
        for i in range(3):
            _save(str(tmp_path / c / f"{i}.png"), "PNG", size=(12, 10), seed=i)
    spec = f"folder:{tmp_path}?validation_fraction=0&test_fraction=0"
    ds, info = load_dataset(spec, "train", batch_size=8)
    assert info.image_shape == (10, 12, 3)
    assert next(iter(ds))[0].shape == (6, 10, 12, 3)
