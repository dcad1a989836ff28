"""Segmentations from nearest-neighbour affinities, by two well-kept libraries (Lee et al.
2017; Funke et al. 2018; Wolf et al. 2018):

* ``waterz``: watershed supervoxels of the affinity graph, then agglomeration by mean affinity
  up to a ``threshold`` (waterz merges while ``1 - mean affinity`` of the best edge is below
  it: a higher threshold merges more);
* ``mws``: the mutex watershed (``mwatershed``) of ``affinity - bias``: edges above the bias
  attract, below it repel; a higher bias splits more.

Affinities are ``(3, Z, Y, X)`` float in [0, 1], channels z, y, x; channel ``c`` at voxel
``v`` is the affinity of ``v`` with its predecessor ``v - e_c`` (as
:func:`~emseg_lib.data.targets.affinities` and waterz define them). A 2D network's ``(2, Z,
Y, X)`` (y, x) affinities get a z channel of 0: no segment crosses slices.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from emseg_lib.errors import EmsegInputError

#: the channel orders an affinity file may come in (``zyx``: emseg's, waterz's)
CHANNEL_ORDERS = ("zyx", "xyz")
#: the nearest-neighbour offsets of the z, y, x channels (to the predecessor)
NEAREST_OFFSETS = ((-1, 0, 0), (0, -1, 0), (0, 0, -1))


def as_zyx(affinities: np.ndarray, order: str = "zyx") -> np.ndarray:
    """``(3, Z, Y, X)`` affinities with channels z, y, x, from ``(3, Z, Y, X)`` channels in
    ``order`` or ``(2, Z, Y, X)`` in-plane ones (y, x; ``order`` ``"zyx"``) or (x, y;
    ``"xyz"``).

    Raises:
        EmsegInputError: not 4-D, not 2 or 3 channels, or an unknown ``order``.
    """
    if order not in CHANNEL_ORDERS:
        raise EmsegInputError(f"the channel order must be one of {', '.join(CHANNEL_ORDERS)}, "
                              f"got {order!r}")
    if affinities.ndim != 4 or affinities.shape[0] not in (2, 3):
        raise EmsegInputError(f"affinities must be (C, Z, Y, X) with C = 3 (z, y, x) or 2 "
                              f"(y, x), got shape {affinities.shape}")
    channels = affinities if order == "zyx" else affinities[::-1]
    if channels.shape[0] == 2:
        channels = np.concatenate([np.zeros_like(channels[:1]), channels])
    return np.ascontiguousarray(channels, dtype=np.float32)


@contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Mute what C++ code prints on the process's standard output (waterz's progress)."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 (a closed stdout): nothing to mute
        yield
        return
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def waterz_segment(affinities: np.ndarray, threshold: float) -> np.ndarray:
    """Watershed supervoxels agglomerated by mean affinity up to ``threshold`` (waterz):
    ``(Z, Y, X)`` uint64 ids from 1 (every voxel), from ``(3, Z, Y, X)`` zyx affinities."""
    import waterz

    with _quiet_stdout():
        labels = next(waterz.agglomerate(np.ascontiguousarray(affinities, dtype=np.float32),
                                         [float(threshold)]))
    return _dense(labels)


def mws_segment(affinities: np.ndarray, bias: float) -> np.ndarray:
    """The mutex watershed of ``affinities - bias`` (mwatershed): ``(Z, Y, X)`` uint64 ids
    from 1, from ``(3, Z, Y, X)`` zyx affinities."""
    import mwatershed

    weights = np.asarray(affinities, dtype=np.float64) - float(bias)
    return _dense(mwatershed.agglom(weights, offsets=[list(o) for o in NEAREST_OFFSETS]))


def _dense(labels: np.ndarray) -> np.ndarray:
    """``labels`` with every voxel in a segment: waterz leaves voxels without any affinity
    above its low threshold at 0; each becomes a segment of its own."""
    labels = np.asarray(labels, dtype=np.uint64)
    zero = labels == 0
    if zero.any():
        labels = labels.copy()
        labels[zero] = labels.max() + 1 + np.arange(int(zero.sum()), dtype=np.uint64)
    return labels


@dataclass(frozen=True)
class AffinityMethod:
    """An agglomeration of affinities, by name.

    Attributes:
        name: ``"waterz"`` or ``"mws"``.
        parameter: its one threshold's name.
        default: the threshold used when none is learned or given.
        grid: the values tried when learning it on validation slices.
        segment: ``(affinities (3, Z, Y, X), value) -> (Z, Y, X)`` uint64 ids.
        description: one line for messages.
    """

    name: str
    parameter: str
    default: float
    grid: tuple[float, ...]
    segment: Callable[[np.ndarray, float], np.ndarray]
    description: str

    def value(self, given: Mapping[str, float] | None = None) -> float:
        """The threshold of ``given`` (by :attr:`parameter`), else the default; in (0, 1)."""
        value = float((given or {}).get(self.parameter, self.default))
        if not 0.0 < value < 1.0:
            raise EmsegInputError(f"{self.name}: {self.parameter} must lie in (0, 1), got "
                                  f"{value:g}")
        return value

    has_boundaries = False  # its segmentations are dense

    @property
    def outer_values(self) -> tuple[float, ...]:
        """The grid: one agglomeration each (the scoring engine's unit of work)."""
        return self.grid

    def grid_labels(self, affinities: np.ndarray, value: float,
                    sampling: Sequence[float] | None = None
                    ) -> Iterator[tuple[dict[str, float], np.ndarray]]:
        """The one grid point at ``value``: ``({parameter: value}, (Z, Y, X) ids)`` of
        ``(C, Z, Y, X)`` affinities (channels z, y, x, or y, x); ``sampling`` is unused."""
        yield {self.parameter: value}, segment_affinities(affinities, self.name,
                                                          {self.parameter: value})


AFFINITY_METHODS: dict[str, AffinityMethod] = {
    "waterz": AffinityMethod(
        "waterz", "threshold", 0.5, tuple(round(v, 2) for v in np.arange(0.1, 0.95, 0.1)),
        waterz_segment, "watershed supervoxels agglomerated by mean affinity (waterz)"),
    "mws": AffinityMethod(
        "mws", "bias", 0.5, tuple(round(v, 2) for v in np.arange(0.1, 0.95, 0.1)),
        mws_segment, "mutex watershed of affinity - bias (mwatershed)"),
}


def get_affinity_method(name: str) -> AffinityMethod:
    """The :data:`AFFINITY_METHODS` entry ``name``."""
    if name not in AFFINITY_METHODS:
        raise EmsegInputError(f"unknown affinity method {name!r}; one of "
                              f"{', '.join(AFFINITY_METHODS)}")
    return AFFINITY_METHODS[name]


def segment_affinities(affinities: np.ndarray, method: str,
                       thresholds: Mapping[str, float] | None = None, *,
                       order: str = "zyx") -> np.ndarray:
    """Segment ``(C, Z, Y, X)`` affinities (:func:`as_zyx`) with the affinity method called
    ``method`` at its threshold (``thresholds``, else its default): ``(Z, Y, X)`` uint64
    ids from 1, every voxel in a segment.

    Raises:
        EmsegInputError: wrong shape or channel order, values outside [0, 1] or not finite,
            an unknown method, or a threshold outside (0, 1).
    """
    entry = get_affinity_method(method)
    value = entry.value(thresholds)
    zyx = as_zyx(np.asarray(affinities), order)
    finite = np.isfinite(zyx)
    if not finite.all():
        raise EmsegInputError(f"affinities must be finite and in [0, 1]; "
                              f"{int(np.count_nonzero(~finite))} are NaN or infinite")
    if zyx.min() < 0.0 or zyx.max() > 1.0:
        raise EmsegInputError(f"affinities must be finite and in [0, 1], got values in "
                              f"[{zyx.min():g}, {zyx.max():g}]")
    return entry.segment(zyx, value)


@dataclass(frozen=True)
class Agglomeration:
    """An affinity method at one threshold, for affinities in channel ``order``."""

    method: str
    value: float
    order: str = "zyx"

    def __post_init__(self) -> None:
        entry = get_affinity_method(self.method)
        entry.value({entry.parameter: self.value})
        if self.order not in CHANNEL_ORDERS:
            raise EmsegInputError(f"the channel order must be one of "
                                  f"{', '.join(CHANNEL_ORDERS)}, got {self.order!r}")

    def segment(self, affinities: np.ndarray) -> np.ndarray:
        """:func:`segment_affinities` of ``(C, Z, Y, X)`` affinities."""
        entry = get_affinity_method(self.method)
        return segment_affinities(affinities, self.method, {entry.parameter: self.value},
                                  order=self.order)

    def describe(self) -> str:
        """One line: the method, its threshold and the channel order."""
        entry = get_affinity_method(self.method)
        return (f"{self.method} ({entry.description}; {entry.parameter} {self.value:g}; "
                f"channels {', '.join(self.order)})")
