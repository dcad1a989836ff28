"""Arguments, checks and readers shared by the ``emseg`` commands.

Every command checks its arguments and output location before it reads big data or starts
long work (:func:`check_postprocess_arguments`, :func:`check_out_file`), writes its outputs
atomically, and turns an error of the user's environment while writing (disk full,
permission denied, read-only file system) into one line (:func:`environment_errors`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from emseg_lib.data.cremi import LABELS_KEY, RAW_KEY, EMVolume
from emseg_lib.data.formats import describe, load_stack
from emseg_lib.data.readers import HDF5_SUFFIXES
from emseg_lib.data.validate import MIN_VOXEL_NM
from emseg_lib.data.zarr_store import ZARR_SUFFIX, is_zarr, split_zarr_path
from emseg_lib.errors import EmsegInputError, one_line
from emseg_lib.infra.output_checks import check_name_lengths, check_output
from emseg_lib.infra.parallel import available_cores, resolve_workers
from emseg_lib.infra.temporaries import remove_stale_temporaries, restore_interrupted_swap
from emseg_lib.output.partial_results import partial_folder
from emseg_lib.output.pipeline import CHUNK_SLICES
from emseg_lib.output.preview import preview_path
from emseg_lib.output.segmentation_output import is_zarr_output
from emseg_lib.postprocess import METHODS, PostprocessMethod, get_method

T = TypeVar("T")

#: every method's threshold flags, ``--sig-th`` ... (argparse dest = threshold name)
THRESHOLD_FLAGS = tuple(dict.fromkeys(name for method in METHODS.values()
                                      for name in method.parameters))


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``--raw-key``, ``--labels``, ``--labels-key``, ``--label-kind``,
    ``--resolution``, ``--rescale``."""
    parser.add_argument("--data", required=True, type=Path,
                        help="raw stack: HDF5 (.hdf/.h5), zarr (volume.zarr or "
                             "volume.zarr/KEY), .tif stack or folder of slices")
    parser.add_argument("--raw-key",
                        help=f"HDF5 dataset or zarr array of the raw data (default: HDF5 "
                             f"{RAW_KEY}; zarr: the one --data names, else {RAW_KEY}, raw or "
                             "the store's OME-Zarr image)")
    parser.add_argument("--labels", type=Path,
                        help="labels for a zarr, .tif stack or slice folder (ids or membrane "
                             "mask): zarr, .tif or folder")
    parser.add_argument("--labels-key",
                        help=f"HDF5 dataset or zarr array of the labels (default: HDF5 "
                             f"{LABELS_KEY}; zarr: the one --labels names, else the usual "
                             "places in the store)")
    parser.add_argument("--label-kind", choices=["auto", "instances", "membranes"],
                        default="auto")
    add_resolution_argument(parser)
    parser.add_argument("--rescale", action="store_true",
                        help="map a non-uint8 raw stack's min..max to 0..255")


#: the largest voxel side ``--resolution`` takes, in nm (1 mm: no EM voxel comes near it)
MAX_VOXEL_NM = 1e6


def voxel_nm(text: str) -> float:
    """One ``--resolution`` value: a finite number of nm in (0, :data:`MAX_VOXEL_NM`], not
    below :data:`~emseg_lib.data.validate.MIN_VOXEL_NM` (micrometres given as nm)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if not 0.0 < value <= MAX_VOXEL_NM:  # NaN fails too
        raise argparse.ArgumentTypeError(f"a voxel side must be a positive number of nm, at "
                                         f"most {MAX_VOXEL_NM:g}, got {text!r}")
    if value < MIN_VOXEL_NM:
        raise argparse.ArgumentTypeError(f"{text!r} is below {MIN_VOXEL_NM:g} nm, most likely "
                                         "micrometres; give the voxel size in nm (CREMI: 40 4 4)")
    return value


def add_resolution_argument(parser: argparse.ArgumentParser) -> None:
    """``--resolution Z Y X`` (nm) for files that do not store it; each a positive finite
    number (:func:`voxel_nm`)."""
    parser.add_argument("--resolution", type=voxel_nm, nargs=3, default=(40.0, 4.0, 4.0),
                        metavar=("Z", "Y", "X"),
                        help="voxel size in nm for data that do not store it (a 'resolution' "
                             "attribute or an OME-Zarr scale; default 40 4 4, CREMI)")


def add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: replace an existing output file (atomically, at the end)."""
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output file (only once the new one is "
                             "complete)")


