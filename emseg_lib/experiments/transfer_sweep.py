"""The transfer-learning sweep of thesis 4.4.2 / 4.5 (tables 5.15-5.19), with several seeds.

Every configuration is a :class:`TransferSpec`; :data:`EXPERIMENTS` groups them as the thesis's
tables do. :func:`run_sweep` trains each distinct configuration once per seed (a
configuration shared by two tables is trained once) with the shared supervised loop, and
:func:`summary_table` reports mean and standard deviation over seeds beside the thesis's
single-seed numbers, with a Welch t-test against each table's first column to say whether a
difference exceeds seed noise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from emseg_lib.data import AugmentConfig, EMCropDataset, EMVolume, split_slices
from emseg_lib.errors import EmsegInputError
from emseg_lib.experiments.gans import GENERATOR_WEIGHTS
from emseg_lib.experiments.identity import experiment_identity
from emseg_lib.inference import predict_volume
from emseg_lib.infra.device import seed_everything
from emseg_lib.infra.engine import ENGINE_FOLDER, Engine, VolumeFile, for_jobs, job_volume, run_jobs
from emseg_lib.infra.progress import progress_bar
from emseg_lib.models.pretrained import BoundlessSegmenter, freeze_first, load_pretrained
from emseg_lib.postprocess import THESIS_EDGE_TH, THESIS_SIG_TH, watershed_postprocess
from emseg_lib.profiles import Profile
from emseg_lib.report.thesis_numbers import TRANSFER
from emseg_lib.train import BEST, TrainConfig, fit, model_from_checkpoint
from emseg_lib.train.boundless import BoundlessConfig

#: optimiser settings over :class:`TrainConfig`'s (Lee et al.'s segmentation ones): the
#: image-extension GAN's generator settings for the "boundless" configurations
HYPERPARAMETERS = {
    "segmentation": {},
    "boundless": {"lr": BoundlessConfig.lr_g, "betas": BoundlessConfig.betas},
}


@dataclass(frozen=True)
class TransferSpec:
    """One transfer-learning configuration.

    Attributes:
        pretrained_mask: which Boundless generator to load from (``right``, ``center``,
            ``random``), or None for random initialisation.
        n_pretrained: how many of the 17 layers are loaded from it.
        n_frozen: how many of the first layers never update.
        hyper: ``"segmentation"`` or ``"boundless"`` optimiser settings.
        epoch_scale: multiple of the profile's epochs.
        reduced: train on a reduced dataset and stop early (table 5.19).
    """

    pretrained_mask: str | None
    n_pretrained: int
    n_frozen: int
    hyper: Literal["segmentation", "boundless"] = "segmentation"
    epoch_scale: float = 1.0
    reduced: bool = False

    @property
    def name(self) -> str:
        """A run-directory name unique to the configuration."""
        source = f"pre-{self.pretrained_mask}-{self.n_pretrained}" if self.pretrained_mask \
            else "random"
        extra = f"_x{self.epoch_scale:g}" if self.epoch_scale != 1 else ""
        return (f"{source}_frozen-{self.n_frozen}_{self.hyper}{extra}"
                f"{'_reduced' if self.reduced else ''}")


_DEFAULT = TransferSpec("right", 8, 8)

EXPERIMENTS: dict[str, dict[str, TransferSpec]] = {
    "masks": {"right mask": _DEFAULT, "center mask": TransferSpec("center", 8, 8),
              "random mask": TransferSpec("random", 8, 8)},
    "frozen_layers": {f"{n} layers": TransferSpec("right", n, n) for n in range(4, 17, 2)},
    "initialisation": {
        "all random": TransferSpec(None, 0, 0),
        "all pretrained": TransferSpec("right", 17, 0),
        "8 random frozen": TransferSpec(None, 0, 8),
        "8 pretrained frozen + 9 random": _DEFAULT,
    },
    "hyperparameters": {
        "segmentation hyp.": _DEFAULT,
        "Boundless hyp.": TransferSpec("right", 8, 8, hyper="boundless"),
        "Boundless hyp., 2x epochs": TransferSpec("right", 8, 8, hyper="boundless",
                                                  epoch_scale=2.0),
    },
    "early_stopping": {
        "8 pretrained + 9 random": TransferSpec("right", 8, 8, reduced=True),
        "random init": TransferSpec(None, 0, 0, reduced=True),
    },
}


def build_segmenter(spec: TransferSpec, width: int, weights_dir: str | Path, seed: int
                    ) -> BoundlessSegmenter:
    """A seeded segmenter with ``spec``'s pretrained and frozen layers."""
    seed_everything(seed)
    model = BoundlessSegmenter(width=width)
    if spec.pretrained_mask is not None and spec.n_pretrained > 0:
        path = Path(weights_dir) / f"boundless_{spec.pretrained_mask}" / GENERATOR_WEIGHTS
        load_pretrained(model, path, spec.n_pretrained)
    freeze_first(model, spec.n_frozen)
    return model


