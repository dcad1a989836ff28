"""Exceptions and argument checks shared by every module.

Every check raises :class:`EmsegInputError` with a message naming the offending file or
parameter and what was expected, so that bad input never gets silently clipped or guessed.
Importing this module (and so :mod:`emseg_lib`) loads no third-party library: the ``emseg``
command answers Ctrl-C with its one line while it loads them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


class EmsegInputError(ValueError):
    """Bad user input: a file, a dataset key, a shape or a parameter value."""


class EmsegWarning(UserWarning):
    """Input that is used as it is but that the user should know about (the CLI prints it as
    one line ``emseg: warning: ...``)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C after its last checkpoint was written intact.

    A :class:`KeyboardInterrupt`, so code that does not know it still stops; its message is
    one line saying where training stopped and how to resume (the CLI exits with 130).
    """


def one_line(err: BaseException) -> str:
    """The first non-empty line of ``err``'s message (library errors can span many lines)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def format_bytes(n_bytes: float) -> str:
    """``n_bytes`` in binary units for messages, e.g. ``"227.4 TiB"``."""
    size = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"


def check_unit_interval(name: str, value: float) -> float:
    """Return ``value`` as float if it lies in [0, 1], else raise naming ``name``."""
    value = float(value)
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise EmsegInputError(f"{name} must lie in [0, 1], got {value}")
    return value


def check_ndim(name: str, array: np.ndarray, ndims: Sequence[int], layout: str) -> None:
    """Raise unless ``array.ndim`` is one of ``ndims``; ``layout`` names the expected axes."""
    if array.ndim not in ndims:
        raise EmsegInputError(
            f"{name} must have shape {layout}, got an array of shape {array.shape}"
        )


def check_same_shape(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    """Raise unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise EmsegInputError(
            f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}; they must match"
        )


def check_probabilities(name: str, prob: np.ndarray) -> None:
    """Raise unless every value of ``prob`` is finite and lies in [0, 1].

    Catches logits passed by mistake and NaN/inf from a diverged network, which thresholds
    would otherwise silently treat as boundary.
    """
    import numpy as np

    lo, hi = np.min(prob), np.max(prob)  # in prob's dtype: printed with every digit it has
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = ~np.isfinite(prob)
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise EmsegInputError(
            f"{name} holds {int(bad.sum())} NaN/inf values (first at index {first}); "
            "probabilities must be finite numbers in [0, 1]"
        )
    if lo < 0.0 or hi > 1.0:
        raise EmsegInputError(
            f"{name} must hold probabilities in [0, 1], got values in [{lo!s}, {hi!s}]; "
            "apply a sigmoid to network logits first"
        )


def check_crop_fits(name: str, crop_shape: Sequence[int], volume_shape: Sequence[int]) -> None:
    """Raise unless a crop of ``crop_shape`` fits inside ``volume_shape`` on every axis."""
    if len(crop_shape) != len(volume_shape):
        raise EmsegInputError(
            f"{name} {tuple(crop_shape)} has {len(crop_shape)} axes but the volume has "
            f"shape {tuple(volume_shape)}"
        )
    if any(c < 1 for c in crop_shape):
        raise EmsegInputError(f"{name} must be positive on every axis, got {tuple(crop_shape)}")
    if any(c > v for c, v in zip(crop_shape, volume_shape, strict=True)):
        raise EmsegInputError(
            f"{name} {tuple(crop_shape)} is larger than the volume {tuple(volume_shape)}"
        )
