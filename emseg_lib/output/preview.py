"""A picture of a whole-volume result: a few evenly spaced slices kept while the volume is
segmented (:class:`PreviewSamples`), drawn by :func:`~emseg_lib.report.plots.segmentation_preview`
and written beside the output as ``NAME.preview.png`` (:func:`save_preview`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from emseg_lib.infra.atomic_files import atomic_path

PREVIEW_SLICES = 3


@dataclass(frozen=True)
class SliceSample:
    """One slice of a result.

    Attributes:
        z: its index in the volume.
        prob: ``(Y, X)`` cell probability in [0, 1].
        labels: ``(Y, X)`` segment ids.
        raw: ``(Y, X)`` uint8 raw intensities, when the raw data was segmented.
    """

    z: int
    prob: np.ndarray
    labels: np.ndarray
    raw: np.ndarray | None = None


def preview_slices(n_slices: int, count: int = PREVIEW_SLICES) -> list[int]:
    """``count`` evenly spaced slice indices of a stack of ``n_slices`` (the centres of
    ``count`` equal parts; fewer for a shorter stack)."""
    return sorted({(2 * i + 1) * n_slices // (2 * count) for i in range(count)})


class PreviewSamples:
    """Keeps the :func:`preview_slices` of a volume as its chunks go by (copies of a few
    slices: memory stays bounded)."""

    def __init__(self, n_slices: int, count: int = PREVIEW_SLICES) -> None:
        self.wanted = preview_slices(n_slices, count) if count > 0 else []
        self.samples: list[SliceSample] = []

    def take(self, z0: int, prob: np.ndarray, labels: np.ndarray,
             raw: np.ndarray | None = None) -> None:
        """Keep the wanted slices among ``z0 .. z0 + len(prob) - 1`` (arrays ``(z, Y, X)``)."""
        for z in self.wanted:
            if z0 <= z < z0 + len(prob):
                i = z - z0
                self.samples.append(SliceSample(z, prob[i].copy(), labels[i].copy(),
                                                None if raw is None else raw[i].copy()))


def preview_path(output: str | Path) -> Path:
    """``NAME.preview.png`` beside the output ``NAME.h5`` / ``NAME.zarr``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.preview.png")


def save_preview(figure: Figure, path: str | Path, dpi: int = 80) -> Path:
    """Write ``figure`` as a PNG at ``path``, atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, bbox_inches="tight")
    return path
