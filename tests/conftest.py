"""Shared fixtures: small volumes written and built by the tests themselves."""

from __future__ import annotations

import numpy as np
import pytest

from emseg_lib.data import EMVolume, synthetic_em_volume


@pytest.fixture(scope="session")
def small_volume() -> EMVolume:
    """A (12, 96, 96) synthetic volume, cheap enough for every test."""
    return synthetic_em_volume((12, 96, 96), seed=3)


@pytest.fixture(scope="session")
def default_volume() -> EMVolume:
    """The default-size synthetic volume (32, 256, 256), seed 0."""
    return synthetic_em_volume(seed=0)


@pytest.fixture
def two_cells() -> np.ndarray:
    """(40, 60) labels: cell 1 on the left (x < 30), cell 2 on the right."""
    labels = np.ones((40, 60), dtype=np.int64)
    labels[:, 30:] = 2
    return labels
