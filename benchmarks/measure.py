"""Throughput measurements for :mod:`throughput` (every rate in items per second).

On CUDA every timed region starts and ends with ``torch.cuda.synchronize``, so queued GPU
work is counted where it runs; warm-up calls (CUDA context, kernel selection, worker start)
come before the timed ones.
"""

from __future__ import annotations

import copy
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi
from torch import nn

from emseg_lib.data import EMCropDataset, EMVolume
from emseg_lib.data.gan_datasets import GanCropDataset
from emseg_lib.data.targets import cell_target, instance_boundary
from emseg_lib.inference import predict_volume
from emseg_lib.models import model_entry
from emseg_lib.models.boundless import BoundlessDiscriminator, BoundlessGenerator
from emseg_lib.models.stylegan import StyleDiscriminator, StyleGenerator
from emseg_lib.postprocess import METHODS, segment_volume
from emseg_lib.postprocess.reference import reference_flood, reference_seeded, reference_thesis
from emseg_lib.profiles import BoundlessPlan, StyleGANPlan, Tiling
from emseg_lib.report.thesis_numbers import GRID_EDGE_DELTA, GRID_SIG_TH
from emseg_lib.scoring.evaluation import evaluate_slices, threshold_grid
from emseg_lib.scoring.tuning import tune_thresholds
from emseg_lib.train import LAST, TrainConfig, fit, load_checkpoint
from emseg_lib.train.boundless import BoundlessConfig, discriminator_step, generator_step
from emseg_lib.train.checkpoint import save_checkpoint
from emseg_lib.train.feed import Placement
from emseg_lib.train.stylegan import StyleGANConfig, train_iteration


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(fn: Callable[[], Any], items_per_call: float, device: torch.device, *, warmup: int,
         repeats: int) -> float:
    """Items per second of ``fn`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return items_per_call * repeats / (time.perf_counter() - start)


def cpu_name() -> str:
    """The CPU's model name (Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_results(out: Path | None, name: str, table: str, payload: dict[str, Any]) -> None:
    """Print the Markdown ``table``; with ``out``, also write ``NAME.md`` and ``NAME.json``
    (``payload``) there, atomically."""
    import json

    from emseg_lib.infra.atomic_files import atomic_write_text

    print(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / f"{name}.md", table)
        atomic_write_text(out / f"{name}.json", json.dumps(payload, indent=1))


def seconds(fn: Callable[[], Any], device: torch.device | None = None) -> float:
    """Wall seconds of one call of ``fn``."""
    device = device or torch.device("cpu")
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def sample_rate(dataset: torch.utils.data.Dataset, count: int) -> float:
    """Samples per second of ``dataset[i]`` (crop, augmentation, target) in this process."""
    count = min(count, len(dataset))
    return rate(lambda: [dataset[i] for i in range(count)], count, torch.device("cpu"),
                warmup=1, repeats=1)


