"""The thesis's published numbers (tables 5.1-5.11), printed beside ours by the notebooks.

These are reference values copied from the thesis text, never used as results. The threshold
grids (tables 5.2-5.4, 5.7-5.9) live in ``resources/thesis_threshold_grids.csv``, indexed by
``sig_th`` (rows) and ``edge_th - sig_th`` (columns), as in the thesis.
"""

from __future__ import annotations

from importlib.resources import files

import pandas as pd

from emseg_lib.errors import EmsegInputError

GRID_SIG_TH = (0.73, 0.80, 0.83, 0.86, 0.88, 0.90)
GRID_EDGE_DELTA = (0.0, 0.02, 0.04, 0.06, 0.08, 0.10)

#: tables 5.1 / 5.6: means of the last 5 epochs on validation batches (acc in %).
LAST_EPOCHS = {
    "unet2d": {"val_acc_pct": 96.294, "val_voi": 0.23604, "val_arand": 0.06151},
    "unet3d": {"val_acc_pct": 96.324, "val_voi": 0.22834, "val_arand": 0.06094},
}

#: tables 5.5 / 5.10 / 5.11: test split (20 x 1250 x 1250), sig_th 0.83, edge_th 0.91.
TEST_RESULTS = {
    "unet2d": {"voi_before": 0.24291, "voi": 0.23812, "voi_split": 0.18757,
               "voi_merge": 0.05062, "arand": 0.08513},
    "unet3d": {"voi_before": 0.27045, "voi": 0.24607, "voi_split": 0.18770,
               "voi_merge": 0.05837, "arand": 0.09029},
    "cremi_best_submission": {"voi_split": 0.339, "voi_merge": 0.115, "arand": 0.108},
}


def threshold_grid(model: str, metric: str) -> pd.DataFrame:
    """Thesis grid (tables 5.2-5.4 for ``unet2d``, 5.7-5.9 for ``unet3d``).

    Args:
        model: ``"unet2d"`` or ``"unet3d"``.
        metric: ``"voi"``, ``"voi_split"`` (over-segmentation) or ``"voi_merge"``
            (under-segmentation).

    Returns:
        Rows ``sig_th``, columns ``edge_th - sig_th``.
    """
    source = files("emseg_lib") / "resources" / "thesis_threshold_grids.csv"
    with source.open() as handle:
        grids = pd.read_csv(handle)
    rows = grids[(grids["model"] == model) & (grids["metric"] == metric)]
    if rows.empty:
        raise EmsegInputError(
            f"no thesis grid for model={model!r}, metric={metric!r}; models: unet2d, unet3d; "
            "metrics: voi, voi_split, voi_merge"
        )
    frame = rows.drop(columns=["model", "metric"]).set_index("sig_th")
    frame.columns = [float(c) for c in frame.columns]
    frame.columns.name = "edge_th - sig_th"
    return frame
