"""Post-processing: the thesis's watershed closes openings; dense flooding; the seeded method;
whole volumes per slice in worker processes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from emseg_lib import EmsegInputError
from emseg_lib.data.labels import stack_slices
from emseg_lib.postprocess import (
    METHODS,
    flood_boundaries,
    get_method,
    label_cells,
    seeded_watershed,
    segment_volume,
    watershed_postprocess,
)
from emseg_lib.postprocess.thesis import region_interfaces
from emseg_lib.scoring.evaluation import threshold_grid
from emseg_lib.scoring.metrics import pixel_accuracy


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
    slices = stack_slices(watershed_postprocess(p, 0.83, 0.91) for p in prob)
    assert slices.max() == 6 and len(np.unique(slices[slices > 0])) == 6


@pytest.mark.parametrize("name, kwargs", [("sig_th", {"sig_th": 1.2}),
                                          ("edge_th", {"edge_th": -0.1})])
def test_threshold_outside_unit_interval(name, kwargs):
    with pytest.raises(EmsegInputError, match=rf"{name} must lie in \[0, 1\]"):
        watershed_postprocess(_opened_membrane(0.5), **kwargs)


def test_logits_are_refused():
    with pytest.raises(EmsegInputError, match="apply a sigmoid"):
        watershed_postprocess(np.full((8, 8), 3.0, np.float32))
    assert watershed_postprocess(expit(np.full((8, 8), 3.0))).max() == 1


def test_wrong_rank():
    with pytest.raises(EmsegInputError, match=r"prob must have shape \(Y, X\) or \(Z, Y, X\)"):
        watershed_postprocess(np.zeros(5, np.float32))


def test_flooding_assigns_boundaries_along_the_probability():
    # two cells; the membrane's crest (lowest probability) is at column 2, off its middle:
    # column 3 is nearer to cell 1 but on cell 2's side of the crest
    prob = np.array([[0.9, 0.5, 0.05, 0.3, 0.5, 0.6, 0.7, 0.9]] * 3, np.float32)
    labels = np.array([[1, 0, 0, 0, 0, 0, 0, 2]] * 3)
    flooded = flood_boundaries(labels, prob)[0]
    np.testing.assert_array_equal(flooded[[0, 1, 3, 4, 5, 6, 7]], [1, 1, 2, 2, 2, 2, 2])
    assert flooded[2] in (1, 2)
    assert np.all(flood_boundaries(np.zeros((3, 3), int), np.ones((3, 3), np.float32)) == 1)


def test_seeded_watershed_is_dense_and_splits_at_the_membrane():
    labels = seeded_watershed(_opened_membrane(0.02), seed_th=0.8, smooth_px=1.0)
    assert labels.min() == 1 and labels.max() == 2
    assert labels[20, 5] != labels[20, 55]
    # an opening above seed_th joins the two seeds: the threshold decides
    assert seeded_watershed(_opened_membrane(0.97), seed_th=0.8, smooth_px=0.0).max() == 1


def test_seeds_smaller_than_the_minimum_are_dropped():
    prob = np.full((40, 40), 0.1, np.float32)
    prob[5:15, 5:15] = 0.95  # a 100-px cell
    prob[30, 30] = 0.95  # a 1-px speck: no seed of its own
    labels = seeded_watershed(prob, seed_th=0.5, smooth_px=0.0)
    assert labels.max() == 1


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_is_dense_by_default(name):
    method = get_method(name)
    labels = method.segment(_opened_membrane(0.88), method.defaults)
    assert labels.min() >= 1


def test_keep_boundaries_is_the_thesis_output():
    prob = _opened_membrane(0.88)
    method = get_method("thesis")
    kept = method.segment(prob, method.defaults, keep_boundaries=True)
    np.testing.assert_array_equal(kept, watershed_postprocess(prob, 0.83, 0.91))
    with pytest.raises(EmsegInputError, match="seeded method has none"):
        get_method("seeded").segment(prob, get_method("seeded").defaults,
                                     keep_boundaries=True)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_grid_segmentations_equal_direct_ones(name):
    method = get_method(name)
    prob = _opened_membrane(0.88)
    outer = method.grid[method.outer][2]
    for thresholds, seg in method.grid_segmentations(prob, outer):
        np.testing.assert_array_equal(seg, method.segment(prob, thresholds))


def test_threshold_of_another_method_is_refused():
    with pytest.raises(EmsegInputError, match="--seed-th is a threshold of another method"):
        get_method("thesis").thresholds({"seed_th": 0.5})


def test_volume_per_slice_ids_unique_and_same_with_workers():
    prob = np.stack([_opened_membrane(0.88), _opened_membrane(0.02), _opened_membrane(0.5)])
    serial = segment_volume(prob, "seeded", {"seed_th": 0.8, "smooth_px": 1.0}, workers=1,
                            start=10)
    # the 0.88 opening joins the two seeds; the others split the slice in two
    assert [len(np.unique(s)) for s in serial] == [1, 2, 2]
    assert serial.min() == 11 and serial.max() == 15 and len(np.unique(serial)) == 5
    parallel = segment_volume(prob, "seeded", {"seed_th": 0.8, "smooth_px": 1.0}, workers=2,
                              start=10)
    np.testing.assert_array_equal(parallel, serial)


def test_volume_in_3d_links_slices():
    prob = np.stack([_opened_membrane(0.02)] * 4)
    labels = segment_volume(prob, "seeded", {"seed_th": 0.8, "smooth_px": 1.0}, dims=3,
                            resolution=(40.0, 4.0, 4.0))
    assert labels.max() == 2 and len(np.unique(labels[:, 20, 5])) == 1


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
                       [0.83], [0.08], pixel_nm=4.0)


def test_region_interfaces_mark_one_side_of_each_interface():
    regions = np.array([[[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 3, 0]]])
    expected = np.array([[[0, 0, 1, 0], [0, 0, 1, 0], [1, 1, 1, 0]]], bool)
    np.testing.assert_array_equal(region_interfaces(regions), expected)
