"""``emseg segment`` (network + post-processing) and ``emseg postprocess`` (a probability map
from any network to a segmentation)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emseg_lib import __version__
from emseg_lib.blockwise.work_folder import BlockRecords, work_folder
from emseg_lib.cli.affinities import add_affinity_arguments, add_agglomeration_arguments
from emseg_lib.cli.blockwise import add_blockwise_arguments, check_blockwise_flags
from emseg_lib.cli.common import (
    add_data_arguments,
    add_overwrite_argument,
    add_postprocess_arguments,
    add_resolution_argument,
    check_out_file,
    check_postprocess_arguments,
    given_thresholds,
    interrupted_output,
    write_output,
)
from emseg_lib.cli.inputs import open_probabilities, open_raw
from emseg_lib.errors import EmsegInputError
from emseg_lib.infra.device import pick_device
from emseg_lib.output.partial_results import (
    PartialResults,
    file_identity,
    finished_chunks,
    partial_bytes_bound,
    partial_folder,
)
from emseg_lib.output.pipeline import (
    PROBABILITY_KEY,
    OutputSpec,
    Postprocessing,
    SegmentationRun,
    output_bytes_bound,
)
from emseg_lib.output.preview import preview_path, save_preview
from emseg_lib.output.segmentation_output import is_zarr_output
from emseg_lib.postprocess import get_method, postprocess_dims
from emseg_lib.postprocess.agglomeration import AFFINITY_METHODS
from emseg_lib.profiles import PROFILES, get_profile
from emseg_lib.scoring.tuning import choose_thresholds

if TYPE_CHECKING:
    from emseg_lib.train.checkpoint import Checkpoint


def choose_postprocessing(args: argparse.Namespace, learned: dict[str, Any] | None,
                          dims: int) -> tuple[Postprocessing, str]:
    """The method and thresholds to use, and a sentence saying where they come from.

    Precedence: flags given on the command line, then the thresholds learned on the
    validation split (``learned``, from the checkpoint), then the method's defaults.
    """
    chosen = choose_thresholds(args.method, given_thresholds(args), learned, dims,
                               from_checkpoint=hasattr(args, "checkpoint"),
                               given_by="from the command line")
    name, thresholds, method = chosen.method, chosen.thresholds, get_method(chosen.method)
    post = Postprocessing(name, thresholds, dims=dims, keep_boundaries=args.keep_boundaries,
                          workers=args.workers)
    values = [", ".join(f"{k} {v:g}" for k, v in thresholds.items())] if thresholds else []
    derived = [f"{k} derived: {how}" for k, how in method.derived.items()
               if k not in thresholds]
    return post, f"post-processing: {name} ({'; '.join([*values, chosen.source, *derived])})"


#: arguments that do not change what a run writes (left out of its job): where it runs
NOT_IN_JOB = frozenset({"overwrite", "workers", "engine", "jobs"})


def run_job(args: argparse.Namespace, post: Postprocessing | None, **decided: Any
            ) -> dict[str, Any]:
    """What decides the result of ``segment`` or ``postprocess``, for resuming an interrupted
    run (:mod:`~emseg_lib.output.partial_results`): every argument but ``--overwrite`` and
    ``--workers``, the identity of every input file, the post-processing used (with how its
    missing thresholds are derived: a release that derives them otherwise does not resume
    another's chunks) and what the run decided itself (``decided``: the device, the 3D
    tiling)."""
    settings = {key: value for key, value in vars(args).items()
                if key not in NOT_IN_JOB and not callable(value)}
    inputs = {key: file_identity(value) for key, value in settings.items()
              if key != "out" and isinstance(value, Path) and value.exists()}
    used = {} if post is None else {
        "postprocessing": {"method": post.method, "thresholds": post.thresholds,
                           "dims": post.dims, "keep_boundaries": post.keep_boundaries,
                           "derived": {key: how for key, how
                                       in get_method(post.method).derived.items()
                                       if key not in post.thresholds}}}
    return {"emseg": __version__, "settings": settings, "inputs": inputs, **used, **decided}


def check_volume_output(args: argparse.Namespace, inputs: list[Path | None],
                        shape: tuple[int, ...], *, image: bool) -> None:
    """:func:`~emseg_lib.cli.common.check_out_file` for ``--out`` of a ``shape`` volume, with
    room for the output and its partial results (``image``: raw slices among them)."""
    check_out_file(args.out, inputs, args.overwrite,
                   expected_bytes=output_bytes_bound(shape, zarr=is_zarr_output(args.out))
                   + partial_bytes_bound(shape, image=image))


def write_resumable(out: Path, job: dict[str, Any],
                    write: Callable[[PartialResults], SegmentationRun]) -> SegmentationRun:
    """Run ``write`` (:func:`~emseg_lib.cli.common.write_output`) with the finished chunks an
    interrupted earlier run of the same job kept for ``out``, saying what was kept or
    discarded."""
    def resumed() -> SegmentationRun:
        with PartialResults(out, job) as partial:
            if partial.discarded:
                print(f"discarded {partial.discarded} finished chunk(s) of an interrupted run "
                      f"with other inputs or settings ({partial.folder})")
            if partial.kept:
                print(f"resuming: {partial.kept} chunk(s) finished by an interrupted earlier "
                      f"run are taken from {partial.folder}")
            return write(partial)

    return write_output(out, resumed)


def report(out: Path, run: SegmentationRun) -> None:
    """Print what a whole-volume segmentation wrote."""
    dense = ("every voxel has a segment id" if run.zero_voxels == 0 else
             f"{run.zero_voxels:,} boundary voxels are 0 (--keep-boundaries)")
    print(f"{out}: {run.cells} segments in {run.slices} slices, {dense}; {run.seconds:.1f} s, "
          f"{run.slices_per_second:.2f} slices/s")
    for name, values in run.derived.items():
        if values and min(values) == max(values):
            print(f"{name} derived: {values[0]:.3f} in all {len(values)} {run.derived_per}(s)")
        elif values:
            print(f"{name} derived: {min(values):.3f}-{max(values):.3f} (median "
                  f"{float(np.median(values)):.3f}) over {len(values)} {run.derived_per}(s)")


def _segment_inputs(args: argparse.Namespace) -> list[Path | None]:
    return [args.checkpoint, args.data, args.labels]


def write_preview(out: Path, run: SegmentationRun, what: str) -> None:
    """``OUT.preview.png``: the run's sample slices
    (:func:`~emseg_lib.report.plots.segmentation_preview`)."""
    from emseg_lib.report.plots import segmentation_preview

    path = preview_path(out)
    title = f"{out.name}: {run.cells} segments in {run.slices} slices · {what}"
    figure = segmentation_preview(run.samples, title)
    write_output(path, lambda: save_preview(figure, path))
    print(f"preview: {path}")


def output_spec(args: argparse.Namespace) -> OutputSpec:
    """``--save-probabilities`` and ``--zarr-format``."""
    return OutputSpec(probabilities=getattr(args, "save_probabilities", False),
                      zarr_format=args.zarr_format)


def tiling_profile(given: str | None, checkpoint: Checkpoint) -> str:
    """``--profile`` when given, else the profile the checkpoint was trained with (its run
    identity), else ``quick``."""
    trained = checkpoint.trained_profile
    return given or (trained if trained in PROFILES else "quick")


def run_segment(args: argparse.Namespace) -> int:
    """Network inference, then post-processing, into ``args.out``, and its preview picture.

    Every argument, the device and the output location are checked before the checkpoint
    and the data are read; the data are read once and checked before any work.
    """
    from emseg_lib.models import model_entry, model_target
    from emseg_lib.output.pipeline import segment_to_file
    from emseg_lib.train.checkpoint import Checkpoint

    check_postprocess_arguments(args)
    check_blockwise_flags(args)
    if args.engine is not None:
        from emseg_lib.cli.blockwise import run_segment_blockwise

        return run_segment_blockwise(args)
    device = pick_device(args.device)
    check_out_file(args.out, _segment_inputs(args), args.overwrite)
    checkpoint = Checkpoint.read(args.checkpoint)
    model = checkpoint.model()
    if model_target(model) == "affinities":
        from emseg_lib.cli.affinities import run_segment_affinities

        return run_segment_affinities(args, checkpoint, model)
    if args.method in AFFINITY_METHODS:
        raise EmsegInputError(f"{args.checkpoint}: a boundary network (one cell-probability "
                              f"channel); --method {args.method} agglomerates affinities (train "
                              "with --target affinities)")
    learned = checkpoint.learned
    profile = tiling_profile(args.profile, checkpoint)
    tiling = get_profile(profile).tiling_3d
    with open_raw(args) as (raw, resolution):
        dims, why = postprocess_dims(model_entry(model).dims, resolution, args.dims)
        post, message = choose_postprocessing(args, learned, dims)
        check_volume_output(args, _segment_inputs(args), tuple(raw.shape), image=True)
        if why:
            print(why)
        print(message)
        if model_entry(model).dims == 3:
            print(f"3D tiling of profile {profile}: tiles {tiling.tile}, overlap {tiling.overlap}")
        job = run_job(args, post, device=str(device), tiling=[tiling.tile, tiling.overlap])
        run = write_resumable(args.out, job, lambda partial: segment_to_file(
            model, raw, args.out, post, resolution=resolution, tiling=tiling,
            chunk_slices=args.chunk_slices, device=args.device, spec=output_spec(args),
            partial=partial))
    report(args.out, run)
    write_preview(args.out, run, f"{args.data}, {args.checkpoint.name}")
    return 0


def run_postprocess(args: argparse.Namespace) -> int:
    """A probability volume from any network to a dense segmentation in ``args.out``, and
    its preview picture."""
    from emseg_lib.output.pipeline import postprocess_to_file

    if args.affinities is not None or args.method in AFFINITY_METHODS:
        from emseg_lib.cli.affinities import run_affinities

        check_blockwise_flags(args)
        return run_affinities(args)
    if args.prob is None:
        raise EmsegInputError("give the map to segment: --prob FILE (a cell probability) or "
                              "--affinities FILE")
    check_postprocess_arguments(args)
    check_blockwise_flags(args)
    if args.engine is not None:
        from emseg_lib.cli.blockwise import run_postprocess_blockwise

        return run_postprocess_blockwise(args)
    post, message = choose_postprocessing(args, None, args.dims)
    check_out_file(args.out, [args.prob], args.overwrite)
    with open_probabilities(args.prob, args.prob_key, tuple(args.resolution),
                            args.chunk_slices) as (prob, resolution):
        check_volume_output(args, [args.prob], tuple(prob.shape), image=False)
        print(f"{args.prob}: shape {prob.shape} (Z, Y, X), resolution {resolution} nm"
              f"{', inverted (1 = boundary)' if args.invert else ''}")
        print(message)
        job = run_job(args, post, resolution=list(resolution))
        run = write_resumable(args.out, job, lambda partial: postprocess_to_file(
            prob, args.out, post, resolution=resolution, invert=args.invert,
            chunk_slices=args.chunk_slices, spec=output_spec(args), partial=partial))
    report(args.out, run)
    write_preview(args.out, run, f"{args.prob}, {post.method}")
    return 0


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """``--out``, ``--overwrite``, ``--zarr-format``."""
    parser.add_argument("--out", type=Path, required=True,
                        help="output: .h5 (CREMI layout) or .zarr (OME-Zarr image for napari "
                             "and neuroglancer); a preview OUT.preview.png goes beside it")
    add_overwrite_argument(parser)
    parser.add_argument("--zarr-format", type=int, choices=(2, 3), default=2,
                        help="a .zarr output as zarr v2 / OME-Zarr 0.4 (default, read by most "
                             "viewers) or zarr v3 / OME-Zarr 0.5")


def interrupted(args: argparse.Namespace, err: KeyboardInterrupt) -> str:
    """The Ctrl-C line of ``segment`` and ``postprocess``: nothing was written to the output;
    the finished chunks are kept for the same command to resume."""
    blocks = BlockRecords(work_folder(args.out)).count()
    if blocks:
        return (f"{interrupted_output(args.out)}; {blocks} finished block(s) are kept in "
                f"{work_folder(args.out)}: run the same command again to resume")
    kept = finished_chunks(args.out)
    if not kept:
        return interrupted_output(args.out)
    return (f"{interrupted_output(args.out)}; {kept} finished chunk(s) are kept in "
            f"{partial_folder(args.out)}: run the same command again to resume")


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Register ``segment`` and ``postprocess``."""
    segment = commands.add_parser("segment", help="segment a whole stack with a checkpoint")
    segment.add_argument("--checkpoint", type=Path, required=True)
    add_data_arguments(segment)
    add_output_arguments(segment)
    segment.add_argument("--save-probabilities", action="store_true",
                         help="also store the cell probability map in a .zarr output (an "
                              ".h5 output always holds it); of an affinity network: the mean "
                              "affinity and the affinities (C, Z, Y, X)")
    segment.add_argument("--profile", choices=sorted(PROFILES), default=None,
                         help="3D tiling of this profile (default: the profile the checkpoint "
                              "was trained with, else quick)")
    segment.add_argument("--device")
    segment.add_argument("--dims", type=int, choices=(2, 3), default=None,
                         help="post-process per slice (2) or in 3D (3); default: as the "
                              "network predicts, but per slice for a 3D network on sections "
                              "more than 3x thicker than the pixels")
    add_postprocess_arguments(segment, tuple(AFFINITY_METHODS))
    add_agglomeration_arguments(segment.add_argument_group(
        "affinity networks (checkpoints trained with --target affinities)"))
    add_blockwise_arguments(segment)
    segment.set_defaults(run=run_segment, interrupted=interrupted)

    postprocess = commands.add_parser(
        "postprocess", help="segment a probability map from any network")
    postprocess.add_argument("--prob", type=Path,
                             help="cell probabilities (Z, Y, X; or --affinities): HDF5, zarr, "
                                  ".tif stack or slice "
                                  "folder; "
                                  "float in [0, 1], 1 = cell interior")
    postprocess.add_argument("--prob-key", help="HDF5 dataset or zarr array (default: "
                             f"{PROBABILITY_KEY}, or the only 3-D one)")
    postprocess.add_argument("--invert", action="store_true",
                             help="the map is a boundary probability (1 = membrane)")
    add_output_arguments(postprocess)
    postprocess.add_argument("--dims", type=int, choices=(2, 3), default=2,
                             help="2 = per slice (default), 3 = per chunk in 3D")
    add_resolution_argument(postprocess)
    add_postprocess_arguments(postprocess, tuple(AFFINITY_METHODS))
    add_affinity_arguments(postprocess)
    add_blockwise_arguments(postprocess)
    postprocess.set_defaults(run=run_postprocess, interrupted=interrupted)
