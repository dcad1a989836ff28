"""Dense segmentations: every boundary pixel joins a segment by flooding the probability map."""

from __future__ import annotations

import numpy as np

from emseg_lib.errors import check_probabilities, check_same_shape
from emseg_lib.postprocess.flooding import flood


def flood_boundaries(labels: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """Assign every label-0 pixel of ``labels`` to a segment by watershed flooding.

    The segments are the markers; the elevation is ``1 - prob``, so a boundary pixel joins the
    segment whose flood reaches it first along the most cell-like path (the membrane's crest is
    where two floods meet). A slice or volume without any segment becomes one segment.
    Exactly scikit-image's ``watershed(1 - prob, labels, connectivity=1)``
    (:func:`~emseg_lib.postprocess.flooding.flood`).

    Args:
        labels: ``(Y, X)`` or ``(Z, Y, X)`` ids, 0 on boundaries.
        prob: cell probability of the same shape, in [0, 1].

    Returns:
        ``int64`` ids of ``labels``' shape with no 0; every segment keeps its id.
    """
    check_same_shape("labels", labels, "prob", prob)
    check_probabilities("prob", prob)
    labels = np.asarray(labels, dtype=np.int64)
    if not np.any(labels):
        return np.ones(labels.shape, dtype=np.int64)
    if np.all(labels):
        return labels
    return flood(1.0 - prob, labels)
