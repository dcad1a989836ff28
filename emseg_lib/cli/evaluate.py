"""``emseg evaluate``: score a segmentation against ground truth, with the notebooks' protocols
(:func:`emseg_lib.evaluation.score_volume`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from emseg_lib.atomic import atomic_write_text, check_output
from emseg_lib.cli.common import (
    add_overwrite_argument,
    add_resolution_argument,
    interrupted_output,
    open_hdf5,
    write_output,
)
from emseg_lib.data.cremi import LABELS_KEY, read_dataset, volume_dataset
from emseg_lib.data.formats import HDF5_SUFFIXES, as_labels, load_stack, read_array
from emseg_lib.data.validate import check_label_ids
from emseg_lib.errors import EmsegInputError
from emseg_lib.evaluation import PROTOCOLS, score_volume

SCORES = ["voi_split", "voi_merge", "voi", "arand", "cremi_score"]


def read_segmentation(path: Path) -> np.ndarray:
    """``(Z, Y, X)`` ids from an ``emseg segment`` HDF5 file or a TIFF stack / slice folder.

    Raises:
        EmsegInputError: missing dataset, not 3-D, larger than memory, damaged, not integer
            ids, or negative ids.
    """
    if path.suffix.lower() in HDF5_SUFFIXES:
        with open_hdf5(path) as handle:
            seg = read_dataset(volume_dataset(handle, LABELS_KEY, path), path)
    else:
        seg = read_array(path)
    if not np.issubdtype(seg.dtype, np.integer):
        raise EmsegInputError(f"{path}: segment ids must be integers, got {seg.dtype}")
    check_label_ids(seg, path)
    return seg


def read_ground_truth(path: Path, label_kind: str, resolution: tuple[float, ...]
                      ) -> tuple[np.ndarray, tuple[float, ...]]:
    """Ground-truth ids ``(Z, Y, X)`` and the voxel size (the file's, else ``resolution``)."""
    if path.suffix.lower() in HDF5_SUFFIXES:
        volume = load_stack(path)
        if volume.labels is None:
            raise EmsegInputError(f"{path}: has no '{LABELS_KEY}' to compare with")
        return volume.labels, volume.resolution
    return as_labels(read_array(path), label_kind, path)[0], resolution


def scores_path(args: argparse.Namespace) -> Path:
    """``--json``, by default ``SEG.scores.json``."""
    return args.json or args.seg.with_suffix(".scores.json")


def run(args: argparse.Namespace) -> int:
    """Score ``args.seg`` against ``args.gt``; print the means, write the JSON."""
    json_path = scores_path(args)
    check_output(json_path, inputs=[args.seg, args.gt], overwrite=args.overwrite)
    seg = read_segmentation(args.seg)
    gt, resolution = read_ground_truth(args.gt, args.label_kind, tuple(args.resolution))
    if gt.shape != seg.shape:
        raise EmsegInputError(f"{args.gt}: ground truth has shape {gt.shape} but {args.seg} "
                              f"has shape {seg.shape}; they must match")
    zero_pct = 100.0 * np.count_nonzero(seg == 0) / seg.size
    if zero_pct > 0 and args.protocol == "cremi":
        print(f"emseg: warning: {zero_pct:.1f} % of voxels of {args.seg} are 0; the cremi "
              "protocol scores them as one segment spread over every cell (segment without "
              "--keep-boundaries for a dense segmentation)", file=sys.stderr)
    table = score_volume(seg, gt, args.protocol, pixel_nm=resolution[1])
    means = table[SCORES].mean()
    result = {"seg": str(args.seg), "gt": str(args.gt), "protocol": args.protocol,
              "pixel_nm": resolution[1], "zero_voxels_percent": zero_pct,
              "slices_scored": len(table), "per_slice_mean": means.to_dict(),
              "per_slice": table.to_dict(orient="records"),
              "cremi_score_definition": "sqrt(VOI * ARAND), VOI in bits"}
    print(f"protocol {args.protocol}, {len(table)} slices, pixel {resolution[1]:g} nm")
    print(means.to_frame("mean over slices").to_markdown(floatfmt=".4f"))
    write_output(json_path, lambda: atomic_write_text(json_path, json.dumps(result, indent=2)))
    print(f"written {json_path}")
    return 0


def interrupted(args: argparse.Namespace, err: KeyboardInterrupt) -> str:
    """The Ctrl-C line of ``evaluate``."""
    return interrupted_output(scores_path(args))


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Register ``evaluate``."""
    evaluate = commands.add_parser("evaluate", help="score a segmentation against labels")
    evaluate.add_argument("--seg", type=Path, required=True,
                          help="'emseg segment' output, or a .tif stack / slice folder of ids")
    evaluate.add_argument("--gt", type=Path, required=True,
                          help="CREMI .hdf/.h5, or a label .tif stack / slice folder")
    evaluate.add_argument("--label-kind", choices=["auto", "instances", "membranes"],
                          default="auto")
    evaluate.add_argument("--protocol", choices=sorted(PROTOCOLS), default="cremi",
                          help="cremi (default: neuron ids, 25 nm band ignored, segmentation "
                               "as given) or thesis (boundary-target cells, label 0 a segment)")
    add_resolution_argument(evaluate)
    evaluate.add_argument("--json", type=Path, help="default: SEG.scores.json")
    add_overwrite_argument(evaluate)
    evaluate.set_defaults(run=run, interrupted=interrupted)
