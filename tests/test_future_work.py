"""Merge counting, thinned-boundary scoring and the adversarial segmentation loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emseg_lib import EmsegInputError
from emseg_lib.data import AugmentConfig, EMCropDataset, split_slices
from emseg_lib.data.targets import cell_target, instance_boundary
from emseg_lib.models import UNet2D
from emseg_lib.models.pair_discriminator import PairDiscriminator
from emseg_lib.postprocess import watershed_postprocess
from emseg_lib.scoring.evaluation import protocol_scores, thinned_segmentation
from emseg_lib.scoring.metrics import count_merges
from emseg_lib.train import TrainConfig, fit
from emseg_lib.train.adversarial import SegmentationAdversary


def test_count_merges_hand_made():
    gt = np.array([[1, 1, 2, 2, 3, 3]] * 30)
    assert count_merges(gt, gt) == 0
    merged = np.array([[5, 5, 5, 5, 6, 6]] * 30)
    assert count_merges(gt, merged) == 1
    assert count_merges(gt, np.full_like(gt, 9)) == 2
    # a sliver below min_overlap is not a merge
    sliver = merged.copy()
    sliver[0, 4] = 5
    assert count_merges(gt, sliver) == 1


def test_thinned_segmentation_keeps_cells_apart():
    seg = np.zeros((20, 30), np.int64)
    seg[:, :12] = 1
    seg[:, 17:] = 2  # a 5-px boundary between the two cells
    thin = thinned_segmentation(seg)
    assert (thin == 0).sum() == 20  # one pixel wide
    assert set(np.unique(thin)) == {0, 1, 2}
    assert np.all(thin[:, :14] == 1) and np.all(thin[:, 15:] == 2)


def test_protocols_agree_on_a_perfect_prediction(small_volume):
    gt = small_volume.labels[:2].astype(np.int64)
    prob = (cell_target(instance_boundary(gt)) * 0.98 + 0.01).astype(np.float32)
    table = protocol_scores(prob, gt, 0.83, 0.91, pixel_nm=4.0)
    assert list(table.index) == ["thesis", "thinned boundaries", "CREMI"]
    assert table.loc["thesis", "voi"] == pytest.approx(0, abs=1e-9)
    assert table.loc["CREMI", "voi"] == pytest.approx(0, abs=1e-9)
    # 1-px boundaries a pixel off the true label change cost a little, but merge no cells
    assert 0 < table.loc["thinned boundaries", "voi"] < 0.5
    seg = watershed_postprocess(prob[0], 0.83, 0.91)
    assert count_merges(gt[0], thinned_segmentation(seg)) == 0


def test_adversarial_fit_updates_both_networks(tmp_path, small_volume):
    parts = split_slices(small_volume.shape[0]).apply(small_volume)
    train = EMCropDataset(parts["train"], (32, 32), 4, augment=AugmentConfig(), seed=0)
    val = EMCropDataset(parts["val"], (32, 32), 2, seed=1)
    torch.manual_seed(0)
    discriminator = PairDiscriminator(width=4, depth=2)
    before = [p.detach().clone() for p in discriminator.parameters()]
    adversary = SegmentationAdversary(discriminator, weight=0.05)
    history = fit(UNet2D(base_width=4, depth=3), train, val,
                  TrainConfig(epochs=2, batch_size=2, device="cpu"), tmp_path,
                  progress=False, adversary=adversary)
    assert history[["train_adv_loss", "train_d_loss"]].notna().all().all()
    assert any(not torch.equal(a, b) for a, b in zip(before, discriminator.parameters(),
                                                      strict=True))
    with pytest.raises(EmsegInputError, match=r"different adversary \(adversary.weight was "
                                              r"0.05, now 0.01\)"):
        fit(UNet2D(base_width=4, depth=3), train, val,
            TrainConfig(epochs=3, batch_size=2, device="cpu"), tmp_path, progress=False,
            adversary=SegmentationAdversary(PairDiscriminator(4, 2)))
    trained = [p.detach().clone() for p in discriminator.parameters()]
    restored = SegmentationAdversary(PairDiscriminator(4, 2), weight=0.05)
    loaded = []
    original_load = restored.load_state_dict
    restored.load_state_dict = lambda state: (original_load(state), loaded.extend(
        p.detach().clone() for p in restored.discriminator.parameters()))
    resumed = fit(UNet2D(base_width=4, depth=3), train, val,
                  TrainConfig(epochs=3, batch_size=2, device="cpu"), tmp_path,
                  progress=False, adversary=restored)
    assert list(resumed["epoch"]) == [0, 1, 2]
    # the resumed run started from the saved discriminator, not a fresh one
    assert all(torch.equal(a, b) for a, b in zip(loaded, trained, strict=True))
    assert restored.optimizer.state_dict()["state"]  # Adam moments restored and advanced
