"""Evaluation protocols and the threshold grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emseg_lib.data.targets import cell_target, instance_boundary
from emseg_lib.postprocess import flood_boundaries, watershed_postprocess
from emseg_lib.scoring.evaluation import (
    PROTOCOLS,
    dense_segmentation,
    evaluate_slices,
    score_volume,
    threshold_grid,
)


@pytest.fixture(scope="module")
def perfect(request):
    volume = request.getfixturevalue("small_volume")
    gt = volume.labels[:3].astype(np.int64)
    prob = cell_target(instance_boundary(gt)) * 0.98 + 0.01
    return prob.astype(np.float32), gt


def test_perfect_prediction_scores_zero_under_both_protocols(perfect):
    prob, gt = perfect
    scores = evaluate_slices(prob, gt, 0.83, 0.91, pixel_nm=4.0)
    for key in ("voi_before", "voi", "arand", "cremi_voi_split", "cremi_voi_merge",
                "cremi_arand"):
        assert scores[key] == pytest.approx(0.0, abs=1e-9), key


def test_an_opened_boundary_costs_merge_error(perfect):
    prob, gt = perfect
    broken = prob.copy()
    broken[instance_boundary(gt)] = 0.9  # boundaries vanish: everything merges
    scores = evaluate_slices(broken, gt, 0.83, 0.91, pixel_nm=4.0)
    assert scores["voi_merge_before"] > 1.0 and scores["cremi_voi_merge"] > 1.0


def test_threshold_grid_cells_equal_single_pair_scores(perfect):
    prob, gt = perfect
    noisy = np.clip(prob + np.random.default_rng(0).normal(0, 0.15, prob.shape), 0, 1)
    noisy = noisy.astype(np.float32)
    grid = threshold_grid(noisy, gt, [0.73, 0.9], [0.0, 0.05, 0.1], pixel_nm=4.0)
    assert len(grid) == 3 * 2 * 3 and set(grid["slice"]) == {0, 1, 2}
    assert grid["edge_th"].max() == 1.0  # 0.9 + 0.1 clipped
    cell = grid[(grid.sig_th == 0.9) & (grid.edge_delta == 0.1)].drop(
        columns=["slice", "sig_th", "edge_delta", "edge_th"]).mean()
    direct = evaluate_slices(noisy, gt, 0.9, 1.0, pixel_nm=4.0)
    for key, value in direct.items():
        assert cell[key] == pytest.approx(value), key
    assert grid.groupby("sig_th")["voi"].mean().nunique() == 2  # thresholds change scores


def test_dense_segmentation_fills_boundaries():
    seg = np.array([[1, 0, 0, 2]])
    np.testing.assert_array_equal(dense_segmentation(seg), [[1, 1, 2, 2]])


def test_score_volume_is_the_notebooks_scoring(perfect):
    prob, gt = perfect
    noisy = np.clip(prob + np.random.default_rng(1).normal(0, 0.15, prob.shape), 0, 1)
    noisy = noisy.astype(np.float32)
    kept = np.stack([watershed_postprocess(p, 0.83, 0.91) for p in noisy])
    dense = np.stack([flood_boundaries(k, p) for k, p in zip(kept, noisy, strict=True)])
    notebook = evaluate_slices(noisy, gt, 0.83, 0.91, pixel_nm=4.0)
    cremi = score_volume(dense, gt, "cremi", pixel_nm=4.0).mean()
    thesis = score_volume(kept, gt, "thesis", pixel_nm=4.0).mean()
    assert cremi["voi_split"] == pytest.approx(notebook["cremi_voi_split"])
    assert cremi["arand"] == pytest.approx(notebook["cremi_arand"])
    assert thesis["voi"] == pytest.approx(notebook["voi"])
    assert thesis["arand"] == pytest.approx(notebook["arand"])


def test_threshold_grid_is_the_same_with_workers(perfect):
    prob, gt = perfect
    noisy = np.clip(prob + np.random.default_rng(2).normal(0, 0.15, prob.shape), 0, 1)
    noisy = noisy.astype(np.float32)
    args = (noisy, gt, [0.6, 0.83, 0.9], [0.0, 0.02, 0.05, 0.1])
    serial = threshold_grid(*args, pixel_nm=4.0, workers=1)
    assert len(serial) == 3 * 3 * 4
    pd.testing.assert_frame_equal(threshold_grid(*args, pixel_nm=4.0, workers=2), serial)
    pd.testing.assert_frame_equal(threshold_grid(*args, pixel_nm=4.0, workers=3), serial)


def test_plain_protocol_equals_scikit_image_on_the_labelled_pixels(perfect):
    """``plain`` (ISBI / SNEMI): ground-truth 0 ignored, no band, the segmentation as given
    (its 0 one more segment) = scikit-image's scores of the pixels where gt > 0."""
    from skimage.metrics import adapted_rand_error, variation_of_information

    prob, gt = perfect
    gt = gt.copy()
    gt[:, :, :6] = 0  # an unlabelled strip
    noisy = np.clip(prob + np.random.default_rng(3).normal(0, 0.15, prob.shape), 0, 1)
    seg = np.stack([flood_boundaries(watershed_postprocess(p, 0.83, 0.91), p)
                    for p in noisy.astype(np.float32)])
    seg[0, 10:30, 10:30] = 0
    plain = score_volume(seg, gt, "plain", pixel_nm=4.0)
    assert list(plain["slice"]) == [0, 1, 2]
    for z, row in plain.set_index("slice").iterrows():
        keep = gt[z] > 0
        split, merge = variation_of_information(gt[z][keep], seg[z][keep], ignore_labels=())
        arand = adapted_rand_error(gt[z][keep], seg[z][keep], ignore_labels=())[0]
        np.testing.assert_allclose([row.voi_split, row.voi_merge, row.arand],
                                   [split, merge, arand], rtol=0, atol=1e-12)
    cremi = score_volume(seg, gt, "cremi", pixel_nm=4.0)
    assert not np.allclose(plain["voi"], cremi["voi"])  # no band: another protocol
    assert set(PROTOCOLS) == {"cremi", "thesis", "plain"}
