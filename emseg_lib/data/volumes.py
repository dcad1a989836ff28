"""Big input volumes for ``emseg segment`` and ``emseg postprocess``, read chunk by chunk.

:class:`CheckedVolume` wraps a ``(Z, Y, X)`` HDF5 dataset or zarr array (or an array) so that
the pipeline reads it range by range as before, each range checked and converted as it is
read. Before
any work the whole volume is read once (:func:`raw_volume`, :func:`probability_volume`), so
that NaN, out-of-range values and damaged chunks are refused, naming the file and the slice,
before an output is started; memory stays bounded by one chunk.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import zarr

from emseg_lib.data.validate import (
    check_finite_raw,
    check_fits_in_memory,
    checked_resolution,
    rescale_to_uint8,
)
from emseg_lib.errors import EmsegInputError, EmsegWarning, one_line

#: ``convert(chunk, first_slice)``: a chunk as read -> the chunk the pipeline gets
Convert = Callable[[np.ndarray, int], np.ndarray]


def _unchanged(chunk: np.ndarray, first_slice: int) -> np.ndarray:
    return chunk


class CheckedVolume:
    """A ``(Z, Y, X)`` dataset read by ranges of slices (``volume[z0:z1]``), each range passed
    through ``convert`` (which checks it, naming the slice); a damaged file is one line.

    Attributes:
        path: the file, for messages.
        shape: ``(Z, Y, X)``.
        dtype: the dtype of the converted chunks.
    """

    def __init__(self, source: h5py.Dataset | zarr.Array | np.ndarray, path: Path,
                 convert: Convert = _unchanged, dtype: Any = None) -> None:
        self._source = source
        self.path = path
        self._convert = convert
        self.shape = tuple(int(n) for n in source.shape)
        self.dtype = np.dtype(source.dtype if dtype is None else dtype)

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice):
            raise TypeError("a CheckedVolume is read by ranges of slices, volume[z0:z1]")
        z0, z1, _ = index.indices(self.shape[0])
        try:
            chunk = np.asarray(self._source[z0:z1])
        except (OSError, ValueError, RuntimeError) as err:  # h5py, zarr: a damaged chunk
            raise EmsegInputError(f"{self.path}: slices {z0}..{z1 - 1} cannot be read "
                                  f"({one_line(err)}); the file may be truncated or corrupt"
                                  ) from err
        return self._convert(chunk, z0)

    def chunks(self, chunk_slices: int) -> Iterator[np.ndarray]:
        """Every range of ``chunk_slices`` slices, converted, in order."""
        for z0 in range(0, self.shape[0], chunk_slices):
            yield self[z0:z0 + chunk_slices]


def check_volume_header(source: h5py.Dataset | zarr.Array | np.ndarray, path: Path, what: str,
                        chunk_slices: int) -> None:
    """Refuse a volume that is not ``(Z, Y, X)``, is empty, or whose chunks of
    ``chunk_slices`` slices (as read, as probabilities and as labels) would not fit in memory
    (a corrupt header can claim terabytes)."""
    shape = tuple(int(n) for n in source.shape)
    if len(shape) != 3:
        raise EmsegInputError(f"{path}: {what} must be 3-D (Z, Y, X), got shape {shape}")
    if 0 in shape:
        raise EmsegInputError(f"{path}: {what} is empty, shape {shape}")
    chunk = (min(chunk_slices, shape[0]), *shape[1:])
    check_fits_in_memory(path, [(f"{what} chunk", chunk, source.dtype),
                                ("its probabilities", chunk, np.float32),
                                ("its labels", chunk, np.int64)])


def raw_volume(source: h5py.Dataset | zarr.Array | np.ndarray, path: Path, *, rescale: bool,
               chunk_slices: int) -> CheckedVolume:
    """Raw intensities as uint8 chunks, the whole volume read once first.

    Non-uint8 data needs ``rescale``: its finite min..max (over the whole volume) maps to
    0..255, chunk by chunk, exactly as :func:`~emseg_lib.data.formats.load_stack` does.

    Raises:
        EmsegInputError: non-uint8 without ``rescale``, not numbers, NaN/inf (naming the
            slice), or a damaged file.
    """
    dtype = np.dtype(source.dtype)
    if dtype != np.uint8 and not rescale:
        raise EmsegInputError(f"{path}: raw data is {dtype}, expected uint8; pass --rescale "
                              "to map its min..max to 0..255")
    if dtype.kind not in "biuf":
        raise EmsegInputError(f"{path}: raw data is {dtype}; only numbers can be rescaled")

    def finite(chunk: np.ndarray, first_slice: int) -> np.ndarray:
        check_finite_raw(chunk, path, first_slice)
        return chunk

    checked = CheckedVolume(source, path, finite)
    lo, hi = np.inf, -np.inf
    for chunk in checked.chunks(chunk_slices):
        lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
    if dtype == np.uint8:
        return checked
    return CheckedVolume(source, path, lambda chunk, z0: rescale_to_uint8(finite(chunk, z0),
                                                                        lo, hi), np.uint8)


#: how far a probability may lie outside [0, 1] by float rounding (a float32 sum or
#: interpolation of values in [0, 1] overshoots by a few units in the last place): read as
#: 0 or 1, with one warning; anything further is refused (logits, a wrong map)
ROUNDING = 1e-6


class CheckedProbabilities:
    """The chunks of the probability map ``path`` as float32 in [0, 1] (a :data:`Convert`):
    NaN/inf and values beyond [0, 1] refused naming the slice, float rounding clipped and
    noted for :meth:`warn_rounded`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._rounded: list[tuple[int, int]] = []  # (slice, values clipped)

    def __call__(self, chunk: np.ndarray, first_slice: int) -> np.ndarray:
        if chunk.dtype == np.uint8:
            return chunk.astype(np.float32) / 255.0
        prob = chunk.astype(np.float32)
        for z, image in enumerate(prob, start=first_slice):
            bad = int(np.count_nonzero(~np.isfinite(image)))
            if bad:
                raise EmsegInputError(f"{self.path}: probability slice {z} holds {bad} NaN/inf "
                                      "values; probabilities must be finite numbers in [0, 1]")
            lo, hi = image.min(), image.max()  # float32: printed with every digit it has
            if lo < -ROUNDING or hi > 1.0 + ROUNDING:
                raise EmsegInputError(
                    f"{self.path}: probability slice {z} has values in [{lo!s}, {hi!s}]; "
                    "probabilities must lie in [0, 1] (apply a sigmoid to network logits)")
            if lo < 0.0 or hi > 1.0:
                self._rounded.append((z, int(np.count_nonzero((image < 0) | (image > 1)))))
                np.clip(image, 0.0, 1.0, out=image)
        return prob

    def warn_rounded(self) -> None:
        """One :class:`~emseg_lib.errors.EmsegWarning` for the values clipped so far."""
        if self._rounded:
            count = sum(n for _, n in self._rounded)
            warnings.warn(EmsegWarning(
                f"{self.path}: {count} probabilities lie outside [0, 1] by float rounding only "
                f"(by at most {ROUNDING:g}; first in slice {self._rounded[0][0]}), read as 0 "
                "and 1"), stacklevel=3)


