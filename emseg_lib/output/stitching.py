"""Stitching blocks into one segmentation: which segments of neighbouring blocks are one
segment, and the final id of every block's segments.

Two neighbouring blocks both computed the voxels just past their common face: the upper one
as its core, the lower one in its halo. A lower segment and an upper segment are one when
each holds more than half of the other's voxels there (a mutual majority of the overlap, as
elf's and daisy-based pipelines stitch by overlap in the halo): the match is one-to-one, so
a merge error of one block does not spread to its neighbour. Merged segments take the
smallest of their ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def same_segments(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """``(n, 2)`` pairs ``(lower id, upper id)`` that are one segment, from the same voxels
    labelled by both blocks (any shape, 0 = no segment)."""
    a, b = lower.ravel(), upper.ravel()
    both = (a > 0) & (b > 0)
    if not both.any():
        return np.zeros((0, 2), dtype=np.uint64)
    pairs, overlap = np.unique(np.stack([a[both], b[both]]), axis=1, return_counts=True)
    ids_a, size_a = np.unique(a[a > 0], return_counts=True)
    ids_b, size_b = np.unique(b[b > 0], return_counts=True)
    majority = ((2 * overlap > size_a[np.searchsorted(ids_a, pairs[0])])
                & (2 * overlap > size_b[np.searchsorted(ids_b, pairs[1])]))
    return pairs[:, majority].T.astype(np.uint64)


@dataclass(frozen=True)
class IdMap:
    """Final ids: block ``i``'s local id ``n`` becomes ``offsets[i] + n`` (ids unique across
    the volume), and the ids in ``merged`` (sorted) become ``into`` (merged segments)."""

    offsets: np.ndarray
    merged: np.ndarray
    into: np.ndarray

    @classmethod
    def build(cls, max_ids: list[int], merges: np.ndarray) -> IdMap:
        """From every block's largest local id and the merges
        ``(lower block, lower id, upper block, upper id)`` rows."""
        offsets = np.concatenate([[0], np.cumsum(max_ids, dtype=np.uint64)[:-1]]).astype(
            np.uint64)
        if len(merges) == 0:
            empty = np.zeros(0, dtype=np.uint64)
            return cls(offsets, empty, empty)
        lower = offsets[merges[:, 0].astype(np.int64)] + merges[:, 1]
        upper = offsets[merges[:, 2].astype(np.int64)] + merges[:, 3]
        nodes, edges = np.unique(np.concatenate([lower, upper]), return_inverse=True)
        n = len(nodes)
        graph = coo_matrix((np.ones(len(lower)), (edges[:len(lower)], edges[len(lower):])),
                           shape=(n, n))
        _, component = connected_components(graph, directed=False)
        smallest = np.full(component.max() + 1, np.iinfo(np.uint64).max, dtype=np.uint64)
        np.minimum.at(smallest, component, nodes)  # nodes are sorted: the first is smallest
        into = smallest[component]
        moved = nodes != into
        return cls(offsets, nodes[moved], into[moved])

    def apply(self, block: int, local: np.ndarray) -> np.ndarray:
        """Block ``block``'s local ids (0 stays 0) as final ids, uint64."""
        ids = np.where(local > 0, local.astype(np.uint64) + self.offsets[block], np.uint64(0))
        if len(self.merged) == 0:
            return ids
        place = np.clip(np.searchsorted(self.merged, ids), 0, len(self.merged) - 1)
        hit = self.merged[place] == ids
        return np.where(hit, self.into[place], ids)

    @property
    def merges(self) -> int:
        """Segments merged into another."""
        return len(self.merged)


def own_numbers(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted ids > 0 of ``labels`` and ``labels`` renumbered 1..n in their order
    (uint64, 0 stays 0)."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    return ids, core_numbers(labels, ids)


def core_numbers(view: np.ndarray, core_ids: np.ndarray) -> np.ndarray:
    """``view``'s ids as numbered by :func:`own_numbers` (``core_ids`` sorted: id
    ``core_ids[n]`` is ``n + 1``), uint64; 0 for 0 and for ids not among ``core_ids`` (a
    halo's segments that do not reach the core)."""
    place = np.clip(np.searchsorted(core_ids, view), 0, max(len(core_ids) - 1, 0))
    found = (view > 0) & (core_ids[place] == view) if len(core_ids) else np.zeros_like(
        view, dtype=bool)
    return np.where(found, place + 1, 0).astype(np.uint64)


class ChunkStitcher:
    """Final ids of chunks of slices segmented one after another along z, each with a halo:
    a chunk's segment that is one with a segment of the chunk before it (:func:`same_segments`,
    matched on both sides of their face, as blocks are) takes that segment's id; every other
    segment a new id, unique across the volume. A chunk's own segmentation is kept as it is:
    a chunk never merges two segments of the chunk before it (whose ids are written), and
    of two earlier segments it matches it takes the smaller id.

    ``add`` the chunks in order of z, each once.
    """

    def __init__(self) -> None:
        self.last_id = 0
        self._top: np.ndarray | None = None  # final ids of the last chunk's last slices
        self._above: np.ndarray | None = None  # the last chunk's view past its top, final ids

    def add(self, local: np.ndarray, below: np.ndarray, above: np.ndarray
            ) -> tuple[np.ndarray, int]:
        """The final ids (uint64) of a chunk's segmentation and how many of them are new.

        Args:
            local: ``(z, Y, X)`` the chunk's own slices, its ids (0 = no segment).
            below, above: ``(h, Y, X)`` the same segmentation on the halo slices just below
                and above ``local`` (``h`` may be 0; at most the next chunk's depth).
        """
        core_ids, own = own_numbers(local)
        pairs = [np.zeros((0, 2), dtype=np.uint64)]
        if self._above is not None and len(self._above):
            pairs.append(same_segments(self._above, own[:len(self._above)]))
        if self._top is not None and len(below):
            pairs.append(same_segments(self._top[-len(below):], core_numbers(below, core_ids)))
        matched = np.concatenate(pairs)  # (final id before, own number)
        final = np.zeros(len(core_ids) + 1, dtype=np.uint64)  # by own number; 0 stays 0
        if len(matched):
            order = np.lexsort((matched[:, 0], matched[:, 1]))  # by own number, then final id
            first = order[np.unique(matched[order, 1], return_index=True)[1]]
            final[matched[first, 1].astype(np.int64)] = matched[first, 0]
        new = np.flatnonzero(final[1:] == 0) + 1
        final[new] = self.last_id + np.arange(1, len(new) + 1, dtype=np.uint64)
        self.last_id += len(new)
        ids = final[own.astype(np.int64)]
        self._top, self._above = ids, final[core_numbers(above, core_ids).astype(np.int64)]
        return ids, len(new)
