"""Figures 5.18-5.29: the same test crops by the 2D and the 3D UNet, three times (input, each
network's segmentation or probability map, where they differ).

The thesis cut 256-px crops from 1250-px slices. A slice smaller than twice that (the smoke
and quick profiles' synthetic volumes) gets crops of half its shorter edge instead, so that
the three crops never overlap (the same crop three times says nothing); every figure's caption
says the crop size it used and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from emseg_lib.errors import EmsegInputError
from emseg_lib.report.display import overlay
from emseg_lib.report.plots import probability_difference, segmentation_difference, single_image
from emseg_lib.report.thesis_numbers import COMPARISON_NUMBERS, file_stem

#: the thesis's crop edge (px)
THESIS_CROP = 256
#: the two networks compared, as the figures name them
NAMES = {"unet2d": "2D", "unet3d": "3D"}
KINDS = tuple(NAMES)


@dataclass(frozen=True)
class CropWindow:
    """A square crop of a slice: top-left corner ``(y, x)`` and edge ``side``, in px."""

    y: int
    x: int
    side: int

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, columns)`` to index a ``(Y, X)`` slice with."""
        return slice(self.y, self.y + self.side), slice(self.x, self.x + self.side)

    def overlaps(self, other: CropWindow) -> bool:
        """Whether the two windows share a pixel."""
        return (self.y < other.y + other.side and other.y < self.y + self.side
                and self.x < other.x + other.side and other.x < self.x + self.side)

    def describe(self) -> str:
        """``"y 0-96, x 96-192"`` (end exclusive)."""
        return f"y {self.y}-{self.y + self.side}, x {self.x}-{self.x + self.side}"


def crop_side(shape: tuple[int, int], side: int = THESIS_CROP) -> int:
    """The crop edge (px) for a ``(Y, X)`` slice: ``side``, at most half the shorter edge.

    Raises:
        EmsegInputError: a slice under 2 px along an edge, or ``side`` < 1.
    """
    if side < 1 or min(shape) < 2:
        raise EmsegInputError(f"no crop of {side} px fits twice into a slice of {shape} px")
    return min(side, shape[0] // 2, shape[1] // 2)


def crop_windows(shape: tuple[int, int], side: int = THESIS_CROP, count: int = 3
                 ) -> list[CropWindow]:
    """``count`` pairwise disjoint crops of a ``(Y, X)`` slice, edge :func:`crop_side`.

    Taken in this order where they do not overlap one already taken: top left, bottom
    right, centre, top right, bottom left (on a 1250-px slice with 256-px crops: top left,
    bottom right and centre, as in the thesis).

    Raises:
        EmsegInputError: ``count`` not in 1-4 (four always fit; a fifth need not).
    """
    if not 1 <= count <= 4:
        raise EmsegInputError(f"count must be 1 to 4 crops, got {count}")
    edge = crop_side(shape, side)
    bottom, right = shape[0] - edge, shape[1] - edge
    candidates = [CropWindow(0, 0, edge), CropWindow(bottom, right, edge),
                  CropWindow(bottom // 2, right // 2, edge), CropWindow(0, right, edge),
                  CropWindow(bottom, 0, edge)]
    windows: list[CropWindow] = []
    for window in candidates:
        if len(windows) < count and not any(window.overlaps(w) for w in windows):
            windows.append(window)
    return windows


def size_note(shape: tuple[int, int], side: int = THESIS_CROP) -> str:
    """One sentence on the crop edge :func:`crop_side` chose for a ``(Y, X)`` slice."""
    edge = crop_side(shape, side)
    if edge == side:
        return f"{edge} px crops, as in the thesis"
    return (f"{edge} px crops: the thesis's {side} px clipped to half the "
            f"{shape[0]} x {shape[1]} px slice, so that the crops do not overlap")


def comparison_figures(raw: np.ndarray, probs: Mapping[str, np.ndarray],
                       segmentations: Mapping[str, np.ndarray], *, where: str, caption: str,
                       side: int = THESIS_CROP) -> dict[str, Figure]:
    """Figures 5.18-5.29, keyed by their file stem (``fig5_18_comparison_input`` ...).

    For each entry of :data:`~emseg_lib.report.thesis_numbers.COMPARISON_NUMBERS` and each window
    of :func:`crop_windows`: the input crop, both networks' segmentation overlays (or
    probability maps) and where they differ.

    Args:
        raw: ``(Y, X)`` the slice (uint8 or float).
        probs: ``{"unet2d": (Y, X), "unet3d": (Y, X)}`` cell probabilities of the slice.
        segmentations: the same keys, ``(Y, X)`` labels of the slice.
        where: which slice, e.g. ``"test slice 27"``.
        caption: the rest of every caption: checkpoints, thresholds, data source, profile.
    """
    shape = raw.shape
    windows = crop_windows(shape, side, len(COMPARISON_NUMBERS))
    figures = {}
    for i, (numbers, window) in enumerate(zip(COMPARISON_NUMBERS, windows, strict=True), 1):
        rows = window.slices
        detail = (f"{where}, crop {i} of {len(windows)}: {window.describe()} "
                  f"({size_note(shape, side)}) · {caption}")
        what = numbers["what"]
        figures[f"{file_stem('fig', numbers['input'])}_comparison_input"] = single_image(
            raw[rows], f"Figure {numbers['input']} — crop of input", caption=detail)
        for kind in KINDS:
            title = f"Figure {numbers[kind]} — {kind} {what}"
            figures[f"{file_stem('fig', numbers[kind])}_comparison_{kind}"] = (
                single_image(overlay(raw[rows], segmentations[kind][rows]), title,
                             caption=detail) if what == "segmentation" else
                single_image(probs[kind][rows], title, probability=True, caption=detail))
        title = f"Figure {numbers['difference']} — 2D vs 3D {what}"
        names = (NAMES[KINDS[0]], NAMES[KINDS[1]])
        figures[f"{file_stem('fig', numbers['difference'])}_comparison_difference"] = (
            segmentation_difference(segmentations[KINDS[0]][rows],
                                    segmentations[KINDS[1]][rows], title, names, detail)
            if what == "segmentation" else
            probability_difference(probs[KINDS[0]][rows], probs[KINDS[1]][rows], title,
                                   names, detail))
    return figures
