"""The supervised baseline of thesis 4.3 / 5.2: train, predict, evaluate, tune thresholds.

Model kinds: the trainable networks of :data:`~emseg_lib.models.MODELS`
(:func:`~emseg_lib.models.trainable_kinds`: ``"unet2d"``, 2D crops and whole-slice inference,
and ``"unet3d"``, 3D crops and tiled inference); their sizes and schedules come from a
:class:`~emseg_lib.profiles.Profile`, through their registry entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from torch import nn

from emseg_lib.data import AugmentConfig, EMCropDataset, EMVolume, SliceSplit, thesis_split
from emseg_lib.data.fingerprint import array_sha256
from emseg_lib.data.splits import check_split_for_model
from emseg_lib.errors import EmsegInputError
from emseg_lib.experiments.identity import experiment_identity
from emseg_lib.inference import predict_volume
from emseg_lib.infra.atomic_files import atomic_path
from emseg_lib.infra.device import seed_everything
from emseg_lib.models import (
    model_entry,
    model_target,
    output_channels,
    trainable_entry,
    trainable_kinds,
)
from emseg_lib.postprocess import postprocess_dims
from emseg_lib.profiles import Profile, UNetSchedule
from emseg_lib.report.thesis_numbers import GRID_EDGE_DELTA, GRID_SIG_TH
from emseg_lib.scoring.evaluation import evaluate_slices, threshold_grid
from emseg_lib.scoring.tuning import (
    checkpoint_entry,
    tune_agglomeration,
    tune_all,
    tuned_before_seed_area,
)
from emseg_lib.train import BEST, Checkpoint, TrainConfig, fit
from emseg_lib.train.checkpoint import weights_sha256
from emseg_lib.train.losses import DEFAULT_AFFINITY_LOSS
from emseg_lib.train.recipes import THESIS_RECIPE, get_recipe

#: folder of a run holding its saved split probabilities
PREDICTIONS = "predictions"
PROBABILITY_KEY = "cell_probability"

#: the networks trained here, by the notebooks and by ``emseg train``
KINDS: tuple[str, ...] = trainable_kinds()


def schedule(kind: str, profile: Profile) -> UNetSchedule:
    """The profile's training schedule for ``kind``."""
    return trainable_entry(kind).schedule(profile)


def make_model(kind: str, profile: Profile, seed: int = 0,
               target: str = "boundaries") -> nn.Module:
    """A freshly (Kaiming-) initialised network of the profile's size, seeded, with the
    output channels of ``target`` (:func:`~emseg_lib.models.output_channels`)."""
    entry = trainable_entry(kind)
    seed_everything(seed)
    return entry.build(profile, output_channels(entry, target))


def make_datasets(kind: str, volume: EMVolume, profile: Profile, seed: int = 0, *,
                  z_split: SliceSplit | None = None, target: str = "boundaries"
                  ) -> tuple[EMCropDataset, EMCropDataset]:
    """Augmented training crops from the train split, fixed crops from the validation split.

    3D validation crops are as deep as the validation split allows (5 slices on CREMI).

    Args:
        z_split: which slices train and validate; default the thesis's split
            (:func:`~emseg_lib.data.thesis_split`).

    Raises:
        EmsegInputError: a 3D network with training or validation slices that are not
            consecutive (its crops would span the gaps).
    """
    entry = trainable_entry(kind)
    plan = entry.schedule(profile)
    z_split = z_split or thesis_split(volume.shape[0])
    check_split_for_model(entry.dims, z_split)
    parts = z_split.apply(volume)
    val_crop = plan.crop
    if entry.dims == 3:
        val_crop = (min(plan.crop[0], parts["val"].shape[0]), *plan.crop[1:])
    kind_of = "affinities" if target == "affinities" else "cells"
    train = EMCropDataset(parts["train"], plan.crop, plan.samples_per_epoch,
                          augment=AugmentConfig(), seed=seed, target=kind_of)
    val = EMCropDataset(parts["val"], val_crop, plan.val_crops, seed=profile.validation_seed,
                        target=kind_of)
    return train, val


@dataclass(frozen=True)
class TrainingRun:
    """A finished (or resumed) training run.

    Attributes:
        model: the network with the weights of ``best.pt`` (lowest validation VOI, CREMI
            protocol), eval mode.
        history: one row per epoch (see :func:`~emseg_lib.train.fit`).
        postprocess: the thresholds learned on the validation split, as stored in ``best.pt``
            (:func:`learn_postprocessing`).
    """

    model: nn.Module
    history: pd.DataFrame
    postprocess: dict[str, Any]


