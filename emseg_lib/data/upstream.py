"""The public real EM stacks, converted from their upstream files to the CREMI layout.

Pure, offline functions: :func:`emseg_lib.fetch.fetch_dataset` downloads and verifies the
upstream files, then calls a converter here with ``{upstream path: local file}``.

* ``vnc`` (``unidesigner/groundtruth-drosophila-vnc``, ``stack1``): ssTEM slices
  ``stack1/raw/NN.tif`` and binary membrane masks ``stack1/membranes/NN.png``; neuron ids are
  the 4-connected components of the non-membrane pixels of each section
  (:func:`~emseg_lib.data.formats.membranes_to_instances`; ids not linked across z).
* ``fibsem`` (``janelia-flyem/neuroproof_examples``, ``training_sample2``): grayscale slices
  ``grayscale_maps/iso.NNNN.png`` and ``groundtruth.h5.gz`` holding supervoxels ``stack``
  ``(Z, Y, X)`` and the supervoxel-to-body table ``transforms`` ``(N, 2)``; neuron ids are the
  bodies (:func:`bodies_from_supervoxels`).
* ``snemi`` (``HoraceKem/Manual-Tracing``, ``example_SNEMI3D``): the SNEMI3D training volume
  (Kasthuri et al. 2015, mouse cortex, ATUM serial-section SEM) as slices
  ``example_SNEMI3D/images/sectionNN.tif`` (8-bit) and ``example_SNEMI3D/segmentation/labelsN.tif``
  (16-bit neuron ids, 3D-consistent; numbered without zero padding).
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Mapping
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import tifffile

from emseg_lib.data.cremi import LABELS_KEY, RAW_KEY
from emseg_lib.data.formats import membranes_to_instances
from emseg_lib.errors import EmsegInputError
from emseg_lib.infra.atomic_files import atomic_hdf5

MEMBRANES_KEY = "volumes/labels/membranes"
VNC_RESOLUTION_NM = (50.0, 4.6, 4.6)
FIBSEM_RESOLUTION_NM = (10.0, 10.0, 10.0)
FIBSEM_GROUNDTRUTH = "training_sample2/groundtruth.h5.gz"
SNEMI_RESOLUTION_NM = (30.0, 6.0, 6.0)


def _natural(path: str) -> list:
    """Sort key: digit runs compare as numbers (``labels2`` before ``labels10``)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def _slices(files: Mapping[str, Path], prefix: str) -> list[Path]:
    """Local files of the upstream paths under ``prefix``, in z order (natural order of the
    file names: the slice numbers are zero-padded in some stacks, not in others)."""
    paths = sorted((p for p in files if p.startswith(prefix)), key=_natural)
    if not paths:
        raise EmsegInputError(f"no upstream files under '{prefix}'; the dataset is incomplete")
    return [files[p] for p in paths]


def _stack_uint8(paths: list[Path]) -> np.ndarray:
    """``(Z, Y, X)`` uint8 from one 2-D 8-bit image per slice."""
    images = []
    for path in paths:
        image = tifffile.imread(path) if path.suffix == ".tif" else iio.imread(path)
        if image.dtype != np.uint8 or image.ndim != 2:
            raise EmsegInputError(f"{path}: expected a 2-D 8-bit image, got {image.dtype} "
                                  f"{image.shape}")
        images.append(image)
    if len({image.shape for image in images}) > 1:
        raise EmsegInputError(f"{paths[0].parent}: slices differ in shape")
    return np.stack(images)


