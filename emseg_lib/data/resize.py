"""In-plane resizing of ``(D, H, W)`` stacks, the way ``skimage.transform.resize`` does it.

Pixel centres are aligned (scipy's ``grid_mode``): output pixel ``k`` of ``n_out`` samples the
input at ``(k + 0.5) * n_in / n_out - 0.5``, mirrored at the borders. :func:`resize_nearest`
gives exactly ``resize(stack, shape, order=0, anti_aliasing=False, preserve_range=True)`` and
keeps the labels' dtype; :func:`resize_linear` gives ``resize(..., order=1,
anti_aliasing=False)`` up to float rounding. Both are separable gathers along y and x, several
times faster than scipy's general spline zoom (which also interpolates along the unchanged z).
"""

from __future__ import annotations

import numpy as np

from emseg_lib.errors import check_ndim


def _source(n_in: int, n_out: int) -> np.ndarray:
    """Where each of ``n_out`` output pixels samples the ``n_in`` input pixels (float64)."""
    coordinate = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    if n_in == 1:
        return np.zeros(n_out)
    # scipy's "mirror" mode; a downscale never leaves [0, n_in - 1], an upscale by < 1 px
    coordinate = np.abs(coordinate)
    return np.where(coordinate > n_in - 1, 2 * (n_in - 1) - coordinate, coordinate)


def _nearest(n_in: int, n_out: int) -> np.ndarray:
    return np.floor(_source(n_in, n_out) + 0.5).astype(np.intp)


def _linear(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower neighbours, upper neighbours and the upper neighbours' weights."""
    coordinate = _source(n_in, n_out)
    lower = np.floor(coordinate).astype(np.intp)
    return lower, np.minimum(lower + 1, n_in - 1), coordinate - lower


def resize_nearest(stack: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of every slice of ``stack`` ``(D, H, W)`` to ``(D, *size)``.

    Exact for label ids of any integer dtype (no float round trip).
    """
    check_ndim("stack", stack, (3,), "(D, H, W)")
    rows = _nearest(stack.shape[1], size[0])
    cols = _nearest(stack.shape[2], size[1])
    return stack[:, rows[:, None], cols[None, :]]


def resize_linear(stack: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of every slice of ``stack`` ``(D, H, W)`` to ``(D, *size)``, float32.

    No anti-aliasing (as the augmentation always did); computed in float64, slice by slice
    (a slice's temporaries stay in the CPU cache).
    """
    check_ndim("stack", stack, (3,), "(D, H, W)")
    top, bottom, wy = _linear(stack.shape[1], size[0])
    left, right, wx = _linear(stack.shape[2], size[1])
    wy, wx = wy[:, None], wx[None, :]
    out = np.empty((stack.shape[0], *size), dtype=np.float32)
    for z, image in enumerate(stack):
        rows = image[top].astype(np.float64) * (1 - wy) + image[bottom] * wy
        out[z] = rows[:, left] * (1 - wx) + rows[:, right] * wx
    return out