def split_identity(z_split: SliceSplit, n_slices: int) -> dict[str, Any]:
    """``{"split": ...}`` for a run's identity, or ``{}`` for the thesis's split of
    ``n_slices`` (not recorded, so runs made before splits were recorded resume)."""
    try:
        thesis = thesis_split(n_slices).identity()
    except EmsegInputError:  # too few slices for the thesis's split: any split is another
        thesis = None
    return {} if z_split.identity() == thesis else {"split": z_split.identity()}


def train_unet(kind: str, volume: EMVolume, profile: Profile, run_dir: str | Path, *,
               seed: int = 0, device: str | None = None, workers: int | None = None,
               progress: bool = True, z_split: SliceSplit | None = None,
               minutes: float | None = None, tensorboard: bool = True,
               target: str = "boundaries", affinity_loss: str = DEFAULT_AFFINITY_LOSS,
               recipe: str = THESIS_RECIPE) -> TrainingRun:
    """Train (or resume) one network, then learn its post-processing thresholds.

    The run is identified by the volume's fingerprint, ``seed``, the profile's name and
    plan (its ``epochs`` may grow on resume) and the split: resuming ``run_dir`` with any of
    them changed is refused (:class:`~emseg_lib.EmsegInputError`).

    Args:
        workers: processes for the threshold search (None = every core).
        z_split: which slices train and validate (``emseg train``:
            :func:`~emseg_lib.data.labelled_split`); default the thesis's split, as the
            notebooks use. A split other than the thesis's is recorded in the run's identity
            under ``"split"`` (the thesis's is not, so runs made before splits were recorded
            resume).
        minutes: a time budget for the epochs (:attr:`~emseg_lib.train.TrainConfig.minutes`;
            ``None``: the plan's epochs alone). With ``minutes`` the plan's ``epochs`` may be
            ``None`` (no limit but the budget). Not part of the identity: a resumed run gets
            the budget afresh.
        tensorboard: write TensorBoard event files to ``run_dir/tensorboard``
            (:attr:`~emseg_lib.train.TrainConfig.tensorboard`).
        target: ``"boundaries"`` (the thesis's) or ``"affinities"`` (nearest-neighbour
            affinities, agglomerated by waterz or the mutex watershed; part of the run's
            identity).
        affinity_loss: an affinity network's loss
            (:attr:`~emseg_lib.train.TrainConfig.affinity_loss`).
        recipe: a key of :data:`~emseg_lib.train.recipes.RECIPES`: Adam's step and the
            boundary loss (default the thesis's, as the notebooks use; ``emseg train`` passes
            its own; part of the run's identity).

    Raises:
        EmsegInputError: see :func:`fit`.
        TrainingInterrupted: Ctrl-C, after the last finished epoch was saved.
    """
    plan = schedule(kind, profile)
    z_split = z_split or thesis_split(volume.shape[0])
    identity = experiment_identity(volume, profile, seed, plan, resumable=("epochs",),
                                   **split_identity(z_split, volume.shape[0]))
    model = make_model(kind, profile, seed, target)
    train, val = make_datasets(kind, volume, profile, seed, z_split=z_split, target=target)
    config = TrainConfig(epochs=plan.epochs, batch_size=plan.batch_size, device=device,
                         num_workers=profile.num_workers, minutes=minutes,
                         tensorboard=tensorboard, target=target,
                         affinity_loss=affinity_loss, **get_recipe(recipe).config_fields())
    history = fit(model, train, val, config, run_dir, progress=progress,
                  run_identity=identity)
    best = Checkpoint.read(Path(run_dir) / BEST)
    postprocess = learn_postprocessing(best, volume, profile, device=device, workers=workers,
                                       z_split=z_split)
    return TrainingRun(best.model(), history, postprocess)


