"""Affinity networks (``emseg train --target affinities``): their targets and loss, a
checkpoint that records them and learns an agglomeration threshold, ``emseg segment``
agglomerating their affinities, and one line where a network and a method do not match."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import zarr

from emseg_lib.cli import main
from emseg_lib.data import EMCropDataset
from emseg_lib.data.synthetic import synthetic_em_volume
from emseg_lib.train import load_checkpoint
from emseg_lib.train.losses import balanced_bce


def test_2d_affinity_crops_have_y_and_x_channels():
    volume = synthetic_em_volume((4, 64, 64), seed=1)
    item = EMCropDataset(volume, (32, 32), 1, target="affinities")[0]
    assert item["target"].shape == (2, 32, 32)
    labels = item["labels"].numpy()
    same_as_above = labels[1:] == labels[:-1]
    np.testing.assert_array_equal(item["target"][0, 1:].numpy() == 1, same_as_above)


def test_the_balanced_loss_weighs_both_classes_alike():
    target = torch.zeros(1, 1, 10, 10)
    target[..., :1, :] = 1.0  # 10 % positives
    logits = torch.full_like(target, -3.0)  # confidently negative everywhere
    plain = F.binary_cross_entropy_with_logits(logits, target)
    # half of the weight lies on the 10 positives, all of them wrong: the loss is much higher
    assert balanced_bce(logits, target) > 4 * plain
    assert balanced_bce(torch.where(target > 0, 3.0, -3.0), target) < 0.05


@pytest.fixture(scope="module")
def affinity_run(tmp_path_factory):
    """A UNet3D trained for affinities (smoke profile, 1 epoch) on a synthetic HDF5 stack."""
    root = tmp_path_factory.mktemp("affinity")
    volume = synthetic_em_volume((16, 96, 96), seed=2)
    with h5py.File(root / "stack.h5", "w") as handle:
        handle.create_dataset("volumes/raw", data=volume.raw).attrs["resolution"] = [
            40.0, 4.0, 4.0]
        handle.create_dataset("volumes/labels/neuron_ids", data=volume.labels)
    assert main(["train", "--model", "unet3d", "--target", "affinities", "--data",
                 str(root / "stack.h5"), "--out", str(root / "run"), "--profile", "smoke",
                 "--epochs", "1", "--device", "cpu", "--workers", "1",
                 "--no-tensorboard"]) == 0
    return root


def test_an_affinity_checkpoint_records_its_target_and_a_learned_agglomeration(
        affinity_run):
    state = load_checkpoint(affinity_run / "run" / "best.pt")
    assert state["model_spec"]["config"]["out_channels"] == 3
    assert state["config"]["target"] == "affinities"
    entry = state["postprocess"]
    assert entry["method"] == "waterz" and entry["dims"] == 3
    assert set(entry["thresholds"]) == {"waterz", "mws"}
    assert 0 < entry["thresholds"]["waterz"]["threshold"] < 1


def test_segment_agglomerates_an_affinity_network_s_output(affinity_run, tmp_path, capsys):
    common = ["segment", "--checkpoint", str(affinity_run / "run" / "best.pt"), "--data",
              str(affinity_run / "stack.h5"), "--device", "cpu"]
    assert main([*common, "--out", str(tmp_path / "seg.h5")]) == 0
    out = capsys.readouterr().out
    assert "post-processing: waterz (" in out and "learned on the validation split" in out
    with h5py.File(tmp_path / "seg.h5") as handle:
        labels = handle["volumes/labels/neuron_ids"][()]
        affinities = handle["volumes/predictions/affinities"][()]
        mean = handle["volumes/predictions/cell_probability"][()]
    assert labels.shape == (16, 96, 96) and labels.min() > 0
    assert affinities.shape == (3, 16, 96, 96) and affinities.dtype == np.float32
    np.testing.assert_allclose(mean, affinities.mean(axis=0), atol=1e-6)
    assert main([*common, "--method", "mws", "--bias", "0.3", "--save-probabilities",
                 "--out", str(tmp_path / "mws.zarr")]) == 0
    assert "mws (mutex watershed of affinity - bias (mwatershed); bias 0.3" in \
        capsys.readouterr().out
    root = zarr.open_group(tmp_path / "mws.zarr", mode="r")
    np.testing.assert_array_equal(root["affinities/0"][()], affinities)  # same network
    axes = root["affinities"].attrs["multiscales"][0]["axes"]
    assert [axis["name"] for axis in axes] == ["c", "z", "y", "x"]
    assert main([*common, "--out", str(tmp_path / "plain.zarr")]) == 0
    assert "affinities" not in zarr.open_group(tmp_path / "plain.zarr", mode="r")


def test_a_network_and_a_method_that_do_not_match_are_one_line(affinity_run, tmp_path,
                                                                 capsys):
    assert main(["segment", "--checkpoint", str(affinity_run / "run" / "best.pt"), "--data",
                 str(affinity_run / "stack.h5"), "--device", "cpu", "--method", "seeded",
                 "--out", str(tmp_path / "a.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--method seeded segments a cell probability map" \
        in err and "is an affinity network" in err
    boundary = tmp_path / "boundary"
    assert main(["train", "--model", "unet2d", "--data", str(affinity_run / "stack.h5"),
                 "--out", str(boundary), "--profile", "smoke", "--epochs", "1", "--device",
                 "cpu", "--workers", "1", "--no-tensorboard"]) == 0
    capsys.readouterr()
    assert main(["segment", "--checkpoint", str(boundary / "best.pt"), "--data",
                 str(affinity_run / "stack.h5"), "--device", "cpu", "--method", "waterz",
                 "--out", str(tmp_path / "b.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "a boundary network" in err and \
        "--target affinities" in err
    assert not (tmp_path / "a.h5").exists() and not (tmp_path / "b.h5").exists()


def test_an_affinity_network_is_validated_on_its_agglomeration():
    from emseg_lib.data.targets import affinities
    from emseg_lib.train.loop import _affinity_scores

    labels = synthetic_em_volume((4, 64, 64), seed=3).labels.astype(np.int64)
    perfect = affinities(labels).astype(np.float32)  # (3, Z, Y, X)
    rows = _affinity_scores((perfect, labels), pixel_nm=4.0)
    assert len(rows) == 4 and all(row["cremi_voi_split"] + row["cremi_voi_merge"] < 1e-6
                                  for row in rows)
    flat = np.full_like(perfect, 0.9)  # no boundary anywhere: the cells merged
    assert all(row["cremi_voi_merge"] > 0.5 for row in _affinity_scores((flat, labels), 4.0))
    two_d = _affinity_scores((perfect[1:, 0], labels[0]), pixel_nm=4.0)  # (y, x) channels
    assert len(two_d) == 1 and two_d[0]["cremi_voi_split"] + two_d[0]["cremi_voi_merge"] < 1e-6


def test_the_dice_loss_is_zero_when_right_and_weighs_each_channel():
    from emseg_lib.train.losses import dice_loss

    target = torch.ones(1, 2, 8, 8)  # affinities: 1 = same segment
    target[:, 0, :1] = 0.0  # a few edges cross a boundary
    target[:, 1, :, :1] = 0.0
    right = torch.where(target > 0, 20.0, -20.0)
    assert dice_loss(right, target) < 1e-6
    half_wrong = right.clone()
    half_wrong[:, 1] = 20.0  # channel 1 says "same segment" everywhere: no boundary found
    assert dice_loss(half_wrong, target) == pytest.approx(0.5, abs=1e-4)


def test_an_affinity_loss_without_affinities_is_one_line(tmp_path, capsys):
    assert main(["train", "--model", "unet2d", "--affinity-loss", "dice", "--data",
                 str(tmp_path / "none.h5"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--affinity-loss dice: only with --target" in err
    assert not (tmp_path / "run").exists()
