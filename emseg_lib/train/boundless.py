"""Training the Boundless image-extension GAN (thesis 4.4.1; Teterwak et al. 2019).

Hinge loss: D minimises ``relu(1 - D(x)) + relu(1 + D(x_hat))``; G minimises
``L1(G(z), x) + lambda * (-D(x_hat))`` with ``x_hat = z + M * G(z)``, ``lambda = 1e-2``.
Adam, ``lr_g = 1e-4``, ``lr_d = 1e-3``, betas ``(0.5, 0.9)``; one G step, then one D step.
The thesis's table columns: D loss, G loss, adversarial loss ``-D(x_hat)``, pixel-wise L1.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from emseg_lib.data.gan_datasets import GanCropDataset
from emseg_lib.errors import EmsegInputError, TrainingInterrupted
from emseg_lib.infra.device import pick_device
from emseg_lib.infra.progress import progress_bar
from emseg_lib.models.boundless import BoundlessDiscriminator, BoundlessGenerator, composite
from emseg_lib.train.feed import resolve_loader_workers
from emseg_lib.train.gan_common import (
    SAMPLES,
    endless_batches,
    gan_identity,
    resume_state,
    save_image_grid,
    set_trainable,
    write_state,
)
from emseg_lib.train.losses import hinge_discriminator_loss
from emseg_lib.train.runs import training_run
from emseg_lib.train.tensorboard_log import TrainingLog


@dataclass(frozen=True)
class BoundlessConfig:
    """Hyper-parameters of :func:`train_boundless` (defaults: thesis 4.4.1).

    ``num_workers``: DataLoader worker processes making the crops (None chooses,
    :func:`~emseg_lib.train.feed.resolve_loader_workers`); the result does not depend on it.
    """

    steps: int = 1000
    batch_size: int = 20
    lr_g: float = 1e-4
    lr_d: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.9)
    adv_weight: float = 1e-2
    eval_every: int = 50
    sample_every: int = 200
    device: str | None = None
    num_workers: int | None = None


#: :class:`BoundlessConfig` fields a resumed run may change
RESUMABLE = ("steps", "eval_every", "sample_every", "device", "num_workers")


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean absolute error over the masked (unknown) pixels only."""
    return float(((prediction - target).abs() * mask).sum() / mask.sum().clamp(min=1))


def mean_fill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The trivial extension: every unknown pixel set to the mean of the visible ones."""
    visible = 1 - mask
    mean = (image * visible).sum(dim=(1, 2, 3), keepdim=True) / visible.sum(
        dim=(1, 2, 3), keepdim=True).clamp(min=1)
    return composite(image, mask, mean.expand_as(image))


def generator_step(generator: nn.Module, discriminator: nn.Module,
                   optimizer: torch.optim.Optimizer, image: torch.Tensor, mask: torch.Tensor,
                   adv_weight: float, condition: torch.Tensor | None = None) -> dict[str, float]:
    """One generator update; the discriminator's parameters are frozen meanwhile."""
    set_trainable(discriminator, False)
    generated = generator(image, mask)
    adversarial = -discriminator(composite(image, mask, generated), mask, condition).mean()
    pixel = F.l1_loss(generated, image)
    loss = pixel + adv_weight * adversarial
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    set_trainable(discriminator, True)
    return {"g_loss": loss.item(), "adv_loss": adversarial.item(), "pixel_loss": pixel.item()}


def discriminator_step(generator: nn.Module, discriminator: nn.Module,
                       optimizer: torch.optim.Optimizer, image: torch.Tensor,
                       mask: torch.Tensor, condition: torch.Tensor | None = None
                       ) -> dict[str, float]:
    """One hinge-loss discriminator update on real ``image`` and the composited fake."""
    with torch.no_grad():
        fake = composite(image, mask, generator(image, mask))
    loss = hinge_discriminator_loss(discriminator(image, mask, condition),
                                    discriminator(fake, mask, condition))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"d_loss": loss.item()}


@torch.no_grad()
def evaluate_boundless(generator: nn.Module, discriminator: nn.Module,
                       batches: list[dict[str, torch.Tensor]], adv_weight: float,
                       device: torch.device, extractor: nn.Module | None = None
                       ) -> dict[str, float]:
    """Losses on fixed batches, plus L1 on the masked region for G and for the mean fill."""
    generator.eval()
    rows = []
    for batch in batches:
        image, mask = batch["image"].to(device), batch["mask"].to(device)
        condition = extractor(image) if extractor is not None else None
        generated = generator(image, mask)
        fake = composite(image, mask, generated)
        adversarial = -discriminator(fake, mask, condition).mean()
        pixel = F.l1_loss(generated, image)
        d_loss = hinge_discriminator_loss(discriminator(image, mask, condition),
                                          discriminator(fake, mask, condition))
        rows.append({"d_loss": d_loss.item(), "g_loss": (pixel + adv_weight * adversarial).item(),
                     "adv_loss": adversarial.item(), "pixel_loss": pixel.item(),
                     "masked_l1": masked_l1(generated, image, mask),
                     "mean_fill_masked_l1": masked_l1(mean_fill(image, mask), image, mask)})
    generator.train()
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}


