"""A synthetic stand-in for a CREMI volume, with its ground-truth neuron ids.

Used whenever the real CREMI files are absent, so every notebook and test runs anywhere.
What it imitates (serial-section TEM of neuropil at 4 x 4 x 40 nm):

* neurites as tubes running mostly along z: seeds that drift slice to slice, some of them
  starting or ending inside the volume (processes that branch off or terminate);
* cells of varying size (seed disks of log-normal radius) with wavy, non-polygonal outlines
  (watershed of the distance to the seeds plus a smooth random field);
* dark membranes whose width varies smoothly along the outline;
* intracellular texture, vesicle-like dark dots and mitochondria-like dark ellipses with
  stripes, spanning a few slices inside one cell;
* per-slice blur, brightness/contrast changes, Gaussian noise and a small global
  slice-to-slice drift (misalignment) of image and labels together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import disk, ellipse
from skimage.segmentation import find_boundaries, relabel_sequential, watershed

from emseg_lib.data.cremi import CREMI_RESOLUTION_NM, EMVolume
from emseg_lib.errors import EmsegInputError

DEFAULT_SHAPE = (32, 256, 256)


@dataclass(frozen=True)
class SyntheticEMConfig:
    """Appearance parameters of :func:`synthetic_em_volume` (lengths in pixels)."""

    mean_cell_diameter: float = 36.0
    seed_drift_per_slice: float = 0.7
    transient_fraction: float = 0.3
    membrane_width: tuple[float, float] = (2.0, 5.0)
    mitochondria_per_megapixel: float = 120.0
    noise_std: float = 0.05
    blur_sigma: tuple[float, float] = (0.6, 1.2)
    global_drift_std: float = 0.4


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma) -> np.ndarray:
    """Gaussian-filtered white noise with zero mean and unit standard deviation."""
    field = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    field -= field.mean()
    field /= field.std() + 1e-8
    return field


def _seed_tracks(rng: np.random.Generator, n_slices: int, canvas: tuple[int, int],
                 config: SyntheticEMConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seed positions per slice ``(S, Z, 2)``, presence ``(S, Z)`` and radii ``(S,)``."""
    area = canvas[0] * canvas[1]
    n_seeds = int(area / (math.pi * (config.mean_cell_diameter / 2) ** 2) * 1.15)
    start = rng.uniform((0, 0), canvas, size=(n_seeds, 2))
    velocity = rng.normal(0.0, config.seed_drift_per_slice, size=(n_seeds, 2))
    jitter = rng.normal(0.0, 0.25, size=(n_seeds, n_slices, 2)).cumsum(axis=1)
    steps = np.arange(n_slices)[None, :, None]
    positions = start[:, None, :] + velocity[:, None, :] * steps + jitter
    present = np.ones((n_seeds, n_slices), dtype=bool)
    transient = rng.random(n_seeds) < config.transient_fraction
    for s in np.flatnonzero(transient):
        a, b = np.sort(rng.integers(0, n_slices + 1, size=2))
        if b - a >= 2:
            present[s] = False
            present[s, a:b] = True
    radii = np.clip(rng.lognormal(math.log(config.mean_cell_diameter * 0.22), 0.45, n_seeds),
                    1.5, config.mean_cell_diameter)
    return positions, present, radii


def _grow_cells(positions: np.ndarray, present: np.ndarray, radii: np.ndarray,
                canvas: tuple[int, int], relief: np.ndarray) -> np.ndarray:
    """Per-slice watershed from the seed disks: labels ``(Z, H, W)``, seed s has id s + 1."""
    n_slices = present.shape[1]
    labels = np.zeros((n_slices, *canvas), dtype=np.int32)
    order = np.argsort(-radii)  # large seeds claim their disk first, small ones fill gaps
    for z in range(n_slices):
        markers = np.zeros(canvas, dtype=np.int32)
        for s in order:
            if present[s, z]:
                rr, cc = disk(tuple(positions[s, z]), radii[s], shape=canvas)
                free = markers[rr, cc] == 0
                markers[rr[free], cc[free]] = s + 1
        distance = ndi.distance_transform_edt(markers == 0)
        labels[z] = watershed(distance + relief[z], markers)
    return labels


def _membranes(rng: np.random.Generator, labels: np.ndarray,
               config: SyntheticEMConfig) -> np.ndarray:
    """Boolean membrane mask ``(Z, H, W)`` of smoothly varying width around label changes."""
    lo, hi = config.membrane_width
    width = lo + (hi - lo) * (0.5 + 0.5 * np.tanh(_smooth_noise(rng, labels.shape, (2, 12, 12))))
    membrane = np.zeros(labels.shape, dtype=bool)
    for z in range(labels.shape[0]):
        edges = find_boundaries(labels[z], mode="inner")
        # the inner boundary is 2 px wide: distance from it adds (width - 2) / 2 per side
        membrane[z] = ndi.distance_transform_edt(~edges) <= (width[z] - 2.0) / 2.0
    return membrane


def _mitochondria(rng: np.random.Generator, labels: np.ndarray, membrane: np.ndarray,
                  config: SyntheticEMConfig) -> np.ndarray:
    """Mitochondria darkness ``(Z, H, W)`` in [0, 1]: striped ellipses inside one cell each."""
    n_slices, height, width = labels.shape
    darkness = np.zeros(labels.shape, dtype=np.float32)
    count = rng.poisson(config.mitochondria_per_megapixel * height * width * 1e-6 * n_slices / 4)
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(count):
        z0 = int(rng.integers(0, n_slices))
        center = rng.uniform((0, 0), (height, width))
        host = labels[z0, int(center[0]), int(center[1])]
        semi = rng.uniform((5, 3), (13, 6))
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(2.5, 4.0)
        for z in range(z0, min(n_slices, z0 + int(rng.integers(2, 7)))):
            rr, cc = ellipse(center[0], center[1], semi[0], semi[1], (height, width), angle)
            inside = (labels[z, rr, cc] == host) & ~membrane[z, rr, cc]
            rr, cc = rr[inside], cc[inside]
            stripes = 0.8 + 0.2 * np.sin((yy[rr, cc] * math.cos(angle)
                                          + xx[rr, cc] * math.sin(angle)) * 2 * math.pi / period)
            darkness[z, rr, cc] = np.maximum(darkness[z, rr, cc], stripes)
    return darkness


