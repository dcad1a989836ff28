"""Exceptions and argument checks shared by every module.

Every check raises :class:`EmsegInputError` with a message naming the offending file or
parameter and what was expected, so that bad input never gets silently clipped or guessed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class EmsegInputError(ValueError):
    """Bad user input: a file, a dataset key, a shape or a parameter value."""


def check_unit_interval(name: str, value: float) -> float:
    """Return ``value`` as float if it lies in [0, 1], else raise naming ``name``."""
    value = float(value)
    if not 0.0 <= value <= 1.0 or np.isnan(value):
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
    """Raise unless every value of ``prob`` lies in [0, 1] (e.g. logits passed by mistake)."""
    lo, hi = float(np.min(prob)), float(np.max(prob))
    if lo < 0.0 or hi > 1.0:
        raise EmsegInputError(
            f"{name} must hold probabilities in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; "
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
