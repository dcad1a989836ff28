"""Training targets computed from neuron-id label volumes (thesis 3.2.1).

Two boundary maps, both per 2D slice (EM sections are anisotropic), both ``bool`` with
``True`` on membrane pixels:

* :func:`laplacian_boundary`: the thesis's own filter, a 3x3 Laplacian on the label image,
  non-zero response = boundary, optionally dilated;
* :func:`instance_boundary`: the pytorch_connectomics ``seg_to_instance_bd`` convention, label
  differences along x and y, dilated with a ``(2t+1)^2`` square (wider boundaries, Fig 3.4).

The network's target is the *cell* map ``1 - boundary`` (:func:`cell_target`): cells 1,
membranes 0, as in the thesis. :func:`affinities` gives the 3-channel (z, y, x) affinity target.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from emseg_lib.errors import EmsegInputError, check_ndim

#: what a segmentation network is trained to predict: ``boundaries`` (one cell-probability
#: channel from the boundary map, the thesis's) or ``affinities`` (nearest-neighbour
#: affinities, one channel per axis: z, y, x for 3D networks, y, x for 2D ones)
TARGETS = ("boundaries", "affinities")

LAPLACIAN_KERNEL = np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], dtype=np.float64)


def _as_stack(labels: np.ndarray) -> np.ndarray:
    """View a ``(Y, X)`` slice as a one-slice ``(1, Y, X)`` stack."""
    check_ndim("labels", labels, (2, 3), "(Y, X) or (Z, Y, X)")
    return labels[None] if labels.ndim == 2 else labels


def _dilate_slices(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius < 0:
        raise EmsegInputError(f"dilation radius must be >= 0, got {radius}")
    if radius == 0:
        return mask
    # a (2r+1)^2 square dilation is one of 2r+1 along y followed by one along x
    out = mask.copy()
    for axis in (1, 2):
        source = out.copy()
        for shift in range(1, radius + 1):
            ahead = [slice(None)] * 3
            behind = [slice(None)] * 3
            ahead[axis], behind[axis] = slice(shift, None), slice(None, -shift)
            out[tuple(ahead)] |= source[tuple(behind)]
            out[tuple(behind)] |= source[tuple(ahead)]
    return out


def laplacian_boundary(labels: np.ndarray, dilation: int = 0) -> np.ndarray:
    """Boundary mask by the thesis's 3x3 Laplacian filter (equation 3.2).

    The kernel ``[-1 x8, 8 centre]`` is convolved with each slice of the label image (borders
    replicated); a non-zero response marks a boundary pixel. This marks both sides of every
    label change (2 px wide). As in the thesis, ids that happen to cancel (a pixel whose
    neighbours' ids average to its own) are missed; :func:`instance_boundary` has no such case.

    Args:
        labels: ``(Y, X)`` or ``(Z, Y, X)`` integer ids.
        dilation: radius in px of the square dilation applied afterwards (0 = none).

    Returns:
        ``bool`` mask of the input's shape, True on boundaries.
    """
    stack = _as_stack(labels).astype(np.float64)
    response = ndi.convolve(stack, LAPLACIAN_KERNEL[None], mode="nearest")
    boundary = _dilate_slices(response != 0, dilation)
    return boundary.reshape(labels.shape)


def instance_boundary(labels: np.ndarray, thickness: int = 1, *, background: bool = True
                      ) -> np.ndarray:
    """Boundary mask as pytorch_connectomics' ``seg_to_instance_bd`` (Fig 3.4, right).

    A pixel is a contour pixel when its two neighbours along x (or along y) carry different
    ids (the ``[1, 0, -1]`` difference), per slice; the contour is then dilated with a
    ``(2 * thickness + 1)^2`` square.

    Args:
        labels: ``(Y, X)`` or ``(Z, Y, X)`` integer ids.
        thickness: dilation half-width ``t`` in px (1 = the connectomics default).
        background: also mark label-0 pixels as boundary (unlabelled / extracellular).

    Returns:
        ``bool`` mask of the input's shape, True on boundaries.
    """
    stack = _as_stack(labels)
    padded = np.pad(stack, ((0, 0), (1, 1), (1, 1)), mode="symmetric")
    contour = padded[:, 1:-1, 2:] != padded[:, 1:-1, :-2]
    contour |= padded[:, 2:, 1:-1] != padded[:, :-2, 1:-1]
    boundary = _dilate_slices(contour, thickness)
    if background:
        boundary |= stack == 0
    return boundary.reshape(labels.shape)


def cell_target(boundary: np.ndarray) -> np.ndarray:
    """The network target: ``float32`` 1 on cells, 0 on boundaries (same shape as input)."""
    return (~boundary.astype(bool)).astype(np.float32)


def affinities(labels: np.ndarray) -> np.ndarray:
    """Nearest-neighbour affinities of a label volume.

    Channel ``c`` (z, y, x) is 1 at voxel ``v`` when ``v`` and its predecessor ``v - e_c``
    carry the same non-zero id; the first plane along each axis has no predecessor and is 0.

    Args:
        labels: ``(Z, Y, X)`` integer ids.

    Returns:
        ``float32`` ``(3, Z, Y, X)``.
    """
    check_ndim("labels", labels, (3,), "(Z, Y, X)")
    out = np.zeros((3, *labels.shape), dtype=np.float32)
    for axis in range(3):
        here = [slice(None)] * 3
        prev = [slice(None)] * 3
        here[axis] = slice(1, None)
        prev[axis] = slice(None, -1)
        here_t, prev_t = tuple(here), tuple(prev)
        same = (labels[here_t] == labels[prev_t]) & (labels[here_t] != 0)
        out[axis][here_t] = same
    return out
