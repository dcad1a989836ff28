"""Big input volumes opened to be read chunk by chunk: raw data and cell probabilities, read
once and checked before any work (:class:`~emseg_lib.data.volumes.CheckedVolume`), and the
inputs of block jobs named for them to read box by box (:class:`BlockInput`).

Every input is opened through :func:`~emseg_lib.data.readers.open_input`; HDF5 datasets and
zarr arrays are read chunk by chunk, a TIFF stack or slice folder is read whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emseg_lib.data.readers import InputVolume, Role, format_of, open_input
from emseg_lib.data.validate import check_fits_in_memory
from emseg_lib.data.volume_ref import VolumeRef
from emseg_lib.data.volumes import (
    CheckedVolume,
    check_volume_header,
    probability_volume,
    raw_volume,
)
from emseg_lib.data.zarr_store import ZyxView, split_zarr_path
from emseg_lib.errors import EmsegInputError

#: the formats block jobs read box by box from the file
BLOCK_FORMATS = ("hdf5", "zarr")
#: how messages name a volume of each role
_WHAT = {"raw": "the raw data", "probabilities": "the probability map"}


@contextmanager
def open_raw_volume(path: Path, key: str | None = None, *,
                    default_resolution: tuple[float, ...], rescale: bool, chunk_slices: int,
                    flag: str | None = None
                    ) -> Iterator[tuple[CheckedVolume, tuple[float, float, float], InputVolume]]:
    """The raw volume ``(Z, Y, X)`` of ``path`` read once and checked (uint8, or
    ``rescale``d to 0..255), then served chunk by chunk; its resolution (stored, else
    ``default_resolution``) and the opened input (for its stored dtype and name).

    Raises:
        EmsegInputError: see :func:`~emseg_lib.data.readers.open_input` and
            :func:`~emseg_lib.data.volumes.raw_volume`.
    """
    with open_input(path, key, role="raw", flag=flag) as source:
        check_volume_header(source.array, source.path, source.describe("the raw array"),
                            chunk_slices)
        resolution = source.resolution(default_resolution)
        raw = raw_volume(source.array, source.path, rescale=rescale, chunk_slices=chunk_slices)
        yield raw, resolution, source


@contextmanager
def open_probability_volume(path: Path, key: str | None = None, *,
                            default_resolution: tuple[float, ...], chunk_slices: int,
                            flag: str | None = None
                            ) -> Iterator[tuple[CheckedVolume, tuple[float, ...]]]:
    """The cell probability volume ``(Z, Y, X)`` of ``path``, read and checked once (NaN,
    range, damage: naming the slice) and then served chunk by chunk, and its resolution
    (stored, else ``default_resolution``)."""
    with open_input(path, key, role="probabilities", flag=flag) as source:
        check_volume_header(source.array, source.path,
                            source.describe("the probability map"), chunk_slices)
        resolution = source.resolution(default_resolution)
        yield probability_volume(source.array, source.path, chunk_slices=chunk_slices), \
            resolution


@dataclass(frozen=True)
class BlockInput:
    """An input named for block jobs to read (only its header read here).

    Attributes:
        reference: what the jobs open.
        shape: ``(Z, Y, X)``, affinities ``(C, Z, Y, X)``.
        dtype: the stored dtype.
        resolution: voxel size in nm ``(z, y, x)``: stored, else the default given.
        where: the file or ``STORE.zarr/KEY``, for messages.
    """

    reference: VolumeRef
    shape: tuple[int, ...]
    dtype: np.dtype
    resolution: tuple[float, float, float]
    where: Path


def volume_reference(source: InputVolume, role: str = "raw", invert: bool = False
                     ) -> VolumeRef:
    """The opened HDF5 dataset or zarr array ``source`` named for block jobs."""
    if isinstance(source.array, ZyxView):
        raise EmsegInputError(f"{source.path}: its axes are not stored as (z, y, x); block "
                              "jobs read zarr arrays stored z, y, x (rewrite it)")
    if source.format == "hdf5":
        return VolumeRef(str(source.path), source.array.name, zarr=False, role=role,
                         invert=invert)
    store, key = split_zarr_path(source.path)
    return VolumeRef(str(store), key, zarr=True, role=role, invert=invert)


def affinity_header(array, where: Path) -> tuple[int, ...]:
    """The ``(C, Z, Y, X)`` shape of affinities, checked: 2 or 3 channels, float or uint8,
    each channel one that fits in memory a slice at a time; nothing read."""
    shape = tuple(int(n) for n in array.shape)
    if len(shape) != 4 or shape[0] not in (2, 3) or 0 in shape:
        raise EmsegInputError(f"{where}: affinities must be (C, Z, Y, X) with C = 3 (z, y, x) "
                              f"or 2 (y, x), got shape {shape}")
    dtype = np.dtype(array.dtype)
    if not (np.issubdtype(dtype, np.floating) or dtype == np.uint8):
        raise EmsegInputError(f"{where}: affinities must be float in [0, 1] (or uint8 "
                              f"0..255), got {dtype}")
    check_fits_in_memory(where, [("an affinity slice", (shape[0], 1, *shape[2:]), dtype)])
    return shape


def block_input(path: Path, key: str | None = None, *, role: Role,
                default_resolution: tuple[float, ...], chunk_slices: int,
                invert: bool = False, flag: str | None = None) -> BlockInput:
    """The ``role`` volume of ``path`` for block jobs to read box by box; only its header
    is read and checked here (the blocks are checked as they are read).

    Raises:
        EmsegInputError: not an HDF5 file or zarr store, a zarr image not stored
            ``(z, y, x)``, a header that :func:`~emseg_lib.data.volumes.check_volume_header`
            (or, for affinities, :func:`affinity_header`) refuses, or what
            :func:`~emseg_lib.data.readers.open_input` refuses.
    """
    if format_of(path) not in BLOCK_FORMATS:
        raise EmsegInputError(f"{path}: block jobs read their blocks from the file: give an "
                              "HDF5 file or a zarr store (convert a TIFF stack or a slice "
                              "folder first)")
    with open_input(path, key, role=role, flag=flag) as source:
        reference = volume_reference(source, role, invert)
        if role == "affinities":
            shape = affinity_header(source.array, path)
        else:
            check_volume_header(source.array, source.path, _WHAT[role], chunk_slices)
            shape = tuple(int(n) for n in source.array.shape)
        return BlockInput(reference, shape, np.dtype(source.array.dtype),
                          source.resolution(default_resolution), source.path)
