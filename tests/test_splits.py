"""Splits along z: the thesis's train / validation / test, and emseg train's split of the
labelled slices (--val-slices)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from emseg_lib import EmsegInputError
from emseg_lib.data import labelled_split, parse_val_slices, split_slices, thesis_split


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


# -- emseg train's split of a user's labelled slices ------------------------------------------

def _labels(n: int, unlabelled: tuple[int, ...] = ()) -> np.ndarray:
    labels = np.ones((n, 4, 4), np.uint32)
    labels[list(unlabelled)] = 0
    return labels


def test_thesis_split_as_slices_is_split_slices(small_volume):
    split = thesis_split(20)
    assert (split.train, split.val, split.test) == (tuple(range(16)), (16,), (17, 18, 19))
    for name, part in thesis_split(small_volume.shape[0]).apply(small_volume).items():
        expected = split_slices(small_volume.shape[0]).apply(small_volume)[name]
        assert np.shares_memory(part.raw, small_volume.raw)  # consecutive: views, as before
        np.testing.assert_array_equal(part.raw, expected.raw)
        np.testing.assert_array_equal(part.labels, expected.labels)


def test_every_labelled_slice_trains_or_validates_by_default():
    split = labelled_split(_labels(20))
    assert split.train == tuple(range(16)) and split.val == (16, 17, 18, 19)
    assert split.test == () and split.unlabelled == ()
    assert split.describe() == (
        "split: train slices 0-15 (16), validation 16-19 (4: the last 20 % of the labelled "
        "slices, the default); every labelled slice is used")
    assert split.identity() == {"train": "0-15", "val": "16-19"}


@pytest.mark.parametrize("spec, val", [("4", (16, 17, 18, 19)), ("1", (19,)),
                                       ("0.25", (15, 16, 17, 18, 19)), ("10%", (18, 19)),
                                       ("3,7,11", (3, 7, 11)), ("16-19", (16, 17, 18, 19)),
                                       ("12-12", (12,)), ("0-1, 5", (0, 1, 5))])
def test_val_slices_as_a_count_a_fraction_or_indices(spec, val):
    split = labelled_split(_labels(20), parse_val_slices(spec))
    assert split.val == val
    assert sorted(split.train + split.val) == list(range(20))  # every slice used, once
    assert f"--val-slices {spec}" in split.describe()


def test_unlabelled_slices_serve_neither_and_are_named():
    split = labelled_split(_labels(30, (5, *range(20, 30))))
    assert split.val == (16, 17, 18, 19)  # 20 % of the 19 labelled slices: 4
    assert 5 not in split.train and split.unlabelled == (5, *range(20, 30))
    assert "slices 5, 20-29 (11) are unlabelled (all 0) and serve neither" in split.describe()
    assert "slice 3 is unlabelled" in labelled_split(_labels(6, (3,))).describe()


def test_few_labelled_slices_say_what_was_done():
    split = labelled_split(_labels(2))
    assert (split.train, split.val) == ((0,), (1,))
    line = split.describe()
    assert "20 % of 2 is under 1, so 1" in line and "one validation slice" in line


def test_part_of_slices_that_are_not_consecutive(small_volume):
    split = labelled_split(small_volume.labels, parse_val_slices("1,3"))
    part = split.part(small_volume, "val")
    np.testing.assert_array_equal(part.raw, small_volume.raw[[1, 3]])
    np.testing.assert_array_equal(part.labels, small_volume.labels[[1, 3]])
    assert part.resolution == small_volume.resolution
    assert set(split.apply(small_volume)) == {"train", "val"}


@pytest.mark.parametrize("spec, fragment", [
    ("0", "at least 1 validation slice"),
    ("1.5", "strictly between 0 and 1"),
    ("100%", "strictly between 0 and 1"),
    ("5-3", "runs backwards; write 3-5"),
    ("abc", "--val-slices takes a count (4"),
    ("3,,4", "--val-slices takes a count (4"),
])
def test_unreadable_val_slices(spec, fragment):
    with pytest.raises(EmsegInputError, match=re.escape(fragment)):
        parse_val_slices(spec)


@pytest.mark.parametrize("labels, spec, fragment", [
    (_labels(20), "20", "would validate on all 20 labelled slices"),
    (_labels(20), "0.99", "would validate on all 20 labelled slices"),
    (_labels(20), "3,25", "slice 25 is outside the stack (slices 0-19)"),
    (_labels(20, (3, 4)), "3-4", "slices 3-4 are unlabelled (all 0)"),
    (_labels(4, (1, 2, 3)), None, "1 labelled slice (slice 0) of 4; training needs at least 2"),
])
def test_splits_that_cannot_be(labels, spec, fragment):
    with pytest.raises(EmsegInputError, match=re.escape(fragment)):
        labelled_split(labels, None if spec is None else parse_val_slices(spec))
