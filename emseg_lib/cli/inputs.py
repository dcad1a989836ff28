"""The big inputs of ``emseg segment`` and ``emseg postprocess`` from their flags: the
library's chunked readers (:mod:`emseg_lib.data.chunked_inputs`) given ``--data`` /
``--raw-key``, ``--prob`` / ``--prob-key``, with the flag names in their messages; any format
that is not read chunk by chunk loaded whole."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from emseg_lib.cli.common import load_volume
from emseg_lib.data.chunked_inputs import (
    BLOCK_FORMATS,
    BlockInput,
    block_input,
    open_probability_volume,
    open_raw_volume,
)
from emseg_lib.data.readers import Role, format_of
from emseg_lib.data.volume_ref import VolumeRef
from emseg_lib.data.volumes import CheckedVolume
from emseg_lib.errors import EmsegInputError


def _refuse_labels(args: argparse.Namespace) -> None:
    if args.labels is not None or args.labels_key is not None:
        raise EmsegInputError(f"{args.data}: segmenting needs no labels; drop --labels / "
                              "--labels-key")


@contextmanager
def open_raw(args: argparse.Namespace) -> Iterator[tuple[Any, tuple[float, float, float]]]:
    """The ``--data`` raw volume and its resolution: an HDF5 dataset (``--raw-key``, default
    ``volumes/raw``) or a zarr array read chunk by chunk
    (:func:`~emseg_lib.data.chunked_inputs.open_raw_volume`), any other format loaded whole."""
    if format_of(args.data) not in BLOCK_FORMATS:
        volume = load_volume(args)
        yield volume.raw, volume.resolution
        return
    _refuse_labels(args)
    with open_raw_volume(args.data, args.raw_key, default_resolution=tuple(args.resolution),
                         rescale=args.rescale, chunk_slices=args.chunk_slices,
                         flag="--raw-key") as (raw, resolution, source):
        dtype = np.dtype(source.array.dtype)
        name = f"{source.path}: {source.describe('')}".rstrip()
        print(f"{name} shape {raw.shape} (Z, Y, X), {dtype}"
              f"{', rescaled to 0..255' if dtype != np.uint8 else ''}, resolution "
              f"{resolution} nm")
        yield raw, resolution


@contextmanager
def open_probabilities(path: Path, key: str | None, default: tuple[float, ...],
                       chunk_slices: int) -> Iterator[tuple[CheckedVolume, tuple[float, ...]]]:
    """``--prob`` (``--prob-key``) read and checked once, then served chunk by chunk
    (:func:`~emseg_lib.data.chunked_inputs.open_probability_volume`), and its resolution."""
    with open_probability_volume(path, key, default_resolution=default,
                                 chunk_slices=chunk_slices, flag="--prob-key") as opened:
        yield opened


def by_blocks_refusal(path: Path) -> EmsegInputError:
    return EmsegInputError(f"{path}: --engine has every worker read its blocks from the file: "
                           "give an HDF5 file or a zarr store (convert a TIFF stack or a "
                           "slice folder first)")


def blocks_input(path: Path, key: str | None, flag: str, role: Role,
                 default: tuple[float, ...], chunk_slices: int = 1, invert: bool = False
                 ) -> BlockInput:
    """:func:`~emseg_lib.data.chunked_inputs.block_input` for ``--engine``, naming the key
    flag; TIFF stacks and slice folders refused (:func:`by_blocks_refusal`)."""
    if format_of(path) not in BLOCK_FORMATS:
        raise by_blocks_refusal(path)
    return block_input(path, key, role=role, default_resolution=default,
                        chunk_slices=chunk_slices, invert=invert, flag=flag)


def raw_reference(args: argparse.Namespace
                  ) -> tuple[VolumeRef, tuple[int, int, int], tuple[float, float, float]]:
    """The ``--data`` raw volume for block jobs to read (:class:`VolumeRef`), its shape and
    resolution; only its header is read here (blocks are checked as they are read).

    Raises:
        EmsegInputError: not HDF5 or zarr, not uint8, not (Z, Y, X), or labels given.
    """
    _refuse_labels(args)
    found = blocks_input(args.data, args.raw_key, "--raw-key", "raw", tuple(args.resolution),
                         args.chunk_slices)
    if found.dtype != np.uint8:
        raise EmsegInputError(f"{found.where}: raw data is {found.dtype}; --engine reads uint8 "
                              "raw data (convert it to 0..255 first, or drop --engine and use "
                              "--rescale)")
    return found.reference, found.shape, found.resolution


def probability_reference(path: Path, key: str | None, default: tuple[float, ...],
                          invert: bool, chunk_slices: int
                          ) -> tuple[VolumeRef, tuple[int, int, int], tuple[float, ...]]:
    """The probability map ``path`` (``--prob-key``) for block jobs to read
    (:class:`VolumeRef`), its shape and resolution (stored, else ``default``); only its
    header is read here."""
    found = blocks_input(path, key, "--prob-key", "probabilities", default, chunk_slices,
                         invert)
    if not (np.issubdtype(found.dtype, np.floating) or found.dtype == np.uint8):
        raise EmsegInputError(f"{found.where}: probabilities must be float in [0, 1] (or uint8 "
                              f"0..255), got {found.dtype}")
    return found.reference, found.shape, found.resolution