def probability_volume(source: h5py.Dataset | zarr.Array | np.ndarray, path: Path, *,
                       chunk_slices: int) -> CheckedVolume:
    """Probabilities as float32 chunks in [0, 1] (uint8 read as value / 255), the whole
    volume read once first; values beyond [0, 1] by float rounding alone are clipped, with
    one warning.

    Raises:
        EmsegInputError: neither float nor uint8, NaN/inf or values outside [0, 1] (naming
            the slice and the values), or a damaged file.
    """
    dtype = np.dtype(source.dtype)
    if not (np.issubdtype(dtype, np.floating) or dtype == np.uint8):
        raise EmsegInputError(f"{path}: probabilities must be float in [0, 1] (or uint8 "
                              f"0..255), got {dtype}")
    convert = CheckedProbabilities(path)
    checked = CheckedVolume(source, path, convert, np.float32)
    for _ in checked.chunks(chunk_slices):
        pass
    convert.warn_rounded()
    return checked


def hdf5_resolution(dataset: h5py.Dataset, path: Path, default: tuple[float, ...]
                    ) -> tuple[float, float, float]:
    """The dataset's ``resolution`` attribute (nm, z y x), else ``default`` (--resolution)."""
    return checked_resolution(dataset.attrs.get("resolution", default),
                              f"{path}: 'resolution' of '{dataset.name.lstrip('/')}'")
