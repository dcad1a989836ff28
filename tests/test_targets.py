"""Boundary and affinity targets on hand-made label images with known boundaries."""

from __future__ import annotations

import numpy as np

from emseg_lib.data.targets import (
    affinities,
    cell_target,
    instance_boundary,
    laplacian_boundary,
)


def test_laplacian_marks_both_sides_of_the_change(two_cells):
    boundary = laplacian_boundary(two_cells)
    expected = np.zeros_like(boundary)
    expected[:, 29:31] = True
    np.testing.assert_array_equal(boundary, expected)


def test_laplacian_dilation_widens(two_cells):
    boundary = laplacian_boundary(two_cells, dilation=1)
    assert np.all(boundary[:, 28:32]) and not boundary[:, :28].any()
    assert not boundary[:, 32:].any()


def test_instance_boundary_connectomics_width(two_cells):
    # [1, 0, -1] differences mark x = 29 and 30; a 3x3 dilation gives x = 28..31
    np.testing.assert_array_equal(instance_boundary(two_cells, thickness=0)[0],
                                  np.isin(np.arange(60), [29, 30]))
    np.testing.assert_array_equal(instance_boundary(two_cells, thickness=1)[5],
                                  np.isin(np.arange(60), [28, 29, 30, 31]))


def test_instance_boundary_per_slice_and_background():
    labels = np.ones((2, 10, 10), np.int64)
    labels[1] = 2  # a change along z only is not an in-plane boundary
    assert not instance_boundary(labels, thickness=0).any()
    labels[0, 4, 4] = 0
    bd = instance_boundary(labels, thickness=0)
    assert bd[0, 4, 4] and bd[0, 4, 3] and bd[0, 3, 4]
    # without background marking, a lone 0 pixel inside one cell is no contour by itself
    assert not instance_boundary(labels, thickness=0, background=False)[0, 4, 4]


def test_cell_target_inverts(two_cells):
    target = cell_target(instance_boundary(two_cells))
    assert target.dtype == np.float32
    assert target[0, 0] == 1.0 and target[0, 29] == 0.0
    assert target.sum() == 40 * 56


def test_affinities_hand_made():
    labels = np.zeros((2, 3, 3), np.int64)
    labels[:, :, :2] = 1
    labels[:, :, 2] = 2
    labels[1, 0, 0] = 0
    aff = affinities(labels)
    assert aff.shape == (3, 2, 3, 3)
    # z: slice 1 equals slice 0 except the background voxel
    assert aff[0, 0].sum() == 0
    np.testing.assert_array_equal(aff[0, 1], [[0, 1, 1], [1, 1, 1], [1, 1, 1]])
    # x: the 1 -> 2 change at x = 2 breaks the affinity
    np.testing.assert_array_equal(aff[2, 0], [[0, 1, 0]] * 3)
    # y: constant along y except the background voxel's neighbour
    np.testing.assert_array_equal(aff[1, 1], [[0, 0, 0], [0, 1, 1], [1, 1, 1]])
