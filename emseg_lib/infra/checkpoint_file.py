"""The verified checkpoint file: one code-free format for every trained network.

Every checkpoint, supervised or GAN, and the Boundless ``generator.pt`` used for transfer
learning, is a ``torch.save`` dict holding only tensors and plain values (str, int, float,
bool, None, lists, tuples, dicts) with

* ``format`` (``"emseg-checkpoint"``) and ``version`` (:data:`VERSION`);
* ``model``: the state dict of the network used afterwards (UNet, segmenter, GAN generator);
* ``model_spec``: ``{"name", "config"}`` to rebuild it (:func:`~emseg_lib.models.build_model`);
* ``weights_sha256``: :func:`weights_sha256` of the weights, and ``content_sha256``:
  :func:`content_sha256` of everything else too (optimizer state, history, RNG state, ...),
  both checked at every load;

plus what its writer needs to resume (:mod:`emseg_lib.train.checkpoint`) and entries added
later by :func:`annotate_checkpoint` (e.g. ``postprocess``).

Files are read with ``torch.load(weights_only=True)``: a file holding anything else, such
as a pickled object whose ``__reduce__`` would run code, is refused before any of it runs;
they are written atomically (:func:`~emseg_lib.infra.atomic_files.atomic_stream`). This module
knows no network, so that the models (:mod:`emseg_lib.models.pretrained`) read weights through it
without importing training.
"""

from __future__ import annotations

import hashlib
import pickle
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emseg_lib.errors import EmsegInputError, one_line
from emseg_lib.infra.atomic_files import atomic_stream

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


def annotated(path: str | Path, state: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Write the verified ``state`` read from ``path`` with the entry ``key`` added (or
    replaced), atomically; what was written.

    Used to store what is learned after training, e.g. post-processing thresholds tuned on the
    validation split (``key="postprocess"``, a dict of floats and strings). ``value`` must be
    plain (numpy scalars are converted); the weights and format entries cannot be replaced.
    """
    if key in _RESERVED:
        raise EmsegInputError(f"checkpoint entry {key!r} is written by emseg itself; choose "
                              "another key")
    return save_checkpoint(path, {**state, key: value})


def annotate_checkpoint(path: str | Path, key: str, value: Any) -> None:
    """:func:`annotated` of the checkpoint at ``path``."""
    annotated(path, load_checkpoint(path), key, value)
