"""`CRNNBackbone`: pixels -> CNN feature map -> recurrent sweeps."""

from __future__ import annotations

from typing import Any

import keras
from keras_hub.models import Backbone

from crnn_keras.layers import SpatialSweep2D, SweepBlock2D
from crnn_keras.models.backbones import apply_backbone, conv_block
from crnn_keras.models.presets import check_base_kwargs, classproperty, hub_presets

SWEEP_KEYS = ("units", "cell", "bidirectional", "merge_mode", "order", "parallel_merge",
              "dropout", "recurrent_dropout", "use_cudnn", "unroll", "jit_compile", "blocks", "residual", "mlp_ratio",
              "passes")


def plain(value: Any) -> Any:
    """A copy as plain dicts, lists and tuples.

    Keras wraps a layer's dict and list attributes in tracked containers that
    reference the layer itself: deep-copying those copies the whole model.
    """
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _check_sweep(sweep: Any) -> dict:
    if not isinstance(sweep, dict):
        raise ValueError(f"`sweep` must be a dict of SpatialSweep2D options, got {sweep!r}.")
    unknown = sorted(set(sweep) - set(SWEEP_KEYS))
    if unknown:
        raise ValueError(f"Unknown sweep options {unknown}. Expected {', '.join(SWEEP_KEYS)}.")
    blocks = sweep.get("blocks", 1)
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 0:
        raise ValueError(
            f"sweep `blocks` must be an integer >= 0 (0 gives the CNN baseline), got {blocks!r}."
        )
    if not isinstance(sweep.get("residual", False), bool):
        raise ValueError(f"sweep `residual` must be True or False, got {sweep['residual']!r}.")
    if "mlp_ratio" in sweep and not sweep.get("residual", False):
        raise ValueError("sweep `mlp_ratio` is the channel MLP of residual sweep blocks; "
                         "add 'residual': True, or drop it.")
    passes = sweep.get("passes", 1)
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ValueError(f"sweep `passes` must be an integer >= 1, got {passes!r}.")
    if passes > 1 and not sweep.get("residual", False):
        raise ValueError("sweep `passes` repeats each residual sweep block with its weights shared; "
                         "add 'residual': True, or drop it.")
    if blocks and "units" not in sweep:
        raise ValueError("`sweep` needs `units` (the hidden size of each direction), "
                         "e.g. sweep={'units': 64}; or blocks=0 for the CNN baseline.")
    return dict(sweep)


