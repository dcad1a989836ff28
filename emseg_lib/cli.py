"""emseg: the thesis pipeline on your own data, from the command line.

    emseg fetch cremi --sample A --dest data/
    emseg train --model unet2d --data stack.tif --labels labels.tif --out runs/mine
    emseg segment --checkpoint runs/mine/best.pt --data stack.tif --out seg.h5
    emseg evaluate --seg seg.h5 --gt labels.tif --border-nm 25

Bad input ends with one line ``emseg: error: ...`` naming the file and the fix, exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from emseg_lib import __version__
from emseg_lib.data.cremi import LABELS_KEY, RAW_KEY, EMVolume
from emseg_lib.data.formats import HDF5_SUFFIXES, as_labels, describe, load_stack, read_array
from emseg_lib.errors import EmsegInputError
from emseg_lib.fetch import CREMI_BASE_URL, CREMI_SAMPLES, DATASETS, fetch_cremi, fetch_dataset
from emseg_lib.metrics import segmentation_scores
from emseg_lib.postprocess import THESIS_EDGE_TH, THESIS_SIG_TH
from emseg_lib.profiles import PROFILES, get_profile


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path,
                        help="raw stack: CREMI .hdf/.h5, .tif stack or folder of slices")
    parser.add_argument("--labels", type=Path,
                        help="labels for a .tif stack / slice folder (ids or membrane mask)")
    parser.add_argument("--label-kind", choices=["auto", "instances", "membranes"],
                        default="auto")
    parser.add_argument("--resolution", type=float, nargs=3, default=(40.0, 4.0, 4.0),
                        metavar=("Z", "Y", "X"), help="voxel size in nm (default 40 4 4)")
    parser.add_argument("--rescale", action="store_true",
                        help="map a non-uint8 raw stack's min..max to 0..255")


def _open_hdf5(path: Path) -> h5py.File:
    if not path.is_file():
        raise EmsegInputError(f"{path}: not found")
    if not h5py.is_hdf5(path):
        raise EmsegInputError(f"{path}: not an HDF5 file")
    return h5py.File(path, "r")


def _load(args: argparse.Namespace) -> EMVolume:
    volume = load_stack(args.data, args.labels, label_kind=args.label_kind,
                        resolution=tuple(args.resolution), rescale=args.rescale)
    print(f"loaded {describe(volume)}")
    return volume


def _fetch(args: argparse.Namespace) -> int:
    if args.dataset == "cremi":
        if args.sample is None:
            raise EmsegInputError("fetch cremi needs --sample A, B or C")
        path = fetch_cremi(args.sample, args.dest, base_url=args.base_url or CREMI_BASE_URL,
                           insecure=args.insecure)
    elif args.sample is not None:
        raise EmsegInputError(f"--sample applies to 'fetch cremi' only, not to "
                              f"'fetch {args.dataset}'; leave it out")
    else:
        path = fetch_dataset(args.dataset, args.dest, base_url=args.base_url,
                             insecure=args.insecure)
    print(f"{path}: verified ({path.stat().st_size:,} bytes, sha256 in {path.name}.sha256)")
    if args.dataset in DATASETS:
        print(DATASETS[args.dataset].citation)
    return 0


def _train(args: argparse.Namespace) -> int:
    from emseg_lib.experiments.supervised import train_unet

    volume = _load(args)
    if volume.labels is None:
        raise EmsegInputError(f"{args.data}: training needs labels; pass --labels PATH")
    profile = get_profile(args.profile)
    if args.epochs is not None:
        plan = getattr(profile, args.model)
        profile = dataclasses.replace(profile, **{args.model: dataclasses.replace(
            plan, epochs=args.epochs)})
    started = time.perf_counter()
    model, history = train_unet(args.model, volume, profile, args.out, seed=args.seed,
                                device=args.device)
    last = history.iloc[-1]
    summary = {
        "model": args.model, "profile": args.profile, "epochs": int(len(history)),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "data": describe(volume), "seconds": round(time.perf_counter() - started, 1),
        "final": {k: float(last[k]) for k in ("train_loss", "val_loss", "val_acc", "val_voi",
                                              "val_arand", "val_cremi_score")},
        "checkpoints": {"last": str(Path(args.out) / "last.pt"),
                        "best": str(Path(args.out) / "best.pt")},
    }
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary["final"], indent=2))
    print(f"checkpoints and history in {args.out}")
    return 0


def _segment(args: argparse.Namespace) -> int:
    from emseg_lib.pipeline import segment_to_hdf5
    from emseg_lib.train import model_from_checkpoint

    model = model_from_checkpoint(args.checkpoint)
    if args.data.suffix.lower() in HDF5_SUFFIXES:
        with _open_hdf5(args.data) as handle:  # read chunk by chunk from the file
            if RAW_KEY not in handle:
                raise EmsegInputError(f"{args.data}: dataset '{RAW_KEY}' not found")
            raw = handle[RAW_KEY]
            resolution = tuple(raw.attrs.get("resolution", args.resolution))
            run = segment_to_hdf5(model, raw, args.out, sig_th=args.sig_th,
                                  edge_th=args.edge_th, resolution=resolution,
                                  chunk_slices=args.chunk_slices, device=args.device)
    else:
        volume = _load(args)
        run = segment_to_hdf5(model, volume.raw, args.out, sig_th=args.sig_th,
                              edge_th=args.edge_th, resolution=volume.resolution,
                              chunk_slices=args.chunk_slices, device=args.device)
    print(f"{args.out}: {run.cells} cells in {run.slices} slices, {run.seconds:.1f} s, "
          f"{run.slices_per_second:.2f} slices/s")
    return 0


def _ground_truth(path: Path, label_kind: str) -> np.ndarray:
    if path.suffix.lower() in HDF5_SUFFIXES:
        return load_stack(path).labels
    return as_labels(read_array(path), label_kind, path)[0]


def _evaluate(args: argparse.Namespace) -> int:
    with _open_hdf5(args.seg) as handle:
        if LABELS_KEY not in handle:
            raise EmsegInputError(f"{args.seg}: dataset '{LABELS_KEY}' not found; is this "
                                  "an 'emseg segment' output?")
        seg = handle[LABELS_KEY][()]
    gt = _ground_truth(args.gt, args.label_kind)
    if gt is None:
        raise EmsegInputError(f"{args.gt}: has no labels to compare with")
    if gt.shape != seg.shape:
        raise EmsegInputError(f"{args.gt}: ground truth has shape {gt.shape} but {args.seg} "
                              f"has shape {seg.shape}; they must match")
    rows = [segmentation_scores(g.astype(np.int64), s.astype(np.int64),
                                border_nm=args.border_nm, pixel_nm=args.pixel_nm).as_dict()
            for g, s in zip(gt, seg, strict=True) if np.any(g)]
    means = pd.DataFrame(rows).mean()
    result = {"seg": str(args.seg), "gt": str(args.gt), "slices_scored": len(rows),
              "border_nm": args.border_nm, "per_slice_mean": means.to_dict(),
              "cremi_score_definition": "sqrt(VOI * ARAND)"}
    print(means.to_frame("mean over slices").to_markdown(floatfmt=".4f"))
    json_path = args.json or args.seg.with_suffix(".scores.json")
    json_path.write_text(json.dumps(result, indent=2))
    print(f"written {json_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``emseg`` argument parser."""
    parser = argparse.ArgumentParser(prog="emseg", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"emseg {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    fetch = commands.add_parser("fetch", help="download training data (verified SHA-256)")
    fetch.add_argument("dataset", choices=["cremi", *DATASETS],
                       help="cremi (needs --sample), vnc (ssTEM) or fibsem (FIB-SEM)")
    fetch.add_argument("--sample", choices=CREMI_SAMPLES, help="CREMI sample (cremi only)")
    fetch.add_argument("--dest", type=Path, default=Path("data"),
                       help="folder for the downloaded file (default data/)")
    fetch.add_argument("--base-url", help=argparse.SUPPRESS)
    fetch.add_argument("--insecure", action="store_true",
                       help="do not verify the server's TLS certificate (the file is still "
                            "checked against its pinned SHA-256)")
    fetch.set_defaults(run=_fetch)

    train = commands.add_parser("train", help="train a UNet on a labelled stack")
    train.add_argument("--model", choices=["unet2d", "unet3d"], required=True)
    _add_data_arguments(train)
    train.add_argument("--out", type=Path, required=True, help="run directory")
    train.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    train.add_argument("--epochs", type=int, help="override the profile's epochs")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when present)")
    train.set_defaults(run=_train)

    segment = commands.add_parser("segment", help="segment a whole stack with a checkpoint")
    segment.add_argument("--checkpoint", type=Path, required=True)
    _add_data_arguments(segment)
    segment.add_argument("--out", type=Path, required=True, help="output .h5 file")
    segment.add_argument("--sig-th", type=float, default=THESIS_SIG_TH)
    segment.add_argument("--edge-th", type=float, default=THESIS_EDGE_TH)
    segment.add_argument("--chunk-slices", type=int, default=8,
                         help="slices held in memory at once (default 8)")
    segment.add_argument("--device")
    segment.set_defaults(run=_segment)

    evaluate = commands.add_parser("evaluate", help="score a segmentation against labels")
    evaluate.add_argument("--seg", type=Path, required=True, help="'emseg segment' output")
    evaluate.add_argument("--gt", type=Path, required=True,
                          help="CREMI .hdf, or a label .tif stack / slice folder")
    evaluate.add_argument("--label-kind", choices=["auto", "instances", "membranes"],
                          default="auto")
    evaluate.add_argument("--border-nm", type=float, default=0.0,
                          help="ignore this band around gt boundaries (CREMI: 25)")
    evaluate.add_argument("--pixel-nm", type=float, default=4.0)
    evaluate.add_argument("--json", type=Path, help="default: SEG.scores.json")
    evaluate.set_defaults(run=_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``emseg`` command; returns the exit code (2 for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except EmsegInputError as err:
        print(f"emseg: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
