"""Reading and writing volumes in the CREMI HDF5 layout.

A CREMI training file (``sample_A_20160501.hdf`` …) holds

* ``volumes/raw``: ``uint8`` ``(Z, Y, X)`` EM intensities, attribute ``resolution`` in nm
  ``(z, y, x)`` (``(40, 4, 4)`` for CREMI);
* ``volumes/labels/neuron_ids``: ``uint64`` ``(Z, Y, X)`` neuron ids (0 = unlabelled).

The synthetic volume is saved in the same layout so that one code path serves both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from emseg_lib.data.validate import (
    check_fits_in_memory,
    check_label_ids,
    checked_resolution,
    raw_as_uint8,
)
from emseg_lib.errors import EmsegInputError, one_line
from emseg_lib.infra.atomic_files import atomic_path

RAW_KEY = "volumes/raw"
LABELS_KEY = "volumes/labels/neuron_ids"
#: where ``emseg segment`` puts the cell probability map beside the labels
PROBABILITY_KEY = "volumes/predictions/cell_probability"
#: nearest-neighbour affinities ``(C, Z, Y, X)`` beside them (``emseg postprocess --affinities``)
AFFINITIES_KEY = "volumes/predictions/affinities"
CREMI_RESOLUTION_NM = (40.0, 4.0, 4.0)


@dataclass(frozen=True)
class EMVolume:
    """An EM volume with its ground truth.

    Attributes:
        raw: ``(Z, Y, X)`` ``uint8`` intensities.
        labels: ``(Z, Y, X)`` integer neuron ids, or ``None`` for an unlabelled volume.
        resolution: voxel size in nm, ``(z, y, x)``.
        source: where the volume came from (a file path, or a description of the generator).
        synthetic: True when the volume is the synthetic stand-in, not real CREMI data.
        label_kind: how the labels were obtained (e.g. "instance ids",
            "membrane mask -> instances").
    """

    raw: np.ndarray
    labels: np.ndarray | None
    resolution: tuple[float, float, float]
    source: str
    synthetic: bool = False
    label_kind: str = "instance ids"

    @property
    def caption(self) -> str:
        """Short provenance line for figure titles; says loudly when the data is synthetic."""
        if self.synthetic:
            return "SYNTHETIC EM volume (CREMI files absent)"
        kind = "CREMI data" if Path(self.source).suffix.lower() in (".hdf", ".h5", ".hdf5") \
            else "EM data"
        return f"{kind}: {Path(self.source).name}"

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(Z, Y, X)`` shape of the volume."""
        return tuple(self.raw.shape)

    def subvolume(self, z_slice: slice) -> EMVolume:
        """The slices ``z_slice`` of this volume (views, no copy)."""
        labels = None if self.labels is None else self.labels[z_slice]
        return EMVolume(self.raw[z_slice], labels, self.resolution, self.source, self.synthetic,
                        self.label_kind)


#: what h5py raises for an object whose header cannot be read (a corrupt or truncated file)
_DAMAGED = (KeyError, RuntimeError, OSError, ValueError)


def _damaged(path: Path, key: str, err: BaseException) -> EmsegInputError:
    return EmsegInputError(f"{path}: '{key}' cannot be opened ({one_line(err)}); the file's "
                           "structure is damaged: it may be corrupt or truncated")


