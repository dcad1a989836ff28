"""The thesis watershed's building blocks, fast and equal to SciPy's and scikit-image's.

* :func:`distance_map` — ``scipy.ndimage.distance_transform_edt(...).astype(float32)`` through
  the ``edt`` package (squared distances are sums of squared integers, exact in float32;
  their float32 square root is the correctly rounded distance SciPy's float64 one rounds to);
* :func:`h_maxima` — ``skimage.morphology.h_maxima`` with its own float arithmetic, the
  grayscale reconstruction inside done by Vincent's hybrid algorithm (two raster scans and a
  FIFO queue, compiled): a reconstruction is unique and only selects input values, so any
  exact algorithm gives scikit-image's array;
* :func:`label` — ``skimage.measure.label`` (ids numbered in raster order of first pixel)
  through ``connected-components-3d``, renumbered in raster order;
* :func:`segment_means` — ``scipy.ndimage.mean`` per id by one ``bincount``, summed in the
  same order.
"""

from __future__ import annotations

from collections.abc import Sequence

import cc3d
import edt
import numpy as np
from numba import njit
from scipy import ndimage as ndi

#: ``connectivity`` (orthogonal steps, as scikit-image) -> cc3d's neighbour count, per ndim
_CC3D_CONNECTIVITY = {(2, 1): 4, (2, 2): 8, (3, 1): 6, (3, 2): 18, (3, 3): 26}


def distance_map(cells: np.ndarray, sampling: Sequence[float] | None = None) -> np.ndarray:
    """Euclidean distance of every True pixel to the nearest False one, ``float32``.

    Args:
        cells: ``bool`` ``(Y, X)`` or ``(Z, Y, X)``.
        sampling: voxel size per axis (default 1).

    Returns:
        Exactly ``ndi.distance_transform_edt(cells, sampling).astype(np.float32)``.
    """
    cells = np.asarray(cells, dtype=bool)
    if cells.all():  # nothing to measure to: SciPy's own convention
        return ndi.distance_transform_edt(cells, sampling=sampling).astype(np.float32)
    anisotropy = tuple(float(s) for s in (sampling if sampling is not None
                                          else (1.0,) * cells.ndim))
    squared = edt.edtsq(np.ascontiguousarray(cells), anisotropy=anisotropy,
                        black_border=False)
    if sampling is not None:  # non-integer squared distances: SciPy's float64 square root
        return np.sqrt(squared.astype(np.float64)).astype(np.float32)
    return np.sqrt(squared, dtype=np.float32)


def _full_offsets(shape: tuple[int, ...]) -> np.ndarray:
    """Raveled offsets of every neighbour (full connectivity) in a C-ordered ``shape``."""
    strides = np.cumprod((1, *shape[:0:-1]))[::-1]
    steps = np.array(np.meshgrid(*[[-1, 0, 1]] * len(shape), indexing="ij")).reshape(
        len(shape), -1).T
    offsets = steps @ strides
    return np.sort(offsets[offsets != 0]).astype(np.int64)


@njit(cache=True, nogil=True)
def _reconstruct(seed, mask, inside, offsets):  # pragma: no cover - compiled
    """Grayscale reconstruction by dilation of ``seed`` under ``mask`` (raveled, padded;
    ``inside`` 0 on the padding), in place in ``seed`` (Vincent 1993, hybrid algorithm)."""
    before = offsets[offsets < 0]
    after = offsets[offsets > 0]
    size = seed.size
    for p in range(size):
        if inside[p]:
            value = seed[p]
            for offset in before:
                value = max(value, seed[p + offset])
            seed[p] = min(value, mask[p])
    queue = np.empty(size, np.int64)
    tail = 0
    for p in range(size - 1, -1, -1):
        if not inside[p]:
            continue
        value = seed[p]
        for offset in after:
            value = max(value, seed[p + offset])
        value = min(value, mask[p])
        seed[p] = value
        for offset in after:
            q = p + offset
            if inside[q] and seed[q] < value and seed[q] < mask[q]:
                queue[tail] = p
                tail += 1
                break
    head = 0
    while head < tail:
        p = queue[head]
        head += 1
        value = seed[p]
        for offset in offsets:
            q = p + offset
            if inside[q] and seed[q] < value and mask[q] != seed[q]:
                seed[q] = min(value, mask[q])
                if tail == queue.size:
                    queue = np.concatenate((queue[head:tail], np.empty(size, np.int64)))
                    tail -= head
                    head = 0
                queue[tail] = q
                tail += 1


def h_maxima(image: np.ndarray, h: float) -> np.ndarray:
    """``skimage.morphology.h_maxima(image, h)`` for a ``float32`` image (3x3(x3) footprint).

    Returns:
        ``uint8`` mask of ``image``'s shape, 1 on the maxima of height >= ``h``.
    """
    image = np.asarray(image, dtype=np.float32)
    if h > np.ptp(image):
        return np.zeros(image.shape, dtype=np.uint8)
    resolution = 2 * np.finfo(image.dtype).resolution * np.abs(image)
    shifted = image - h - resolution
    low = np.float32(-np.inf)
    rec = np.pad(shifted, 1, constant_values=low)
    _reconstruct(rec.ravel(), np.pad(image, 1, constant_values=low).ravel(),
                 np.pad(np.ones(image.shape, np.int8), 1).ravel(), _full_offsets(rec.shape))
    residue = image - rec[(slice(1, -1),) * image.ndim]
    return (residue >= h).astype(np.uint8)


@njit(cache=True, nogil=True)
def _raster_order(ids, count):  # pragma: no cover - compiled
    """Renumber ``ids`` (raveled, 0 kept) 1..count in order of first appearance, in place."""
    new = np.zeros(count + 1, ids.dtype)
    next_id = 1
    for i in range(ids.size):
        old = ids[i]
        if old != 0:
            if new[old] == 0:
                new[old] = next_id
                next_id += 1
            ids[i] = new[old]


def label(mask: np.ndarray, connectivity: int, *, return_num: bool = False
          ) -> np.ndarray | tuple[np.ndarray, int]:
    """``skimage.measure.label(mask, connectivity=connectivity)``: ``int64`` ids of the
    connected True pixels of a ``(Y, X)`` or ``(Z, Y, X)`` mask, numbered in raster order.

    ``connectivity`` counts orthogonal steps (1 = faces; ``mask.ndim`` = every neighbour).
    """
    mask = np.ascontiguousarray(mask, dtype=bool)
    ids, count = cc3d.connected_components(
        mask, connectivity=_CC3D_CONNECTIVITY[(mask.ndim, connectivity)], return_N=True)
    ids = ids.astype(np.int64)
    _raster_order(ids.ravel(), count)
    return (ids, int(count)) if return_num else ids


def segment_means(values: np.ndarray, ids: np.ndarray, count: int) -> np.ndarray:
    """``(count,)`` ``float64`` mean of ``values`` over each id 1..count of ``ids``
    (``scipy.ndimage.mean(values, ids, range(1, count + 1))``)."""
    sums = np.bincount(ids.ravel(), weights=values.ravel().astype(np.float64),
                       minlength=count + 1)
    sizes = np.bincount(ids.ravel(), minlength=count + 1)
    return sums[1:] / sizes[1:]
