import numpy as np
import pytest
import tensorflow as tf

from crnn_keras.data import load_dataset, parse_spec
from crnn_keras.data.core import make_preprocess


def test_parse_spec():
    assert parse_spec("tfds:sun397/standard-part1-120k?data_dir=/d") == (
        "tfds", "sun397/standard-part1-120k", {"data_dir": "/d"}
    )
    assert parse_spec("fashion_mnist") == ("fashion_mnist", "", {})
    assert parse_spec("fashion_mnist?validation_size=0") == ("fashion_mnist", "", {"validation_size": "0"})


@pytest.mark.parametrize("spec", ["imagenet:foo", "", "cifar10", "s3://bucket"])
def test_unknown_scheme_is_a_clear_error(spec):
    with pytest.raises(ValueError, match="scheme|non-empty"):
        load_dataset(spec)


def test_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        load_dataset("builtin:shapes?train_size=8", batch_size=0)


def test_channel_conversion_and_resize():
    ds, info = load_dataset("builtin:shapes?test_size=4", "test", image_size=20, channels=1, batch_size=4)
    images, _ = next(iter(ds))
    assert images.shape == (4, 20, 20, 1) and info.image_shape == (20, 20, 1)


def test_deterministic_order_when_asked():
    kwargs = dict(batch_size=8, seed=5, deterministic=True, augment=True)
    a = [b[1].numpy() for b in load_dataset("builtin:shapes?train_size=32", **kwargs)[0]]
    b = [b[1].numpy() for b in load_dataset("builtin:shapes?train_size=32", **kwargs)[0]]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_augmentation_crops_flips_and_translates():
    image = tf.reshape(tf.range(16 * 16 * 3, dtype=tf.float32) % 256, (16, 16, 3))
    train = make_preprocess((16, 16), None, training=True, augment=True, flip_ok=True, translate=0.25)
    evaluate = make_preprocess((16, 16), None, training=False, augment=True, flip_ok=True)
    seeds = [tf.constant([i, 7], tf.int64) for i in range(8)]
    outs = {train(image, 0, s)[0].numpy().tobytes() for s in seeds}
    assert len(outs) > 1  # Random across seeds,
    assert np.array_equal(train(image, 0, seeds[0])[0], train(image, 0, seeds[0])[0])  # not within.
    a, b = evaluate(image, 0)[0].numpy(), evaluate(image, 0)[0].numpy()
    assert np.array_equal(a, b)  # Deterministic.
    no_flip = make_preprocess(None, None, training=True, augment=True, flip_ok=False, crop_scale=1.0)
    assert all(np.array_equal(no_flip(image, 0, s)[0].numpy(), image.numpy()) for s in seeds)


@pytest.mark.parametrize("shape", [(16, 16, 1), (None, None, 1)])
def test_augmentation_crops_at_the_images_own_size_when_no_size_is_given(shape):
    # Fashion-MNIST trains at its own 28x28: `augment` must still crop, not only flip.
    image = tf.reshape(tf.range(16 * 16, dtype=tf.float32), (16, 16, 1))
    train = tf.function(make_preprocess(None, None, training=True, augment=True, flip_ok=True),
                        input_signature=[tf.TensorSpec(shape), tf.TensorSpec((), tf.int32),
                                         tf.TensorSpec((2,), tf.int64)])
    outs = [train(image, 0, tf.constant([i, 3], tf.int64))[0].numpy() for i in range(8)]
    assert all(o.shape == (16, 16, 1) for o in outs)
    same_or_mirror = [np.allclose(o, image) or np.allclose(o, image[:, ::-1]) for o in outs]
    assert not all(same_or_mirror)


@pytest.mark.parametrize("split,count", [("train[:10%]", 80), ("train[1000:]", 7000), ("train[:90%]", 720),
                                         ("train[90%:]", 80), ("test[-100:]", 100)])
def test_builtin_slices_are_honoured(split, count):
    ds, info = load_dataset("builtin:rooks?train_size=800", split, batch_size=1000, shuffle=False) \
        if "1000" not in split else load_dataset("builtin:rooks", split, batch_size=1000, shuffle=False)
    assert sum(int(x.shape[0]) for x, _ in ds) == count == info.splits[split]


@pytest.mark.parametrize("split,message", [("train[::2]", "Bad split"), ("train[200%:]", "within -100%..100%"),
                                           ("train[5:5]", "selects none")])
def test_bad_slices_are_refused(split, message):
    with pytest.raises(ValueError, match=message):
        load_dataset("builtin:rooks?train_size=64", split, batch_size=8)


def test_one_default_dataset():
    from crnn_keras.data import DEFAULT_SPEC
    from crnn_keras.data.builtin import DEFAULT_TASK
    from crnn_keras.training import TrainConfig

    assert DEFAULT_SPEC == TrainConfig().dataset == f"builtin:{DEFAULT_TASK}"


def _shifted(image, dy, dx):
    out = np.zeros_like(image)
    h, w = image.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = image[max(-dy, 0):h - max(dy, 0),
                                                                       max(-dx, 0):w - max(dx, 0)]
    return out


def test_the_own_size_crop_is_a_shift_of_up_to_two_pixels_at_28():
    image = np.arange(1, 28 * 28 + 1, dtype=np.float32).reshape(28, 28) % 200 + 1
    train = make_preprocess(None, None, training=True, augment=True, flip_ok=False)
    shifts = set()
    for i in range(40):
        out = train(tf.constant(image[..., None]), 0, tf.constant([i, 1], tf.int64))[0].numpy()[..., 0]
        found = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)
                 if np.array_equal(out, _shifted(image, dy, dx))]
        assert len(found) == 1, "not a pure shift: the scale changed"
        shifts.add(found[0])
    assert max(max(abs(dy), abs(dx)) for dy, dx in shifts) == 2


def test_shifts_round_halves_up_and_a_crop_scale_below_one_is_refused():
    image = tf.ones((10, 10, 1))
    train = make_preprocess(None, None, training=True, augment=True, flip_ok=False, translate=0.25,
                            crop_scale=1.0)
    # 2.5 px rounds up to 3: some shift moves the image's edge 3 px in.
    outs = [train(image, 0, tf.constant([i, 2], tf.int64))[0].numpy()[..., 0] for i in range(60)]
    assert max(int((o.sum(axis=0) == 0).sum()) for o in outs) == 3
    with pytest.raises(ValueError, match="crop_scale"):
        make_preprocess(None, None, training=True, augment=True, flip_ok=False, crop_scale=0.9)


@pytest.mark.parametrize("kwargs, message", [
    (dict(channels=2), "`channels` must be 1 .*got 2"),
    (dict(image_size=0), "`image_size` must be a positive integer.*got \\(0, 0\\)"),
    (dict(image_size=(8, -1)), "`image_size` must be"),
    (dict(image_size=7.5), "`image_size` must be"),
])
def test_bad_channels_and_image_sizes_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_dataset("builtin:shapes?train_size=8", **kwargs)


@pytest.mark.parametrize("spec, message", [
    ("builtin:shapes?seed=3", r"\['seed'\] in dataset spec .* not source options"),
    ("tfds:mnist?download=maybe", "download='maybe' must be true or false"),
    ("tfds:mnist?datadir=/x", r"Unknown option\(s\) \['datadir'\].*takes data_dir, manual_dir, download"),
])
def test_unknown_or_mistyped_source_options_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        load_dataset(spec)
