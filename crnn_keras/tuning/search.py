"""Running a Keras Tuner search over a dataset: tuner directory, results table,
best config, optional export. Distributed tuning uses Keras Tuner's own
`KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT`."""

from __future__ import annotations

import os
from typing import Any

import keras_tuner
import tensorflow as tf

from crnn_keras.data import load_dataset
from crnn_keras.training.config import TrainConfig
from crnn_keras.tuning.hypermodel import CRNNHyperModel

TUNERS = {
    "random": keras_tuner.RandomSearch,
    "hyperband": keras_tuner.Hyperband,
    "bayesian": keras_tuner.BayesianOptimization,
}


def make_tuner(name: str, hypermodel: CRNNHyperModel, directory: str, max_trials: int, max_epochs: int,
               seed: int = 0, distribution_strategy: tf.distribute.Strategy | None = None,
               overwrite: bool = False) -> keras_tuner.Tuner:
    if name not in TUNERS:
        raise ValueError(f"Unknown tuner {name!r}. Expected one of {sorted(TUNERS)}.")
    kwargs = dict(objective="val_accuracy", directory=directory, project_name="crnn", seed=seed,
                  overwrite=overwrite, distribution_strategy=distribution_strategy)
    if name == "hyperband":
        return keras_tuner.Hyperband(hypermodel, max_epochs=max_epochs, factor=3,
                                     hyperband_iterations=1, **kwargs)
    return TUNERS[name](hypermodel, max_trials=max_trials, **kwargs)


def results_table(tuner: keras_tuner.Tuner) -> str:
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)
    lines = [f"{'trial':>6} {'status':>10} {'score':>8}  hyperparameters"]
    for t in trials:
        score = "-" if t.score is None else f"{t.score:.4f}"
        values = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in t.hyperparameters.values.items() if not k.startswith("tuner/"))
        lines.append(f"{t.trial_id:>6} {t.status:>10} {score:>8}  {values}")
    return "\n".join(lines)


def run_search(config: TrainConfig, tuner: str = "random", max_trials: int = 10,
               fixed: dict[str, Any] | None = None, ranges: dict[str, Any] | None = None,
               distribution_strategy: tf.distribute.Strategy | None = None,
               export_name: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Searches on `config.dataset` for `config.epochs` epochs a trial.

    Writes `output_dir/tuner/`, `output_dir/best.yaml` (a training config that
    reproduces the best trial) and, with `export_name`, exports the best model
    to `savedmodels/<export_name>/`. Returns the trial counts and best score.
    Raises if every trial failed (Keras Tuner only logs failures).
    """
    config.validate()
    common = dict(image_size=config.image_size, channels=config.channels, seed=config.seed)
    train, info = load_dataset(config.dataset, "train", batch_size=config.batch_size,
                               augment=config.augment, **common)
    val, _ = load_dataset(config.dataset, config.validation_split, batch_size=config.batch_size, **common)
    hypermodel = CRNNHyperModel(info.num_classes, info.image_shape, base_config=config,
                                fixed=fixed, ranges=ranges)
    directory = os.path.join(config.output_dir, "tuner")
    search = make_tuner(tuner, hypermodel, directory, max_trials, config.epochs, config.seed,
                        distribution_strategy, overwrite)
    search.search(train, validation_data=val, epochs=config.epochs,
                  verbose=config.verbose)
    if os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief":
        return {"worker": os.environ["KERASTUNER_TUNER_ID"]}
    trials = list(search.oracle.trials.values())
    completed = [t for t in trials if t.status == "COMPLETED" and t.score is not None]
    failed = [t for t in trials if t.status in ("FAILED", "INVALID")]
    print(results_table(search))
    if not completed:
        raise RuntimeError(f"All {len(trials)} trials failed; see the tuner logs in {directory}.")
    best_hp = search.get_best_hyperparameters(1)[0]
    best_config = hypermodel.config_for(best_hp)
    best_path = os.path.join(config.output_dir, "best.yaml")
    best_config.save(best_path)
    result = {"trials": len(trials), "completed": len(completed), "failed": len(failed),
              "best_score": max(t.score for t in completed), "best_config": best_path,
              "best_hyperparameters": best_hp.values}
    if export_name:
        from crnn_keras.export import export_saved_model

        model = search.get_best_models(1)[0]
        result["export"] = export_saved_model(model, os.path.join("savedmodels", export_name),
                                              class_names=info.class_names)
    return result
