"""``emseg evaluate``: score a segmentation against ground truth, with the notebooks' protocols
(:func:`emseg_lib.scoring.evaluation.score_volume`): the means as JSON, the per-slice scores as CSV
and their plot (:func:`emseg_lib.report.plots.slice_scores`) as PNG beside it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from emseg_lib.cli.common import (
    add_overwrite_argument,
    add_resolution_argument,
    input_places,
    interrupted_output,
    write_output,
)
from emseg_lib.data.cremi import LABELS_KEY
from emseg_lib.data.id_volumes import read_ground_truth, read_segmentation
from emseg_lib.data.zarr_store import is_zarr, split_zarr_path
from emseg_lib.errors import EmsegInputError
from emseg_lib.infra.atomic_files import atomic_write_text
from emseg_lib.infra.locks import held_lock
from emseg_lib.infra.output_checks import check_name_lengths, check_output
from emseg_lib.output.preview import save_preview
from emseg_lib.report.plots import slice_scores
from emseg_lib.scoring.evaluation import PROTOCOL_DESCRIPTIONS, PROTOCOLS, score_volume
from emseg_lib.scoring.metrics import SCORE_COLUMNS


def _scores_named_by(args: argparse.Namespace) -> tuple[str, Path]:
    """The flag and path the scores are named after: ``--json``, else ``--seg`` (the zarr
    store for an array in one)."""
    if args.json is not None:
        return "--json", args.json
    return "--seg", split_zarr_path(args.seg)[0] if is_zarr(args.seg) else args.seg


def scores_path(args: argparse.Namespace) -> Path:
    """``--json``, by default ``SEG.scores.json`` (beside the store for a zarr ``SEG``)."""
    flag, named = _scores_named_by(args)
    return named if flag == "--json" else named.with_name(f"{named.stem}.scores.json")


def score_outputs(json_path: Path) -> tuple[Path, Path]:
    """The per-slice table and its plot beside the JSON: ``NAME.csv``, ``NAME.png``.

    Raises:
        EmsegInputError: a JSON name ending in ``.csv`` or ``.png`` (any case), which one of
            the two would overwrite.
    """
    csv_path, plot_path = json_path.with_suffix(".csv"), json_path.with_suffix(".png")
    if json_path.suffix.lower() in (".csv", ".png"):  # the same file, or on a case-blind disk
        raise EmsegInputError(f"{json_path}: the per-slice scores (.csv) and their plot (.png) "
                              f"are written beside the JSON and would replace it; give --json "
                              f"a .json name, e.g. {json_path.with_suffix('.json')}")
    return csv_path, plot_path


def scores_lock(json_path: Path) -> Path:
    """``.NAME.lock`` beside the JSON: held while a run writes the scores."""
    return json_path.with_name(f".{json_path.name}.lock")


@contextmanager
def writing_scores(args: argparse.Namespace, json_path: Path) -> Iterator[None]:
    """Check the three outputs (:func:`~emseg_lib.infra.output_checks.check_name_lengths`,
    :func:`~emseg_lib.infra.output_checks.check_output`), then hold the
    scores' lock (:func:`scores_lock`) for the block: a second ``evaluate`` writing the same
    JSON is refused while the first lives, and finds its outputs once it is done."""
    def check() -> None:
        for path in (json_path, *score_outputs(json_path)):
            check_output(path, inputs=input_places([args.seg, args.gt]),
                         overwrite=args.overwrite)

    def refusal(pid: str, host: str) -> str:
        return (f"{json_path}: another emseg evaluate (process {pid or 'unknown'}) is writing "
                "these scores; wait for it to finish or choose another --json")

    flag, named = _scores_named_by(args)
    check_name_lengths(flag, named, [json_path, *score_outputs(json_path), scores_lock(json_path)],
                       "" if flag == "--json" else ", or name the scores with --json")
    check()
    with held_lock(scores_lock(json_path), refusal):
        check()  # a run that finished meanwhile has written them
        yield


def run(args: argparse.Namespace) -> int:
    """Score ``args.seg`` against ``args.gt``; print the means, write the JSON, the per-slice
    table (CSV) and its plot (PNG)."""
    json_path = scores_path(args)
    with writing_scores(args, json_path):
        return _score(args, json_path)


def _score(args: argparse.Namespace, json_path: Path) -> int:
    """:func:`run` once its outputs are checked and locked."""
    csv_path, plot_path = score_outputs(json_path)
    seg = read_segmentation(args.seg, args.seg_key, flag="--seg-key")
    gt, resolution, kind = read_ground_truth(args.gt, args.label_kind,
                                             tuple(args.resolution), args.gt_key,
                                             flag="--gt-key")
    print(f"ground truth {args.gt}: {kind}")
    if not gt.any():
        raise EmsegInputError(f"{args.gt}: the ground truth is all 0 (unlabelled); there is "
                              "nothing to score against")
    if gt.shape != seg.shape:
        raise EmsegInputError(f"{args.gt}: ground truth has shape {gt.shape} but {args.seg} "
                              f"has shape {seg.shape}; they must match")
    zero_pct = 100.0 * np.count_nonzero(seg == 0) / seg.size
    if zero_pct > 0 and args.protocol != "thesis":
        print(f"emseg: warning: {zero_pct:.1f} % of voxels of {args.seg} are 0; the "
              f"{args.protocol} protocol scores them as one segment spread over every cell "
              "(segment without --keep-boundaries for a dense segmentation)", file=sys.stderr)
    table = score_volume(seg, gt, args.protocol, pixel_nm=resolution[1])
    means = table[list(SCORE_COLUMNS)].mean()
    result = {"seg": str(args.seg), "gt": str(args.gt), "protocol": args.protocol,
              "protocol_definition": PROTOCOL_DESCRIPTIONS[args.protocol],
              "pixel_nm": resolution[1], "zero_voxels_percent": zero_pct,
              "slices_scored": len(table), "per_slice_mean": means.to_dict(),
              "per_slice": table.to_dict(orient="records"),
              "cremi_score_definition": "sqrt(VOI * ARAND), VOI in bits"}
    print(f"protocol {args.protocol}, {len(table)} slices, pixel {resolution[1]:g} nm")
    print(means.to_frame("mean over slices").to_markdown(floatfmt=".4f"))
    write_output(json_path, lambda: atomic_write_text(json_path, json.dumps(result, indent=2)))
    write_output(csv_path, lambda: atomic_write_text(csv_path, table.to_csv(index=False)))
    figure = slice_scores(table, f"{args.seg.name} vs {args.gt.name}, {args.protocol} protocol "
                                 f"(means: VOI {means['voi']:.3f} bits, ARAND "
                                 f"{means['arand']:.3f})")
    write_output(plot_path, lambda: save_preview(figure, plot_path, dpi=100))
    print(f"written {json_path}, {csv_path.name}, {plot_path.name}")
    return 0


def interrupted(args: argparse.Namespace, err: KeyboardInterrupt) -> str:
    """The Ctrl-C line of ``evaluate``."""
    return interrupted_output(scores_path(args))


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Register ``evaluate``."""
    evaluate = commands.add_parser("evaluate", help="score a segmentation against labels")
    evaluate.add_argument("--seg", type=Path, required=True,
                          help="'emseg segment' output (.h5 or .zarr), another HDF5 / zarr "
                               "array, or a .tif stack / slice folder of ids")
    evaluate.add_argument("--gt", type=Path, required=True,
                          help="CREMI .hdf/.h5, zarr, or a label .tif stack / slice folder")
    evaluate.add_argument("--label-kind", choices=["auto", "instances", "membranes"],
                          default="auto")
    evaluate.add_argument("--protocol", choices=sorted(PROTOCOLS), default="cremi",
                          help="; ".join(f"{name}{' (default)' if name == 'cremi' else ''}: "
                                         f"{text}" for name, text in
                                         PROTOCOL_DESCRIPTIONS.items()))
    evaluate.add_argument("--seg-key", help="HDF5 dataset or zarr array of --seg (default: "
                          f"{LABELS_KEY}, or an OME-Zarr output's labels)")
    evaluate.add_argument("--gt-key", help="HDF5 dataset or zarr array of --gt (default: "
                          f"{LABELS_KEY}, or a zarr store's usual label places)")
    add_resolution_argument(evaluate)
    evaluate.add_argument("--json", type=Path,
                          help="default: SEG.scores.json; the per-slice scores go beside it "
                               "as SEG.scores.csv and their plot as SEG.scores.png")
    add_overwrite_argument(evaluate)
    evaluate.set_defaults(run=run, interrupted=interrupted)
