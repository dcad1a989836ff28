"""Augmentation: determinism, geometry applied to image and labels alike, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.transform import resize

from emseg_lib import EmsegInputError
from emseg_lib.data import NO_AUGMENTATION, AugmentConfig, EMCropDataset, augment_crop
from emseg_lib.data.augment import random_crop
from emseg_lib.data.targets import instance_boundary


def _label_coded_volume():
    """Raw intensity encodes the label (raw = 10 * label), so geometry can be checked."""
    labels = np.repeat(np.arange(1, 6), 8)[None, :, None] * np.ones((6, 40, 40), np.int64)
    labels = labels + 10 * (np.arange(40)[None, None, :] >= 20)
    return (labels * 10).astype(np.uint8), labels


def test_deterministic_under_seed(small_volume):
    config = AugmentConfig(elastic_prob=0.5, missing_section_prob=0.2)
    a = augment_crop(small_volume.raw, small_volume.labels, (4, 48, 48),
                     np.random.default_rng(7), config)
    b = augment_crop(small_volume.raw, small_volume.labels, (4, 48, 48),
                     np.random.default_rng(7), config)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("seed", range(6))
def test_geometry_moves_image_and_labels_together(seed):
    raw, labels = _label_coded_volume()
    config = AugmentConfig(scale_range=(1.0, 1.0), blur_prob=0.0, noise_prob=0.0,
                           elastic_prob=1.0)
    image, crop_labels = augment_crop(raw, labels, (3, 32, 32), np.random.default_rng(seed),
                                      config)
    assert image.shape == crop_labels.shape == (3, 32, 32)
    # elastic warps with order 1 (image) and order 0 (labels): agree away from label edges
    interior = ~instance_boundary(crop_labels, thickness=1)
    agree = np.isclose(image * 255, crop_labels * 10, atol=0.5)
    assert interior.mean() > 0.3
    assert agree[interior].mean() > 0.97


def test_blur_and_noise_touch_only_the_image(small_volume):
    plain = augment_crop(small_volume.raw, small_volume.labels, (3, 40, 40),
                         np.random.default_rng(1), NO_AUGMENTATION)
    noisy = augment_crop(small_volume.raw, small_volume.labels, (3, 40, 40),
                         np.random.default_rng(1),
                         AugmentConfig(scale_range=(1.0, 1.0), flip=False, rot90=False,
                                       blur_prob=1.0, noise_prob=1.0))
    np.testing.assert_array_equal(plain[1], noisy[1])
    assert not np.allclose(plain[0], noisy[0])


def test_crop_larger_than_volume(small_volume):
    with pytest.raises(EmsegInputError, match=r"crop_shape \(1, 200, 200\) is larger than"):
        augment_crop(small_volume.raw, small_volume.labels, (1, 200, 200),
                     np.random.default_rng(0))


def test_bad_probability():
    with pytest.raises(EmsegInputError, match=r"AugmentConfig.noise_prob must lie in \[0, 1\]"):
        AugmentConfig(noise_prob=1.5)


def test_datasets_2d_and_3d(small_volume):
    ds2 = EMCropDataset(small_volume, (64, 64), 4, augment=AugmentConfig(), seed=1)
    item = ds2[0]
    assert item["image"].shape == (1, 64, 64) and item["target"].shape == (1, 64, 64)
    assert item["labels"].shape == (64, 64)
    assert set(torch.unique(item["target"]).tolist()) <= {0.0, 1.0}
    ds3 = EMCropDataset(small_volume, (8, 48, 48), 2, target="affinities")
    assert ds3[1]["target"].shape == (3, 8, 48, 48)
    assert ds3[1]["image"].shape == (1, 8, 48, 48)


def test_dataset_epochs_draw_new_samples_reproducibly(small_volume):
    ds = EMCropDataset(small_volume, (48, 48), 3, augment=AugmentConfig(), seed=5)
    first = ds[0]["image"]
    ds.set_epoch(1)
    second = ds[0]["image"]
    ds.set_epoch(0)
    assert not torch.equal(first, second)
    assert torch.equal(first, ds[0]["image"])


def test_dataset_rejects_crop_too_large(small_volume):
    with pytest.raises(EmsegInputError, match="larger than the volume"):
        EMCropDataset(small_volume, (20, 48, 48), 2)


def _skimage_crop(raw, labels, crop_shape, rng, config):
    """The crop as it was made with skimage's resize (the reference for the fast resize)."""
    scale = rng.uniform(*config.scale_range)
    window = (crop_shape[0], math.ceil(crop_shape[1] / scale), math.ceil(crop_shape[2] / scale))
    start = [int(rng.integers(0, size - w + 1)) for size, w in zip(raw.shape, window, strict=True)]
    region = tuple(slice(s, s + w) for s, w in zip(start, window, strict=True))
    image = raw[region].astype(np.float32) / 255.0
    crop_labels = labels[region].astype(np.int64)
    return (resize(image, crop_shape, order=1, anti_aliasing=False, preserve_range=True),
            resize(crop_labels, crop_shape, order=0, anti_aliasing=False, preserve_range=True))


@pytest.mark.parametrize(("seed", "crop"), [(0, (1, 64, 64)), (1, (1, 57, 80)), (2, (5, 48, 48)),
                                            (3, (3, 33, 70))])
def test_random_crop_is_the_skimage_crop(small_volume, seed, crop):
    config = AugmentConfig(scale_range=(0.72, 1.3))
    image, labels = random_crop(small_volume.raw, small_volume.labels, crop,
                                np.random.default_rng(seed), config)
    ref_image, ref_labels = _skimage_crop(small_volume.raw, small_volume.labels, crop,
                                          np.random.default_rng(seed), config)
    assert image.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(image, ref_image, rtol=0, atol=1e-6)
