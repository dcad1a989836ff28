"""Pieces shared by the GAN training loops: batches, EMA, checkpoints, sample grids."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import image as mpl_image
from torch import nn

from emseg_lib.data.gan_datasets import GanCropDataset
from emseg_lib.errors import EmsegInputError, one_line
from emseg_lib.infra.atomic_files import atomic_path
from emseg_lib.models import model_spec
from emseg_lib.train.checkpoint import LAST, load_checkpoint, save_checkpoint
from emseg_lib.train.feed import epoch_loader
from emseg_lib.train.runs import check_identity, write_history

SAMPLES = "samples"


def endless_batches(dataset: GanCropDataset, batch_size: int, first_epoch: int = 0, *,
                    workers: int = 0, device: torch.device | None = None
                    ) -> Iterator[dict[str, torch.Tensor]]:
    """Batches forever, redrawing the dataset's samples every epoch.

    Args:
        workers: DataLoader worker processes (kept across epochs; 0 = in this process).
        device: where the batches go (pinned memory on CUDA); default the CPU.
    """
    loader = epoch_loader(dataset, batch_size, workers=workers,
                          device=device or torch.device("cpu"), drop_last=True)
    epoch = first_epoch
    while True:
        dataset.set_epoch(epoch)
        yield from loader
        epoch += 1


def set_trainable(model: nn.Module, trainable: bool) -> None:
    """Switch ``requires_grad`` of every parameter of ``model``."""
    for parameter in model.parameters():
        parameter.requires_grad_(trainable)


@torch.no_grad()
def ema_update(average: nn.Module, model: nn.Module, decay: float) -> None:
    """``average <- decay * average + (1 - decay) * model``, parameter by parameter."""
    for avg, new in zip(average.parameters(), model.parameters(), strict=True):
        avg.mul_(decay).add_(new.detach(), alpha=1 - decay)


def save_image_grid(images: torch.Tensor, path: Path, ncols: int = 8) -> Path:
    """Tile ``(N, 1, H, W)`` images in [-1, 1] into one grey PNG; returns its path."""
    array = images.detach().cpu().clamp(-1, 1).numpy()[:, 0]
    n, h, w = array.shape
    nrows = -(-n // ncols)
    grid = np.ones((nrows * (h + 2), ncols * (w + 2)), dtype=np.float32)
    for i, image in enumerate(array):
        r, c = divmod(i, ncols)
        grid[r * (h + 2):r * (h + 2) + h, c * (w + 2):c * (w + 2) + w] = (image + 1) / 2
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        mpl_image.imsave(tmp, grid, cmap="gray", vmin=0, vmax=1)
    return path


def gan_identity(modules: dict[str, nn.Module], config: Any, resumable: tuple[str, ...],
                 run_identity: dict[str, Any] | None) -> dict[str, Any]:
    """A GAN run's identity: ``run_identity``, each module's class and constructor arguments,
    and the settings of the ``config`` dataclass except the ``resumable`` fields."""
    architecture = {name: {"class": type(module).__name__,
                           "config": getattr(module, "config", None)}
                    for name, module in modules.items()}
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in resumable}
    return {**(run_identity or {}), "modules": architecture, "config": settings}


def resume_state(run_dir: Path, modules: dict[str, nn.Module],
                 optimizers: dict[str, torch.optim.Optimizer], resume: bool,
                 identity: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """Load ``run_dir/last.pt`` into the modules and optimizers when asked and present.

    Returns:
        The number of finished steps and the history so far (0 and [] for a fresh run).

    Raises:
        EmsegInputError: the checkpoint has another ``identity`` (:func:`gan_identity`), or
            it exists and ``resume`` is False (it is never overwritten by a fresh run).
    """
    if not (run_dir / LAST).exists():
        return 0, []
    if not resume:
        raise EmsegInputError(f"{run_dir}: already holds a run ({LAST}); resume it, or use "
                              "another output folder")
    state = load_checkpoint(run_dir / LAST)
    check_identity(run_dir, LAST, state.get("identity"), identity)
    for name, module in modules.items():
        try:
            module.load_state_dict(state["modules"][name])
        except (KeyError, RuntimeError) as err:
            raise EmsegInputError(
                f"{run_dir / LAST}: the checkpoint's {name} does not match the current "
                f"architecture (was the profile changed?); delete {run_dir} or use another "
                f"run directory. {one_line(err)}"
            ) from err
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(state["optimizers"][name])
    torch.set_rng_state(state["torch_rng"].cpu())
    return state["step"], state["history"]


def write_state(run_dir: Path, step: int, modules: dict[str, nn.Module],
                optimizers: dict[str, torch.optim.Optimizer], history: list[dict[str, Any]],
                config: dict[str, Any], identity: dict[str, Any]) -> None:
    """Write ``last.pt`` (everything needed to resume; ``model`` is the generator) and
    ``history.csv``, both atomically."""
    save_checkpoint(run_dir / LAST, {
        "model": modules["generator"].state_dict(),
        "model_spec": model_spec(modules["generator"]),
        "modules": {name: m.state_dict() for name, m in modules.items()},
        "optimizers": {name: o.state_dict() for name, o in optimizers.items()},
        "step": step, "history": history, "torch_rng": torch.get_rng_state(),
        "config": config, "identity": identity,
    })
    write_history(run_dir, history)
