"""How many seeds a smoothed map has at each of many cuts, in one sweep.

A seed at cut ``t`` is a face-connected component of ``smoothed > t`` with at least
``min_size`` pixels (:func:`~.seeded.seeds_from_interior`). Labelling the map once per cut
costs a full labelling each; here the pixels are added from the highest cut's band down to
the lowest, joined to their already added face neighbours by union-find (union by size, path
halving), and the number of components of at least ``min_size`` pixels is kept up to date:
it rises when a component reaches ``min_size`` and falls when two such components join. The
count after a band is the count at its cut, exactly as a labelling gives it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _root(parent, p):  # pragma: no cover - compiled
    while parent[p] != p:
        parent[p] = parent[parent[p]]
        p = parent[p]
    return p


@njit(cache=True, nogil=True)
def _by_band(band, bands):  # pragma: no cover - compiled
    """The pixels of bands ``bands .. 1`` (highest first; band 0 left out), each band's in
    raster order, and where each band ends: a counting sort."""
    sizes = np.zeros(bands + 1, np.int64)
    for k in band:
        sizes[k] += 1
    ends = np.cumsum(sizes[:0:-1])  # bands bands..1
    fill = ends - sizes[:0:-1]
    order = np.empty(ends[-1] if bands else 0, np.int32)
    for p in range(band.size):
        k = band[p]
        if k > 0:
            order[fill[bands - k]] = p
            fill[bands - k] += 1
    return order, ends


@njit(cache=True, nogil=True)
def _sweep(order, band_ends, shape, strides, linked, min_size):  # pragma: no cover - compiled
    parent = np.full(strides[0] * shape[0], -1, np.int32)
    size = np.zeros(parent.size, np.int32)
    counts = np.zeros(band_ends.size, np.int64)
    alive, start = 0, 0
    for band in range(band_ends.size):
        for at in range(start, band_ends[band]):
            p = order[at]
            parent[p], size[p] = p, 1
            if min_size <= 1:
                alive += 1
            for axis in linked:
                coord = (p // strides[axis]) % shape[axis]
                for step in (-1, 1):
                    if not 0 <= coord + step < shape[axis]:
                        continue
                    q = p + step * strides[axis]
                    if parent[q] < 0:
                        continue
                    a, b = _root(parent, p), _root(parent, q)
                    if a == b:
                        continue
                    if size[a] < size[b]:
                        a, b = b, a
                    before = int(size[a] >= min_size) + int(size[b] >= min_size)
                    parent[b] = a
                    size[a] += size[b]
                    alive += int(size[a] >= min_size) - before
        start = band_ends[band]
        counts[band] = alive
    return counts


def seed_counts(smoothed: np.ndarray, cuts: Sequence[float], min_size: int, *,
                per_slice: bool = False) -> np.ndarray:
    """The number of seeds of ``smoothed`` at every cut.

    Args:
        smoothed: ``(Y, X)`` or ``(Z, Y, X)`` smoothed cell probability.
        cuts: the cuts ``t`` (any order, repeats allowed).
        min_size: the smallest seed counted, in pixels (voxels).
        per_slice: for a ``(Z, Y, X)`` stack, components within each slice only (2D seeds
            of a stack segmented slice by slice, added up); else face-connected in 3D.

    Returns:
        ``int64`` counts, one per cut in the order given.
    """
    values = np.asarray(smoothed, dtype=np.float32)
    ascending = np.sort(np.asarray(cuts, dtype=np.float32))
    # band k: the pixels above exactly k of the cuts; a pixel is in the map at cut
    # ascending[j] when it is above more than j of them
    band = np.searchsorted(ascending, values.ravel(), side="left").astype(np.int32)
    order, band_ends = _by_band(band, len(ascending))
    linked = np.arange(1 if per_slice and values.ndim == 3 else 0, values.ndim)
    strides = np.cumprod((1, *values.shape[:0:-1]))[::-1].astype(np.int64)
    swept = _sweep(order, band_ends, np.array(values.shape, np.int64), strides,
                   linked, int(min_size))
    by_cut = swept[::-1]  # the count at ascending[j]
    return by_cut[np.searchsorted(ascending, np.asarray(cuts, dtype=np.float32),
                                  side="left")]
