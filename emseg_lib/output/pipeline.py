"""Whole-volume segmentation into an HDF5 file or an OME-Zarr image, in bounded memory
(``emseg segment`` and ``emseg postprocess``).

A volume is processed ``chunk_slices`` slices at a time: network inference (:func:`segment_to_file`;
whole slices for 2D networks, overlapping tiles with z context for 3D ones) or reading a
probability map (:func:`postprocess_to_file`), then post-processing (per slice in parallel
worker processes, or per chunk in 3D with a z halo, its segments stitched to the chunk before
it across their face: :class:`~emseg_lib.output.stitching.ChunkStitcher`), and the results
written
(:func:`~emseg_lib.output.segmentation_output.open_output`) before the next chunk is read. Only one
chunk's data, probabilities and labels are held at once, and a few slices for the preview
(:class:`~emseg_lib.output.preview.PreviewSamples`). The inputs may be arrays or array-likes read
by slicing (h5py datasets, zarr arrays).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from emseg_lib.data.cremi import PROBABILITY_KEY as PROBABILITY_KEY
from emseg_lib.errors import EmsegInputError, check_probabilities
from emseg_lib.inference import predict_volume
from emseg_lib.infra.parallel import ProcessPool, SerialPool, resolve_workers, worker_pool
from emseg_lib.infra.progress import progress_bar
from emseg_lib.models import model_entry
from emseg_lib.output.partial_results import PartialResults
from emseg_lib.output.preview import PreviewSamples, SliceSample
from emseg_lib.output.segmentation_output import is_zarr_output, open_output
from emseg_lib.output.stitching import ChunkStitcher
from emseg_lib.postprocess import get_method, segment_volume
from emseg_lib.profiles import Tiling
from emseg_lib.scoring.metrics import segment_count

#: ``(z0, z1, halo) -> (prob, image)``: a chunk's cell probability, with up to ``halo`` slices
#: of the volume below and above it (``min(halo, z0)`` and ``min(halo, Z - z1)``), and the
#: image of its own slices
ChunkSource = Callable[[int, int, int], tuple[np.ndarray, np.ndarray]]


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
        method = get_method(self.method)
        method.check_together(method.thresholds(self.thresholds))  # unknown names, ranges
        if self.keep_boundaries and not method.has_boundaries:
            raise EmsegInputError("--keep-boundaries keeps the thesis method's label-0 "
                                  f"boundaries; the {self.method} method has none")
        if self.dims not in (2, 3):
            raise EmsegInputError(f"dims must be 2 or 3, got {self.dims}")
        resolve_workers(self.workers)


@dataclass(frozen=True)
class SegmentationRun:
    """What a whole-volume segmentation did; ``cells`` counts its distinct segment ids (the
    largest id may be higher: ids are not always consecutive).

    Attributes:
        derived: thresholds derived from the map (:attr:`PostprocessMethod.derived`): their
            values per computed slice (per chunk in 3D: ``derived_per``); chunks resumed
            from an earlier run are not among them.
    """

    slices: int
    seconds: float
    cells: int
    zero_voxels: int
    samples: tuple[SliceSample, ...] = ()
    resumed_chunks: int = 0
    derived: dict[str, tuple[float, ...]] = field(default_factory=dict)
    derived_per: str = "slice"

    @property
    def slices_per_second(self) -> float:
        """Throughput over the whole run."""
        return self.slices / self.seconds if self.seconds > 0 else float("inf")


#: slices read, segmented and written at once unless told (``--chunk-slices``); in 2D the
#: seeded method's derived thresholds are derived from each chunk's slices together
CHUNK_SLICES = 8
#: the z halo (slices) of a chunk segmented in 3D, at most its depth: the overlap in which
#: it is stitched to its neighbours
CHUNK_HALO_Z = 4


def chunk_ranges(n_slices: int, chunk_slices: int) -> list[tuple[int, int]]:
    """``(z0, z1)`` of each chunk: as few as hold at most ``chunk_slices`` slices each, their
    sizes differing by one at most (no short last chunk: thresholds derived from a chunk
    need its slices)."""
    if chunk_slices < 1:
        raise EmsegInputError(f"--chunk-slices must be >= 1, got {chunk_slices}")
    bounds = np.linspace(0, n_slices, -(-n_slices // chunk_slices) + 1).round().astype(int)
    return [(int(z0), int(z1)) for z0, z1 in zip(bounds[:-1], bounds[1:], strict=True)]


@dataclass(frozen=True)
class OutputSpec:
    """What the output holds besides the labels.

    Attributes:
        probabilities: store the cell probability map (an HDF5 output of ``segment``
            always does).
        zarr_format: 2 or 3, for a ``.zarr`` output.
        preview_slices: slices kept for the preview picture (0: none).
    """

    probabilities: bool = True
    zarr_format: int = 2
    preview_slices: int = 3


def _ids_dtype(labels: np.ndarray) -> np.dtype:
    """The smallest unsigned dtype holding ``labels``' ids (they are stored that way)."""
    return np.min_scalar_type(int(labels.max(initial=0)))


