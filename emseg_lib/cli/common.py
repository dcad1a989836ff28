"""Arguments and readers shared by the ``emseg`` commands."""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py

from emseg_lib.data.cremi import EMVolume
from emseg_lib.data.formats import describe, load_stack
from emseg_lib.errors import EmsegInputError
from emseg_lib.postprocess import METHODS

#: every method's threshold flags, ``--sig-th`` ... (argparse dest = threshold name)
THRESHOLD_FLAGS = tuple(dict.fromkeys(name for method in METHODS.values()
                                      for name in method.parameters))


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``--labels``, ``--label-kind``, ``--resolution``, ``--rescale``."""
    parser.add_argument("--data", required=True, type=Path,
                        help="raw stack: CREMI .hdf/.h5, .tif stack or folder of slices")
    parser.add_argument("--labels", type=Path,
                        help="labels for a .tif stack / slice folder (ids or membrane mask)")
    parser.add_argument("--label-kind", choices=["auto", "instances", "membranes"],
                        default="auto")
    add_resolution_argument(parser)
    parser.add_argument("--rescale", action="store_true",
                        help="map a non-uint8 raw stack's min..max to 0..255")


def add_resolution_argument(parser: argparse.ArgumentParser) -> None:
    """``--resolution Z Y X`` (nm) for files that do not store it."""
    parser.add_argument("--resolution", type=float, nargs=3, default=(40.0, 4.0, 4.0),
                        metavar=("Z", "Y", "X"),
                        help="voxel size in nm for files without a 'resolution' attribute "
                             "(default 40 4 4, CREMI)")


def add_postprocess_arguments(parser: argparse.ArgumentParser) -> None:
    """``--method``, every method's threshold flags, ``--keep-boundaries``, ``--workers``."""
    group = parser.add_argument_group("post-processing")
    group.add_argument("--method", choices=sorted(METHODS),
                       help="thesis or seeded (default: the checkpoint's, else seeded)")
    for name in THRESHOLD_FLAGS:
        owner = next(m for m in METHODS.values() if name in m.parameters)
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, type=float,
                           help=f"{owner.name} method (default: learned, else "
                                f"{owner.defaults[name]:g})")
    group.add_argument("--keep-boundaries", action="store_true",
                       help="keep the thesis method's label-0 boundaries (not dense)")
    group.add_argument("--workers", type=int,
                       help="processes for post-processing (default: every core)")
    group.add_argument("--chunk-slices", type=int, default=8,
                       help="slices held in memory at once (default 8)")


def given_thresholds(args: argparse.Namespace) -> dict[str, float | None]:
    """The threshold flags as given (None where not given)."""
    return {name: getattr(args, name) for name in THRESHOLD_FLAGS}


def open_hdf5(path: Path) -> h5py.File:
    """``path`` opened read-only, or one clear error line."""
    if not path.is_file():
        raise EmsegInputError(f"{path}: not found")
    if not h5py.is_hdf5(path):
        raise EmsegInputError(f"{path}: not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise EmsegInputError(f"{path}: cannot be opened as HDF5 ({err})") from err


def load_volume(args: argparse.Namespace) -> EMVolume:
    """The ``--data`` (and ``--labels``) volume, described on stdout."""
    volume = load_stack(args.data, args.labels, label_kind=args.label_kind,
                        resolution=tuple(args.resolution), rescale=args.rescale)
    print(f"loaded {describe(volume)}")
    return volume
