"""Saves a `benchmarks.lra_pathfinder_search` run as a trained preset.

    python -m benchmarks.lra_pathfinder_preset runs/lra_search/NAME_DIFFICULTY PRESET_DIR

Reads NAME_DIFFICULTY.keras and its .jsonl log (the run's settings, its curve, and its scores),
scores the model again on the test split of `builtin:lra_pathfinder?difficulty=...` (10,000
images of a seed that training never draws), and writes the preset folder atomically with
metadata that gives the commands that reproduce it.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import numpy as np  # noqa: E402

from crnn_keras.data import builtin  # noqa: E402

TEST_EXAMPLES = 10000


def main(run: str, preset_dir: str) -> dict:
    with open(run + ".jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    config = next(r["config"] for r in records if "config" in r)
    curve = [{k: r[k] for k in ("seen", "minutes", "val", "length") if k in r} for r in records if "seen" in r]
    scores = next(r for r in records if "test_10000" in r)
    difficulty = config["difficulty"]
    model = keras.saving.load_model(run + ".keras")
    images, labels = builtin.generate("lra_pathfinder", "test", TEST_EXAMPLES, difficulty=difficulty)
    accuracy = float(np.mean(model.predict(images, batch_size=500, verbose=0).argmax(-1) == labels))
    seen = curve[-1]["seen"]
    env = " ".join(f"{k}={v}" for k, v in {**config["env"], "STOP": seen}.items())
    metadata = {
        "description": (
            f"{config['model'].split('+')[0]} (head pooling {config['pooling']}) trained {curve[-1]['minutes']:.0f} "
            f"min on 2 CPU cores on {seen:,} fresh builtin:lra_pathfinder images (contour-length curriculum "
            f"{config['curriculum'] or 'none'}), Long Range Arena's Pathfinder-32 at difficulty {difficulty}."),
        "dataset": f"builtin:lra_pathfinder?difficulty={difficulty}&test_size={TEST_EXAMPLES}",
        "test_split": "test",
        "test_accuracy": round(accuracy, 4),
        "test_examples": TEST_EXAMPLES,
        "class_names": builtin.TASKS["lra_pathfinder"]["class_names"],
        "commands": [
            f"{env} python -m benchmarks.lra_pathfinder_search {config['model']} {config['minutes']:g} {difficulty}"
            .strip(),
            f"python -m benchmarks.lra_pathfinder_preset {run} {preset_dir}",
        ],
        "training_config": {**config, "images_seen": seen, "minutes_used": curve[-1]["minutes"]},
        "curve": curve,
    }
    if "original_generator" in scores:  # Images of Linsley et al.'s own generator, scored once.
        metadata["original_generator_accuracy"] = scores["original_generator"]
        metadata["original_generator_examples"] = scores["original_generator_examples"]
    model.save_to_preset(preset_dir, metadata=metadata)
    return metadata


if __name__ == "__main__":
    meta = main(*sys.argv[1:3])
    print(f"Saved {sys.argv[2]}: test accuracy {meta['test_accuracy']:.4f} on {meta['test_examples']} images")
