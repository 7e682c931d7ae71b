"""Validation accuracy against images seen, one line per `lra_pathfinder_search` log.

    python -m benchmarks.lra_pathfinder_plot OUT.png TITLE LOG.jsonl[=LABEL] ...

The validation images are of the difficulty's own contour length throughout, also while a
curriculum trains on shorter ones. Each label gets the run's test accuracy (10,000 images).
"""
import json
import sys

from crnn_keras.training.reports import plot_curves


def curves(logs: list[str]) -> dict:
    out = {}
    for item in logs:
        path, _, label = item.partition("=")
        with open(path, encoding="utf-8") as f:
            records = [json.loads(line) for line in f]
        points = [r for r in records if "seen" in r]
        test = next((r["test_10000"] for r in reversed(records) if "test_10000" in r), None)  # The latest.
        label = label or path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        if test is not None:
            label += f" (test {test:.3f})"
        out[label] = ([r["seen"] for r in points], [r["val"] for r in points])
    return out


if __name__ == "__main__":
    plot_curves(curves(sys.argv[3:]), sys.argv[1], title=sys.argv[2])
