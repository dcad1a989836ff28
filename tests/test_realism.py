"""Sliced Wasserstein realism distance: a real/real floor below real/blurred and real/noise."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from emseg_lib import EmsegInputError
from emseg_lib.scoring.realism import laplacian_pyramid, sliced_wasserstein


def _crops(volume, n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        z = rng.integers(0, volume.shape[0])
        y, x = rng.integers(0, volume.shape[1] - 64, size=2)
        out.append(volume.raw[z, y:y + 64, x:x + 64] / 127.5 - 1)
    return np.stack(out)


def test_orders_real_blurred_noise(default_volume):
    real_a, real_b = _crops(default_volume, 24, 1), _crops(default_volume, 24, 2)
    floor = np.mean(sliced_wasserstein(real_a, real_b))
    blurred = np.mean(sliced_wasserstein(real_a, ndi.gaussian_filter(real_b, (0, 2, 2))))
    noise = np.mean(sliced_wasserstein(real_a, np.random.default_rng(0).normal(
        0, 0.5, real_a.shape)))
    assert floor < blurred < noise
    assert 3 * floor < blurred


def test_pyramid_and_errors():
    images = np.random.default_rng(0).random((2, 32, 32))
    levels = laplacian_pyramid(images, 3)
    assert [lv.shape for lv in levels] == [(2, 32, 32), (2, 16, 16), (2, 8, 8)]
    with pytest.raises(EmsegInputError, match="must have one shape"):
        sliced_wasserstein(images, images[:1])
    with pytest.raises(EmsegInputError, match="smaller than 7x7"):
        sliced_wasserstein(images, images, levels=4)
