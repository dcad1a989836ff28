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
