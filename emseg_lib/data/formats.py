"""Reading EM stacks in the formats researchers have: HDF5, zarr, TIFF stacks, slice folders.

:func:`load_stack` is the one entry point; the reader is picked by
:func:`~emseg_lib.data.readers.format_of`:

* ``.hdf``, ``.h5``, ``.hdf5`` — the CREMI layout (:func:`~emseg_lib.data.load_cremi`), or
  other datasets named by ``raw_key`` / ``labels_key``;
* ``.zarr`` — a zarr array (v2 or v3, OME-Zarr images too), ``volume.zarr/raw`` or a key
  (:mod:`~emseg_lib.data.zarr_store`);
* ``.tif``, ``.tiff`` — a multi-page TIFF stack ``(Z, Y, X)``;
* a directory — one PNG or TIFF image per slice, in natural sort order of the file names.

Labels for zarr, TIFF stacks and folders come from a second path in any of these formats (or,
for zarr, a key of the same store), either as
instance ids or as a binary membrane mask (two values, membrane = the larger; found by
``label_kind="auto"`` only where the data leave no doubt, :func:`as_labels`); a membrane
mask becomes instances by connected components of the non-membrane pixels, per slice (ids
unique across the stack). :func:`describe` says what was loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from skimage.measure import label

from emseg_lib.data.cremi import EMVolume, load_cremi
from emseg_lib.data.labels import stack_slices
from emseg_lib.data.readers import format_of, open_input, read_array
from emseg_lib.data.validate import check_label_ids, raw_as_uint8
from emseg_lib.data.zarr_store import open_zarr, read_zarr, split_zarr_path
from emseg_lib.errors import EmsegInputError

__all__ = ["as_labels", "describe", "load_stack", "membranes_to_instances", "read_array"]

LabelKind = Literal["auto", "instances", "membranes"]


#: ``--label-kind auto`` reads a stack of two values as a membrane mask only when the pixels
#: between its membranes form at least this many regions per slice (median); one object
#: traced on a background of 0 leaves one or two, and is never read as membranes
MIN_MASK_REGIONS = 4


def _regions(membranes: np.ndarray) -> list[np.ndarray]:
    """Per slice, the 4-connected regions (1, 2, ...) of the non-membrane pixels."""
    return [label(~mask, connectivity=1) for mask in membranes]


def membranes_to_instances(membranes: np.ndarray) -> np.ndarray:
    """Instance ids from a binary membrane mask ``(Z, Y, X)``: 4-connected components of
    the non-membrane pixels, slice by slice, ids unique across the stack; membranes get 0."""
    return stack_slices(_regions(membranes)).astype(np.uint64)


def _auto_mask(array: np.ndarray, values: np.ndarray, source: Path) -> tuple[np.ndarray, str]:
    """``--label-kind auto`` on a stack of two values: a membrane mask (the larger value) when
    the regions between its membranes are many (:data:`MIN_MASK_REGIONS`), the decision
    said in the returned description; otherwise it could be one object on a background, and
    the guess is refused."""
    lo, hi = (int(v) for v in values)
    regions = _regions(array == hi)
    per_slice = float(np.median([r.max(initial=0) for r in regions]))
    if per_slice < MIN_MASK_REGIONS:
        raise EmsegInputError(
            f"{source}: the labels hold two values ({lo} and {hi}) with {per_slice:g} region(s) "
            f"per slice between the {hi}s: objects labelled {hi} on a background of {lo}, or a "
            f"membrane mask? pass --label-kind instances ({hi} = one object) or --label-kind "
            f"membranes ({hi} = membrane)")
    return stack_slices(regions).astype(np.uint64), (
        f"membrane mask -> instances (--label-kind auto: values {lo} and {hi}, {hi} = "
        f"membrane, {per_slice:g} regions per slice)")


def as_labels(array: np.ndarray, kind: LabelKind, source: Path) -> tuple[np.ndarray, str]:
    """Instance ids ``(Z, Y, X)`` uint64 from ids or a membrane mask, and how they were read.

    ``kind`` ``"auto"``: more than two values are ids, one value is one object, and two
    values a membrane mask only when the data say so (:func:`_auto_mask`).

    Raises:
        EmsegInputError: labels that are not integers (or bool), negative ids, a membrane
            mask with more than two values, or two values that ``"auto"`` cannot tell apart.
    """
    if not np.issubdtype(array.dtype, np.integer) and array.dtype != bool:
        raise EmsegInputError(f"{source}: labels must be integers, got {array.dtype}")
    check_label_ids(array, source)
    values = np.unique(array)
    if kind == "auto" and len(values) == 2:
        return _auto_mask(array, values, source)
    if kind == "membranes":
        if len(values) > 2:
            raise EmsegInputError(f"{source}: a membrane mask has two values, found "
                                  f"{len(values)}; pass --label-kind instances for ids")
        return membranes_to_instances(array == values.max()), "membrane mask -> instances"
    return array.astype(np.uint64), "instance ids"


def _read_labels(path: Path, key: str | None) -> np.ndarray:
    """A whole label stack from any input format (:func:`~emseg_lib.data.readers.open_input`)."""
    with open_input(path, key, role="labels", flag="--labels-key") as source:
        return source.read()


def load_stack(path: str | Path, labels: str | Path | None = None, *,
               label_kind: LabelKind = "auto", resolution: tuple[float, float, float] = (
                   40.0, 4.0, 4.0), rescale: bool = False, raw_key: str | None = None,
               labels_key: str | None = None) -> EMVolume:
    """Load raw (and optionally labels) from HDF5, zarr, a TIFF stack or a slice folder.

    Args:
        path: the raw data.
        labels: labels for zarr/TIFF/folder raw data (HDF5 files carry their own).
        label_kind: ``"instances"``, ``"membranes"`` or ``"auto"`` (:func:`as_labels`).
        resolution: voxel size in nm ``(z, y, x)`` for files that do not store it.
        rescale: map a non-uint8 raw stack (any format) linearly from its min..max to
            0..255 (otherwise such a stack is an error, nothing is converted silently).
        raw_key: the raw dataset of an HDF5 file (default the CREMI layout's) or the raw
            array of a zarr store (default: named by ``path`` or found in its usual places).
        labels_key: the labels' dataset of the HDF5 file, or their array in the zarr store
            ``labels`` (else ``path``'s store); an HDF5 file without the CREMI labels and a
            store without labels in their usual places load unlabelled.

    Raises:
        EmsegInputError: unknown suffix, unreadable, truncated or empty input, a missing
            dataset or array (naming those present), a stack larger than the available
            memory, raw/label shape mismatch, non-uint8 raw without ``rescale``, NaN/inf raw
            values, negative label ids; the message names the file and the fix.
    """
    path = Path(path)
    stored_as = format_of(path)
    if stored_as == "hdf5":
        if labels is not None:
            raise EmsegInputError(f"{path}: HDF5 files carry their own labels; drop --labels "
                                  "(--labels-key names their dataset)")
        keys = {k: v for k, v in (("raw_key", raw_key), ("labels_key", labels_key)) if v}
        return load_cremi(path, require_labels=labels_key is not None, rescale=rescale,
                          default_resolution=tuple(resolution), **keys)
    with open_input(path, raw_key, role="raw", flag="--raw-key") as source:
        raw = raw_as_uint8(source.read(), source.path, rescale=rescale)
        resolution = source.resolution(resolution)
        path = source.path
    if labels is not None:
        labels_array = _read_labels(Path(labels), labels_key)
    elif stored_as == "zarr":
        found = open_zarr(split_zarr_path(path)[0], labels_key, role="labels",
                          required=labels_key is not None, flag="--labels-key")
        labels_array = None if found is None else read_zarr(found)
    else:
        labels_array = None
    ids, kind = None, "no labels"
    if labels_array is not None:
        source_name = Path(labels) if labels is not None else path
        ids, kind = as_labels(labels_array, label_kind, source_name)
        if ids.shape != raw.shape:
            raise EmsegInputError(f"{source_name}: labels have shape {ids.shape} but {path} has "
                                  f"shape {raw.shape}; they must match slice for slice")
    return EMVolume(raw, ids, tuple(resolution), str(path), label_kind=kind)


def describe(volume: EMVolume) -> str:
    """One line: source, shape, dtype, value range, labels."""
    labels = ("no labels" if volume.labels is None else
              f"labels: {volume.label_kind}, {len(np.unique(volume.labels[volume.labels > 0]))} "
              "ids")
    return (f"{volume.source}: shape {volume.shape} (Z, Y, X), {volume.raw.dtype}, values "
            f"{int(volume.raw.min())}..{int(volume.raw.max())}, resolution "
            f"{volume.resolution} nm, {labels}")
