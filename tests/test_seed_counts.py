"""The one-sweep seed counter gives, at every cut, the count a labelling per cut gives."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from emseg_lib.postprocess.seed_counts import seed_counts


def _labelled_counts(smoothed: np.ndarray, cuts: list[float], min_size: int,
                     per_slice: bool) -> list[int]:
    """The count by labelling ``smoothed > cut`` (face connectivity) at each cut."""
    parts = smoothed if per_slice else smoothed[None]
    return [sum(int(np.count_nonzero(np.bincount(ndi.label(part > np.float32(cut))[0].ravel())
                                     [1:] >= min_size)) for part in parts) for cut in cuts]


@pytest.mark.parametrize("shape", [(40, 50), (4, 30, 40), (3, 1, 7), (1, 1)])
@pytest.mark.parametrize("min_size", [1, 3, 10])
@pytest.mark.parametrize("per_slice", [False, True])
def test_counts_equal_a_labelling_at_every_cut(shape, min_size, per_slice):
    rng = np.random.default_rng(sum(shape) + min_size)
    smoothed = ndi.gaussian_filter(rng.random(shape).astype(np.float32), 1.5)
    lo, hi = np.percentile(smoothed, [1, 99])
    # unsorted, repeated, at the map's own values and beyond its range
    cuts = [float(c) for c in lo + np.linspace(0.98, 0.3, 35) * (hi - lo)]
    cuts += [cuts[3], 0.0, 1.0, float(smoothed.max()), float(smoothed.min())]
    counts = seed_counts(smoothed, cuts, min_size, per_slice=per_slice)
    assert counts.tolist() == _labelled_counts(smoothed, cuts, min_size,
                                               per_slice and smoothed.ndim == 3)


def test_two_cells_joined_through_a_weak_spot_count_as_one_below_it():
    volume = np.zeros((3, 10, 21), dtype=np.float32)
    volume[:, 2:8, 2:9] = volume[:, 2:8, 12:19] = 1.0
    volume[1, 4, 9:12] = 0.6  # a bridge in the middle slice only
    assert seed_counts(volume, [0.5, 0.7], 1).tolist() == [1, 2]
    assert seed_counts(volume, [0.5, 0.7], 1, per_slice=True).tolist() == [5, 6]
    # seeds smaller than min_size are not counted: the bridge is 3 pixels
    assert seed_counts(volume[1], [0.5, 0.99], 43).tolist() == [1, 0]
