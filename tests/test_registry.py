"""The model registry drives training: one ``MODELS`` entry makes a network trainable by
``emseg train``, listed for ``run_all.sh`` and rebuilt from its checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from emseg_lib import EmsegInputError, models
from emseg_lib.cli import main
from emseg_lib.data import synthetic_em_volume
from emseg_lib.experiments.supervised import KINDS, make_model, schedule
from emseg_lib.models import MODELS, ModelEntry, trainable_entry, trainable_kinds
from emseg_lib.models.__main__ import main as models_main
from emseg_lib.profiles import SCHEDULES, get_profile
from emseg_lib.train import model_from_checkpoint


class ToyNet(nn.Module):
    """A few-parameter 2D network: one 3x3 convolution, a ReLU and a 1x1 one."""

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 2):
        super().__init__()
        self.config = {"in_channels": in_channels, "out_channels": out_channels,
                       "width": width}
        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


TOY = ModelEntry(ToyNet, 2, build=lambda profile, channels: ToyNet(out_channels=channels),
                 schedule_section="unet2d")


@pytest.fixture
def toy(monkeypatch):
    """``toy`` registered for this test only (the registry is restored afterwards)."""
    monkeypatch.setitem(MODELS, "toy", TOY)
    return TOY


def test_the_trained_kinds_are_the_registry_entries_with_a_constructor():
    assert KINDS == trainable_kinds() == ("unet2d", "unet3d")
    assert "boundless_segmenter" in MODELS and "boundless_segmenter" not in KINDS
    assert SCHEDULES == ("unet2d", "unet3d")
    smoke = get_profile("smoke")
    for kind in KINDS:
        assert schedule(kind, smoke) is getattr(smoke, MODELS[kind].schedule_section)
    with pytest.raises(EmsegInputError, match="model kind must be one of"):
        trainable_entry("boundless_segmenter")


def test_run_all_reads_the_kinds_from_the_registry(capsys, toy):
    assert models_main(["--kinds"]) == 0
    assert capsys.readouterr().out.split() == ["unet2d", "unet3d", "toy"]


def test_an_unknown_schedule_section_is_one_line(monkeypatch):
    monkeypatch.setitem(MODELS, "toy", ModelEntry(ToyNet, 2, build=TOY.build,
                                                  schedule_section="nowhere"))
    with pytest.raises(EmsegInputError, match="'nowhere' is not one of the profile's"):
        schedule("toy", get_profile("smoke"))


def test_make_model_builds_the_entry_for_each_target(toy):
    smoke = get_profile("smoke")
    assert isinstance(make_model("toy", smoke), ToyNet)
    assert make_model("toy", smoke, target="affinities").config["out_channels"] == 2
    assert models.model_name(ToyNet()) == "toy"


def test_a_toy_model_is_one_registry_entry_and_trains_through_emseg_train(tmp_path, capsys,
                                                                          toy):
    volume = synthetic_em_volume((6, 64, 64), seed=5)
    tifffile.imwrite(tmp_path / "raw.tif", volume.raw, photometric="minisblack")
    tifffile.imwrite(tmp_path / "labels.tif", volume.labels.astype(np.uint32),
                     photometric="minisblack")
    run = tmp_path / "run"
    code = main([str(a) for a in ("train", "--model", "toy", "--data", tmp_path / "raw.tif",
                                  "--labels", tmp_path / "labels.tif", "--out", run,
                                  "--profile", "smoke", "--epochs", "1", "--device", "cpu",
                                  "--workers", "1", "--no-tensorboard")])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model"] == "toy" and summary["epochs"] == 1
    assert summary["parameters"] == sum(p.numel() for p in ToyNet().parameters())
    identity = json.loads((run / "run.json").read_text())["identity"]
    assert identity["model_spec"]["name"] == "toy"
    for name in ("last.pt", "best.pt"):
        model = model_from_checkpoint(run / name)
        assert isinstance(model, ToyNet) and not model.training
    assert set(summary["postprocess"]["thresholds"]) == {"thesis", "seeded"}


def test_an_unregistered_model_is_refused_by_emseg_train(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--model", "toy", "--data", str(tmp_path / "raw.tif"), "--out",
              str(tmp_path / "run")])
    assert "invalid choice: 'toy'" in capsys.readouterr().err


def test_the_models_import_nothing_of_training():
    """models sits below train: loading pretrained weights reads the checkpoint file through
    :mod:`emseg_lib.infra.checkpoint_file`, not :mod:`emseg_lib.train`."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, emseg_lib.models.pretrained; print(*sorted(m for m "
         "in sys.modules if m.startswith(('emseg_lib.train', 'emseg_lib.experiments'))))"],
        capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parents[1]).stdout.split()
    assert loaded == []
