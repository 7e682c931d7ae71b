import numpy as np
import pytest
import keras
import keras_hub

from crnn_keras.layers import SpatialSweep2D
from crnn_keras.models import CRNNBackbone, CRNNImageClassifier, SparseCategoricalCrossentropy, cnn_baseline


def _images(n, shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n,) + tuple(shape)).astype("float32")


def _sweeps(model):
    return [layer for layer in model.backbone.layers if isinstance(layer, SpatialSweep2D)]


@pytest.mark.parametrize("preset", ["crnn_tiny", "crnn_small", "crnn_fashion_mnist"])
def test_presets_output_logits(preset):
    model = CRNNImageClassifier.from_preset(preset, num_classes=7)
    assert isinstance(model, keras_hub.models.ImageClassifier)
    logits = model.predict(_images(3, model.backbone.image_shape), verbose=0)
    assert logits.shape == (3, 7)
    assert not np.allclose(logits.sum(-1), 1.0)  # Logits, not probabilities.
    probs = model.predict_proba(_images(3, model.backbone.image_shape), verbose=0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_paper_head_is_pool5_flatten_and_two_fc_layers():
    model = CRNNImageClassifier.from_preset("crnn_paper", num_classes=397)
    assert model.input_shape == (None, 227, 227, 3) and model.output_shape == (None, 397)
    assert model.get_layer("pool5").pool_size == (3, 3)
    assert model.get_layer("fc1").units == 4096 and model.get_layer("fc2").units == 4096


def test_compile_defaults_train_on_integer_labels_and_lower_the_loss():
    # Is the top half brighter than the bottom half? The halves are far apart.
    rng = np.random.default_rng(0)
    levels = rng.uniform(30, 220, size=(128, 2, 1, 1, 1))
    x = np.concatenate([np.broadcast_to(levels[:, i], (128, 8, 16, 1)) for i in (0, 1)], axis=1)
    x = np.clip(x + rng.normal(0, 20, x.shape), 0, 255).astype("float32")
    y = (levels[:, 0, 0, 0, 0] > levels[:, 1, 0, 0, 0]).astype("int32")
    keras.utils.set_random_seed(0)
    model = CRNNImageClassifier.from_preset("crnn_tiny", num_classes=2, image_shape=(16, 16, 1))
    model.compile()  # No arguments, as in keras-hub.
    assert isinstance(model.loss, SparseCategoricalCrossentropy) and model.loss.from_logits
    history = model.fit(x, y, epochs=6, batch_size=16, verbose=0).history
    assert history["loss"][-1] < 0.7 * history["loss"][0], history["loss"]
    assert "accuracy" in history


def test_label_smoothing_loss_matches_keras_on_one_hot_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4)).astype("float32")
    labels = rng.integers(0, 4, 6)
    ours = SparseCategoricalCrossentropy(from_logits=True, label_smoothing=0.2)(labels, logits)
    ref = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2)(
        np.eye(4)[labels], logits)
    np.testing.assert_allclose(float(ours), float(ref), rtol=1e-5)
    probs = keras.ops.softmax(logits)
    plain = SparseCategoricalCrossentropy(from_logits=False)(labels, probs)
    ref = keras.losses.SparseCategoricalCrossentropy()(labels, probs)
    np.testing.assert_allclose(float(plain), float(ref), rtol=1e-5)


def test_get_config_round_trip_and_keras_file(tmp_path):
    model = CRNNImageClassifier.from_preset("crnn_tiny", num_classes=5, image_shape=(16, 16, 3),
                                            sweep={"order": "parallel"}, dropout=0.1, hidden_units=[8])
    config = model.get_config()
    assert config["num_classes"] == 5 and config["hidden_units"] == [8] and config["dropout"] == 0.1
    assert config["backbone"]["config"]["sweep"]["order"] == "parallel"
    x = _images(4, (16, 16, 3), seed=1)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is CRNNImageClassifier and loaded.compiled
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_new_head_on_a_backbone():
    model = CRNNImageClassifier.from_preset("crnn_tiny", num_classes=3, image_shape=(16, 16, 1))
    other = CRNNImageClassifier(model.backbone, num_classes=6, pooling="max")
    assert other.output_shape == (None, 6)
    assert other.backbone is model.backbone


