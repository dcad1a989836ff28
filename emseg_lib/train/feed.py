"""Feeding the accelerator: DataLoader worker processes, bf16 autocast, channels_last.

Crops are made in DataLoader worker processes while the network trains on the previous
batches. Samples depend only on ``(seed, epoch, index)`` (:mod:`emseg_lib.data.sampling`), so
the number of workers never changes what is trained on, and each loader has its own torch
generator, so it never draws from the global one either. On CUDA, batches go through pinned
memory, the forward pass and the loss run under bf16 autocast, and 2D networks use the
channels_last memory format; on the CPU everything stays float32 and contiguous.
"""

from __future__ import annotations

import math
import multiprocessing
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from emseg_lib.data.sampling import EpochSampledDataset, EpochSampler
from emseg_lib.errors import EmsegInputError
from emseg_lib.infra.parallel import available_cores

#: most DataLoader worker processes chosen automatically
MAX_AUTO_WORKERS = 8
#: batches each worker prepares ahead
PREFETCH_BATCHES = 4


def resolve_loader_workers(requested: int | None, device: torch.device) -> int:
    """DataLoader worker processes: ``requested`` if given, else automatic.

    Automatic: on CUDA every available core but one (left to this process), at most
    :data:`MAX_AUTO_WORKERS`; on the CPU none, as the network's own step already keeps every
    core busy.
    """
    if requested is not None:
        if requested < 0:
            raise EmsegInputError(f"num_workers must be >= 0 or None (automatic), got "
                                  f"{requested}")
        return int(requested)
    if device.type != "cuda":
        return 0
    return max(0, min(MAX_AUTO_WORKERS, available_cores() - 1))


def epoch_loader(dataset: EpochSampledDataset, batch_size: int, *, workers: int,
                 device: torch.device, drop_last: bool = False) -> DataLoader:
    """Batches of ``dataset``'s current epoch, in order; iterate it again after
    :meth:`~EpochSampledDataset.set_epoch` for the next epoch.

    Args:
        workers: worker processes (0 = in this process); never more than the loader has
            batches. Workers persist across epochs and are forked where the platform can
            (the dataset's arrays are shared, not pickled).
        device: where the batches go; on CUDA they are pinned.
    """
    batches = len(dataset) // batch_size if drop_last else math.ceil(len(dataset) / batch_size)
    workers = min(workers, batches)
    options = {}
    if workers > 0:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        options = {"persistent_workers": True, "prefetch_factor": PREFETCH_BATCHES,
                   "multiprocessing_context": multiprocessing.get_context(method)}
    return DataLoader(dataset, batch_size=batch_size, sampler=EpochSampler(dataset),
                      drop_last=drop_last, num_workers=workers,
                      pin_memory=device.type == "cuda", generator=torch.Generator(), **options)


@dataclass(frozen=True)
class Placement:
    """Where and how a network runs.

    Attributes:
        device: the torch device.
        bf16: forward passes and losses under bf16 autocast (CUDA only).
        channels_last: the network and its 4-D inputs in channels_last memory format.
    """

    device: torch.device
    bf16: bool = False
    channels_last: bool = False

    @classmethod
    def choose(cls, device: torch.device, *, amp: bool, dims: int) -> Placement:
        """bf16 autocast on CUDA when ``amp``; channels_last on CUDA for 2D (``dims == 2``)
        networks; neither on the CPU."""
        cuda = device.type == "cuda"
        return cls(device, bf16=cuda and amp, channels_last=cuda and dims == 2)

    def model(self, model: nn.Module) -> nn.Module:
        """Move ``model`` to the device (and memory format), in place; returns it."""
        if self.channels_last:
            return model.to(self.device, memory_format=torch.channels_last)
        return model.to(self.device)

    def batch(self, tensor: torch.Tensor) -> torch.Tensor:
        """A network input ``(N, C, H, W)`` or ``(N, C, D, H, W)`` on the device."""
        if self.channels_last and tensor.dim() == 4:
            return tensor.to(self.device, non_blocking=True, memory_format=torch.channels_last)
        return tensor.to(self.device, non_blocking=True)

    def autocast(self) -> torch.autocast:
        """The autocast context of forward passes and losses (disabled unless ``bf16``)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)
