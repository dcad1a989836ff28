"""Checkpoints: one verified, code-free format for every trained network.

A run directory holds ``last.pt``, ``best.pt``, ``history.csv`` and ``run.json``
(:mod:`emseg_lib.train.runs`). Every checkpoint, supervised or GAN, and the Boundless
``generator.pt`` used for transfer learning, is a ``torch.save`` dict holding only tensors
and plain values (str, int, float, bool, None, lists, tuples, dicts) with

* ``format`` (``"emseg-checkpoint"``) and ``version`` (1);
* ``model``: the state dict of the network used afterwards (UNet, segmenter, GAN generator);
* ``model_spec``: ``{"name", "config"}`` to rebuild it (:func:`~emseg_lib.models.build_model`);
* ``weights_sha256``: :func:`weights_sha256` of the weights, and ``content_sha256``:
  :func:`content_sha256` of everything else too (optimizer state, history, RNG state, ...),
  both checked at every load;

plus what its writer needs to resume: ``optimizer``, ``scheduler``, ``epoch``, ``history``,
``torch_rng``, ``config`` and ``identity`` (:func:`~emseg_lib.train.fit`); ``modules``,
``optimizers`` and ``step`` (the GAN loops); entries added later by
:func:`annotate_checkpoint` (e.g. ``postprocess``).

Files are read with ``torch.load(weights_only=True)``: a file holding anything else, such
as a pickled object whose ``__reduce__`` would run code, is refused before any of it runs.
``last.pt`` is written after every epoch, ``best.pt`` whenever the validation VOI after
watershed improves; both atomically (:func:`~emseg_lib.atomic.atomic_stream`).
"""

from __future__ import annotations

import hashlib
import pickle
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emseg_lib.atomic import atomic_stream
from emseg_lib.errors import EmsegInputError, one_line
from emseg_lib.models import MODELS, build_model