@pytest.mark.parametrize("preset", ["crnn_tiny", "crnn_small", "crnn_fashion_mnist"])
def test_baseline_has_the_same_cnn_and_matched_parameters(preset):
    crnn = CRNNImageClassifier.from_preset(preset, num_classes=10)
    plain = cnn_baseline(crnn, match_params=False)
    matched = cnn_baseline(crnn)
    assert not _sweeps(plain) and not _sweeps(matched)
    convs = lambda m: [layer.name for layer in m.backbone.layers if isinstance(layer, keras.layers.Conv2D)]  # noqa: E731
    assert convs(plain) == convs(crnn)
    assert plain.count_params() < crnn.count_params()
    assert abs(matched.count_params() - crnn.count_params()) / crnn.count_params() < 0.01
    assert matched.backbone.get_layer("match_block_conv").filters > 0
    assert matched.backbone.sweep_blocks == 0



def test_a_deeper_baseline_stacks_residual_blocks_of_the_same_size():
    crnn = CRNNImageClassifier.from_preset("crnn_pathfinder", num_classes=2)
    deep = cnn_baseline(crnn, depth=3)
    b = deep.backbone
    assert b.match_depth == 3 and b.sweep_blocks == 0
    assert [layer.name for layer in b.layers if isinstance(layer, keras.layers.Add)] == [
        "match_block_2_add", "match_block_3_add"]
    assert abs(deep.count_params() - crnn.count_params()) / crnn.count_params() < 0.01
    # No other width is closer.
    width = b.match_filters
    counts = {f: CRNNBackbone(b.image_shape, b.cnn, b.sweep, match_filters=f, match_depth=3).count_params()
              for f in (width - 1, width, width + 1)}
    head = deep.count_params() - counts[width]
    assert min(counts, key=lambda f: abs(counts[f] + head - crnn.count_params())) == width
    clone = CRNNBackbone.from_config(b.get_config())
    assert clone.match_depth == 3 and clone.count_params() == b.count_params()
    with pytest.raises(ValueError, match="match_params"):
        cnn_baseline(crnn, match_params=False, depth=2)
    with pytest.raises(ValueError, match="depth"):
        cnn_baseline(crnn, depth=0)
    with pytest.raises(ValueError, match="needs `match_filters`"):
        CRNNBackbone(b.image_shape, b.cnn, b.sweep, match_depth=2)

@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(num_classes=1), "num_classes"),
        (dict(num_classes=3, pooling="median"), "Unknown pooling"),
        (dict(num_classes=3, hidden_units=[0]), "hidden_units"),
        (dict(num_classes=3, dropout=1.5), "dropout"),
        (dict(num_classes=3, activation="sigmoid"), "activation"),
        (dict(num_classes=3, pool_size="2"), "`pool_size` must be a positive int or None, got '2'"),
        (dict(num_classes=3, hidden_units="64"), "`hidden_units` must be a list of positive ints, got '64'"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    backbone = CRNNImageClassifier.from_preset("crnn_tiny", num_classes=3).backbone
    with pytest.raises(ValueError, match=message):
        CRNNImageClassifier(backbone, **kwargs)


def test_flatten_needs_a_fixed_size_and_label_smoothing_needs_the_auto_loss():
    with pytest.raises(ValueError, match="fixed image size"):
        CRNNImageClassifier.from_preset("crnn_tiny", num_classes=3, image_shape=(None, None, 3),
                                        pooling="flatten")
    model = CRNNImageClassifier.from_preset("crnn_tiny", num_classes=3)
    with pytest.raises(ValueError, match="label_smoothing"):
        model.compile(loss="sparse_categorical_crossentropy", label_smoothing=0.1)


def test_labels_outside_the_classes_are_refused_not_ignored():
    import tensorflow as tf

    logits = np.zeros((1, 3), "float32")
    for smoothing in (0.0, 0.1):
        loss = SparseCategoricalCrossentropy(from_logits=True, label_smoothing=smoothing)
        with pytest.raises(tf.errors.InvalidArgumentError, match="label value of 3"):
            loss(np.array([3]), logits)


def test_a_nested_softmax_means_probabilities_and_an_unknown_end_is_refused():
    from crnn_keras.models import outputs_logits

    inputs = keras.Input((4,))
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    assert not outputs_logits(keras.Model(inputs, inner(inputs)))
    ending = keras.layers.Lambda(keras.activations.softmax)(keras.layers.Dense(3)(inputs))
    with pytest.raises(ValueError, match="Lambda\\) has no activation"):
        outputs_logits(keras.Model(inputs, ending))


def test_fit_shuffles_tensors_but_not_datasets(monkeypatch):
    import tensorflow as tf

    seen = []
    monkeypatch.setattr(keras.Model, "fit", lambda self, x, y=None, *a, **kw: seen.append(kw.get("shuffle")))
    model = CRNNImageClassifier.from_preset("crnn_tiny", num_classes=2, image_shape=(8, 8, 3))
    x, y = np.zeros((4, 8, 8, 3), "float32"), np.zeros((4,), "int64")
    model.fit(tf.constant(x), tf.constant(y))
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(2))
    assert seen == [None, False]  # Keras's default (shuffle) for tensors.


