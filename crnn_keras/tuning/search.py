"""Running a Keras Tuner search over a dataset: tuner directory, results table,
best config, optional export. Distributed tuning uses Keras Tuner's own
`KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT`."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Iterator

import keras_tuner
import tensorflow as tf

from crnn_keras.atomic import atomic_path, remove_stale_temporaries, write_json, write_text
from crnn_keras.data import load_dataset
from crnn_keras.training.config import TrainConfig
from crnn_keras.training.run_dir import RUN_CONFIG_FILE, SEARCH_FILE
from crnn_keras.training.task import dtype_policy, steps_per_epoch
from crnn_keras.tuning.hypermodel import CRNNHyperModel

TUNERS = {
    "random": keras_tuner.RandomSearch,
    "hyperband": keras_tuner.Hyperband,
    "bayesian": keras_tuner.BayesianOptimization,
}
DEFAULT_MAX_TRIALS = 10


def make_tuner(name: str, hypermodel: CRNNHyperModel, directory: str, max_trials: int | None, max_epochs: int,
               seed: int = 0, distribution_strategy: tf.distribute.Strategy | None = None,
               overwrite: bool = False) -> keras_tuner.Tuner:
    """`max_trials` (default 10) bounds random and bayesian searches; Hyperband
    runs the trials its brackets need for `max_epochs` (factor 3), so it refuses one."""
    _check_tuner(name, max_trials)
    kwargs = dict(objective="val_accuracy", directory=directory, project_name="crnn", seed=seed,
                  overwrite=overwrite, distribution_strategy=distribution_strategy)
    if name == "hyperband":
        return keras_tuner.Hyperband(hypermodel, max_epochs=max_epochs, factor=3,
                                     hyperband_iterations=1, **kwargs)
    return TUNERS[name](hypermodel, max_trials=max_trials or DEFAULT_MAX_TRIALS, **kwargs)


def _check_tuner(name: str, max_trials: int | None) -> None:
    if name not in TUNERS:
        raise ValueError(f"Unknown tuner {name!r}. Expected one of {sorted(TUNERS)}.")
    if name == "hyperband" and max_trials is not None:
        raise ValueError(f"--max-trials {max_trials} does not bound hyperband: it runs the trials its "
                         "brackets need. Bound it with --epochs (its max_epochs) and drop --max-trials, "
                         "or use --tuner random or bayesian with --max-trials.")
    if max_trials is not None and max_trials < 1:
        raise ValueError(f"--max-trials must be at least 1, got {max_trials}.")


def results_table(tuner: keras_tuner.Tuner) -> str:
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)
    lines = [f"{'trial':>6} {'status':>10} {'score':>8}  hyperparameters"]
    for t in trials:
        score = "-" if t.score is None else f"{t.score:.4f}"
        values = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in t.hyperparameters.values.items() if not k.startswith("tuner/"))
        lines.append(f"{t.trial_id:>6} {t.status:>10} {score:>8}  {values}")
    return "\n".join(lines)


def search_request(config: TrainConfig, tuner: str, fixed: dict[str, Any] | None,
                   ranges: dict[str, Any] | None, replicas: int = 1) -> dict[str, Any]:
    """What decides a search's trials, as JSON data: a rerun with the same request resumes it.
    `max_trials` is left out (a rerun may extend or stop the search), as are the
    output folder and verbosity."""
    base = {k: v for k, v in config.to_dict().items() if k not in ("output_dir", "verbose")}
    request = dict(tuner=tuner, fixed=fixed or {}, ranges=ranges or {}, replicas=replicas, config=base)
    return json.loads(json.dumps(request))  # Tuples as lists, as the saved file reads back.


def check_search_dir(output_dir: str, request: dict[str, Any], overwrite: bool = False) -> bool:
    """Refuses an `output_dir` that holds a search with another request, naming
    the keys that differ (as `check_run_dir` does for training runs). Returns
    True where `overwrite` lets the new search replace it."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"--output-dir {output_dir!r} is a file; pass a folder for the search.")
    path = os.path.join(output_dir, SEARCH_FILE)
    if not os.path.exists(path) and os.path.exists(os.path.join(output_dir, RUN_CONFIG_FILE)):
        raise ValueError(f"--output-dir {output_dir!r} holds a training run ({RUN_CONFIG_FILE}); a search there "
                         "would mix its files with the run's. Choose another --output-dir.")
    if not os.path.exists(path):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        old = {f"(unreadable {SEARCH_FILE})": str(err)}

    def flat(request: dict[str, Any]) -> dict[str, Any]:  # `config.epochs`, `fixed.units`, ...
        out = {}
        for key, value in request.items():
            out.update({f"{key}.{k}": v for k, v in value.items()} if isinstance(value, dict) else {key: value})
        return out

    from crnn_keras.training.run_dir import differences

    details = differences(flat(old), flat(request))
    if not details:
        return False
    if not overwrite:
        raise ValueError(f"{output_dir!r} holds a search with another request ({details}). Pass --overwrite "
                         "to start that search afresh, or choose another --output-dir.")
    return True


