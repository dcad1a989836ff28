"""The figure builders on tiny inputs: single-epoch curves are visible and say so, titles and
captions fit the figure, colour bars keep off the next panel, the thesis's curve colours,
and the 2D/3D comparison crops differ on slices smaller than the thesis's crops."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from emseg_lib.errors import EmsegInputError
from emseg_lib.experiments.transfer_sweep import EXPERIMENTS
from emseg_lib.report import plots
from emseg_lib.report.comparison import (
    THESIS_CROP,
    CropWindow,
    comparison_figures,
    crop_side,
    crop_windows,
)
from emseg_lib.report.thesis_numbers import CURVE_COLOURS

LONG = ("best.pt (epoch 0 of 2, lowest validation VOI under the CREMI protocol) · thesis method "
        "at sig_th 0.83 / edge_th 0.91 · SYNTHETIC EM volume (CREMI files absent) · profile "
        "smoke")


def _drawn(figure: Figure) -> Figure:
    """``figure`` laid out and drawn (by Agg, as ``savefig`` draws PNGs)."""
    FigureCanvasAgg(figure).draw()
    return figure


def _overflow(figure: Figure) -> float:
    """How far (inches) what ``figure`` draws reaches past its edges: a title wider than the
    figure makes ``savefig(bbox_inches="tight")`` widen the PNG around it."""
    drawn = _drawn(figure).get_tightbbox(figure.canvas.get_renderer())
    edges = figure.bbox_inches
    return max(edges.x0 - drawn.x0, drawn.x1 - edges.x1, edges.y0 - drawn.y0,
               drawn.y1 - edges.y1, 0.0)


def _one_epoch(value: float) -> pd.DataFrame:
    return pd.DataFrame({"epoch": [0], "val_acc": [value], "val_voi_before": [1 - value]})


def _series_points(ax) -> list[int]:
    """Number of points of every data line of ``ax`` (error-bar lines included)."""
    return [len(line.get_xdata()) for line in ax.get_lines()]


# --- single-epoch curves ------------------------------------------------------------------

def test_one_epoch_seed_band_plot_has_markers_an_epoch_axis_and_a_note():
    runs = {"8 pretrained + 9 random": [_one_epoch(0.6), _one_epoch(0.7)],
            "random init": [_one_epoch(0.65), _one_epoch(0.8)]}
    figure = _drawn(plots.seed_band_curves(runs, "val_acc", "Figure 5.51 — early stopping"))
    ax = figure.axes[0]
    low, high = ax.get_xlim()
    assert high - low >= 1.5  # not matplotlib's ±0.05 around the single epoch
    assert list(ax.get_xticks()) == [0]
    assert "one epoch only" in ax.get_xlabel()
    marked = [line for line in ax.get_lines() if line.get_marker() not in (None, "None", "")]
    assert len(marked) >= 2 and all(line.get_markersize() >= 5 for line in marked)
    centres = [line.get_xdata()[0] for line in marked]
    assert len(set(centres)) == 2  # the two labels do not hide each other


def test_one_epoch_training_curve_has_markers_and_a_wide_axis():
    history = pd.DataFrame({"epoch": [0], "train_acc": [0.5], "val_acc": [0.7]})
    figure = _drawn(plots.training_curve(history, "accuracy", "unet2d", number="5.4"))
    ax = figure.axes[0]
    assert np.diff(ax.get_xlim())[0] >= 1.5
    assert "one epoch only" in ax.get_xlabel()
    assert all(line.get_marker() == "o" for line in ax.get_lines())


def test_longer_training_curve_keeps_its_axis_and_no_note():
    history = pd.DataFrame({"epoch": range(5), "train_acc": np.linspace(0.5, 0.9, 5),
                            "val_acc": np.linspace(0.6, 0.8, 5)})
    ax = _drawn(plots.training_curve(history, "accuracy")).axes[0]
    assert ax.get_xlabel() == "epoch"
    assert ax.get_xlim()[0] <= 0 and ax.get_xlim()[1] >= 4
    assert all(tick == int(tick) for tick in ax.get_xticks())


def test_one_step_boundless_losses_are_visible():
    history = pd.DataFrame({"step": [3], **{f"{split}_{column}": [0.5] for split in
                                            ("train", "val") for column in ("g_loss", "d_loss")}})
    figure = _drawn(plots.boundless_losses(history, ["g_loss", "d_loss"], "Figure 5.31"))
    for ax in figure.axes:
        assert np.diff(ax.get_xlim())[0] >= 1.5
        assert "one generator step only" in ax.get_xlabel()
        assert all(line.get_marker() == "o" for line in ax.get_lines())


def test_short_gan_curves_get_markers_long_ones_do_not():
    def history(n: int) -> pd.DataFrame:
        return pd.DataFrame({"iteration": range(n), "resolution": [8] * n,
                             "g_loss": np.ones(n), "d_loss": np.ones(n)})

    short = plots.stylegan_losses(history(5), "Figure 5.1").axes[0]
    long = plots.stylegan_losses(history(500), "Figure 5.1").axes[0]
    assert {line.get_marker() for line in short.get_lines()[:2]} == {"o"}
    assert {line.get_marker() for line in long.get_lines()[:2]} == {"None"}


# --- titles, captions, colour bars ----------------------------------------------------------

def test_long_titles_and_captions_are_wrapped_inside_the_figure():
    raw = np.random.default_rng(0).random((32, 32))
    labels = np.ones((32, 32), dtype=np.int64)
    long_title = f"Figure 5.9 — unet2d ({LONG}), validation slice 26, {LONG}"
    figures = [
        plots.segmentation_panel(raw, raw, labels, labels, "Figure 5.9 — unet2d", LONG),
        plots.segmentation_panel(raw, raw, labels, labels, long_title),
        plots.single_image(raw, long_title, caption=LONG),
        plots.single_image(raw, "Figure 5.27", probability=True, caption=LONG),
        plots.probability_difference(raw, raw, "Figure 5.29", caption=LONG),
        plots.segmentation_difference(labels, labels, "Figure 5.21", caption=LONG),
        plots.segmentation_examples(raw, {"a": labels}, "Figure 5.42", LONG),
        plots.seed_band_curves({"a": [_one_epoch(0.5)]}, "val_acc", long_title, LONG),
    ]
    for figure in figures:
        assert _overflow(figure) < 0.02


def test_caption_keeps_the_synthetic_note_below_the_panels():
    raw = np.zeros((16, 16))
    figure = _drawn(plots.single_image(raw, "Figure 5.18", caption=LONG))
    caption = figure._supxlabel
    assert "SYNTHETIC" in caption.get_text().replace("\n", " ")
    assert caption.get_window_extent().y1 <= figure.axes[0].get_window_extent().y0
    assert figure._suptitle.get_text() == "Figure 5.18"


def test_colour_bar_and_its_label_keep_off_the_next_panel():
    raw = np.random.default_rng(1).random((64, 64))
    labels = np.ones((64, 64), dtype=np.int64)
    figure = _drawn(plots.segmentation_panel(raw, raw, labels, labels, "Figure 5.9", LONG))
    renderer = figure.canvas.get_renderer()
    colour_bar = next(ax for ax in figure.axes if ax.get_label() == "<colorbar>")
    segmentation = figure.axes[2]
    assert colour_bar.get_tightbbox(renderer).x1 <= segmentation.get_window_extent().x0


def test_wrap_to_width_keeps_line_breaks_and_shortens_lines():
    text = plots.wrap_to_width("a " * 200 + "\nsecond", 3, 10)
    lines = text.splitlines()
    assert len(lines) > 2 and lines[-1] == "second"
    assert max(map(len, lines)) <= 3 * 72 / (10 * plots.GLYPH_EM)


# --- the thesis's colours -------------------------------------------------------------------

def test_initialisation_curves_follow_the_thesis_caption():
    """Figures 5.46/5.47: blue all random, red all pretrained, green 8 random frozen, orange 8
    pretrained frozen + 9 random."""
    labels = list(EXPERIMENTS["initialisation"])
    assert set(labels) == set(CURVE_COLOURS)
    history = pd.DataFrame({"epoch": [0, 1], "val_acc": [0.5, 0.6]})
    figure = plots.seed_band_curves({label: [history] for label in labels}, "val_acc", "5.46")
    drawn = {line.get_label().rsplit(" (n=", 1)[0]: to_hex(line.get_color())
             for line in figure.axes[0].get_lines()}
    assert drawn == {"all random": to_hex("tab:blue"), "all pretrained": to_hex("tab:red"),
                     "8 random frozen": to_hex("tab:green"),
                     "8 pretrained frozen + 9 random": to_hex("tab:orange")}


def test_other_curves_never_reuse_a_thesis_colour_of_the_same_figure():
    colours = plots.curve_colours(["all pretrained", "something else", "another"])
    assert colours["all pretrained"] == "tab:red"
    assert len(set(colours.values())) == 3


# --- 2D / 3D comparison crops --------------------------------------------------------------

def test_crops_of_a_slice_smaller_than_the_thesis_crop_are_disjoint_and_differ():
    raw = np.random.default_rng(2).random((192, 192))
    windows = crop_windows(raw.shape)
    assert len(windows) == 3 and len(set(windows)) == 3
    assert {w.side for w in windows} == {96}
    for i, a in enumerate(windows):
        assert a.y + a.side <= 192 and a.x + a.side <= 192
        for b in windows[i + 1:]:
            assert not a.overlaps(b)
            assert not np.array_equal(raw[a.slices], raw[b.slices])


def test_large_slices_get_the_thesis_crops_top_left_bottom_right_centre():
    assert crop_windows((1250, 1250)) == [CropWindow(0, 0, 256), CropWindow(994, 994, 256),
                                          CropWindow(497, 497, 256)]
    assert crop_side((1250, 1250)) == THESIS_CROP


def test_crop_side_follows_the_shorter_edge_and_refuses_tiny_slices():
    assert crop_side((100, 1000)) == 50
    assert len(crop_windows((100, 1000), count=4)) == 4
    with pytest.raises(EmsegInputError):
        crop_side((1, 50))
    with pytest.raises(EmsegInputError):
        crop_windows((64, 64), count=5)


def test_comparison_figures_show_three_different_crops_and_say_their_size():
    rng = np.random.default_rng(3)
    raw = rng.random((40, 40))
    labels = rng.integers(1, 4, (40, 40))
    figures = comparison_figures(raw, {"unet2d": raw, "unet3d": raw[::-1]},
                                 {"unet2d": labels, "unet3d": labels[::-1]},
                                 where="test slice 7", caption="SYNTHETIC EM volume")
    assert len(figures) == 12
    inputs = [figures[f"fig5_{n}_comparison_input"] for n in (18, 22, 26)]
    crops = [f.axes[0].get_images()[0].get_array() for f in inputs]
    assert all(crop.shape == (20, 20) for crop in crops)
    assert not np.array_equal(crops[0], crops[1]) and not np.array_equal(crops[1], crops[2])
    caption = inputs[0]._supxlabel.get_text().replace("\n", " ")
    assert "20 px crops" in caption and "SYNTHETIC" in caption
    for figure in figures.values():
        assert _overflow(figure) < 0.02
