"""The synthetic EM volume: determinism and sanity."""

from __future__ import annotations

import numpy as np
import pytest

from emseg_lib import EmsegInputError
from emseg_lib.data import synthetic_em_volume
from emseg_lib.data.targets import instance_boundary


def test_deterministic_under_seed(small_volume):
    again = synthetic_em_volume((12, 96, 96), seed=3)
    np.testing.assert_array_equal(again.raw, small_volume.raw)
    np.testing.assert_array_equal(again.labels, small_volume.labels)
    other = synthetic_em_volume((12, 96, 96), seed=4)
    assert not np.array_equal(other.raw, small_volume.raw)


def test_layout(default_volume):
    assert default_volume.raw.shape == (32, 256, 256)
    assert default_volume.raw.dtype == np.uint8
    assert default_volume.labels.dtype == np.uint64
    assert default_volume.synthetic
    assert default_volume.resolution == (40.0, 4.0, 4.0)


def test_sanity(default_volume):
    labels = default_volume.labels
    ids = np.unique(labels)
    assert len(ids) > 50
    assert ids[0] == 1, "dense partition: every voxel belongs to a cell"
    # dark membranes cover 5-25 % of the image
    dark = default_volume.raw < 90
    assert 0.05 <= dark.mean() <= 0.25
    # and the dark pixels sit on the label boundaries, not inside cells
    edges = instance_boundary(labels, thickness=1)
    assert dark[edges].mean() > 3 * dark[~edges].mean()
    # cells persist through z: most ids span several slices
    spans = [len(np.unique(np.nonzero(labels == i)[0])) for i in ids[:40]]
    assert np.median(spans) >= 5


def test_cells_are_neurite_like_not_noise(default_volume):
    raw = default_volume.raw.astype(float)
    # slice-to-slice correlation of a real stack is high but below 1 (sections differ)
    corr = np.corrcoef(raw[10].ravel(), raw[11].ravel())[0, 1]
    assert 0.3 < corr < 0.99


def test_rejects_bad_shape():
    with pytest.raises(EmsegInputError, match="shape must be"):
        synthetic_em_volume((4, 16, 16))
    with pytest.raises(EmsegInputError, match="three positive sizes"):
        synthetic_em_volume((4, 64))
