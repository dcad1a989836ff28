"""The one home of "which format is this path, and open it" for every input.

:func:`format_of` names the format of a path, as elf's ``open_file`` does: by suffix
(``.hdf``, ``.h5``, ``.hdf5``: HDF5; ``.tif``, ``.tiff``: a TIFF stack), a zarr store by a
part of the path ending in ``.zarr`` or by its metadata (OME-Zarr too), a folder of slices.
:func:`open_input` opens the volume a role needs in it: an HDF5 dataset or a zarr array to
be read whole or chunk by chunk (nothing is read yet), a TIFF stack or slice folder read
whole (:func:`read_array`). Messages name the file; a caller may pass the key ``flag`` of
its command line (``--raw-key``) for them to name too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
import zarr

from emseg_lib.data.cremi import (
    AFFINITIES_KEY,
    LABELS_KEY,
    PROBABILITY_KEY,
    RAW_KEY,
    dataset_names,
    hdf5_has,
    hdf5_node,
    open_hdf5,
    read_dataset,
    volume_dataset,
)
from emseg_lib.data.image_stacks import TIFF_SUFFIXES, read_folder, read_tiff
from emseg_lib.data.validate import checked_resolution
from emseg_lib.data.volumes import hdf5_resolution
from emseg_lib.data.zarr_store import (
    ZarrArray,
    ZyxView,
    array_names,
    is_zarr,
    open_store,
    open_zarr,
    read_zarr,
    split_zarr_path,
)
from emseg_lib.errors import EmsegInputError

HDF5_SUFFIXES = (".hdf", ".h5", ".hdf5")
Format = Literal["hdf5", "zarr", "tiff", "folder"]
#: what a volume holds: raw intensities and label ids ``(Z, Y, X)``, cell probabilities
#: ``(Z, Y, X)``, nearest-neighbour affinities ``(C, Z, Y, X)``
Role = Literal["raw", "labels", "probabilities", "affinities"]
#: the HDF5 dataset of raw data and labels when no key is given
HDF5_KEYS: dict[str, str] = {"raw": RAW_KEY, "labels": LABELS_KEY}


def format_of(path: str | Path) -> Format | None:
    """The format of the input ``path`` (which need not exist for a suffix to tell it):
    ``"hdf5"``, ``"zarr"`` (a store or an array in one), ``"folder"`` (of slices),
    ``"tiff"``, or None for a path that names none of them."""
    path = Path(path)
    if path.suffix.lower() in HDF5_SUFFIXES:
        return "hdf5"
    if is_zarr(path):
        return "zarr"
    if path.is_dir():
        return "folder"
    if path.suffix.lower() in TIFF_SUFFIXES:
        return "tiff"
    return None


def read_array(path: str | Path) -> np.ndarray:
    """A ``(Z, Y, X)`` array from a TIFF stack or a folder of slices, read whole.

    Raises:
        EmsegInputError: a missing path, an unknown format (HDF5 and zarr inputs are opened
            by :func:`open_input`), an unreadable or non-3-D stack.
    """
    path = Path(path)
    if not path.exists():
        raise EmsegInputError(f"{path}: not found")
    kind = format_of(path)
    if kind == "folder":
        array = read_folder(path)
    elif kind == "tiff":
        array = read_tiff(path)
    else:
        raise EmsegInputError(
            f"{path}: unknown format '{path.suffix}'; use HDF5 ({', '.join(HDF5_SUFFIXES)}), "
            f"zarr (.zarr), a TIFF stack ({', '.join(TIFF_SUFFIXES)}) or a folder of PNG/TIFF "
            "slices"
        )
    if array.ndim != 3:
        raise EmsegInputError(f"{path}: expected a (Z, Y, X) stack, got shape {array.shape}")
    return array


@contextmanager
def open_array(path: str | Path, key: str, stored_as: Format
               ) -> Iterator[h5py.Dataset | zarr.Array]:
    """The dataset or array ``key`` of the HDF5 file or zarr store ``path``, opened with no
    checks: for block jobs reading box after box of an input checked once
    (:class:`~emseg_lib.data.volume_ref.VolumeRef`)."""
    if stored_as == "zarr":
        yield zarr.open_array(path, path=key, mode="r")
        return
    with h5py.File(path, "r") as handle:
        yield handle[key]


@dataclass(frozen=True)
class InputVolume:
    """An input volume, opened (an HDF5 dataset or a zarr array: nothing read yet) or read
    whole (a TIFF stack, a slice folder).

    Attributes:
        array: the volume ``(Z, Y, X)`` (affinities ``(C, Z, Y, X)``): an ``h5py.Dataset``,
            a ``zarr.Array``, a :class:`~emseg_lib.data.zarr_store.ZyxView` of an OME-Zarr
            image or an ``np.ndarray``; each has ``shape``, ``dtype`` and slicing.
        path: the file, the slice folder, or ``STORE.zarr/KEY``, for messages.
        key: the dataset in the HDF5 file, else ``""``.
        format: the input's format (:func:`format_of`).
        stored_resolution: the voxel size in nm ``(z, y, x)`` a zarr array stores, else
            None (HDF5: :meth:`resolution` reads the dataset's attribute).
    """

    array: h5py.Dataset | zarr.Array | ZyxView | np.ndarray
    path: Path
    key: str
    format: Format
    stored_resolution: tuple[float, float, float] | None = None

    def resolution(self, default: tuple[float, ...]) -> tuple[float, float, float]:
        """The voxel size in nm ``(z, y, x)`` the input stores, else ``default``."""
        if self.format == "hdf5":
            return hdf5_resolution(self.array, self.path, default)
        return self.stored_resolution or tuple(default)

    def read(self) -> np.ndarray:
        """The whole volume, if it fits in the available memory; a damaged file or chunk is
        one error line."""
        if self.format == "hdf5":
            return read_dataset(self.array, self.path)
        if self.format == "zarr":
            return read_zarr(ZarrArray(self.array, self.path, self.stored_resolution))
        return self.array

    def describe(self, what: str) -> str:
        """How messages name the volume: ``'KEY'`` in an HDF5 file, else ``what``."""
        return f"'{self.key}'" if self.format == "hdf5" else what


def _with(flag: str | None) -> str:
    return f" with {flag}" if flag else ""


def _affinity_name(path: Path, key: str | None, names: list[str],
                   ndims: dict[str, int], flag: str | None) -> str:
    """The affinities' dataset or array among ``names``: ``key``, else
    :data:`~emseg_lib.data.cremi.AFFINITIES_KEY`, else the only 4-D one."""
    if key is not None:
        if key not in names:
            raise EmsegInputError(f"{path}: '{key}' not found"
                                  + (f" ({flag})" if flag else "")
                                  + f"; present: {names or 'none'}")
        return key
    four = [name for name in names if ndims[name] == 4]
    if AFFINITIES_KEY in four or len(four) == 1:
        return AFFINITIES_KEY if AFFINITIES_KEY in four else four[0]
    raise EmsegInputError(f"{path}: no '{AFFINITIES_KEY}'; name the affinities{_with(flag)} "
                          f"(4-D arrays: {four or 'none'})")


def _hdf5_probability_key(handle: h5py.File, path: Path, key: str | None,
                          flag: str | None) -> str:
    if key is not None:
        if not hdf5_has(handle, key, path) or not isinstance(hdf5_node(handle, key, path),
                                                              h5py.Dataset):
            raise EmsegInputError(f"{path}: dataset '{key}' not found"
                                  + (f" ({flag})" if flag else ""))
        return key
    if hdf5_has(handle, PROBABILITY_KEY, path):
        hdf5_node(handle, PROBABILITY_KEY, path)
        return PROBABILITY_KEY
    volumes: list[str] = []
    handle.visititems(lambda name, node: volumes.append(name)
                      if isinstance(node, h5py.Dataset) and node.ndim == 3 else None)
    if len(volumes) != 1:
        raise EmsegInputError(f"{path}: no '{PROBABILITY_KEY}' dataset; name the probability "
                              f"dataset{_with(flag)} (3-D datasets: {volumes or 'none'})")
    return volumes[0]


def _hdf5_dataset(handle: h5py.File, path: Path, key: str | None, role: Role,
                  flag: str | None) -> h5py.Dataset:
    """The dataset of ``role`` in the open HDF5 file ``path``."""
    if role == "probabilities":
        return hdf5_node(handle, _hdf5_probability_key(handle, path, key, flag), path)
    if role == "affinities":
        names: list[str] = []
        handle.visititems(lambda n, node: names.append(n)
                          if isinstance(node, h5py.Dataset) else None)
        name = _affinity_name(path, key, names, {n: handle[n].ndim for n in names}, flag)
        return handle[name]
    name = key or HDF5_KEYS[role]
    if flag is None and not hdf5_has(handle, name, path):
        raise EmsegInputError(f"{path}: dataset '{name}' not found; datasets present: "
                              f"{sorted(dataset_names(handle)) or 'none'}")
    return volume_dataset(handle, name, path, flag=flag)


def _zarr_probabilities(path: Path, key: str | None, flag: str | None) -> ZarrArray:
    """The probability array of a zarr store: named (path or ``key``), in its usual
    places, or the store's only 3-D array."""
    store, inner = split_zarr_path(path)
    if key is not None or inner:
        return open_zarr(path, key, role="probabilities", flag=flag)
    found = open_zarr(store, role="probabilities", required=False, flag=flag)
    if found is not None:
        return found
    group = open_store(store)
    volumes = [name for name in array_names(group) if group[name].ndim == 3]
    if len(volumes) != 1:
        raise EmsegInputError(f"{path}: no '{PROBABILITY_KEY}' array; name the probability "
                              f"array{_with(flag)} (3-D arrays: {volumes or 'none'})")
    return open_zarr(store / volumes[0])


def _zarr_affinities(path: Path, key: str | None, flag: str | None) -> ZarrArray:
    """The affinity array ``(C, Z, Y, X)`` of a zarr store: named (path or ``key``),
    :data:`~emseg_lib.data.cremi.AFFINITIES_KEY`, or the store's only 4-D array."""
    store, inner = split_zarr_path(path)
    root = open_store(store)
    if isinstance(root, zarr.Array):
        array, name = root, ""
    else:
        names = array_names(root)
        given = "/".join(part for part in (inner, key or "") if part) or None
        name = _affinity_name(path, given, names, {n: root[n].ndim for n in names}, flag)
        array = root[name]
    resolution = (checked_resolution(array.attrs["resolution"], f"{path}: its resolution")
                  if "resolution" in array.attrs else None)
    return ZarrArray(array, store / name if name else store, resolution)


def _zarr_array(path: Path, key: str | None, role: Role, flag: str | None) -> ZarrArray:
    if role == "probabilities":
        return _zarr_probabilities(path, key, flag)
    if role == "affinities":
        return _zarr_affinities(path, key, flag)
    return open_zarr(path, key, role=role, flag=flag)


@contextmanager
def open_input(path: str | Path, key: str | None = None, *, role: Role = "raw",
               flag: str | None = None) -> Iterator[InputVolume]:
    """The ``role`` volume of the input ``path``, whatever its format: the one dispatch.

    Args:
        path: an HDF5 file, a zarr store or an array in one (``volume.zarr/raw``), a TIFF
            stack or a folder of slices.
        key: the dataset or array in an HDF5 file or zarr store; None: the role's usual
            places (:data:`HDF5_KEYS`, the CREMI layout's probabilities and affinities,
            :data:`~emseg_lib.data.zarr_store.DEFAULT_KEYS`; probabilities and affinities
            also the only 3-D or 4-D one).
        role: what the volume holds (:data:`Role`).
        flag: the command-line flag that names ``key``, for messages (None: none named).

    Yields:
        The volume (:class:`InputVolume`); an HDF5 file stays open inside the ``with``.

    Raises:
        EmsegInputError: a missing file, an unknown format, a file that cannot be opened, a
            missing dataset or array (naming those present), a key for a TIFF stack or
            folder; each message names the file.
    """
    path = Path(path)
    kind = format_of(path)
    if kind == "hdf5":
        with open_hdf5(path) as handle:
            dataset = _hdf5_dataset(handle, path, key, role, flag)
            yield InputVolume(dataset, path, dataset.name.lstrip("/"), "hdf5")
        return
    if kind == "zarr":
        source = _zarr_array(path, key, role, flag)
        yield InputVolume(source.array, source.path, "", "zarr", source.resolution)
        return
    if key is not None:
        raise EmsegInputError(f"{flag or repr(key)} names a dataset of an HDF5 file or a zarr "
                              f"store, not of {path}")
    array = read_array(path)  # a folder or a TIFF stack; any other path is refused
    yield InputVolume(array, path, "", "folder" if kind == "folder" else "tiff")
