"""The seeded method's seed threshold derived from the probability map itself.

A fixed ``seed_th`` suits one network's confidence only: 0.95 was best on one network's map
of the VNC stack, but a map whose cells reach 0.7 has no pixel above 0.95 (each slice becomes
one segment), and a less confident network's cells lose their seeds and are flooded by their
neighbours.

The default (:func:`most_seeds_in_slices`, :func:`most_seeds_threshold`) takes the cut with
the most seeds. Below it the seeds of neighbouring cells touch through weak membranes and
merge; above it the seeds of the dimmer cells vanish. The cuts are placed in the map's own
range, so that the same cells at another contrast get the same segmentation. In 2D the seeds
of every slice of the stack (or of the chunk being segmented) are counted together; one slice
alone has too few cells for a stable peak. In 3D a seed region that touches its neighbour in
any one slice merges the two cells in every slice, so the thicker the volume the higher the
cut must be (``benchmarks/results/real_data/seeded_3d_thickness.md``); 3D seeds are counted,
at cuts in the upper half of the range. The rule has no free parameter.

The other rules here place ``seed_th`` by the map's levels, measured on the smoothed slice,
with one free parameter ``f`` (:data:`RULES`; ``benchmarks/generalisation.py`` compares them
with the default, leaving one stack out):

* ``range`` — ``lo + f (hi - lo)``, ``lo`` and ``hi`` the 1st and 99th percentiles;
* ``scale`` — ``f hi``: seeds are where the map is within ``1 - f`` of its own top;
* ``otsu`` — ``otsu + f (hi - otsu)``, Otsu's threshold between membrane and interior;
* ``fixed`` — ``f`` itself, whatever the map (the old behaviour, for comparison).

The smoothing :data:`DEFAULT_SMOOTH_NM` and the smallest seed :data:`DEFAULT_MIN_SEED_NM2`
are in nm, so that they mean the same in the tissue whatever the pixel size
(:func:`default_smooth_px`, :func:`default_min_seed_px`); ``generalisation.py`` chose them
leaving one stack out (README, "Defaults on stacks nobody tuned on").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from skimage.filters import threshold_otsu

from emseg_lib.postprocess.seed_counts import seed_counts

#: percentiles of the smoothed map taken as its membrane (lo) and interior (hi) levels
LO_PERCENTILE, HI_PERCENTILE = 1.0, 99.0


def map_levels(smoothed: np.ndarray) -> tuple[float, float]:
    """``(lo, hi)``: the 1st and 99th percentiles of a smoothed map (any shape)."""
    lo, hi = np.percentile(smoothed, [LO_PERCENTILE, HI_PERCENTILE])
    return float(lo), float(hi)


def _otsu_levels(smoothed: np.ndarray) -> tuple[float, float]:
    """``(otsu, hi)``: Otsu's threshold of the smoothed map and its 99th percentile (``hi``
    twice when the map is flat)."""
    _, hi = map_levels(smoothed)
    if hi <= float(smoothed.min()):
        return hi, hi
    return float(threshold_otsu(smoothed)), hi


def _between(levels: tuple[float, ...], fraction: float) -> float:
    low, high = levels
    return low + fraction * (high - low)


def _scaled(levels: tuple[float, ...], fraction: float) -> float:
    return fraction * levels[1]


def _no_levels(_smoothed: np.ndarray) -> tuple[float, ...]:
    return ()


def _itself(_levels: tuple[float, ...], value: float) -> float:
    return value


@dataclass(frozen=True)
class SeedRule:
    """A way to derive ``seed_th`` from a smoothed map, with one free parameter: the map's
    levels are measured once (:attr:`levels`), then placed by the parameter (:attr:`place`).

    Attributes:
        name: the rule's name.
        formula: how ``seed_th`` follows from the map and the parameter ``f``.
        candidates: the parameter values the leave-one-stack-out benchmark compares.
        levels: ``smoothed map -> its levels`` (a tuple of floats).
        place: ``(levels, f) -> seed_th`` (before clipping to [0, 1]).
    """

    name: str
    formula: str
    candidates: tuple[float, ...]
    levels: Callable[[np.ndarray], tuple[float, ...]]
    place: Callable[[tuple[float, ...], float], float]

    def threshold_at(self, levels: tuple[float, ...], value: float) -> float:
        """``seed_th`` in [0, 1] of a map with ``levels`` (:attr:`levels`) at parameter
        ``value``."""
        return float(np.clip(self.place(levels, value), 0.0, 1.0))

    def bind(self, value: float) -> Callable[[np.ndarray], float]:
        """The rule at parameter ``value``: ``smoothed map -> seed_th`` in [0, 1]."""
        def derive(smoothed: np.ndarray) -> float:
            return self.threshold_at(self.levels(smoothed), value)
        return derive

    def describe(self, value: float) -> str:
        return f"{self.name}: {self.formula}, f {value:g}"


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


def grid_steps(first: float, last: float, step: float) -> tuple[float, ...]:
    """``first, first + step, ..., last`` (``last`` included), rounded to 4 decimals: the
    threshold grids of the methods and rules."""
    return tuple(round(float(v), 4) for v in np.arange(first, last + step / 2, step))


#: the cuts :func:`most_seeds_in_slices` counts a stack's 2D seeds at, as fractions of the
#: smoothed map's range: ``lo + f (hi - lo)``, ``lo``/``hi`` its 1st/99th percentiles
MOST_SEEDS_FRACTIONS = grid_steps(0.3, 0.98, 0.02)
#: the cuts :func:`most_seeds_in_volume` counts 3D seeds at, as fractions of the range: the
#: upper half, where a 3D seed must be to keep cells apart through z
MOST_SEEDS_3D_FRACTIONS = grid_steps(0.5, 0.98, 0.02)


def most_seeds_threshold(smoothed: np.ndarray, min_seed_px: int,
                         candidates: Sequence[float], *, per_slice: bool = False) -> float:
    """The cut of ``candidates`` (each in [0, 1]) at which ``smoothed`` has the most seeds:
    face-connected components above it of at least ``min_seed_px`` pixels, counted at every
    cut in one sweep (:func:`~.seed_counts.seed_counts`); the first such on ties.

    Args:
        smoothed: ``(Z, Y, X)`` (or ``(Y, X)``) smoothed cell probability.
        min_seed_px: the smallest seed counted, in pixels (voxels in 3D).
        candidates: the cuts compared.
        per_slice: count each ``(Y, X)`` slice's 2D seeds and add them up (a stack segmented
            slice by slice), instead of 3D seeds.
    """
    counts = seed_counts(smoothed, candidates, min_seed_px, per_slice=per_slice)
    return float(candidates[int(np.argmax(counts))])


def cuts_in_range(smoothed: np.ndarray, fractions: Sequence[float]) -> tuple[float, ...]:
    """The cuts ``lo + f (hi - lo)`` for each ``f`` of ``fractions`` (the ``range`` rule),
    ``lo``/``hi`` the 1st/99th percentiles of ``smoothed``: the same cells at another contrast
    (``a p + b``, ``a > 0``) get the same cuts, moved with the map."""
    levels = map_levels(smoothed)
    return tuple(RULES["range"].threshold_at(levels, f) for f in fractions)


def most_seeds_in_slices(smoothed: np.ndarray, min_seed_px: int) -> float:
    """``seed_th`` of a stack segmented slice by slice: the cut with the most 2D seeds over all
    of its slices (:func:`most_seeds_threshold` with ``per_slice``), at the cuts
    :func:`cuts_in_range` places at :data:`MOST_SEEDS_FRACTIONS`.

    Args:
        smoothed: ``(Z, Y, X)`` or ``(Y, X)`` cell probability, each slice smoothed in-plane.
        min_seed_px: the smallest seed counted, in pixels.
    """
    return most_seeds_threshold(smoothed, min_seed_px,
                                cuts_in_range(smoothed, MOST_SEEDS_FRACTIONS), per_slice=True)


def most_seeds_in_volume(smoothed: np.ndarray, min_seed_px: int) -> float:
    """``seed_th`` of a volume segmented in 3D: the cut with the most 3D seeds, at the cuts
    :func:`cuts_in_range` places at :data:`MOST_SEEDS_3D_FRACTIONS`.

    Args:
        smoothed: ``(Z, Y, X)`` cell probability, smoothed.
        min_seed_px: the smallest seed counted, in voxels.
    """
    return most_seeds_threshold(smoothed, min_seed_px,
                                cuts_in_range(smoothed, MOST_SEEDS_3D_FRACTIONS))


#: how :class:`~emseg_lib.postprocess.methods.SeededMethod` derives ``seed_th`` (its help text)
DERIVED_SEED_TH = ("the cut with the most seeds: in 2D the most seeds over the slices of the "
                   "stack (or chunk) at lo + f (hi - lo), f 0.30-0.98, lo/hi = 1st/99th "
                   "percentile; in 3D the most 3D seeds at f 0.50-0.98")


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


RULES: dict[str, SeedRule] = {
    "scale": SeedRule("scale", "seed_th = f hi, hi = 99th percentile",
                      grid_steps(0.5, 0.98, 0.02), map_levels, _scaled),
    "range": SeedRule("range", "seed_th = lo + f (hi - lo), lo/hi = 1st/99th percentile",
                      grid_steps(0.3, 0.98, 0.02), map_levels, _between),
    "otsu": SeedRule("otsu", "seed_th = otsu + f (hi - otsu), hi = 99th percentile",
                     grid_steps(0.0, 0.98, 0.02), _otsu_levels, _between),
    "fixed": SeedRule("fixed", "seed_th = f", grid_steps(0.4, 0.98, 0.02), _no_levels, _itself),
}
