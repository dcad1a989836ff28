"""``emseg postprocess --affinities``: affinities from any network agglomerated into a
segmentation (waterz or the mutex watershed, :mod:`emseg_lib.postprocess.agglomeration`), in
chunks of slices with a z halo stitched across their faces (here, or blockwise on a cluster
with ``--engine``)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from emseg_lib.blockwise import BlockGrid, BlockJob, Cluster, segment_blockwise
from emseg_lib.cli.blockwise import block_grid, check_blockwise_output, cluster_of, describe
from emseg_lib.cli.common import THRESHOLD_FLAGS, check_out_file
from emseg_lib.cli.inputs import blocks_input
from emseg_lib.data.cremi import AFFINITIES_KEY
from emseg_lib.data.volume_ref import VolumeRef
from emseg_lib.errors import EmsegInputError
from emseg_lib.output.pipeline import CHUNK_HALO_Z
from emseg_lib.postprocess.agglomeration import (
    AFFINITY_METHODS,
    CHANNEL_ORDERS,
    Agglomeration,
)
from emseg_lib.scoring.tuning import choose_agglomeration

if TYPE_CHECKING:
    from emseg_lib.train.checkpoint import Checkpoint

def add_affinity_arguments(parser: argparse.ArgumentParser) -> None:
    """``--affinities``, ``--affinities-key``, ``--channel-order`` and the affinity methods'
    thresholds (``--threshold``, ``--bias``)."""
    group = parser.add_argument_group("affinities (instead of --prob)")
    group.add_argument("--affinities", type=Path,
                       help="nearest-neighbour affinities (C, Z, Y, X), C = 3 (z, y, x) or 2 "
                            "(y, x), float in [0, 1] (1 = same segment; channel c at a voxel: "
                            "its affinity with the voxel before it along c): HDF5 or zarr; "
                            "segmented with --method waterz (default) or mws")
    group.add_argument("--affinities-key",
                       help=f"HDF5 dataset or zarr array (default: {AFFINITIES_KEY}, or the "
                            "only 4-D one)")
    group.add_argument("--channel-order", choices=CHANNEL_ORDERS, default="zyx",
                       help="the order of the channels in the file (default zyx; xyz: "
                            "reversed, as some tools write them; 2 channels: yx or xy)")
    add_agglomeration_arguments(group)


def add_agglomeration_arguments(group) -> None:
    """The affinity methods' thresholds: ``--threshold`` (waterz), ``--bias`` (mws)."""
    for entry in AFFINITY_METHODS.values():
        group.add_argument(f"--{entry.parameter}", type=float,
                           help=f"{entry.name} method: {entry.description} (default "
                                f"{entry.default:g})")


def affinity_reference(path: Path, key: str | None, default: tuple[float, ...]
                       ) -> tuple[VolumeRef, tuple[int, ...], tuple[float, ...]]:
    """The affinities ``path`` (``--affinities-key``) for block jobs to read, their
    ``(C, Z, Y, X)`` shape and resolution (stored, else ``default``); only the header is
    read (:func:`~emseg_lib.data.chunked_inputs.block_input`)."""
    found = blocks_input(path, key, "--affinities-key", "affinities", default)
    return found.reference, found.shape, found.resolution


def _agglomeration(args: argparse.Namespace, learned: dict | None = None,
                   checkpoint: Path | None = None) -> tuple[Agglomeration, str]:
    """The method and threshold the flags ask for (else ``learned``, else the defaults),
    and where they come from; boundary-map flags refused (naming ``checkpoint``, the
    affinity network, when the affinities come from one)."""
    if getattr(args, "prob", None) is not None:
        raise EmsegInputError("--prob and --affinities: give one input, a cell probability "
                              "map or affinities")
    method = args.method or (learned or {}).get("method") or "waterz"
    if method not in AFFINITY_METHODS:
        what = "--prob" if checkpoint is None else "from a boundary network"
        raise EmsegInputError(f"--method {method} segments a cell probability map ({what}); "
                              f"affinities take --method {' or '.join(AFFINITY_METHODS)}"
                              + ("" if checkpoint is None else f" ({checkpoint} is an "
                                 "affinity network)"))
    given = [f"--{name.replace('_', '-')}" for name in THRESHOLD_FLAGS
             if getattr(args, name) is not None]
    given += [f"--{entry.parameter}" for entry in AFFINITY_METHODS.values()
              if entry.name != method and getattr(args, entry.parameter) is not None]
    given += [flag for flag, on in (("--invert", getattr(args, "invert", False)),
                                    ("--keep-boundaries", args.keep_boundaries)) if on]
    if given:
        raise EmsegInputError(f"{', '.join(given)}: not a setting of the {method} method "
                              "on affinities")
    value, source = choose_agglomeration(method, getattr(args, AFFINITY_METHODS[method].parameter),
                                         learned, given_by="from the command line")
    return Agglomeration(method, value, getattr(args, "channel_order", "zyx")), source