def label_chunk(prob: np.ndarray, post: Postprocessing, thresholds: dict[str, float],
                resolution: tuple[float, float, float], pool: SerialPool | ProcessPool
                ) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Segment a chunk ``(z, Y, X)`` of cell probability as ``post`` says: ids from 1 (0 on
    kept boundaries, int64), and the thresholds used with the derived ones filled in (one
    set per slice, all the same: derived from the whole chunk; one for the chunk in 3D)."""
    used = get_method(post.method).derive(prob, thresholds, resolution,
                                          per_slice=post.dims == 2)
    cells = segment_volume(prob, post.method, used, dims=post.dims, resolution=resolution,
                           keep_boundaries=post.keep_boundaries, start=0, pool=pool)
    return cells, [used] if post.dims == 3 else [used] * len(prob)


@dataclass(frozen=True)
class _Chunk:
    """A chunk's ids from 1 (0 on kept boundaries), probability and image, ``(z, Y, X)``, and
    its segmentation's ids on the halo slices below and above it (``(h, Y, X)``, 3D)."""

    labels: np.ndarray
    prob: np.ndarray
    image: np.ndarray
    below: np.ndarray
    above: np.ndarray


def _chunk(z0: int, z1: int, halo: int, compute: ChunkSource, post: Postprocessing,
           thresholds: dict[str, float], resolution: tuple[float, float, float],
           pool: SerialPool | ProcessPool, partial: PartialResults | None,
           plane: tuple[int, ...], derived: list[dict[str, float]]) -> _Chunk:
    """Slices ``z0 .. z1 - 1`` of ``plane`` (Y, X), segmented with up to ``halo`` slices
    around them; taken from ``partial`` when an earlier run finished them (and the file is
    sound), else computed (and kept). The thresholds used (derived ones filled in) are
    appended to ``derived``, per slice (per chunk in 3D)."""
    saved = (partial.load(z0, (z1 - z0, *plane))
             if partial is not None and partial.has(z0) else None)
    if saved is not None:
        none = np.zeros((0, *plane), dtype=saved["labels"].dtype)
        return _Chunk(saved["labels"], saved["prob"], saved.get("image", saved["prob"]),
                      saved.get("below", none), saved.get("above", none))
    prob, image = compute(z0, z1, halo)
    cells, used = label_chunk(prob, post, thresholds, resolution, pool)
    derived.extend(used)
    core = slice(min(halo, z0), min(halo, z0) + z1 - z0)
    chunk = _Chunk(cells[core], prob[core], image if image is not prob else prob[core],
                   cells[:core.start], cells[core.stop:])
    if partial is not None:
        own_image = {} if image is prob else {"image": image}
        dtype = _ids_dtype(cells)
        partial.save(z0, labels=chunk.labels.astype(dtype), prob=chunk.prob, **own_image,
                     below=chunk.below.astype(dtype), above=chunk.above.astype(dtype))
    return chunk