def open_hdf5(path: Path) -> h5py.File:
    """``path`` opened read-only, or one clear error line."""
    if not path.is_file():
        raise EmsegInputError(f"{path}: not found")
    if not h5py.is_hdf5(path):
        raise EmsegInputError(f"{path}: not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise EmsegInputError(f"{path}: cannot be opened as HDF5 ({one_line(err)})") from err


def hdf5_has(handle: h5py.File, key: str, path: Path) -> bool:
    """Whether the open file ``path`` holds ``key``; a damaged object header on the way (a
    corrupt file) is one error line, not h5py's KeyError."""
    try:
        return key in handle
    except _DAMAGED as err:
        raise _damaged(path, key, err) from err


def hdf5_node(handle: h5py.File, key: str, path: Path) -> h5py.Dataset | h5py.Group:
    """``handle[key]`` (which must be present); a soft or external link whose target cannot be
    opened (a missing file, a removed dataset) is one error line naming the link, an object
    whose header is damaged one line saying so."""
    try:
        return handle[key]
    except _DAMAGED as err:
        try:
            link = handle.get(key, getlink=True)
        except _DAMAGED:
            link = None
        if isinstance(link, h5py.ExternalLink):
            target = f"'{link.path}' in {link.filename}"
        elif isinstance(link, h5py.SoftLink):
            target = f"'{link.path}'"
        else:
            raise _damaged(path, key, err) from err
        raise EmsegInputError(f"{path}: '{key}' is a link to {target}, which cannot be opened "
                              f"({one_line(err)})") from err


def volume_dataset(handle: h5py.File, key: str, path: Path, flag: str | None = None
                   ) -> h5py.Dataset:
    """The 3-D dataset ``key`` of the open file ``path``, checked from the header alone
    (nothing read yet); a missing dataset names those present and the key flag ``flag``
    (default: the CREMI layout's ``--raw-key`` / ``--labels-key``)."""
    if not hdf5_has(handle, key, path):
        present = sorted(dataset_names(handle))
        advice = (f"name another with {flag}" if flag else
                  f"the CREMI layout needs '{RAW_KEY}' and '{LABELS_KEY}', other layouts name "
                  "theirs with --raw-key / --labels-key")
        raise EmsegInputError(f"{path}: dataset '{key}' not found; {advice}. Datasets "
                              f"present: {present or 'none'}")
    node = hdf5_node(handle, key, path)
    if not isinstance(node, h5py.Dataset):
        raise EmsegInputError(f"{path}: '{key}' is a group, expected a dataset")
    if node.ndim != 3:
        raise EmsegInputError(
            f"{path}: dataset '{key}' must be 3-D (Z, Y, X), got shape {node.shape}"
        )
    if 0 in node.shape:
        raise EmsegInputError(f"{path}: dataset '{key}' is empty, shape {node.shape}")
    return node


def read_dataset(node: h5py.Dataset, path: Path) -> np.ndarray:
    """The whole dataset ``node`` of the file ``path``, if it fits in the available memory;
    a damaged or truncated file is one error line."""
    check_fits_in_memory(path, [(node.name.lstrip("/"), node.shape, node.dtype)])
    return _read(node, path)


def _read(node: h5py.Dataset, path: Path) -> np.ndarray:
    try:
        return node[()]
    except (OSError, ValueError, RuntimeError) as err:
        raise EmsegInputError(f"{path}: dataset '{node.name.lstrip('/')}' cannot be read "
                              f"({one_line(err)}); the file may be truncated or corrupt"
                              ) from err


def dataset_names(handle: h5py.File) -> list[str]:
    """The file's datasets, as far as they can be listed (a damaged group ends the list)."""
    names: list[str] = []
    try:
        handle.visititems(lambda name, node: names.append(name)
                          if isinstance(node, h5py.Dataset) else None)
    except _DAMAGED:
        pass
    return names


def _read_resolution(node: h5py.Dataset, path: Path) -> tuple[float, float, float]:
    attrs = node.attrs
    if "resolution" not in attrs:
        raise EmsegInputError(
            f"{path}: '{node.name.lstrip('/')}' has no 'resolution' attribute (voxel size in nm, "
            "(z, y, x)); pass resolution=(40, 4, 4) to load_cremi if the file is CREMI data"
        )
    return checked_resolution(attrs["resolution"], f"{path}: 'resolution' attribute")


def load_cremi(
    path: str | Path,
    *,
    require_labels: bool = True,
    resolution: tuple[float, float, float] | None = None,
    rescale: bool = False,
    raw_key: str = RAW_KEY,
    labels_key: str = LABELS_KEY,
    default_resolution: tuple[float, float, float] | None = None,
) -> EMVolume:
    """Load a CREMI HDF5 file (or an HDF5 file of another layout, naming its datasets).

    Everything that can be checked from the file's header (datasets, shapes, dtypes, the
    memory the arrays need) is checked before any voxel is read.

    Args:
        path: the ``.hdf`` / ``.h5`` file.
        require_labels: raise when ``volumes/labels/neuron_ids`` is missing; when False an
            unlabelled file (e.g. a CREMI test volume) loads with ``labels=None``.
        resolution: voxel size in nm ``(z, y, x)`` used when the file has no ``resolution``
            attribute; without it such a file is an error.
        rescale: map non-uint8 raw intensities linearly from their min..max to 0..255
            (:func:`~emseg_lib.data.validate.raw_as_uint8`); otherwise they are an error.
        raw_key, labels_key: the datasets of the raw data and the labels (default: the
            CREMI layout's).
        default_resolution: voxel size in nm used when the raw dataset has no
            ``resolution`` attribute (``resolution`` overrides the file's).

    Returns:
        The volume, raw ``(Z, Y, X)`` uint8 and labels ``(Z, Y, X)``.

    Raises:
        EmsegInputError: missing file, not an HDF5 file, missing dataset, not 3-D,
            raw/labels shape mismatch, non-uint8 raw without ``rescale``, NaN/inf raw,
            non-integer or negative label ids, arrays larger than the available memory, or
            a truncated/corrupt file. The message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise EmsegInputError(
            f"{path}: file not found. Put the CREMI files (e.g. sample_A_20160501.hdf) in data/ "
            "or leave data_path unset to use the synthetic volume"
        )
    if not path.is_file():
        raise EmsegInputError(f"{path}: is a directory, expected a CREMI HDF5 file")
    if not h5py.is_hdf5(path):
        raise EmsegInputError(f"{path}: not an HDF5 file (CREMI files are HDF5, .hdf/.h5)")
    with open_hdf5(path) as handle:
        raw_node = volume_dataset(handle, raw_key, path)
        if resolution is None and default_resolution is not None \
                and "resolution" not in raw_node.attrs:
            resolution = default_resolution
        if resolution is None:
            resolution = _read_resolution(raw_node, path)
        labels_node = None
        if require_labels or hdf5_has(handle, labels_key, path):
            labels_node = volume_dataset(handle, labels_key, path)
            _check_labels_header(labels_node, raw_node, path)
        if raw_node.dtype != np.uint8 and not rescale:
            raise EmsegInputError(f"{path}: '{raw_key}' must be uint8, got {raw_node.dtype}; "
                                  "pass --rescale to map its min..max to 0..255")
        nodes = [raw_node] if labels_node is None else [raw_node, labels_node]
        arrays = [(node.name.lstrip("/"), node.shape, node.dtype) for node in nodes]
        if raw_node.dtype != np.uint8:
            arrays.append(("rescaled raw", raw_node.shape, np.dtype(np.uint8)))
        check_fits_in_memory(path, arrays)
        raw = raw_as_uint8(_read(raw_node, path), path, rescale=rescale)
        labels = None if labels_node is None else _read(labels_node, path)
        synthetic = bool(handle.attrs.get("emseg_synthetic", False))
    if labels is not None:
        check_label_ids(labels, path)
    return EMVolume(raw, labels, tuple(resolution), str(path), synthetic)


def _check_labels_header(labels: h5py.Dataset, raw: h5py.Dataset, path: Path) -> None:
    labels_key, raw_key = labels.name.lstrip("/"), raw.name.lstrip("/")
    if labels.shape != raw.shape:
        raise EmsegInputError(
            f"{path}: '{labels_key}' has shape {labels.shape} but '{raw_key}' has shape "
            f"{raw.shape}; they must match"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise EmsegInputError(f"{path}: '{labels_key}' must hold integer ids, got {labels.dtype}")


def save_cremi(volume: EMVolume, path: str | Path, *,
               attrs: Mapping[str, str | int | float] | None = None) -> Path:
    """Write ``volume`` to ``path`` in the CREMI layout (gzip-compressed); returns the path.

    The file is written atomically (:func:`~emseg_lib.infra.atomic_files.atomic_path`): an
    interrupted write leaves any previous file at ``path`` as it was.

    Args:
        attrs: further attributes of the file's root, written with it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        raw = handle.create_dataset(RAW_KEY, data=volume.raw, compression="gzip")
        raw.attrs["resolution"] = np.asarray(volume.resolution, dtype=np.float64)
        if volume.labels is not None:
            labels = handle.create_dataset(
                LABELS_KEY, data=volume.labels.astype(np.uint64), compression="gzip"
            )
            labels.attrs["resolution"] = np.asarray(volume.resolution, dtype=np.float64)
        handle.attrs["emseg_source"] = volume.source
        handle.attrs["emseg_synthetic"] = volume.synthetic
        handle.attrs.update(dict(attrs or {}))
    return path
