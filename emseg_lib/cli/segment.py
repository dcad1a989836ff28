"""``emseg segment`` (network + post-processing) and ``emseg postprocess`` (a probability map
from any network to a segmentation)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emseg_lib.cli.common import (
    add_data_arguments,
    add_postprocess_arguments,
    add_resolution_argument,
    given_thresholds,
    load_volume,
    open_hdf5,
)
from emseg_lib.data.cremi import RAW_KEY
from emseg_lib.data.formats import HDF5_SUFFIXES, read_array
from emseg_lib.errors import EmsegInputError
from emseg_lib.pipeline import PROBABILITY_KEY, Postprocessing, SegmentationRun
from emseg_lib.postprocess import DEFAULT_METHOD, get_method
from emseg_lib.profiles import PROFILES, get_profile


def choose_postprocessing(args: argparse.Namespace, learned: dict[str, Any] | None,
                          dims: int) -> tuple[Postprocessing, str]:
    """The method and thresholds to use, and a sentence saying where they come from.

    Precedence: flags given on the command line, then the thresholds learned on the
    validation split (``learned``, from the checkpoint), then the method's defaults.
    """
    name = args.method or (learned["method"] if learned else DEFAULT_METHOD)
    method = get_method(name)
    base = (learned or {}).get("thresholds", {}).get(name)
    given = given_thresholds(args)
    thresholds = method.thresholds(given, base)
    if base is not None:
        source = f"learned on the validation split at epoch {learned['epoch']}"
    elif learned is None and args.method is None and hasattr(args, "checkpoint"):
        source = "method defaults: the checkpoint has no learned thresholds"
    else:
        source = "method defaults"
    named = [k for k in method.parameters if given[k] is not None]
    if named:
        source = f"{', '.join(named)} from the command line; otherwise {source}"
    post = Postprocessing(name, thresholds, dims=dims, keep_boundaries=args.keep_boundaries,
                          workers=args.workers)
    values = ", ".join(f"{k} {v:g}" for k, v in thresholds.items())
    return post, f"post-processing: {name} ({values}; {source})"


def report(out: Path, run: SegmentationRun) -> None:
    """Print what a whole-volume segmentation wrote."""
    dense = ("every voxel has a segment id" if run.zero_voxels == 0 else
             f"{run.zero_voxels:,} boundary voxels are 0 (--keep-boundaries)")
    print(f"{out}: {run.cells} segments in {run.slices} slices, {dense}; {run.seconds:.1f} s, "
          f"{run.slices_per_second:.2f} slices/s")


def run_segment(args: argparse.Namespace) -> int:
    """Network inference, then post-processing, into ``args.out``."""
    from emseg_lib.models import model_entry
    from emseg_lib.pipeline import segment_to_hdf5
    from emseg_lib.train import load_checkpoint, model_from_checkpoint

    learned = load_checkpoint(args.checkpoint).get("postprocess")
    model = model_from_checkpoint(args.checkpoint)
    post, message = choose_postprocessing(args, learned, model_entry(model).dims)
    print(message)
    tiling = get_profile(args.profile).tiling_3d
    options = {"tiling": tiling, "chunk_slices": args.chunk_slices, "device": args.device}
    if args.data.suffix.lower() in HDF5_SUFFIXES:
        with open_hdf5(args.data) as handle:  # read chunk by chunk from the file
            if RAW_KEY not in handle:
                raise EmsegInputError(f"{args.data}: dataset '{RAW_KEY}' not found")
            raw = handle[RAW_KEY]
            resolution = tuple(float(r) for r in raw.attrs.get("resolution", args.resolution))
            run = segment_to_hdf5(model, raw, args.out, post, resolution=resolution, **options)
    else:
        volume = load_volume(args)
        run = segment_to_hdf5(model, volume.raw, args.out, post, resolution=volume.resolution,
                              **options)
    report(args.out, run)
    return 0


def _hdf5_probability_key(handle: h5py.File, path: Path, key: str | None) -> str:
    if key is not None:
        if key not in handle or not isinstance(handle[key], h5py.Dataset):
            raise EmsegInputError(f"{path}: dataset '{key}' not found (--prob-key)")
        return key
    if PROBABILITY_KEY in handle:
        return PROBABILITY_KEY
    volumes: list[str] = []
    handle.visititems(lambda name, node: volumes.append(name)
                      if isinstance(node, h5py.Dataset) and node.ndim == 3 else None)
    if len(volumes) != 1:
        raise EmsegInputError(f"{path}: no '{PROBABILITY_KEY}' dataset; name the probability "
                              f"dataset with --prob-key (3-D datasets: {volumes or 'none'})")
    return volumes[0]


@contextmanager
def open_probabilities(path: Path, key: str | None
                       ) -> Iterator[tuple[Any, tuple[float, ...] | None]]:
    """The probability volume (array or h5py dataset) and its resolution if stored."""
    if path.suffix.lower() in HDF5_SUFFIXES:
        with open_hdf5(path) as handle:
            dataset = handle[_hdf5_probability_key(handle, path, key)]
            resolution = dataset.attrs.get("resolution")
            yield dataset, None if resolution is None else tuple(float(r) for r in resolution)
        return
    if key is not None:
        raise EmsegInputError(f"--prob-key applies to HDF5 files, not to {path}")
    yield read_array(path), None


def run_postprocess(args: argparse.Namespace) -> int:
    """A probability volume from any network to a dense segmentation in ``args.out``."""
    from emseg_lib.pipeline import postprocess_to_hdf5

    post, message = choose_postprocessing(args, None, args.dims)
    with open_probabilities(args.prob, args.prob_key) as (prob, stored):
        if not (np.issubdtype(prob.dtype, np.floating) or prob.dtype == np.uint8):
            raise EmsegInputError(f"{args.prob}: probabilities must be float in [0, 1] (or "
                                  f"uint8 0..255), got {prob.dtype}")
        if prob.dtype == np.uint8:
            print(f"{args.prob}: uint8 values read as probabilities value / 255")
        resolution = stored or tuple(args.resolution)
        print(f"{args.prob}: shape {tuple(prob.shape)} (Z, Y, X), resolution {resolution} nm"
              f"{', inverted (1 = boundary)' if args.invert else ''}")
        print(message)
        run = postprocess_to_hdf5(prob, args.out, post, resolution=resolution,
                                  invert=args.invert, chunk_slices=args.chunk_slices)
    report(args.out, run)
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Register ``segment`` and ``postprocess``."""
    segment = commands.add_parser("segment", help="segment a whole stack with a checkpoint")
    segment.add_argument("--checkpoint", type=Path, required=True)
    add_data_arguments(segment)
    segment.add_argument("--out", type=Path, required=True, help="output .h5 file")
    segment.add_argument("--profile", choices=sorted(PROFILES), default="quick",
                         help="3D tiling of this profile (default quick)")
    segment.add_argument("--device")
    add_postprocess_arguments(segment)
    segment.set_defaults(run=run_segment)

    postprocess = commands.add_parser(
        "postprocess", help="segment a probability map from any network")
    postprocess.add_argument("--prob", type=Path, required=True,
                             help="probabilities (Z, Y, X): HDF5, .tif stack or slice folder; "
                                  "float in [0, 1], 1 = cell interior")
    postprocess.add_argument("--prob-key", help="HDF5 dataset (default: "
                             f"{PROBABILITY_KEY}, or the file's only 3-D dataset)")
    postprocess.add_argument("--invert", action="store_true",
                             help="the map is a boundary probability (1 = membrane)")
    postprocess.add_argument("--out", type=Path, required=True, help="output .h5 file")
    postprocess.add_argument("--dims", type=int, choices=(2, 3), default=2,
                             help="2 = per slice (default), 3 = per chunk in 3D")
    add_resolution_argument(postprocess)
    add_postprocess_arguments(postprocess)
    postprocess.set_defaults(run=run_postprocess)
