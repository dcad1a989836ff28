"""Training the grayscale StyleGAN with progressive growing (thesis 4.2).

Non-saturating logistic loss (thesis equation 2.4 and its note: G maximises ``log D(G(z))``)
with the R1 penalty of the reference implementation: D minimises
``softplus(D(fake)) + softplus(-D(real)) + gamma / 2 * |grad D(real)|^2`` (gamma 10), G
minimises ``softplus(-D(fake))``. Adam lr 1e-3, betas (0, 0.99), mapping network lr x 0.01,
an exponential moving average of G (decay 0.999, warmed up as ``min(0.999, (1 + i) / (10 + i))``
so that short CPU runs are not dominated by the first iterations' weights) for samples.

A schedule is a list of ``(resolution, iterations)`` phases, e.g. ``((8, 500), (16, 1000))``;
each phase after the first fades its new block in over its first half (``alpha`` 0 -> 1).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from emseg_lib.data.gan_datasets import GanCropDataset
from emseg_lib.errors import EmsegInputError, TrainingInterrupted
from emseg_lib.infra.device import pick_device
from emseg_lib.infra.progress import progress_bar
from emseg_lib.models.stylegan import StyleDiscriminator, StyleGenerator
from emseg_lib.train.feed import resolve_loader_workers
from emseg_lib.train.gan_common import (
    SAMPLES,
    ema_update,
    endless_batches,
    gan_identity,
    resume_state,
    save_image_grid,
    set_trainable,
    write_state,
)
from emseg_lib.train.runs import training_run
from emseg_lib.train.tensorboard_log import TrainingLog


@dataclass(frozen=True)
class StyleGANConfig:
    """Hyper-parameters of :func:`train_stylegan` (defaults: the reference implementation).

    ``num_workers``: DataLoader worker processes making the crops (None chooses,
    :func:`~emseg_lib.train.feed.resolve_loader_workers`); the result does not depend on it.
    """

    schedule: tuple[tuple[int, int], ...] = ((8, 400), (16, 400))
    batch_size: int = 16
    lr: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.99)
    mapping_lr_scale: float = 0.01
    r1_gamma: float = 10.0
    ema_decay: float = 0.999
    sample_every: int = 200
    device: str | None = None
    num_workers: int | None = None


#: :class:`StyleGANConfig` fields a resumed run may change (a schedule may be extended)
RESUMABLE = ("schedule", "sample_every", "device", "num_workers")


def phase_at(schedule: tuple[tuple[int, int], ...], iteration: int) -> tuple[int, float]:
    """``(step, alpha)`` at ``iteration``: step = log2(resolution / 4), alpha the fade-in."""
    start = 0
    for index, (resolution, length) in enumerate(schedule):
        if iteration < start + length:
            step = int(math.log2(resolution // 4))
            alpha = 1.0 if index == 0 else min(1.0, 2.0 * (iteration - start) / length)
            return step, alpha
        start += length
    raise EmsegInputError(f"iteration {iteration} is past the schedule's end ({start})")


def discriminator_step(generator: StyleGenerator, discriminator: StyleDiscriminator,
                       optimizer: torch.optim.Optimizer, real: torch.Tensor, step: int,
                       alpha: float, r1_gamma: float) -> dict[str, float]:
    """One D update: logistic loss on real and generated images plus R1 on the real ones."""
    z = torch.randn(real.shape[0], generator.style_dim, device=real.device)
    with torch.no_grad():
        fake = generator(z, step, alpha)
    real = real.detach().requires_grad_(True)
    real_score = discriminator(real, step, alpha)
    (grad,) = torch.autograd.grad(real_score.sum(), real, create_graph=True)
    r1 = grad.pow(2).flatten(1).sum(1).mean()
    loss = (F.softplus(discriminator(fake, step, alpha)).mean()
            + F.softplus(-real_score).mean())
    optimizer.zero_grad(set_to_none=True)
    (loss + r1_gamma / 2 * r1).backward()
    optimizer.step()
    return {"d_loss": loss.item(), "r1": r1.item()}


def generator_step(generator: StyleGenerator, discriminator: StyleDiscriminator,
                   optimizer: torch.optim.Optimizer, batch_size: int, step: int, alpha: float
                   ) -> dict[str, float]:
    """One non-saturating G update; D's parameters are frozen meanwhile."""
    set_trainable(discriminator, False)
    z = torch.randn(batch_size, generator.style_dim, device=next(generator.parameters()).device)
    loss = F.softplus(-discriminator(generator(z, step, alpha), step, alpha)).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    set_trainable(discriminator, True)
    return {"g_loss": loss.item()}


