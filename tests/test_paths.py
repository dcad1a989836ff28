"""Project paths: the profile and the real-data folder that run_all.sh used are what notebooks
opened afterwards find; anything given explicitly wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from emseg_lib.infra import paths


@pytest.fixture(autouse=True)
def _no_profile_env(monkeypatch):
    monkeypatch.delenv("EMSEG_PROFILE", raising=False)


def _assignments(capsys) -> dict[str, str]:
    return dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())


def test_defaults_without_a_recorded_run(tmp_path):
    found = paths.project_paths(root=tmp_path)
    assert found.profile == paths.DEFAULT_PROFILE
    assert found.real_data == tmp_path / "data"
    assert found.data == tmp_path / "data" / paths.CREMI_FILE


def test_the_last_run_is_recorded_and_found(tmp_path, capsys):
    stacks = tmp_path / "elsewhere" / "stacks"
    assert paths.main(["--root", str(tmp_path), "--profile", "smoke", "--real-data",
                       str(stacks), "--record"]) == 0
    printed = _assignments(capsys)
    assert printed["profile"] == "smoke" and Path(printed["real_data"]) == stacks
    reopened = paths.project_paths(root=tmp_path)  # a notebook opened afterwards
    assert reopened.profile == "smoke" and reopened.real_data == stacks
    assert paths.project_paths(root=tmp_path, real_data=tmp_path).real_data == tmp_path


def test_a_later_run_without_real_data_records_data(tmp_path):
    paths.main(["--root", str(tmp_path), "--real-data", str(tmp_path / "a"), "--record"])
    paths.main(["--root", str(tmp_path), "--real-data", str(tmp_path / "data"), "--record"])
    assert paths.project_paths(root=tmp_path).real_data == tmp_path / "data"


def test_without_record_nothing_is_remembered(tmp_path):
    paths.main(["--root", str(tmp_path), "--profile", "full", "--real-data", str(tmp_path / "a")])
    assert not (tmp_path / "runs").exists()
    assert paths.project_paths(root=tmp_path).real_data == tmp_path / "data"
