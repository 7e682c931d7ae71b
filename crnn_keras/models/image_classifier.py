"""`CRNNImageClassifier`: a `CRNNBackbone`, a pooling or flatten + FC head, logits."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras_hub.models import ImageClassifier, Task

from crnn_keras.models.crnn_backbone import CRNNBackbone, plain
from crnn_keras.models.losses import NOT_WHOLE, SparseCategoricalCrossentropy, check_label_shape
from crnn_keras.models.presets import check_base_kwargs, classproperty, hub_presets

POOLINGS = ("avg", "max", "flatten")
DEFAULT_LEARNING_RATE = 1e-3


def _check_num_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an integer >= 2, got {num_classes!r}.")
    return num_classes


@keras.saving.register_keras_serializable(package="crnn_keras")
class CRNNImageClassifier(ImageClassifier):
    """A C-RNN image classifier: `CRNNBackbone`, head, class logits.

    A keras-hub `ImageClassifier`: `from_preset`, `save_to_preset`, and a
    `compile()` whose defaults train on integer labels (Adam 1e-3, sparse
    categorical cross-entropy from logits, accuracy). Inputs are raw 0-255
    pixels; the outputs are logits unless `activation="softmax"`.

    Args:
        backbone: a `CRNNBackbone`.
        num_classes: number of classes (>= 2).
        preprocessor: `None` (the backbone scales pixels itself), or a
            keras-hub preprocessor applied in `fit`/`predict`/`evaluate`.
        pooling: `"avg"`, `"max"`, or `"flatten"` (the paper's head; needs a
            fixed image size).
        hidden_units: sizes of fully connected ReLU layers before the
            classifier (the paper: `[4096, 4096]`).
        dropout: dropout rate before each fully connected layer.
        pool_size, pool_strides: an optional max pooling before the head
            (the paper's pool5: 3 and 2).
        activation: `None` for logits, or `"softmax"`.
        head_dtype: dtype policy of the head; defaults to the backbone's.

    Example:

    >>> import numpy as np
    >>> model = CRNNImageClassifier.from_preset("crnn_tiny", num_classes=3,
    ...                                         image_shape=(16, 16, 1))
    >>> x = np.random.randint(0, 256, (8, 16, 16, 1)).astype("float32")
    >>> y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    >>> model.predict(x, verbose=0).shape
    (8, 3)
    >>> history = model.fit(x, y, epochs=1, verbose=0)  # integer labels
    """

    backbone_cls = CRNNBackbone
    preprocessor_cls = None

    def __init__(
        self,
        backbone: CRNNBackbone,
        num_classes: int,
        preprocessor: Any = None,
        pooling: str = "avg",
        hidden_units: list[int] | tuple[int, ...] = (),
        dropout: float = 0.0,
        pool_size: int | None = None,
        pool_strides: int | None = None,
        activation: str | None = None,
        head_dtype: Any = None,
        **kwargs,
    ):
        num_classes = _check_num_classes(num_classes)
        if pooling not in POOLINGS:
            raise ValueError(f"Unknown pooling {pooling!r}. Expected one of {POOLINGS}.")
        if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"`dropout` must be a float in [0, 1), got {dropout!r}.")
        if not isinstance(hidden_units, (list, tuple, type(None))):
            raise ValueError(f"`hidden_units` must be a list of positive ints, got {hidden_units!r}.")
        hidden_units = list(hidden_units or [])
        if not all(isinstance(u, int) and not isinstance(u, bool) and u > 0 for u in hidden_units):
            raise ValueError(f"`hidden_units` must be positive ints, got {hidden_units!r}.")
        for arg, value in (("pool_size", pool_size), ("pool_strides", pool_strides)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"`{arg}` must be a positive int or None, got {value!r}.")
        if pool_strides is not None and not pool_size:
            raise ValueError(f"`pool_strides={pool_strides!r}` applies to the pooling of `pool_size`; set "
                             "pool_size too, or remove it.")
        if activation not in (None, "softmax", "linear"):
            raise ValueError(f"`activation` must be None (logits) or 'softmax', got {activation!r}.")
        compile_now = kwargs.pop("compile", True)
        check_base_kwargs(type(self).__name__, kwargs)
        head_dtype = head_dtype or backbone.dtype_policy

        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        inputs = backbone.input
        x = backbone(inputs)
        if pool_size:
            x = keras.layers.MaxPooling2D(pool_size, strides=pool_strides, dtype=head_dtype,
                                          name="pool5")(x)
        if pooling == "flatten":
            if None in x.shape[1:]:
                raise ValueError(
                    "pooling='flatten' needs a fixed image size; pass image_shape with height "
                    f"and width, or use pooling='avg'. Feature map shape: {x.shape}."
                )
            x = keras.layers.Flatten(dtype=head_dtype, name="flatten")(x)
        else:
            pool = keras.layers.GlobalAveragePooling2D if pooling == "avg" else keras.layers.GlobalMaxPooling2D
            x = pool(dtype=head_dtype, name="pooler")(x)
        for i, units in enumerate(hidden_units, start=1):
            if dropout:
                x = keras.layers.Dropout(dropout, dtype=head_dtype, name=f"fc{i}_dropout")(x)
            x = keras.layers.Dense(units, activation="relu", dtype=head_dtype, name=f"fc{i}")(x)
        x = keras.layers.Dropout(dropout, dtype=head_dtype, name="output_dropout")(x)
        # The classifier computes in float32, also under mixed precision.
        outputs = keras.layers.Dense(num_classes, activation=activation, dtype="float32",
                                     name="predictions")(x)
        Task.__init__(self, inputs=inputs, outputs=outputs, compile=False, **kwargs)

        # === Config ===
        self.num_classes = num_classes
        self.pooling = pooling
        self.hidden_units = hidden_units
        self.dropout = float(dropout)
        self.pool_size = pool_size
        self.pool_strides = pool_strides
        self.activation = activation
        self.head_dtype = head_dtype
        if compile_now:
            self.compile()

    @property
    def outputs_logits(self) -> bool:
        return self.activation in (None, "linear")

    def get_config(self):
        config = Task.get_config(self)
        config.update(
            num_classes=self.num_classes,
            pooling=self.pooling,
            hidden_units=list(self.hidden_units),
            dropout=self.dropout,
            pool_size=self.pool_size,
            pool_strides=self.pool_strides,
            activation=self.activation,
            head_dtype=keras.dtype_policies.serialize(keras.dtype_policies.get(self.head_dtype)),
        )
        return config

    def compile(self, optimizer="auto", loss="auto", *, metrics="auto", label_smoothing=0.0,
                **kwargs):
        """Configures training, with defaults for integer labels.

        Args:
            optimizer: `"auto"` (Adam, learning rate 1e-3: these models train
                from scratch or fine-tune small presets), or any Keras optimizer.
            loss: `"auto"`: sparse categorical cross-entropy on integer labels,
                from logits unless `activation="softmax"`, with
                `label_smoothing`.
            metrics: `"auto"`: `accuracy` (sparse categorical).
            label_smoothing: for the `"auto"` loss; refused with another loss.
            **kwargs: `keras.Model.compile` arguments (`jit_compile`, ...).
        """
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(DEFAULT_LEARNING_RATE)
        if loss == "auto":
            loss = SparseCategoricalCrossentropy(from_logits=self.outputs_logits,
                                                 label_smoothing=label_smoothing)
        elif label_smoothing:
            raise ValueError("`label_smoothing` applies to the 'auto' loss only; set it on your loss.")
        if metrics == "auto":
            metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        Task.compile(self, optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def call(self, inputs, training=None, mask=None):
        # Keras 3.15's Conv2D returns its input unchanged for an empty batch, so the
        # next layer fails on its channels: an empty batch has empty logits.
        if inputs.shape[0] == 0:
            return keras.ops.zeros((0, self.num_classes), "float32")
        return super().call(inputs, training=training, mask=mask)

    # Without a preprocessor, Keras's own loops: they shuffle NumPy inputs each
    # epoch, where keras-hub's pipeline would batch them in a fixed order.
    def fit(self, x=None, y=None, *args, **kwargs):
        if y is not None and hasattr(y, "shape") and isinstance(self.loss, SparseCategoricalCrossentropy):
            labels = np.asarray(y)
            check_label_shape(labels.shape, (None, self.num_classes) if labels.ndim <= 1 else
                              (*labels.shape[:-1], self.num_classes))
            if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
                raise ValueError(f"{NOT_WHOLE}, e.g. {labels[labels != np.round(labels)][:3].tolist()}.")
        if self.preprocessor is None:
            if hasattr(x, "element_spec") and "shuffle" not in kwargs:  # A tf.data.Dataset (not a tensor).
                kwargs["shuffle"] = False  # Keras ignores it for a tf.data.Dataset, and warns.
            return keras.Model.fit(self, x, y, *args, **kwargs)
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, *args, **kwargs):
        if self.preprocessor is None:
            return keras.Model.evaluate(self, *args, **kwargs)
        return super().evaluate(*args, **kwargs)

    def predict(self, x, *args, **kwargs):
        if hasattr(x, "shape") and len(x.shape) and x.shape[0] == 0:  # Keras's loop fails on no batches.
            return np.zeros((0, self.num_classes), "float32")
        try:
            if self.preprocessor is None:
                return keras.Model.predict(self, x, *args, **kwargs)
            return super().predict(x, *args, **kwargs)
        except UnboundLocalError as err:  # Keras's loop over a dataset that yields no batch.
            if "batch_outputs" not in str(err):
                raise
            return np.zeros((0, self.num_classes), "float32")

    def save_task_weights(self, filepath):
        """The head's weights, without the optimizer state (keras-hub's includes it)."""
        skip = list(self.backbone._flatten_layers())
        if getattr(self, "optimizer", None) is not None:
            skip.append(self.optimizer)
        keras.saving.save_weights(self, filepath, objects_to_skip=skip)

    def compile_from_config(self, config):
        """Restores the compiled state of a saved `.keras` model."""
        config = keras.saving.deserialize_keras_object(config)
        Task.compile(self, **config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def predict_proba(self, x, **kwargs):
        """Class probabilities: `predict` followed by a softmax over logits."""
        out = self.predict(x, **kwargs)
        return keras.ops.convert_to_numpy(keras.ops.softmax(out)) if self.outputs_logits else out

    @classproperty
    def presets(cls) -> dict[str, dict]:
        """keras-hub's form: `{name: {"metadata": {..., "weights": bool}, "kaggle_handle": folder}}`."""
        return hub_presets()

    @classmethod
    def from_preset(cls, preset: str, load_weights: bool = True, **kwargs) -> "CRNNImageClassifier":
        """A classifier from a preset name, a preset folder, or a kaggle:// / hf:// handle.

        - Architecture presets (`crnn_small`, `crnn_paper`, ...): random
          weights; pass `num_classes`, and optionally `image_shape`, `cnn`,
          `sweep` and head options (`pooling`, `dropout`, ...).
        - Trained presets and saved folders: their weights. A different
          `num_classes` keeps the trained backbone and builds a new head,
          with a warning.

        `crnn_keras.models.list_presets()` shows which presets carry weights.

        Example:

        >>> model = CRNNImageClassifier.from_preset("crnn_small", num_classes=10)
        >>> model.output_shape
        (None, 10)
        """
        from crnn_keras.models.preset_loading import load_classifier

        return load_classifier(cls, preset, load_weights, **kwargs)

    def save_to_preset(self, preset_dir: str, max_shard_size: int | float | None = 10,
                       metadata: dict | None = None) -> None:
        """Writes a keras-hub preset folder atomically; `metadata` is merged into metadata.json."""
        import json
        import os

        from crnn_keras.models.preset_loading import atomic_preset_dir

        with atomic_preset_dir(preset_dir) as staging:
            Task.save_to_preset(self, staging, max_shard_size=max_shard_size)
            path = os.path.join(staging, "metadata.json")
            with open(path, encoding="utf-8") as f:
                merged = json.load(f)
            merged.update(metadata or {}, num_classes=self.num_classes,
                          parameter_count=int(self.count_params()))
            with open(path, "w", encoding="utf-8") as f:
                json.dump(merged, f, indent=2)


