"""Device choice and seeding."""

from __future__ import annotations

import torch

from emseg_lib.errors import EmsegInputError


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` if given (``"cpu"``, ``"cuda"``, ``"cuda:1"``), else CUDA when present."""
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EmsegInputError(f"device={requested!r} asked for CUDA but none is available")
    return device


def seed_everything(seed: int) -> None:
    """Seed torch's CPU and CUDA generators (weight init, dropout).

    NumPy randomness in emseg_lib always flows through explicit ``numpy.random.Generator``
    objects built from seeds, so no global NumPy state is involved.
    """
    torch.manual_seed(seed)