def train_boundless(
    generator: BoundlessGenerator,
    discriminator: BoundlessDiscriminator,
    train_set: GanCropDataset,
    val_set: GanCropDataset,
    config: BoundlessConfig,
    run_dir: str | Path,
    *,
    extractor: nn.Module | None = None,
    resume: bool = True,
    progress: bool = True,
    run_identity: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Train the image-extension GAN; returns one history row per ``eval_every`` steps.

    Args:
        generator, discriminator: the networks (the discriminator's ``class_dim`` must match
            the extractor's output when one is given).
        train_set, val_set: :class:`GanCropDataset` with a ``mask_kind``.
        config: hyper-parameters.
        run_dir: ``last.pt``, ``history.csv`` and ``samples/step_NNNNNN.png`` go here.
        extractor: semantic conditioning network (InceptionV3-style) or None (disabled).
        resume: continue from ``run_dir/last.pt`` when it exists (False refuses such a
            folder rather than overwrite it).
        run_identity: what else identifies the run (JSON values: data fingerprint, seed,
            profile, mask kind); with the networks and the settings but :data:`RESUMABLE`
            it is recorded and a resume with any difference is refused, as in
            :func:`~emseg_lib.train.fit`.

    Returns:
        Columns ``step``, ``train_*`` and ``val_*`` for ``d_loss``, ``g_loss``, ``adv_loss``,
        ``pixel_loss``; ``val_masked_l1``, ``val_mean_fill_masked_l1``, ``seconds_per_step``.

    Raises:
        EmsegInputError: datasets without masks; ``run_dir`` is refused (see
            :func:`~emseg_lib.train.runs.training_run`).
        TrainingInterrupted: Ctrl-C; ``last.pt`` holds the last evaluated step.
    """
    if train_set.mask_kind is None or val_set.mask_kind is None:
        raise EmsegInputError("Boundless training needs datasets built with a mask_kind")
    run_dir = Path(run_dir)
    device = pick_device(config.device)
    generator.to(device).train()
    discriminator.to(device).train()
    if extractor is not None:
        extractor.to(device).eval()
        set_trainable(extractor, False)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr_g, betas=config.betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=config.betas)
    modules = {"generator": generator, "discriminator": discriminator}
    optimizers = {"generator": opt_g, "discriminator": opt_d}
    extra = {"extractor": None if extractor is None else type(extractor).__name__}
    identity = gan_identity(modules, config, RESUMABLE, {**(run_identity or {}), **extra})
    with training_run(run_dir, identity) as identity:
        step, history = resume_state(run_dir, modules, optimizers, resume, identity)
        try:
            _steps(modules, optimizers, train_set, val_set, config, run_dir, extractor, step,
                   history, identity, progress)
        except KeyboardInterrupt:
            saved = history[-1]["step"] if history else 0
            raise TrainingInterrupted(
                f"{run_dir}: interrupted; run the same command again to resume from the last "
                f"saved step ({saved})") from None
    return pd.DataFrame(history)


def _steps(modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
           train_set: GanCropDataset, val_set: GanCropDataset, config: BoundlessConfig,
           run_dir: Path, extractor: nn.Module | None, step: int,
           history: list[dict[str, Any]], identity: dict[str, Any], progress: bool) -> None:
    """The training steps from ``step`` on; appends the evaluations to ``history``."""
    generator = modules["generator"]
    device = next(generator.parameters()).device
    val_batches = list(torch.utils.data.DataLoader(val_set, batch_size=config.batch_size))
    batches = endless_batches(train_set, config.batch_size,
                              first_epoch=step * config.batch_size // len(train_set),
                              workers=resolve_loader_workers(config.num_workers, device),
                              device=device)
    window: list[dict[str, float]] = []
    started = time.perf_counter()
    bar = progress_bar(total=config.steps, initial=step, desc="boundless", disable=not progress)
    log = TrainingLog(run_dir, step + 1)  # the evaluation at ``step`` is logged already
    try:
        while step < config.steps:
            batch = next(batches)
            image = batch["image"].to(device, non_blocking=True)
            mask = batch["mask"].to(device, non_blocking=True)
            window.append(_train_step(modules, optimizers, image, mask, config, extractor))
            step += 1
            bar.update(1)
            if step % config.sample_every == 0 or step == config.steps:
                _save_samples(generator, val_batches[0], run_dir, step)
            if step % config.eval_every == 0 or step == config.steps:
                elapsed = time.perf_counter() - started
                record = {"step": step, "seconds_per_step": elapsed / len(window)}
                record.update({f"train_{k}": float(np.mean([r[k] for r in window]))
                               for k in window[0]})
                record.update({f"val_{k}": v for k, v in evaluate_boundless(
                    generator, modules["discriminator"], val_batches, config.adv_weight,
                    device, extractor).items()})
                history.append(record)
                log.scalars(record, step, "step")
                bar.set_postfix(l1=f"{record['val_pixel_loss']:.3f}")
                write_state(run_dir, step, modules, optimizers, history,
                            dataclasses.asdict(config), identity)
                window, started = [], time.perf_counter()
    finally:
        log.close()
        bar.close()
        batches.close()  # stops the loader's worker processes


def _train_step(modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                image: torch.Tensor, mask: torch.Tensor, config: BoundlessConfig,
                extractor: nn.Module | None) -> dict[str, float]:
    """One generator and one discriminator update; their losses."""
    generator, discriminator = modules["generator"], modules["discriminator"]
    condition = extractor(image) if extractor is not None else None
    row = generator_step(generator, discriminator, optimizers["generator"], image, mask,
                         config.adv_weight, condition)
    row.update(discriminator_step(generator, discriminator, optimizers["discriminator"], image,
                                  mask, condition))
    return row


@torch.no_grad()
def _save_samples(generator: nn.Module, preview: dict[str, torch.Tensor], run_dir: Path,
                  step: int) -> None:
    """Masked input, extension and truth of 4 validation crops as ``samples/step_N.png``."""
    device = next(generator.parameters()).device
    image, mask = preview["image"][:4].to(device), preview["mask"][:4].to(device)
    out = composite(image, mask, generator(image, mask))
    save_image_grid(torch.cat([image * (1 - mask), out, image]),
                    run_dir / SAMPLES / f"step_{step:06d}.png", ncols=4)
