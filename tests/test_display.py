"""Label colouring: touching cells differ (also on a CREMI-size slice); overlays."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from emseg_lib.data.targets import cell_target, instance_boundary
from emseg_lib.postprocess import label_cells
from emseg_lib.report.display import (
    BOUNDARY_RGB,
    adjacency_pairs,
    color_labels,
    greedy_coloring,
    overlay,
)


def test_touching_cells_get_different_colours(default_volume):
    labels = label_cells(cell_target(instance_boundary(default_volume.labels[0])), 0.5)
    colours = greedy_coloring(labels)
    pairs = adjacency_pairs(labels)
    assert len(pairs) > labels.max()  # cells separated by boundaries still count as touching
    assert all(colours[a] != colours[b] for a, b in pairs)
    rgb = color_labels(labels)
    for a, b in pairs[:50]:
        assert not np.allclose(rgb[labels == a][0], rgb[labels == b][0])
    assert np.all(rgb[labels == 0] == 0)


def test_direct_neighbours_without_gap():
    labels = np.array([[1, 1, 2], [3, 3, 2], [3, 3, 2]])
    colours = greedy_coloring(labels, gap=0)
    assert len({colours[1], colours[2], colours[3]}) == 3


def test_cremi_size_slice_neighbours_differ():
    rng = np.random.default_rng(0)
    seeds = rng.integers(0, 1250, (2500, 2))
    marker = np.zeros((1250, 1250), np.int64)
    marker[seeds[:, 0], seeds[:, 1]] = np.arange(1, 2501)
    _, (iy, ix) = ndi.distance_transform_edt(marker == 0, return_indices=True)
    labels = marker[iy, ix]
    rgb = color_labels(labels)
    differ = labels[:, 1:] != labels[:, :-1]
    assert np.all(np.any(rgb[:, 1:][differ] != rgb[:, :-1][differ], axis=-1))


def test_overlay_blends_cells_keeps_boundaries_and_outlines_segments():
    raw = np.full((6, 8), 200, np.uint8)
    labels = np.zeros((6, 8), np.int64)
    labels[:, :3], labels[:, 5:] = 1, 2
    out = overlay(raw, labels, alpha=0.5, edges=False)
    assert out.shape == (6, 8, 3) and 0 <= out.min() and out.max() <= 1
    np.testing.assert_allclose(out[:, 3:5], 200 / 255)  # label 0: the grey image
    colours = color_labels(labels)
    np.testing.assert_allclose(out[2, 1], 0.5 * 200 / 255 + 0.5 * colours[2, 1])
    assert not np.allclose(out[2, 1], out[2, 6])  # the two cells differ
    outlined = overlay(raw, labels, alpha=0.5)
    np.testing.assert_array_equal(outlined[2, 2], BOUNDARY_RGB)  # the outline of cell 1
    np.testing.assert_array_equal(outlined[2, 1], out[2, 1])  # its interior unchanged
