"""The GAN experiments of thesis 4.2 (StyleGAN) and 4.4.1 (Boundless image extension)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from emseg_lib.data import EMVolume, split_slices
from emseg_lib.data.gan_datasets import GanCropDataset
from emseg_lib.data.masks import MASK_KINDS, MaskKind
from emseg_lib.experiments.identity import experiment_identity
from emseg_lib.infra.device import seed_everything
from emseg_lib.infra.engine import ENGINE_FOLDER, Engine, VolumeFile, for_jobs, job_volume, run_jobs
from emseg_lib.models import model_spec
from emseg_lib.models.boundless import BoundlessDiscriminator, BoundlessGenerator, composite
from emseg_lib.models.stylegan import StyleDiscriminator, StyleGenerator
from emseg_lib.profiles import Profile
from emseg_lib.report.thesis_numbers import BOUNDLESS_FINAL_LOSSES
from emseg_lib.scoring.realism import sliced_wasserstein
from emseg_lib.train.boundless import BoundlessConfig, train_boundless
from emseg_lib.train.checkpoint import save_checkpoint
from emseg_lib.train.stylegan import StyleGANConfig, train_stylegan

LOSS_COLUMNS = ("d_loss", "g_loss", "adv_loss", "pixel_loss")
#: file in a Boundless run directory holding the trained generator for transfer learning
GENERATOR_WEIGHTS = "generator.pt"


def run_stylegan(volume: EMVolume, profile: Profile, run_dir: str | Path, *, seed: int = 0,
                 device: str | None = None, progress: bool = True
                 ) -> tuple[StyleGenerator, pd.DataFrame]:
    """Train (or resume) the StyleGAN on the training split; returns the EMA generator.

    The run is identified by the volume's fingerprint, ``seed`` and the profile (its
    schedule may be extended on resume); see :func:`train_stylegan`.
    """
    plan = profile.stylegan
    identity = experiment_identity(volume, profile, seed, plan,
                                   resumable=("schedule", "sample_every", "realism_crops"))
    train = split_slices(volume.shape[0]).apply(volume)["train"]
    dataset = GanCropDataset(train.raw, plan.crop, plan.samples_per_epoch, seed=seed)
    seed_everything(seed)
    generator = StyleGenerator(plan.channels, style_dim=plan.style_dim)
    discriminator = StyleDiscriminator(plan.channels)
    config = StyleGANConfig(schedule=plan.schedule, batch_size=plan.batch_size,
                            sample_every=plan.sample_every, device=device,
                            num_workers=profile.num_workers)
    return train_stylegan(generator, discriminator, dataset, config, run_dir,
                          progress=progress, run_identity=identity)


def real_crops(volume: EMVolume, size: int, count: int, seed: int) -> np.ndarray:
    """``(count, size, size)`` random crops of the training split in [-1, 1]."""
    train = split_slices(volume.shape[0]).apply(volume)["train"]
    dataset = GanCropDataset(train.raw, size, count, seed=seed)
    return np.stack([dataset[i]["image"][0].numpy() for i in range(count)])


@torch.no_grad()
def generated_crops(generator: StyleGenerator, count: int, seed: int) -> np.ndarray:
    """``(count, S, S)`` samples at the generator's highest resolution."""
    generator.eval()
    device = next(generator.parameters()).device
    z = torch.randn(count, generator.style_dim, generator=torch.Generator().manual_seed(seed))
    return generator(z.to(device)).clamp(-1, 1).cpu().numpy()[:, 0]


def stylegan_realism(ema: StyleGenerator, volume: EMVolume, profile: Profile, *,
                     seed: int = 0) -> pd.DataFrame:
    """Sliced Wasserstein distance to real crops: ours, untrained G, noise, and the floor.

    The floor compares two disjoint sets of real crops; "untrained" is a freshly initialised
    generator of the same size; "noise" is Gaussian noise with the real crops' mean and std.
    """
    plan = profile.stylegan
    size = 4 * 2 ** ema.max_step
    reference = real_crops(volume, size, plan.realism_crops, seed + 1)
    other_real = real_crops(volume, size, plan.realism_crops, seed + 2)
    seed_everything(seed + 3)
    untrained = StyleGenerator(plan.channels, style_dim=plan.style_dim)
    rng = np.random.default_rng(seed)
    candidates = {
        "real vs real (noise floor)": other_real,
        "StyleGAN (EMA generator)": generated_crops(ema, plan.realism_crops, seed),
        "untrained generator": generated_crops(untrained, plan.realism_crops, seed),
        "Gaussian noise": rng.normal(reference.mean(), reference.std(), reference.shape),
    }
    rows = {}
    for name, images in candidates.items():
        levels = sliced_wasserstein(reference, images, seed=seed)
        rows[name] = {**{f"swd_level{i}": d for i, d in enumerate(levels)},
                      "swd_mean": float(np.mean(levels))}
    return pd.DataFrame(rows).T


def boundless_datasets(volume: EMVolume, mask_kind: MaskKind, profile: Profile, seed: int = 0
                       ) -> tuple[GanCropDataset, GanCropDataset]:
    """Training crops (redrawn every epoch) and fixed validation crops with ``mask_kind``."""
    plan = profile.boundless
    parts = split_slices(volume.shape[0]).apply(volume)
    train = GanCropDataset(parts["train"].raw, plan.crop, plan.samples_per_epoch,
                           mask_kind=mask_kind, seed=seed)
    val = GanCropDataset(parts["val"].raw, plan.crop, plan.val_crops, mask_kind=mask_kind,
                         seed=profile.validation_seed)
    return train, val