def train_stylegan(
    generator: StyleGenerator,
    discriminator: StyleDiscriminator,
    dataset: GanCropDataset,
    config: StyleGANConfig,
    run_dir: str | Path,
    *,
    resume: bool = True,
    progress: bool = True,
    run_identity: dict[str, Any] | None = None,
) -> tuple[StyleGenerator, pd.DataFrame]:
    """Train with progressive growing; returns the EMA generator and the per-iteration history.

    The dataset's crops (e.g. 128 px) are average-pooled to each phase's resolution. Sample
    grids of 16 fixed latent vectors from the EMA generator go to ``run_dir/samples``.
    ``run_dir`` is locked and identified as in :func:`~emseg_lib.train.fit`
    (``run_identity``, the networks, the settings but :data:`RESUMABLE`).

    Returns:
        ``(ema_generator, history)`` with columns ``iteration``, ``resolution``, ``alpha``,
        ``d_loss``, ``r1``, ``g_loss``.

    Raises:
        EmsegInputError: schedule and crops disagree; ``run_dir`` is refused (see
            :func:`~emseg_lib.train.runs.training_run`).
        TrainingInterrupted: Ctrl-C; ``last.pt`` holds the last saved iteration.
    """
    top = max(resolution for resolution, _ in config.schedule)
    if top > dataset.size or 4 * 2 ** generator.max_step < top:
        raise EmsegInputError(
            f"schedule reaches {top} px but the crops are {dataset.size} px and the generator "
            f"stops at {4 * 2 ** generator.max_step} px"
        )
    run_dir = Path(run_dir)
    device = pick_device(config.device)
    generator.to(device).train()
    discriminator.to(device).train()
    ema = copy.deepcopy(generator).eval()
    set_trainable(ema, False)
    mapping = list(generator.mapping.parameters())
    synthesis = [p for name, p in generator.named_parameters() if not name.startswith("mapping")]
    opt_g = torch.optim.Adam([{"params": synthesis},
                              {"params": mapping, "lr": config.lr * config.mapping_lr_scale}],
                             lr=config.lr, betas=config.betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=config.betas)
    modules = {"generator": generator, "discriminator": discriminator, "ema": ema}
    optimizers = {"generator": opt_g, "discriminator": opt_d}
    with training_run(run_dir, gan_identity(modules, config, RESUMABLE, run_identity)
                      ) as identity:
        iteration, history = resume_state(run_dir, modules, optimizers, resume, identity)
        try:
            _iterate(modules, optimizers, dataset, config, run_dir, iteration, history,
                     identity, progress)
        except KeyboardInterrupt:
            raise TrainingInterrupted(
                f"{run_dir}: interrupted at iteration {len(history)}; run the same command "
                "again to resume (from the last saved iteration)") from None
    return ema, pd.DataFrame(history)


def _iterate(modules: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer],
             dataset: GanCropDataset, config: StyleGANConfig, run_dir: Path, iteration: int,
             history: list[dict[str, Any]], identity: dict[str, Any], progress: bool) -> None:
    """The training iterations from ``iteration`` on; appends to ``history``."""
    generator, ema = modules["generator"], modules["ema"]
    device = next(generator.parameters()).device
    total = sum(length for _, length in config.schedule)
    fixed_z = torch.randn(16, generator.style_dim, generator=torch.Generator().manual_seed(0)
                          ).to(device)
    batches = endless_batches(dataset, config.batch_size,
                              first_epoch=iteration * config.batch_size // len(dataset),
                              workers=resolve_loader_workers(config.num_workers, device),
                              device=device)
    bar = progress_bar(total=total, initial=iteration, desc="stylegan", disable=not progress)
    log = TrainingLog(run_dir, iteration)
    try:
        while iteration < total:
            step, alpha = phase_at(config.schedule, iteration)
            real = next(batches)["image"].to(device, non_blocking=True)
            history.append(train_iteration(modules, optimizers, real, iteration, config))
            log.scalars(history[-1], iteration, "iteration")
            iteration += 1
            bar.update(1)
            if iteration % config.sample_every == 0 or iteration == total:
                with torch.no_grad():
                    save_image_grid(ema(fixed_z, step, alpha),
                                    run_dir / SAMPLES / f"iter_{iteration:06d}.png", ncols=4)
                write_state(run_dir, iteration, modules, optimizers, history,
                            dataclasses.asdict(config), identity)
    finally:
        log.close()
        bar.close()
        batches.close()  # stops the loader's worker processes


def train_iteration(modules: dict[str, torch.nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer], crops: torch.Tensor,
                    iteration: int, config: StyleGANConfig) -> dict[str, Any]:
    """One D and one G update at ``iteration``'s phase, then the EMA update.

    Args:
        modules: ``generator``, ``discriminator`` and ``ema``.
        crops: ``(N, 1, S, S)`` real crops on the device, pooled to the phase's resolution.

    Returns:
        The history row: ``iteration``, ``resolution``, ``alpha`` and the losses.
    """
    generator, discriminator, ema = (modules[k] for k in ("generator", "discriminator", "ema"))
    step, alpha = phase_at(config.schedule, iteration)
    real = F.adaptive_avg_pool2d(crops, 4 * 2 ** step)
    row = {"iteration": iteration, "resolution": 4 * 2 ** step, "alpha": alpha}
    row.update(discriminator_step(generator, discriminator, optimizers["discriminator"], real,
                                  step, alpha, config.r1_gamma))
    row.update(generator_step(generator, discriminator, optimizers["generator"],
                              config.batch_size, step, alpha))
    # warm-up: early on, average over ~10 + iteration steps, not over ~1 / (1 - decay)
    ema_update(ema, generator, min(config.ema_decay, (1 + iteration) / (10 + iteration)))
    return row