def _defaults_text(method: PostprocessMethod, name: str) -> str:
    """``0.9``, ``0.9 per slice, 0.98 in 3D`` or ``derived: how``: a threshold's
    defaults for help texts."""
    if name in method.derived:
        return f"derived: {method.derived[name]}"
    flat, volume = method.default_thresholds(2)[name], method.default_thresholds(3)[name]
    return f"{flat:g}" if flat == volume else f"{flat:g} per slice, {volume:g} in 3D"


def add_postprocess_arguments(parser: argparse.ArgumentParser,
                              affinity_methods: tuple[str, ...] = ()) -> None:
    """``--method`` (the boundary-map methods and ``affinity_methods``), every boundary-map
    method's threshold flags, ``--keep-boundaries``, ``--workers``."""
    group = parser.add_argument_group("post-processing")
    extra = f"; {' or '.join(affinity_methods)} for --affinities" if affinity_methods else ""
    group.add_argument("--method", choices=sorted(METHODS) + list(affinity_methods),
                       help=f"thesis or seeded (default: the checkpoint's, else seeded){extra}")
    for name in THRESHOLD_FLAGS:
        owner = next(m for m in METHODS.values() if name in m.parameters)
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, type=float,
                           help=f"{owner.name} method (default: learned, else "
                                f"{_defaults_text(owner, name)})")
    group.add_argument("--keep-boundaries", action="store_true",
                       help="keep the thesis method's label-0 boundaries (not dense)")
    group.add_argument("--workers", type=int,
                       help="processes for post-processing (default: every core)")
    group.add_argument("--chunk-slices", type=int, default=CHUNK_SLICES,
                       help=f"slices held in memory at once (default {CHUNK_SLICES}); "
                            "derived thresholds are derived per chunk")


#: ``--workers`` may ask for at most this many processes per available core
WORKERS_PER_CORE = 4


def check_workers(workers: int | None) -> None:
    """``--workers``: at least 1 and at most :data:`WORKERS_PER_CORE` per available core (more
    processes only share the cores, each holding its own chunk in memory)."""
    most = WORKERS_PER_CORE * available_cores()
    if resolve_workers(workers) > most:
        raise EmsegInputError(f"--workers must be <= {most} ({WORKERS_PER_CORE} per core of the "
                              f"{available_cores()} this process may use), got {workers}")


def given_thresholds(args: argparse.Namespace) -> dict[str, float | None]:
    """The threshold flags as given (None where not given)."""
    return {name: getattr(args, name) for name in THRESHOLD_FLAGS}


def check_postprocess_arguments(args: argparse.Namespace) -> None:
    """Check the post-processing flags that need no data or checkpoint.

    ``--chunk-slices`` and ``--workers`` at least 1, every given threshold within its range
    and, with ``--method``, one of that method's thresholds.
    """
    if args.chunk_slices < 1:
        raise EmsegInputError(f"--chunk-slices must be >= 1, got {args.chunk_slices}")
    check_workers(args.workers)
    given = given_thresholds(args)
    for name, value in given.items():
        if value is not None:
            next(m for m in METHODS.values() if name in m.parameters).thresholds({name: value})
    if args.method in METHODS:  # an affinity method's flags are checked with the network
        get_method(args.method).thresholds(given)


def input_places(inputs: Sequence[Path | None]) -> list[Path]:
    """The given inputs, each with the zarr store it is read from (``volume.zarr`` for
    ``volume.zarr/raw``): an output inside that store would change the input."""
    given = [Path(p) for p in inputs if p is not None]
    stores = [split_zarr_path(p)[0] for p in given if is_zarr(p)]
    return list(dict.fromkeys([*given, *stores]))


