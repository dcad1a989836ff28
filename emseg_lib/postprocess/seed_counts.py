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
    """The root of ``p``'s tree, halving the path on the way."""
    while parent[p] != p:
        parent[p] = parent[parent[p]]
        p = parent[p]
    return p


@njit(cache=True, nogil=True)
def _by_band(band, bands, index):  # pragma: no cover - compiled
    """The pixels of bands ``bands .. 1`` (highest first; band 0 left out), each band's in
    raster order (of ``index``'s dtype), and where each band ends: a counting sort."""
    sizes = np.zeros(bands + 1, np.int64)
    for k in band:
        sizes[k] += 1
    ends = np.cumsum(sizes[:0:-1])  # bands bands..1
    fill = ends - sizes[:0:-1]
    order = np.empty(ends[-1] if bands else 0, index.dtype)
    for p in range(band.size):
        k = band[p]
        if k > 0:
            order[fill[bands - k]] = p
            fill[bands - k] += 1
    return order, ends


@njit(cache=True, nogil=True, inline="always")
def _join(parent, size, root, q, neighbour, min_size):  # pragma: no cover - compiled
    """Join the component of pixel ``q`` (when it is a ``neighbour`` in the array and already
    added) to the one whose root is ``root``: the joined root, and the change in the number
    of components of at least ``min_size``."""
    if not neighbour or parent[q] < 0:
        return root, 0
    other = _root(parent, q)
    if other == root:
        return root, 0
    if size[root] < size[other]:
        root, other = other, root
    before = int(size[root] >= min_size) + int(size[other] >= min_size)
    parent[other] = root
    size[root] += size[other]
    return root, int(size[root] >= min_size) - before


@njit(cache=True, nogil=True)
def _sweep(order, band_ends, depth, height, width, link_z, min_size):  # pragma: no cover
    """The number of components of at least ``min_size`` pixels after each band of
    ``order`` is added to a ``(depth, height, width)`` array (face neighbours; across z
    only with ``link_z``)."""
    plane = height * width
    parent = np.full(depth * plane, -1, order.dtype)
    size = np.zeros(depth * plane, order.dtype)
    counts = np.zeros(band_ends.size, np.int64)
    alive, start = 0, 0
    for band in range(band_ends.size):
        for at in range(start, band_ends[band]):
            p = order[at]
            parent[p], size[p] = p, 1
            root, change = p, int(min_size <= 1)
            alive += change
            x, y = p % width, (p // width) % height
            z = p // plane
            for q, neighbour in ((p - 1, x > 0), (p + 1, x < width - 1),
                                 (p - width, y > 0), (p + width, y < height - 1),
                                 (p - plane, link_z and z > 0),
                                 (p + plane, link_z and z < depth - 1)):
                root, change = _join(parent, size, root, q, neighbour, min_size)
                alive += change
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
    # 32-bit pixel indices and sizes (half the memory) unless the map is too large for them
    index = np.zeros(0, np.int32 if values.size < np.iinfo(np.int32).max else np.int64)
    order, band_ends = _by_band(band, len(ascending), index)
    depth, height, width = values.shape if values.ndim == 3 else (1, *values.shape)
    swept = _sweep(order, band_ends, depth, height, width,
                   values.ndim == 3 and not per_slice, int(min_size))
    by_cut = swept[::-1]  # the count at ascending[j]
    return by_cut[np.searchsorted(ascending, np.asarray(cuts, dtype=np.float32),
                                  side="left")]
