"""What one worker does for one block: read the block with its halo, predict (with a
network) or take the probabilities, post-process, and write the core into the chunk-aligned
outputs of the work folder; then, after every block is done, write its final ids.

Every function here is picklable and opens what it needs itself (workers may run on other
machines that share the file system); a worker process loads the network once.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from emseg_lib.blockwise.grid import Block, BlockGrid
from emseg_lib.blockwise.work_folder import LOCAL, OUTPUT, BlockRecords
from emseg_lib.data.volume_ref import VolumeRef
from emseg_lib.infra.parallel import SerialPool
from emseg_lib.output.pipeline import Postprocessing, label_chunk
from emseg_lib.output.segmentation_output import AFFINITIES_NAME, LABELS_NAME, PROBABILITIES_NAME
from emseg_lib.output.stitching import IdMap, core_numbers, own_numbers
from emseg_lib.postprocess.agglomeration import Agglomeration
from emseg_lib.profiles import Tiling
from emseg_lib.scoring.metrics import segment_count

#: a test's hook: a file whose presence makes the next block job exit abruptly after writing
#: its chunks and before recording the block (as a killed worker); the job removes the file
#: first, so the retried block runs normally
KILL_SWITCH = "EMSEG_BLOCKWISE_KILL_SWITCH"


@dataclass(frozen=True)
class BlockJob:
    """Everything a block job needs (picklable).

    Attributes:
        source: the raw data (with ``checkpoint``) or the probability map.
        checkpoint: the network's ``best.pt``; None when ``source`` holds probabilities.
        tiling: the 3D network's windows.
        device: ``"cpu"``, ``"cuda"`` (a worker's own GPU) or None (the best there is).
        post: the post-processing of a cell probability; ``dims`` 2 = per slice (blocks are
            whole slices); None for affinities.
        resolution: voxel size in nm ``(z, y, x)``.
        grid: the blocks.
        folder: the work folder.
        agglomeration: for affinities (``source`` of role ``"affinities"``, or an affinity
            network's output), how they are agglomerated (in 3D).
        affinity_channels: an affinity network's channels, stored with the output
            (0: not stored).
    """

    source: VolumeRef
    checkpoint: str | None
    tiling: Tiling | None
    device: str | None
    post: Postprocessing | None
    resolution: tuple[float, float, float]
    grid: BlockGrid
    folder: str
    agglomeration: Agglomeration | None = None
    affinity_channels: int = 0


@lru_cache(maxsize=1)
def _network(checkpoint: str):
    """The network of ``checkpoint``, loaded once per worker process."""
    from emseg_lib.train import Checkpoint

    return Checkpoint.read(checkpoint).model()


def worker_device(requested: str | None) -> str | None:
    """The device of this worker: with several GPUs on one machine, worker ``n`` of a local
    cluster takes GPU ``n`` modulo their number (one GPU per worker)."""
    import torch

    if requested == "cpu" or not torch.cuda.is_available():
        return requested
    from distributed import get_worker

    try:
        name = get_worker().name
    except ValueError:  # not in a dask worker
        return requested
    return f"cuda:{int(name) % torch.cuda.device_count()}" if isinstance(name, int) else "cuda"


def _probabilities(job: BlockJob, block: Block) -> tuple[np.ndarray, np.ndarray]:
    """The cell probability of ``block.outer`` and the image it came from."""
    image = job.source.read(block.outer)
    if job.checkpoint is None:
        return image, image
    from emseg_lib.inference import predict_volume

    prob = predict_volume(_network(job.checkpoint), image, job.tiling,
                          device=worker_device(job.device), progress=False)
    return prob, image


def run_block(job: BlockJob, index: int) -> dict[str, Any]:
    """Compute block ``index`` (unless finished) and return its record: ``max_id`` (its
    ids are 1..max_id in ``local.zarr``), ``segments``, ``zero_voxels``, ``seconds`` and the
    thresholds used (``derived``)."""
    records = BlockRecords(job.folder)
    done = records.done(index)
    if done is not None:
        return done
    started = time.perf_counter()
    block = job.grid.block_at(index)
    prob, image = _probabilities(job, block)
    inner = block.core_in_outer
    if job.agglomeration is None and job.post.dims == 2:  # per slice: the core's slices
        labels, used = label_chunk(prob[inner], job.post, job.post.thresholds,  # (the halo
                                   job.resolution, SerialPool())  # was z context)
        core, max_id = labels.astype(np.uint64), int(labels.max(initial=0))  # as segment's
        faces: dict[str, np.ndarray] = {}
    else:
        if job.agglomeration is not None:  # the probability shown: the mean affinity
            labels, used = job.agglomeration.segment(prob), []
            if job.affinity_channels:
                stored = prob[(slice(None), *inner)]
            prob = prob.mean(axis=0)
            image = image if job.checkpoint is not None else prob
        else:
            labels, used = label_chunk(prob, job.post, job.post.thresholds, job.resolution,
                                       SerialPool())
        core_ids, core = own_numbers(labels[inner])
        max_id = len(core_ids)
        offset = [s.start for s in block.outer]

        def seen(slab: tuple[slice, ...]) -> np.ndarray:  # this block's ids on a halo slab
            return core_numbers(labels[tuple(slice(s.start - o, s.stop - o)
                                          for s, o in zip(slab, offset, strict=True))],
                             core_ids)

        faces = {**{f"above{face.axis}": seen(face.above)
                    for face in job.grid.upper_faces(block)},
                 **{f"below{face.axis}": seen(face.below)
                    for face in job.grid.lower_faces(block)}}
    folder = Path(job.folder)
    output = zarr.open_group(folder / OUTPUT, mode="r+")
    output["0"][block.core] = image[inner]
    output[f"{PROBABILITIES_NAME}/0"][block.core] = prob[inner]
    if job.affinity_channels:
        output[f"{AFFINITIES_NAME}/0"][(slice(None), *block.core)] = stored
    zarr.open_array(folder / LOCAL, mode="r+")[block.core] = core
    switch = os.environ.get(KILL_SWITCH)
    if switch and Path(switch).exists():
        Path(switch).unlink()
        os._exit(1)
    record = {"max_id": max_id, "segments": segment_count(core),
              "zero_voxels": int(np.count_nonzero(core == 0)),
              "seconds": time.perf_counter() - started,
              "derived": [{k: float(v) for k, v in t.items()} for t in used]}
    records.finish(index, record, faces)
    return record


def face_merges(job: BlockJob, index: int) -> np.ndarray:
    """The ``(lower local id, upper block, upper local id)`` rows of block ``index``'s
    upper faces that are one segment (:func:`~emseg_lib.output.stitching.same_segments`),
    matched on both sides of each face: this block's view of the slab in the upper core, and
    the upper block's view of the slab in this block's core."""
    from emseg_lib.output.stitching import same_segments

    records = BlockRecords(job.folder)
    mine = records.faces(index)
    local = zarr.open_array(Path(job.folder) / LOCAL, mode="r")
    rows = [np.zeros((0, 3), dtype=np.uint64)]
    for face in job.grid.upper_faces(job.grid.block_at(index)):
        theirs = records.faces(face.upper)[f"below{face.axis}"]
        pairs = np.concatenate([
            same_segments(mine[f"above{face.axis}"], np.asarray(local[face.above])),
            same_segments(np.asarray(local[face.below]), theirs)])
        rows.append(np.column_stack([pairs[:, 0], np.full(len(pairs), face.upper, np.uint64),
                                     pairs[:, 1]]))
    return np.concatenate(rows).astype(np.uint64)


def relabel_block(job: BlockJob, index: int, ids: IdMap) -> None:
    """Write block ``index``'s final ids (``ids``) into the output's labels."""
    records = BlockRecords(job.folder)
    if records.relabelled(index):
        return
    block = job.grid.block_at(index)
    local = np.asarray(zarr.open_array(Path(job.folder) / LOCAL, mode="r")[block.core])
    labels = zarr.open_array(Path(job.folder) / OUTPUT, path=f"labels/{LABELS_NAME}/0",
                             mode="r+")
    labels[block.core] = ids.apply(index, local)
    records.mark_relabelled(index)