def check_out_file(path: Path, inputs: Sequence[Path | None], overwrite: bool,
                   expected_bytes: int | None = None) -> None:
    """Check a segmentation output (``--out``) and its preview picture before any work: names
    the file system takes (:func:`~emseg_lib.infra.output_checks.check_name_lengths`), not an input
    (also not through a link, and a zarr store holding none), not existing unless ``overwrite``, an
    ``.h5`` or ``.zarr`` name in a writable folder with room for ``expected_bytes``
    (:func:`~emseg_lib.infra.output_checks.check_output`). A zarr store that a run stopped while
    replacing it left aside is put back first
    (:func:`~emseg_lib.infra.temporaries.restore_interrupted_swap`)."""
    check_name_lengths("--out", path, [path, preview_path(path), partial_folder(path)])
    given = input_places(inputs)
    if path.name.lower() in (*HDF5_SUFFIXES, ZARR_SUFFIX):  # '.h5': a hidden file, no suffix
        raise EmsegInputError(f"{path}: the output needs a name before its suffix, e.g. "
                              f"{path.with_name('seg' + path.name)}")
    if path.suffix.lower() not in (*HDF5_SUFFIXES, ZARR_SUFFIX):
        check_output(path, inputs=given, overwrite=overwrite)
        raise EmsegInputError(f"{path}: the output is an HDF5 file or an OME-Zarr store; give "
                              f"it an .h5 or .zarr name ({', '.join(HDF5_SUFFIXES)}, "
                              f"{ZARR_SUFFIX})")
    if is_zarr_output(path):
        restore_interrupted_swap(path)
    check_output(path, inputs=given, overwrite=overwrite, expected_bytes=expected_bytes,
                 store=is_zarr_output(path))
    check_output(preview_path(path), inputs=given, overwrite=overwrite)


def check_writable_location(path: Path) -> None:
    """Raise unless ``path`` (a folder, existing or to be created) can be written: it, or the
    nearest folder above it that exists, must be a writable folder."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise EmsegInputError(f"{path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise EmsegInputError(f"{path}: folder {existing} is not writable")


def _reason(err: OSError, path: Path) -> str:
    if not err.strerror:
        return one_line(err)
    other = err.filename is not None and Path(os.fsdecode(err.filename)) != path
    return f"{err.strerror} ({err.filename})" if other else err.strerror


@contextmanager
def environment_errors(path: Path, what: str) -> Iterator[None]:
    """Turn an ``OSError`` of the block (disk full, permission denied, read-only file system,
    an I/O error) into one :class:`EmsegInputError` line: ``PATH: WHAT: reason``.

    Only for blocks that write ``path``; their outputs are atomic, so nothing partial stays.
    """
    try:
        yield
    except OSError as err:
        raise EmsegInputError(f"{path}: {what}: {_reason(err, path)}") from err


def write_output(path: Path, write: Callable[[], T]) -> T:
    """Run ``write`` (which writes ``path`` atomically) after removing the hidden temporaries
    a killed earlier run left beside ``path``; an environment error is one line."""
    for stale in remove_stale_temporaries(path):
        print(f"removed {stale}, a partial file left by an interrupted earlier run")
    with environment_errors(path, "not written"):
        return write()


def interrupted_output(path: Path) -> str:
    """The Ctrl-C line of a command writing ``path``."""
    return f"emseg: interrupted; nothing was written to {path}"


def report_error(message: str) -> None:
    """Print ``message`` as the last line on stderr, after whatever stdout holds."""
    sys.stdout.flush()
    print(message, file=sys.stderr, flush=True)


def load_volume(args: argparse.Namespace) -> EMVolume:
    """The ``--data`` (and ``--labels``) volume, described on stdout."""
    volume = load_stack(args.data, args.labels, label_kind=args.label_kind,
                        resolution=tuple(args.resolution), rescale=args.rescale,
                        raw_key=args.raw_key, labels_key=args.labels_key)
    print(f"loaded {describe(volume)}")
    return volume
