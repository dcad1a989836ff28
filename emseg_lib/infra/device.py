"""Device choice and seeding."""

from __future__ import annotations

import torch

from emseg_lib.errors import EmsegInputError

#: device types emseg can run on
DEVICE_TYPES = ("cpu", "cuda", "mps")


def _parse(requested: str) -> torch.device:
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError, ValueError):
        device = None
    if device is not None and device.type == "cpu" and device.index not in (None, 0):
        raise EmsegInputError(f"device={requested!r}: the CPU has no numbered devices; use cpu")
    if device is None or device.type not in DEVICE_TYPES:
        raise EmsegInputError(f"device={requested!r} is not a device emseg can use; use cpu, "
                              "cuda or cuda:N (N = the GPU's number)")
    return device


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` if given (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``), else CUDA when
    present.

    Raises:
        EmsegInputError: a string that is no such device, or a device this machine lacks
            (no CUDA, a GPU number beyond the GPUs present, no MPS).
    """
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = _parse(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EmsegInputError(f"device={requested!r} asked for CUDA but none is available")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        raise EmsegInputError(f"device={requested!r}: this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s), numbered from 0")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise EmsegInputError(f"device={requested!r} asked for MPS but none is available")
    return device


def seed_everything(seed: int) -> None:
    """Seed torch's CPU and CUDA generators (weight init, dropout).

    NumPy randomness in emseg_lib always flows through explicit ``numpy.random.Generator``
    objects built from seeds, so no global NumPy state is involved.
    """
    torch.manual_seed(seed)
