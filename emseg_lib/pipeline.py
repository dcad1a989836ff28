"""Whole-volume segmentation into an HDF5 file, in bounded memory (``emseg segment`` and
``emseg postprocess``).

A volume is processed ``chunk_slices`` slices at a time: network inference (:func:`segment_to_hdf5`;
whole slices for 2D networks, overlapping tiles with z context for 3D ones) or reading a
probability map (:func:`postprocess_to_hdf5`), then post-processing (per slice in parallel
worker processes, or per chunk in 3D), and the results written before the next chunk is read.
Only one chunk's data, probabilities and labels are held at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from emseg_lib.atomic import atomic_hdf5
from emseg_lib.data.cremi import LABELS_KEY
from emseg_lib.errors import EmsegInputError, check_probabilities
from emseg_lib.inference import predict_volume
from emseg_lib.models import model_entry
from emseg_lib.parallel import ProcessPool, SerialPool, resolve_workers, worker_pool
from emseg_lib.postprocess import get_method, segment_volume
from emseg_lib.profiles import Tiling
from emseg_lib.progress import progress_bar

PROBABILITY_KEY = "volumes/predictions/cell_probability"


@dataclass(frozen=True)
class Postprocessing:
    """How probabilities become labels.

    Attributes:
        method: a :data:`~emseg_lib.postprocess.METHODS` name.
        thresholds: that method's thresholds.
        dims: 2 = per slice, 3 = per chunk in 3D.
        keep_boundaries: keep the thesis method's label-0 boundaries (not dense).
        workers: processes for the slices (None = every core).
    """

    method: str
    thresholds: dict[str, float] = field(default_factory=dict)
    dims: int = 2
    keep_boundaries: bool = False
    workers: int | None = None

    def __post_init__(self) -> None:
        get_method(self.method).thresholds(self.thresholds)  # refuses unknown names
        if self.keep_boundaries and self.method != "thesis":
            raise EmsegInputError("--keep-boundaries keeps the thesis method's label-0 "
                                  f"boundaries; the {self.method} method has none")
        if self.dims not in (2, 3):
            raise EmsegInputError(f"dims must be 2 or 3, got {self.dims}")
        resolve_workers(self.workers)


@dataclass(frozen=True)
class SegmentationRun:
    """What a whole-volume segmentation did."""

    slices: int
    seconds: float
    cells: int
    zero_voxels: int

    @property
    def slices_per_second(self) -> float:
        """Throughput over the whole run."""
        return self.slices / self.seconds if self.seconds > 0 else float("inf")


def _chunks(n_slices: int, chunk_slices: int) -> list[tuple[int, int]]:
    if chunk_slices < 1:
        raise EmsegInputError(f"--chunk-slices must be >= 1, got {chunk_slices}")
    return [(z0, min(n_slices, z0 + chunk_slices)) for z0 in range(0, n_slices, chunk_slices)]


def _write_labels(chunks: Iterator[tuple[int, int, np.ndarray]], out_path: Path,
                  shape: tuple[int, int, int], resolution: tuple[float, float, float],
                  post: Postprocessing, pool: SerialPool | ProcessPool, *,
                  write_probabilities: bool, progress: bool, total: int) -> SegmentationRun:
    """Post-process ``(z0, z1, prob)`` chunks into ``out_path`` (CREMI layout)."""
    started = time.perf_counter()
    n_slices, height, width = shape
    last_id, zeros = 0, 0
    thresholds = get_method(post.method).thresholds(post.thresholds)
    with atomic_hdf5(out_path) as output:
        out = output.file
        labels = out.create_dataset(LABELS_KEY, shape, dtype=np.uint64,
                                    chunks=(1, height, width), compression="gzip")
        datasets = [labels]
        if write_probabilities:
            datasets.append(out.create_dataset(PROBABILITY_KEY, shape, dtype=np.float32,
                                               chunks=(1, height, width), compression="gzip"))
        for dataset in datasets:
            dataset.attrs["resolution"] = np.asarray(resolution, dtype=np.float64)
        for z0, z1, prob in progress_bar(chunks, total=total, desc="chunks", disable=not progress):
            if write_probabilities:
                datasets[1][z0:z1] = prob
            cells = segment_volume(prob, post.method, thresholds, dims=post.dims,
                                   resolution=resolution, keep_boundaries=post.keep_boundaries,
                                   start=last_id, pool=pool)
            labels[z0:z1] = cells.astype(np.uint64)
            last_id = max(last_id, int(cells.max(initial=0)))
            zeros += int(np.count_nonzero(cells == 0))
            output.flush()  # a full disk stops the run here, not at the end
    return SegmentationRun(n_slices, time.perf_counter() - started, last_id, zeros)


def output_bytes_bound(shape: tuple[int, int, int]) -> int:
    """Upper bound in bytes of a segmentation file for a volume of ``shape`` (Z, Y, X):
    uint64 labels and float32 probabilities, uncompressed (gzip usually writes far less).

    For :func:`~emseg_lib.atomic.check_output`'s ``expected_bytes``.
    """
    n_voxels = int(np.prod(shape, dtype=np.int64))
    return n_voxels * (np.dtype(np.uint64).itemsize + np.dtype(np.float32).itemsize)


def segment_to_hdf5(model: nn.Module, raw, out_path: str | Path, post: Postprocessing, *,
                    tiling: Tiling, resolution: tuple[float, float, float],
                    chunk_slices: int = 8, device: str | None = None,
                    progress: bool = True) -> SegmentationRun:
    """Segment ``raw`` ``(Z, Y, X)`` uint8 (array or h5py dataset) into ``out_path``.

    Writes ``volumes/labels/neuron_ids`` (uint64, ids unique across the volume; dense unless
    ``post.keep_boundaries``) and ``volumes/predictions/cell_probability`` (float32), both
    with the ``resolution`` attribute (nm, ``(z, y, x)``), in the CREMI layout. The file
    appears at ``out_path`` only when complete (:func:`~emseg_lib.atomic.atomic_hdf5`); an
    existing file there is replaced, so check the location first with
    :func:`~emseg_lib.atomic.check_output`.
    """
    if len(raw.shape) != 3:
        raise EmsegInputError(f"raw data must be (Z, Y, X), got shape {raw.shape}")
    if np.dtype(raw.dtype) != np.uint8:
        raise EmsegInputError(f"raw data is {np.dtype(raw.dtype)}, expected uint8; load it with "
                              "--rescale (load_stack(..., rescale=True)) to map it to 0..255")
    n_slices = raw.shape[0]
    context = tiling.tile[0] // 2 if model_entry(model).dims == 3 else 0

    def predicted() -> Iterator[tuple[int, int, np.ndarray]]:
        for z0, z1 in _chunks(n_slices, chunk_slices):
            lo, hi = max(0, z0 - context), min(n_slices, z1 + context)
            prob = predict_volume(model, np.asarray(raw[lo:hi]), tiling, device=device,
                                  progress=False)
            yield z0, z1, prob[z0 - lo:z1 - lo]

    return _run(predicted, out_path, tuple(raw.shape), resolution, post,
                write_probabilities=True, progress=progress,
                total=len(_chunks(n_slices, chunk_slices)))


def postprocess_to_hdf5(prob, out_path: str | Path, post: Postprocessing, *,
                        resolution: tuple[float, float, float], invert: bool = False,
                        chunk_slices: int = 8, progress: bool = True) -> SegmentationRun:
    """Post-process a probability volume ``(Z, Y, X)`` (array or h5py dataset) into
    ``out_path`` (``volumes/labels/neuron_ids``, CREMI layout).

    Args:
        prob: float in [0, 1], 1 = cell interior; with ``invert`` 1 = boundary (maps from
            other tools), used as ``1 - prob``.
    """
    if len(prob.shape) != 3:
        raise EmsegInputError(f"the probability map must be (Z, Y, X), got shape {prob.shape}")
    n_slices = prob.shape[0]

    def read() -> Iterator[tuple[int, int, np.ndarray]]:
        for z0, z1 in _chunks(n_slices, chunk_slices):
            chunk = np.asarray(prob[z0:z1], dtype=np.float32)
            check_probabilities(f"probability slices {z0}..{z1 - 1}", chunk)
            yield z0, z1, 1.0 - chunk if invert else chunk

    return _run(read, out_path, tuple(prob.shape), resolution, post,
                write_probabilities=False, progress=progress,
                total=len(_chunks(n_slices, chunk_slices)))


def _run(chunks: Callable[[], Iterator[tuple[int, int, np.ndarray]]], out_path: str | Path,
         shape: tuple[int, ...], resolution: tuple[float, float, float], post: Postprocessing,
         *, write_probabilities: bool, progress: bool, total: int) -> SegmentationRun:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    workers = 1 if post.dims == 3 else min(resolve_workers(post.workers), shape[0])
    with worker_pool(workers) as pool:
        return _write_labels(chunks(), out_path, shape, resolution, post, pool,
                             write_probabilities=write_probabilities, progress=progress,
                             total=total)
