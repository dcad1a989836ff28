"""``./run_all.sh --dry-run``: the profile's sizes with a few steps, what it records, and the
report with the estimated wall time of the real run (benchmarks/dry_run.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import RUN_ALL_GROUP

from emseg_lib.data import synthetic_em_volume
from emseg_lib.errors import EmsegInputError
from emseg_lib.experiments.supervised import make_model, predict_split
from emseg_lib.experiments.transfer_sweep import EXPERIMENTS
from emseg_lib.infra.progress import progress_bar
from emseg_lib.infra.work_record import RECORD_ENV, read_records
from emseg_lib.profiles import DRY_SLICES, DRY_STEPS, get_profile

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["smoke", "quick", "full"])
def test_a_dry_run_keeps_every_size_and_shortens_every_loop(name):
    real, dry = get_profile(name), get_profile(f"{name}-dry")
    assert dry.name == f"{name}-dry" and real.predict_slices == 0
    for field in ("synthetic_shape", "real_data_crop", "unet2d_width", "unet2d_depth",
                  "unet3d_filters", "tiling_3d", "validation_seed"):
        assert getattr(dry, field) == getattr(real, field), field
    for plan in ("unet2d", "unet3d"):
        short, long = getattr(dry, plan), getattr(real, plan)
        assert (short.crop, short.batch_size) == (long.crop, long.batch_size)
        assert short.epochs * short.samples_per_epoch <= 2 * DRY_STEPS * long.batch_size
    assert dry.stylegan.crop == real.stylegan.crop
    assert [r for r, _ in dry.stylegan.schedule] == [r for r, _ in real.stylegan.schedule]
    assert all(length == DRY_STEPS for _, length in dry.stylegan.schedule)
    assert (dry.boundless.crop, dry.boundless.width, dry.boundless.d_widths,
            dry.boundless.batch_size) == (real.boundless.crop, real.boundless.width,
                                          real.boundless.d_widths, real.boundless.batch_size)
    assert dry.boundless.steps == DRY_STEPS
    assert (dry.transfer.crop, dry.transfer.batch_size) == (real.transfer.crop,
                                                            real.transfer.batch_size)
    assert dry.predict_slices == DRY_SLICES and len(dry.transfer.seeds) == 1
    # every configuration of the sweep still trains at least one epoch
    for table in EXPERIMENTS.values():
        for spec in table.values():
            assert spec.reduced or round(dry.transfer.epochs * spec.epoch_scale) >= 1


def test_only_known_profiles_have_a_dry_run():
    with pytest.raises(EmsegInputError, match="full-dry"):
        get_profile("huge-dry")


def test_a_dry_run_predicts_only_the_first_slices_of_a_split():
    volume = synthetic_em_volume((40, 64, 64), seed=1)
    profile = get_profile("smoke-dry")
    model = make_model("unet2d", profile)
    test = predict_split(model, volume, "test", profile, progress=False)
    full = predict_split(model, volume, "test", get_profile("smoke"), progress=False)
    assert full.prob.shape[0] > DRY_SLICES
    assert test.prob.shape == (DRY_SLICES, *volume.shape[1:])
    assert (test.prob == full.prob[:DRY_SLICES]).all()
    assert (test.gt == full.gt[:DRY_SLICES]).all()


def test_finished_bars_are_recorded_only_when_asked(tmp_path, monkeypatch):
    record = tmp_path / "stages.jsonl"
    monkeypatch.setenv("EMSEG_PROGRESS", "log")
    monkeypatch.setenv("EMSEG_PROGRESS_FILE", str(tmp_path / "progress.log"))
    list(progress_bar(range(3), desc="unrecorded"))
    assert not record.exists()
    monkeypatch.setenv(RECORD_ENV, str(record))
    list(progress_bar(range(5), desc="slices"))
    bar = progress_bar(total=4, initial=1, desc="steps")
    bar.update(3)
    bar.close()
    bar.close()
    rows = read_records(record)
    assert [(row["desc"], row["items"]) for row in rows] == [("slices", 5), ("steps", 3)]
    assert all(row["seconds"] >= 0 and row["peak_host_mb"] > 0 for row in rows)


def test_the_watchdog_records_wall_time_exit_code_and_peak_memory(tmp_path):
    record = tmp_path / "notebooks.jsonl"
    command = [sys.executable, "-m", "emseg_lib.infra.watchdog", "--limit", "600", "--what", "nb",
               "--record", str(record), "--", sys.executable, "-c",
               "import numpy; a = numpy.ones(40_000_000); raise SystemExit(3)"]
    assert subprocess.run(command, timeout=600).returncode == 3
    (row,) = read_records(record)
    assert row["notebook"] == "nb" and row["status"] == 3
    assert row["peak_host_mb"] > 300  # the child's 320 MB array, not the watchdog's own size


@pytest.mark.xdist_group(RUN_ALL_GROUP)  # its notebook's kernel starts like the group's
def test_run_all_dry_run_writes_its_results_file(tmp_path):
    """A smoke-sized dry run of one notebook, then the report with its estimate."""
    project = tmp_path / "project"
    out = project / "outputs" / "smoke-dry"
    (out / "records").mkdir(parents=True)
    (out / ".emseg-dry-run").touch()  # an earlier dry run's records: not carried over
    (out / "records" / "notebooks.jsonl").write_text(
        '{"notebook": "02_stylegan", "status": 0, "seconds": 1.0, "peak_host_mb": 1.0}\n')
    # a last guard only: run_all.sh's watchdog fails a hung notebook (900 s) with its stacks
    result = subprocess.run([str(ROOT / "run_all.sh"), "--profile", "smoke", "--dry-run",
                             "--only", "00_data_exploration"], capture_output=True, text=True,
                            timeout=3600, env={**os.environ, "EMSEG_ROOT": str(project)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "figures").is_dir() and not (project / "figures").exists()
    assert not (project / "runs" / "LAST_PROFILE").exists()
    (md,) = (project / "benchmarks" / "results").glob("*_smoke_dry_run.md")
    report = json.loads(md.with_suffix(".json").read_text())
    (row,) = report["notebooks"]
    assert row["notebook"] == "00_data_exploration" and row["status"] == 0
    assert row["seconds"] > 0 and row["peak_host_mb"] > 100
    notebooks = {estimate["notebook"] for estimate in report["estimate_inline"]}
    assert "02_stylegan" in notebooks and "01_unet (unet3d)" in notebooks
    assert "Estimated wall time of the real `smoke` run" in md.read_text()


def test_a_dry_run_refuses_a_runs_folder(tmp_path):
    given_runs = subprocess.run([str(ROOT / "run_all.sh"), "--profile", "smoke", "--dry-run",
                                 "--runs", str(tmp_path / "runs")], capture_output=True,
                                text=True, timeout=600, env={**os.environ,
                                                             "EMSEG_ROOT": str(tmp_path)})
    assert given_runs.returncode == 2 and "do not give --runs" in given_runs.stderr


@pytest.mark.parametrize("folder", ["runs", "records"])
def test_a_dry_run_never_empties_a_folder_it_did_not_make(tmp_path, folder):
    foreign = tmp_path / "mine"
    (foreign / folder).mkdir(parents=True)
    (foreign / folder / "keep.txt").write_text("a user's file")
    refused = subprocess.run([str(ROOT / "run_all.sh"), "--profile", "smoke", "--dry-run",
                              "--out", str(foreign)], capture_output=True, text=True,
                             timeout=600, env={**os.environ, "EMSEG_ROOT": str(tmp_path)})
    assert refused.returncode == 2 and "not made by a dry run" in refused.stderr
    assert (foreign / folder / "keep.txt").read_text() == "a user's file"


def test_the_report_needs_the_dry_runs_records(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dry_run.py"),
                             "--profile", "smoke", "--records", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and "run ./run_all.sh --dry-run first" in result.stderr

