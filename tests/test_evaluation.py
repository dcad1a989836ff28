"""Evaluation protocols and the threshold grid."""

from __future__ import annotations

import numpy as np
import pytest

from emseg_lib.data.targets import cell_target, instance_boundary
from emseg_lib.evaluation import dense_segmentation, evaluate_slices, threshold_grid


@pytest.fixture(scope="module")
def perfect(request):
    volume = request.getfixturevalue("small_volume")
    gt = volume.labels[:3].astype(np.int64)
    prob = cell_target(instance_boundary(gt)) * 0.98 + 0.01
    return prob.astype(np.float32), gt


def test_perfect_prediction_scores_zero_under_both_protocols(perfect):
    prob, gt = perfect
    scores = evaluate_slices(prob, gt, 0.83, 0.91)
    for key in ("voi_before", "voi", "arand", "cremi_voi_split", "cremi_voi_merge",
                "cremi_arand"):
        assert scores[key] == pytest.approx(0.0, abs=1e-9), key


def test_an_opened_boundary_costs_merge_error(perfect):
    prob, gt = perfect
    broken = prob.copy()
    broken[instance_boundary(gt)] = 0.9  # boundaries vanish: everything merges
    scores = evaluate_slices(broken, gt, 0.83, 0.91)
    assert scores["voi_merge_before"] > 1.0 and scores["cremi_voi_merge"] > 1.0


def test_threshold_grid_layout(perfect):
    prob, gt = perfect
    grid = threshold_grid(prob, gt, [0.73, 0.9], [0.0, 0.05, 0.1])
    assert len(grid) == 3 * 2 * 3
    assert grid["edge_th"].max() == 1.0  # 0.9 + 0.1 clipped
    assert set(grid["slice"]) == {0, 1, 2}


def test_dense_segmentation_fills_boundaries():
    seg = np.array([[1, 0, 0, 2]])
    np.testing.assert_array_equal(dense_segmentation(seg), [[1, 1, 2, 2]])