def learn_postprocessing(checkpoint: str | Path | Checkpoint, volume: EMVolume,
                         profile: Profile, *, device: str | None = None,
                         workers: int | None = None, z_split: SliceSplit | None = None
                         ) -> dict[str, Any]:
    """Tune every post-processing method on the validation split and store the result.

    ``z_split`` says which slices validate (default the thesis's split).

    The checkpoint's network predicts the whole validation split; each method's grid is
    scored by CREMI-protocol VOI (:func:`~emseg_lib.scoring.tuning.tune_all`), per slice for 2D
    networks and per volume for 3D ones (per slice on anisotropic stacks, as ``emseg
    segment`` post-processes them: :func:`~emseg_lib.postprocess.postprocess_dims`); the
    result goes into the checkpoint under ``"postprocess"``. A checkpoint already tuned at its
    epoch is not tuned again (unless tuned before the seeded method's seed size was learned).

    Args:
        checkpoint: the file, or the :class:`~emseg_lib.train.Checkpoint` already read.

    Returns:
        The stored entry (:func:`~emseg_lib.scoring.tuning.checkpoint_entry`).
    """
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = Checkpoint.read(checkpoint)
    stored = checkpoint.state.get("postprocess", {})
    if stored.get("epoch") == checkpoint.epoch and not tuned_before_seed_area(stored):
        return stored
    model = checkpoint.model()
    val = predict_split(model, volume, "val", profile, device=device, progress=False,
                        cache_dir=checkpoint.path.parent, z_split=z_split)
    if model_target(model) == "affinities":  # agglomerated as one volume
        entry = checkpoint_entry(tune_agglomeration(val.prob, val.gt, pixel_nm=val.pixel_nm),
                                 dims=3, epoch=checkpoint.epoch, method="waterz")
    else:
        dims, _ = postprocess_dims(model_entry(model).dims, volume.resolution)
        results = tune_all(val.prob, val.gt, pixel_nm=val.pixel_nm, dims=dims,
                           resolution=volume.resolution, workers=workers)
        entry = checkpoint_entry(results, dims=dims, epoch=checkpoint.epoch)
    checkpoint.annotate("postprocess", entry)
    return entry


def describe_postprocess(entry: dict[str, Any]) -> str:
    """One line per method: the learned thresholds and their validation VOI."""
    lines = []
    for name, thresholds in entry["thresholds"].items():
        values = ", ".join(f"{k} {v:g}" for k, v in thresholds.items())
        default = " (default method)" if name == entry["method"] else ""
        lines.append(f"{name}{default}: {values} -> validation VOI "
                     f"{entry['val_scores'][name]['voi']:.4f}, ARAND "
                     f"{entry['val_scores'][name]['arand']:.4f} (CREMI protocol)")
    return "\n".join(lines)


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
             edge_deltas: Sequence[float] = GRID_EDGE_DELTA, workers: int | None = None
             ) -> pd.DataFrame:
        """Per-slice long table over the threshold grid (:func:`threshold_grid`; ``workers``
        processes, default every core; the table does not depend on their number)."""
        return threshold_grid(self.prob, self.gt, sig_ths, edge_deltas, pixel_nm=self.pixel_nm,
                              workers=workers)


def predict_split(model: nn.Module, volume: EMVolume, split: str, profile: Profile, *,
                  device: str | None = None, progress: bool = True,
                  cache_dir: str | Path | None = None, z_split: SliceSplit | None = None
                  ) -> SplitPrediction:
    """Predict the whole ``"train"``, ``"val"`` or ``"test"`` split of ``volume`` (its first
    ``profile.predict_slices`` slices in a dry run).

    Args:
        z_split: which slices form the splits; default the thesis's split.
        cache_dir: a run folder; the probabilities are saved once in its ``predictions/``
            (keyed by the weights, the split's raw data and the tiling) and read back by every
            later call, so notebooks and threshold grids do not predict a split again.
    """
    part = (z_split or thesis_split(volume.shape[0])).part(volume, split)
    if profile.predict_slices:
        part = part.subvolume(slice(0, profile.predict_slices))
    if cache_dir is None:
        prob = predict_volume(model, part.raw, profile.tiling_3d, device=device,
                              progress=progress)
    else:
        key = hashlib.sha256(json.dumps([
            weights_sha256({"model": model.state_dict()}), array_sha256(part.raw),
            dataclasses.asdict(profile.tiling_3d)]).encode()).hexdigest()[:16]
        path = Path(cache_dir) / PREDICTIONS / f"{split}_{key}.h5"
        prob = _read_cached(path, part.shape)
        if prob is None:
            prob = predict_volume(model, part.raw, profile.tiling_3d, device=device,
                                  progress=progress)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
                handle.create_dataset(PROBABILITY_KEY, data=prob, compression="gzip")
    return SplitPrediction(prob, part.labels.astype(np.int64), volume.resolution[1])


def _read_cached(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """Saved probabilities of ``shape``, or None when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as handle:
            prob = handle[PROBABILITY_KEY][()]
    except (OSError, KeyError):
        return None
    usable = prob.shape[-3:] == tuple(shape) and np.all(np.isfinite(prob))  # (C,) Z, Y, X
    return prob if usable else None


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
