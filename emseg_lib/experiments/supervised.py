"""The supervised baseline of thesis 4.3 / 5.2: train, predict, evaluate, tune thresholds.

Model kinds: ``"unet2d"`` (2D crops, whole-slice inference) and ``"unet3d"`` (3D crops, tiled
inference). Sizes come from a :class:`~emseg_lib.profiles.Profile`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from torch import nn

from emseg_lib.data import AugmentConfig, EMCropDataset, EMVolume, split_slices
from emseg_lib.device import seed_everything
from emseg_lib.errors import EmsegInputError
from emseg_lib.evaluation import evaluate_slices, threshold_grid
from emseg_lib.experiments.identity import experiment_identity
from emseg_lib.inference import predict_slices, predict_tiled
from emseg_lib.models import UNet2D, UNet3D
from emseg_lib.profiles import Profile, UNetSchedule
from emseg_lib.thesis_numbers import GRID_EDGE_DELTA, GRID_SIG_TH
from emseg_lib.train import TrainConfig, fit

ModelKind = Literal["unet2d", "unet3d"]
KINDS = ("unet2d", "unet3d")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise EmsegInputError(f"model kind must be one of {KINDS}, got {kind!r}")


def schedule(kind: ModelKind, profile: Profile) -> UNetSchedule:
    """The profile's training schedule for ``kind``."""
    _check_kind(kind)
    return profile.unet2d if kind == "unet2d" else profile.unet3d


def make_model(kind: ModelKind, profile: Profile, seed: int = 0) -> nn.Module:
    """A freshly (Kaiming-) initialised network of the profile's size, seeded."""
    _check_kind(kind)
    seed_everything(seed)
    if kind == "unet2d":
        return UNet2D(base_width=profile.unet2d_width, depth=profile.unet2d_depth)
    return UNet3D(filters=profile.unet3d_filters)


def make_datasets(kind: ModelKind, volume: EMVolume, profile: Profile, seed: int = 0
                  ) -> tuple[EMCropDataset, EMCropDataset]:
    """Augmented training crops from the train split, fixed crops from the validation split.

    3D validation crops are as deep as the validation split allows (5 slices on CREMI).
    """
    plan = schedule(kind, profile)
    parts = split_slices(volume.shape[0]).apply(volume)
    val_crop = plan.crop
    if kind == "unet3d":
        val_crop = (min(plan.crop[0], parts["val"].shape[0]), *plan.crop[1:])
    train = EMCropDataset(parts["train"], plan.crop, plan.samples_per_epoch,
                          augment=AugmentConfig(), seed=seed)
    val = EMCropDataset(parts["val"], val_crop, plan.val_crops, seed=seed + 10_000)
    return train, val


def train_unet(kind: ModelKind, volume: EMVolume, profile: Profile, run_dir: str | Path, *,
               seed: int = 0, device: str | None = None, progress: bool = True
               ) -> tuple[nn.Module, pd.DataFrame]:
    """Train (or resume) one network; returns it and its history (see :func:`fit`).

    The run is identified by the volume's fingerprint, ``seed``, the profile's name and
    plan (its ``epochs`` may grow on resume): resuming ``run_dir`` with any of them changed
    is refused (:class:`~emseg_lib.EmsegInputError`).

    Raises:
        EmsegInputError: see :func:`fit`.
        TrainingInterrupted: Ctrl-C, after the last finished epoch was saved.
    """
    plan = schedule(kind, profile)
    identity = experiment_identity(volume, profile, seed, plan, resumable=("epochs",))
    model = make_model(kind, profile, seed)
    train, val = make_datasets(kind, volume, profile, seed)
    config = TrainConfig(epochs=plan.epochs, batch_size=plan.batch_size, device=device,
                         pixel_nm=volume.resolution[1])
    history = fit(model, train, val, config, run_dir, progress=progress,
                  run_identity=identity)
    return model, history


def predict(kind: ModelKind, model: nn.Module, raw: np.ndarray, profile: Profile, *,
            device: str | None = None, progress: bool = True) -> np.ndarray:
    """Cell probabilities ``(Z, Y, X)`` for a whole stack: slices (2D) or tiles (3D)."""
    _check_kind(kind)
    if kind == "unet2d":
        return predict_slices(model, raw, multiple=2 ** (profile.unet2d_depth - 1),
                              device=device, progress=progress)
    return predict_tiled(model, raw, profile.tile_3d, profile.overlap_3d, profile.halo_3d,
                         device=device, progress=progress)


@dataclass(frozen=True)
class SplitPrediction:
    """A network's probabilities on one split, with the ground truth."""

    prob: np.ndarray
    gt: np.ndarray
    pixel_nm: float

    def scores(self, sig_th: float, edge_th: float) -> dict[str, float]:
        """Mean per-slice scores at one threshold pair (:func:`evaluate_slices`)."""
        return evaluate_slices(self.prob, self.gt, sig_th, edge_th, pixel_nm=self.pixel_nm)

    def grid(self, sig_ths: Sequence[float] = GRID_SIG_TH,
             edge_deltas: Sequence[float] = GRID_EDGE_DELTA) -> pd.DataFrame:
        """Per-slice long table over the threshold grid (:func:`threshold_grid`)."""
        return threshold_grid(self.prob, self.gt, sig_ths, edge_deltas, pixel_nm=self.pixel_nm)


def predict_split(kind: ModelKind, model: nn.Module, volume: EMVolume, split: str,
                  profile: Profile, *, device: str | None = None, progress: bool = True
                  ) -> SplitPrediction:
    """Predict the whole ``"train"``, ``"val"`` or ``"test"`` split of ``volume``."""
    part = split_slices(volume.shape[0]).apply(volume)[split]
    prob = predict(kind, model, part.raw, profile, device=device, progress=progress)
    return SplitPrediction(prob, part.labels.astype(np.int64), volume.resolution[1])


def grid_tables(grid: pd.DataFrame, metrics: Sequence[str] = ("voi", "voi_split", "voi_merge")
                ) -> dict[str, pd.DataFrame]:
    """Thesis-shaped tables (rows ``sig_th``, columns ``edge_th - sig_th``) of slice means."""
    means = grid.groupby(["sig_th", "edge_delta"]).mean(numeric_only=True)
    tables = {}
    for metric in metrics:
        table = means[metric].unstack("edge_delta")
        table.columns.name = "edge_th - sig_th"
        tables[metric] = table
    return tables


def last_epochs_mean(history: pd.DataFrame, n: int = 5) -> dict[str, float]:
    """Tables 5.1 / 5.6: mean of the last ``n`` epochs (accuracy in %)."""
    tail = history.tail(n)
    return {"val_acc_pct": 100 * tail["val_acc"].mean(), "val_voi": tail["val_voi"].mean(),
            "val_arand": tail["val_arand"].mean()}
