"""The notebooks, executed end to end by run_all.sh in the smoke profile.

Checks that every notebook runs (papermill, parameters injected), that every figure and table
the notebooks promise is written, that figures from synthetic data say so, and that the
notebooks are committed without outputs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

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


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_and_parameterised(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code)
    parameters = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(parameters) == 1 and "profile = " in "".join(parameters[0]["source"])


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    result = subprocess.run(
        [str(ROOT / "run_all.sh"), "--profile", "smoke", "--figures", str(out / "figures"),
         "--out", str(out / "notebooks"), "--runs", str(out / "runs"),
         "--data", str(out / "no_cremi_here.hdf")],
        capture_output=True, text=True, timeout=900,
    )
    return out, result


def test_run_all_smoke_writes_every_figure_and_table(smoke_run):
    out, result = smoke_run
    assert result.returncode == 0, result.stderr[-3000:]
    figures = out / "figures"
    missing = [name for name in EXPECTED
               if not (figures / f"{name}.png").exists()
               and not (figures / f"{name}.csv").exists()]
    assert not missing
    for name in EXPECTED:
        if name.startswith("table"):
            assert (figures / f"{name}.md").exists(), name
    assert len(list((out / "notebooks").glob("*.ipynb"))) == len(NOTEBOOKS)
    for mask in ("right", "center", "random"):
        assert (out / "runs" / f"boundless_{mask}" / "generator.pt").exists()
    assert "SYNTHETIC" in result.stdout + result.stderr


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
    assert test.loc["ours (trained)"].notna().all()


def test_run_all_rejects_a_bad_profile():
    result = subprocess.run([str(ROOT / "run_all.sh"), "--profile", "huge"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "--profile must be smoke, quick or full" in result.stderr
