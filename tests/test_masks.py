"""Image-extension masks: area and position statistics (thesis Fig 4.1)."""

from __future__ import annotations

import numpy as np
import pytest

from emseg_lib import EmsegInputError
from emseg_lib.data.masks import make_mask


def test_right_band():
    mask = make_mask("right", 257)
    assert mask.dtype == np.float32 and mask.shape == (257, 257)
    cols = np.flatnonzero(mask.any(axis=0))
    assert cols.min() == 257 - 257 // 4 and cols.max() == 256
    assert mask[:, cols].all(), "full height"
    assert mask.mean() == pytest.approx(64 / 257)


def test_center_square():
    mask = make_mask("center", 257)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert len(rows) == len(cols) == 257 // 3
    assert mask.sum() == (257 // 3) ** 2
    centre = ((rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2)
    assert centre == pytest.approx((128, 128), abs=1)


def test_random_square_statistics():
    rng = np.random.default_rng(0)
    sides, centres = [], []
    for _ in range(400):
        mask = make_mask("random", 257, rng)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        assert len(rows) == len(cols) and mask.sum() == len(rows) ** 2  # a square
        sides.append(len(rows))
        centres.append(((rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2))
    sides = np.array(sides)
    assert sides.min() >= 257 // 3 and sides.max() <= 2 * 257 // 3
    assert sides.min() < 95 and sides.max() > 165  # the whole range is used
    centres = np.array(centres)
    assert abs(centres.mean() - 128) < 6 and centres.std(axis=0).min() > 15  # positions vary


def test_bad_kind_and_missing_rng():
    with pytest.raises(EmsegInputError, match="mask kind must be one of"):
        make_mask("left", 64)
    with pytest.raises(EmsegInputError, match="needs a numpy Generator"):
        make_mask("random", 64)
