"""Train / validation / test splits along z."""

from __future__ import annotations

import pytest

from emseg_lib import EmsegInputError
from emseg_lib.data import split_slices


def test_thesis_split_is_exact():
    split = split_slices(125)
    assert (split.train, split.val, split.test) == (slice(0, 100), slice(100, 105),
                                                     slice(105, 125))


def test_small_stack_is_proportional_and_complete(small_volume):
    split = split_slices(32)
    assert (split.train.stop, split.val.stop, split.test.stop) == (26, 27, 32)
    parts = split_slices(small_volume.shape[0]).apply(small_volume)
    assert sum(p.shape[0] for p in parts.values()) == small_volume.shape[0]
    assert all(p.shape[0] >= 1 for p in parts.values())


def test_too_short_stack():
    with pytest.raises(EmsegInputError, match="cannot be split"):
        split_slices(2)
