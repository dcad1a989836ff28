"""Datasets of random samples redrawn every epoch, reproducibly."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from emseg_lib.errors import EmsegInputError


class EpochSampledDataset(Dataset):
    """Base for datasets whose item ``i`` of epoch ``e`` is drawn from
    ``numpy.random.default_rng([seed, e, i])``: new samples each epoch, identical on a rerun.

    Args:
        samples_per_epoch: the dataset's length.
        seed: base seed.
    """

    def __init__(self, samples_per_epoch: int, seed: int) -> None:
        if samples_per_epoch < 1:
            raise EmsegInputError(f"samples_per_epoch must be >= 1, got {samples_per_epoch}")
        self.samples_per_epoch = samples_per_epoch
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw a new set of samples for ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples_per_epoch

    def rng(self, index: int) -> np.random.Generator:
        """The generator of item ``index`` in the current epoch (IndexError when out of range)."""
        if not 0 <= index < self.samples_per_epoch:
            raise IndexError(index)
        return np.random.default_rng([self.seed, self.epoch, index])
