"""Checkpoints of training runs: the run folder's files and the networks rebuilt from them.

A run directory holds ``last.pt``, ``best.pt``, ``history.csv`` and ``run.json``
(:mod:`emseg_lib.train.runs`). Each checkpoint is a verified file of
:mod:`emseg_lib.checkpoint_file` (whose :func:`save_checkpoint`, :func:`load_checkpoint`,
:func:`annotate_checkpoint` and checksums this module re-exports) holding, besides the
network, what its writer needs to resume: ``optimizer``, ``scheduler``, ``epoch``,
``history``, ``torch_rng``, ``config`` and ``identity`` (:func:`~emseg_lib.train.fit`);
``modules``, ``optimizers`` and ``step`` (the GAN loops). ``last.pt`` is written after every
epoch, ``best.pt`` whenever the validation VOI after watershed improves.
:func:`model_from_checkpoint` rebuilds the :data:`~emseg_lib.models.MODELS` network a
checkpoint holds, its architecture checked first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from emseg_lib.checkpoint_file import (
    annotate_checkpoint,
    content_sha256,
    load_checkpoint,
    save_checkpoint,
    weights_sha256,
)
from emseg_lib.errors import EmsegInputError, one_line
from emseg_lib.models import MODELS, build_model

LAST = "last.pt"
BEST = "best.pt"
HISTORY = "history.csv"

__all__ = ["BEST", "HISTORY", "LAST", "annotate_checkpoint", "content_sha256",
           "load_checkpoint", "load_model_state", "model_from_checkpoint", "model_from_state",
           "save_checkpoint", "weights_sha256"]


def model_from_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                          ) -> nn.Module:
    """Rebuild the segmentation network saved in a checkpoint, with its weights, in eval mode.

    Raises:
        EmsegInputError: see :func:`load_checkpoint`; also a checkpoint without an
            architecture, or one holding a GAN generator rather than a segmentation network.
    """
    return model_from_state(load_checkpoint(path, map_location), path)


def model_from_state(state: dict[str, Any], path: str | Path) -> nn.Module:
    """:func:`model_from_checkpoint` of a checkpoint already read by :func:`load_checkpoint`
    from ``path`` (named in the messages), so that a caller needing its other entries too
    reads and verifies the file once."""
    spec = state["model_spec"]
    name = spec.get("name") if isinstance(spec, dict) else None
    if name not in MODELS:
        raise EmsegInputError(f"{path}: holds a {name!r}, not a segmentation network "
                              f"({', '.join(sorted(MODELS))}); pass a UNet run's best.pt")
    _check_architecture(spec, state["model"], path)
    model = build_model(spec)
    load_model_state(model, state, str(path))
    return model.eval()


def _check_architecture(spec: dict[str, Any], weights: Any, path: Path | str) -> None:
    """Raise unless ``spec`` builds a network whose weights have the names and shapes of
    ``weights``; built without memory (on the ``meta`` device), so that a damaged or foreign
    ``model_spec`` (unknown settings, a width claiming petabytes) is one line, not a crash."""
    try:
        with torch.device("meta"):
            skeleton = build_model(spec)
    except EmsegInputError:
        raise
    except Exception as err:  # constructors raise TypeError, ValueError, ... for bad settings
        raise EmsegInputError(f"{path}: its model_spec {_brief(spec)} cannot be built "
                              f"({one_line(err)}); use a checkpoint written by emseg") from err
    expected = {key: tuple(value.shape) for key, value in skeleton.state_dict().items()}
    stored = {key: tuple(value.shape) for key, value in weights.items()
              if isinstance(value, torch.Tensor)}
    if stored != expected:
        differ = sorted(set(stored.items()) ^ set(expected.items()))[:1]
        raise EmsegInputError(
            f"{path}: checkpoint was saved from a different architecture than its model_spec "
            f"{_brief(spec)} builds (first difference: {differ[0][0] if differ else '?'}); "
            "use a checkpoint written by emseg"
        )


def _brief(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def load_model_state(model: nn.Module, state: dict[str, Any], source: str) -> None:
    """Load ``state["model"]`` into ``model``; a different architecture is a clear error."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise EmsegInputError(
            f"{source}: checkpoint was saved from a different architecture "
            f"({state.get('model_spec', 'unknown')}) than {type(model).__name__}: "
            f"{one_line(err)}"
        ) from err