LAST = "last.pt"
BEST = "best.pt"
HISTORY = "history.csv"
FORMAT = "emseg-checkpoint"
VERSION = 2
#: entries whose tensors :func:`weights_sha256` covers
WEIGHT_KEYS = ("model", "modules", "adversary")
_CHECKSUMS = ("weights_sha256", "content_sha256")
_RESERVED = ("format", "version", *_CHECKSUMS, "model", "model_spec")
_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def _tensors(value: Any, name: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        yield name, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f"{name}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _tensors(item, f"{name}[{index}]")


def weights_sha256(state: dict[str, Any]) -> str:
    """Hex SHA-256 over every tensor under ``model``, ``modules`` and ``adversary``.

    Each tensor contributes its name, dtype and shape and then its bytes, in the state
    dicts' key order, so a changed value, shape or name changes the digest.
    """
    digest = hashlib.sha256()
    for key in WEIGHT_KEYS:
        for name, tensor in _tensors(state.get(key), key):
            data = tensor.detach().cpu().contiguous()
            digest.update(f"{name}:{data.dtype}:{tuple(data.shape)}\n".encode())
            digest.update(data.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _feed(digest: Any, name: str, value: Any) -> None:
    """Hash ``value`` (tensors by dtype, shape and bytes; plain values by type and repr)."""
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous()
        digest.update(f"{name}:tensor:{data.dtype}:{tuple(data.shape)}\n".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, dict):
        digest.update(f"{name}:dict:{len(value)}\n".encode())
        for key, item in value.items():
            _feed(digest, f"{name}.{key!r}", item)
    elif isinstance(value, list | tuple):
        digest.update(f"{name}:{type(value).__name__}:{len(value)}\n".encode())
        for index, item in enumerate(value):
            _feed(digest, f"{name}[{index}]", item)
    else:
        digest.update(f"{name}:{type(value).__name__}:{value!r}\n".encode())


def content_sha256(state: dict[str, Any]) -> str:
    """Hex SHA-256 of every entry of a checkpoint but its checksums, in key order."""
    digest = hashlib.sha256()
    for key in sorted(key for key in state if key not in _CHECKSUMS):
        _feed(digest, key, state[key])
    return digest.hexdigest()


def _plain(value: Any, where: str) -> Any:
    """``value`` with numpy scalars made Python ones; anything not plain is a TypeError."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, dict):
        items = ((key, _plain(item, f"{where}.{key}")) for key, item in value.items())
        return OrderedDict(items) if isinstance(value, OrderedDict) else dict(items)
    if isinstance(value, list | tuple):
        items = [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    raise TypeError(f"checkpoint entry {where} is a {type(value).__name__}; checkpoints hold "
                    "only tensors, str, int, float, bool, None, lists, tuples and dicts")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> dict[str, Any]:
    """Write ``state`` (with ``model`` and ``model_spec``) as a verified checkpoint, atomically.

    Adds ``format``, ``version``, ``weights_sha256`` and ``content_sha256``; a crash or
    Ctrl-C mid-write leaves the previous file intact.

    Returns:
        What was written (``state`` as plain values, with the added entries).
    """
    path = Path(path)
    missing = [key for key in ("model", "model_spec") if key not in state]
    if missing:
        raise ValueError(f"{path}: a checkpoint needs {missing}")
    plain = _plain(dict(state), "state")
    plain.update(format=FORMAT, version=VERSION, weights_sha256=weights_sha256(plain))
    plain["content_sha256"] = content_sha256(plain)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_stream(path) as stream:  # a full disk: an OSError naming path
        torch.save(plain, stream)
    return plain


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """Read and verify a checkpoint written by :func:`save_checkpoint`.

    Raises:
        EmsegInputError: one line naming the file: missing, unreadable or truncated, holding
            objects that are not tensors or plain values, not in the emseg format, or with
            weights that do not match their SHA-256.
    """
    path = Path(path)
    if path.is_dir():
        raise EmsegInputError(f"{path}: is a folder, not a checkpoint file (a run folder's "
                              "checkpoint is RUN/best.pt)")
    if not path.is_file():
        raise EmsegInputError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "unsupported global" in str(err).lower():
            raise EmsegInputError(
                f"{path}: refused: the file holds Python objects besides tensors and plain "
                "values (such a file can run code when loaded); use a checkpoint written by "
                "emseg"
            ) from err
        raise EmsegInputError(f"{path}: not a readable torch checkpoint (damaged, or not a "
                              "file written by torch.save)") from err
    except Exception as err:  # torch raises many kinds for corrupt or truncated files
        raise EmsegInputError(f"{path}: not a readable torch checkpoint ({one_line(err)}); "
                              "is the file complete?") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise EmsegInputError(
            f"{path}: not an emseg checkpoint (no '{FORMAT}' marker: written by another tool "
            "or by an emseg without verified checkpoints); retrain to get one"
        )
    version = state.get("version")
    if version != VERSION:
        raise EmsegInputError(f"{path}: checkpoint format version {version!r} is not the one "
                              f"this emseg reads ({VERSION}); retrain, or use the emseg that "
                              "wrote it")
    missing = [key for key in ("model", "model_spec") if not isinstance(state.get(key), dict)]
    if missing:
        raise EmsegInputError(f"{path}: an emseg checkpoint without {' or '.join(missing)} "
                              "(the network's weights and architecture); use a checkpoint "
                              "written by emseg training")
    if state.get("weights_sha256") != weights_sha256(state):
        raise EmsegInputError(
            f"{path}: the weights do not match their SHA-256 checksum (the file was corrupted "
            "or modified after it was written); use another copy or retrain"
        )
    if state.get("content_sha256") != content_sha256(state):
        raise EmsegInputError(
            f"{path}: the checkpoint's contents (optimizer state, history, settings) do not "
            "match their SHA-256 checksum (the file was corrupted or modified after it was "
            "written); use another copy or retrain"
        )
    return state


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read and verified once (:func:`load_checkpoint`): the one way ``best.pt``
    is read. It carries the network (:meth:`model`), what it was trained on and the
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
        (:func:`~emseg_lib.tuning.learned_entry`); None when nothing was learned."""
        from emseg_lib.tuning import learned_entry

        return learned_entry(self.state.get("postprocess"), self.path)

    def model(self) -> nn.Module:
        """The segmentation network with its weights, in eval mode (raises as
        :func:`model_from_state`)."""
        return model_from_state(dict(self.state), self.path)

    def annotate(self, key: str, value: Any) -> Checkpoint:
        """Add (or replace) the entry ``key``, written atomically; the checkpoint with it.

        Used to store what is learned after training, e.g. post-processing thresholds tuned
        on the validation split (``key="postprocess"``, a dict of floats and strings).
        ``value`` must be plain (numpy scalars are converted); the weights and format entries
        cannot be replaced.
        """
        if key in _RESERVED:
            raise EmsegInputError(f"checkpoint entry {key!r} is written by emseg itself; "
                                  "choose another key")
        return Checkpoint(self.path, save_checkpoint(self.path, {**self.state, key: value}))


def annotate_checkpoint(path: str | Path, key: str, value: Any) -> None:
    """:meth:`Checkpoint.annotate` of the checkpoint at ``path``."""
    Checkpoint.read(path).annotate(key, value)


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
