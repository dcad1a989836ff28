"""The thesis's published numbers (tables 5.1-5.11), printed beside ours by the notebooks, and
the numbers of its figures and tables, which the notebooks' file names and captions carry.

The values are reference values copied from the thesis text, never used as results. The
threshold grids (tables 5.2-5.4, 5.7-5.9) live in ``resources/thesis_threshold_grids.csv``,
indexed by ``sig_th`` (rows) and ``edge_th - sig_th`` (columns), as in the thesis.
"""

from __future__ import annotations

from importlib.resources import files

import pandas as pd

from emseg_lib.errors import EmsegInputError

GRID_SIG_TH = (0.73, 0.80, 0.83, 0.86, 0.88, 0.90)
GRID_EDGE_DELTA = (0.0, 0.02, 0.04, 0.06, 0.08, 0.10)

#: trainable parameters at the thesis's size (3.1, 3.2.4)
PARAMETER_COUNTS = {"unet2d": 31_036_481, "unet3d": 923_201}

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


#: figure and table numbers of the supervised notebook, per model kind
UNET_NUMBERS = {
    "unet2d": {"curves": {"accuracy": "5.4", "voi": "5.5", "voi_merge": "5.6", "voi_split": "5.7",
                          "arand": "5.8"},
               "examples": {"validation": "5.9", "test": "5.10"},
               "last_epochs_table": "5.1", "test_table": "5.5",
               "grid_tables": {"voi": "5.2", "voi_split": "5.3", "voi_merge": "5.4"}},
    "unet3d": {"curves": {"accuracy": "5.11", "voi": "5.12", "voi_merge": "5.13",
                          "voi_split": "5.14", "arand": "5.15"},
               "examples": {"validation": "5.16", "test": "5.17"},
               "last_epochs_table": "5.6", "test_table": "5.10",
               "grid_tables": {"voi": "5.7", "voi_split": "5.8", "voi_merge": "5.9"}},
}

#: figures 5.18-5.29: the same crop by both networks (input, 2D, 3D, difference), three times
COMPARISON_NUMBERS = (
    {"what": "segmentation", "input": "5.18", "unet2d": "5.19", "unet3d": "5.20",
     "difference": "5.21"},
    {"what": "segmentation", "input": "5.22", "unet2d": "5.23", "unet3d": "5.24",
     "difference": "5.25"},
    {"what": "probability", "input": "5.26", "unet2d": "5.27", "unet3d": "5.28",
     "difference": "5.29"},
)

#: curve colours the thesis's captions name, by curve label (figures 5.46 and 5.47: blue all
#: random, red all pretrained, green 8 random frozen, orange 8 pretrained frozen + 9 random);
#: :func:`~emseg_lib.report.plots.seed_band_curves` draws every figure's curves in them
CURVE_COLOURS = {
    "all random": "tab:blue",
    "all pretrained": "tab:red",
    "8 random frozen": "tab:green",
    "8 pretrained frozen + 9 random": "tab:orange",
}

#: Boundless figures (examples, losses, adversarial and pixel loss) and table per mask
BOUNDLESS_NUMBERS = {
    "right": {"examples": "5.30", "losses": "5.31", "adv_pixel": "5.32", "table": "5.12"},
    "center": {"examples": "5.33", "losses": "5.34", "adv_pixel": "5.35", "table": "5.13"},
    "random": {"examples": "5.36", "losses": "5.37", "adv_pixel": "5.38", "table": "5.14"},
}

#: transfer learning: table, curve figures (number, history column) and the segmentation
#: examples figure of each experiment
TRANSFER_NUMBERS = {
    "masks": {"table": "5.15", "curves": (("5.39", "val_acc"), ("5.40", "val_voi_before"),
                                          ("5.41", "val_voi")), "examples": "5.42"},
    "frozen_layers": {"table": "5.16", "curves": (("5.43", "val_acc"),
                                                  ("5.44", "val_voi_before")),
                      "examples": "5.45"},
    "initialisation": {"table": "5.17", "curves": (("5.46", "val_acc"),
                                                   ("5.47", "val_voi_before")),
                       "examples": "5.48"},
    "hyperparameters": {"table": "5.18", "curves": (("5.49", "val_acc"),
                                                    ("5.50", "val_voi_before"))},
    "early_stopping": {"table": "5.19", "curves": (("5.51", "val_acc"),
                                                   ("5.52", "val_voi_before")),
                       "examples": "5.53"},
}

#: StyleGAN figures
STYLEGAN_NUMBERS = {"losses": "5.1", "samples": "5.2", "real_vs_generated": "5.3"}


def file_stem(prefix: str, number: str) -> str:
    """File-name stem of a thesis figure or table: ``file_stem("fig", "5.4") == "fig5_4"``."""
    return f"{prefix}{number.replace('.', '_')}"


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
