"""``emseg export``: a trained network as a bioimage.io model package
(:mod:`emseg_lib.train.bioimageio_export`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from emseg_lib.cli.common import add_data_arguments, add_overwrite_argument
from emseg_lib.cli.inputs import open_raw
from emseg_lib.errors import EmsegInputError
from emseg_lib.infra.atomic_files import atomic_path
from emseg_lib.infra.output_checks import check_output


def run_export(args: argparse.Namespace) -> int:
    """Check the output, read the data's centre for the test input, write the package, and
    test it with bioimageio.core unless ``--no-check``."""
    from emseg_lib.train.bioimageio_export import check_package, export_bioimageio

    if args.out.suffix.lower() != ".zip":
        raise EmsegInputError(f"--out {args.out}: a bioimage.io package is a .zip file")
    check_output(args.out, inputs=[args.checkpoint, args.data], overwrite=args.overwrite)
    if not args.checkpoint.is_file():
        raise EmsegInputError(f"--checkpoint {args.checkpoint}: no such file")
    with open_raw(args) as (raw, resolution), atomic_path(args.out) as tmp:
        export_bioimageio(args.checkpoint, raw, resolution, tmp)
        if args.check:
            verdict = check_package(tmp)
            if verdict != "passed":
                raise EmsegInputError(f"{args.out}: bioimageio.core's test of the package "
                                      f"failed, nothing written: {verdict}")
    print(f"{args.out}: bioimage.io model package of {args.checkpoint} (voxel size "
          f"{tuple(resolution)} nm){'; bioimageio.core test passed' if args.check else ''}")
    return 0


def interrupted(args: argparse.Namespace, _: BaseException) -> str:
    return f"emseg: interrupted: nothing written to {args.out}"


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Register ``export``."""
    export = commands.add_parser("export", help="a trained network as a bioimage.io model "
                                                "package (.zip)")
    export.add_argument("--checkpoint", type=Path, required=True,
                        help="best.pt of emseg train or a notebook run")
    add_data_arguments(export)
    export.add_argument("--out", type=Path, required=True, help="the package, NAME.zip")
    add_overwrite_argument(export)
    export.add_argument("--no-check", dest="check", action="store_false",
                        help="skip bioimageio.core's test of the package")
    export.set_defaults(run=run_export, interrupted=interrupted, chunk_slices=8)
