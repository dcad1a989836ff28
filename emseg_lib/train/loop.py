"""The supervised training loop shared by UNet2D and UNet3D (thesis 3.2.5, 3.2.6, 4.3.2).

By default the thesis's recipe: BCEWithLogits loss, Adam (lr 0.01, betas 0.9/0.999, eps
0.01); ``emseg train`` uses another (:mod:`emseg_lib.train.recipes`). ReduceLROnPlateau on the
validation loss (factor 0.5, patience 5, at most 4 reductions). Each epoch is validated with
pixel accuracy, VOI before/after watershed, VOI split/merge and adapted Rand error
(:mod:`emseg_lib.scoring.evaluation`). The history goes to ``history.csv``; ``last.pt`` is written
every epoch and a run resumes from it, if it is the same run (:mod:`emseg_lib.train.runs`).
A time budget (:attr:`TrainConfig.minutes`) ends training after the epoch during which it ran
out; the progress bar shows the validation VOI under the CREMI protocol, the one ``best.pt``
is chosen by (:func:`selection_voi`).

Crops are made in DataLoader worker processes, and on CUDA the network runs under bf16
autocast (2D networks in channels_last), see :mod:`emseg_lib.train.feed`; the validation
scores are computed in parallel processes too. Neither changes the result on the CPU.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from emseg_lib.data.datasets import EMCropDataset
from emseg_lib.errors import EmsegInputError, TrainingInterrupted
from emseg_lib.infra.device import pick_device
from emseg_lib.infra.parallel import ProcessPool, SerialPool, available_cores, worker_pool
from emseg_lib.infra.progress import progress_bar
from emseg_lib.models import model_entry, model_spec
from emseg_lib.postprocess import UNTUNED_EDGE_TH, UNTUNED_SIG_TH
from emseg_lib.scoring.evaluation import evaluate_slices
from emseg_lib.train.adversarial import SegmentationAdversary
from emseg_lib.train.checkpoint import (
    BEST,
    LAST,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from emseg_lib.train.feed import Placement, epoch_loader, resolve_loader_workers
from emseg_lib.train.losses import (
    AFFINITY_LOSSES,
    BOUNDARY_LOSSES,
    DEFAULT_AFFINITY_LOSS,
    THESIS_BOUNDARY_LOSS,
    LossFunction,
)
from emseg_lib.train.runs import check_identity, training_run, write_history
from emseg_lib.train.tensorboard_log import TrainingLog


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`fit` (defaults: thesis 4.3.2).

    Attributes:
        epochs: total number of epochs (a resumed run continues up to this number); ``None``
            for no limit but :attr:`minutes`.
        minutes: a time budget: training stops after the epoch during which it ran out
            (never within an epoch, so the checkpoints hold that epoch), and says so. With
            ``epochs`` too, whichever comes first. Counted from the start of this call: a
            resumed run gets the budget afresh. ``None``: no budget.
        batch_size: thesis 18 (2D) and 1 (3D).
        sig_th, edge_th: thesis post-processing thresholds of the validation metrics (the
            thesis's untuned 0.73 / 0.81). The CREMI band uses the validation volume's pixel
            size.
        device: ``None`` picks CUDA when available.
        num_workers: DataLoader worker processes making the crops; ``None`` chooses
            (:func:`~emseg_lib.train.feed.resolve_loader_workers`: up to 8 on CUDA, 0 on the
            CPU). With any, the validation scores are computed over every available core;
            0 keeps everything in this process. The result does not depend on it.
        amp: bf16 autocast of the forward pass and loss on CUDA (never on the CPU).
        tensorboard: write TensorBoard event files of every epoch to ``run_dir/tensorboard``
            (:mod:`emseg_lib.train.tensorboard_log`).
        target: ``"boundaries"`` (the thesis's cell map, loss :attr:`boundary_loss`) or
            ``"affinities"`` (loss :attr:`affinity_loss`; each validation crop's affinities
            agglomerated with waterz at its default threshold and scored per slice under the
            CREMI protocol: the ``val_cremi_*`` columns, with no thesis-protocol ones).
        affinity_loss: an affinity network's loss, a key of
            :data:`~emseg_lib.train.losses.AFFINITY_LOSSES`: ``dice`` (default, the soft Dice
            of torch-em on the edges that cross a boundary) or ``balanced_bce`` (Lee et al.'s
            class-balanced cross-entropy per channel).
        boundary_loss: a boundary network's loss, a key of
            :data:`~emseg_lib.train.losses.BOUNDARY_LOSSES`: ``bce`` (the thesis's, default),
            ``balanced_bce`` or ``bce_dice`` (:mod:`emseg_lib.train.recipes` sets it with
            ``lr`` and ``eps``).
    """

    epochs: int | None = 10
    minutes: float | None = None
    batch_size: int = 18
    lr: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 0.01
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    max_lr_reductions: int = 4
    sig_th: float = UNTUNED_SIG_TH
    edge_th: float = UNTUNED_EDGE_TH
    device: str | None = None
    num_workers: int | None = None
    amp: bool = True
    tensorboard: bool = True
    target: str = "boundaries"
    affinity_loss: str = DEFAULT_AFFINITY_LOSS
    boundary_loss: str = THESIS_BOUNDARY_LOSS


