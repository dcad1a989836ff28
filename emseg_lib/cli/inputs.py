"""The big inputs of ``emseg segment`` and ``emseg postprocess``, opened to be read chunk by
chunk: an HDF5 dataset or a zarr array wrapped in a
:class:`~emseg_lib.data.volumes.CheckedVolume` (read once and checked before any work), any
other format loaded whole."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import zarr

from emseg_lib.cli.common import load_volume, open_hdf5
from emseg_lib.data.cremi import (
    PROBABILITY_KEY,
    RAW_KEY,
    hdf5_has,
    hdf5_node,
    volume_dataset,
)
from emseg_lib.data.formats import HDF5_SUFFIXES, read_array
from emseg_lib.data.volume_ref import VolumeRef
from emseg_lib.data.volumes import (
    CheckedVolume,
    check_volume_header,
    hdf5_resolution,
    probability_volume,
    raw_volume,
)
from emseg_lib.data.zarr_store import (
    ZarrArray,
    ZyxView,
    array_names,
    is_zarr,
    open_zarr,
    split_zarr_path,
)
from emseg_lib.errors import EmsegInputError


def _announce_raw(name: str, raw: CheckedVolume, dtype: np.dtype,
                  resolution: tuple[float, ...]) -> None:
    print(f"{name} shape {raw.shape} (Z, Y, X), {dtype}"
          f"{', rescaled to 0..255' if dtype != np.uint8 else ''}, resolution {resolution} nm")


@contextmanager
def open_raw(args: argparse.Namespace) -> Iterator[tuple[Any, tuple[float, float, float]]]:
    """The ``--data`` raw volume and its resolution: an HDF5 dataset (``--raw-key``, default
    ``volumes/raw``) or a zarr array read chunk by chunk
    (:func:`~emseg_lib.data.volumes.raw_volume`), any other format loaded whole."""
    chunked = args.data.suffix.lower() in HDF5_SUFFIXES or is_zarr(args.data)
    if not chunked:
        volume = load_volume(args)
        yield volume.raw, volume.resolution
        return
    if args.labels is not None or args.labels_key is not None:
        raise EmsegInputError(f"{args.data}: segmenting needs no labels; drop --labels / "
                              "--labels-key")
    if is_zarr(args.data):
        source = open_zarr(args.data, args.raw_key, role="raw")
        check_volume_header(source.array, source.path, "the raw array", args.chunk_slices)
        resolution = source.resolution or tuple(args.resolution)
        raw = raw_volume(source.array, source.path, rescale=args.rescale,
                         chunk_slices=args.chunk_slices)
        _announce_raw(f"{source.path}:", raw, source.dtype, resolution)
        yield raw, resolution
        return
    key = args.raw_key or RAW_KEY
    with open_hdf5(args.data) as handle:
        dataset = volume_dataset(handle, key, args.data)
        check_volume_header(dataset, args.data, f"'{key}'", args.chunk_slices)
        resolution = hdf5_resolution(dataset, args.data, tuple(args.resolution))
        raw = raw_volume(dataset, args.data, rescale=args.rescale,
                         chunk_slices=args.chunk_slices)
        _announce_raw(f"{args.data}: '{key}'", raw, dataset.dtype, resolution)
        yield raw, resolution


def _hdf5_probability_key(handle: h5py.File, path: Path, key: str | None) -> str:
    if key is not None:
        if not hdf5_has(handle, key, path) or not isinstance(hdf5_node(handle, key, path),
                                                              h5py.Dataset):
            raise EmsegInputError(f"{path}: dataset '{key}' not found (--prob-key)")
        return key
    if hdf5_has(handle, PROBABILITY_KEY, path):
        hdf5_node(handle, PROBABILITY_KEY, path)
        return PROBABILITY_KEY
    volumes: list[str] = []
    handle.visititems(lambda name, node: volumes.append(name)
                      if isinstance(node, h5py.Dataset) and node.ndim == 3 else None)
    if len(volumes) != 1:
        raise EmsegInputError(f"{path}: no '{PROBABILITY_KEY}' dataset; name the probability "
                              f"dataset with --prob-key (3-D datasets: {volumes or 'none'})")
    return volumes[0]


def _zarr_probabilities(path: Path, key: str | None) -> ZarrArray:
    """The probability array of a zarr store: named (path or ``--prob-key``), in its usual
    places, or the store's only 3-D array."""
    store, inner = split_zarr_path(path)
    if key is not None or inner:
        return open_zarr(path, key, role="probabilities", flag="--prob-key")
    found = open_zarr(store, role="probabilities", required=False, flag="--prob-key")
    if found is not None:
        return found
    group = zarr.open_group(store, mode="r")
    volumes = [name for name in array_names(group) if group[name].ndim == 3]
    if len(volumes) != 1:
        raise EmsegInputError(f"{path}: no '{PROBABILITY_KEY}' array; name the probability "
                              f"array with --prob-key (3-D arrays: {volumes or 'none'})")
    return open_zarr(store / volumes[0])