def _datasets(spec: TransferSpec, volume: EMVolume, profile: Profile, seed: int
              ) -> tuple[EMCropDataset, EMCropDataset]:
    plan = profile.transfer
    parts = split_slices(volume.shape[0]).apply(volume)
    train, samples = parts["train"], plan.samples_per_epoch
    if spec.reduced:
        n_slices = max(1, round(train.shape[0] * plan.reduced_fraction))
        train = train.subvolume(slice(0, n_slices))
        samples = max(plan.batch_size, round(samples * plan.reduced_fraction))
    crop = (plan.crop, plan.crop)
    return (EMCropDataset(train, crop, samples, augment=AugmentConfig(), seed=seed),
            EMCropDataset(parts["val"], crop, plan.val_crops, seed=profile.validation_seed))


def run_transfer(spec: TransferSpec, volume: EMVolume, profile: Profile, run_dir: str | Path,
                 weights_dir: str | Path, *, seed: int, device: str | None = None,
                 progress: bool = False) -> pd.DataFrame:
    """Train one configuration for one seed (resuming if ``run_dir`` has a checkpoint).

    The run is identified by the volume's fingerprint, ``seed``, the profile and ``spec``.
    """
    plan = profile.transfer
    identity = experiment_identity(volume, profile, seed, plan,
                                   resumable=("epochs", "early_stop_epochs", "seeds"),
                                   spec=dataclasses.asdict(spec))
    model = build_segmenter(spec, profile.boundless.width, weights_dir, seed)
    train, val = _datasets(spec, volume, profile, seed)
    epochs = plan.early_stop_epochs if spec.reduced else round(plan.epochs * spec.epoch_scale)
    config = TrainConfig(epochs=epochs, batch_size=plan.batch_size, max_lr_reductions=0,
                         device=device, num_workers=profile.num_workers,
                         **HYPERPARAMETERS[spec.hyper])
    return fit(model, train, val, config, run_dir, progress=progress, run_identity=identity)


def _transfer_job(spec: TransferSpec, volume: EMVolume | VolumeFile, profile: Profile,
                  run_dir: Path, weights_dir: str | Path, seed: int, device: str | None
                  ) -> pd.DataFrame:
    """One run of the sweep, as a job of :func:`~emseg_lib.infra.engine.run_jobs`."""
    return run_transfer(spec, job_volume(volume), profile, run_dir, weights_dir, seed=seed,
                        device=device)


def run_sweep(volume: EMVolume, profile: Profile, runs_dir: str | Path,
              weights_dir: str | Path, *, device: str | None = None, progress: bool = True,
              engine: str | Engine | None = None
              ) -> tuple[pd.DataFrame, dict[tuple[str, int], pd.DataFrame]]:
    """Train every distinct configuration of :data:`EXPERIMENTS` for every profile seed.

    Args:
        engine: where the runs go (:class:`~emseg_lib.infra.engine.Engine` or its string, e.g.
            ``"local:2"``; default inline, one after the other here). Each run resumes from
            ``runs_dir/<configuration>/seed<seed>``, so the results are the same on any engine.

    Returns:
        ``results``: one row per (experiment, label, seed) with the last-5-epoch means
        ``val_acc_pct``, ``voi_before``, ``voi``, ``cremi_score``; and ``histories``:
        ``{(spec name, seed): history}``.
    """
    engine = Engine.parse(engine)
    specs = {spec.name: spec for table in EXPERIMENTS.values() for spec in table.values()}
    seeds = profile.transfer.seeds
    keys = [(name, seed) for name in specs for seed in seeds]
    if engine.inline:
        histories = {}
        for name, seed in progress_bar(keys, desc="transfer runs", disable=not progress):
            histories[(name, seed)] = run_transfer(
                specs[name], volume, profile, Path(runs_dir) / name / f"seed{seed}",
                weights_dir, seed=seed, device=device)
    else:
        shared = for_jobs(volume, engine, Path(runs_dir) / ENGINE_FOLDER)
        calls = [(specs[name], shared, profile, Path(runs_dir) / name / f"seed{seed}",
                  weights_dir, seed, device) for name, seed in keys]
        histories = dict(zip(keys, run_jobs(engine, _transfer_job, calls,
                                            Path(runs_dir) / ENGINE_FOLDER), strict=True))
    rows = []
    for experiment, table in EXPERIMENTS.items():
        for label, spec in table.items():
            for seed in seeds:
                tail = histories[(spec.name, seed)].tail(5)
                rows.append({"experiment": experiment, "label": label, "seed": seed,
                             "run": spec.name,
                             "val_acc_pct": 100 * tail["val_acc"].mean(),
                             "voi_before": tail["val_voi_before"].mean(),
                             "voi": tail["val_voi"].mean(),
                             "cremi_score": tail["val_cremi_score"].mean()})
    return pd.DataFrame(rows), histories


