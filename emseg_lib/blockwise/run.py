"""Blockwise whole-volume segmentation on a dask cluster (``emseg segment --engine`` and
``emseg postprocess --engine``).

Three passes over the blocks, each a set of independent tasks:

1. every block not finished by an earlier run reads its core plus halo, predicts or takes the
   probabilities, post-processes, and writes its core (image, probabilities, local ids) into
   the work folder's chunk-aligned arrays (:func:`~emseg_lib.blockwise.block_job.run_block`);
2. every block matches its segments with those of its upper neighbours in the slab past each
   face (:func:`~emseg_lib.blockwise.block_job.face_merges`; 3D only: per-slice blocks have
   no halo across slices);
3. every block writes its final ids: local ids shifted by the ids of the blocks before it,
   merged segments given one id (:class:`~emseg_lib.output.stitching.IdMap`).

The OME-Zarr output then takes its place at ``out`` in one step. With per-slice
post-processing (2D networks, anisotropic stacks) blocks are whole slices and the ids are
numbered as by the single-process run, so both write the same labels.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from emseg_lib.blockwise.block_job import BlockJob, face_merges, relabel_block, run_block
from emseg_lib.blockwise.cluster import Cluster, open_client
from emseg_lib.blockwise.work_folder import LOCAL, OUTPUT, WorkFolder
from emseg_lib.infra.atomic_files import atomic_directory
from emseg_lib.infra.progress import progress_bar
from emseg_lib.output.pipeline import OutputSpec, SegmentationRun
from emseg_lib.output.preview import PreviewSamples
from emseg_lib.output.segmentation_output import (
    AFFINITIES_NAME,
    LABELS_NAME,
    PROBABILITIES_NAME,
    OmeZarrOutput,
    is_zarr_output,
    ome_images,
    open_output,
    write_ome_metadata,
)
from emseg_lib.output.stitching import IdMap
from emseg_lib.postprocess import get_method

#: marks a work folder whose arrays are all created
CREATED = "created"


class BlockFailed(RuntimeError):
    """A block's worker died (more often than dask retries); the finished blocks are kept."""


def _create_arrays(folder: Path, job: BlockJob, image_dtype: np.dtype, image_name: str,
                   zarr_format: int) -> None:
    """The work folder's output (probabilities always: the preview reads them) and local
    ids, chunked by block; kept when an earlier run of the job created them."""
    if (folder / CREATED).is_file():
        return
    chunks = job.grid.chunks()
    OmeZarrOutput(folder / OUTPUT, job.grid.shape, job.resolution, image_dtype=image_dtype,
                  probabilities=True, zarr_format=zarr_format, name=image_name, chunks=chunks,
                  affinity_channels=job.affinity_channels)
    zarr.open_array(folder / LOCAL, mode="w", shape=job.grid.shape, chunks=chunks,
                    dtype=np.uint64, fill_value=0, zarr_format=2)
    (folder / CREATED).write_text("")


#: the longest wait for one pass over the blocks, in seconds (None: no limit; tests set a
#: generous one, so that a hung cluster fails naming the blocks it waited for)
WAIT_LIMIT_S: float | None = None


def _run_tasks(client, fn: Callable[..., Any], job: BlockJob, items: list[Any], desc: str,
               progress: bool, *extra: Any) -> list[Any]:
    """``[fn(job, item, *extra) for item in items]`` on the cluster (here for ``client``
    None), with a progress bar."""
    if client is None:
        return [fn(job, item, *extra) for item in progress_bar(items, desc=desc,
                                                                disable=not progress)]
    from dask.distributed import TimeoutError as WaitTimeout
    from distributed import KilledWorker, as_completed

    shared = client.scatter([job, *extra], broadcast=True, hash=False)
    futures = client.map(fn, [shared[0]] * len(items), items,
                         *([future] * len(items) for future in shared[1:]), pure=False)
    where = {future.key: i for i, future in enumerate(futures)}
    results: list[Any] = [None] * len(items)
    pending = set(where)
    try:
        for future in progress_bar(as_completed(futures, timeout=WAIT_LIMIT_S),
                                   total=len(items), desc=desc, disable=not progress):
            try:
                results[where[future.key]] = future.result()
            except KilledWorker as err:
                raise BlockFailed(f"{desc}: block {items[where[future.key]]}: its worker died "
                                  f"repeatedly ({err}); out of memory? The finished blocks "
                                  "are kept: run the same command again to resume") from err
            pending.discard(future.key)
    except WaitTimeout as err:
        waiting = sorted(items[where[key]] for key in pending)
        raise BlockFailed(f"{desc}: {len(waiting)} block(s) not done after {WAIT_LIMIT_S} s: "
                          f"{waiting[:20]}; the cluster's workers: "
                          f"{sorted(client.scheduler_info()['workers'])}") from err
    return results


def _preview(folder: Path, n_slices: int, count: int, raw_image: bool) -> list:
    """The preview slices of the work folder's output."""
    samples = PreviewSamples(n_slices, count)
    root = zarr.open_group(folder / OUTPUT, mode="r")
    for z in samples.wanted:
        image = np.asarray(root["0"][z:z + 1])
        samples.take(z, np.asarray(root[f"{PROBABILITIES_NAME}/0"][z:z + 1]),
                     np.asarray(root[f"labels/{LABELS_NAME}/0"][z:z + 1]),
                     image if raw_image else None)
    return samples.samples


