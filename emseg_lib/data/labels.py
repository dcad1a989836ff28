"""Label volumes made of independently labelled 2D slices."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def stack_slices(slices: Iterable[np.ndarray], start: int = 0) -> np.ndarray:
    """Stack per-slice labellings ``(Y, X)`` into ``(Z, Y, X)`` with ids unique across slices.

    Ids of slice ``z`` are shifted by ``start`` plus the largest id of the slices before it;
    0 stays 0. A chunked caller passes the previous chunk's largest id as ``start``.

    Returns:
        ``int64`` ``(Z, Y, X)`` ids, all 0 or greater than ``start``.
    """
    out = []
    offset = int(start)
    for labels in slices:
        labels = np.asarray(labels, dtype=np.int64)
        out.append(np.where(labels > 0, labels + offset, 0))
        offset += int(labels.max(initial=0))
    return np.stack(out)
