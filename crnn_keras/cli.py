"""`crnn-keras` command line: thin wrappers over the package's modules."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from typing import Any

DEMO_DIR = "runs/demo"
# `crnn_keras.export`'s FORMATS and QUANTIZATIONS (this module loads without the
# package for --help; a test keeps them equal).
EXPORT_FORMATS = ("saved_model", "onnx", "litert")
EXPORT_QUANTIZATIONS = ("dynamic_int8",)


def _parse_json_or_str(text: str) -> Any:
    """JSON values, or a plain string (a backbone name); text that looks like JSON must be JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        if text.lstrip().startswith(("{", "[")):
            raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text!r}") from err
        return text


def _add_config_flags(parser: argparse.ArgumentParser, config, preset_names: list[str]) -> None:
    """One flag per `TrainConfig` field, with its help, default and choices.

    Flags default to None (unset), so a `--config` file's values stand unless
    a flag is given; the help shows the field's own default.
    """
    config_cls = config.TrainConfig
    hints = typing.get_type_hints(config_cls)
    defaults = config_cls()
    choices = {**config.CHOICES, "preset": tuple(preset_names)}
    for field in dataclasses.fields(config_cls):
        flag = "--" + field.name.replace("_", "-")
        hint = hints[field.name]
        base = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        kind = base[0]
        default = getattr(defaults, field.name)
        shown = json.dumps(default) if isinstance(default, (dict, list)) else default
        text = config.FIELD_HELP[field.name]
        text += "" if "default" in text else f" (default: {shown})"
        if kind is bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None,
                                help=text)
        elif kind in (int, float, str):
            parser.add_argument(flag, dest=field.name, type=kind, default=None, help=text,
                                choices=choices.get(field.name))
        else:  # dicts and free-form values: JSON text.
            parser.add_argument(flag, dest=field.name, type=_parse_json_or_str, default=None, help=text,
                                metavar="JSON")