def bare_step_rate(model: nn.Module, batch: dict[str, torch.Tensor], placement: Placement, *,
                   warmup: int, repeats: int) -> float:
    """Training samples per second of fit's step alone (forward and BCE loss under the
    placement's autocast, backward, Adam) on one batch already on the device."""
    model = placement.model(copy.deepcopy(model)).train()
    config = TrainConfig()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas,
                                 eps=config.eps)
    loss_fn = nn.BCEWithLogitsLoss()
    image = placement.batch(batch["image"])
    target = batch["target"].to(placement.device)

    def step() -> None:
        with placement.autocast():
            loss = loss_fn(model(image), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return rate(step, len(image), placement.device, warmup=warmup, repeats=repeats)


def fit_rates(model: nn.Module, train: EMCropDataset, val: EMCropDataset, config: TrainConfig
              ) -> dict[str, float]:
    """:func:`fit` for ``config.epochs`` epochs in a temporary folder.

    Returns:
        ``samples_per_s`` (last epoch), ``first_epoch_samples_per_s``, ``val_s`` (mean per
        epoch), ``checkpoint_s`` (one write of ``last.pt`` or ``best.pt``, timed again after
        the run) and ``start_s`` (the rest of the run's wall time: start-up and the loaders'
        worker processes, once per run).
    """
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        history = fit(copy.deepcopy(model), train, val, config, run_dir, progress=False)
        wall = time.perf_counter() - start
        state = load_checkpoint(Path(run_dir) / LAST)
        checkpoint_s = seconds(lambda: save_checkpoint(Path(run_dir) / "timed.pt", state))
    voi = history["val_voi"].to_numpy()
    best_writes = 1 + int(np.sum(voi[1:] < np.minimum.accumulate(voi)[:-1]))
    return {"samples_per_s": float(history["samples_per_s"].iloc[-1]),
            "first_epoch_samples_per_s": float(history["samples_per_s"].iloc[0]),
            "val_s": float(history["val_s"].mean()), "checkpoint_s": checkpoint_s,
            "start_s": max(0.0, wall - float(history["epoch_s"].sum())
                           - (len(history) + best_writes) * checkpoint_s)}


def inference_rate(model: nn.Module, stack: np.ndarray, tiling: Tiling, device: torch.device
                   ) -> float:
    """Calls per second of :func:`predict_volume` on ``stack``, after one warm-up call:
    whole slices per second (2D networks) or ``stack`` volumes per second (3D networks)."""
    model = copy.deepcopy(model)
    dims = model_entry(model).dims
    warm = stack[:1] if dims == 2 else stack
    predict_volume(model, warm, tiling, device=str(device), progress=False)
    elapsed = seconds(lambda: predict_volume(model, stack, tiling, device=str(device),
                                             progress=False), device)
    return (len(stack) if dims == 2 else 1) / elapsed


def probability_map(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A network-like cell probability ``(Z, Y, X)``: the cell target blurred and noised."""
    target = cell_target(instance_boundary(labels.astype(np.int64)))
    blurred = ndi.gaussian_filter(target, (0, 1.5, 1.5))
    noise = np.random.default_rng(seed).normal(0.0, 0.08, labels.shape)
    return np.clip(blurred + noise, 0.0, 1.0).astype(np.float32)


def postprocess_rates(prob: np.ndarray, workers: list[int]) -> dict[str, dict[int, float]]:
    """Slices per second of :func:`segment_volume` (2D, each method's default thresholds)."""
    return {name: {n: len(prob) / seconds(lambda m=method, n=n: segment_volume(
                prob, m.name, m.defaults, workers=n)) for n in workers}
            for name, method in METHODS.items()}


def reference_segmenter(method: str, thresholds: dict[str, float]
                        ) -> Callable[[np.ndarray], np.ndarray]:
    """The SciPy / scikit-image code that ``method`` gives exactly, faster
    (:mod:`emseg_lib.postprocess.reference`), for one ``(Y, X)`` slice."""
    if method == "thesis":
        return lambda p: reference_flood(
            reference_thesis(p, thresholds["sig_th"], thresholds["edge_th"]), p)
    seeded = METHODS["seeded"]

    def segment(p: np.ndarray) -> np.ndarray:
        derived = seeded.derive(p, thresholds)  # the thresholds the library would use
        return reference_seeded(p, derived["seed_th"], derived["smooth_px"],
                                round(derived["min_seed_px"]))
    return segment


def reference_rates(prob: np.ndarray) -> dict[str, float]:
    """Slices per second on one process of :func:`reference_segmenter` at each method's
    defaults, ``(Z, Y, X)`` ``prob`` slice by slice: the baseline of the speed-up."""
    segmenters = {name: reference_segmenter(name, dict(m.defaults))
                  for name, m in METHODS.items()}
    return {name: len(prob) / seconds(lambda f=f: [f(p) for p in prob])
            for name, f in segmenters.items()}


def thesis_grid_rates(prob: np.ndarray, gt: np.ndarray, pixel_nm: float, workers: list[int]
                      ) -> dict[int, float]:
    """Seconds per ``(Y, X)`` slice of the thesis tables' 6 x 6 threshold grid
    (:func:`threshold_grid` on the ``(Z, Y, X)`` slices), ``{workers: seconds}``."""
    gt = gt.astype(np.int64)
    return {n: seconds(lambda n=n: threshold_grid(prob, gt, GRID_SIG_TH, GRID_EDGE_DELTA,
                                                  pixel_nm=pixel_nm, workers=n)) / len(prob)
            for n in workers}


def grid_seconds(prob: np.ndarray, gt: np.ndarray, pixel_nm: float) -> dict[str, float]:
    """Seconds per ``(Y, X)`` slice: every method's whole tuning grid (one process), the
    thesis tables' threshold grid, and the validation scores at one threshold pair."""
    prob, gt = prob[None], gt[None].astype(np.int64)
    out = {f"tune_{name}": seconds(lambda n=name: tune_thresholds(prob, gt, n,
                                                                  pixel_nm=pixel_nm))
           for name in METHODS}
    out["thesis_grid"] = seconds(lambda: threshold_grid(prob, gt, GRID_SIG_TH, GRID_EDGE_DELTA,
                                                        pixel_nm=pixel_nm))
    out["scores"] = seconds(lambda: evaluate_slices(prob, gt, 0.83, 0.91, pixel_nm=pixel_nm))
    return out


def boundless_gan_rate(raw: np.ndarray, plan: BoundlessPlan, device: torch.device, *,
                       warmup: int, repeats: int) -> float:
    """Training samples per second of the image-extension GAN (one G and one D step)."""
    dataset = GanCropDataset(raw, plan.crop, plan.batch_size, mask_kind="right")
    batch = torch.utils.data.default_collate([dataset[i] for i in range(plan.batch_size)])
    image, mask = batch["image"].to(device), batch["mask"].to(device)
    generator = BoundlessGenerator(width=plan.width).to(device)
    discriminator = BoundlessDiscriminator(widths=plan.d_widths).to(device)
    config = BoundlessConfig()
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr_g, betas=config.betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=config.betas)

    def step() -> None:
        generator_step(generator, discriminator, opt_g, image, mask, config.adv_weight)
        discriminator_step(generator, discriminator, opt_d, image, mask)

    return rate(step, plan.batch_size, device, warmup=warmup, repeats=repeats)


def stylegan_rates(raw: np.ndarray, plan: StyleGANPlan, device: torch.device, *, warmup: int,
                   repeats: int) -> dict[int, float]:
    """Iterations per second of StyleGAN training in each phase, ``{resolution: rate}``
    (timed at the phase's start, while its new block fades in)."""
    dataset = GanCropDataset(raw, plan.crop, plan.batch_size)
    crops = torch.utils.data.default_collate(
        [dataset[i] for i in range(plan.batch_size)])["image"].to(device)
    generator = StyleGenerator(plan.channels, style_dim=plan.style_dim).to(device)
    discriminator = StyleDiscriminator(plan.channels).to(device)
    modules = {"generator": generator, "discriminator": discriminator,
               "ema": copy.deepcopy(generator)}
    config = StyleGANConfig(schedule=plan.schedule, batch_size=plan.batch_size)
    optimizers = {"generator": torch.optim.Adam(generator.parameters(), betas=config.betas),
                  "discriminator": torch.optim.Adam(discriminator.parameters(),
                                                    betas=config.betas)}
    rates, start = {}, 0
    for resolution, length in plan.schedule:
        rates[resolution] = rate(lambda s=start: train_iteration(modules, optimizers, crops, s,
                                                                 config),
                                 1, device, warmup=warmup, repeats=repeats)
        start += length
    return rates


def volume_seconds(make: Callable[[], EMVolume]) -> tuple[EMVolume, float]:
    """The volume ``make()`` returns and the seconds it took."""
    start = time.perf_counter()
    volume = make()
    return volume, time.perf_counter() - start
