"""The post-processing as first written with SciPy and scikit-image, kept as the reference.

The methods in :mod:`.thesis`, :mod:`.seeded` and :mod:`.dense` give exactly these arrays
from faster building blocks (:mod:`.morphology`, :mod:`.flooding`). These functions are what
they are checked against (``tests/test_postprocess_exact.py``) and the baseline their speed
is measured against (``benchmarks/throughput.py``); nothing else calls them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from emseg_lib.postprocess.thesis import region_interfaces


def reference_thesis(prob: np.ndarray, sig_th: float, edge_th: float, seed_h: float = 1.0,
                     sampling: Sequence[float] | None = None) -> np.ndarray:
    """The thesis's watershed (:func:`~.thesis.watershed_postprocess`): ``(Y, X)`` or
    ``(Z, Y, X)`` cell probability -> ``int64`` labels, 0 on boundaries."""
    cells = prob > sig_th
    if sampling is not None:
        sampling = np.asarray(sampling, dtype=np.float64) / min(sampling)
    distance = ndi.distance_transform_edt(cells, sampling=sampling).astype(np.float32)
    markers = label(h_maxima(distance, seed_h), connectivity=prob.ndim)
    if prob.ndim == 2:
        candidates = (watershed(-distance, markers, connectivity=1,
                                watershed_line=True) == 0) & cells
    else:
        candidates = region_interfaces(watershed(-distance, markers, connectivity=1)) & cells
    segments, n = label(candidates, connectivity=prob.ndim, return_num=True)
    means = np.asarray(ndi.mean(prob, labels=segments, index=np.arange(1, n + 1)),
                       dtype=np.float64).reshape(n)
    accepted = np.concatenate([[False], means < edge_th])
    return label(~((prob <= sig_th) | accepted[segments]), connectivity=1)


def reference_flood(labels: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """:func:`~.dense.flood_boundaries`: label-0 pixels flooded from the segments over
    ``1 - prob``; ``int64`` ids, none 0."""
    if not np.any(labels):
        return np.ones(labels.shape, dtype=np.int64)
    if np.all(labels):
        return labels
    return watershed(1.0 - prob, labels, connectivity=1).astype(np.int64)


def reference_seeded(prob: np.ndarray, seed_th: float, smooth_px: float,
                     min_seed_px: int = 16) -> np.ndarray:
    """:func:`~.seeded.seeded_watershed` of a ``(Y, X)`` map (isotropic smoothing)."""
    smoothed = np.asarray(prob, np.float32)
    if smooth_px:
        smoothed = ndi.gaussian_filter(smoothed, smooth_px)
    seeds = label(smoothed > seed_th, connectivity=1)
    too_small = np.bincount(seeds.ravel()) < min_seed_px
    too_small[0] = False
    seeds[too_small[seeds]] = 0
    if not np.any(seeds):
        return np.ones(prob.shape, dtype=np.int64)
    return watershed(1.0 - smoothed, seeds, connectivity=1).astype(np.int64)