def summary_table(results: pd.DataFrame, experiment: str,
                  metrics: tuple[str, ...] = ("val_acc_pct", "voi_before", "voi")
                  ) -> pd.DataFrame:
    """Mean, std and thesis value per label; p-value of a Welch t-test vs the first label.

    Columns per metric: ``<metric> mean``, ``<metric> std``, ``<metric> thesis``,
    ``<metric> p vs <first label>`` (NaN for the first label itself).
    """
    if experiment not in EXPERIMENTS:
        raise EmsegInputError(f"experiment must be one of {sorted(EXPERIMENTS)}, "
                              f"got {experiment!r}")
    rows = results[results["experiment"] == experiment]
    labels = list(EXPERIMENTS[experiment])
    reference = rows[rows["label"] == labels[0]]
    thesis = TRANSFER[experiment]
    table = {}
    for label in labels:
        ours = rows[rows["label"] == label]
        entry = {"seeds": len(ours)}
        for metric in metrics:
            entry[f"{metric} mean"] = ours[metric].mean()
            entry[f"{metric} std"] = ours[metric].std(ddof=1) if len(ours) > 1 else np.nan
            entry[f"{metric} thesis"] = thesis[label].get(metric, np.nan)
            entry[f"{metric} p vs first"] = (
                np.nan if label == labels[0] or len(ours) < 2
                else stats.ttest_ind(ours[metric], reference[metric], equal_var=False).pvalue)
        table[label] = entry
    return pd.DataFrame(table).T


def seed_noise_verdicts(table: pd.DataFrame, metric: str = "voi_before", alpha: float = 0.05
                        ) -> list[str]:
    """One sentence per label of a :func:`summary_table`: does it differ from the first label
    by more than seed noise (Welch t-test at level ``alpha``)?"""
    first = table.index[0]
    sentences = []
    for label in table.index[1:]:
        p = table.loc[label, f"{metric} p vs first"]
        delta = table.loc[label, f"{metric} mean"] - table.loc[first, f"{metric} mean"]
        if pd.isna(p):
            verdict = "cannot be tested (fewer than 2 seeds)"
        elif p < alpha:
            verdict = f"differs beyond seed noise (p = {p:.3g})"
        else:
            verdict = f"within seed noise (p = {p:.3g})"
        sentences.append(f"{label} vs {first}: {metric} {delta:+.4f}, {verdict}")
    return sentences


def runs_by_label(experiment: str, histories: dict[tuple[str, int], pd.DataFrame]
                  ) -> dict[str, list[pd.DataFrame]]:
    """``{label: [history per seed]}`` for one experiment of :data:`EXPERIMENTS`."""
    return {label: [h for (name, _), h in histories.items() if name == spec.name]
            for label, spec in EXPERIMENTS[experiment].items()}


def example_segmentations(experiment: str, volume: EMVolume, profile: Profile,
                          runs_dir: str | Path, *, seed: int, device: str | None = None
                          ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The first validation slice and its segmentation by every configuration of
    ``experiment`` (``best.pt`` of seed ``seed``; the thesis method at its thresholds).

    Returns:
        The raw slice ``(Y, X)`` and ``{label: labels (Y, X)}`` (figures 5.42, 5.45, 5.48,
        5.53).
    """
    z = split_slices(volume.shape[0]).val.start
    raw = volume.raw[z:z + 1]
    segmentations = {}
    for label, spec in EXPERIMENTS[experiment].items():
        model = model_from_checkpoint(Path(runs_dir) / spec.name / f"seed{seed}" / BEST)
        prob = predict_volume(model, raw, profile.tiling_3d, device=device, progress=False)[0]
        segmentations[label] = watershed_postprocess(prob, THESIS_SIG_TH, THESIS_EDGE_TH)
    return raw[0], segmentations
