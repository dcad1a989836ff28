"""The notebooks: executed end to end by run_all.sh in the smoke profile (papermill), then
opened again with their default parameters through nbval.

Checks that every notebook runs, that every figure and table the notebooks promise is written
(every thesis figure number has a file) and shown inline, that figures from synthetic data say
so, that tables of the same setting agree, that notebooks opened after run_all.sh find its
checkpoints instead of training again, and that notebooks are committed without outputs
(but for the cells nbval checks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import REAL_DATA, REAL_DATA_PLACES

from emseg_lib.train import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NOTEBOOK_05 = "05_threshold_tables.ipynb"

CURVES = ["accuracy", "voi", "voi_merge", "voi_split", "arand"]
EXPECTED = [
    "table_data_summary", "fig3_2_volume_crops", "fig3_3_slice_labels", "fig3_4_targets",
    "fig3_5_augmentations", "fig3_6_batch",
    *[f"fig5_{n}_unet2d_{c}" for n, c in zip(range(4, 9), CURVES, strict=True)],
    *[f"fig5_{n}_unet3d_{c}" for n, c in zip(range(11, 16), CURVES, strict=True)],
    "fig5_9_unet2d_validation_example", "fig5_10_unet2d_test_example",
    "fig5_16_unet3d_validation_example", "fig5_17_unet3d_test_example",
    "table5_1_unet2d_last5_epochs", "table5_5_unet2d_test",
    "table5_6_unet3d_last5_epochs", "table5_10_unet3d_test",
    "table5_2_unet2d_voi_grid", "table5_3_unet2d_voi_split_grid",
    "table5_4_unet2d_voi_merge_grid", "table5_7_unet3d_voi_grid",
    "table5_8_unet3d_voi_split_grid", "table5_9_unet3d_voi_merge_grid",
    "table5_11_2d_vs_3d", "threshold_explorer_unet2d",
    *[f"fig5_{first + i}_comparison_{part}" for first in (18, 22, 26)
      for i, part in enumerate(["input", "unet2d", "unet3d", "difference"])],
    "fig5_1_stylegan_losses", "fig5_2_stylegan_samples", "fig5_3_stylegan_real_vs_generated",
    "table_stylegan_realism_swd",
    *[f"fig5_{n}_boundless_{mask}_{what}"
      for mask, first in [("right", 30), ("center", 33), ("random", 36)]
      for n, what in zip(range(first, first + 3), ["examples", "losses", "adv_pixel"],
                         strict=True)],
    "table5_12_boundless_right_losses", "table5_13_boundless_center_losses",
    "table5_14_boundless_random_losses",
    "table5_15_transfer_masks", "table5_16_transfer_frozen_layers",
    "table5_17_transfer_initialisation", "table5_18_transfer_hyperparameters",
    "table5_19_transfer_early_stopping", "transfer_sweep_per_seed",
    "transfer_seed_noise_verdicts", "fig5_42_transfer_masks_examples",
    "fig5_45_transfer_frozen_layers_examples", "fig5_48_transfer_initialisation_examples",
    "fig5_53_transfer_early_stopping_examples",
    *[f"fig{n}_transfer_{experiment}_{column}" for n, experiment, column in [
        ("5_39", "masks", "val_acc"), ("5_40", "masks", "val_voi_before"),
        ("5_41", "masks", "val_voi"), ("5_43", "frozen_layers", "val_acc"),
        ("5_44", "frozen_layers", "val_voi_before"), ("5_46", "initialisation", "val_acc"),
        ("5_47", "initialisation", "val_voi_before"), ("5_49", "hyperparameters", "val_acc"),
        ("5_50", "hyperparameters", "val_voi_before"), ("5_51", "early_stopping", "val_acc"),
        ("5_52", "early_stopping", "val_voi_before")]],
    "table_future_fair_evaluation_2d_vs_3d", "table_future_adversarial_segmentation",
    "table_future_adversarial_vs_bce",
]


def _committed(notebook: Path) -> str:
    """The notebook as git has it (the index: committed or staged), else as on disk: a copy
    that JupyterLab saved with outputs in a working tree is not what gets committed."""
    shown = subprocess.run(["git", "show", f":notebooks/{notebook.name}"], cwd=ROOT,
                           capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else notebook.read_text()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_and_parameterised(notebook):
    cells = json.loads(_committed(notebook))["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    for cell in code:
        if "NBVAL_CHECK_OUTPUT" not in "".join(cell["source"]):
            assert cell["execution_count"] is None and not cell["outputs"]
    parameters = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(parameters) == 1 and "profile = " in "".join(parameters[0]["source"])


def test_run_all_smoke_writes_every_figure_and_table(smoke_run):
    out, result = smoke_run
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    figures = out / "figures"
    missing = [name for name in EXPECTED
               if not (figures / f"{name}.png").exists()
               and not (figures / f"{name}.csv").exists()]
    assert not missing
    for name in EXPECTED:
        if name.startswith("table"):
            assert (figures / f"{name}.md").exists(), name
    executed = sorted(p.name for p in (out / "outputs" / "smoke").glob("*.ipynb"))
    assert executed == ["00_data_exploration.ipynb", "01_unet_unet2d.ipynb",
                        "01_unet_unet3d.ipynb", "02_stylegan.ipynb", "03_boundless_masks.ipynb",
                        "04_transfer_learning.ipynb", "05_threshold_tables.ipynb"]
    for mask in ("right", "center", "random"):
        assert (out / "runs" / "smoke" / f"boundless_{mask}" / "generator.pt").exists()
    assert "SYNTHETIC" in result.stdout + result.stderr
    assert "epochs: 2/2 (100 %)" in result.stdout  # training progress reached the console
    assert "of disk" in result.stdout
    if REAL_DATA is not None:
        for name in ("table_real_vnc_unet2d", "table_real_fibsem_unet3d"):
            table = pd.read_csv(figures / f"{name}.csv")
            assert set(table["chosen on"]) == {"thesis", "validation", "defaults",
                                               "test (oracle)"}


@pytest.mark.skipif(REAL_DATA is None, reason=f"no real stack in {REAL_DATA_PLACES}")
def test_reopened_threshold_notebook_finds_the_real_stacks_of_the_run(smoke_run, tmp_path):
    """Notebook 05 opened after ``run_all.sh --real-data DIR`` with its default parameters (as
    in JupyterLab) uses DIR, which the run recorded, and shows the real-data tables without
    training again."""
    out, result = smoke_run
    assert result.returncode == 0
    assert (out / "runs" / "LAST_REAL_DATA").read_text().strip() == str(REAL_DATA)
    before = _finished_epochs(out / "runs" / "smoke")
    executed = tmp_path / "05.ipynb"
    subprocess.run([sys.executable, "-m", "papermill", str(ROOT / "notebooks" / NOTEBOOK_05),
                    str(executed), "--cwd", str(ROOT / "notebooks"), "--no-progress-bar"],
                   check=True, capture_output=True, timeout=3600,
                   env={**os.environ, "EMSEG_ROOT": str(out)})
    shown = json.dumps([cell.get("outputs", []) for cell in
                        json.loads(executed.read_text())["cells"]])
    assert "no real stack in" not in shown
    for stack in ("vnc_sstem_stack1_cremi.h5", "medulla_fibsem_250_cremi.h5"):
        assert f"{stack} (" in shown, stack  # the table's caption names the stack
    assert _finished_epochs(out / "runs" / "smoke") == before


def test_every_thesis_figure_has_a_file(smoke_run):
    names = [p.name for p in (smoke_run[0] / "figures").glob("fig*.png")]
    numbers = [f"3_{n}" for n in range(2, 7)] + [f"5_{n}" for n in range(1, 54)]
    assert [n for n in numbers if not any(name.startswith(f"fig{n}_") for name in names)] == []


def test_executed_notebooks_show_their_figures(smoke_run):
    executed = smoke_run[0] / "outputs" / "smoke"
    for notebook in executed.glob("*.ipynb"):
        outputs = [o for c in json.loads(notebook.read_text())["cells"]
                   for o in c.get("outputs", [])]
        images = [o for o in outputs if "image/png" in o.get("data", {})]
        texts = "".join("".join(o.get("data", {}).get("text/plain", "")) for o in outputs)
        assert images, notebook.name
        assert "<Figure size" not in texts, notebook.name


def test_tables_5_5_and_5_11_agree(smoke_run):
    figures = smoke_run[0] / "figures"
    comparison = pd.read_csv(figures / "table5_11_2d_vs_3d.csv", index_col=0)
    for kind, name in [("unet2d", "table5_5_unet2d_test"), ("unet3d", "table5_10_unet3d_test")]:
        test = pd.read_csv(figures / f"{name}.csv", index_col=0)
        for column in ("voi_split", "voi_merge", "arand", "cremi_voi_split", "cremi_arand"):
            assert test.loc["ours, best.pt", column] == pytest.approx(
                comparison.loc[f"ours {kind}, best.pt", column]), (kind, column)
        assert "best.pt (epoch" in (figures / f"{name}.md").read_text()


def _finished_epochs(runs: Path) -> dict[str, int]:
    """Finished epochs (supervised runs) or steps (GAN runs) of every ``last.pt``."""
    progress = {}
    for path in sorted(runs.rglob("last.pt")):
        state = load_checkpoint(path)
        progress[str(path.relative_to(runs))] = state.get("epoch", state.get("step"))
    return progress


def test_notebooks_open_with_defaults_after_run_all_without_retraining(smoke_run):
    """nbval runs every notebook as a person opening it would: default parameters, which find
    the smoke run's checkpoints (its profile was recorded); deterministic cells are compared
    with their stored outputs. No run may train further."""
    out, result = smoke_run
    assert result.returncode == 0
    runs = out / "runs" / "smoke"
    before = _finished_epochs(runs)
    check = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider",
         "-p", "nbval_patience", "--numprocesses=0", *map(str, NOTEBOOKS)],
        capture_output=True, text=True, timeout=3600, cwd=ROOT,
        env={**os.environ, "EMSEG_ROOT": str(out), "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))})
    assert check.returncode == 0, check.stdout[-5000:]
    assert _finished_epochs(runs) == before


def test_transfer_tables_have_every_seed_and_the_thesis(smoke_run):
    figures = smoke_run[0] / "figures"
    table = pd.read_csv(figures / "table5_16_transfer_frozen_layers.csv", index_col=0)
    assert list(table.index) == [f"{n} layers" for n in range(4, 17, 2)]
    assert (table["seeds"] >= 2).all()
    assert table.loc["16 layers", "voi_before thesis"] == pytest.approx(2.96603)
    assert table["voi_before mean"].notna().all()


def test_tables_say_synthetic_and_carry_thesis_numbers(smoke_run):
    figures = smoke_run[0] / "figures"
    assert "SYNTHETIC" in (figures / "table5_5_unet2d_test.md").read_text()
    test = pd.read_csv(figures / "table5_5_unet2d_test.csv", index_col=0)
    assert test.loc["thesis (CREMI sample A)", "voi"] == pytest.approx(0.23812)
    assert test.loc["ours, best.pt"].notna().all()


def test_run_all_rejects_a_bad_profile():
    result = subprocess.run([str(ROOT / "run_all.sh"), "--profile", "huge"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "--profile must be smoke, quick or full" in result.stderr
