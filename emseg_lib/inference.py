"""Inference on whole slices and whole volumes.

* :func:`predict_volume` — any registered network on a ``(Z, Y, X)`` stack, run the way its
  :data:`~emseg_lib.models.MODELS` entry says (the one entry point for notebooks, drivers and
  the CLI);
* :func:`predict_slices` — a 2D network on every full slice of a ``(Z, Y, X)`` stack (slices are
  reflect-padded to a multiple the network accepts, the padding is cropped off again);
* :func:`predict_tiled` — a 3D network on a volume too large for one pass: overlapping tiles,
  the outer ``halo`` of every tile discarded where it borders another tile (its context is
  incomplete there) and the rest blended with linear ramps over the overlap. When ``halo`` is
  at least the network's receptive-field radius the result equals a single direct pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from emseg_lib.errors import EmsegInputError, check_ndim
from emseg_lib.infra.device import pick_device
from emseg_lib.infra.progress import progress_bar
from emseg_lib.models import model_entry
from emseg_lib.profiles import Tiling


def to_unit(volume: np.ndarray) -> np.ndarray:
    """The networks' input scale: uint8 -> float32 in [0, 1]; float input is taken as
    already scaled."""
    if volume.dtype == np.uint8:
        return volume.astype(np.float32) / 255.0
    return volume.astype(np.float32)


@torch.no_grad()
def predict_slices(model: nn.Module, volume: np.ndarray, *, multiple: int = 16,
                   batch_size: int = 4, device: str | None = None,
                   progress: bool = True) -> np.ndarray:
    """Cell probability (or affinities) of every slice of ``volume`` ``(Z, Y, X)`` with a 2D
    network.

    Args:
        model: maps ``(N, 1, H, W)`` to ``(N, C, H, W)`` logits.
        volume: uint8 or float in [0, 1].
        multiple: the network's size constraint (``2**(depth-1)`` for UNet2D).

    Returns:
        ``float32`` ``(Z, Y, X)`` probabilities (``C == 1``), else ``(C, Z, Y, X)``.
    """
    check_ndim("volume", volume, (3,), "(Z, Y, X)")
    dev = pick_device(device)
    model.to(dev).eval()
    _, height, width = volume.shape
    pad = ((0, 0), (0, -height % multiple), (0, -width % multiple))
    data = np.pad(to_unit(volume), pad, mode="reflect")
    channels = _out_channels(model)
    out = np.empty((channels, *volume.shape), dtype=np.float32)
    for start in progress_bar(range(0, len(data), batch_size), desc="slices", disable=not progress):
        batch = torch.from_numpy(data[start:start + batch_size, None]).to(dev)
        prob = torch.sigmoid(model(batch))[:, :, :height, :width]
        out[:, start:start + batch_size] = prob.cpu().numpy().transpose(1, 0, 2, 3)
    return out[0] if channels == 1 else out


def _out_channels(model: nn.Module) -> int:
    """The network's output channels (1 for a cell map)."""
    return int(getattr(model, "config", {}).get("out_channels", 1))


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    """Window starts covering ``[0, size)`` with windows ``tile`` long, ``overlap`` apart."""
    if tile >= size:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step)) + [size - tile]
    return sorted(set(starts))


def _ramp(length: int, at_start: bool, at_end: bool, halo: int, overlap: int) -> np.ndarray:
    """Blending weight along one axis of a window: 0 in an inner halo, then a linear ramp."""
    weight = np.ones(length, dtype=np.float64)
    ramp_len = max(overlap - 2 * halo, 1)
    ramp = np.arange(1, ramp_len + 1) / (ramp_len + 1)
    if not at_start:
        weight[:halo] = 0.0
        weight[halo:halo + ramp_len] = np.minimum(weight[halo:halo + ramp_len], ramp)
    if not at_end:
        weight[length - halo:] = 0.0
        tail = slice(length - halo - ramp_len, length - halo)
        weight[tail] = np.minimum(weight[tail], ramp[::-1])
    return weight


@torch.no_grad()
def predict_tiled(
    model: nn.Module,
    volume: np.ndarray,
    tile: Sequence[int],
    overlap: Sequence[int],
    halo: Sequence[int],
    *,
    out_channels: int = 1,
    device: str | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Tiled, blended inference of a 3D network over a ``(Z, Y, X)`` volume.

    Args:
        model: maps ``(1, 1, D, H, W)`` to ``(1, C, D, H, W)`` logits.
        volume: uint8 or float in [0, 1].
        tile: window size ``(D, H, W)`` (clipped to the volume).
        overlap: overlap of neighbouring windows per axis; must exceed ``2 * halo``.
        halo: per axis, how much of a window's inner border is discarded.
        out_channels: ``C``.

    Returns:
        ``float32`` probabilities ``(Z, Y, X)`` (``C == 1``) or ``(C, Z, Y, X)``.
    """
    check_ndim("volume", volume, (3,), "(Z, Y, X)")
    tile = [min(t, s) for t, s in zip(tile, volume.shape, strict=True)]
    for axis, (t, o, h) in enumerate(zip(tile, overlap, halo, strict=True)):
        if not (h >= 0 and o > 2 * h and o < t) and t < volume.shape[axis]:
            raise EmsegInputError(
                f"tiling axis {axis}: need 0 <= halo, 2 * halo < overlap < tile, got "
                f"halo={h}, overlap={o}, tile={t}"
            )
    dev = pick_device(device)
    model.to(dev).eval()
    data = to_unit(volume)
    total = np.zeros((out_channels, *volume.shape), dtype=np.float64)
    weights = np.zeros(volume.shape, dtype=np.float64)
    grids = [_starts(s, t, o) for s, t, o in zip(volume.shape, tile, overlap, strict=True)]
    windows = [(z, y, x) for z in grids[0] for y in grids[1] for x in grids[2]]
    for corner in progress_bar(windows, desc="tiles", disable=not progress):
        region = tuple(slice(c, c + t) for c, t in zip(corner, tile, strict=True))
        batch = torch.from_numpy(np.ascontiguousarray(data[region][None, None])).to(dev)
        prob = torch.sigmoid(model(batch))[0].cpu().numpy()
        axes = [_ramp(t, c == 0, c + t == s, h, o) for c, t, s, h, o
                in zip(corner, tile, volume.shape, halo, overlap, strict=True)]
        weight = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
        total[(slice(None), *region)] += prob * weight
        weights[region] += weight
    if np.any(weights == 0):
        raise EmsegInputError("tiling left voxels uncovered; increase overlap relative to halo")
    out = (total / weights).astype(np.float32)
    return out[0] if out_channels == 1 else out


def predict_volume(model: nn.Module, volume: np.ndarray, tiling: Tiling, *,
                   device: str | None = None, progress: bool = True) -> np.ndarray:
    """Cell probabilities ``(Z, Y, X)`` of a registered network on a whole stack (an
    affinity network: affinities ``(C, Z, Y, X)``).

    2D networks see every whole slice (padded to their size multiple); 3D networks see
    overlapping ``tiling`` windows, blended.

    Args:
        model: a :data:`~emseg_lib.models.MODELS` network.
        volume: ``(Z, Y, X)`` uint8, or float in [0, 1].
        tiling: the 3D windows (ignored for 2D networks).
    """
    entry = model_entry(model)
    if entry.dims == 3:
        return predict_tiled(model, volume, tiling.tile, tiling.overlap, tiling.halo,
                             out_channels=_out_channels(model), device=device,
                             progress=progress)
    return predict_slices(model, volume, multiple=entry.size_multiple(model), batch_size=1,
                          device=device, progress=progress)
