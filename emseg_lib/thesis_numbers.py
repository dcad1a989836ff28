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

#: tables 5.12-5.14: Boundless losses after 150 epochs (D hinge loss, G = L1 + 0.01 adv,
#: adversarial -D(x_hat), pixel-wise L1), per mask kind.
BOUNDLESS_FINAL_LOSSES = {
    "right": {"train": {"d_loss": 1.97093, "g_loss": 0.06830, "adv_loss": 0.48965,
                        "pixel_loss": 0.06341},
              "val": {"d_loss": 1.96588, "g_loss": 0.05822, "adv_loss": 0.64427,
                      "pixel_loss": 0.05177}},
    "center": {"train": {"d_loss": 1.24309, "g_loss": 0.09067, "adv_loss": 0.73436,
                         "pixel_loss": 0.08332},
               "val": {"d_loss": 0.96793, "g_loss": 0.07540, "adv_loss": 0.73706,
                       "pixel_loss": 0.06803}},
    "random": {"train": {"d_loss": 1.81831, "g_loss": 0.05792, "adv_loss": -0.03082,
                         "pixel_loss": 0.05823},
               "val": {"d_loss": 2.08587, "g_loss": 0.04681, "adv_loss": 0.05492,
                       "pixel_loss": 0.04627}},
}

#: tables 5.15-5.19: transfer learning, means of the last 5 epochs on validation batches.
#: ``voi_before`` is the thesis's "VOI" column, ``voi`` its "VOI after watershed".
TRANSFER = {
    "masks": {
        "right mask": {"val_acc_pct": 96.19, "voi_before": 0.25597, "voi": 0.22354},
        "center mask": {"val_acc_pct": 96.1, "voi_before": 0.26661, "voi": 0.22644},
        "random mask": {"val_acc_pct": 96.13, "voi_before": 0.26897, "voi": 0.20149},
    },
    "frozen_layers": {
        f"{n} layers": {"val_acc_pct": acc, "voi_before": voi}
        for n, acc, voi in [(4, 96.26, 0.28572), (6, 96.15, 0.27405), (8, 96.19, 0.28573),
                            (10, 96.19, 0.35764), (12, 95.768, 0.49225), (14, 95.13, 0.91028),
                            (16, 90.96, 2.96603)]
    },
    "initialisation": {
        "all random": {"val_acc_pct": 96.2, "voi_before": 0.248},
        "all pretrained": {"val_acc_pct": 96.22, "voi_before": 0.26866},
        "8 random frozen": {"val_acc_pct": 95.86, "voi_before": 0.49214},
        "8 pretrained frozen + 9 random": {"val_acc_pct": 96.14, "voi_before": 0.36446},
    },
    "hyperparameters": {
        "segmentation hyp.": {"val_acc_pct": 96.06, "voi_before": 0.25715},
        "Boundless hyp.": {"val_acc_pct": 94.93, "voi_before": 0.70453},
        "Boundless hyp., 2x epochs": {"val_acc_pct": 95.42, "voi_before": 0.59491},
    },
    "early_stopping": {
        "8 pretrained + 9 random": {"val_acc_pct": 80.09, "voi_before": 0.681},
        "random init": {"val_acc_pct": 86.12, "voi_before": 0.63},
    },
}
