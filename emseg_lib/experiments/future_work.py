"""The thesis's own future work (6.1): fair evaluation and adversarial segmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from emseg_lib.data import AugmentConfig, EMCropDataset, EMVolume, split_slices
from emseg_lib.experiments.identity import experiment_identity
from emseg_lib.experiments.supervised import KINDS, SplitPrediction, predict_split
from emseg_lib.infra.device import seed_everything
from emseg_lib.infra.engine import ENGINE_FOLDER, Engine, VolumeFile, for_jobs, job_volume, run_jobs
from emseg_lib.models import UNet2D
from emseg_lib.models.pair_discriminator import PairDiscriminator
from emseg_lib.postprocess import THESIS_EDGE_TH, THESIS_SIG_TH, label_cells
from emseg_lib.profiles import Profile
from emseg_lib.scoring.evaluation import protocol_scores
from emseg_lib.scoring.metrics import count_merges
from emseg_lib.train import BEST, TrainConfig, fit, model_from_checkpoint
from emseg_lib.train.adversarial import SegmentationAdversary


def fair_comparison(volume: EMVolume, profile: Profile, supervised_runs: str | Path,
                    sig_th: float, edge_th: float, *, device: str | None = None
                    ) -> pd.DataFrame:
    """The 2D/3D test-split comparison (table 5.11) under the thesis, thinned and CREMI
    protocols, from the best checkpoints of notebooks 01 and 02."""
    tables = {}
    for kind in KINDS:
        model = model_from_checkpoint(Path(supervised_runs) / kind / BEST)
        test = predict_split(model, volume, "test", profile, device=device,
                             cache_dir=Path(supervised_runs) / kind,
                             progress=False)
        tables[kind] = protocol_scores(test.prob, test.gt, sig_th, edge_th,
                                       pixel_nm=test.pixel_nm)
    return pd.concat(tables, names=["model", "protocol"])


def open_boundary_scores(prediction: SplitPrediction, sig_th: float) -> dict[str, float]:
    """Open boundaries before watershed: false merges per slice (:func:`count_merges`)."""
    merges = [count_merges(g, label_cells(p, sig_th)) for p, g in
              zip(prediction.prob, prediction.gt, strict=True)]
    return {"merges_per_slice": float(np.mean(merges))}


def _adversarial_run(volume: EMVolume | VolumeFile, profile: Profile, runs_dir: Path,
                     seed: int, training: str, weight: float, sig_th: float, edge_th: float,
                     device: str | None, progress: bool) -> dict[str, float]:
    """One (seed, training) run of :func:`adversarial_comparison` and its scores."""
    volume = job_volume(volume)
    plan = profile.transfer
    parts = split_slices(volume.shape[0]).apply(volume)
    crop = (plan.crop // 16 * 16,) * 2  # UNet2D needs multiples of 16
    seed_everything(seed)
    model = UNet2D(base_width=profile.unet2d_width, depth=profile.unet2d_depth)
    adversary = (SegmentationAdversary(PairDiscriminator(), weight=weight)
                 if training != "BCE" else None)
    train = EMCropDataset(parts["train"], crop, plan.samples_per_epoch,
                          augment=AugmentConfig(), seed=seed)
    val = EMCropDataset(parts["val"], crop, plan.val_crops, seed=profile.validation_seed)
    config = TrainConfig(epochs=plan.epochs, batch_size=plan.batch_size,
                         device=device, num_workers=profile.num_workers)
    name = "adversarial" if adversary else "bce"
    identity = experiment_identity(volume, profile, seed, plan,
                                   resumable=("epochs", "early_stop_epochs", "seeds"))
    fit(model, train, val, config, Path(runs_dir) / name / f"seed{seed}",
        progress=progress, adversary=adversary, run_identity=identity)
    prediction = predict_split(model, volume, "val", profile, device=device, progress=False)
    scores = prediction.scores(sig_th, edge_th)
    return {"training": training, "seed": seed, **open_boundary_scores(prediction, sig_th),
            **{k: scores[k] for k in ("voi_merge_before", "voi", "voi_merge", "cremi_score")}}


def adversarial_comparison(volume: EMVolume, profile: Profile, runs_dir: str | Path, *,
                           weight: float = 0.01, sig_th: float = THESIS_SIG_TH,
                           edge_th: float = THESIS_EDGE_TH,
                           device: str | None = None, progress: bool = True,
                           engine: str | Engine | None = None) -> pd.DataFrame:
    """UNet2D trained with BCE alone vs BCE + adversarial term, same seeds and schedule.

    Uses the transfer sweep's schedule (``profile.transfer``: short runs on small crops) and
    the profile's UNet2D width. Scores the whole validation split. ``engine``: where the
    (seed, training) runs go (:class:`~emseg_lib.infra.engine.Engine` or its string; default
    inline); each resumes from its own folder, so the table is the same on any engine.

    Returns:
        One row per (training, seed): ``merges_per_slice`` (open boundaries before
        watershed), ``voi_merge_before``, ``voi``, ``voi_merge``, ``cremi_score``.
    """
    engine = Engine.parse(engine)
    folder = Path(runs_dir) / ENGINE_FOLDER
    shared = for_jobs(volume, engine, folder)
    calls = [(shared, profile, Path(runs_dir), seed, training, weight, sig_th, edge_th, device,
              progress and engine.inline)
             for seed in profile.transfer.seeds for training in ("BCE", "BCE + adversarial")]
    return pd.DataFrame(run_jobs(engine, _adversarial_run, calls, folder))


def compare_trainings(results: pd.DataFrame,
                      metrics: tuple[str, ...] = ("merges_per_slice", "voi_merge_before", "voi",
                                                  "cremi_score")) -> pd.DataFrame:
    """BCE vs BCE + adversarial per metric: means over seeds and the Welch t-test p-value."""
    groups = {training: rows for training, rows in results.groupby("training")}
    plain, adversarial = groups["BCE"], groups["BCE + adversarial"]
    table = {}
    for metric in metrics:
        p = (stats.ttest_ind(adversarial[metric], plain[metric], equal_var=False).pvalue
             if min(len(plain), len(adversarial)) > 1 else np.nan)
        table[metric] = {"BCE mean": plain[metric].mean(),
                         "BCE + adversarial mean": adversarial[metric].mean(),
                         "difference": adversarial[metric].mean() - plain[metric].mean(),
                         "Welch p": p}
    return pd.DataFrame(table).T
