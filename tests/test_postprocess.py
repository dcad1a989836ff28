"""Watershed post-processing closes openings in predicted boundaries."""

from __future__ import annotations

import numpy as np
import pytest

from emseg_lib import EmsegInputError
from emseg_lib.evaluation import threshold_grid
from emseg_lib.metrics import pixel_accuracy
from emseg_lib.postprocess import (
    label_cells,
    per_slice,
    sigmoid,
    watershed_postprocess,
)


def _opened_membrane(gap_prob: float) -> np.ndarray:
    """(40, 60) probability map: two cells split by a 3-px membrane with a 3-px opening."""
    prob = np.full((40, 60), 0.98, dtype=np.float32)
    prob[:, 28:31] = 0.02
    prob[18:21, 28:31] = gap_prob
    return prob


def test_closes_an_open_boundary():
    prob = _opened_membrane(0.88)
    assert label_cells(prob, 0.83).max() == 1, "thresholding alone leaves the cells merged"
    labels = watershed_postprocess(prob, sig_th=0.83, edge_th=0.91)
    assert labels.max() == 2
    assert labels[20, 5] != labels[20, 55]
    assert labels[20, 5] > 0 and labels[20, 55] > 0


def test_keeps_a_confident_connection():
    # the opening's probability is above edge_th: it is a real connection, not an opening
    labels = watershed_postprocess(_opened_membrane(0.97), sig_th=0.83, edge_th=0.91)
    assert labels.max() == 1


def test_does_not_split_a_plain_cell():
    prob = np.full((30, 30), 0.99, np.float32)
    prob[[0, -1], :] = prob[:, [0, -1]] = 0.01
    assert watershed_postprocess(prob, 0.5, 0.9).max() == 1


def test_volume_and_per_slice():
    prob = np.stack([_opened_membrane(0.88)] * 3)
    volume = watershed_postprocess(prob, 0.83, 0.91)
    assert volume.max() == 2  # 3D: each cell is one object through z
    slices = per_slice(lambda p: watershed_postprocess(p, 0.83, 0.91), prob)
    assert slices.max() == 6 and len(np.unique(slices[slices > 0])) == 6


@pytest.mark.parametrize("name, kwargs", [("sig_th", {"sig_th": 1.2}),
                                          ("edge_th", {"edge_th": -0.1})])
def test_threshold_outside_unit_interval(name, kwargs):
    with pytest.raises(EmsegInputError, match=rf"{name} must lie in \[0, 1\]"):
        watershed_postprocess(_opened_membrane(0.5), **kwargs)


def test_logits_are_refused():
    with pytest.raises(EmsegInputError, match="apply a sigmoid"):
        watershed_postprocess(np.full((8, 8), 3.0, np.float32))
    assert watershed_postprocess(sigmoid(np.full((8, 8), 3.0))).max() == 1


def test_wrong_rank():
    with pytest.raises(EmsegInputError, match=r"prob must have shape \(Y, X\) or \(Z, Y, X\)"):
        watershed_postprocess(np.zeros(5, np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_probabilities_are_refused(bad):
    prob = _opened_membrane(0.88)
    prob[3, 4] = bad
    message = r"prob holds 1 NaN/inf values \(first at index \(3, 4\)\)"
    for segment in (lambda p: watershed_postprocess(p, 0.83, 0.91),
                    lambda p: label_cells(p, 0.83),
                    lambda p: pixel_accuracy(p, np.ones_like(p))):
        with pytest.raises(EmsegInputError, match=message):
            segment(prob)
    with pytest.raises(EmsegInputError, match=r"first at index \(1, 3, 4\)"):
        threshold_grid(np.stack([_opened_membrane(0.88), prob]), np.ones((2, 40, 60), int),
                       [0.83], [0.08])