@contextmanager
def open_probabilities(path: Path, key: str | None, default: tuple[float, ...],
                       chunk_slices: int) -> Iterator[tuple[CheckedVolume, tuple[float, ...]]]:
    """The probability volume, read and checked once (NaN, range, damage: naming the slice)
    and then served chunk by chunk, and its resolution (stored, else ``default``)."""
    if path.suffix.lower() in HDF5_SUFFIXES:
        with open_hdf5(path) as handle:
            dataset = hdf5_node(handle, _hdf5_probability_key(handle, path, key), path)
            check_volume_header(dataset, path, f"'{dataset.name.lstrip('/')}'", chunk_slices)
            resolution = hdf5_resolution(dataset, path, default)
            yield probability_volume(dataset, path, chunk_slices=chunk_slices), resolution
        return
    if is_zarr(path):
        source = _zarr_probabilities(path, key)
        check_volume_header(source.array, source.path, "the probability map", chunk_slices)
        yield (probability_volume(source.array, source.path, chunk_slices=chunk_slices),
               source.resolution or default)
        return
    if key is not None:
        raise EmsegInputError(f"--prob-key applies to HDF5 files and zarr stores, not to {path}")
    array = read_array(path)
    check_volume_header(array, path, "the probability map", chunk_slices)
    yield probability_volume(array, path, chunk_slices=chunk_slices), default


def by_blocks_refusal(path: Path) -> EmsegInputError:
    return EmsegInputError(f"{path}: --engine has every worker read its blocks from the file: "
                           "give an HDF5 file or a zarr store (convert a TIFF stack or a "
                           "slice folder first)")


def zarr_reference(source: ZarrArray, role: str, invert: bool = False) -> VolumeRef:
    if isinstance(source.array, ZyxView):
        raise EmsegInputError(f"{source.path}: its axes are not stored as (z, y, x); --engine "
                              "reads zarr arrays stored z, y, x (rewrite it, or drop --engine)")
    store, key = split_zarr_path(source.path)
    return VolumeRef(str(store), key, zarr=True, role=role, invert=invert)


def raw_reference(args: argparse.Namespace
                  ) -> tuple[VolumeRef, tuple[int, int, int], tuple[float, float, float]]:
    """The ``--data`` raw volume for block jobs to read (:class:`VolumeRef`), its shape and
    resolution; only its header is read here (blocks are checked as they are read).

    Raises:
        EmsegInputError: not HDF5 or zarr, not uint8, not (Z, Y, X), or labels given.
    """
    if args.labels is not None or args.labels_key is not None:
        raise EmsegInputError(f"{args.data}: segmenting needs no labels; drop --labels / "
                              "--labels-key")
    if is_zarr(args.data):
        source = open_zarr(args.data, args.raw_key, role="raw")
        reference = zarr_reference(source, "raw")
        shape, dtype = checked_header(source.array, source.path, "the raw data",
                                       args.chunk_slices)
        where, resolution = source.path, source.resolution or tuple(args.resolution)
    elif args.data.suffix.lower() in HDF5_SUFFIXES:
        with open_hdf5(args.data) as handle:
            dataset = volume_dataset(handle, args.raw_key or RAW_KEY, args.data)
            reference = VolumeRef(str(args.data), dataset.name, zarr=False)
            shape, dtype = checked_header(dataset, args.data, "the raw data",
                                           args.chunk_slices)
            where = args.data
            resolution = hdf5_resolution(dataset, args.data, tuple(args.resolution))
    else:
        raise by_blocks_refusal(args.data)
    if dtype != np.uint8:
        raise EmsegInputError(f"{where}: raw data is {dtype}; --engine reads uint8 raw data "
                              "(convert it to 0..255 first, or drop --engine and use "
                              "--rescale)")
    return reference, shape, resolution


def checked_header(array, where: Path, what: str, chunk_slices: int
                    ) -> tuple[tuple[int, int, int], np.dtype]:
    """:func:`check_volume_header`, then the volume's shape and dtype."""
    check_volume_header(array, where, what, chunk_slices)
    return tuple(int(n) for n in array.shape), np.dtype(array.dtype)


def probability_reference(path: Path, key: str | None, default: tuple[float, ...],
                          invert: bool, chunk_slices: int
                          ) -> tuple[VolumeRef, tuple[int, int, int], tuple[float, ...]]:
    """The probability map ``path`` for block jobs to read (:class:`VolumeRef`), its shape
    and resolution (stored, else ``default``); only its header is read here."""
    what = "the probability map"
    if is_zarr(path):
        source = _zarr_probabilities(path, key)
        reference = zarr_reference(source, "probabilities", invert)
        shape, dtype = checked_header(source.array, source.path, what, chunk_slices)
        where, resolution = source.path, source.resolution or default
    elif path.suffix.lower() in HDF5_SUFFIXES:
        with open_hdf5(path) as handle:
            dataset = hdf5_node(handle, _hdf5_probability_key(handle, path, key), path)
            reference = VolumeRef(str(path), dataset.name, zarr=False, role="probabilities",
                                  invert=invert)
            shape, dtype = checked_header(dataset, path, what, chunk_slices)
            where, resolution = path, hdf5_resolution(dataset, path, default)
    else:
        raise by_blocks_refusal(path)
    if not (np.issubdtype(dtype, np.floating) or dtype == np.uint8):
        raise EmsegInputError(f"{where}: probabilities must be float in [0, 1] (or uint8 "
                              f"0..255), got {dtype}")
    return reference, shape, resolution