def cnn_baseline(classifier: CRNNImageClassifier, match_params: bool = True,
                 name: str = "cnn_baseline", depth: int = 1) -> CRNNImageClassifier:
    """The same CNN and head with no sweep, for ablations; freshly initialised.

    With `match_params`, `depth` 3x3 conv blocks (the second on residual) are
    added after the CNN, with as many filters as brings the parameter count
    closest to `classifier`'s. `depth=1` is the package's matched CNN; a
    larger `depth` gives a deeper control of the same size, whose receptive
    field grows by 2 map pixels per block.

    Example:

    >>> crnn = CRNNImageClassifier.from_preset("crnn_tiny", num_classes=10)
    >>> cnn = cnn_baseline(crnn)
    >>> abs(cnn.count_params() - crnn.count_params()) / crnn.count_params() < 0.02
    True
    >>> deep = cnn_baseline(crnn, depth=3)
    >>> deep.backbone.match_depth, abs(deep.count_params() - crnn.count_params()) < 0.02 * crnn.count_params()
    (3, True)
    """
    if not isinstance(classifier, CRNNImageClassifier):
        raise ValueError(f"`cnn_baseline` takes a CRNNImageClassifier, got {type(classifier).__name__}.")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"`depth` must be a positive int, got {depth!r}.")
    if depth > 1 and not match_params:
        raise ValueError(f"`depth={depth}` sizes its blocks to match the parameters; it needs match_params=True.")
    b = classifier.backbone
    head = {k: v for k, v in classifier.get_config().items()
            if k in ("num_classes", "pooling", "hidden_units", "dropout", "pool_size",
                     "pool_strides", "activation")}
    head["head_dtype"] = classifier.head_dtype
    sweep = {**plain(b.sweep), "blocks": 0}

    def build(filters):
        backbone = CRNNBackbone(b.image_shape, plain(b.cnn), sweep, match_filters=filters,
                                match_depth=depth if filters else 1, dtype=b.dtype_policy)
        return CRNNImageClassifier(backbone, name=name, compile=False, **head)

    if not match_params:
        model = build(None)
    else:
        target = classifier.count_params()
        # The count is linear in one block's filters (conv, BN and the head's fan-in; a flatten
        # head too, as the map size does not change), and quadratic with residual blocks (their
        # FxF convs). Fit it exactly (a third width only for the quadratic), then take the
        # integer width closest to the target.
        c1, c2 = build(1).count_params(), build(2).count_params()
        a = (build(3).count_params() - 2 * c2 + c1) / 2 if depth > 1 else 0
        lin = c2 - c1 - 3 * a

        def count(f):
            return c1 + a * (f * f - 1) + lin * (f - 1)

        if a:
            guess = (-lin + math.sqrt(max(lin * lin - 4 * a * (c1 - a - lin - target), 0.0))) / (2 * a)
        else:
            guess = 1 + (target - c1) / lin
        floor = math.floor(guess)
        # The closest width; ties go to the wider block (half rounds up).
        filters = min({max(1, floor), max(1, floor + 1)}, key=lambda f: (abs(count(f) - target), -f))
        if filters == 1 and count(1) - target > (c2 - c1) / 2:
            raise ValueError(
                f"The baseline with 1-filter blocks already has {c1} parameters, more "
                f"than the C-RNN's {target}; no conv block can match it."
            )
        model = build(filters)
    model.compile()
    return model
