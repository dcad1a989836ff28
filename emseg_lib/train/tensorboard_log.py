"""TensorBoard event files of a training run, in ``<run_dir>/tensorboard/``.

The GAN loops log their history rows (StyleGAN every iteration, Boundless every evaluation;
their samples stay PNG files in the run folder). In a supervised run every epoch adds its
history row as scalars (``train/loss``, ``validation/cremi_voi_split``,
``lr``, ``speed/samples_per_s`` ...; the names of :func:`~emseg_lib.train.loop.fit`'s history
columns) and one prediction image per logged validation crop: the crop, its target and the
network's probabilities side by side (the middle slice of a 3D crop), all on a 0–1 grey scale.
A resumed run drops the points after its last finished epoch and goes on
(``purge_step``). Watch a run with ``tensorboard --logdir RUN_DIR`` (or the parent folder of
many runs).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emseg_lib.data.datasets import EMCropDataset
from emseg_lib.train.feed import Placement

TENSORBOARD = "tensorboard"
#: validation crops shown as prediction images every epoch
LOGGED_CROPS = 2


def scalar_tag(column: str) -> str:
    """TensorBoard tag of a history column: ``train_loss`` -> ``train/loss``, ``val_voi`` ->
    ``validation/voi``, seconds and rates under ``speed/``."""
    if column in ("epoch_s", "val_s", "samples_per_s"):
        return f"speed/{column}"
    for prefix, group in (("train_", "train"), ("val_", "validation")):
        if column.startswith(prefix):
            return f"{group}/{column.removeprefix(prefix)}"
    return column


def _grey(image: np.ndarray) -> np.ndarray:
    """``image`` stretched to 0–1 (a constant image becomes 0)."""
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def _middle(array: np.ndarray) -> np.ndarray:
    """``(H, W)`` of a ``(C, H, W)`` or ``(C, D, H, W)`` crop: channel 0, middle slice."""
    array = array[0]
    return array[array.shape[0] // 2] if array.ndim == 3 else array


class TrainingLog:
    """The event files of one run (``<run_dir>/tensorboard``); ``first_step``: the first
    step (epoch, iteration) this process logs: points from an earlier process at or after it
    are dropped (a resumed run repeats no step)."""

    def __init__(self, run_dir: Path, first_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD),
                                    purge_step=first_step if first_step else None)

    def scalars(self, row: dict[str, Any], step: int, step_column: str) -> None:
        """Every finite number of a history ``row`` at ``step`` (``step_column`` not)."""
        for column, value in row.items():
            if column != step_column and isinstance(value, int | float) \
                    and math.isfinite(value):
                self.writer.add_scalar(scalar_tag(column), float(value), step)

    def epoch(self, row: dict[str, Any], model: nn.Module, val_set: EMCropDataset,
              placement: Placement) -> None:
        """Log one epoch's history row and the predictions on the first validation crops."""
        step = int(row["epoch"])
        self.scalars(row, step, "epoch")
        model.eval()
        with torch.no_grad():
            for i in range(min(LOGGED_CROPS, len(val_set))):
                item = val_set[i]
                with placement.autocast():
                    logits = model(placement.batch(item["image"][None]))
                prob = torch.sigmoid(logits[0].float()).cpu().numpy()
                panel = np.concatenate([_grey(_middle(item["image"].numpy())),
                                        _middle(item["target"].numpy()), _middle(prob)], axis=1)
                self.writer.add_image(f"prediction/crop{i}_image_target_probability",
                                      panel[None].astype(np.float32), step, dataformats="CHW")
        self.writer.flush()

    def close(self) -> None:
        """Write what is pending and close the files."""
        self.writer.close()
