"""Training checkpoints: everything needed to resume a run exactly.

A run directory holds ``last.pt``, ``best.pt`` and ``history.csv``.
A checkpoint is a ``torch.save`` dict with the model, optimizer and scheduler states, the
last finished epoch, the torch RNG state, the model's constructor description and the
training configuration. ``last.pt`` is written after every epoch, ``best.pt`` whenever the
validation VOI after watershed improves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from emseg_lib.errors import EmsegInputError
from emseg_lib.models import build_model

LAST = "last.pt"
BEST = "best.pt"
HISTORY = "history.csv"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (a crash mid-write leaves the previous file intact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, with a clear error if it is not."""
    path = Path(path)
    if not path.is_file():
        raise EmsegInputError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # torch raises many kinds for corrupt files
        raise EmsegInputError(f"{path}: not a readable torch checkpoint ({err})") from err
    if not isinstance(state, dict) or "model" not in state:
        raise EmsegInputError(f"{path}: not an emseg checkpoint (no 'model' state)")
    return state


def annotate_checkpoint(path: str | Path, key: str, value: Any) -> None:
    """Add (or replace) the entry ``key`` of the checkpoint at ``path``, atomically.

    Used to store what is learned after training, e.g. post-processing thresholds tuned on the
    validation split (``key="postprocess"``).
    """
    path = Path(path)
    state = load_checkpoint(path)
    state[key] = value
    save_checkpoint(path, state)


def model_from_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                          ) -> nn.Module:
    """Rebuild the model saved in a checkpoint, with its weights, in eval mode."""
    state = load_checkpoint(path, map_location)
    if "model_spec" not in state:
        raise EmsegInputError(f"{path}: checkpoint does not record its model architecture")
    model = build_model(state["model_spec"])
    load_model_state(model, state, str(path))
    return model.eval()


def load_model_state(model: nn.Module, state: dict[str, Any], source: str) -> None:
    """Load ``state["model"]`` into ``model``; a different architecture is a clear error."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise EmsegInputError(
            f"{source}: checkpoint was saved from a different architecture "
            f"({state.get('model_spec', 'unknown')}) than {type(model).__name__}: {first}"
        ) from err
