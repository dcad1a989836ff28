"""Matplotlib figures shared by the notebooks (training curves, segmentation panels).

Each function returns a :class:`matplotlib.figure.Figure` and never saves or shows it; the
notebook decides. ``caption`` strings (e.g. :attr:`EMVolume.caption`) go into the titles so a
figure made from synthetic data says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from emseg_lib.display import color_labels, overlay

CURVES = {
    "accuracy": ("Pixel accuracy", [("train_acc", "train"), ("val_acc", "validation")]),
    "voi": ("VOI before / after watershed",
            [("val_voi_before", "before watershed"), ("val_voi", "after watershed")]),
    "voi_merge": ("VOI under-segmentation (merge)",
                  [("val_voi_merge_before", "before watershed"),
                   ("val_voi_merge", "after watershed")]),
    "voi_split": ("VOI over-segmentation (split)",
                  [("val_voi_split_before", "before watershed"),
                   ("val_voi_split", "after watershed")]),
    "arand": ("Adapted Rand error after watershed", [("val_arand", "validation")]),
    "loss": ("BCE loss", [("train_loss", "train"), ("val_loss", "validation")]),
}


def training_curve(history: pd.DataFrame, curve: str, caption: str = "") -> Figure:
    """One of :data:`CURVES` against the epoch."""
    title, series = CURVES[curve]
    figure = Figure(figsize=(6, 3.6))
    ax = figure.subplots()
    for column, label in series:
        ax.plot(history["epoch"], history[column], label=label, marker="." if
                len(history) < 30 else None)
    ax.set_xlabel("epoch")
    ax.set_title(f"{title}\n{caption}" if caption else title, fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    return figure


def segmentation_panel(raw: np.ndarray, prob: np.ndarray, seg: np.ndarray, gt: np.ndarray,
                       title: str) -> Figure:
    """Input, probability, post-processed segmentation over the input, ground truth.

    Args:
        raw: ``(Y, X)`` uint8 or float image.
        prob: ``(Y, X)`` cell probability.
        seg: ``(Y, X)`` predicted labels (0 = boundary).
        gt: ``(Y, X)`` ground-truth ids.
    """
    figure = Figure(figsize=(13, 3.6))
    axes = figure.subplots(1, 4)
    panels = [(raw, "input", "gray"), (prob, "cell probability", "gray"),
              (overlay(raw, seg), f"segmentation ({len(np.unique(seg[seg > 0]))} cells)", None),
              (color_labels(gt.astype(np.int64)), "ground truth", None)]
    for ax, (image, name, cmap) in zip(axes, panels, strict=True):
        ax.imshow(image, cmap=cmap)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    figure.suptitle(title, fontsize=10)
    return figure


def seed_band_curves(runs: dict[str, list[pd.DataFrame]], column: str, title: str
                     ) -> Figure:
    """Mean over seeds of ``column`` against the epoch, with the min-max band, per label.

    Args:
        runs: ``{label: [history of seed 0, history of seed 1, ...]}``.
        column: a history column, e.g. ``"val_acc"`` or ``"val_voi_before"``.
    """
    figure = Figure(figsize=(7, 4))
    ax = figure.subplots()
    for label, histories in runs.items():
        values = pd.concat([h.set_index("epoch")[column] for h in histories], axis=1)
        line, = ax.plot(values.index, values.mean(axis=1), label=f"{label} (n={len(histories)})")
        ax.fill_between(values.index, values.min(axis=1), values.max(axis=1),
                        color=line.get_color(), alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel(column)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return figure
