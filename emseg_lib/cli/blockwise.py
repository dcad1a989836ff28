"""``emseg segment --engine`` and ``emseg postprocess --engine``: the volume block by block on
a dask cluster (:mod:`emseg_lib.blockwise`), into an OME-Zarr output."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from emseg_lib.blockwise import ENGINES, BlockGrid, BlockJob, Cluster, segment_blockwise
from emseg_lib.blockwise.grid import check_blocking
from emseg_lib.cli.common import check_out_file
from emseg_lib.cli.inputs import probability_reference, raw_reference
from emseg_lib.errors import EmsegInputError
from emseg_lib.infra.parallel import available_cores
from emseg_lib.output.pipeline import output_bytes_bound
from emseg_lib.output.segmentation_output import is_zarr_output

#: blocks (z, y, x) of 3D post-processing when --block is not given
BLOCK_3D = (64, 256, 256)
#: the halo (z, y, x) of 3D post-processing when --halo is not given
HALO_3D = (8, 32, 32)


def add_blockwise_arguments(parser: argparse.ArgumentParser) -> None:
    """``--engine``, ``--jobs``, ``--block``, ``--halo``."""
    group = parser.add_argument_group(
        "blockwise (volumes larger than one machine; output .zarr)")
    group.add_argument("--engine", choices=ENGINES, default=None,
                       help="segment block by block on a dask cluster: local (worker "
                            "processes on this machine) or slurm (SLURM jobs through "
                            "dask-jobqueue); default: one process, as without blocks")
    group.add_argument("--jobs", type=int, default=None, metavar="N",
                       help="workers (default: every core for local, 1 for slurm); one GPU "
                            "each when there are GPUs")
    group.add_argument("--block", type=int, nargs=3, default=None, metavar=("Z", "Y", "X"),
                       help="block size in voxels (default: --chunk-slices whole slices per "
                            f"block per slice, {' '.join(map(str, BLOCK_3D))} in 3D)")
    group.add_argument("--halo", type=int, nargs=3, default=None, metavar=("Z", "Y", "X"),
                       help="context read around each block, in voxels (3D; default "
                            f"{' '.join(map(str, HALO_3D))}, or half the 3D network's "
                            "window where larger)")


def check_blockwise_flags(args: argparse.Namespace) -> None:
    """Refuse the blockwise flags without ``--engine``, ``--jobs`` below 1, and an output
    that is not ``.zarr``; before anything is read."""
    if args.engine is None:
        given = [flag for flag, value in (("--jobs", args.jobs), ("--block", args.block),
                                          ("--halo", args.halo)) if value is not None]
        if given:
            raise EmsegInputError(f"{', '.join(given)} apply to blockwise runs; add --engine "
                                  f"local or --engine slurm")
        return
    if args.jobs is not None and args.jobs < 1:
        raise EmsegInputError(f"--jobs must be >= 1, got {args.jobs}")
    if not is_zarr_output(args.out):
        raise EmsegInputError(f"{args.out}: --engine writes an OME-Zarr store, whose chunks "
                              "the workers write side by side; give --out a .zarr name")
    for flag, sizes in (("--block", args.block), ("--halo", args.halo)):
        if sizes is not None and any(n < (1 if flag == "--block" else 0) for n in sizes):
            raise EmsegInputError(f"{flag} must be 3 sizes >= {1 if flag == '--block' else 0}"
                                  f", got {' '.join(map(str, sizes))}")


def cluster_of(args: argparse.Namespace, gpus: bool) -> Cluster:
    """The cluster ``--engine`` and ``--jobs`` ask for."""
    jobs = args.jobs or (available_cores() if args.engine == "local" else 1)
    return Cluster(args.engine, jobs, gpus)


def block_grid(args: argparse.Namespace, shape: tuple[int, int, int], dims: int,
               context: tuple[int, int, int]) -> BlockGrid:
    """The blocks of a ``shape`` volume: whole slices for per-slice post-processing
    (``dims`` 2; z halo ``context`` for a 3D network), else ``--block`` / ``--halo`` (at
    least ``context``)."""
    if dims == 2:
        if args.halo is not None:
            raise EmsegInputError("--halo applies to 3D post-processing; per slice, blocks "
                                  "are whole slices and need none")
        block = tuple(args.block) if args.block else (args.chunk_slices, *shape[1:])
        if tuple(block[1:]) != tuple(shape[1:]):
            raise EmsegInputError(f"--block {' '.join(map(str, block))}: per-slice "
                                  f"post-processing takes whole slices, {shape[1]} x "
                                  f"{shape[2]}; give --block Z {shape[1]} {shape[2]}")
        halo = (context[0], 0, 0)
    else:
        block = tuple(args.block) if args.block else BLOCK_3D
        halo = (tuple(args.halo) if args.halo else
                tuple(max(h, c) for h, c in zip(HALO_3D, context, strict=True)))
        flags = f"--block {' '.join(map(str, block))} / --halo {' '.join(map(str, halo))}"
        try:
            check_blocking(shape, block, halo)
        except EmsegInputError as err:
            raise EmsegInputError(f"{flags}: {err}") from err
    return BlockGrid(tuple(shape), tuple(block), tuple(halo))


def check_blockwise_output(args: argparse.Namespace, inputs: list[Path | None],
                           shape: tuple[int, int, int]) -> None:
    """:func:`~emseg_lib.cli.common.check_out_file` with room for the output and the work
    folder (local ids besides)."""
    local_ids = int(np.prod(shape, dtype=np.int64)) * np.dtype(np.uint64).itemsize
    check_out_file(args.out, inputs, args.overwrite,
                   expected_bytes=output_bytes_bound(shape, zarr=True) + local_ids)


def describe(grid: BlockGrid, cluster: Cluster) -> str:
    """One line on the blocks and the engine."""
    where = ("in this process" if cluster.engine == "inline" else
             f"on {cluster.engine} with {cluster.jobs} worker(s)")
    return (f"blockwise: {len(grid)} block(s) of {' x '.join(map(str, grid.block))} voxels "
            f"(z, y, x), halo {' '.join(map(str, grid.halo))}, {where}")


def run_segment_blockwise(args: argparse.Namespace) -> int:
    """``emseg segment --engine``: as :func:`~emseg_lib.cli.segment.run_segment`, block by
    block; every flag and the data's header are checked before the cluster starts."""
    from emseg_lib.cli.segment import (
        choose_postprocessing,
        output_spec,
        report,
        run_job,
        tiling_profile,
        write_preview,
    )
    from emseg_lib.infra.device import pick_device
    from emseg_lib.models import model_entry, model_target
    from emseg_lib.postprocess import postprocess_dims
    from emseg_lib.profiles import get_profile
    from emseg_lib.train.checkpoint import Checkpoint

    inputs = [args.checkpoint, args.data, args.labels]
    device = pick_device(args.device)
    check_out_file(args.out, inputs, args.overwrite)
    checkpoint = Checkpoint.read(args.checkpoint)
    model = checkpoint.model()
    if model_target(model) == "affinities":
        from emseg_lib.cli.affinities import run_segment_affinities

        return run_segment_affinities(args, checkpoint, model)
    profile = tiling_profile(args.profile, checkpoint)
    tiling = get_profile(profile).tiling_3d
    source, shape, resolution = raw_reference(args)
    dims, why = postprocess_dims(model_entry(model).dims, resolution, args.dims)
    post, message = choose_postprocessing(args, checkpoint.learned, dims)
    context = (tuple(t // 2 for t in tiling.tile) if model_entry(model).dims == 3
               else (0, 0, 0))
    grid = block_grid(args, shape, dims, context)
    cluster = cluster_of(args, gpus=str(device).startswith("cuda"))
    check_blockwise_output(args, inputs, shape)
    for line in (why, message, describe(grid, cluster)):
        if line:
            print(line)
    job = BlockJob(source, str(args.checkpoint.resolve()), tiling, args.device, post,
                   tuple(resolution), grid, "")
    decided = run_job(args, post, device=str(device), tiling=[tiling.tile, tiling.overlap],
                      blocks=[grid.block, grid.halo])
    run = segment_blockwise(job, args.out, cluster, run_job=decided, spec=output_spec(args))
    report(args.out, run)
    write_preview(args.out, run, f"{args.data}, {args.checkpoint.name}, blockwise")
    return 0


def run_postprocess_blockwise(args: argparse.Namespace) -> int:
    """``emseg postprocess --engine``: as :func:`~emseg_lib.cli.segment.run_postprocess`,
    block by block."""
    from emseg_lib.cli.segment import (
        choose_postprocessing,
        output_spec,
        report,
        run_job,
        write_preview,
    )

    post, message = choose_postprocessing(args, None, args.dims)
    check_out_file(args.out, [args.prob], args.overwrite)
    source, shape, resolution = probability_reference(
        args.prob, args.prob_key, tuple(args.resolution), args.invert, args.chunk_slices)
    grid = block_grid(args, shape, args.dims, (0, 0, 0))
    cluster = cluster_of(args, gpus=False)
    check_blockwise_output(args, [args.prob], shape)
    print(f"{args.prob}: shape {shape} (Z, Y, X), resolution {resolution} nm"
          f"{', inverted (1 = boundary)' if args.invert else ''}")
    print(message)
    print(describe(grid, cluster))
    job = BlockJob(source, None, None, "cpu", post, tuple(resolution), grid, "")
    decided = run_job(args, post, resolution=list(resolution), blocks=[grid.block, grid.halo])
    run = segment_blockwise(job, args.out, cluster, run_job=decided, spec=output_spec(args))
    report(args.out, run)
    write_preview(args.out, run, f"{args.prob}, {post.method}, blockwise")
    return 0