def _check_options(config: TrainConfig, tuner: str) -> None:
    """Refuses training options that the trials of `tuner` cannot follow."""
    if tuner == "hyperband" and (config.schedule != "constant" or config.warmup_epochs):
        raise ValueError(f"--schedule {config.schedule} with --warmup-epochs {config.warmup_epochs}: hyperband "
                         "trains its trials for different numbers of epochs, so a schedule over --epochs "
                         "does not apply. Pass --schedule constant and no --warmup-epochs, or use --tuner "
                         "random or bayesian.")
    if config.strategy == "multi_worker":
        raise ValueError("strategy='multi_worker' is not used by the search; Keras Tuner spreads trials over "
                         "machines with KERASTUNER_TUNER_ID/KERASTUNER_ORACLE_IP/KERASTUNER_ORACLE_PORT. "
                         "Set strategy to 'mirrored' or 'default'.")


@contextlib.contextmanager
def atomic_tuner_writes() -> Iterator[None]:
    """Makes Keras Tuner's state (`oracle.json`, `trial.json`, ...) and trial
    checkpoints go through a temporary file and a rename while the block runs:
    it writes them in place, and a kill mid-write leaves a search that no rerun
    can load. Paths with a scheme (`gs://`) are written as before."""
    from keras_tuner.src import backend as kt_backend
    from keras_tuner.src import utils as kt_utils
    from keras_tuner.src.engine import tuner_utils

    save_json, save_model = kt_utils.save_json, tuner_utils.SaveBestEpoch._save_model

    def atomic_save_json(path, obj):
        if "://" in str(path):
            return save_json(path, obj)
        text = json.dumps(obj)
        write_text(str(path), text)
        return text

    def atomic_save_model(self):
        strategy = self.model.distribute_strategy
        if "://" in self.filepath or kt_backend.io.write_filepath(self.filepath, strategy) != self.filepath:
            return save_model(self)  # A non-chief worker's temporary copy, or a remote path.
        with atomic_path(self.filepath) as tmp:
            self.model.save_weights(tmp)

    kt_utils.save_json, tuner_utils.SaveBestEpoch._save_model = atomic_save_json, atomic_save_model
    try:
        yield
    finally:
        kt_utils.save_json, tuner_utils.SaveBestEpoch._save_model = save_json, save_model


def run_search(config: TrainConfig, tuner: str = "random", max_trials: int | None = None,
               fixed: dict[str, Any] | None = None, ranges: dict[str, Any] | None = None,
               distribution_strategy: tf.distribute.Strategy | None = None,
               export_name: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Searches on `config.dataset` for `config.epochs` epochs a trial.

    Trials follow `config` in everything not searched: its precision, schedule
    and warm-up, augmentation and translation, and its backbone, sweep and head
    options; options they cannot follow are refused. `max_trials` (default 10)
    bounds random and bayesian searches, and is refused with hyperband.

    Writes `output_dir/search.json` (the request), `output_dir/tuner/`,
    `output_dir/best.yaml` (a training config that reproduces the best trial)
    and, with `export_name`, exports the best model to `savedmodels/<export_name>/`.
    A rerun with the same request resumes the search; another request is
    refused unless `overwrite` (which also restarts an identical one). Returns
    the trial counts and best score. Raises if every trial failed (Keras Tuner
    only logs failures).
    """
    config.validate()
    _check_tuner(tuner, max_trials)
    _check_options(config, tuner)
    replicas = distribution_strategy.num_replicas_in_sync if distribution_strategy else 1
    request = search_request(config, tuner, fixed, ranges, replicas)
    replace = check_search_dir(config.output_dir, request, overwrite)

    global_batch = config.batch_size * replicas  # `batch_size` is per replica, as in training.
    common = dict(image_size=config.image_size, channels=config.channels, seed=config.seed)
    train, info = load_dataset(config.dataset, "train", batch_size=global_batch, augment=config.augment,
                               translate=config.translate, **common)
    val, _ = load_dataset(config.dataset, config.validation_split, batch_size=global_batch, **common)
    hypermodel = CRNNHyperModel(info.num_classes, info.image_shape, base_config=config, fixed=fixed,
                                ranges=ranges, steps_per_epoch=steps_per_epoch(config, info, global_batch))
    hypermodel.check_values()  # A bad pinned or listed value fails here, not in every trial.

    directory = os.path.join(config.output_dir, "tuner")
    best_path = os.path.join(config.output_dir, "best.yaml")
    chief = os.environ.get("KERASTUNER_TUNER_ID", "chief") == "chief"
    os.makedirs(config.output_dir, exist_ok=True)
    remove_stale_temporaries(config.output_dir)
    if chief and replace and os.path.exists(best_path):
        os.remove(best_path)  # The replaced search's best.
    write_json(os.path.join(config.output_dir, SEARCH_FILE), request)
    # Keras Tuner's `clear_session` before each trial resets the dtype policy, so `build` sets it
    # too; this scope restores the caller's policy afterwards.
    with dtype_policy(config.precision), atomic_tuner_writes():
        search = make_tuner(tuner, hypermodel, directory, max_trials, config.epochs, config.seed,
                            distribution_strategy, overwrite)
        search.search(train, validation_data=val, epochs=config.epochs, verbose=config.verbose)
        if not chief:
            return {"worker": os.environ["KERASTUNER_TUNER_ID"]}
        trials = list(search.oracle.trials.values())
        completed = [t for t in trials if t.status == "COMPLETED" and t.score is not None]
        failed = [t for t in trials if t.status in ("FAILED", "INVALID")]
        print(results_table(search))
        if not completed:
            raise RuntimeError(f"All {len(trials)} trials failed; see the tuner logs in {directory}.")
        best_hp = search.get_best_hyperparameters(1)[0]
        best_config = hypermodel.config_for(best_hp)
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
