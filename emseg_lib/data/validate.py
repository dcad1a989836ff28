"""Checks made while a stack is read, before any long work: memory, intensities, label ids.

Each raises :class:`~emseg_lib.EmsegInputError` with one line naming the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emseg_lib.errors import EmsegInputError, format_bytes

_MEMINFO = Path("/proc/meminfo")
_CGROUP = Path("/sys/fs/cgroup")


def _cgroup_free() -> int | None:
    try:
        limit = (_CGROUP / "memory.max").read_text().strip()
        used = int((_CGROUP / "memory.current").read_text())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - used)


def _meminfo_available() -> int | None:
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes of memory a new array can use, or None when the system does not say.

    Linux: ``MemAvailable`` of ``/proc/meminfo``, lowered to the container's (cgroup v2)
    remaining limit when there is one; elsewhere the physical memory size.
    """
    free = _meminfo_available()
    if free is None:
        free = _physical_memory()
    known = [value for value in (free, _cgroup_free()) if value is not None]
    return min(known) if known else None


def check_fits_in_memory(source: str | Path,
                         arrays: Sequence[tuple[str, Sequence[int], np.dtype]]) -> None:
    """Raise unless arrays of the claimed shapes and dtypes fit in the available memory.

    Args:
        source: the file, for the message.
        arrays: ``(what, shape, dtype)`` of every array about to be read, as its header
            claims (a corrupt header can claim terabytes).
    """
    need = sum(math.prod(int(n) for n in shape) * np.dtype(dtype).itemsize
               for _, shape, dtype in arrays)
    free = available_memory()
    if free is not None and need > free:
        claimed = ", ".join(f"{what} {tuple(int(n) for n in shape)} {np.dtype(dtype)}"
                            for what, shape, dtype in arrays)
        raise EmsegInputError(
            f"{source}: {claimed} would need {format_bytes(need)} of memory but "
            f"{format_bytes(free)} is available; is the file's header corrupt? Otherwise crop "
            "the stack or use a machine with more memory"
        )


def raw_as_uint8(raw: np.ndarray, source: str | Path, *, rescale: bool) -> np.ndarray:
    """``(Z, Y, X)`` raw intensities as uint8, converted only when asked.

    Args:
        raw: ``(Z, Y, X)`` intensities of any numeric dtype.
        source: the file, for messages.
        rescale: map the values linearly from their min..max to 0..255 (rounded); without
            it anything but uint8 is refused.

    Raises:
        EmsegInputError: not uint8 without ``rescale``; not numbers; NaN or inf values
            (named by slice index, never rescaled around).
    """
    if raw.dtype == np.uint8:
        return raw
    if not rescale:
        raise EmsegInputError(f"{source}: raw data is {raw.dtype}, expected uint8; pass "
                              "--rescale to map its min..max to 0..255")
    if raw.dtype.kind not in "biuf":
        raise EmsegInputError(f"{source}: raw data is {raw.dtype}; only numbers can be "
                              "rescaled to 0..255")
    check_finite_raw(raw, source)
    return rescale_to_uint8(raw, float(raw.min()), float(raw.max()))


def check_finite_raw(raw: np.ndarray, source: str | Path, first_slice: int = 0) -> None:
    """Raise if float ``raw`` ``(Z, Y, X)`` holds NaN or inf, naming the first such slice
    (numbered from ``first_slice``, for a chunk of a larger stack)."""
    if raw.dtype.kind != "f":
        return
    for z, image in enumerate(raw, start=first_slice):
        bad = int(np.count_nonzero(~np.isfinite(image)))
        if bad:
            raise EmsegInputError(
                f"{source}: raw slice {z} holds {bad} NaN/inf values; fix or drop that "
                "slice (--rescale maps finite intensities only)"
            )


def rescale_to_uint8(raw: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``raw`` ``(Z, Y, X)`` mapped linearly from ``lo..hi`` to ``0..255`` (rounded) as uint8.

    ``lo`` and ``hi`` are the whole stack's, so that a stack rescaled chunk by chunk equals
    one rescaled at once (:func:`raw_as_uint8`).
    """
    out = np.empty(raw.shape, dtype=np.uint8)
    for z, image in enumerate(raw):  # slice by slice: no float64 copy of the whole stack
        out[z] = np.rint((image.astype(np.float64) - lo) / max(hi - lo, 1e-12) * 255)
    return out


def check_label_ids(labels: np.ndarray, source: str | Path) -> None:
    """Raise if integer ``labels`` ``(Z, Y, X)`` hold a negative id (naming its first slice)."""
    if not np.issubdtype(labels.dtype, np.signedinteger) or labels.size == 0:
        return
    lowest = int(labels.min())
    if lowest < 0:
        z = next(z for z, image in enumerate(labels) if image.min() < 0)
        raise EmsegInputError(
            f"{source}: labels hold negative ids (lowest {lowest}, first in slice {z}); "
            "neuron ids must be non-negative integers (0 = unlabelled)"
        )


#: the smallest voxel side read as nm; below it a voxel size was most likely written in
#: micrometres (CREMI's 40 x 4 x 4 nm is 0.04 x 0.004 x 0.004 um), which would make every
#: pixel-based length (the CREMI protocol's 25 nm band) hundreds of times too wide
MIN_VOXEL_NM = 0.5


def check_plausible_nm(resolution: tuple[float, ...], where: str) -> None:
    """Raise when a voxel size in nm has a side below :data:`MIN_VOXEL_NM` (micrometres
    taken for nanometres), one line naming ``where`` and the values."""
    if min(resolution) < MIN_VOXEL_NM:
        raise EmsegInputError(
            f"{where} is {tuple(resolution)}, read as nm: a voxel side below "
            f"{MIN_VOXEL_NM:g} nm, so it is most likely in micrometres; emseg reads voxel sizes "
            "in nm (CREMI: 40, 4, 4), store it in nm")


def checked_resolution(value: object, where: str) -> tuple[float, float, float]:
    """A stored ``resolution`` attribute as three positive finite numbers of nm ``(z, y, x)``,
    none below :data:`MIN_VOXEL_NM` (:func:`check_plausible_nm`).

    Raises:
        EmsegInputError: anything else (text, the wrong count, zero, negative, NaN, inf,
            micrometres), one line naming ``where`` (e.g. ``"FILE: 'resolution' attribute"``)
            and what was found.
    """
    try:
        resolution = tuple(float(r) for r in np.ravel(np.asarray(value)))
    except (TypeError, ValueError):
        resolution = None
    if resolution is None or len(resolution) != 3 or not all(
            math.isfinite(r) and r > 0 for r in resolution):
        found = repr(value) if resolution is None else repr(resolution)
        raise EmsegInputError(f"{where} must be three positive numbers (z, y, x) in nm, "
                              f"got {found}")
    check_plausible_nm(resolution, where)
    return resolution  # type: ignore[return-value]
