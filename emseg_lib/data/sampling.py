"""Datasets of random samples redrawn every epoch, reproducibly.

Item ``i`` of epoch ``e`` depends on ``(seed, e, i)`` alone, so DataLoader worker processes
draw exactly the samples this process would. Workers hold copies of the dataset that do not
see :meth:`EpochSampledDataset.set_epoch`; :class:`EpochSampler` therefore hands them
``(epoch, index)`` keys, read in this process when a loader starts an epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Dataset, Sampler

from emseg_lib.errors import EmsegInputError

#: an item index of the current epoch, or an explicit ``(epoch, index)``
SampleKey = int | tuple[int, int]


class EpochSampledDataset(Dataset):
    """Base for datasets whose item ``i`` of epoch ``e`` is drawn from
    ``numpy.random.default_rng([seed, e, i])``: new samples each epoch, identical on a rerun.

    ``dataset[i]`` is item ``i`` of the current epoch, ``dataset[(e, i)]`` item ``i`` of
    epoch ``e``.

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

    def rng(self, key: SampleKey) -> np.random.Generator:
        """The generator of item ``key`` (IndexError when its index is out of range)."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        if not 0 <= index < self.samples_per_epoch:
            raise IndexError(index)
        return np.random.default_rng([self.seed, epoch, index])


class EpochSampler(Sampler[tuple[int, int]]):
    """``(epoch, index)`` for every item of the dataset's current epoch, in order."""

    def __init__(self, dataset: EpochSampledDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.dataset.epoch
        return iter([(epoch, index) for index in range(len(self.dataset))])