def _move_into_place(folder: Path, out: Path, spec: OutputSpec, image_name: str,
                     resolution: tuple[float, float, float], chunk_slices: int,
                     affinity_channels: int) -> None:
    """Finish the work folder's output (metadata; probabilities and affinities dropped
    unless asked for) and put it at ``out`` in one step, replacing what was there; an HDF5
    ``out`` is written from it ``chunk_slices`` at a time."""
    staged = folder / OUTPUT
    kept = affinity_channels if spec.probabilities else 0
    if not is_zarr_output(out):
        root = zarr.open_group(staged, mode="r")
        labels, prob = root[f"labels/{LABELS_NAME}/0"], root[f"{PROBABILITIES_NAME}/0"]
        with open_output(out, labels.shape, resolution, image_dtype=np.float32,
                         probabilities=spec.probabilities, affinity_channels=kept) as output:
            for z0 in range(0, labels.shape[0], chunk_slices):
                window = slice(z0, z0 + chunk_slices)
                chunk = np.asarray(prob[window])
                output.write(z0, np.asarray(labels[window]), chunk, chunk,
                             np.asarray(root[f"{AFFINITIES_NAME}/0"][:, window]) if kept
                             else None)
        return
    for name, dropped in ((PROBABILITIES_NAME, not spec.probabilities),
                          (AFFINITIES_NAME, affinity_channels and not kept)):
        if dropped:
            shutil.rmtree(staged / name)
    write_ome_metadata(zarr.open_group(staged, mode="r+"),
                       ome_images(image_name, spec.probabilities), list(resolution),
                       spec.zarr_format, affinities=bool(kept))
    with atomic_directory(out) as tmp:
        os.rename(staged, tmp)


def segment_blockwise(job: BlockJob, out: str | Path, cluster: Cluster, *,
                      run_job: dict[str, Any], spec: OutputSpec, progress: bool = True,
                      timings: dict[str, Any] | None = None) -> SegmentationRun:
    """Segment ``job``'s volume block by block on ``cluster`` into the OME-Zarr ``out``.

    Args:
        job: the blocks and what each does (its ``folder`` is set here).
        out: a ``.zarr`` output (or, for ``inline`` runs, ``.h5``); it appears only when
            every block is done (an existing one is replaced then: check the location
            first).
        cluster: where the blocks run.
        run_job: what decides the result (a run with the same one resumes).
        spec: the output's format and contents.
        timings: filled (when given) with the wall seconds of each pass (``"blocks"``,
            ``"faces"``, ``"relabel"``) and every block's own seconds (``"per_block"``).

    Raises:
        BlockFailed: a block's worker died repeatedly; the finished blocks are kept.
    """
    out = Path(out)
    started = time.perf_counter()
    raw_image = job.checkpoint is not None
    image_name = ("raw" if raw_image else "cell probability" if job.agglomeration is None
                  else "mean affinity")
    with WorkFolder(out, run_job) as work:
        if work.kept:
            print(f"resuming: {work.kept} block(s) finished by an earlier run are taken from "
                  f"{work.folder}")
        job = dataclasses.replace(job, folder=str(work.folder))
        _create_arrays(work.folder, job, np.dtype(np.uint8 if raw_image else np.float32),
                       image_name, spec.zarr_format)
        blocks = list(range(len(job.grid)))
        timings = {} if timings is None else timings
        with open_client(cluster) as client:
            clock = time.perf_counter()
            records = _run_tasks(client, run_block, job, blocks, "blocks", progress)
            timings["blocks"], clock = time.perf_counter() - clock, time.perf_counter()
            faced = [i for i in blocks if job.grid.upper_faces(job.grid.block_at(i))]
            rows = _run_tasks(client, face_merges, job, faced, "faces", progress)
            merges = np.concatenate(
                [np.zeros((0, 4), dtype=np.uint64)]
                + [np.column_stack([np.full(len(r), i, np.uint64), r])
                   for i, r in zip(faced, rows, strict=True)])
            ids = IdMap.build([r["max_id"] for r in records], merges)
            timings["faces"], clock = time.perf_counter() - clock, time.perf_counter()
            _run_tasks(client, relabel_block, job, blocks, "relabel", progress, ids)
            timings["relabel"] = time.perf_counter() - clock
        timings["per_block"] = [r["seconds"] for r in records]
        samples = _preview(work.folder, job.grid.shape[0], spec.preview_slices, raw_image)
        _move_into_place(work.folder, out, spec, image_name, job.resolution,
                         job.grid.block[0], job.affinity_channels)
        work.remove()
    used = [t for r in records for t in r["derived"]]
    derived = {} if job.post is None else {
        key: tuple(t[key] for t in used) for key in get_method(job.post.method).derived
        if key not in job.post.thresholds}
    return SegmentationRun(job.grid.shape[0], time.perf_counter() - started,
                           sum(r["segments"] for r in records) - ids.merges,
                           sum(r["zero_voxels"] for r in records), tuple(samples), work.kept,
                           derived, "slice" if job.post is not None and job.post.dims == 2
                           else "block")
