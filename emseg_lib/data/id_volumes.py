"""Id volumes read whole for scoring: a segmentation and its ground truth ``(Z, Y, X)``, from
any input format (:func:`~emseg_lib.data.readers.open_input`)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from emseg_lib.data.cremi import (
    LABELS_KEY,
    RAW_KEY,
    hdf5_has,
    hdf5_node,
    open_hdf5,
    read_dataset,
    volume_dataset,
)
from emseg_lib.data.formats import LabelKind, as_labels
from emseg_lib.data.readers import format_of, open_input
from emseg_lib.data.validate import check_label_ids
from emseg_lib.data.volumes import hdf5_resolution
from emseg_lib.errors import EmsegInputError


def read_segmentation(path: Path, key: str | None = None, flag: str | None = None
                      ) -> np.ndarray:
    """``(Z, Y, X)`` ids from an ``emseg segment`` output (HDF5 or OME-Zarr), another
    HDF5 dataset or zarr array (``key``, named on the command line by ``flag``), or a TIFF
    stack / slice folder.

    Raises:
        EmsegInputError: missing dataset, not 3-D, larger than memory, damaged, not integer
            ids, or negative ids.
    """
    with open_input(path, key, role="labels", flag=flag) as source:
        seg = source.read()
    if not np.issubdtype(seg.dtype, np.integer):
        raise EmsegInputError(f"{path}: segment ids must be integers, got {seg.dtype}")
    check_label_ids(seg, path)
    return seg


def _hdf5_ground_truth(path: Path, key: str | None, default: tuple[float, ...],
                       flag: str | None) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The ids of an HDF5 file's dataset ``key`` (default: the CREMI layout's labels; the raw
    data are never read) and the voxel size: the dataset's ``resolution``, else that of the
    file's raw data, else ``default``."""
    with open_hdf5(path) as handle:
        if key is None and not hdf5_has(handle, LABELS_KEY, path):
            named = f" with {flag}" if flag else ""
            raise EmsegInputError(f"{path}: has no '{LABELS_KEY}' to compare with; name the "
                                  f"ground truth's dataset{named}")
        dataset = volume_dataset(handle, key or LABELS_KEY, path, flag=flag)
        holder = dataset
        if "resolution" not in dataset.attrs and hdf5_has(handle, RAW_KEY, path):
            raw = hdf5_node(handle, RAW_KEY, path)
            holder = raw if isinstance(raw, h5py.Dataset) else dataset
        return read_dataset(dataset, path), hdf5_resolution(holder, path, default)


def read_ground_truth(path: Path, label_kind: LabelKind, resolution: tuple[float, ...],
                      key: str | None = None, flag: str | None = None
                      ) -> tuple[np.ndarray, tuple[float, ...], str]:
    """Ground-truth ids ``(Z, Y, X)``, the voxel size (the file's, else ``resolution``) and
    how the ids were read (:func:`~emseg_lib.data.formats.as_labels`): a CREMI file (ids; or
    its dataset ``key``, named on the command line by ``flag``), a zarr array, a TIFF stack
    or a slice folder."""
    if format_of(path) == "hdf5":
        stored, resolution = _hdf5_ground_truth(path, key, resolution, flag)
        cremi_ids = key is None and label_kind == "auto"  # the CREMI layout holds ids
        ids, kind = as_labels(stored, "instances" if cremi_ids else label_kind, path)
        return ids, resolution, kind
    with open_input(path, key, role="labels", flag=flag) as source:
        ids, kind = as_labels(source.read(), label_kind, source.path)
        return ids, source.resolution(resolution), kind
