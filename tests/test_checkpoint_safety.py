"""Checkpoints and run folders: verified loading, no code on load, run identity, locks, Ctrl-C."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from emseg_lib import EmsegInputError
from emseg_lib.data import (
    EMCropDataset,
    EMVolume,
    labelled_split,
    split_slices,
    thesis_split,
)
from emseg_lib.errors import TrainingInterrupted
from emseg_lib.experiments.gans import GENERATOR_WEIGHTS, run_boundless
from emseg_lib.experiments.supervised import train_unet
from emseg_lib.infra.atomic_files import atomic_path
from emseg_lib.models import UNet2D, model_spec
from emseg_lib.models.pretrained import BoundlessSegmenter, load_pretrained
from emseg_lib.profiles import get_profile
from emseg_lib.train import BEST, HISTORY, LAST, TrainConfig, fit, model_from_checkpoint
from emseg_lib.train import loop as loop_module
from emseg_lib.train.checkpoint import (
    annotate_checkpoint,
    content_sha256,
    load_checkpoint,
    save_checkpoint,
    weights_sha256,
)
from emseg_lib.train.runs import LOCK_FILE, RUN_FILE, run_lock
from emseg_lib.train.tensorboard_log import TENSORBOARD

CONFIG = TrainConfig(epochs=1, batch_size=2, device="cpu")


def _model() -> UNet2D:
    torch.manual_seed(0)
    return UNet2D(base_width=2, depth=2)


def _checkpoint(path, **extra):
    model = _model()
    save_checkpoint(path, {"model": model.state_dict(), "model_spec": model_spec(model),
                           **extra})
    return path


@pytest.fixture(scope="module")
def datasets(small_volume):
    parts = split_slices(small_volume.shape[0]).apply(small_volume)
    return (EMCropDataset(parts["train"], (16, 16), 2, seed=0),
            EMCropDataset(parts["val"], (16, 16), 1, seed=1))


def _one_line(err: pytest.ExceptionInfo, name: str) -> str:
    message = str(err.value)
    assert "\n" not in message and name in message
    return message


# --- the file format ------------------------------------------------------------------------

def test_round_trip_records_format_and_checksum(tmp_path):
    path = _checkpoint(tmp_path / "c.pt", history=[{"val_voi": np.float64(0.5)}])
    state = load_checkpoint(path)
    assert state["format"] == "emseg-checkpoint" and state["version"] == 2
    assert state["weights_sha256"] == weights_sha256(state)
    assert state["content_sha256"] == content_sha256(state)
    assert type(state["history"][0]["val_voi"]) is float  # numpy scalars stored as floats
    with pytest.raises(TypeError, match=r"state\.extra is a \w*Path"):
        _checkpoint(tmp_path / "bad.pt", extra=pathlib.Path("x"))


class _RunsCodeOnLoad:
    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    state = torch.load(_checkpoint(path), weights_only=True)
    state["payload"] = _RunsCodeOnLoad(marker)
    torch.save(state, path)
    with pytest.raises(EmsegInputError, match="refused: the file holds Python objects") as err:
        load_checkpoint(path)
    _one_line(err, "evil.pt")
    assert not marker.exists()
    with pytest.raises(EmsegInputError, match="refused"):
        model_from_checkpoint(path)
    assert not marker.exists()


def test_a_changed_optimizer_state_or_history_is_refused(tmp_path):
    path = _checkpoint(tmp_path / "last.pt", history=[{"val_voi": 0.5}],
                       optimizer={"state": {0: {"exp_avg": torch.ones(3)}}})
    for change in (lambda s: s["optimizer"]["state"][0]["exp_avg"].mul_(2),
                   lambda s: s["history"][0].update(val_voi=0.25)):
        state = torch.load(path, weights_only=True)
        change(state)
        torch.save(state, tmp_path / "changed.pt")
        with pytest.raises(EmsegInputError, match="contents .* do not match their SHA-256") as err:
            load_checkpoint(tmp_path / "changed.pt")
        _one_line(err, "changed.pt")


def test_truncated_and_foreign_files_are_one_line(tmp_path):
    path = _checkpoint(tmp_path / "best.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EmsegInputError, match="not a readable torch checkpoint") as err:
        load_checkpoint(path)
    _one_line(err, "best.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": _model().state_dict()}, foreign)  # e.g. an older emseg's file
    with pytest.raises(EmsegInputError, match=r"foreign\.pt: not an emseg checkpoint"):
        load_checkpoint(foreign)


def test_changed_weights_fail_the_checksum(tmp_path):
    path = _checkpoint(tmp_path / "last.pt")
    state = torch.load(path, weights_only=True)
    next(iter(state["model"].values())).view(-1)[0] += 1.0
    torch.save(state, path)
    with pytest.raises(EmsegInputError, match="weights do not match their SHA-256") as err:
        load_checkpoint(path)
    _one_line(err, "last.pt")


def test_a_flipped_byte_on_disk_is_caught(tmp_path):
    model = _model()
    with torch.no_grad():
        model.head.weight.fill_(1234.5)  # a recognisable byte pattern in the file
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"model": model.state_dict(), "model_spec": model_spec(model)})
    data = bytearray(path.read_bytes())
    offset = data.find(np.float32(1234.5).tobytes())
    assert offset > 0
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    torch.load(path, weights_only=True)  # torch itself reads the damaged file silently
    with pytest.raises(EmsegInputError, match=r"best\.pt: the weights do not match their "
                                              r"SHA-256"):
        load_checkpoint(path)


def test_annotations_are_plain_and_cannot_replace_weights(tmp_path):
    path = _checkpoint(tmp_path / BEST)
    annotate_checkpoint(path, "postprocess", {"sig_th": np.float64(0.83), "edge_th": 0.91,
                                              "tuned_on": "val"})
    assert load_checkpoint(path)["postprocess"] == {"sig_th": 0.83, "edge_th": 0.91,
                                                    "tuned_on": "val"}
    assert model_from_checkpoint(path).config == _model().config
    with pytest.raises(EmsegInputError, match="'model' is written by emseg itself"):
        annotate_checkpoint(path, "model", {})


def test_generator_weights_are_a_checkpoint_but_not_a_segmenter(tmp_path, small_volume):
    smoke = get_profile("smoke")
    plan = dataclasses.replace(smoke.boundless, steps=2, eval_every=2, samples_per_epoch=4,
                               val_crops=2)
    profile = dataclasses.replace(smoke, boundless=plan)
    run_dir = tmp_path / "boundless_right"
    generator, _ = run_boundless(small_volume, "right", profile, run_dir, device="cpu",
                                 progress=False)
    weights = run_dir / GENERATOR_WEIGHTS
    state = load_checkpoint(weights)
    assert state["model_spec"] == model_spec(generator) and state["mask_kind"] == "right"
    assert state["identity"]["mask_kind"] == "right"
    assert len(load_pretrained(BoundlessSegmenter(width=4), weights, 17)) > 0
    with pytest.raises(EmsegInputError, match=r"generator\.pt: holds a 'boundless_generator', "
                                              r"not a segmentation network"):
        model_from_checkpoint(weights)
    with pytest.raises(EmsegInputError, match=r"different mask_kind \(mask_kind was 'right', "
                                              r"now 'center'\)"):
        run_boundless(small_volume, "center", profile, run_dir, device="cpu", progress=False)


# --- run folders ----------------------------------------------------------------------------

def _tiny_profile():
    smoke = get_profile("smoke")
    plan = dataclasses.replace(smoke.unet2d, crop=(16, 16), epochs=1, samples_per_epoch=2,
                               batch_size=2, val_crops=1)
    return dataclasses.replace(smoke, unet2d_width=2, unet2d_depth=2, unet2d=plan)


def test_a_run_is_resumed_only_with_the_same_data_seed_and_profile(tmp_path, small_volume):
    profile = _tiny_profile()
    run_dir = tmp_path / "run"
    train_unet("unet2d", small_volume, profile, run_dir, device="cpu", progress=False)
    record = json.loads((run_dir / RUN_FILE).read_text())["identity"]
    assert record["seed"] == 0 and record["profile"] == "smoke"
    assert "split" not in record  # the thesis's split is not recorded: older runs resume
    assert load_checkpoint(run_dir / LAST)["identity"] == record
    with pytest.raises(EmsegInputError, match=r"another split of the labelled slices \(split"
                                              r"\.train was None, now '0-"):
        train_unet("unet2d", small_volume, profile, run_dir, device="cpu", progress=False,
                   z_split=labelled_split(small_volume.labels))
    with pytest.raises(EmsegInputError, match=r"a different seed \(seed was 0, now 1\); use "
                                              r"another output folder"):
        train_unet("unet2d", small_volume, profile, run_dir, seed=1, device="cpu",
                   progress=False)
    raw = small_volume.raw.copy()
    raw[0, 0, 0] ^= 1
    changed = dataclasses.replace(small_volume, raw=raw)
    with pytest.raises(EmsegInputError, match=r"different data \(data\.raw_sha256 was '"):
        train_unet("unet2d", changed, profile, run_dir, device="cpu", progress=False)
    longer = dataclasses.replace(profile, unet2d=dataclasses.replace(profile.unet2d, epochs=2))
    history = train_unet("unet2d", small_volume, longer, run_dir, device="cpu",
                         progress=False).history
    assert list(history["epoch"]) == [0, 1]  # more epochs: the same run, resumed
    history = train_unet("unet2d", small_volume, longer, run_dir, device="cpu",
                         progress=False, z_split=thesis_split(small_volume.shape[0])).history
    assert len(history) == 2  # the thesis's split given explicitly: the same run


def test_a_folder_of_other_files_or_a_refused_resume_writes_nothing(tmp_path, datasets):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(EmsegInputError, match="holds other files and no emseg run"):
        fit(_model(), *datasets, CONFIG, tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    run_dir = tmp_path / "run"
    fit(_model(), *datasets, CONFIG, run_dir, progress=False)
    with pytest.raises(EmsegInputError, match="already holds a run"):
        fit(_model(), *datasets, CONFIG, run_dir, resume=False, progress=False)


def test_a_second_trainer_is_refused_and_a_dead_ones_lock_taken_over(tmp_path, datasets):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with run_lock(run_dir):
        with pytest.raises(EmsegInputError, match=rf"another trainer is using this run folder "
                                                  rf"\(PID {os.getpid()}") as err:
            fit(_model(), *datasets, CONFIG, run_dir, progress=False)
        _one_line(err, str(run_dir))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (run_dir / LOCK_FILE).write_text(f"{dead} somehost\n")
    fit(_model(), *datasets, CONFIG, run_dir, progress=False)
    assert (run_dir / LAST).exists() and not (run_dir / LOCK_FILE).exists()


def test_best_is_written_before_last_even_when_the_score_is_nan(tmp_path, datasets,
                                                                 monkeypatch):
    written = []
    original = loop_module.save_checkpoint
    monkeypatch.setattr(loop_module, "save_checkpoint",
                        lambda path, state: (written.append(path.name), original(path, state)))
    validate = loop_module._validate
    monkeypatch.setattr(loop_module, "_validate",
                        lambda *a: {**validate(*a), "val_voi": float("nan")})
    fit(_model(), *datasets, CONFIG, tmp_path, progress=False)
    assert written == [BEST, LAST]


def test_ctrl_c_stops_with_one_line_and_the_run_resumes(tmp_path, datasets, monkeypatch):
    original = loop_module._epoch

    def interrupted_at_epoch_1(*args):
        if args[7] == 1:  # the epoch argument
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(loop_module, "_epoch", interrupted_at_epoch_1)
    config = dataclasses.replace(CONFIG, epochs=2)
    with pytest.raises(TrainingInterrupted) as err:
        fit(_model(), *datasets, config, tmp_path, progress=False)
    assert str(err.value) == (f"{tmp_path}: interrupted at epoch 1; run the same command "
                              "again to resume")
    assert err.value.__suppress_context__  # no chained traceback
    assert load_checkpoint(tmp_path / LAST)["epoch"] == 0
    assert (tmp_path / BEST).exists() and not (tmp_path / LOCK_FILE).exists()
    assert len(pd.read_csv(tmp_path / HISTORY)) == 1
    monkeypatch.setattr(loop_module, "_epoch", original)
    history = fit(_model(), *datasets, config, tmp_path, progress=False)
    assert list(history["epoch"]) == [0, 1]


def test_ctrl_c_while_writing_last_keeps_the_previous_checkpoint(tmp_path, datasets,
                                                                 monkeypatch):
    config = dataclasses.replace(CONFIG, epochs=2)
    fit(_model(), *datasets, dataclasses.replace(config, epochs=1), tmp_path, progress=False)
    before = (tmp_path / LAST).read_bytes()
    original = loop_module.save_checkpoint

    def interrupted_writing_last(path, state):
        if path.name == LAST:
            with atomic_path(path) as tmp:
                tmp.write_bytes(b"partial")
                raise KeyboardInterrupt
        original(path, state)

    monkeypatch.setattr(loop_module, "save_checkpoint", interrupted_writing_last)
    with pytest.raises(TrainingInterrupted, match="interrupted at epoch 1"):
        fit(_model(), *datasets, config, tmp_path, progress=False)
    assert (tmp_path / LAST).read_bytes() == before
    # no temporary left; tensorboard/ holds the first run's finished epoch
    assert sorted(p.name for p in tmp_path.iterdir()) == [BEST, HISTORY, LAST, RUN_FILE,
                                                          TENSORBOARD]


def test_run_identity_must_be_json(tmp_path, datasets):
    with pytest.raises(EmsegInputError, match="run_identity must hold JSON values only"):
        fit(_model(), *datasets, CONFIG, tmp_path, progress=False,
            run_identity={"volume": EMVolume(np.zeros((1, 2, 2), np.uint8), None,
                                             (1.0, 1.0, 1.0), "x")})


def test_a_lost_run_record_is_restored_and_an_old_format_folder_untouched(tmp_path, datasets):
    fit(_model(), *datasets, CONFIG, tmp_path / "run", progress=False)
    (tmp_path / "run" / RUN_FILE).unlink()
    with pytest.raises(EmsegInputError, match=r"\(last\.pt\) was trained with a different "
                                              r"architecture"):
        fit(UNet2D(base_width=4, depth=2), *datasets, CONFIG, tmp_path / "run",
            progress=False)
    assert not (tmp_path / "run" / RUN_FILE).exists()
    fit(_model(), *datasets, CONFIG, tmp_path / "run", progress=False)
    assert (tmp_path / "run" / RUN_FILE).exists()
    old = tmp_path / "old"
    old.mkdir()
    torch.save({"model": _model().state_dict(), "epoch": 0}, old / LAST)
    with pytest.raises(EmsegInputError, match=r"last\.pt: not an emseg checkpoint"):
        fit(_model(), *datasets, CONFIG, old, progress=False)
    assert sorted(p.name for p in old.iterdir()) == [LAST]
