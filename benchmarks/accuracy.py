"""The accuracy table: C-RNN against its parameter-matched CNN, same recipe, on this CPU.

    python -m benchmarks.accuracy [--tasks pathfinder,pathfinder_hard,lra_pathfinder,fashion_mnist]
                                  [--models crnn,cnn_baseline,deep_cnn] [--quick] [--plot]

Each task trains the C-RNN preset, `cnn_baseline` of it (the matched CNN: one
wide conv block in place of the sweeps) and `deep_cnn` (a deeper control of the
same size: `DEEP_CNN_DEPTH` residual conv blocks) through
`crnn_keras.training.train` (so every run leaves its TensorBoard logs,
`curves.png` and `metrics.json` under `runs/accuracy/<task>/<model>`), with the
same config apart from the model. Test accuracy is that of the best checkpoint on
validation, scored once on the test split. Results merge into
`benchmarks/results/accuracy.json` after each task (written atomically; other
tasks' rows are kept, so a crash loses only the task it was in) and print as a
Markdown table. `--collect` trains nothing: it reads the rows back from the
finished runs' `metrics.json` under `--output-root`. `--quick` shrinks every
task to a smoke run (a minute) whose numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os

from benchmarks.common import THREADS, fix_threads

fix_threads()

from crnn_keras.atomic import write_json  # noqa: E402
from crnn_keras.training import make_config, train  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "accuracy.json")
PATHFINDER_RECIPE = {"epochs": 6, "batch_size": 64, "optimizer": "adamw", "learning_rate": 3e-3,
                     "weight_decay": 1e-4, "warmup_epochs": 0.3, "clipnorm": 1.0}
# Each task: the dataset, the C-RNN preset and one training recipe shared by both models.
TASKS = {
    "pathfinder": {
        "dataset": "builtin:pathfinder?train_size=20000&validation_size=4000",
        "preset": "crnn_pathfinder",
        "recipe": PATHFINDER_RECIPE,
    },
    "pathfinder_hard": {
        "dataset": "builtin:pathfinder?train_size=20000&validation_size=4000&path_length=8&distractors=1",
        "preset": "crnn_pathfinder",
        "recipe": PATHFINDER_RECIPE,
    },
    # LRA Pathfinder-32 (crnn_keras.data.lra_pathfinder): contour length 6 and 14.
    "lra_pathfinder": {
        "dataset": "builtin:lra_pathfinder?train_size=50000&validation_size=5000&difficulty=easy",
        "preset": "crnn_pathfinder",
        "recipe": {**PATHFINDER_RECIPE, "epochs": 4},
    },
    "lra_pathfinder_hard": {
        "dataset": "builtin:lra_pathfinder?train_size=50000&validation_size=5000&difficulty=hard",
        "preset": "crnn_pathfinder",
        "recipe": {**PATHFINDER_RECIPE, "epochs": 4},
    },
    "fashion_mnist": {
        "dataset": "fashion_mnist",
        "preset": "crnn_fashion_mnist_residual",
        "recipe": {"epochs": 36, "batch_size": 128, "optimizer": "adamw", "learning_rate": 3e-3,
                   "weight_decay": 5e-4, "label_smoothing": 0.1, "warmup_epochs": 1.0, "augment": True},
    },
}
QUICK = {"epochs": 1}
DEEP_CNN_DEPTH = 4
MODELS = {"crnn": {"model": "crnn"}, "cnn_baseline": {"model": "cnn_baseline"},
          "deep_cnn": {"model": "cnn_baseline", "baseline_depth": DEEP_CNN_DEPTH}}


def run_task(name: str, quick: bool, output_root: str, collect: bool = False,
             models: tuple[str, ...] = tuple(MODELS)) -> list[dict]:
    task = TASKS[name]
    dataset = task["dataset"]
    recipe = dict(task["recipe"])
    if quick:  # The task's own builtin source (rooks for a file dataset), shrunk.
        source = dataset.split("?")[0] if dataset.startswith("builtin:") else "builtin:rooks"
        dataset = source + "?train_size=256&validation_size=64&test_size=128"
        recipe.update(QUICK)
    rows = []
    for model in models:
        config = make_config(dataset=dataset, preset=task["preset"], verbose=2, **MODELS[model],
                             output_dir=os.path.join(output_root, name, model), **recipe)
        if collect:
            path = os.path.join(config.output_dir, "metrics.json")
            if not os.path.exists(path):
                raise SystemExit(f"--collect: {path} does not exist; run the task first.")
            with open(path, encoding="utf-8") as f:
                metrics = json.load(f)
            if metrics.get("dataset") != dataset or metrics.get("epochs") != config.epochs:
                raise SystemExit(f"--collect: {path} is from another recipe ({metrics.get('dataset')}, "
                                 f"{metrics.get('epochs')} epochs).")
        else:
            metrics = train(config, overwrite=True)
        rows.append({
            "task": name, "model": model, "dataset": dataset, "preset": task["preset"],
            "test_accuracy": round(metrics["accuracy"], 4), "test_examples": metrics["num_examples"],
            "params": metrics["params"], "epochs": config.epochs,
            "minutes": round(metrics["train_seconds"] / 60, 1), "threads": THREADS,
            "checkpoint": metrics.get("checkpoint"), "recipe": recipe, "quick": quick,
        })
    return rows


def plot_task(name: str, output_root: str, results: str = RESULTS,
              models: tuple[str, ...] = tuple(MODELS)) -> str:
    """`<results dir>/<task>.png`: validation accuracy against training images seen, per model,
    read from the finished runs' `history.csv` (the test accuracy is in the legend)."""
    import csv
    from urllib.parse import parse_qs

    from crnn_keras.training.reports import plot_curves

    curves = {}
    for model in models:
        run = os.path.join(output_root, name, model)
        history = os.path.join(run, "history.csv")
        if not os.path.exists(history):
            raise SystemExit(f"--plot: {history} does not exist; run the task first.")
        with open(history, encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        with open(os.path.join(run, "metrics.json"), encoding="utf-8") as f:
            metrics = json.load(f)
        test, dataset = metrics["accuracy"], metrics["dataset"]
        train_size = int(parse_qs(dataset.partition("?")[2]).get("train_size", ["0"])[0])
        if not train_size:
            raise SystemExit(f"--plot needs the run's train_size in its dataset spec, got {dataset!r}.")
        curves[f"{model} (test {test:.3f})"] = ([(int(r["epoch"]) + 1) * train_size for r in rows],
                                                [float(r["val_accuracy"]) for r in rows])
    path = os.path.join(os.path.dirname(os.path.abspath(results)), f"{name}.png")
    plot_curves(curves, path, title=f"{name}: {TASKS[name]['dataset'].split('?')[0]}")
    return path


def table(rows: list[dict]) -> str:
    lines = ["| task | model | params | epochs | minutes | test accuracy |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['model']} | {r['params']:,} | {r['epochs']} | {r['minutes']} "
                     f"| {r['test_accuracy']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of {sorted(TASKS)}")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {list(MODELS)}")
    parser.add_argument("--quick", action="store_true", help="tiny smoke runs; numbers mean nothing")
    parser.add_argument("--output-root", default=os.path.join("runs", "accuracy"))
    parser.add_argument("--results", default=RESULTS, help="JSON file the rows merge into")
    parser.add_argument("--collect", action="store_true",
                        help="train nothing; read the rows from the finished runs under --output-root")
    parser.add_argument("--plot", action="store_true",
                        help="also plot validation accuracy against images seen, one PNG per task")
    args = parser.parse_args(argv)
    names = [t for t in args.tasks.split(",") if t]
    unknown = sorted(set(names) - set(TASKS))
    if unknown:
        parser.error(f"unknown tasks {unknown}; expected some of {sorted(TASKS)}")
    models = tuple(m for m in args.models.split(",") if m)
    if not models or set(models) - set(MODELS):
        parser.error(f"unknown models {sorted(set(models) - set(MODELS))}; expected some of {list(MODELS)}")
    rows = []
    for name in names:
        task_rows = run_task(name, args.quick, args.output_root, args.collect, models)
        rows = merge(args.results, task_rows)
        if args.plot:
            print("wrote", plot_task(name, args.output_root, args.results, models))
    print(table(rows))


def merge(results: str, task_rows: list[dict]) -> list[dict]:
    """Replaces the rows of `task_rows`' (task, model)s in `results`; returns all rows."""
    previous = []
    if os.path.exists(results):
        with open(results, encoding="utf-8") as f:
            previous = json.load(f)["rows"]
    new = {(r["task"], r["model"]) for r in task_rows}
    rows = [r for r in previous if (r["task"], r["model"]) not in new] + task_rows
    os.makedirs(os.path.dirname(os.path.abspath(results)), exist_ok=True)
    write_json(results, {"rows": rows})
    return rows


if __name__ == "__main__":
    main()
