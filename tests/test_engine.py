"""Sweeps on an engine: submitit's local executor gives the inline results, and a re-run
collects the finished jobs from their run folders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emseg_lib import EmsegInputError
from emseg_lib.data import synthetic_em_volume
from emseg_lib.experiments.transfer_sweep import TransferSpec, _transfer_job
from emseg_lib.infra.engine import Engine, VolumeFile, for_jobs, run_jobs
from emseg_lib.profiles import get_profile

#: what a training history holds that is not a timing
DETERMINISTIC = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "val_voi_before",
                 "val_voi"]


def test_engine_strings():
    assert Engine.parse(None) == Engine() == Engine.parse("inline")
    assert Engine.parse("local:2") == Engine("local", 2)
    assert Engine.parse("slurm:8:gpu") == Engine("slurm", 8, "gpu")
    assert Engine.parse("local").jobs == 1
    for bad in ("cloud:2", "local:x", "local:0", "inline:3"):
        with pytest.raises(EmsegInputError, match="engine"):
            Engine.parse(bad)


def test_volume_file_round_trip(tmp_path):
    volume = synthetic_em_volume((4, 32, 32), seed=1)
    shared = VolumeFile.save(volume, tmp_path)
    assert VolumeFile.save(volume, tmp_path) == shared  # saved once, named by content
    loaded = shared.load()
    np.testing.assert_array_equal(loaded.raw, volume.raw)
    np.testing.assert_array_equal(loaded.labels, volume.labels)
    assert (loaded.resolution, loaded.source, loaded.synthetic) == (
        volume.resolution, volume.source, volume.synthetic)
    assert for_jobs(volume, Engine(), tmp_path) is volume


def test_local_executor_gives_the_inline_results(tmp_path):
    """Two tiny transfer runs (smoke profile, CPU) as two local jobs at once."""
    profile = get_profile("smoke")
    volume = synthetic_em_volume((12, 64, 64), seed=2)
    spec = TransferSpec(None, 0, 0)

    def calls(root, engine):
        shared = for_jobs(volume, engine, root / "engine")
        return [(spec, shared, profile, root / f"seed{seed}", root, seed, "cpu")
                for seed in (0, 1)]

    inline = run_jobs(Engine(), _transfer_job, calls(tmp_path / "inline", Engine()),
                      tmp_path / "inline" / "engine")
    local = Engine("local", 2)
    jobs = run_jobs(local, _transfer_job, calls(tmp_path / "local", local),
                    tmp_path / "local" / "engine")
    assert len(jobs) == 2
    for ours, theirs in zip(jobs, inline, strict=True):
        pd.testing.assert_frame_equal(ours[DETERMINISTIC], theirs[DETERMINISTIC])
    assert list((tmp_path / "local" / "engine").glob("*_log.out"))
    again = run_jobs(Engine(), _transfer_job, calls(tmp_path / "local", Engine()),
                     tmp_path / "local" / "engine")  # finished runs are collected
    for ours, theirs in zip(again, jobs, strict=True):
        pd.testing.assert_frame_equal(ours[DETERMINISTIC], theirs[DETERMINISTIC])
