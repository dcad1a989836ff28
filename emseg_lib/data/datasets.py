"""torch ``Dataset``s of random EM crops with their targets (thesis 3.2.3, 4.3.1).

Samples are drawn afresh every epoch ("non-fixed dataset"): item ``i`` of epoch ``e`` uses the
generator ``default_rng([seed, e, i])``, so a run is reproducible and a resumed run sees the
same samples. A validation set simply never calls :meth:`EMCropDataset.set_epoch`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from emseg_lib.data.augment import NO_AUGMENTATION, AugmentConfig, augment_crop
from emseg_lib.data.cremi import EMVolume
from emseg_lib.data.sampling import EpochSampledDataset, SampleKey
from emseg_lib.data.targets import affinities, cell_target, instance_boundary
from emseg_lib.errors import EmsegInputError, check_crop_fits

TargetKind = Literal["cells", "affinities"]


class EMCropDataset(EpochSampledDataset):
    """Random 2D or 3D crops of a labelled volume.

    Each item is a dict of tensors:

    * ``image``: ``float32`` ``(1, H, W)`` (2D) or ``(1, D, H, W)`` (3D), intensities in
      [0, 1] plus augmentation noise;
    * ``target``: ``float32`` cell map ``(1, [D,] H, W)`` (1 = cell, 0 = boundary) or
      nearest-neighbour affinities ``(3, D, H, W)`` (z, y, x) / ``(2, H, W)`` (y, x);
    * ``labels``: ``int64`` neuron ids ``([D,] H, W)`` for segmentation metrics.

    Args:
        volume: a labelled :class:`EMVolume` (e.g. the training split).
        crop_shape: ``(H, W)`` for 2D samples (thesis 160 x 160) or ``(D, H, W)`` for 3D
            samples (thesis 18 x 160 x 160).
        samples_per_epoch: length of the dataset.
        augment: augmentation settings; None for plain crops (validation).
        target: ``"cells"`` (boundary map target) or ``"affinities"``.
        boundary_thickness: ``t`` of :func:`~emseg_lib.data.targets.instance_boundary`.
        seed: base seed.
    """

    def __init__(
        self,
        volume: EMVolume,
        crop_shape: tuple[int, ...],
        samples_per_epoch: int,
        *,
        augment: AugmentConfig | None = None,
        target: TargetKind = "cells",
        boundary_thickness: int = 1,
        seed: int = 0,
    ) -> None:
        if volume.labels is None:
            raise EmsegInputError(f"{volume.source}: training crops need a labelled volume")
        if len(crop_shape) not in (2, 3):
            raise EmsegInputError(
                f"crop_shape must be (H, W) or (D, H, W), got {tuple(crop_shape)}"
            )
        super().__init__(samples_per_epoch, seed)
        if target not in ("cells", "affinities"):
            raise EmsegInputError(f"target must be 'cells' or 'affinities', got {target!r}")
        self.is_2d = len(crop_shape) == 2
        self.crop_shape = (1, *crop_shape) if self.is_2d else tuple(crop_shape)
        check_crop_fits("crop_shape", self.crop_shape, volume.shape)
        self.volume = volume
        self.augment = augment or NO_AUGMENTATION
        self.target = target
        self.boundary_thickness = boundary_thickness

    def __getitem__(self, index: SampleKey) -> dict[str, torch.Tensor]:
        image, labels = augment_crop(self.volume.raw, self.volume.labels, self.crop_shape,
                                     self.rng(index), self.augment)
        if self.target == "affinities":
            target = affinities(labels)[1:] if self.is_2d else affinities(labels)  # a
        else:  # slice has no z neighbour: y, x
            target = cell_target(instance_boundary(labels, self.boundary_thickness))[None]
        if self.is_2d:
            image, target, labels = image[0], target[:, 0], labels[0]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image[None])),
            "target": torch.from_numpy(np.ascontiguousarray(target)),
            "labels": torch.from_numpy(np.ascontiguousarray(labels)),
        }