def _write_labels(compute: ChunkSource, ranges: list[tuple[int, int]], out_path: Path,
                  shape: tuple[int, int, int], resolution: tuple[float, float, float],
                  post: Postprocessing, pool: SerialPool | ProcessPool, *, spec: OutputSpec,
                  raw_image: bool, progress: bool, partial: PartialResults | None,
                  halo: int) -> SegmentationRun:
    """Post-process the chunks ``ranges`` of ``compute`` into ``out_path``; in 3D each with
    ``halo`` slices around it (at most the shallowest chunk's depth), stitched to the chunk
    before it."""
    started = time.perf_counter()
    last_id, segments, zeros = 0, 0, 0
    stitcher = ChunkStitcher() if post.dims == 3 else None
    halo = min([halo, *(z1 - z0 for z0, z1 in ranges)]) if stitcher is not None else 0
    thresholds = get_method(post.method).thresholds(post.thresholds)
    used: list[dict[str, float]] = []
    samples = PreviewSamples(shape[0], spec.preview_slices)
    image_dtype = np.uint8 if raw_image else np.float32
    resumed = sum(partial.has(z0) for z0, _ in ranges) if partial is not None else 0
    with open_output(out_path, shape, resolution, image_dtype=image_dtype,
                     probabilities=spec.probabilities, zarr_format=spec.zarr_format,
                     image_name="raw" if raw_image else "cell probability") as output:
        for z0, z1 in progress_bar(ranges, desc="chunks", disable=not progress):
            chunk = _chunk(z0, z1, halo, compute, post, thresholds, resolution, pool,
                           partial, shape[1:], used)
            prob, image = chunk.prob, chunk.image
            if stitcher is not None:
                cells, new = stitcher.add(chunk.labels, chunk.below, chunk.above)
                segments += new
            else:
                cells = np.where(chunk.labels > 0, chunk.labels.astype(np.uint64)
                                 + np.uint64(last_id), np.uint64(0))
                last_id = max(last_id, int(cells.max(initial=0)))
                segments += segment_count(chunk.labels)  # the chunks' ids do not overlap
            output.write(z0, cells, prob, image)
            samples.take(z0, prob, cells, image if raw_image else None)
            zeros += int(np.count_nonzero(cells == 0))
            output.flush()  # a full disk stops the run here, not at the end
    derived = {key: tuple(t[key] for t in used) for key in get_method(post.method).derived
               if key not in thresholds}
    return SegmentationRun(shape[0], time.perf_counter() - started, segments, zeros,
                           tuple(samples.samples), resumed, derived,
                           "chunk" if post.dims == 3 else "slice")


def output_bytes_bound(shape: tuple[int, int, int], zarr: bool = False) -> int:
    """Upper bound in bytes of a segmentation output for a volume of ``shape`` (Z, Y, X):
    uint64 labels and float32 probabilities, uncompressed (gzip usually writes far less);
    an OME-Zarr output (``zarr``) may hold a float32 image besides.

    For :func:`~emseg_lib.infra.output_checks.check_output`'s ``expected_bytes``.
    """
    n_voxels = int(np.prod(shape, dtype=np.int64))
    per_voxel = np.dtype(np.uint64).itemsize + np.dtype(np.float32).itemsize
    return n_voxels * (per_voxel + (np.dtype(np.float32).itemsize if zarr else 0))


