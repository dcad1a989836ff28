"""Training: the supervised loop, checkpoints and device handling."""

from emseg_lib.train.checkpoint import (
    BEST,
    HISTORY,
    LAST,
    Checkpoint,
    annotate_checkpoint,
    load_checkpoint,
    load_model_state,
    model_from_checkpoint,
    model_from_state,
)
from emseg_lib.train.loop import TrainConfig, fit

__all__ = [
    "BEST",
    "HISTORY",
    "LAST",
    "Checkpoint",
    "annotate_checkpoint",
    "TrainConfig",
    "fit",
    "load_checkpoint",
    "load_model_state",
    "model_from_checkpoint",
    "model_from_state",
]
