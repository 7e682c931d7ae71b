"""Run reports: training curves and confusion-matrix PNGs.

Figures are drawn on `matplotlib.figure.Figure` objects, without pyplot, so the
caller's matplotlib backend is left as it is, and saved atomically.
"""

from __future__ import annotations

import csv

import numpy as np
from matplotlib.figure import Figure

from crnn_keras.atomic import atomic_path


def _save(fig: Figure, path: str) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def plot_history(history_csv: str, path: str) -> None:
    with open(history_csv, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{history_csv!r} has no epochs to plot.")
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            key = prefix + metric
            if key in rows[0]:
                ax.plot(epochs, [float(r[key]) for r in rows], style, label=key)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    _save(fig, path)


def plot_curves(curves: dict[str, tuple[list[float], list[float]]], path: str, title: str,
                xlabel: str = "training images seen", ylabel: str = "validation accuracy") -> None:
    """One line per `{label: (x, y)}`, e.g. accuracy against images seen for several models."""
    if not curves:
        raise ValueError("plot_curves needs at least one curve.")
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for label, (x, y) in curves.items():
        ax.plot(x, y, "o-", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_confusion(matrix: list[list[int]], class_names: list[str], path: str) -> None:
    matrix = np.asarray(matrix)
    size = max(4, min(20, 0.4 * len(class_names) + 3))
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    if len(class_names) <= 30:
        ticks = np.arange(len(class_names))
        ax.set_xticks(ticks, class_names, rotation=90)
        ax.set_yticks(ticks, class_names)
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    _save(fig, path)
