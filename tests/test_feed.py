"""Feeding the network: loaders over epochs with and without workers, placement choices."""

from __future__ import annotations

import pytest
import torch

from emseg_lib import EmsegInputError
from emseg_lib.data import AugmentConfig, EMCropDataset
from emseg_lib.profiles import _workers, get_profile
from emseg_lib.train.feed import MAX_AUTO_WORKERS, Placement, epoch_loader, resolve_loader_workers


def _epochs(loader, epochs):
    batches = []
    for epoch in epochs:
        loader.dataset.set_epoch(epoch)
        batches += [batch["image"] for batch in loader]
    return batches


def test_workers_see_each_epoch_and_draw_the_same_samples(small_volume):
    dataset = EMCropDataset(small_volume, (32, 32), 5, augment=AugmentConfig(), seed=4)
    cpu = torch.device("cpu")
    serial = _epochs(epoch_loader(dataset, 2, workers=0, device=cpu), [0, 1, 0])
    parallel = _epochs(epoch_loader(dataset, 2, workers=2, device=cpu), [0, 1, 0])
    assert len(serial) == len(parallel) == 9
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel, strict=True))
    assert not torch.equal(serial[0], serial[3]) and torch.equal(serial[0], serial[6])


def test_sample_keys_name_the_epoch(small_volume):
    dataset = EMCropDataset(small_volume, (32, 32), 3, augment=AugmentConfig(), seed=4)
    dataset.set_epoch(2)
    assert torch.equal(dataset[1]["image"], dataset[(2, 1)]["image"])
    assert not torch.equal(dataset[1]["image"], dataset[(0, 1)]["image"])
    with pytest.raises(IndexError):
        dataset[(0, 3)]


def test_loader_never_has_more_workers_than_batches(small_volume):
    dataset = EMCropDataset(small_volume, (32, 32), 3, seed=0)
    loader = epoch_loader(dataset, 2, workers=8, device=torch.device("cpu"))
    assert loader.num_workers == 2 and loader.persistent_workers and not loader.pin_memory
    assert epoch_loader(dataset, 2, workers=8, device=torch.device("cpu"),
                        drop_last=True).num_workers == 1


def test_automatic_workers():
    assert resolve_loader_workers(None, torch.device("cpu")) == 0
    assert 0 <= resolve_loader_workers(None, torch.device("cuda")) <= MAX_AUTO_WORKERS
    assert resolve_loader_workers(3, torch.device("cpu")) == 3
    with pytest.raises(EmsegInputError, match="num_workers must be >= 0"):
        resolve_loader_workers(-1, torch.device("cpu"))


def test_bf16_and_channels_last_only_on_cuda():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert Placement.choose(cuda, amp=True, dims=2) == Placement(cuda, True, True)
    assert Placement.choose(cuda, amp=False, dims=3) == Placement(cuda, False, False)
    assert Placement.choose(cpu, amp=True, dims=2) == Placement(cpu, False, False)
    with Placement.choose(cpu, amp=True, dims=2).autocast():
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_profiles_name_their_workers():
    assert get_profile("smoke").num_workers == 0  # tests and smoke runs stay in-process
    assert get_profile("quick").num_workers is None and get_profile("full").num_workers is None
    with pytest.raises(EmsegInputError, match='num_workers must be "auto" or an integer'):
        _workers("test", "four")
