"""Seeded watershed: the common connectomics baseline (as in elf and torch-em).

1. the cell probability is smoothed with a Gaussian of ``smooth_px`` pixels (in-plane; scaled
   by the voxel size along z for anisotropic volumes);
2. seeds = connected components of the confident interior ``smoothed > seed_th``, components
   smaller than ``min_seed_px`` voxels dropped;
3. watershed of ``1 - smoothed`` from the seeds: every pixel gets a segment (dense).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from emseg_lib.errors import EmsegInputError, check_ndim, check_probabilities, check_unit_interval
from emseg_lib.postprocess.flooding import flood
from emseg_lib.postprocess.morphology import label


def smooth(prob: np.ndarray, smooth_px: float, sampling: Sequence[float] | None = None
           ) -> np.ndarray:
    """Gaussian-smoothed ``prob`` (``float32``); ``smooth_px`` is the in-plane sigma in pixels.

    Along an axis whose voxels are larger than the in-plane ones (``sampling``, e.g.
    ``(40, 4, 4)`` nm) the sigma shrinks in proportion, so the smoothing is isotropic in nm.
    """
    if smooth_px < 0:
        raise EmsegInputError(f"smooth_px must be >= 0, got {smooth_px}")
    prob = np.asarray(prob, dtype=np.float32)
    if smooth_px == 0:
        return prob
    if sampling is None:
        sigma: float | list[float] = smooth_px
    else:
        finest = min(sampling)
        sigma = [smooth_px * finest / s for s in sampling]
    return ndi.gaussian_filter(prob, sigma)


def seeds_from_interior(smoothed: np.ndarray, seed_th: float, min_seed_px: int) -> np.ndarray:
    """Connected components of ``smoothed > seed_th`` with at least ``min_seed_px`` voxels."""
    check_unit_interval("seed_th", seed_th)
    if min_seed_px < 1:
        raise EmsegInputError(f"min_seed_px must be >= 1, got {min_seed_px}")
    seeds = label(smoothed > seed_th, 1)
    too_small = np.bincount(seeds.ravel()) < min_seed_px
    too_small[0] = False
    seeds[too_small[seeds]] = 0
    return seeds


def watershed_from_seeds(smoothed: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Dense ``int64`` labels: the watershed of ``1 - smoothed`` from ``seeds`` (one segment
    when there is no seed); exactly scikit-image's (:func:`.flooding.flood`)."""
    if not np.any(seeds):
        return np.ones(smoothed.shape, dtype=np.int64)
    return flood(1.0 - smoothed, seeds)


def seeded_watershed(prob: np.ndarray, seed_th: float, smooth_px: float = 1.0, *,
                     min_seed_px: int = 16, sampling: Sequence[float] | None = None
                     ) -> np.ndarray:
    """Dense segmentation of a cell-probability map by a seeded watershed.

    Args:
        prob: ``(Y, X)`` or ``(Z, Y, X)`` cell probability in [0, 1] (1 = interior).
        seed_th: smoothed probability above which a pixel is a confident interior (seed).
        smooth_px: in-plane Gaussian sigma in pixels (0 = no smoothing).
        min_seed_px: seeds with fewer voxels are dropped (noise).
        sampling: voxel size per axis (e.g. ``(40, 4, 4)`` nm) for anisotropic smoothing.

    Returns:
        ``int64`` ids ``1..n`` of ``prob``'s shape; no pixel is 0.
    """
    check_ndim("prob", prob, (2, 3), "(Y, X) or (Z, Y, X)")
    check_probabilities("prob", prob)
    smoothed = smooth(prob, smooth_px, sampling)
    return watershed_from_seeds(smoothed, seeds_from_interior(smoothed, seed_th, min_seed_px))