def test_the_baseline_keeps_the_head_dtype():
    crnn = CRNNImageClassifier.from_preset("crnn_tiny", num_classes=2, image_shape=(8, 8, 3),
                                           dtype="mixed_bfloat16", head_dtype="float32")
    assert crnn.get_layer("pooler").dtype_policy.name == "float32"
    assert cnn_baseline(crnn).get_layer("pooler").dtype_policy.name == "float32"


def test_pool_strides_without_pool_size_is_refused():
    with pytest.raises(ValueError, match="pool_strides=2.*set pool_size too"):
        CRNNImageClassifier.from_preset("crnn_tiny", num_classes=2, image_shape=(8, 8, 3), pool_strides=2)


def test_a_final_softmax_layer_means_probabilities():
    from crnn_keras.models import outputs_logits, to_probabilities

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(3)(inputs)))
    assert not outputs_logits(model)
    probs = model.predict(np.ones((1, 4)), verbose=0)
    np.testing.assert_allclose(to_probabilities(model, probs), probs)


def test_labels_that_are_not_class_ids_are_refused_not_trained_as_class_0():
    import tensorflow as tf

    model = CRNNImageClassifier.from_preset("crnn_tiny", num_classes=3, image_shape=(8, 8, 3), sweep={"units": 4})
    x = _images(6, (8, 8, 3))
    with pytest.raises(ValueError, match=r"labels must be whole class ids.*e.g. \[0.5, 0.5, 0.5\]"):
        model.fit(x, np.full(6, 0.5), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"Labels of shape \(6, 3\) .* look one-hot.*labels.argmax\(-1\)"):
        model.fit(x, np.eye(3)[np.arange(6) % 3], epochs=1, verbose=0)
    # The loss itself refuses them, whatever feeds it (here a dataset, past the NumPy check).
    fractional = tf.data.Dataset.from_tensor_slices((x, np.array([0, 1, 2, 0, 1.5, 2]))).batch(6)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels must be whole class ids.*\[1.5\]"):
        model.fit(fractional, epochs=1, verbose=0)
    loss = SparseCategoricalCrossentropy()
    assert float(loss(np.array([2.0, 0.0]), np.zeros((2, 3), "float32"))) == pytest.approx(np.log(3))


def test_an_empty_batch_gives_empty_outputs():
    import tensorflow as tf

    model = CRNNImageClassifier.from_preset("crnn_tiny", num_classes=3, image_shape=(8, 8, 3), sweep={"units": 4})
    empty = np.zeros((0, 8, 8, 3), "float32")
    assert model.predict(empty, verbose=0).shape == (0, 3)
    assert tuple(model(empty).shape) == (0, 3)
    assert model.predict(tf.data.Dataset.from_tensor_slices(empty).batch(2), verbose=0).shape == (0, 3)
    with pytest.raises(ValueError, match="a map with no rows or columns, shape \\(2, 0, 4, 3\\)"):
        SpatialSweep2D(units=4)(np.zeros((2, 0, 4, 3), "float32"))
