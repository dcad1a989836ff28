"""Notebook 05 (the live threshold sliders) executed ten times in a row under papermill, as
``run_all.sh`` runs it, in the smoke profile: it never hangs.

Before :mod:`emseg_lib.report.live`, about 1 execution in 5 on a loaded machine waited for ever in
the slider cell (nbclient's Output-widget emulation wrote to the shell socket while awaiting
the cell's reply on it). Each execution runs under :mod:`emseg_lib.infra.watchdog` with a limit far
above its ~20 s, so a hang fails with the stacks of papermill and its kernel instead of
stopping the test run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "05_threshold_tables.ipynb"
RUNS = 10
#: seconds one execution may take before it counts as hung (it takes ~20 s on 2 cores)
LIMIT_S = 600

pytestmark = pytest.mark.slow


def test_threshold_notebook_runs_ten_times_without_a_hang(smoke_run, tmp_path):
    out, result = smoke_run
    assert result.returncode == 0, result.stderr[-3000:]
    no_real_data = tmp_path / "no_real_data"  # the sliders are what hung, not the real stacks
    no_real_data.mkdir()
    for run in range(RUNS):
        executed = tmp_path / f"05_run{run}.ipynb"
        execution = subprocess.run(
            [sys.executable, "-m", "emseg_lib.infra.watchdog", "--limit", str(LIMIT_S),
             "--what", f"execution {run + 1} of {NOTEBOOK.name}", "--",
             "papermill", str(NOTEBOOK), str(executed), "--cwd", str(NOTEBOOK.parent),
             "--no-progress-bar", "-p", "profile", "smoke",
             "-p", "real_data_dir", str(no_real_data)],
            capture_output=True, text=True, env={**os.environ, "EMSEG_ROOT": str(out)},
            timeout=LIMIT_S + 300)
        assert execution.returncode == 0, (f"execution {run + 1}: exit "
                                           f"{execution.returncode}\n{execution.stderr[-6000:]}")
        assert _live_figure_drawn(executed), f"execution {run + 1}: no figure in the sliders"


def _live_figure_drawn(executed: Path) -> bool:
    """Whether the executed notebook's saved widget state has the sliders' figure (a PNG in
    an Output widget's ``outputs``)."""
    metadata = json.loads(executed.read_text())["metadata"]
    state = metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    return any("image/png" in output.get("data", {})
               for model in state.values() if model["model_name"] == "OutputModel"
               for output in model["state"].get("outputs", []))