def bodies_from_supervoxels(supervoxels: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Body ids ``(Z, Y, X)`` uint64 from supervoxel ids and a supervoxel-to-body table.

    Args:
        supervoxels: ``(Z, Y, X)`` integer supervoxel ids.
        table: ``(N, 2)`` rows ``(supervoxel, body)``; every supervoxel present must be listed.
    """
    order = np.argsort(table[:, 0], kind="stable")
    keys, bodies = table[order, 0], table[order, 1]
    index = np.clip(np.searchsorted(keys, supervoxels), 0, len(keys) - 1)
    unmapped = keys[index] != supervoxels
    if np.any(unmapped):
        missing = np.unique(supervoxels[unmapped])
        raise EmsegInputError(f"{len(missing)} supervoxel ids have no body in the table "
                              f"(e.g. {missing[:5].tolist()})")
    return bodies[index].astype(np.uint64)


def convert_vnc(files: Mapping[str, Path]) -> dict[str, np.ndarray]:
    """CREMI arrays of ``stack1``: ``volumes/raw`` uint8, ``volumes/labels/membranes`` uint8
    (1 = membrane, glia and extracellular space) and ``volumes/labels/neuron_ids`` uint64, all
    ``(Z, Y, X)``; ids per section, 0 = membrane."""
    raw = _stack_uint8(_slices(files, "stack1/raw/"))
    membranes = np.stack([iio.imread(p) > 0 for p in _slices(files, "stack1/membranes/")])
    if membranes.shape != raw.shape:
        raise EmsegInputError(f"stack1: membranes {membranes.shape} and raw {raw.shape} "
                              "differ in shape")
    return {RAW_KEY: raw, LABELS_KEY: membranes_to_instances(membranes),
            MEMBRANES_KEY: membranes.astype(np.uint8)}


def convert_fibsem(files: Mapping[str, Path]) -> dict[str, np.ndarray]:
    """CREMI arrays of ``training_sample2``: ``volumes/raw`` uint8 and
    ``volumes/labels/neuron_ids`` uint64 body ids, ``(Z, Y, X)``, consistent across z."""
    raw = _stack_uint8(_slices(files, "training_sample2/grayscale_maps/"))
    path = files[FIBSEM_GROUNDTRUTH]
    with gzip.open(path, "rb") as packed, h5py.File(io.BytesIO(packed.read()), "r") as handle:
        supervoxels, table = handle["stack"][()], handle["transforms"][()]
    if supervoxels.shape != raw.shape:
        raise EmsegInputError(f"{path}: supervoxels {supervoxels.shape} and raw {raw.shape} "
                              "differ in shape")
    return {RAW_KEY: raw, LABELS_KEY: bodies_from_supervoxels(supervoxels, table)}


def convert_snemi(files: Mapping[str, Path]) -> dict[str, np.ndarray]:
    """CREMI arrays of the SNEMI3D training volume: ``volumes/raw`` uint8 and
    ``volumes/labels/neuron_ids`` uint64, ``(Z, Y, X)``; ids consistent across z, 0 where
    nothing was annotated (mostly membranes and extracellular space)."""
    raw = _stack_uint8(_slices(files, "example_SNEMI3D/images/"))
    paths = _slices(files, "example_SNEMI3D/segmentation/")
    if len(paths) != len(raw):
        raise EmsegInputError(f"example_SNEMI3D: {len(paths)} label slices for {len(raw)} "
                              "image slices")
    labels = np.empty((len(paths), *raw.shape[1:]), dtype=np.uint64)
    for z, path in enumerate(paths):
        ids = tifffile.imread(path)
        if ids.shape != raw.shape[1:] or ids.dtype.kind != "u":
            raise EmsegInputError(f"{path}: expected {raw.shape[1:]} unsigned integer ids, got "
                                  f"{ids.dtype} {ids.shape}")
        labels[z] = ids
    return {RAW_KEY: raw, LABELS_KEY: labels}


def write_cremi_arrays(arrays: Mapping[str, np.ndarray],
                       resolution: tuple[float, float, float], path: str | Path) -> Path:
    """Write ``{dataset key: (Z, Y, X) array}`` to ``path`` atomically (gzip, attributes
    ``resolution`` in nm (z, y, x) and ``offset`` on each dataset); returns ``path``.

    Written through :func:`~emseg_lib.infra.atomic_files.atomic_hdf5`: ``path`` is never a
    half-written file, and a full disk is an ``OSError`` naming ``path``.
    """
    path = Path(path)
    with atomic_hdf5(path) as output:
        for key, array in arrays.items():
            dataset = output.file.create_dataset(key, data=array, compression="gzip")
            dataset.attrs["resolution"] = np.asarray(resolution, dtype=np.float64)
            dataset.attrs["offset"] = np.zeros(3)
    return path
