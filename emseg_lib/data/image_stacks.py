"""Image stacks read whole: a multi-page TIFF stack and a folder of one image per slice.

:func:`read_tiff` and :func:`read_folder` give the stored array, checked to fit in memory;
which of them reads a path is decided by :func:`emseg_lib.data.readers.format_of`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile

from emseg_lib.data.validate import check_fits_in_memory
from emseg_lib.errors import EmsegInputError, one_line

TIFF_SUFFIXES = (".tif", ".tiff")
SLICE_SUFFIXES = (".png", ".tif", ".tiff")


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


@contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's log lines while reading: a problem becomes one error line."""
    logger = logging.getLogger("tifffile")
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled


def _read_pages(tif: tifffile.TiffFile, path: Path) -> np.ndarray:
    """A TIFF of several series (pages written one by one, or of other sizes): every page,
    stacked, if all have one shape and dtype; reading only the first series would silently
    drop the others."""
    pages = [page for page in tif.pages if page.shape]
    kinds = list(dict.fromkeys((page.shape, np.dtype(page.dtype)) for page in pages))
    if len(kinds) > 1:
        found = ", ".join(f"{shape} {dtype}" for shape, dtype in kinds[:4])
        raise EmsegInputError(f"{path}: pages differ in size or type ({found}); a stack needs "
                              "every slice of one size and dtype")
    shape, dtype = kinds[0]
    check_fits_in_memory(path, [("TIFF stack", (len(pages), *shape), dtype)])
    return np.stack([page.asarray() for page in pages])


def read_tiff(path: Path) -> np.ndarray:
    """A multi-page TIFF stack, ``(Z, Y, X)`` (a single page gets a z axis of 1)."""
    try:
        with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
            if len(tif.series) > 1:
                array = _read_pages(tif, path)
            else:
                series = tif.series[0]
                check_fits_in_memory(path, [("TIFF stack", series.shape, series.dtype)])
                array = series.asarray()
    except EmsegInputError:
        raise
    except Exception as err:  # tifffile raises many kinds for corrupt or truncated files
        raise EmsegInputError(f"{path}: cannot be read as TIFF ({one_line(err)}); is the file "
                              "complete?") from err
    if array.size == 0:
        raise EmsegInputError(f"{path}: cannot be read as a TIFF stack (no image data); the "
                              "file may be corrupt or truncated")
    return array[None] if array.ndim == 2 else array


def _read_image(file: Path) -> np.ndarray:
    try:
        return iio.imread(file)
    except Exception as err:  # imageio raises many kinds for unreadable images
        raise EmsegInputError(f"{file}: cannot be read as an image ({one_line(err)})") from err


def read_folder(path: Path) -> np.ndarray:
    """One PNG or TIFF image per slice, in natural sort order of the names: ``(Z, Y, X)``."""
    files = sorted((p for p in path.iterdir() if p.suffix.lower() in SLICE_SUFFIXES),
                   key=_natural_key)
    if not files:
        raise EmsegInputError(f"{path}: folder has no .png/.tif slices; put one image per "
                              "slice there (e.g. slice_000.png, slice_001.png, ...)")
    slices = []
    for file in files:
        image = _read_image(file)
        if image.ndim != 2:
            raise EmsegInputError(f"{file}: expected a single-channel slice, got shape "
                                  f"{image.shape}; save grey-scale images")
        if not slices:  # the whole stack, if every slice is the size of the first
            check_fits_in_memory(path, [(f"{len(files)} slices", (len(files), *image.shape),
                                         image.dtype)])
        slices.append(image)
    shapes = {s.shape for s in slices}
    if len(shapes) != 1:
        raise EmsegInputError(f"{path}: slices differ in size {sorted(shapes)}; all slices "
                              "must have one size")
    dtypes = list(dict.fromkeys(s.dtype for s in slices))
    if len(dtypes) != 1:  # np.stack would widen them, and --rescale map them as one range
        odd = next(f for f, s in zip(files, slices, strict=True) if s.dtype != dtypes[0])
        raise EmsegInputError(f"{path}: slices differ in type ({', '.join(map(str, dtypes))}; "
                              f"first {odd.name} is {dtypes[1]}); save every slice with one "
                              "bit depth")
    return np.stack(slices)
