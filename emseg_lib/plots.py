"""Matplotlib figures shared by the notebooks and the command line (training curves,
segmentation panels, 2D/3D comparisons, transfer-learning examples, previews of whole-volume
results, per-slice scores).

Each function returns a :class:`matplotlib.figure.Figure` and never saves or shows it; the
notebook decides (:func:`~emseg_lib.reporting.save_figure` does both). ``caption`` strings
(e.g. :attr:`EMVolume.caption`) go into the titles so a figure made from synthetic data says
so. Axes carry units: VOI in bits, accuracy as a fraction of pixels, epochs as integers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from emseg_lib.display import color_labels, overlay
from emseg_lib.metrics import segment_count
from emseg_lib.preview import SliceSample

CURVES = {
    "accuracy": ("Pixel accuracy", "pixel accuracy (fraction)",
                 [("train_acc", "train"), ("val_acc", "validation")]),
    "voi": ("VOI before / after watershed", "VOI (bits)",
            [("val_voi_before", "before watershed"), ("val_voi", "after watershed")]),
    "voi_merge": ("VOI under-segmentation (merge)", "VOI merge (bits)",
                  [("val_voi_merge_before", "before watershed"),
                   ("val_voi_merge", "after watershed")]),
    "voi_split": ("VOI over-segmentation (split)", "VOI split (bits)",
                  [("val_voi_split_before", "before watershed"),
                   ("val_voi_split", "after watershed")]),
    "arand": ("Adapted Rand error after watershed", "adapted Rand error (0 = perfect)",
              [("val_arand", "validation")]),
    "loss": ("BCE loss", "binary cross-entropy", [("train_loss", "train"),
                                                  ("val_loss", "validation")]),
}

#: axis labels of history columns (transfer-learning curves)
COLUMN_LABELS = {
    "val_acc": "validation pixel accuracy (fraction)",
    "val_voi_before": "validation VOI before watershed (bits)",
    "val_voi": "validation VOI after watershed (bits)",
}


def _epoch_axis(ax) -> None:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def training_curve(history: pd.DataFrame, curve: str, caption: str = "") -> Figure:
    """One of :data:`CURVES` against the epoch (validation metrics: thesis protocol)."""
    title, ylabel, series = CURVES[curve]
    figure = Figure(figsize=(6, 3.6))
    ax = figure.subplots()
    for column, label in series:
        ax.plot(history["epoch"], history[column], label=label, marker="." if
                len(history) < 30 else None)
    _epoch_axis(ax)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\n{caption}" if caption else title, fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3)
    return figure


def _probability_image(figure: Figure, ax, prob: np.ndarray, title: str) -> None:
    image = ax.imshow(prob, cmap="gray", vmin=0, vmax=1)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="P(cell interior)")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def segmentation_panel(raw: np.ndarray, prob: np.ndarray, seg: np.ndarray, gt: np.ndarray,
                       title: str) -> Figure:
    """Input, probability (with colour bar), segmentation over the input, ground truth.

    Args:
        raw: ``(Y, X)`` uint8 or float image.
        prob: ``(Y, X)`` cell probability.
        seg: ``(Y, X)`` predicted labels (0 = boundary, if any).
        gt: ``(Y, X)`` ground-truth ids.
    """
    figure = Figure(figsize=(14, 3.8))
    axes = figure.subplots(1, 4)
    axes[0].imshow(raw, cmap="gray")
    axes[0].set_title("input", fontsize=9)
    axes[0].axis("off")
    _probability_image(figure, axes[1], prob, "cell probability")
    for ax, image, name in [
            (axes[2], overlay(raw, seg), f"segmentation ({segment_count(seg)} "
                                         "segments)"),
            (axes[3], color_labels(gt.astype(np.int64)), "ground truth")]:
        ax.imshow(image)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    figure.suptitle(title, fontsize=10)
    return figure


def probability_and_segmentation(raw: np.ndarray, prob: np.ndarray, seg: np.ndarray
                                 ) -> Figure:
    """Cell probability beside the segmentation over the input (the live threshold view).

    Args:
        raw: ``(Y, X)`` uint8 or float image.
        prob: ``(Y, X)`` cell probability in [0, 1].
        seg: ``(Y, X)`` predicted labels (0 = boundary, if any).
    """
    figure = Figure(figsize=(12, 6))
    axes = figure.subplots(1, 2)
    axes[0].imshow(prob, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("cell probability")
    axes[1].imshow(overlay(raw, seg))
    axes[1].set_title(f"{segment_count(seg)} segments")
    for ax in axes:
        ax.axis("off")
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
    _epoch_axis(ax)
    ax.set_ylabel(COLUMN_LABELS.get(column, column))
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return figure


def single_image(image: np.ndarray, title: str, *, probability: bool = False) -> Figure:
    """One image: a grey crop, an RGB overlay, or (``probability``) a map with colour bar."""
    figure = Figure(figsize=(5, 4.6))
    ax = figure.subplots()
    if probability:
        _probability_image(figure, ax, image, "")
    else:
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        ax.axis("off")
    figure.suptitle(title, fontsize=9)
    return figure


def segmentation_difference(seg_a: np.ndarray, seg_b: np.ndarray, title: str,
                            names: tuple[str, str] = ("2D", "3D")) -> Figure:
    """Where two segmentations of one crop disagree: outlines of ``seg_a`` only (magenta),
    of ``seg_b`` only (green), of both (white)."""
    from skimage.segmentation import find_boundaries

    edges_a, edges_b = find_boundaries(seg_a), find_boundaries(seg_b)
    rgb = np.zeros((*seg_a.shape, 3))
    rgb[edges_a & ~edges_b] = (1.0, 0.0, 1.0)
    rgb[edges_b & ~edges_a] = (0.0, 0.8, 0.0)
    rgb[edges_a & edges_b] = (1.0, 1.0, 1.0)
    figure = single_image(rgb, title)
    figure.axes[0].set_title(f"magenta: {names[0]} only · green: {names[1]} only · white: both",
                             fontsize=8)
    return figure


def probability_difference(prob_a: np.ndarray, prob_b: np.ndarray, title: str,
                           names: tuple[str, str] = ("2D", "3D")) -> Figure:
    """``prob_a - prob_b`` on a diverging scale with its colour bar."""
    figure = Figure(figsize=(5.2, 4.6))
    ax = figure.subplots()
    image = ax.imshow(prob_a - prob_b, cmap="RdBu", vmin=-1, vmax=1)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02,
                    label=f"P(cell) {names[0]} - P(cell) {names[1]}")
    ax.axis("off")
    figure.suptitle(title, fontsize=9)
    return figure


def segmentation_examples(raw: np.ndarray, segmentations: dict[str, np.ndarray], title: str
                          ) -> Figure:
    """The input and one segmentation overlay per label, side by side (``(Y, X)`` each)."""
    panels = [("input", None), *segmentations.items()]
    figure = Figure(figsize=(4.2 * len(panels), 4.6))
    axes = figure.subplots(1, len(panels))
    for ax, (label, seg) in zip(axes, panels, strict=True):
        ax.imshow(raw if seg is None else overlay(raw, seg), cmap="gray" if seg is None else None)
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    figure.suptitle(title, fontsize=10)
    return figure


def drawable(text: str) -> str:
    """``text`` (holding file names) as matplotlib draws it, letter for letter: the bytes of
    a name the locale could not decode (Python's surrogate escapes, which matplotlib cannot
    draw) decoded as UTF-8 or shown as U+FFFD, and ``$`` not taken for mathematics."""
    readable = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return readable.replace("$", r"\$")


def segmentation_preview(samples: Sequence[SliceSample], title: str) -> Figure:
    """A whole-volume result at a few slices: one row per slice with the raw data (when it
    was segmented), the cell probability and the segmentation over the raw data (else over
    the probability), coloured with :func:`~emseg_lib.display.overlay`.

    Args:
        samples: the slices (:class:`~emseg_lib.preview.SliceSample`: ``(Y, X)`` arrays).
        title: what the volume is and where the result went (drawn as given,
            :func:`drawable`).
    """
    with_raw = any(sample.raw is not None for sample in samples)
    columns = 3 if with_raw else 2
    height, width = samples[0].prob.shape
    panel = 3.2
    figure = Figure(figsize=(panel * columns, panel * height / width * len(samples) + 0.6),
                    layout="constrained")
    axes = np.asarray(figure.subplots(len(samples), columns, squeeze=False))
    for row, sample in zip(axes, samples, strict=True):
        background = sample.raw if sample.raw is not None else sample.prob
        panels = [("raw", sample.raw, "gray")] if with_raw else []
        panels += [("cell probability", sample.prob, "gray"),
                   (f"segmentation ({segment_count(sample.labels)} "
                    "segments)", overlay(background, sample.labels.astype(np.int64)), None)]
        for ax, (name, image, cmap) in zip(row, panels, strict=True):
            ax.imshow(image, cmap=cmap, vmin=0 if cmap else None,
                      vmax=(255 if image.dtype == np.uint8 else 1) if cmap else None)
            ax.set_title(f"slice {sample.z}: {name}", fontsize=8)
            ax.axis("off")
    figure.suptitle(drawable(title), fontsize=9)
    return figure


def slice_scores(table: pd.DataFrame, title: str) -> Figure:
    """VOI split and merge (bits, left axis) and the adapted Rand error (right axis) per
    slice, from a per-slice score table (columns ``slice``, ``voi_split``, ``voi_merge``,
    ``arand``; :func:`~emseg_lib.evaluation.score_volume`), titled ``title`` as given
    (:func:`drawable`)."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    ax = figure.subplots()
    marker = "." if len(table) < 60 else None
    for column, label in [("voi_split", "VOI split (over-segmentation)"),
                          ("voi_merge", "VOI merge (under-segmentation)")]:
        ax.plot(table["slice"], table[column], marker=marker, label=label)
    ax.set_xlabel("slice (z)")
    ax.set_ylabel("VOI (bits)")
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    rand = ax.twinx()
    rand.plot(table["slice"], table["arand"], color="black", linestyle="--", marker=marker,
              label="adapted Rand error (right axis)")
    rand.set_ylabel("adapted Rand error (0 = perfect)")
    rand.set_ylim(0, 1)
    lines = ax.get_lines() + rand.get_lines()
    figure.legend(lines, [line.get_label() for line in lines], fontsize=8, ncols=3,
                  loc="outside lower center")
    ax.grid(alpha=0.3)
    ax.set_title(drawable(title), fontsize=9)
    return figure