def _config_from_args(args: argparse.Namespace):
    from crnn_keras.training.config import TrainConfig, make_config

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    return make_config(args.config, **overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from crnn_keras.training import train

    metrics = train(_config_from_args(args), overwrite=args.overwrite)
    print(json.dumps({k: metrics[k] for k in ("accuracy", "num_examples", "params")}))
    return 0


def _model_and_names(path: str):
    from crnn_keras.training.run_dir import class_names_near, load_run_model

    model, model_path = load_run_model(path)
    return model, class_names_near(model_path, model.output_shape[-1])


def cmd_evaluate(args: argparse.Namespace) -> int:
    from crnn_keras.data import load_dataset
    from crnn_keras.training import evaluate_model, load_config_file

    if args.image_size is not None and args.image_size < 1:
        raise ValueError(f"--image-size must be a positive number of pixels, got {args.image_size}.")
    if args.output and os.path.isdir(args.output):  # Checked before the evaluation, not after it.
        raise ValueError(f"--output {args.output!r} is a folder; name a file, e.g. "
                         f"{os.path.join(args.output, 'metrics.json')!r}.")
    if args.output and not os.path.isdir(os.path.dirname(os.path.abspath(args.output))):
        raise ValueError(f"--output {args.output!r}: its folder does not exist.")
    model, _ = _model_and_names(args.model)
    dataset, image_size, channels, seed = args.dataset, args.image_size, None, args.seed
    config_path = os.path.join(args.model, "config.yaml")
    if os.path.isdir(args.model) and os.path.exists(config_path):
        config = load_config_file(config_path)
        dataset = dataset or config.get("dataset")
        image_size = image_size or config.get("image_size")
        channels = config.get("channels")
        # The run's seed: seeded splits (a folder's test draw, carved validation) are the run's own.
        seed = config.get("seed", 0) if seed is None else seed
    if not dataset:
        raise ValueError(f"{args.model!r} has no run config to read the dataset from; pass --dataset SPEC.")
    ds, info = load_dataset(dataset, args.split, image_size=image_size, channels=channels,
                            batch_size=args.batch_size, shuffle=False, seed=seed or 0)
    metrics = evaluate_model(model, ds, info.class_names, verbose=1)
    k = min(5, info.num_classes - 1)
    print(f"{dataset} [{args.split}] {metrics['num_examples']} examples")
    top_k = f"   top-{k} accuracy: {metrics[f'top{k}_accuracy']:.4f}" if k >= 2 else ""
    print(f"top-1 accuracy: {metrics['accuracy']:.4f}{top_k}")
    print("per-class accuracy:")
    for name, acc in metrics["per_class_accuracy"].items():
        print(f"  {name:24s} {'n/a' if acc is None else f'{acc:.4f}'}")
    print("confusion matrix (rows: true, columns: predicted):")
    for row in metrics["confusion_matrix"]:
        print("  " + " ".join(f"{v:5d}" for v in row))
    if args.output:
        from crnn_keras.atomic import write_json

        write_json(args.output, metrics)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from crnn_keras.data.images import load_image_for_model
    from crnn_keras.models import to_probabilities

    if args.top_k < 1:
        raise ValueError(f"--top-k must be at least 1, got {args.top_k}.")
    paths = _image_paths(args.images)
    model, names = _model_and_names(args.model)
    for path in paths:
        image = load_image_for_model(path, model.input_shape)
        probs = np.asarray(to_probabilities(model, model(image[None], training=False)))[0]
        top = np.argsort(-probs)[: args.top_k]
        print(path + ": " + ", ".join(f"{names[i]} {probs[i]:.4f}" for i in top))
    return 0


def _image_paths(items: list[str]) -> list[str]:
    """Image files, with each folder replaced by the images under it (sorted)."""
    from crnn_keras.data.folder import IMAGE_EXTENSIONS

    paths = []
    for item in items:
        if not os.path.isdir(item):
            paths.append(item)
            continue
        found = sorted(os.path.join(root, name) for root, _, names in os.walk(item) for name in names
                       if name.lower().endswith(IMAGE_EXTENSIONS))
        if not found:
            raise ValueError(f"Folder {item!r} holds no images ({', '.join(IMAGE_EXTENSIONS)}).")
        paths += found
    return paths


def cmd_demo(args: argparse.Namespace) -> int:
    """Trains the C-RNN and its matched CNN baseline on the built-in task."""
    from crnn_keras.training import make_config, train

    results = {}
    # Without a config file: a constant rate, which reaches the C-RNN's high
    # accuracy on the built-in task within the 5 default epochs.
    schedule = None if args.config else "constant"
    for model in ("crnn", "cnn_baseline"):
        config = make_config(
            args.config, dataset=args.dataset, model=model, epochs=args.epochs,
            output_dir=os.path.join(args.output_dir, model), verbose=2, schedule=schedule,
        )
        results[model] = train(config, overwrite=args.overwrite)
    print("\n" + "=" * 60)
    print(f"{'model':14s} {'params':>9s} {'test accuracy':>14s} {'train s':>8s}")
    for model, m in results.items():
        print(f"{model:14s} {m['params']:9d} {m['accuracy']:14.4f} {m['train_seconds']:8.1f}")
    gap = results["crnn"]["accuracy"] - results["cnn_baseline"]["accuracy"]
    print(f"C-RNN - CNN: {100 * gap:+.1f} points on {results['crnn']['dataset']}")
    if args.export:
        from crnn_keras.export import export_run

        path = export_run(os.path.join(args.output_dir, "crnn"), base_dir=os.path.join("savedmodels", "crnn_demo"))
        print(f"Exported the C-RNN to {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from crnn_keras.export import export_run

    if not args.name or args.name != os.path.basename(args.name) or args.name in (".", ".."):
        raise ValueError(f"--name {args.name!r} must be a folder name (savedmodels/<name>/<version>), e.g. crnn.")
    if os.path.exists(args.base_dir) and not os.path.isdir(args.base_dir):
        raise ValueError(f"--base-dir {args.base_dir!r} is a file; pass a folder (default: savedmodels).")
    base_dir = os.path.join(args.base_dir, args.name)
    if args.version is not None and not args.overwrite and os.path.exists(os.path.join(base_dir, str(args.version))):
        raise ValueError(f"Version {args.version} already exists in {base_dir!r}; pass --overwrite to replace it, "
                         "or leave --version out for the next free one.")
    options = {"top_k": args.top_k} if args.top_k is not None else {}
    path = export_run(args.model, base_dir, version=args.version, format=args.format, quantize=args.quantize,
                      overwrite=args.overwrite, image_size=args.image_size, **options)
    print(f"Exported {args.model} to {path}")
    return 0


def cmd_save_preset(args: argparse.Namespace) -> int:
    from crnn_keras.training.run_dir import save_run_as_preset

    meta = save_run_as_preset(args.run, args.preset_dir, description=args.description, verbose=1)
    print(f"Saved {args.run} to {args.preset_dir}: test accuracy {meta['test_accuracy']:.4f} "
          f"on {meta['test_examples']} {meta['dataset']} [{meta['test_split']}] images, "
          f"{meta['parameter_count']} parameters")
    return 0


def _number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def _pairs(items: list[str] | None, flag: str) -> dict[str, Any]:
    """`NAME=VALUE` pairs. For `--range`, `LOW:HIGH[:STEP]` is a range and a
    JSON list is a set of choices."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{flag} takes NAME=VALUE, got {item!r}.")
        if flag == "--range" and ":" in value:
            try:
                out[key] = tuple(_number(v) for v in value.split(":"))
            except ValueError as err:
                raise ValueError(f"{flag} {item!r}: a range is LOW:HIGH[:STEP] of numbers.") from err
        else:
            out[key] = _parse_json_or_str(value)
    return out


def cmd_tune(args: argparse.Namespace) -> int:
    from crnn_keras.training import get_strategy, load_config_file
    from crnn_keras.tuning import run_search

    if args.strategy is not None:
        raise ValueError("--strategy is training's distribution and the search does not use it; pass "
                         "--distribution-strategy mirrored|default (Keras Tuner's KERASTUNER_* variables "
                         "spread trials over machines).")
    # Trials train at a constant rate unless a flag or the config file names a schedule.
    if args.schedule is None and "schedule" not in (load_config_file(args.config) if args.config else {}):
        args.schedule = "constant"
    config = _config_from_args(args)
    strategy = get_strategy(args.distribution_strategy) if args.distribution_strategy else None
    result = run_search(config, tuner=args.tuner, max_trials=args.max_trials,
                        fixed=_pairs(args.fix, "--fix"), ranges=_pairs(args.range, "--range"),
                        distribution_strategy=strategy, export_name=args.export, overwrite=args.overwrite)
    print(json.dumps(result, indent=2, default=str))
    if result.get("failed"):
        print(f"warning: {result['failed']} trial(s) failed", file=sys.stderr)
    return 0


def build_parser(config=None, presets=None) -> argparse.ArgumentParser:
    """The `crnn-keras` parser. `config` and `presets` are the modules
    `crnn_keras.training.config` and `crnn_keras.models.presets` (imported
    when not given; `crnn_keras_cli` passes copies loaded without TensorFlow)."""
    if config is None:
        from crnn_keras.training import config
    if presets is None:
        from crnn_keras.models import presets
    preset_names = list(presets.list_presets())
    parser = argparse.ArgumentParser(prog="crnn-keras", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a C-RNN or the CNN baseline")
    p.add_argument("--config", help="YAML or JSON config file; flags override it")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run with another config in --output-dir (default: refuse)")
    _add_config_flags(p, config, preset_names)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tune", help="Keras Tuner search over the C-RNN design space")
    p.add_argument("--config", help="YAML or JSON base training config; flags override it")
    p.add_argument("--tuner", default="random", choices=["random", "hyperband", "bayesian"])
    p.add_argument("--max-trials", type=int,
                   help="trials of a random or bayesian search (default: 10); hyperband refuses it "
                        "(bound it with --epochs)")
    p.add_argument("--fix", action="append", metavar="NAME=VALUE", help="pin a hyperparameter")
    p.add_argument("--range", action="append", metavar="NAME=JSON",
                   help="narrow one: LOW:HIGH[:STEP], or a JSON list of choices")
    p.add_argument("--distribution-strategy", choices=["mirrored", "default"])
    p.add_argument("--export", metavar="NAME", help="export the best model to savedmodels/NAME")
    p.add_argument("--overwrite", action="store_true",
                   help="start the search afresh, replacing one with another request in --output-dir "
                        "(default: resume the same request, refuse another)")
    _add_config_flags(p, config, preset_names)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("evaluate", help="top-1/top-5, per-class accuracy, confusion matrix")
    p.add_argument("model", help="run directory or .keras file")
    p.add_argument("--dataset", help="dataset spec (default: the run's)")
    p.add_argument("--split", default="test")
    p.add_argument("--image-size", type=int)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, help="seed of seeded splits (default: the run's, else 0)")
    p.add_argument("--output", help="write the metrics as JSON here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="top-k labels for image files")
    p.add_argument("model", help="run directory or .keras file")
    p.add_argument("images", nargs="+", help="image files, or folders (every image under them)")
    p.add_argument("--top-k", type=int, default=5)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export a SavedModel for TF Serving, ONNX or LiteRT")
    p.add_argument("model", help="run directory or .keras file")
    p.add_argument("--name", required=True,
                   help="model name: <base-dir>/<name>/<version>; one format per name")
    p.add_argument("--base-dir", default="savedmodels")
    p.add_argument("--format", default="saved_model", choices=EXPORT_FORMATS,
                   help="saved_model (TF Serving), onnx (model.onnx) or litert (model.tflite) "
                        "(default: saved_model)")
    p.add_argument("--quantize", choices=EXPORT_QUANTIZATIONS,
                   help="int8 weights, for onnx and litert (default: float)")
    p.add_argument("--version", type=int)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--top-k", type=int, help="saved_model only: top classes returned (default: 5)")
    p.add_argument("--image-size", type=int,
                   help="square input size: required for a model of dynamic size (saved_model, litert)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("save-preset", help="save a run's model as a keras-hub preset folder")
    p.add_argument("run", help="run directory")
    p.add_argument("preset_dir", help="folder to write (replaced whole, atomically)")
    p.add_argument("--description", default="", help="one line for metadata.json")
    p.set_defaults(func=cmd_save_preset)

    p = sub.add_parser("demo", help="C-RNN vs CNN baseline on the built-in task, then export")
    p.add_argument("--config", help="YAML or JSON config file for both runs")
    p.add_argument("--dataset", default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--output-dir", default=DEMO_DIR)
    p.add_argument("--export", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--overwrite", action="store_true", help="replace earlier demo runs with another config")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
