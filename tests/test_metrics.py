"""Metrics: zero on identical segmentations, hand-computed values, CREMI conventions."""

from __future__ import annotations

import numpy as np
import pytest

from emseg_lib import EmsegInputError
from emseg_lib.scoring.metrics import (
    SCORE_COLUMNS,
    adapted_rand,
    cremi_boundary_mask,
    pixel_accuracy,
    segmentation_scores,
    voi,
)


def test_identical_segmentations_score_zero(default_volume):
    gt = default_volume.labels[:4].astype(np.int64)
    relabelled = gt * 7 + 3  # ids differ, partition identical
    scores = segmentation_scores(gt, relabelled)
    assert scores.voi_split == pytest.approx(0, abs=1e-12)
    assert scores.voi_merge == pytest.approx(0, abs=1e-12)
    assert scores.arand == pytest.approx(0, abs=1e-12)
    assert scores.cremi_score == pytest.approx(0, abs=1e-6)


def test_scores_of_a_perfect_side_are_zero_never_rounding_noise_below_it():
    """A relabelled ground truth whose sums round differently: merge was -3.2e-16 (and such
    values reached history.csv); entropies and the Rand error are never negative."""
    gt = np.repeat([1, 2, 3], [1, 3, 7])[None]
    seg = 4 - gt  # the same partition, ids in the opposite order
    split, merge = voi(gt, seg)
    assert (split, merge) == (0.0, 0.0)
    scores = segmentation_scores(gt, seg)
    assert (scores.voi_split, scores.voi_merge, scores.arand, scores.voi) == (0, 0, 0, 0)
    rng = np.random.default_rng(0)
    for _ in range(200):
        truth = rng.integers(1, rng.integers(2, 12), size=rng.integers(10, 200))
        relabelled = rng.permutation(np.arange(1, 13))[truth - 1]
        assert min(*voi(truth, relabelled), adapted_rand(truth, relabelled)) >= 0.0


def test_hand_computed_merge():
    gt = np.array([[1, 1, 2, 2]])
    seg = np.array([[5, 5, 5, 5]])
    split, merge = voi(gt, seg)
    assert split == pytest.approx(0.0)
    assert merge == pytest.approx(1.0)  # H(gt | seg) = 1 bit
    # pairs (n(n-1) convention): together in both 4, in gt 4, in seg 12 -> P 1/3, R 1, F 1/2
    assert adapted_rand(gt, seg) == pytest.approx(0.5)


def test_hand_computed_split_is_the_mirror():
    split, merge = voi(np.array([[5, 5, 5, 5]]), np.array([[1, 1, 2, 2]]))
    assert (split, merge) == pytest.approx((1.0, 0.0))


def test_gt_background_ignored_and_seg_background_optional():
    gt = np.array([[0, 0, 1, 1, 2, 2]])
    seg = np.array([[9, 8, 1, 1, 0, 0]])
    split, merge = voi(gt, seg)
    assert split == pytest.approx(0.0) and merge == pytest.approx(0.0)
    # with seg 0 dropped, gt 2 has no pixel left; what remains is perfect
    assert voi(gt, np.array([[9, 8, 1, 1, 0, 3]]), ignore_seg_background=True) == (
        pytest.approx(0.0), pytest.approx(0.0))


def test_pixel_accuracy():
    prob = np.array([0.9, 0.2, 0.6, 0.4])
    target = np.array([1, 0, 0, 0])
    assert pixel_accuracy(prob, target) == pytest.approx(0.75)
    with pytest.raises(EmsegInputError, match=r"threshold must lie in \[0, 1\]"):
        pixel_accuracy(prob, target, threshold=2)


def test_cremi_boundary_band(two_cells):
    band = cremi_boundary_mask(two_cells, border_nm=25, pixel_nm=4)
    # label change between x = 29 and 30; distance <= 6.25 px from those two columns
    np.testing.assert_array_equal(band[0], (np.arange(60) >= 23) & (np.arange(60) <= 36))
    scores = segmentation_scores(two_cells, np.where(band, 0, two_cells), border_nm=25,
                                 pixel_nm=4)
    assert scores.voi == pytest.approx(0.0)


def test_shape_mismatch_and_empty_gt():
    with pytest.raises(EmsegInputError, match=r"gt has shape \(2,\) but seg has shape \(3,\)"):
        voi(np.ones(2, int), np.ones(3, int))
    with pytest.raises(EmsegInputError, match="no labelled"):
        voi(np.zeros(3, int), np.ones(3, int))


def _skimage_scores(gt, seg, ignore_gt_background=True, ignore_seg_background=False):
    from skimage.metrics import adapted_rand_error, variation_of_information
    if ignore_seg_background:
        gt, seg = gt[seg != 0], seg[seg != 0]
    ignore = (0,) if ignore_gt_background else ()
    split, merge = variation_of_information(gt, seg, ignore_labels=ignore)
    return split, merge, adapted_rand_error(gt, seg, ignore_labels=ignore)[0]


@pytest.mark.parametrize("ignore_gt, ignore_seg", [(True, False), (False, False),
                                                   (True, True)])
def test_one_contingency_table_equals_scikit_image(default_volume, ignore_gt, ignore_seg):
    """VOI split/merge and ARAND from one table equal scikit-image's to 1e-12: random ids,
    large sparse ids (the sorting path), and a real-like over-/under-segmentation."""
    rng = np.random.default_rng(0)
    gt = default_volume.labels[:2].astype(np.int64)
    cases = [(rng.integers(0, 7, (50, 60)), rng.integers(0, 9, (50, 60))),
             (rng.integers(0, 5, (40, 40)) * 10**5, rng.integers(0, 3000, (40, 40))),
             (gt, np.where(rng.random(gt.shape) < 0.02, 0, (gt * 3 + (gt % 5 == 0)) // 2))]
    for truth, seg in cases:
        ours = segmentation_scores(truth, seg, ignore_gt_background=ignore_gt,
                                   ignore_seg_background=ignore_seg)
        reference = _skimage_scores(truth, seg, ignore_gt, ignore_seg)
        np.testing.assert_allclose([ours.voi_split, ours.voi_merge, ours.arand], reference,
                                   rtol=0, atol=1e-12)
        assert voi(truth, seg, ignore_gt_background=ignore_gt,
                   ignore_seg_background=ignore_seg) == (ours.voi_split, ours.voi_merge)
        assert adapted_rand(truth, seg, ignore_gt_background=ignore_gt,
                            ignore_seg_background=ignore_seg) == ours.arand


def test_every_table_names_every_score_once(default_volume):
    gt = default_volume.labels[:2].astype(np.int64)
    scores = segmentation_scores(gt, gt // 2).as_dict()
    assert sorted(SCORE_COLUMNS) == sorted(scores)  # one list, the same scores
