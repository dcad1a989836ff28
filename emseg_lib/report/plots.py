"""Matplotlib figures shared by the notebooks and the command line (training curves,
segmentation panels, 2D/3D comparisons, transfer-learning examples, GAN losses, previews of
whole-volume results, per-slice scores).

Each function returns a :class:`matplotlib.figure.Figure` and never saves or shows it; the
notebook decides (:func:`~emseg_lib.report.saving.save_figure` does both). A figure carries a short
``title`` (its number and a few words) above its panels and a ``caption`` below them: what the
data is (e.g. :attr:`EMVolume.caption`, so a figure made from synthetic data says so), which
checkpoint, thresholds and profile; both are wrapped to the figure's width
(:func:`set_titles`). Axes carry units: VOI in bits, accuracy as a fraction of pixels, epochs
as integers; a curve of a single epoch is drawn as a marker and says so.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from itertools import cycle

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from emseg_lib.output.preview import SliceSample
from emseg_lib.report.display import color_labels, overlay
from emseg_lib.report.thesis_numbers import CURVE_COLOURS
from emseg_lib.scoring.metrics import segment_count

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

#: axis labels of the Boundless loss columns
GAN_LOSS_LABELS = {
    "g_loss": "generator loss (L1 + 0.01 x hinge)",
    "d_loss": "hinge loss",
    "adv_loss": "hinge loss",
    "pixel_loss": "L1 (grey values in [-1, 1])",
}

TITLE_SIZE = 10
CAPTION_SIZE = 8
#: average glyph width of matplotlib's default sans-serif font, in ems, rounded up so that
#: wrapped lines fit
GLYPH_EM = 0.6
#: matplotlib's default colour cycle, by name
TAB10 = tuple(f"tab:{name}" for name in ("blue", "orange", "green", "red", "purple", "brown",
                                          "pink", "gray", "olive", "cyan"))
#: curves of fewer points than this get a marker on every point
FEW_POINTS = 30
#: the width (epochs) over which the labels' markers of a single-epoch plot are spread
DODGE = 0.6


def wrap_to_width(text: str, width_in: float, fontsize: float) -> str:
    """``text`` broken into lines no wider than ``width_in`` inches at ``fontsize`` points
    (its own line breaks are kept)."""
    chars = max(16, int(width_in * 72 / (fontsize * GLYPH_EM)))
    return "\n".join(textwrap.fill(line, chars) for line in text.splitlines())


def set_titles(figure: Figure, title: str, caption: str = "") -> Figure:
    """``title`` above the panels and ``caption`` below them, each wrapped to the figure's
    width; constrained layout keeps them, colour bars and panels from overlapping.

    Args:
        title: the figure's number and a few words (``"Figure 5.9 — unet2d, validation"``).
        caption: the detail: data source (the SYNTHETIC note), checkpoint, slice,
            thresholds, profile.
    """
    figure.set_layout_engine("constrained")
    width = figure.get_figwidth()
    figure.suptitle(wrap_to_width(title, width, TITLE_SIZE), fontsize=TITLE_SIZE)
    if caption:
        figure.supxlabel(wrap_to_width(caption, width, CAPTION_SIZE), fontsize=CAPTION_SIZE)
    return figure


def _marker(n_points: int) -> dict[str, object]:
    """Line keywords: a marker on every point of a short curve, a large one on a single
    point (a one-point line is otherwise invisible)."""
    if n_points >= FEW_POINTS:
        return {}
    return {"marker": "o", "markersize": 7 if n_points == 1 else 4}


def _step_axis(ax, steps: Sequence[float], unit: str = "epoch") -> None:
    """An x axis of whole units (epochs, iterations, generator steps), labelled ``unit``.

    A single ``unit`` gets one ``unit`` of margin either side, its own tick alone and an
    axis label saying that each curve is a single point (matplotlib would draw a range of
    ±0.05 around it).
    """
    values = np.unique(np.asarray(steps))
    ax.set_xlabel(unit)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(values) == 1:
        ax.set_xlim(values[0] - 1, values[0] + 1)
        ax.set_xticks(values)
        ax.set_xlabel(f"{unit}\n(one {unit} only, {unit} {values[0]:g}: each curve is a "
                      "single point)")


def training_curve(history: pd.DataFrame, curve: str, caption: str = "",
                   number: str | None = None) -> Figure:
    """One of :data:`CURVES` against the epoch (validation metrics: thesis protocol).

    Args:
        history: one row per epoch (``epoch`` and the curve's columns).
        caption: what was trained on what (model kind, data source, profile).
        number: the thesis's figure number, put in the title.
    """
    title, ylabel, series = CURVES[curve]
    figure = Figure(figsize=(6, 3.8), layout="constrained")
    ax = figure.subplots()
    for column, label in series:
        ax.plot(history["epoch"], history[column], label=label, **_marker(len(history)))
    _step_axis(ax, history["epoch"])
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return set_titles(figure, f"Figure {number} — {title}" if number else title, caption)


def _probability_image(figure: Figure, ax, prob: np.ndarray, title: str) -> None:
    """``prob`` in grey on [0, 1] with its colour bar beside ``ax`` and a thin frame (a map
    that is white almost everywhere stays visible)."""
    image = ax.imshow(prob, cmap="gray", vmin=0, vmax=1)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="P(cell interior)")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def segmentation_panel(raw: np.ndarray, prob: np.ndarray, seg: np.ndarray, gt: np.ndarray,
                       title: str, caption: str = "") -> Figure:
    """Input, probability (with colour bar), segmentation over the input, ground truth.

    Args:
        raw: ``(Y, X)`` uint8 or float image.
        prob: ``(Y, X)`` cell probability.
        seg: ``(Y, X)`` predicted labels (0 = boundary, if any).
        gt: ``(Y, X)`` ground-truth ids.
        title, caption: see :func:`set_titles`.
    """
    figure = Figure(figsize=(14, 4.2), layout="constrained")
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
    return set_titles(figure, title, caption)


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


def curve_colours(labels: Sequence[str], thesis: Mapping[str, str] = CURVE_COLOURS
                  ) -> dict[str, str]:
    """A colour per curve label: the thesis's
    (:data:`~emseg_lib.report.thesis_numbers.CURVE_COLOURS`) where its caption names one, else the
    next tab10 colour that no label of the figure has from the thesis (repeating after ten)."""
    taken = {thesis[label] for label in labels if label in thesis}
    free = cycle([colour for colour in TAB10 if colour not in taken] or TAB10)
    return {label: thesis[label] if label in thesis else next(free) for label in labels}


def seed_band_curves(runs: dict[str, list[pd.DataFrame]], column: str, title: str,
                     caption: str = "") -> Figure:
    """Mean over seeds of ``column`` against the epoch, with the min-max band, per label, in
    the thesis's colours (:func:`curve_colours`).

    With a single epoch every label is a marker with a min-max error bar, the labels spread
    a little along x so that none hides another.

    Args:
        runs: ``{label: [history of seed 0, history of seed 1, ...]}``.
        column: a history column, e.g. ``"val_acc"`` or ``"val_voi_before"``.
        title, caption: see :func:`set_titles`.
    """
    figure = Figure(figsize=(7, 4.4), layout="constrained")
    ax = figure.subplots()
    colours = curve_colours(list(runs))
    epochs: list[float] = []
    for i, (label, histories) in enumerate(runs.items()):
        values = pd.concat([h.set_index("epoch")[column] for h in histories], axis=1)
        x, mean = values.index.to_numpy(dtype=float), values.mean(axis=1).to_numpy()
        low, high = values.min(axis=1).to_numpy(), values.max(axis=1).to_numpy()
        name, colour = f"{label} (n={len(histories)})", colours[label]
        epochs.extend(x)
        if len(x) == 1:
            shift = DODGE * (i / max(len(runs) - 1, 1) - 0.5) if len(runs) > 1 else 0.0
            ax.errorbar(x + shift, mean, yerr=[mean - low, high - mean], color=colour,
                        label=name, capsize=5, **_marker(1))
        else:
            ax.plot(x, mean, color=colour, label=name, **_marker(len(x)))
            ax.fill_between(x, low, high, color=colour, alpha=0.2)
    _step_axis(ax, epochs)
    ax.set_ylabel(COLUMN_LABELS.get(column, column))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return set_titles(figure, title, caption)


def single_image(image: np.ndarray, title: str, *, probability: bool = False,
                 caption: str = "") -> Figure:
    """One image: a grey crop, an RGB overlay, or (``probability``) a map with colour bar.

    Args:
        image: ``(Y, X)`` grey or probability, or ``(Y, X, 3)`` RGB.
        title, caption: see :func:`set_titles`.
    """
    figure = Figure(figsize=(5, 5), layout="constrained")
    ax = figure.subplots()
    if probability:
        _probability_image(figure, ax, image, "")
    else:
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
        ax.axis("off")
    return set_titles(figure, title, caption)


def segmentation_difference(seg_a: np.ndarray, seg_b: np.ndarray, title: str,
                            names: tuple[str, str] = ("2D", "3D"), caption: str = ""
                            ) -> Figure:
    """Where two ``(Y, X)`` segmentations of one crop disagree: outlines of ``seg_a`` only
    (magenta), of ``seg_b`` only (green), of both (white)."""
    from skimage.segmentation import find_boundaries

    edges_a, edges_b = find_boundaries(seg_a), find_boundaries(seg_b)
    rgb = np.zeros((*seg_a.shape, 3))
    rgb[edges_a & ~edges_b] = (1.0, 0.0, 1.0)
    rgb[edges_b & ~edges_a] = (0.0, 0.8, 0.0)
    rgb[edges_a & edges_b] = (1.0, 1.0, 1.0)
    figure = single_image(rgb, title, caption=caption)
    figure.axes[0].set_title(f"magenta: {names[0]} only · green: {names[1]} only · white: both",
                             fontsize=8)
    return figure


def probability_difference(prob_a: np.ndarray, prob_b: np.ndarray, title: str,
                           names: tuple[str, str] = ("2D", "3D"), caption: str = ""
                           ) -> Figure:
    """``prob_a - prob_b`` (``(Y, X)`` each) on a diverging scale with its colour bar."""
    figure = Figure(figsize=(5.2, 5), layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(prob_a - prob_b, cmap="RdBu", vmin=-1, vmax=1)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02,
                    label=f"P(cell) {names[0]} - P(cell) {names[1]}")
    ax.set_xticks([])
    ax.set_yticks([])
    return set_titles(figure, title, caption)


def segmentation_examples(raw: np.ndarray, segmentations: dict[str, np.ndarray], title: str,
                          caption: str = "") -> Figure:
    """The input and one segmentation overlay per label, side by side (``(Y, X)`` each)."""
    panels = [("input", None), *segmentations.items()]
    figure = Figure(figsize=(4.2 * len(panels), 5), layout="constrained")
    axes = figure.subplots(1, len(panels))
    for ax, (label, seg) in zip(axes, panels, strict=True):
        ax.imshow(raw if seg is None else overlay(raw, seg), cmap="gray" if seg is None else None)
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    return set_titles(figure, title, caption)


def stylegan_losses(history: pd.DataFrame, title: str, caption: str = "") -> Figure:
    """Generator and discriminator loss of the StyleGAN against the iteration (figure 5.1).

    Args:
        history: one row per iteration: ``iteration``, ``resolution``, ``g_loss``,
            ``d_loss`` (logistic losses; ``d_loss`` without R1). Drawn as running means
            over 1/50 of the run; grey vertical lines where a new resolution fades in.
        title, caption: see :func:`set_titles`.
    """
    window = max(1, len(history) // 50)
    figure = Figure(figsize=(8, 4.4), layout="constrained")
    ax = figure.subplots()
    for column, label in [("g_loss", "generator"), ("d_loss", "discriminator (without R1)")]:
        ax.plot(history["iteration"], history[column].rolling(window, min_periods=1).mean(),
                label=label, **_marker(len(history)))
    for iteration in history.groupby("resolution")["iteration"].min().iloc[1:]:
        ax.axvline(iteration, color="grey", lw=0.5)
    _step_axis(ax, history["iteration"], "iteration")
    ax.set_xlabel(f"{ax.get_xlabel()} (grey lines: a new resolution fades in)")
    ax.set_ylabel(f"logistic loss (running mean of {window} iterations)")
    ax.legend(fontsize=8)
    return set_titles(figure, title, caption)


def boundless_losses(history: pd.DataFrame, columns: Sequence[str], title: str,
                     caption: str = "") -> Figure:
    """Train and validation curves of Boundless losses, one panel per loss (figures
    5.31-5.38).

    Args:
        history: one row per evaluation: ``step`` (generator steps) and ``train_<c>``,
            ``val_<c>`` for every ``c`` of ``columns`` (see :data:`GAN_LOSS_LABELS`).
        title, caption: see :func:`set_titles`.
    """
    figure = Figure(figsize=(11, 4), layout="constrained")
    axes = figure.subplots(1, len(columns), squeeze=False)[0]
    for ax, column in zip(axes, columns, strict=True):
        for split, label in [("train", "train"), ("val", "validation")]:
            ax.plot(history["step"], history[f"{split}_{column}"], label=label,
                    **_marker(len(history)))
        _step_axis(ax, history["step"], "generator step")
        ax.set_title(column, fontsize=9)
        ax.set_ylabel(GAN_LOSS_LABELS.get(column, column))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return set_titles(figure, title, caption)


def extension_examples_figure(examples: Mapping[str, np.ndarray], title: str,
                              caption: str = "") -> Figure:
    """One row per crop: the masked crop, the generator's composite and the truth (figures
    5.30, 5.33, 5.36).

    Args:
        examples: ``masked``, ``predicted`` and ``truth``, ``(N, S, S)`` each, grey values
            in [-1, 1] (:func:`~emseg_lib.experiments.gans.extension_examples`).
        title, caption: see :func:`set_titles`.
    """
    names = ["masked", "predicted", "truth"]
    rows = len(examples[names[0]])
    figure = Figure(figsize=(9, 3 * rows + 0.8), layout="constrained")
    axes = figure.subplots(rows, len(names), squeeze=False)
    for row in range(rows):
        for col, name in enumerate(names):
            axes[row, col].imshow(examples[name][row], cmap="gray", vmin=-1, vmax=1)
            axes[row, col].axis("off")
    for ax, name in zip(axes[0], names, strict=True):
        ax.set_title(name, fontsize=9)
    return set_titles(figure, title, caption)


def drawable(text: str) -> str:
    """``text`` (holding file names) as matplotlib draws it, letter for letter: the bytes of
    a name the locale could not decode (Python's surrogate escapes, which matplotlib cannot
    draw) decoded as UTF-8 or shown as U+FFFD, and ``$`` not taken for mathematics."""
    readable = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return readable.replace("$", r"\$")


def segmentation_preview(samples: Sequence[SliceSample], title: str) -> Figure:
    """A whole-volume result at a few slices: one row per slice with the raw data (when it
    was segmented), the cell probability and the segmentation over the raw data (else over
    the probability), coloured with :func:`~emseg_lib.report.display.overlay`.

    Args:
        samples: the slices (:class:`~emseg_lib.output.preview.SliceSample`: ``(Y, X)`` arrays).
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
    ``arand``; :func:`~emseg_lib.scoring.evaluation.score_volume`), titled ``title`` as given
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