def run_affinities(args: argparse.Namespace) -> int:
    """``emseg postprocess --affinities``: every flag and the file's header checked before
    any work; chunks of ``--chunk-slices`` slices with a z halo here, or ``--engine``
    blocks."""
    from emseg_lib.cli.segment import output_spec, report, run_job, write_preview

    if args.affinities is None:
        raise EmsegInputError(f"--method {args.method} agglomerates affinities: give "
                              "--affinities FILE")
    agglomeration, source = _agglomeration(args)
    check_out_file(args.out, [args.affinities], args.overwrite)
    source, shape, resolution = affinity_reference(args.affinities, args.affinities_key,
                                                   tuple(args.resolution))
    volume = shape[1:]
    if args.engine is None:
        halo = min(CHUNK_HALO_Z, args.chunk_slices)
        grid = BlockGrid(volume, (args.chunk_slices, *volume[1:]), (halo, 0, 0))
        cluster = Cluster("inline", 1)
    else:
        grid = block_grid(args, volume, 3, (0, 0, 0))
        cluster = cluster_of(args, gpus=False)
    check_blockwise_output(args, [args.affinities], volume)
    print(f"{args.affinities}: shape {shape} (C, Z, Y, X), resolution {resolution} nm")
    print(f"post-processing: {agglomeration.describe()}; {source}")
    print(describe(grid, cluster))
    job = BlockJob(source, None, None, "cpu", None, tuple(resolution), grid, "",
                   agglomeration=agglomeration)
    decided = run_job(args, None, resolution=list(resolution),
                      agglomeration=dataclasses.asdict(agglomeration),
                      blocks=[grid.block, grid.halo])
    spec = dataclasses.replace(output_spec(args), probabilities=False)
    run = segment_blockwise(job, args.out, cluster, run_job=decided, spec=spec)
    report(args.out, run)
    write_preview(args.out, run, f"{args.affinities}, {agglomeration.method}")
    return 0


def run_segment_affinities(args: argparse.Namespace, checkpoint: Checkpoint, model) -> int:
    """``emseg segment`` with an affinity network: the raw data in chunks of slices (a z
    halo of half the 3D network's window, at least :data:`CHUNK_HALO_Z`) or ``--engine``
    blocks, each predicted and agglomerated, stitched across their faces. The output holds
    the mean affinity and the affinities ``(C, Z, Y, X)`` (an ``.h5`` always, a ``.zarr``
    with ``--save-probabilities``)."""
    from emseg_lib.cli.inputs import raw_reference
    from emseg_lib.cli.segment import (
        output_spec,
        report,
        run_job,
        tiling_profile,
        write_preview,
    )
    from emseg_lib.infra.device import pick_device
    from emseg_lib.models import model_entry, output_channels
    from emseg_lib.output.segmentation_output import is_zarr_output
    from emseg_lib.profiles import get_profile

    agglomeration, source = _agglomeration(args, checkpoint.learned, args.checkpoint)
    device = pick_device(args.device)
    profile = tiling_profile(args.profile, checkpoint)
    tiling = get_profile(profile).tiling_3d
    raw, volume, resolution = raw_reference(args)
    context = (tuple(t // 2 for t in tiling.tile) if model_entry(model).dims == 3
               else (0, 0, 0))
    if args.engine is None:
        halo = max(CHUNK_HALO_Z, context[0])
        grid = BlockGrid(volume, (max(args.chunk_slices, halo), *volume[1:]), (halo, 0, 0))
        cluster = Cluster("inline", 1)
    else:
        grid = block_grid(args, volume, 3, context)
        cluster = cluster_of(args, gpus=str(device).startswith("cuda"))
    check_blockwise_output(args, [args.checkpoint, args.data], volume)
    print(f"post-processing: {agglomeration.describe()}; {source}")
    print(describe(grid, cluster))
    spec = dataclasses.replace(output_spec(args), probabilities=args.save_probabilities
                               or not is_zarr_output(args.out))  # as segment's .h5 always
    channels = output_channels(model_entry(model), "affinities") if spec.probabilities else 0
    job = BlockJob(raw, str(args.checkpoint.resolve()), tiling, args.device, None,
                   tuple(resolution), grid, "", agglomeration=agglomeration,
                   affinity_channels=channels)
    decided = run_job(args, None, device=str(device), tiling=[tiling.tile, tiling.overlap],
                      agglomeration=dataclasses.asdict(agglomeration),
                      blocks=[grid.block, grid.halo])
    run = segment_blockwise(job, args.out, cluster, run_job=decided, spec=spec)
    report(args.out, run)
    write_preview(args.out, run, f"{args.data}, {args.checkpoint.name}, "
                                 f"{agglomeration.method}")
    return 0
