"""The files a whole-volume segmentation is written to, chunk by chunk: HDF5 in the CREMI
layout, or an OME-Zarr image for napari and neuroglancer (an output named ``*.zarr``).

:func:`open_output` gives a :class:`SegmentationOutput` whose :meth:`~SegmentationOutput.write`
takes one range of slices at a time; the output appears at its path only when complete
(:func:`~emseg_lib.infra.atomic_files.atomic_hdf5`,
:func:`~emseg_lib.infra.atomic_files.atomic_directory`).

The OME-Zarr layout (NGFF 0.4 on zarr v2 by default, 0.5 on zarr v3), every array with axes
z, y, x in nanometres and the voxel size as its scale::

    seg.zarr/                  image: the raw data segmented (uint8), or the probability map
                               (float32) that ``emseg postprocess`` segmented
    seg.zarr/labels/neuron_ids label image: the segment ids (uint64)
    seg.zarr/probabilities     image: the cell probability (float32), when asked for
    seg.zarr/affinities        image: an affinity network's affinities (float32, axes c, z,
                               y, x), when asked for

In HDF5 the affinities are ``volumes/predictions/affinities`` ``(C, Z, Y, X)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import zarr

from emseg_lib.data.cremi import AFFINITIES_KEY, LABELS_KEY, PROBABILITY_KEY
from emseg_lib.data.zarr_store import ZARR_SUFFIX
from emseg_lib.infra.atomic_files import atomic_directory, atomic_hdf5
from emseg_lib.infra.interrupts import interrupts_deferred

#: the OME-Zarr label image of the segment ids, and the probability image, in a ``.zarr``
LABELS_NAME, PROBABILITIES_NAME = "neuron_ids", "probabilities"
#: the OME-Zarr image of an affinity network's affinities ``(C, Z, Y, X)``
AFFINITIES_NAME = "affinities"
#: largest in-plane zarr chunk (pixels); one slice deep, so each chunk is written once
ZARR_TILE = 512


class SegmentationOutput(Protocol):
    """A segmentation being written, one range of slices at a time."""

    def write(self, z0: int, labels: np.ndarray, prob: np.ndarray,
              image: np.ndarray, affinities: np.ndarray | None = None) -> None:
        """Slices ``z0 .. z0 + len(labels) - 1``: ids ``(z, Y, X)`` uint64, cell probability
        ``(z, Y, X)`` float32, the image they were computed from ``(z, Y, X)``, and the
        affinities ``(C, z, Y, X)`` when the output stores them."""

    def flush(self) -> None:
        """Make what was written so far reach the disk (a full disk fails here)."""


def is_zarr_output(path: str | Path) -> bool:
    """Whether ``path`` names an OME-Zarr output (a ``.zarr`` name)."""
    return Path(path).suffix.lower() == ZARR_SUFFIX


class _SliceArrays:
    """The arrays both output formats hold: ids, and the cell probability and affinities
    when the output stores them (None otherwise)."""

    _labels: Any
    _prob: Any
    _affinities: Any

    def _write_arrays(self, z0: int, labels: np.ndarray, prob: np.ndarray,
                      affinities: np.ndarray | None) -> None:
        z1 = z0 + len(labels)
        self._labels[z0:z1] = labels
        if self._prob is not None:
            self._prob[z0:z1] = prob
        if self._affinities is not None:
            self._affinities[:, z0:z1] = affinities


class _Hdf5Output(_SliceArrays):
    def __init__(self, output, shape: tuple[int, int, int],
                 resolution: tuple[float, float, float], probabilities: bool,
                 affinity_channels: int = 0) -> None:
        self._output = output
        chunks = (1, *shape[1:])
        self._labels = output.file.create_dataset(LABELS_KEY, shape, dtype=np.uint64,
                                                  chunks=chunks, compression="gzip")
        self._prob = output.file.create_dataset(
            PROBABILITY_KEY, shape, dtype=np.float32, chunks=chunks, compression="gzip"
        ) if probabilities else None
        self._affinities = output.file.create_dataset(
            AFFINITIES_KEY, (affinity_channels, *shape), dtype=np.float32,
            chunks=(affinity_channels, *chunks), compression="gzip"
        ) if affinity_channels else None
        for dataset in (self._labels, self._prob, self._affinities):
            if dataset is not None:
                dataset.attrs["resolution"] = np.asarray(resolution, dtype=np.float64)

    def write(self, z0: int, labels: np.ndarray, prob: np.ndarray, image: np.ndarray,
              affinities: np.ndarray | None = None) -> None:
        with interrupts_deferred():  # HDF5 writes through Python calls: let it finish
            self._write_arrays(z0, labels, prob, affinities)

    def flush(self) -> None:
        self._output.flush()


def _compressor(zarr_format: int):
    """Blosc/zstd, the codec ome-zarr writes and neuroglancer and napari read."""
    if zarr_format == 2:
        from numcodecs import Blosc

        return Blosc(cname="zstd", clevel=5, shuffle=Blosc.SHUFFLE)
    return zarr.codecs.BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")


class OmeZarrOutput(_SliceArrays):
    """An OME-Zarr output being written (see the module docstring); ``chunks`` ``(z, y, x)``
    default to one slice deep and :data:`ZARR_TILE` wide. :meth:`finish` writes its
    metadata."""

    def __init__(self, folder: Path, shape: tuple[int, int, int],
                 resolution: tuple[float, float, float], *, image_dtype: np.dtype,
                 probabilities: bool, zarr_format: int, name: str,
                 chunks: tuple[int, int, int] | None = None, affinity_channels: int = 0
                 ) -> None:
        self._zarr_format = zarr_format
        self._resolution = [float(r) for r in resolution]
        self._root = zarr.open_group(folder, mode="w", zarr_format=zarr_format)
        chunks = chunks or (1, min(shape[1], ZARR_TILE), min(shape[2], ZARR_TILE))
        compressor = _compressor(zarr_format)
        self._images = ome_images(name, probabilities)
        arrays = [(self._root.require_group(path) if path else self._root).create_array(
            "0", shape=shape, chunks=chunks, dtype=dtype, compressors=compressor,
            fill_value=0, config={"write_empty_chunks": True})
            for (path, _), dtype in zip(self._images, (image_dtype, np.uint64, np.float32),
                                        strict=False)]  # no probabilities: 2 images
        self._image, self._labels = arrays[0], arrays[1]
        self._prob = arrays[2] if probabilities else None
        self._affinities = self._root.require_group(AFFINITIES_NAME).create_array(
            "0", shape=(affinity_channels, *shape), chunks=(affinity_channels, *chunks),
            dtype=np.float32, compressors=compressor, fill_value=0,
            config={"write_empty_chunks": True}) if affinity_channels else None

    def write(self, z0: int, labels: np.ndarray, prob: np.ndarray, image: np.ndarray,
              affinities: np.ndarray | None = None) -> None:
        with interrupts_deferred():  # zarr writes in a background thread: let it finish
            self._image[z0:z0 + len(labels)] = image
            self._write_arrays(z0, labels, prob, affinities)

    def flush(self) -> None:
        """Every chunk is stored as it is written."""

    def finish(self) -> None:
        """Write the OME-Zarr metadata."""
        write_ome_metadata(self._root, self._images, self._resolution, self._zarr_format,
                           affinities=self._affinities is not None)


def ome_images(name: str, probabilities: bool) -> list[tuple[str, str]]:
    """``(group path, title)`` of every image of an OME-Zarr output, each holding its array
    at ``0``: the image segmented (titled ``name``), the labels, and the probabilities when
    stored."""
    images = [("", name), (f"labels/{LABELS_NAME}", LABELS_NAME)]
    return images + ([(PROBABILITIES_NAME, "cell probability")] if probabilities else [])


def write_ome_metadata(root: zarr.Group, images: list[tuple[str, str]],
                       resolution: list[float], zarr_format: int, *,
                       affinities: bool = False) -> None:
    """Write the OME-Zarr metadata of an output (with ``ome-zarr``): multiscales with the
    voxel size (nm, ``(z, y, x)``) as scale for each ``(group path, title)`` of ``images``
    (their arrays ``0`` written), the label image's ``image-label`` pointing at its image,
    and, with ``affinities``, the :data:`AFFINITIES_NAME` image (axes c, z, y, x)."""
    with warnings.catch_warnings():  # ome-zarr's own default argument is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.format import FormatV04, FormatV05
        from ome_zarr.writer import write_label_metadata, write_multiscales_metadata

    fmt = FormatV04() if zarr_format == 2 else FormatV05()
    axes = [{"name": axis, "type": "space", "unit": "nanometer"} for axis in "zyx"]
    scale = [float(r) for r in resolution]
    datasets = [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}]
    for path, title in images:
        group = root[path] if path else root
        write_multiscales_metadata(group, datasets, fmt=fmt, axes=axes, name=title)
    if affinities:
        write_multiscales_metadata(
            root[AFFINITIES_NAME], [{"path": "0", "coordinateTransformations": [
                {"type": "scale", "scale": [1.0, *scale]}]}],
            fmt=fmt, axes=[{"name": "c", "type": "channel"}, *axes],
            name="affinities (z, y, x)")
    write_label_metadata(root["labels"], LABELS_NAME, fmt=fmt, source={"image": "../../"})


@contextmanager
def open_output(path: str | Path, shape: tuple[int, int, int],
                resolution: tuple[float, float, float], *, image_dtype: np.dtype,
                probabilities: bool, zarr_format: int = 2, image_name: str = "raw",
                affinity_channels: int = 0) -> Iterator[SegmentationOutput]:
    """A segmentation output at ``path``, complete there only when the block ends without
    an error (an existing file or zarr store at ``path`` is replaced then).

    Args:
        path: ``*.zarr``: an OME-Zarr image (see the module docstring); otherwise HDF5 in
            the CREMI layout (``volumes/labels/neuron_ids``, with ``probabilities``
            ``volumes/predictions/cell_probability``; the image is not stored).
        shape: ``(Z, Y, X)``.
        resolution: voxel size in nm ``(z, y, x)``, stored with every array.
        image_dtype: dtype of the image the labels were computed from.
        probabilities: store the cell probability map.
        zarr_format: 2 (OME-Zarr 0.4) or 3 (OME-Zarr 0.5).
        image_name: the OME-Zarr image's name (what it shows).
        affinity_channels: store an affinity network's ``C`` affinities (0: none).
    """
    if not is_zarr_output(path):
        with atomic_hdf5(path) as output:
            yield _Hdf5Output(output, shape, resolution, probabilities, affinity_channels)
        return
    with atomic_directory(path) as folder:
        output = OmeZarrOutput(folder, shape, resolution, image_dtype=np.dtype(image_dtype),
                                probabilities=probabilities, zarr_format=zarr_format,
                                name=image_name, affinity_channels=affinity_channels)
        yield output
        output.finish()
