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
import os
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.record_writer import RecordWriter
from torch import nn
from torch.utils.tensorboard.summary import image, scalar

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
    are dropped (a resumed run repeats no step).

    Written synchronously in this thread (no writer thread: an error such as a full disk is
    an ``OSError`` where training handles its checkpoint errors, and no thread outlives the
    loop), one file per process, opened at the first point (an interrupted start leaves none).
    """

    def __init__(self, run_dir: Path, first_step: int) -> None:
        self.folder, self.first_step = Path(run_dir) / TENSORBOARD, first_step
        self.records: RecordWriter | None = None

    def _write(self, summary: Summary, step: int) -> None:
        if self.records is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            name = (f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}."
                    f"{os.getpid()}.{self.first_step}")
            self.records = RecordWriter(open(self.folder / name, "ab"))  # noqa: SIM115
            for event in (Event(step=self.first_step, file_version="brain.Event:2"),
                          Event(step=self.first_step,
                                session_log=SessionLog(status=SessionLog.START))):
                event.wall_time = time.time()
                self.records.write(event.SerializeToString())
        self.records.write(Event(wall_time=time.time(), step=step,
                                 summary=summary).SerializeToString())

    def scalars(self, row: dict[str, Any], step: int, step_column: str) -> None:
        """Every finite number of a history ``row`` at ``step`` (``step_column`` not)."""
        for column, value in row.items():
            if column != step_column and isinstance(value, int | float) \
                    and math.isfinite(value):
                self._write(scalar(scalar_tag(column), float(value)), step)
        self.flush()

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
                self._write(image(f"prediction/crop{i}_image_target_probability",
                                  panel[None].astype(np.float32), dataformats="CHW"), step)
        self.flush()

    def flush(self) -> None:
        """Hand what was written to the operating system."""
        if self.records is not None:
            self.records.flush()

    def close(self) -> None:
        """Close the file (nothing is pending: every write is flushed)."""
        if self.records is not None:
            self.records.close()
            self.records = None
