"""Masks for image extension (thesis 4.4.1, Figure 4.1). ``1`` marks the unknown pixels.

* ``right``: a band on the right edge, full height, a quarter of the width;
* ``center``: a centred square with side a third of the image side;
* ``random``: a square of side 1/3 .. 2/3 of the image side at a random position.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from emseg_lib.errors import EmsegInputError

MaskKind = Literal["right", "center", "random"]
MASK_KINDS: tuple[str, ...] = ("right", "center", "random")


def make_mask(kind: MaskKind, size: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """A ``(size, size)`` ``float32`` mask, 1 where the generator must fill in.

    Args:
        kind: ``"right"``, ``"center"`` or ``"random"``.
        size: image side in px (thesis 257).
        rng: needed for ``"random"``.
    """
    if kind not in MASK_KINDS:
        raise EmsegInputError(f"mask kind must be one of {MASK_KINDS}, got {kind!r}")
    if size < 3:
        raise EmsegInputError(f"mask size must be >= 3 px, got {size}")
    mask = np.zeros((size, size), dtype=np.float32)
    if kind == "right":
        mask[:, size - size // 4:] = 1.0
    elif kind == "center":
        side = size // 3
        start = (size - side) // 2
        mask[start:start + side, start:start + side] = 1.0
    else:
        if rng is None:
            raise EmsegInputError("the 'random' mask needs a numpy Generator (rng)")
        side = int(rng.integers(size // 3, 2 * size // 3 + 1))
        top, left = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        mask[top:top + side, left:left + side] = 1.0
    return mask
