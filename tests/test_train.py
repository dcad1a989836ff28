"""The training loop: history, checkpoints, exact resume, architecture mismatch, workers."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from emseg_lib import EmsegInputError
from emseg_lib.data import AugmentConfig, EMCropDataset, split_slices
from emseg_lib.infra.device import pick_device
from emseg_lib.models import UNet2D, UNet3D
from emseg_lib.train import BEST, HISTORY, LAST, TrainConfig, fit, load_checkpoint
from emseg_lib.train.loop import selection_voi


@pytest.fixture(scope="module")
def datasets(small_volume):
    parts = split_slices(small_volume.shape[0]).apply(small_volume)
    train = EMCropDataset(parts["train"], (32, 32), 4, augment=AugmentConfig(), seed=0)
    val = EMCropDataset(parts["val"], (32, 32), 2, seed=1)
    return train, val


def _model(seed: int) -> UNet2D:
    torch.manual_seed(seed)
    return UNet2D(base_width=4, depth=3)


CONFIG = TrainConfig(epochs=3, batch_size=2, lr=0.005, device="cpu")


def test_history_and_files(tmp_path, datasets):
    history = fit(_model(0), *datasets, CONFIG, tmp_path, progress=False)
    assert list(history["epoch"]) == [0, 1, 2]
    for column in ("train_loss", "val_loss", "val_acc", "val_voi_before", "val_voi",
                   "val_voi_split", "val_voi_merge", "val_arand", "val_cremi_score",
                   "samples_per_s", "epoch_s", "val_s"):
        assert history[column].notna().all(), column
    assert (tmp_path / LAST).exists() and (tmp_path / BEST).exists()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / HISTORY), history,
                                  check_dtype=False)


def test_resume_gives_the_same_next_epoch(tmp_path, datasets):
    uninterrupted = fit(_model(0), *datasets, CONFIG, tmp_path / "a", progress=False)
    fit(_model(0), *datasets, TrainConfig(**{**CONFIG.__dict__, "epochs": 2}), tmp_path / "b",
        progress=False)
    # a fresh process: different initial weights, everything restored from last.pt
    resumed = fit(_model(123), *datasets, CONFIG, tmp_path / "b", progress=False)
    assert len(resumed) == 3
    assert resumed["train_loss"].iloc[2] == pytest.approx(uninterrupted["train_loss"].iloc[2],
                                                          rel=1e-6)
    assert resumed["val_loss"].iloc[2] == pytest.approx(uninterrupted["val_loss"].iloc[2],
                                                        rel=1e-6)


def test_resume_refuses_another_architecture(tmp_path, datasets):
    fit(_model(0), *datasets, TrainConfig(**{**CONFIG.__dict__, "epochs": 1}), tmp_path,
        progress=False)
    with pytest.raises(EmsegInputError, match=r"another model kind \(model_spec.name was "
                                              r"'unet2d', now 'unet3d'"):
        fit(UNet3D(filters=(4, 4, 6, 6, 8)), *datasets, CONFIG, tmp_path, progress=False)


def test_worker_processes_do_not_change_the_result(tmp_path, datasets):
    runs = {}
    for workers in (0, 2):
        model = _model(0)
        config = dataclasses.replace(CONFIG, epochs=2, num_workers=workers)
        history = fit(model, *datasets, config, tmp_path / str(workers), progress=False)
        runs[workers] = history.drop(columns=["epoch_s", "val_s", "samples_per_s"]), model
    pd.testing.assert_frame_equal(runs[0][0], runs[2][0], check_exact=True)
    for (name, a), (_, b) in zip(runs[0][1].state_dict().items(),
                                 runs[2][1].state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_cpu_training_runs_in_float32_without_autocast(tmp_path, datasets):
    model = _model(0)
    seen = set()
    model.register_forward_hook(lambda module, inputs, output: seen.add(
        (torch.is_autocast_enabled("cpu"), output.dtype, inputs[0].is_contiguous())))
    fit(model, *datasets, dataclasses.replace(CONFIG, epochs=1, amp=True), tmp_path,
        progress=False)
    assert seen == {(False, torch.float32, True)}


TIMING = ["epoch_s", "val_s", "samples_per_s"]


def test_a_time_budget_stops_after_the_epoch_it_ran_out_in(tmp_path, datasets, capsys):
    """``minutes``: never within an epoch; the checkpoints hold that epoch; the same call
    resumes with a fresh budget and continues as an uninterrupted run; a budget that does
    not run out leaves ``epochs`` in charge."""
    uninterrupted = fit(_model(0), *datasets, CONFIG, tmp_path / "a", progress=False)
    budget = dataclasses.replace(CONFIG, minutes=1e-9)  # runs out during the first epoch
    first = fit(_model(0), *datasets, budget, tmp_path / "b", progress=False)
    assert list(first["epoch"]) == [0]
    assert load_checkpoint(tmp_path / "b" / LAST)["epoch"] == 0
    assert (tmp_path / "b" / BEST).exists() and len(pd.read_csv(tmp_path / "b" / HISTORY)) == 1
    out = capsys.readouterr().out
    assert "time budget of 1e-09 min ran out during epoch 0" in out
    assert "resumes at epoch 1 with a fresh budget" in out
    # resumed: a fresh budget (it runs out again, during epoch 1)
    second = fit(_model(5), *datasets, budget, tmp_path / "b", progress=False)
    assert list(second["epoch"]) == [0, 1]
    assert "ran out during epoch 1" in capsys.readouterr().out
    # a budget that does not run out: the epochs end it, without the line
    third = fit(_model(5), *datasets, dataclasses.replace(CONFIG, minutes=60), tmp_path / "b",
                progress=False)
    assert list(third["epoch"]) == [0, 1, 2] and "time budget" not in capsys.readouterr().out
    pd.testing.assert_frame_equal(third.drop(columns=TIMING),
                                  uninterrupted.drop(columns=TIMING), rtol=1e-6)


def test_a_time_budget_alone_needs_no_epoch_limit(tmp_path, datasets):
    only_budget = dataclasses.replace(CONFIG, epochs=None, minutes=1e-9)
    assert list(fit(_model(0), *datasets, only_budget, tmp_path, progress=False)["epoch"]) == [0]
    with pytest.raises(EmsegInputError, match="needs a time budget"):
        fit(_model(0), *datasets, dataclasses.replace(CONFIG, epochs=None), tmp_path / "c",
            progress=False)
    with pytest.raises(EmsegInputError, match="minutes must be > 0"):
        fit(_model(0), *datasets, dataclasses.replace(CONFIG, minutes=0), tmp_path / "d",
            progress=False)


def test_the_progress_line_names_its_validation_protocol(tmp_path, datasets, capsys,
                                                         monkeypatch):
    """One validation figure, named: the CREMI-protocol VOI that best.pt is chosen by (the
    thesis protocol's ``val_voi`` stays in history.csv for the thesis's figures)."""
    monkeypatch.setenv("EMSEG_PROGRESS", "log")
    monkeypatch.setenv("EMSEG_PROGRESS_SECONDS", "0")
    history = fit(_model(0), *datasets, dataclasses.replace(CONFIG, epochs=1), tmp_path)
    err = capsys.readouterr().err
    row = history.iloc[0]
    assert f"val VOI (CREMI protocol)={selection_voi(row):.3f}" in err
    assert "val_voi" not in err and "val_voi" in history.columns


def test_bad_checkpoint_file(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_text("garbage")
    with pytest.raises(EmsegInputError, match="not a readable torch checkpoint"):
        load_checkpoint(bad)


@pytest.mark.parametrize("requested, fragment", [
    ("gpu", "not a device emseg can use"), ("cuda:x", "not a device emseg can use"),
    ("tpu", "not a device emseg can use")])
def test_device_strings_that_are_no_device_are_refused(requested, fragment):
    with pytest.raises(EmsegInputError, match=fragment):
        pick_device(requested)


def test_device_choice_follows_the_request_and_what_the_machine_has(monkeypatch):
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    with pytest.raises(EmsegInputError, match="asked for CUDA but none is available"):
        pick_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device() == torch.device("cuda")
    assert pick_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(EmsegInputError, match="has 2 CUDA device"):
        pick_device("cuda:2")
