"""Checkpoints of training runs: the run folder's files and the networks rebuilt from them.

A run directory holds ``last.pt``, ``best.pt``, ``history.csv`` and ``run.json``
(:mod:`emseg_lib.train.runs`). Each checkpoint is a verified file of
:mod:`emseg_lib.infra.checkpoint_file` (whose :func:`save_checkpoint`, :func:`load_checkpoint`,
:func:`annotate_checkpoint` and checksums this module re-exports) holding, besides the
network, what its writer needs to resume: ``optimizer``, ``scheduler``, ``epoch``,
``history``, ``torch_rng``, ``config`` and ``identity`` (:func:`~emseg_lib.train.fit`);
``modules``, ``optimizers`` and ``step`` (the GAN loops). ``last.pt`` is written after every
epoch, ``best.pt`` whenever the validation VOI after watershed improves.
:func:`model_from_checkpoint` rebuilds the :data:`~emseg_lib.models.MODELS` network a
checkpoint holds, its architecture checked first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emseg_lib.errors import EmsegInputError, one_line
from emseg_lib.infra.checkpoint_file import (
    annotate_checkpoint,
    annotated,
    content_sha256,
    load_checkpoint,
    save_checkpoint,
    weights_sha256,
)
from emseg_lib.models import MODELS, build_model

LAST = "last.pt"
BEST = "best.pt"
HISTORY = "history.csv"

__all__ = ["BEST", "HISTORY", "LAST", "Checkpoint", "annotate_checkpoint", "content_sha256",
           "load_checkpoint", "load_model_state", "model_from_checkpoint", "model_from_state",
           "save_checkpoint", "weights_sha256"]


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read and verified once (:func:`load_checkpoint`): the one way ``best.pt``
    is read. It carries the network (:meth:`model`), what it was trained with and the
    post-processing learned on its validation split (:attr:`learned`).

    Attributes:
        path: the file, named in every message.
        state: its verified entries.
    """

    path: Path
    state: Mapping[str, Any]

    @classmethod
    def read(cls, path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
        """Read and verify ``path`` (raises as :func:`load_checkpoint`)."""
        return cls(Path(path), load_checkpoint(path, map_location))

    @property
    def epoch(self) -> int | None:
        """The epoch whose weights it holds (None for files without one)."""
        return self.state.get("epoch")

    @property
    def trained_profile(self) -> str | None:
        """The profile of the run that wrote it (its run identity), None if not recorded."""
        identity = self.state.get("identity")
        return identity.get("profile") if isinstance(identity, dict) else None

    @property
    def learned(self) -> dict[str, Any] | None:
        """The post-processing learned on the validation split, checked
        (:func:`~emseg_lib.scoring.tuning.learned_entry`); None when nothing was learned."""
        from emseg_lib.scoring.tuning import learned_entry

        return learned_entry(self.state.get("postprocess"), self.path)

    def model(self) -> nn.Module:
        """The segmentation network with its weights, in eval mode (raises as
        :func:`model_from_state`)."""
        return model_from_state(dict(self.state), self.path)

    def annotate(self, key: str, value: Any) -> Checkpoint:
        """:func:`~emseg_lib.infra.checkpoint_file.annotated`: the entry ``key`` added and written,
        without reading the file again; the checkpoint with it."""
        return Checkpoint(self.path, annotated(self.path, dict(self.state), key, value))


def model_from_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                          ) -> nn.Module:
    """Rebuild the segmentation network saved in a checkpoint, with its weights, in eval mode
    (:meth:`Checkpoint.model`).

    Raises:
        EmsegInputError: see :func:`load_checkpoint`; also a checkpoint without an
            architecture, or one holding a GAN generator rather than a segmentation network.
    """
    return Checkpoint.read(path, map_location).model()


def model_from_state(state: dict[str, Any], path: str | Path) -> nn.Module:
    """The segmentation network of a checkpoint's verified ``state`` read from ``path``
    (named in the messages): :meth:`Checkpoint.model`."""
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
