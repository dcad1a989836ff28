"""Label colouring: touching cells differ, fast on a CREMI-size slice."""

from __future__ import annotations

import time

import numpy as np

from emseg_lib.data.targets import cell_target, instance_boundary
from emseg_lib.display import adjacency_pairs, color_labels, greedy_coloring, overlay
from emseg_lib.postprocess import label_cells


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


def test_fast_on_cremi_size_slice():
    rng = np.random.default_rng(0)
    seeds = rng.integers(0, 1250, (2500, 2))
    from scipy import ndimage as ndi

    marker = np.zeros((1250, 1250), np.int64)
    marker[seeds[:, 0], seeds[:, 1]] = np.arange(1, 2501)
    _, (iy, ix) = ndi.distance_transform_edt(marker == 0, return_indices=True)
    labels = marker[iy, ix]
    start = time.perf_counter()
    color_labels(labels)
    assert time.perf_counter() - start < 1.0


def test_overlay_range(default_volume):
    labels = default_volume.labels[0].astype(np.int64)
    out = overlay(default_volume.raw[0], labels)
    assert out.shape == (256, 256, 3) and 0 <= out.min() and out.max() <= 1
