"""What a reader sees in a smoke run's figures (the session's ``run_all.sh --profile smoke``):
no figure is blank, every curve figure draws its data (a single-epoch curve included), and
the three 2D/3D comparison crops (figures 5.18, 5.22, 5.26) are three different crops."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

#: a pixel darker than this in some channel is ink, not the white background
BACKGROUND = 235
#: a pixel whose channels differ by this much is coloured (curves, markers), not grey
COLOURED = 50
#: coloured pixels a curve figure has at least: a legend alone has about 100 per entry
CURVE_INK = 400
#: file-name parts of the figures that plot curves
CURVE_NAMES = ("_accuracy", "_voi", "_arand", "_loss", "_losses", "_adv_pixel", "_val_acc")
#: figure numbers of the three input crops of the 2D/3D comparison
COMPARISON_INPUTS = ("5_18", "5_22", "5_26")


def _rgb(path: Path) -> np.ndarray:
    """``(H, W, 3)`` int pixels of a PNG."""
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int64)


def _figures(smoke_run) -> list[Path]:
    out, result = smoke_run
    assert result.returncode == 0, result.stderr[-3000:]
    figures = sorted((out / "figures").glob("*.png"))
    assert figures
    return figures


def _centre(path: Path) -> np.ndarray:
    """The middle third of a figure, grey: inside the image panel of a one-image figure."""
    grey = _rgb(path).mean(axis=2)
    height, width = grey.shape
    return grey[height // 3:2 * height // 3, width // 3:2 * width // 3]


def test_no_figure_is_blank(smoke_run):
    for path in _figures(smoke_run):
        rgb = _rgb(path)
        ink = (rgb.min(axis=2) < BACKGROUND).mean()
        assert ink > 0.02 and rgb.std() > 10, f"{path.name}: {ink:.1%} ink"


def test_every_curve_figure_draws_its_data(smoke_run):
    """A curve of one epoch drawn as a line without markers leaves nothing but its legend
    (figures 5.51 and 5.52 once had about 100 coloured pixels)."""
    curves = [p for p in _figures(smoke_run) if any(part in p.stem for part in CURVE_NAMES)]
    assert len(curves) >= 30
    for path in curves:
        rgb = _rgb(path)
        coloured = int((rgb.max(axis=2) - rgb.min(axis=2) >= COLOURED).sum())
        assert coloured >= CURVE_INK, f"{path.name}: {coloured} coloured pixels"


def test_comparison_crops_are_three_different_crops(smoke_run):
    figures = _figures(smoke_run)
    inputs = [next(p for p in figures if p.name.startswith(f"fig{n}_comparison_input"))
              for n in COMPARISON_INPUTS]
    for a, b in combinations(inputs, 2):
        centre_a, centre_b = _centre(a), _centre(b)
        rows, cols = min(centre_a.shape[0], centre_b.shape[0]), min(centre_a.shape[1],
                                                                     centre_b.shape[1])
        difference = np.abs(centre_a[:rows, :cols] - centre_b[:rows, :cols]).mean()
        assert difference > 5, f"{a.name} and {b.name} show the same crop"
