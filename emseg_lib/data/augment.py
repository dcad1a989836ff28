"""Data augmentation for EM crops (thesis 3.2.2 / 4.3.1; pytorch_connectomics options).

Geometry (random resize + crop, flips, rot90, optional elastic deformation) is drawn once per
sample and applied to every slice of a 3D crop and to its labels alike (labels with
nearest-neighbour interpolation). Intensity changes (Gaussian blur with an 11-px kernel,
Gaussian noise, optional missing sections) are drawn per slice and touch the image only.
Everything is drawn from the ``numpy.random.Generator`` passed in, so a seed fixes the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from emseg_lib.data.resize import resize_linear, resize_nearest
from emseg_lib.errors import EmsegInputError, check_crop_fits, check_same_shape

BLUR_KERNEL_SIZE = 11


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations to apply and how strongly.

    Attributes:
        scale_range: in-plane resize factor drawn uniformly (thesis: 1250 -> 900, i.e. 0.72).
        flip: random horizontal and vertical flips (p = 0.5 each).
        rot90: random rotation by 0, 90, 180 or 270 degrees.
        blur_prob: per-slice probability of a Gaussian blur (kernel 11 px).
        blur_sigma: range of the blur's sigma in px (thesis: 0.01 to 3).
        noise_prob: per-slice probability of additive Gaussian noise.
        noise_std: largest noise standard deviation (thesis 0.2, image scaled to [0, 1]);
            the std is drawn uniformly from [0, noise_std].
        elastic_prob: probability of an elastic deformation (alpha 16 px, sigma 4 px);
            the thesis dropped it for speed, so it is off by default.
        missing_section_prob: per-slice probability (3D crops) that a slice is replaced by
            its mean grey value, as a lost section would be.
    """

    scale_range: tuple[float, float] = (0.72, 1.0)
    flip: bool = True
    rot90: bool = True
    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.01, 3.0)
    noise_prob: float = 0.5
    noise_std: float = 0.2
    elastic_prob: float = 0.0
    elastic_alpha: float = 16.0
    elastic_sigma: float = 4.0
    missing_section_prob: float = 0.0

    def __post_init__(self) -> None:
        for name in ("blur_prob", "noise_prob", "elastic_prob", "missing_section_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise EmsegInputError(f"AugmentConfig.{name} must lie in [0, 1], got {value}")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise EmsegInputError(
                f"AugmentConfig.scale_range must satisfy 0 < low <= high, got {self.scale_range}"
            )


NO_AUGMENTATION = AugmentConfig(scale_range=(1.0, 1.0), flip=False, rot90=False,
                                blur_prob=0.0, noise_prob=0.0)


def random_crop(raw: np.ndarray, labels: np.ndarray, crop_shape: tuple[int, int, int],
                rng: np.random.Generator, config: AugmentConfig
                ) -> tuple[np.ndarray, np.ndarray]:
    """Cut a randomly placed, randomly rescaled ``(D, H, W)`` crop from a volume.

    Args:
        raw: ``(Z, Y, X)`` image, float in [0, 1] or uint8.
        labels: ``(Z, Y, X)`` ids.
        crop_shape: ``(D, H, W)`` output size in voxels.

    Returns:
        ``float32`` image and ``int64`` labels, both ``(D, H, W)``; the window read from the
        volume is ``(D, H / s, W / s)`` for the drawn scale ``s``, resized in-plane
        (:mod:`emseg_lib.data.resize`: bilinear image, nearest-neighbour labels).
    """
    check_same_shape("raw", raw, "labels", labels)
    check_crop_fits("crop_shape", crop_shape, raw.shape)
    scale = rng.uniform(*config.scale_range)
    depth, height, width = crop_shape
    window = (depth, min(raw.shape[1], math.ceil(height / scale)),
              min(raw.shape[2], math.ceil(width / scale)))
    start = [int(rng.integers(0, size - w + 1)) for size, w in zip(raw.shape, window, strict=True)]
    region = tuple(slice(s, s + w) for s, w in zip(start, window, strict=True))
    image = raw[region].astype(np.float32)
    if raw.dtype == np.uint8:
        image /= 255.0
    crop_labels = labels[region]
    if window != tuple(crop_shape):
        image = resize_linear(image, (height, width))
        crop_labels = resize_nearest(crop_labels, (height, width))
    return image, crop_labels.astype(np.int64)


def _elastic(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
             config: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """One smooth in-plane displacement field applied to every slice."""
    _, height, width = image.shape
    shifts = [ndi.gaussian_filter(rng.uniform(-1, 1, (height, width)), config.elastic_sigma)
              * config.elastic_alpha for _ in range(2)]
    yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    coords = np.stack([yy + shifts[0], xx + shifts[1]])
    warped_image = np.stack([ndi.map_coordinates(s, coords, order=1, mode="reflect")
                             for s in image])
    warped_labels = np.stack([ndi.map_coordinates(s, coords, order=0, mode="reflect")
                              for s in labels])
    return warped_image.astype(np.float32), warped_labels


def _geometry(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
              config: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    if rng.random() < config.elastic_prob:
        image, labels = _elastic(image, labels, rng, config)
    if config.flip:
        for axis in (1, 2):
            if rng.random() < 0.5:
                image, labels = np.flip(image, axis), np.flip(labels, axis)
    if config.rot90:
        k = int(rng.integers(0, 4))
        image, labels = np.rot90(image, k, axes=(1, 2)), np.rot90(labels, k, axes=(1, 2))
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def _intensity(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig
               ) -> np.ndarray:
    image = image.copy()
    radius = BLUR_KERNEL_SIZE // 2
    for z in range(image.shape[0]):
        if rng.random() < config.blur_prob:
            image[z] = ndi.gaussian_filter(image[z], rng.uniform(*config.blur_sigma),
                                           radius=radius)
        if rng.random() < config.noise_prob:
            std = rng.uniform(0.0, config.noise_std)
            image[z] += rng.normal(0.0, std, image[z].shape).astype(np.float32)
        if image.shape[0] > 1 and rng.random() < config.missing_section_prob:
            image[z] = image[z].mean()
    return image


def augment_crop(raw: np.ndarray, labels: np.ndarray, crop_shape: tuple[int, int, int],
                 rng: np.random.Generator, config: AugmentConfig | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Random crop plus augmentation: ``float32`` image and ``int64`` labels ``(D, H, W)``.

    Args:
        raw: ``(Z, Y, X)`` volume (uint8, scaled to [0, 1], or float already in [0, 1]).
        labels: ``(Z, Y, X)`` neuron ids.
        crop_shape: ``(D, H, W)``; use ``D = 1`` for 2D samples.
        rng: source of all randomness.
        config: which augmentations (default :class:`AugmentConfig`);
            :data:`NO_AUGMENTATION` for plain crops.
    """
    config = config or AugmentConfig()
    image, crop_labels = random_crop(raw, labels, crop_shape, rng, config)
    image, crop_labels = _geometry(image, crop_labels, rng, config)
    return _intensity(image, rng, config), crop_labels