@keras.saving.register_keras_serializable(package="crnn_keras")
class CRNNBackbone(Backbone):
    """The C-RNN feature extractor: a CNN, then `blocks` recurrent sweeps.

    Raw 0-255 pixels go in (pixel scaling is the first layer); the swept
    feature map `(batch, h, w, channels)` comes out. Each sweep block is a
    `SpatialSweep2D` (bidirectional row and column sweeps), so every output
    position sees the whole map. `sweep={"blocks": 0}` gives the CNN-only
    baseline with the same class, for ablations; `match_filters` then adds
    3x3 conv blocks (the parameter-matched baseline's, see `cnn_baseline`):
    `match_depth` of them, the second on residual.

    Args:
        image_shape: `(height, width, channels)`; height and width may be
            `None`.
        cnn: the CNN: `{"type": "conv", "filters": [32, 64],
            "convs_per_stage": 2}` (VGG-style stages), `{"type": "alexnet"}`
            (the paper's conv1-conv5) or `{"type": "application", "name":
            "ResNet50"}` (any of `crnn_keras.models.APPLICATIONS`, weights
            `None` unless `"weights"` is given). `"sync_batch_norm": True`
            makes the conv stages' batch norm use the global batch.
        sweep: `SpatialSweep2D` arguments (`units`, `cell`, `order`,
            `merge_mode`, ...) plus `blocks`, the number of stacked sweeps
            (default 1; 0 for no sweep). `"residual": True` makes each block
            a `SweepBlock2D` (Sequencer2D style: norm, sweep, 1x1 fusion and
            a residual add, then a residual channel MLP of `mlp_ratio`,
            default 2), with a final layer norm; its `order` defaults to
            `"parallel"`. `"passes": N` applies each residual block N times
            with shared weights, so information can turn N times as often
            for no extra parameters (iterating like hGRU).
        match_filters: filters of the extra 3x3 conv blocks after the CNN,
            or `None` for none.
        match_depth: how many such blocks; each after the first adds its
            input back (a residual block).
        dtype: the dtype policy of every layer, e.g. `"mixed_bfloat16"`;
            defaults to Keras's global policy.

    Example:

    >>> backbone = CRNNBackbone(
    ...     image_shape=(32, 32, 3),
    ...     cnn={"type": "conv", "filters": [8, 16], "convs_per_stage": 1},
    ...     sweep={"units": 8},
    ... )
    >>> backbone.output_shape
    (None, 8, 8, 16)
    >>> CRNNBackbone.from_config(backbone.get_config()).count_params() == backbone.count_params()
    True
    """

    def __init__(
        self,
        image_shape: tuple = (None, None, 3),
        cnn: dict | None = None,
        sweep: dict | None = None,
        match_filters: int | None = None,
        match_depth: int = 1,
        dtype: Any = None,
        **kwargs,
    ):
        check_base_kwargs(type(self).__name__, kwargs)
        image_shape = tuple(image_shape)
        if len(image_shape) != 3 or image_shape[-1] is None or not all(
                d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 1) for d in image_shape):
            raise ValueError(f"`image_shape` must be (height, width, channels) of positive ints (height and "
                             f"width may be None), with known channels, got {image_shape}.")
        cnn = plain(cnn) if cnn is not None else {"type": "conv"}
        if not isinstance(cnn, dict):
            raise ValueError(f"`cnn` must be a dict such as {{'type': 'conv'}}, got {cnn!r}.")
        sweep = _check_sweep(plain(sweep) if sweep is not None else {"units": 64})
        if match_filters is not None and (
            isinstance(match_filters, bool) or not isinstance(match_filters, int) or match_filters < 1
        ):
            raise ValueError(f"`match_filters` must be a positive int or None, got {match_filters!r}.")
        if isinstance(match_depth, bool) or not isinstance(match_depth, int) or match_depth < 1:
            raise ValueError(f"`match_depth` must be a positive int, got {match_depth!r}.")
        if match_depth > 1 and not match_filters:
            raise ValueError(f"`match_depth={match_depth}` needs `match_filters` (the blocks' width).")

        # === Layers and functional model, under the requested dtype policy ===
        previous = keras.config.dtype_policy()
        if dtype is not None:
            keras.config.set_dtype_policy(dtype)
        try:
            inputs = keras.Input(image_shape, name="images")
            try:
                x = apply_backbone(inputs, cnn)
            except ValueError as err:  # Keras's pooling or a valid conv on a map that shrank to nothing.
                if "zero or negative" not in str(err) and "negative" not in str(err):
                    raise
                x = None
            if x is None or 0 in x.shape[1:3]:
                raise ValueError(f"image_shape={image_shape} is too small for cnn={cnn}: its convolutions and "
                                 "pooling shrink the map to nothing; use larger images (e.g. image_size=32).")
            sync_batch_norm = bool(cnn.get("sync_batch_norm", False))
            for i in range(1, match_depth + 1 if match_filters else 1):
                name = "match_block" if i == 1 else f"match_block_{i}"
                y = conv_block(x, match_filters, name=name, sync_batch_norm=sync_batch_norm)
                x = y if i == 1 else keras.layers.Add(name=f"{name}_add")([x, y])
            sweep_args = {k: v for k, v in sweep.items() if k not in ("blocks", "residual", "passes")}
            blocks = sweep.get("blocks", 1)
            residual = sweep.get("residual", False)
            for i in range(1, blocks + 1):
                if residual:
                    block = SweepBlock2D(name=f"sweep_block_{i}", **sweep_args)
                    for _ in range(sweep.get("passes", 1)):  # Iterated, weights shared (as in hGRU).
                        x = block(x)
                else:
                    x = SpatialSweep2D(name=f"spatial_sweep_{i}", **sweep_args)(x)
            if residual and blocks:
                x = keras.layers.LayerNormalization(epsilon=1e-6, name="sweep_output_norm")(x)
        finally:
            keras.config.set_dtype_policy(previous)
        super().__init__(inputs=inputs, outputs=x, dtype=dtype, **kwargs)

        # === Config ===
        self.image_shape = image_shape
        self.cnn = cnn
        self.sweep = sweep
        self.match_filters = match_filters
        self.match_depth = match_depth

    @property
    def sweep_blocks(self) -> int:
        return self.sweep.get("blocks", 1)

    def get_config(self):
        config = super().get_config()
        config.update(
            image_shape=self.image_shape,
            cnn=plain(self.cnn),
            sweep=plain(self.sweep),
            match_filters=self.match_filters,
            match_depth=self.match_depth,
        )
        return config

    @classproperty
    def presets(cls) -> dict[str, dict]:
        """keras-hub's form: `{name: {"metadata": {..., "weights": bool}, "kaggle_handle": folder}}`."""
        return hub_presets()

    @classmethod
    def from_preset(cls, preset: str, load_weights: bool = True, **kwargs) -> "CRNNBackbone":
        """A backbone from a preset name, a preset folder, or a kaggle:// or hf:// handle.

        Architecture presets (no weights) take `image_shape`, `cnn` and
        `sweep` overrides; trained presets load their weights.

        Example:

        >>> CRNNBackbone.from_preset("crnn_tiny", image_shape=(None, None, 1)).output_shape
        (None, None, None, 64)
        """
        from crnn_keras.models.preset_loading import load_backbone

        return load_backbone(cls, preset, load_weights, **kwargs)

    def save_to_preset(self, preset_dir: str, max_shard_size: int | float | None = 10) -> None:
        """Writes a keras-hub preset folder, atomically (a temporary folder renamed into place)."""
        from crnn_keras.models.preset_loading import atomic_preset_dir

        with atomic_preset_dir(preset_dir) as staging:
            super().save_to_preset(staging, max_shard_size=max_shard_size)
