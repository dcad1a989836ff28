"""The seeded method's seed threshold derived from the probability map itself.

A fixed ``seed_th`` suits one network's confidence only: 0.95 was best on one network's map
of the VNC stack, but a map whose cells reach 0.7 has no pixel above 0.95 (each slice becomes
one segment), and a less confident network's cells lose their seeds and are flooded by their
neighbours. Each rule here places ``seed_th`` between the map's own membrane and interior
levels, measured on the smoothed map (per slice in 2D, per volume in 3D):

* ``range`` — ``lo + f (hi - lo)``, ``lo`` and ``hi`` the 1st and 99th percentiles;
* ``otsu`` — ``otsu + f (hi - otsu)``, Otsu's threshold between membrane and interior;
* ``fixed`` — ``f`` itself, whatever the map (the old behaviour, for comparison).

``range`` and ``otsu`` move with the map: the same cells at another contrast (``a p + b``,
``a > 0``) get the same seeds, so the same segmentation. The free parameter ``f`` of each rule
was chosen by ``benchmarks/generalisation.py`` leaving one stack out at a time (never on the
stack it is scored on); :data:`DEFAULT_RULE` and :data:`DEFAULT_FRACTION` are what it chose on
every stack (README, "Defaults on stacks nobody tuned on"), with the smoothing
:data:`DEFAULT_SMOOTH_NM` and the smallest seed :data:`DEFAULT_MIN_SEED_NM2`, both in nm so
that they mean the same in the tissue whatever the pixel size (:func:`default_smooth_px`,
:func:`default_min_seed_px`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from skimage.filters import threshold_otsu

#: percentiles of the smoothed map taken as its membrane (lo) and interior (hi) levels
LO_PERCENTILE, HI_PERCENTILE = 1.0, 99.0


def map_levels(smoothed: np.ndarray) -> tuple[float, float]:
    """``(lo, hi)``: the 1st and 99th percentiles of a smoothed map (any shape)."""
    lo, hi = np.percentile(smoothed, [LO_PERCENTILE, HI_PERCENTILE])
    return float(lo), float(hi)


def _range_threshold(smoothed: np.ndarray, fraction: float) -> float:
    lo, hi = map_levels(smoothed)
    return lo + fraction * (hi - lo)


def _otsu_threshold(smoothed: np.ndarray, fraction: float) -> float:
    _, hi = map_levels(smoothed)
    if hi <= float(smoothed.min()):
        return hi
    otsu = float(threshold_otsu(smoothed))
    return otsu + fraction * (hi - otsu)


def _fixed_threshold(_smoothed: np.ndarray, value: float) -> float:
    return value


@dataclass(frozen=True)
class SeedRule:
    """A way to derive ``seed_th`` from a smoothed map, with one free parameter.

    Attributes:
        name: the rule's name.
        formula: how ``seed_th`` follows from the map and the parameter ``f``.
        candidates: the parameter values the leave-one-stack-out benchmark compares.
        threshold: ``(smoothed map, f) -> seed_th``.
    """

    name: str
    formula: str
    candidates: tuple[float, ...]
    threshold: Callable[[np.ndarray, float], float]

    def bind(self, value: float) -> Callable[[np.ndarray], float]:
        """The rule at parameter ``value``: ``smoothed map -> seed_th`` in [0, 1]."""
        def derive(smoothed: np.ndarray) -> float:
            return float(np.clip(self.threshold(smoothed, value), 0.0, 1.0))
        return derive

    def describe(self, value: float) -> str:
        return f"{self.name}: {self.formula}, f {value:g}"


#: the rule and parameter the seeded method uses (chosen leaving one stack out; see above)
DEFAULT_RULE, DEFAULT_FRACTION = "range", 0.85
#: the seeded method's smoothing sigma in nm in the plane (chosen with the rule): a sigma in
#: pixels would smooth a 4.6 nm stack half as much, in the tissue, as a 10 nm one
DEFAULT_SMOOTH_NM = 5.0
#: the in-plane pixel size assumed for a map that comes without one (CREMI's 4 nm, as the
#: command line's default ``--resolution 40 4 4``)
ASSUMED_PIXEL_NM = 4.0


#: the smallest seed the seeded method keeps, in nm² of the section plane (chosen with the
#: rule): 16 pixels, the old fixed size, was 340 nm² at 4.6 nm but 1600 nm² at 10 nm, and on
#: the finer stack the spurious small seeds it kept split cells
DEFAULT_MIN_SEED_NM2 = 3200.0


def pixel_nm_of(sampling: Sequence[float] | None) -> float:
    """The in-plane pixel size in nm: the finest axis of ``sampling`` (the voxel size in nm,
    ``(Y, X)`` or ``(Z, Y, X)``), :data:`ASSUMED_PIXEL_NM` when None."""
    return float(min(sampling)) if sampling is not None else ASSUMED_PIXEL_NM


def default_smooth_px(sampling: Sequence[float] | None) -> float:
    """:data:`DEFAULT_SMOOTH_NM` in pixels of ``sampling`` (:func:`pixel_nm_of`)."""
    return round(DEFAULT_SMOOTH_NM / pixel_nm_of(sampling), 3)


def min_seed_px_of(area_nm2: float, pixel_nm: float) -> int:
    """The smallest seed, in pixels of ``pixel_nm`` nm, for an area of ``area_nm2`` nm² (at
    least 1). A 3D seed is held to the same number of voxels: as large as that area in one
    section."""
    return max(1, round(area_nm2 / pixel_nm ** 2))


def default_min_seed_px(sampling: Sequence[float] | None) -> int:
    """:data:`DEFAULT_MIN_SEED_NM2` in pixels of ``sampling`` (:func:`pixel_nm_of`)."""
    return min_seed_px_of(DEFAULT_MIN_SEED_NM2, pixel_nm_of(sampling))

_FRACTIONS = tuple(round(v, 2) for v in np.arange(0.05, 0.96, 0.05))
RULES: dict[str, SeedRule] = {
    "range": SeedRule("range", "seed_th = lo + f (hi - lo), lo/hi = 1st/99th percentile",
                      _FRACTIONS, _range_threshold),
    "otsu": SeedRule("otsu", "seed_th = otsu + f (hi - otsu), hi = 99th percentile",
                     _FRACTIONS, _otsu_threshold),
    "fixed": SeedRule("fixed", "seed_th = f", (*_FRACTIONS, 0.97, 0.98, 0.99),
                      _fixed_threshold),
}
