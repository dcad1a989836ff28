"""How realistic generated EM crops are, without ImageNet weights.

:func:`sliced_wasserstein` is the progressive-GAN realism measure: 7x7 patches sampled from
every level of a Laplacian pyramid of the real and of the generated images, normalised, and
compared by the sliced Wasserstein distance (mean over random 1-D projections of the
distance between sorted projections). Lower is more realistic; two disjoint sets of real
crops give the noise floor to compare against.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from emseg_lib.errors import EmsegInputError, check_ndim

PATCH = 7


def laplacian_pyramid(images: np.ndarray, levels: int) -> list[np.ndarray]:
    """Band-pass levels of ``(N, H, W)`` images, finest first; the last is the low-pass."""
    pyramid = []
    current = images.astype(np.float64)
    for _ in range(levels - 1):
        smooth = ndi.gaussian_filter(current, (0, 1, 1))
        down = smooth[:, ::2, ::2]
        up = ndi.zoom(down, (1, current.shape[1] / down.shape[1], current.shape[2] /
                             down.shape[2]), order=1)
        pyramid.append(current - up)
        current = down
    pyramid.append(current)
    return pyramid


def _patches(level: np.ndarray, per_image: int, rng: np.random.Generator) -> np.ndarray:
    n, h, w = level.shape
    if h < PATCH or w < PATCH:
        raise EmsegInputError(f"pyramid level of {h}x{w} px is smaller than {PATCH}x{PATCH}")
    ys = rng.integers(0, h - PATCH + 1, size=(n, per_image))
    xs = rng.integers(0, w - PATCH + 1, size=(n, per_image))
    offsets = np.arange(PATCH)
    rows = ys[..., None, None] + offsets[:, None]
    cols = xs[..., None, None] + offsets[None, :]
    images = np.arange(n)[:, None, None, None]
    return level[images, rows, cols].reshape(n * per_image, PATCH * PATCH)


def sliced_wasserstein(real: np.ndarray, fake: np.ndarray, *, levels: int = 3,
                       patches_per_image: int = 64, projections: int = 256, seed: int = 0
                       ) -> list[float]:
    """Sliced Wasserstein distance per Laplacian-pyramid level (x 1000, finest first).

    Args:
        real, fake: ``(N, H, W)`` grey images on the same intensity scale (same N, H, W).
        levels: pyramid levels (the coarsest must still hold 7x7 patches).
    """
    check_ndim("real", real, (3,), "(N, H, W)")
    check_ndim("fake", fake, (3,), "(N, H, W)")
    if real.shape != fake.shape:
        raise EmsegInputError(f"real {real.shape} and fake {fake.shape} must have one shape")
    rng = np.random.default_rng(seed)
    distances = []
    for real_level, fake_level in zip(laplacian_pyramid(real, levels),
                                      laplacian_pyramid(fake, levels), strict=True):
        a = _patches(real_level, patches_per_image, rng)
        b = _patches(fake_level, patches_per_image, rng)
        mean, std = a.mean(axis=0), a.std(axis=0) + 1e-8
        a, b = (a - mean) / std, (b - mean) / std
        directions = rng.standard_normal((a.shape[1], projections))
        directions /= np.linalg.norm(directions, axis=0, keepdims=True)
        pa, pb = np.sort(a @ directions, axis=0), np.sort(b @ directions, axis=0)
        distances.append(float(np.abs(pa - pb).mean() * 1000))
    return distances
