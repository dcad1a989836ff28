"""Whole-volume segmentation to an HDF5 file, in bounded memory (used by ``emseg segment``).

The volume is processed ``chunk_slices`` slices at a time: network inference (whole slices
for 2D networks, overlapping tiles with z context for the 3D UNet), watershed
post-processing per slice, and both results written to the output file before the next
chunk is read. Only one chunk's raw data, probabilities and labels are held at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from torch import nn
from tqdm.auto import tqdm

from emseg_lib.atomic import atomic_path
from emseg_lib.data.cremi import LABELS_KEY
from emseg_lib.errors import EmsegInputError, check_unit_interval
from emseg_lib.inference import predict_slices, predict_tiled
from emseg_lib.models import UNet2D, UNet3D
from emseg_lib.postprocess import watershed_postprocess

PROBABILITY_KEY = "volumes/predictions/cell_probability"
TILE_3D, OVERLAP_3D, HALO_3D = (18, 256, 256), (6, 64, 64), (2, 16, 16)


@dataclass(frozen=True)
class SegmentationRun:
    """What :func:`segment_to_hdf5` did."""

    slices: int
    seconds: float
    cells: int

    @property
    def slices_per_second(self) -> float:
        """Throughput over the whole run."""
        return self.slices / self.seconds if self.seconds > 0 else float("inf")


def _predict_chunk(model: nn.Module, raw, z0: int, z1: int, device: str | None
                   ) -> np.ndarray:
    if isinstance(model, UNet3D):
        context = TILE_3D[0] // 2
        lo, hi = max(0, z0 - context), min(raw.shape[0], z1 + context)
        prob = predict_tiled(model, np.asarray(raw[lo:hi]), TILE_3D, OVERLAP_3D, HALO_3D,
                             device=device, progress=False)
        return prob[z0 - lo:z1 - lo]
    multiple = 2 ** (model.depth - 1) if isinstance(model, UNet2D) else 1
    return predict_slices(model, np.asarray(raw[z0:z1]), multiple=multiple, batch_size=1,
                          device=device, progress=False)


def output_bytes_bound(shape: tuple[int, int, int]) -> int:
    """Upper bound in bytes of :func:`segment_to_hdf5`'s file for raw of ``shape`` (Z, Y, X):
    uint64 labels and float32 probabilities, uncompressed (gzip usually writes far less).

    For :func:`~emseg_lib.atomic.check_output`'s ``expected_bytes``.
    """
    n_voxels = int(np.prod(shape, dtype=np.int64))
    return n_voxels * (np.dtype(np.uint64).itemsize + np.dtype(np.float32).itemsize)


def segment_to_hdf5(model: nn.Module, raw, out_path: str | Path, *, sig_th: float,
                    edge_th: float, resolution: tuple[float, float, float],
                    chunk_slices: int = 8, device: str | None = None,
                    progress: bool = True) -> SegmentationRun:
    """Segment ``raw`` ``(Z, Y, X)`` uint8 (array or h5py dataset) into ``out_path``.

    Writes ``volumes/labels/neuron_ids`` (uint64, 0 = boundary, ids unique across slices)
    and ``volumes/predictions/cell_probability`` (float32), both with the ``resolution``
    attribute, in the CREMI layout. The file appears at ``out_path`` only when complete
    (:func:`~emseg_lib.atomic.atomic_path`); an existing file there is replaced, so check
    the location first with :func:`~emseg_lib.atomic.check_output`.
    """
    check_unit_interval("sig_th", sig_th)
    check_unit_interval("edge_th", edge_th)
    if chunk_slices < 1:
        raise EmsegInputError(f"--chunk-slices must be >= 1, got {chunk_slices}")
    if len(raw.shape) != 3:
        raise EmsegInputError(f"raw data must be (Z, Y, X), got shape {raw.shape}")
    if np.dtype(raw.dtype) != np.uint8:
        raise EmsegInputError(f"raw data is {np.dtype(raw.dtype)}, expected uint8; load it with "
                              "--rescale (load_stack(..., rescale=True)) to map it to 0..255")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    n_slices, height, width = raw.shape
    started = time.perf_counter()
    offset = 0
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as out:
        labels = out.create_dataset(LABELS_KEY, (n_slices, height, width), dtype=np.uint64,
                                    chunks=(1, height, width), compression="gzip")
        probs = out.create_dataset(PROBABILITY_KEY, (n_slices, height, width),
                                   dtype=np.float32, chunks=(1, height, width),
                                   compression="gzip")
        for dataset in (labels, probs):
            dataset.attrs["resolution"] = np.asarray(resolution, dtype=np.float64)
        for z0 in tqdm(range(0, n_slices, chunk_slices), desc="chunks", disable=not progress):
            z1 = min(n_slices, z0 + chunk_slices)
            prob = _predict_chunk(model, raw, z0, z1, device)
            probs[z0:z1] = prob
            for z in range(z0, z1):
                cells = watershed_postprocess(prob[z - z0], sig_th, edge_th)
                labels[z] = np.where(cells > 0, cells + offset, 0).astype(np.uint64)
                offset += int(cells.max())
    return SegmentationRun(n_slices, time.perf_counter() - started, offset)