def _render(rng: np.random.Generator, labels: np.ndarray, membrane: np.ndarray,
            mito: np.ndarray, config: SyntheticEMConfig) -> np.ndarray:
    """EM-like intensities in [0, 1], ``(Z, H, W)`` float32."""
    cell_tone = rng.normal(0.0, 0.05, size=int(labels.max()) + 1).astype(np.float32)
    image = 0.62 + cell_tone[labels]
    image += 0.05 * _smooth_noise(rng, labels.shape, (0.5, 1.5, 1.5))
    image += 0.03 * _smooth_noise(rng, labels.shape, (1.0, 6.0, 6.0))
    vesicles = ndi.gaussian_filter((rng.random(labels.shape) < 0.003).astype(np.float32),
                                   (0, 1.2, 1.2))
    image -= 1.5 * vesicles * ~membrane
    image -= 0.30 * mito
    membrane_tone = 0.17 + 0.04 * _smooth_noise(rng, labels.shape, (1, 4, 4))
    image = np.where(membrane, membrane_tone, image)
    for z in range(labels.shape[0]):
        image[z] = ndi.gaussian_filter(image[z], rng.uniform(*config.blur_sigma))
        image[z] = image[z] * rng.normal(1.0, 0.05) + rng.normal(0.0, 0.03)
    image += rng.normal(0.0, config.noise_std, size=labels.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0)


def synthetic_em_volume(
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    seed: int = 0,
    config: SyntheticEMConfig | None = None,
) -> EMVolume:
    """Make a synthetic EM volume and its ground-truth neuron ids.

    Args:
        shape: ``(Z, Y, X)`` in voxels; the default ``(32, 256, 256)`` keeps CPU runs fast, the
            CREMI size is ``(125, 1250, 1250)``.
        seed: the result depends only on ``shape``, ``seed`` and ``config``.
        config: appearance parameters; defaults imitate CREMI at 4 nm/px in-plane.

    Returns:
        An :class:`EMVolume` with ``raw`` ``uint8 (Z, Y, X)``, ``labels`` ``uint64 (Z, Y, X)``
        (dense partition, ids 1..n, consistent across z), resolution ``(40, 4, 4)`` nm and
        ``synthetic=True``.
    """
    if len(shape) != 3 or min(shape) < 1:
        raise EmsegInputError(f"shape must be three positive sizes (Z, Y, X), got {shape}")
    if shape[1] < 32 or shape[2] < 32:
        raise EmsegInputError(f"shape must be at least 32 x 32 in-plane, got {shape}")
    config = config or SyntheticEMConfig()
    rng = np.random.default_rng(seed)
    n_slices = shape[0]
    drift = rng.normal(0.0, config.global_drift_std, size=(n_slices, 2)).cumsum(axis=0)
    drift = np.rint(drift - drift.mean(axis=0)).astype(int)
    pad = int(np.abs(drift).max()) + 1
    canvas = (shape[1] + 2 * pad, shape[2] + 2 * pad)

    positions, present, radii = _seed_tracks(rng, n_slices, canvas, config)
    smoothness = (1.5, config.mean_cell_diameter / 5, config.mean_cell_diameter / 5)
    relief = 0.18 * config.mean_cell_diameter * _smooth_noise(rng, (n_slices, *canvas), smoothness)
    labels = _grow_cells(positions, present, radii, canvas, relief)
    membrane = _membranes(rng, labels, config)
    mito = _mitochondria(rng, labels, membrane, config)
    image = _render(rng, labels, membrane, mito, config)

    raw = np.empty(shape, dtype=np.uint8)
    cropped = np.empty(shape, dtype=np.int32)
    for z, (dy, dx) in enumerate(drift):
        window = (slice(pad + dy, pad + dy + shape[1]), slice(pad + dx, pad + dx + shape[2]))
        raw[z] = np.rint(image[z][window] * 255).astype(np.uint8)
        cropped[z] = labels[z][window]
    ids = relabel_sequential(cropped)[0].astype(np.uint64)
    return EMVolume(raw, ids, CREMI_RESOLUTION_NM,
                    f"synthetic_em_volume(shape={tuple(shape)}, seed={seed})", synthetic=True)


def label_probability(labels: np.ndarray, *, noise: float = 0.15, seed: int = 0
                      ) -> np.ndarray:
    """A synthetic cell probability ``(Z, Y, X)`` float32 in [0, 1] of a labelled volume: a
    stand-in for a network's map where none is trained (tests, benchmarks). Low on the faces
    between different ids (in 3D), rising with the distance from them (``1 - exp(-d / 2)``,
    ``d`` in voxels), with Gaussian noise of ``noise`` smoothed by a 1-voxel Gaussian."""
    boundary = find_boundaries(labels, mode="thick")
    prob = 1.0 - np.exp(-ndi.distance_transform_edt(~boundary) / 2.0)
    noisy = prob + np.random.default_rng(seed).normal(0.0, noise, prob.shape)
    return np.clip(ndi.gaussian_filter(noisy, 1.0), 0.0, 1.0).astype(np.float32)