def run_boundless(volume: EMVolume, mask_kind: MaskKind, profile: Profile,
                  run_dir: str | Path, *, seed: int = 0, device: str | None = None,
                  extractor: nn.Module | None = None, progress: bool = True
                  ) -> tuple[BoundlessGenerator, pd.DataFrame]:
    """Train (or resume) the image-extension GAN for one mask kind.

    The run is identified by the volume's fingerprint, ``seed``, ``mask_kind`` and the
    profile (its ``steps`` may grow on resume); see :func:`train_boundless`. The trained
    generator is also written to ``run_dir/generator.pt``, a checkpoint
    (:mod:`emseg_lib.train.checkpoint`) with ``mask_kind``, ``steps`` and the run's
    ``identity``, read by :func:`~emseg_lib.models.pretrained.load_pretrained`.
    """
    plan = profile.boundless
    identity = experiment_identity(volume, profile, seed, plan,
                                   resumable=("steps", "eval_every"), mask_kind=mask_kind)
    train, val = boundless_datasets(volume, mask_kind, profile, seed)
    seed_everything(seed)
    generator = BoundlessGenerator(width=plan.width)
    discriminator = BoundlessDiscriminator(widths=plan.d_widths)
    config = BoundlessConfig(steps=plan.steps, batch_size=plan.batch_size,
                             eval_every=plan.eval_every,
                             sample_every=max(plan.eval_every, plan.steps // 4), device=device,
                             num_workers=profile.num_workers)
    history = train_boundless(generator, discriminator, train, val, config, run_dir,
                              extractor=extractor, progress=progress, run_identity=identity)
    save_checkpoint(Path(run_dir) / GENERATOR_WEIGHTS, {
        "model": generator.state_dict(), "model_spec": model_spec(generator),
        "mask_kind": mask_kind, "steps": plan.steps, "identity": identity})
    return generator, history


def _boundless_job(volume: EMVolume | VolumeFile, mask_kind: MaskKind, profile: Profile,
                   run_dir: Path, seed: int, device: str | None, extractor: nn.Module | None
                   ) -> tuple[BoundlessGenerator, pd.DataFrame]:
    """One mask's run as a job of :func:`~emseg_lib.infra.engine.run_jobs`; the generator comes
    back on the CPU (the job's GPU is its own)."""
    generator, history = run_boundless(job_volume(volume), mask_kind, profile, run_dir,
                                       seed=seed, device=device, extractor=extractor,
                                       progress=False)
    return generator.cpu(), history


def run_boundless_masks(volume: EMVolume, profile: Profile, runs_dir: str | Path, *,
                        seed: int = 0, device: str | None = None,
                        extractor: nn.Module | None = None,
                        engine: str | Engine | None = None
                        ) -> tuple[dict[str, BoundlessGenerator], dict[str, pd.DataFrame]]:
    """:func:`run_boundless` for every mask kind, in ``runs_dir/boundless_<kind>``.

    Args:
        engine: where the three runs go (:class:`~emseg_lib.infra.engine.Engine` or its string;
            default inline, one after the other here). Each run resumes from its folder, so
            the results are the same on any engine; off-line generators come back on the CPU.

    Returns:
        ``{kind: generator}`` and ``{kind: history}``.
    """
    engine = Engine.parse(engine)
    dirs = {kind: Path(runs_dir) / f"boundless_{kind}" for kind in MASK_KINDS}
    if engine.inline:
        results = [run_boundless(volume, kind, profile, dirs[kind], seed=seed, device=device,
                                 extractor=extractor) for kind in MASK_KINDS]
    else:
        folder = Path(runs_dir) / ENGINE_FOLDER
        shared = for_jobs(volume, engine, folder)
        results = run_jobs(engine, _boundless_job, [
            (shared, kind, profile, dirs[kind], seed, device, extractor) for kind in MASK_KINDS],
            folder)
    return ({kind: g for kind, (g, _) in zip(MASK_KINDS, results, strict=True)},
            {kind: h for kind, (_, h) in zip(MASK_KINDS, results, strict=True)})


@torch.no_grad()
def extension_examples(generator: BoundlessGenerator, dataset: GanCropDataset, count: int
                       ) -> dict[str, np.ndarray]:
    """``masked``, ``predicted`` (composite) and ``truth`` arrays ``(count, S, S)``."""
    generator.eval()
    device = next(generator.parameters()).device
    batch = [dataset[i] for i in range(count)]
    image = torch.stack([b["image"] for b in batch]).to(device)
    mask = torch.stack([b["mask"] for b in batch]).to(device)
    predicted = composite(image, mask, generator(image, mask))
    return {"masked": (image * (1 - mask)).cpu().numpy()[:, 0],
            "predicted": predicted.cpu().numpy()[:, 0], "truth": image.cpu().numpy()[:, 0]}


def final_losses(history: pd.DataFrame, mask_kind: MaskKind) -> pd.DataFrame:
    """Tables 5.12-5.14: our last train/val losses with the thesis's beneath them."""
    last = history.iloc[-1]
    rows = {}
    for split in ("train", "val"):
        rows[f"ours {split}"] = {c: last[f"{split}_{c}"] for c in LOSS_COLUMNS}
        rows[f"thesis {split}"] = BOUNDLESS_FINAL_LOSSES[mask_kind][split]
    rows["ours val"]["masked_l1"] = last["val_masked_l1"]
    rows["ours val"]["mean_fill_masked_l1"] = last["val_mean_fill_masked_l1"]
    return pd.DataFrame(rows).T
