"""Unlabelled crops for the GANs: images in [-1, 1], optionally with an extension mask."""

from __future__ import annotations

import numpy as np
import torch

from emseg_lib.data.augment import AugmentConfig, augment_crop
from emseg_lib.data.masks import MaskKind, make_mask
from emseg_lib.data.sampling import EpochSampledDataset, SampleKey
from emseg_lib.errors import check_crop_fits, check_ndim


class GanCropDataset(EpochSampledDataset):
    """Square random crops of a raw stack for GAN training (thesis 4.2, 4.4.1).

    Each item is ``{"image": (1, S, S) float32 in [-1, 1]}`` (``x / 127.5 - 1``), plus
    ``"mask": (1, S, S)`` (1 = unknown) when ``mask_kind`` is given. Samples are redrawn every
    epoch (:meth:`set_epoch`), reproducibly from ``seed``.

    Args:
        raw: ``(Z, Y, X)`` uint8 stack (e.g. the training split).
        size: crop side ``S`` in px (128 for StyleGAN, 257 for Boundless).
        samples_per_epoch: dataset length.
        augment: augmentation (default: flips and rot90 only).
        mask_kind: ``"right"``, ``"center"``, ``"random"`` or None.
    """

    def __init__(self, raw: np.ndarray, size: int, samples_per_epoch: int, *,
                 augment: AugmentConfig | None = None, mask_kind: MaskKind | None = None,
                 seed: int = 0) -> None:
        check_ndim("raw", raw, (3,), "(Z, Y, X)")
        check_crop_fits("crop", (1, size, size), raw.shape)
        super().__init__(samples_per_epoch, seed)
        if mask_kind is not None:
            make_mask(mask_kind, size, np.random.default_rng(0))  # validates the kind
        self.raw = raw
        self.size = size
        self.augment = augment or AugmentConfig(scale_range=(1.0, 1.0), blur_prob=0.0,
                                                noise_prob=0.0)
        self.mask_kind = mask_kind
        # labels are not needed: a zero-memory broadcast view stands in for them
        self._no_labels = np.broadcast_to(np.zeros(1, dtype=np.uint8), raw.shape)

    def __getitem__(self, index: SampleKey) -> dict[str, torch.Tensor]:
        rng = self.rng(index)
        image, _ = augment_crop(self.raw, self._no_labels, (1, self.size, self.size), rng,
                                self.augment)
        item = {"image": torch.from_numpy(image * 2.0 - 1.0)}
        if self.mask_kind is not None:
            item["mask"] = torch.from_numpy(make_mask(self.mask_kind, self.size, rng)[None])
        return item
