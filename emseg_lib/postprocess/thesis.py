"""The thesis's watershed post-processing (3.2.8, 4.3.3): cells, with 0 on boundaries.

Pipeline, for a 2D slice or a 3D volume alike:

1. probability of *cell* ``p`` (sigmoid of the network output) -> cells ``p > sig_th``;
2. Euclidean distance of every cell pixel to the nearest boundary;
3. seeds = regional maxima of that distance (h-maxima, ``seed_h`` px deep) -> watershed of
   the inverted distance with one-pixel watershed lines;
4. watershed-line pixels inside cells are *candidate new boundary segments*; each connected
   segment whose mean probability is below ``edge_th`` closes an opening and is kept
   (openings have low probability, lines through a cell interior have high probability);
5. cells minus kept segments -> connected components (4-/6-connectivity).

Labels returned use 0 for boundary pixels and 1..n for cells; :mod:`.dense` assigns the
boundary pixels to segments afterwards. Every step gives exactly the array of the SciPy and
scikit-image calls the thesis used, faster (:mod:`.morphology`, :mod:`.flooding`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emseg_lib.errors import (
    EmsegInputError,
    check_ndim,
    check_probabilities,
    check_unit_interval,
)
from emseg_lib.postprocess.flooding import flood, watershed_lines
from emseg_lib.postprocess.morphology import distance_map, h_maxima, label, segment_means

#: the thesis's tuned thresholds (5.2.1) and those it validated with during training (4.3.3)
THESIS_SIG_TH = 0.83
THESIS_EDGE_TH = 0.91
UNTUNED_SIG_TH = 0.73
UNTUNED_EDGE_TH = 0.81


def label_cells(prob: np.ndarray, sig_th: float) -> np.ndarray:
    """Segmentation *before* watershed: connected components of ``prob > sig_th``."""
    check_probabilities("prob", prob)
    check_unit_interval("sig_th", sig_th)
    return label(prob > sig_th, 1)


def watershed_segments(prob: np.ndarray, sig_th: float, seed_h: float = 1.0,
                       sampling: Sequence[float] | None = None) -> np.ndarray:
    """Candidate new boundary pixels: watershed lines of the distance map inside cells.

    In 2D these are scikit-image's one-pixel watershed lines (the thesis's method); in 3D the
    interfaces between the watershed regions (:func:`region_interfaces`).

    Args:
        prob: ``(Y, X)`` or ``(Z, Y, X)`` cell probability.
        sig_th: threshold turning ``prob`` into the cell mask.
        seed_h: depth in px of the distance maxima used as seeds (larger = fewer seeds).
        sampling: voxel size per axis for the distance transform (e.g. ``(40, 4, 4)`` nm);
            default isotropic. Distances are measured in units of the smallest voxel side,
            so ``seed_h`` stays in (in-plane) pixels.

    Returns:
        ``bool`` mask of the input's shape, True on candidate segments.
    """
    if seed_h <= 0:
        raise EmsegInputError(f"seed_h must be > 0 px, got {seed_h}")
    check_probabilities("prob", prob)
    cells = prob > sig_th
    if sampling is not None:
        sampling = np.asarray(sampling, dtype=np.float64) / min(sampling)
    distance = distance_map(cells, sampling)
    markers = label(h_maxima(distance, seed_h), prob.ndim)
    if prob.ndim == 2:
        regions = watershed_lines(-distance, markers, watch=cells)
        return (regions == 0) & cells
    # scikit-image's watershed_line can run for hours on 3D volumes with large plateaus;
    # in 3D the lines are the voxels facing a region of smaller id (one voxel thick)
    return region_interfaces(flood(-distance, markers)) & cells


def region_interfaces(regions: np.ndarray) -> np.ndarray:
    """``bool`` mask of the voxels with a face-neighbour of smaller, non-zero id: one voxel
    on one side of every interface between two regions."""
    interface = np.zeros(regions.shape, dtype=bool)
    for axis in range(regions.ndim):
        before = [slice(None)] * regions.ndim
        after = [slice(None)] * regions.ndim
        before[axis], after[axis] = slice(None, -1), slice(1, None)
        low, high = regions[tuple(before)], regions[tuple(after)]
        interface[tuple(after)] |= (low != high) & (low > 0) & (low < high)
        interface[tuple(before)] |= (low != high) & (high > 0) & (high < low)
    return interface


def candidate_segments(prob: np.ndarray, sig_th: float, *, seed_h: float = 1.0,
                       sampling: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Connected candidate boundary segments and their mean probability.

    Returns:
        ``segments``: ``int`` labels of ``prob``'s shape (0 = no candidate, 1..k segments) and
        ``means``: ``(k,)`` mean probability of each segment.
    """
    candidates = watershed_segments(prob, sig_th, seed_h, sampling)
    segments, n_segments = label(candidates, prob.ndim, return_num=True)
    return segments, segment_means(prob, segments, n_segments)


def close_boundaries(prob: np.ndarray, sig_th: float, edge_th: float, segments: np.ndarray,
                     means: np.ndarray) -> np.ndarray:
    """Labels after adding the candidate segments whose mean probability is below ``edge_th``.

    Args:
        prob, sig_th: as :func:`watershed_postprocess`.
        edge_th: acceptance threshold in [0, 1].
        segments, means: from :func:`candidate_segments` (same ``prob`` and ``sig_th``).
    """
    check_probabilities("prob", prob)
    check_unit_interval("edge_th", edge_th)
    accepted = np.concatenate([[False], means < edge_th])
    boundary = (prob <= sig_th) | accepted[segments]
    return label(~boundary, 1)


def watershed_postprocess(
    prob: np.ndarray,
    sig_th: float = THESIS_SIG_TH,
    edge_th: float = THESIS_EDGE_TH,
    *,
    seed_h: float = 1.0,
    sampling: Sequence[float] | None = None,
) -> np.ndarray:
    """Instance labels from a cell-probability map, closing open boundaries by watershed.

    Args:
        prob: ``(Y, X)`` slice or ``(Z, Y, X)`` volume of cell probabilities in [0, 1].
        sig_th: cell threshold (thesis 0.73 before tuning, 0.81/0.83 after).
        edge_th: a candidate segment is added to the boundaries when its mean probability is
            below ``edge_th`` (thesis 0.81 before tuning, 0.91 after).
        seed_h: depth in px of distance maxima used as watershed seeds.
        sampling: voxel size per axis for 3D distance transforms (anisotropy).

    Returns:
        ``int`` labels of ``prob``'s shape: 0 on boundaries, 1..n cells.
    """
    check_ndim("prob", prob, (2, 3), "(Y, X) or (Z, Y, X)")
    check_probabilities("prob", prob)
    check_unit_interval("sig_th", sig_th)
    check_unit_interval("edge_th", edge_th)
    segments, means = candidate_segments(prob, sig_th, seed_h=seed_h, sampling=sampling)
    return close_boundaries(prob, sig_th, edge_th, segments, means)