def segment_to_file(model: nn.Module, raw, out_path: str | Path, post: Postprocessing, *,
                    tiling: Tiling, resolution: tuple[float, float, float],
                    chunk_slices: int = CHUNK_SLICES, device: str | None = None,
                    spec: OutputSpec | None = None, progress: bool = True,
                    partial: PartialResults | None = None) -> SegmentationRun:
    """Segment ``raw`` ``(Z, Y, X)`` uint8 (array, h5py dataset or zarr array) into
    ``out_path``.

    HDF5 (CREMI layout): ``volumes/labels/neuron_ids`` (uint64, ids unique across the volume;
    dense unless ``post.keep_boundaries``) and ``volumes/predictions/cell_probability``
    (float32), both with the ``resolution`` attribute (nm, ``(z, y, x)``). ``*.zarr``: an
    OME-Zarr image of ``raw`` with the labels, and the probabilities if ``spec`` asks
    (:mod:`~emseg_lib.output.segmentation_output`). The output appears at ``out_path`` only when
    complete; an existing one there is replaced, so check the location first with
    :func:`~emseg_lib.infra.output_checks.check_output`. With ``partial`` (entered), finished
    chunks are kept there and those an interrupted earlier run kept are not computed again.
    """
    if len(raw.shape) != 3:
        raise EmsegInputError(f"raw data must be (Z, Y, X), got shape {raw.shape}")
    if np.dtype(raw.dtype) != np.uint8:
        raise EmsegInputError(f"raw data is {np.dtype(raw.dtype)}, expected uint8; load it with "
                              "--rescale (load_stack(..., rescale=True)) to map it to 0..255")
    spec = spec or OutputSpec()
    if not is_zarr_output(out_path):
        spec = dataclasses.replace(spec, probabilities=True)
    n_slices = raw.shape[0]
    context = tiling.tile[0] // 2 if model_entry(model).dims == 3 else 0

    def predicted(z0: int, z1: int, halo: int) -> tuple[np.ndarray, np.ndarray]:
        # the network sees ``context`` slices around the chunk; the halo's own probabilities
        # come from the same prediction when it is no deeper than that context
        lo, hi = max(0, z0 - max(context, halo)), min(n_slices, z1 + max(context, halo))
        image = np.asarray(raw[lo:hi])
        prob = predict_volume(model, image, tiling, device=device, progress=False)
        return (prob[max(0, z0 - halo) - lo:min(n_slices, z1 + halo) - lo],
                image[z0 - lo:z1 - lo])

    return _run(predicted, chunk_ranges(n_slices, chunk_slices), out_path, tuple(raw.shape),
                resolution, post, spec=spec, raw_image=True, progress=progress, partial=partial,
                halo=max(CHUNK_HALO_Z, context))


def postprocess_to_file(prob, out_path: str | Path, post: Postprocessing, *,
                        resolution: tuple[float, float, float], invert: bool = False,
                        chunk_slices: int = CHUNK_SLICES, spec: OutputSpec | None = None,
                        progress: bool = True, partial: PartialResults | None = None
                        ) -> SegmentationRun:
    """Post-process a probability volume ``(Z, Y, X)`` (array, h5py dataset or zarr array)
    into ``out_path``: HDF5 ``volumes/labels/neuron_ids`` (CREMI layout), or for ``*.zarr``
    an OME-Zarr image of the probabilities (as used) with the labels.

    Args:
        prob: float in [0, 1], 1 = cell interior; with ``invert`` 1 = boundary (maps from
            other tools), used as ``1 - prob``.
        partial: as :func:`segment_to_file`.
    """
    if len(prob.shape) != 3:
        raise EmsegInputError(f"the probability map must be (Z, Y, X), got shape {prob.shape}")
    spec = dataclasses.replace(spec or OutputSpec(), probabilities=False)
    n_slices = prob.shape[0]

    def read(z0: int, z1: int, halo: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = max(0, z0 - halo), min(n_slices, z1 + halo)
        chunk = np.asarray(prob[lo:hi], dtype=np.float32)
        check_probabilities(f"probability slices {lo}..{hi - 1}", chunk)
        used = 1.0 - chunk if invert else chunk
        return used, used

    return _run(read, chunk_ranges(n_slices, chunk_slices), out_path, tuple(prob.shape),
                resolution, post, spec=spec, raw_image=False, progress=progress,
                partial=partial, halo=CHUNK_HALO_Z)


def _run(compute: ChunkSource, ranges: list[tuple[int, int]], out_path: str | Path,
         shape: tuple[int, ...], resolution: tuple[float, float, float], post: Postprocessing,
         *, spec: OutputSpec, raw_image: bool, progress: bool,
         partial: PartialResults | None, halo: int) -> SegmentationRun:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    workers = 1 if post.dims == 3 else min(resolve_workers(post.workers), shape[0])
    with worker_pool(workers) as pool:
        return _write_labels(compute, ranges, out_path, shape, resolution, post, pool,
                             spec=spec, raw_image=raw_image, progress=progress,
                             partial=partial, halo=halo)