def selection_voi(row: dict[str, float]) -> float:
    """What ``best.pt`` minimises: an epoch's validation VOI (bits) under the CREMI protocol.

    The thesis protocol scores label 0 as a segment, so in the first epochs of a short run a
    network that merges everything can score better on it than one that has started to
    separate cells; the CREMI protocol has no such reward.
    """
    return row["val_cremi_voi_split"] + row["val_cremi_voi_merge"]


def pixel_accuracy_torch(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of pixels where ``sigmoid(logits) > 0.5`` equals the 0/1 target."""
    return float(((logits > 0) == (target > 0.5)).float().mean())


def _slice_scores(job: tuple[np.ndarray, np.ndarray], sig_th: float, edge_th: float,
                  pixel_nm: float) -> dict[str, float]:
    """:func:`evaluate_slices` of one ``(prob, labels)`` pair of ``(H, W)`` slices."""
    prob, labels = job
    return evaluate_slices(prob[None], labels[None], sig_th, edge_th, pixel_nm=pixel_nm)


def _affinity_scores(job: tuple[np.ndarray, np.ndarray], pixel_nm: float) -> list[dict]:
    """CREMI-protocol scores (:func:`~emseg_lib.scoring.evaluation.score_volume`) of each labelled
    slice of one validation crop: its affinities ``(C, D, H, W)`` (or ``(C, H, W)``)
    agglomerated with waterz at its default threshold, against its ids ``(D, H, W)`` (or
    ``(H, W)``); named as :func:`_slice_scores` names them (``cremi_voi_split``, ...)."""
    from emseg_lib.postprocess.agglomeration import segment_affinities
    from emseg_lib.scoring.evaluation import score_volume

    affinities, labels = job
    if affinities.ndim == 3:  # 2D: one slice
        affinities, labels = affinities[:, None], labels[None]
    if not np.any(labels):  # nothing to score in this crop
        return []
    scores = score_volume(segment_affinities(affinities, "waterz"), labels, "cremi",
                          pixel_nm=pixel_nm).drop(columns="slice")
    return scores.rename(columns=lambda k: k if k.startswith("cremi_") else f"cremi_{k}"
                         ).to_dict("records")


def _validate(model: nn.Module, loader: DataLoader, loss_fn: LossFunction, placement: Placement,
              config: TrainConfig, pool: SerialPool | ProcessPool) -> dict[str, float]:
    """Validation loss, accuracy and the mean per-slice scores (slices scored in ``pool``;
    an affinity network's crops agglomerated first, :func:`_affinity_scores`)."""
    model.eval()
    losses, accs, probs, labels = [], [], [], []
    with torch.no_grad():
        for batch in loader:
            image = placement.batch(batch["image"])
            target = batch["target"].to(placement.device, non_blocking=True)
            with placement.autocast():
                logits = model(image)
                losses.append(float(loss_fn(logits, target)))
            accs.append(pixel_accuracy_torch(logits, target))
            prob = torch.sigmoid(logits.float()).cpu().numpy()
            if config.target == "affinities":  # (N, C, [D,] H, W): one job per crop
                probs += list(prob)
                labels += list(batch["labels"].numpy())
                continue
            # 2D: (N, H, W); 3D: (N, D, H, W) -> score every slice
            prob = prob[:, 0]
            probs.append(prob.reshape(-1, *prob.shape[-2:]))
            labels.append(batch["labels"].numpy().reshape(-1, *prob.shape[-2:]))
    pixel_nm = loader.dataset.volume.resolution[1]
    if config.target == "affinities":
        rows = [row for crop in pool.map(partial(_affinity_scores, pixel_nm=pixel_nm),
                                         list(zip(probs, labels, strict=True)))
                for row in crop]
    else:
        task = partial(_slice_scores, sig_th=config.sig_th, edge_th=config.edge_th,
                       pixel_nm=pixel_nm)
        rows = list(pool.map(task, list(zip(np.concatenate(probs), np.concatenate(labels),
                                            strict=True))))
    scores = pd.DataFrame(rows).mean().to_dict()
    return {"val_loss": float(np.mean(losses)), "val_acc": float(np.mean(accs)),
            **{f"val_{key}": value for key, value in scores.items()}}


#: :class:`TrainConfig` fields a resumed run may change (they are not part of its identity)
RESUMABLE = ("epochs", "minutes", "device", "num_workers", "amp", "tensorboard")


def _identity(model: nn.Module, config: TrainConfig, adversary: SegmentationAdversary | None,
              run_identity: dict[str, Any] | None) -> dict[str, Any]:
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in RESUMABLE
                and not (config.target == "boundaries"  # as runs from before targets
                         and k in ("target", "affinity_loss"))
                and not (k == "boundary_loss"  # as runs from before boundary losses
                         and (config.target != "boundaries" or v == THESIS_BOUNDARY_LOSS))}
    adversarial = None if adversary is None else {
        "weight": adversary.weight, "discriminator": type(adversary.discriminator).__name__,
        "config": getattr(adversary.discriminator, "config", None)}
    return {**(run_identity or {}), "model_spec": model_spec(model), "config": settings,
            "adversary": adversarial}


def fit(
    model: nn.Module,
    train_set: EMCropDataset,
    val_set: EMCropDataset,
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = True,
    progress: bool = True,
    adversary: SegmentationAdversary | None = None,
    run_identity: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Train ``model`` and return its per-epoch history.

    After every epoch ``best.pt`` (when the validation VOI improved, or when there is none
    yet; :func:`selection_voi`) and then ``last.pt`` are written, atomically, so ``best.pt``
    exists whenever ``last.pt`` does.

    Args:
        model: a network mapping ``image`` batches to logits of ``target``'s shape.
        train_set: random augmented crops; :meth:`~EMCropDataset.set_epoch` is called
            every epoch.
        val_set: fixed validation crops.
        config: hyper-parameters.
        run_dir: where ``last.pt``, ``best.pt``, ``history.csv`` and ``run.json`` are
            written; locked while training (:mod:`emseg_lib.train.runs`).
        resume: continue from ``run_dir/last.pt`` when it exists; with False a folder that
            already holds a run is refused rather than overwritten.
        progress: show tqdm bars.
        adversary: optional discriminator on (image, cell map) pairs; its weighted
            adversarial term joins the BCE and it is updated after every network step.
        run_identity: what else identifies the run, as JSON values, e.g.
            ``{"data": volume_fingerprint(volume), "seed": 0, "profile": "quick"}``. With the
            architecture and the settings (all but :data:`RESUMABLE`) it is recorded in
            ``run.json`` and the checkpoints; resuming with any difference is refused.

    Returns:
        One row per epoch: ``epoch``, ``lr``, ``train_loss``, ``train_acc``, ``val_loss``,
        ``val_acc``, ``val_voi_before``, ``val_voi``, ``val_voi_split``, ``val_voi_merge``,
        ``val_arand`` and the CREMI-protocol scores, ``epoch_s`` (seconds, training and
        validation), ``val_s`` (seconds of validation), ``samples_per_s`` (training samples
        per second, validation excluded); with an adversary also ``train_adv_loss`` and
        ``train_d_loss``.

    Raises:
        EmsegInputError: ``epochs < 1``, ``minutes <= 0``, neither given; ``run_dir`` holds
            other files, another run (another
            identity, or any run with ``resume=False``) or is locked by another trainer.
        TrainingInterrupted: Ctrl-C; the checkpoints hold the last finished epoch and the
            same call resumes from it.
    """
    if config.epochs is None and config.minutes is None:
        raise EmsegInputError("epochs=None (no limit) needs a time budget (minutes)")
    if config.epochs is not None and config.epochs < 1:
        raise EmsegInputError(f"epochs must be >= 1, got {config.epochs}")
    if config.minutes is not None and not config.minutes > 0:
        raise EmsegInputError(f"minutes must be > 0, got {config.minutes}")
    if config.affinity_loss not in AFFINITY_LOSSES:
        raise EmsegInputError(f"affinity_loss must be one of {', '.join(AFFINITY_LOSSES)}, got "
                              f"{config.affinity_loss!r}")
    if config.boundary_loss not in BOUNDARY_LOSSES:
        raise EmsegInputError(f"boundary_loss must be one of {', '.join(BOUNDARY_LOSSES)}, got "
                              f"{config.boundary_loss!r}")
    run_dir = Path(run_dir)
    with training_run(run_dir, _identity(model, config, adversary, run_identity)) as identity:
        if not resume and (run_dir / LAST).exists():
            raise EmsegInputError(f"{run_dir}: already holds a run ({LAST}); resume it, or use "
                                  "another output folder")
        return _train(model, train_set, val_set, config, run_dir, identity, progress,
                      adversary)


def _train(model: nn.Module, train_set: EMCropDataset, val_set: EMCropDataset,
           config: TrainConfig, run_dir: Path, identity: dict[str, Any], progress: bool,
           adversary: SegmentationAdversary | None) -> pd.DataFrame:
    started = time.perf_counter()  # the time budget counts from here, on every (re)start
    device = pick_device(config.device)
    placement = Placement.choose(device, amp=config.amp, dims=model_entry(model).dims)
    placement.model(model)
    if adversary is not None:
        adversary.to(device)
    loss_fn = (AFFINITY_LOSSES[config.affinity_loss] if config.target == "affinities"
               else BOUNDARY_LOSSES[config.boundary_loss])
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas,
                                 eps=config.eps)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=config.plateau_factor, patience=config.plateau_patience,
        min_lr=config.lr * config.plateau_factor ** config.max_lr_reductions,
    )
    history: list[dict[str, float]] = []
    start_epoch = 0
    if (run_dir / LAST).exists():
        state = load_checkpoint(run_dir / LAST, map_location=device)
        check_identity(run_dir, LAST, state.get("identity"), identity)
        load_model_state(model, state, str(run_dir / LAST))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if adversary is not None:
            adversary.load_state_dict(state["adversary"])
        history = state["history"]
        start_epoch = state["epoch"] + 1
    best_voi = min((selection_voi(row) for row in history), default=float("inf"))
    workers = resolve_loader_workers(config.num_workers, device)
    scorers = 1 if workers == 0 else min(available_cores(), len(val_set) * val_set.crop_shape[0])
    with worker_pool(scorers) as pool:
        list(pool.map(abs, range(scorers)))  # fork the scorers now, before the loaders' workers
        train_loader = epoch_loader(train_set, config.batch_size, workers=workers, device=device)
        val_loader = epoch_loader(val_set, config.batch_size, workers=workers, device=device)
        planned = (itertools.count(start_epoch) if config.epochs is None
                   else range(start_epoch, config.epochs))
        epochs = progress_bar(planned, desc="epochs", disable=not progress,
                              initial=start_epoch, total=config.epochs)
        epoch = start_epoch
        log = TrainingLog(run_dir, start_epoch) if config.tensorboard else None
        try:
            for epoch in epochs:
                row = _epoch(model, train_loader, val_loader, loss_fn, optimizer, placement,
                             config, epoch, adversary, progress, pool)
                scheduler.step(row["val_loss"])
                history.append(row)
                epochs.set_postfix(**{"loss": f"{row['train_loss']:.3f}",
                                      "val VOI (CREMI protocol)": f"{selection_voi(row):.3f}"})
                state = {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "epoch": epoch, "history": history,
                    "torch_rng": torch.get_rng_state(), "model_spec": model_spec(model),
                    "config": dataclasses.asdict(config), "identity": identity,
                }
                if adversary is not None:
                    state["adversary"] = adversary.state_dict()
                if selection_voi(row) < best_voi or not (run_dir / BEST).exists():
                    best_voi = min(best_voi, selection_voi(row))
                    save_checkpoint(run_dir / BEST, state)
                save_checkpoint(run_dir / LAST, state)
                write_history(run_dir, history)
                if log is not None:  # after the checkpoints: they come first
                    log.epoch(row, model, val_set, placement)
                spent = time.perf_counter() - started
                if config.minutes is not None and spent >= 60 * config.minutes:
                    epochs.update(1)  # counted on the next iteration, which does not come
                    epochs.close()
                    print(f"time budget of {config.minutes:g} min ran out during epoch {epoch} "
                          f"({spent / 60:.1f} min spent): stopped after it; {run_dir} holds "
                          f"every finished epoch, and the same command resumes at epoch "
                          f"{epoch + 1} with a fresh budget", flush=True)
                    break
        except KeyboardInterrupt:
            epochs.close()
            raise TrainingInterrupted(f"{run_dir}: interrupted at epoch {epoch}; run the same "
                                      "command again to resume") from None
        finally:
            if log is not None:
                log.close()
    return pd.DataFrame(history)


def _epoch(model: nn.Module, train_loader: DataLoader, val_loader: DataLoader,
           loss_fn: LossFunction, optimizer: torch.optim.Optimizer, placement: Placement,
           config: TrainConfig, epoch: int, adversary: SegmentationAdversary | None,
           progress: bool, pool: SerialPool | ProcessPool) -> dict[str, float]:
    """Train one epoch and validate; returns the history row (without the scheduler step).

    Losses and accuracies stay on the device until the epoch ends (no synchronisation per
    step, unless an adversary is trained).
    """
    started = time.perf_counter()
    train_set = train_loader.dataset
    train_set.set_epoch(epoch)
    model.train()
    losses, accs, adversarial = [], [], []
    for batch in progress_bar(train_loader, desc=f"epoch {epoch}", leave=False,
                              disable=not progress):
        image = placement.batch(batch["image"])
        target = batch["target"].to(placement.device, non_blocking=True)
        with placement.autocast():
            logits = model(image)
            loss = loss_fn(logits, target)
            total = loss
            if adversary is not None:
                adv_loss = adversary.generator_loss(image, logits)
                total = loss + adversary.weight * adv_loss
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if adversary is not None:
            d_loss = adversary.discriminator_step(image, logits.float(), target)
            adversarial.append((adv_loss.item(), d_loss))
        losses.append(loss.detach())
        accs.append(((logits.detach() > 0) == (target > 0.5)).float().mean())
    # float32 values averaged in float64, as Python floats were
    losses = torch.stack(losses).cpu().numpy().astype(np.float64)
    accs = torch.stack(accs).cpu().numpy().astype(np.float64)
    train_s = time.perf_counter() - started
    row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"],
           "train_loss": float(np.mean(losses)), "train_acc": float(np.mean(accs))}
    if adversary is not None:
        row["train_adv_loss"], row["train_d_loss"] = np.mean(adversarial, axis=0).tolist()
    validation_started = time.perf_counter()
    row.update(_validate(model, val_loader, loss_fn, placement, config, pool))
    row["val_s"] = time.perf_counter() - validation_started
    row["epoch_s"] = time.perf_counter() - started
    row["samples_per_s"] = len(train_set) / train_s
    return row
