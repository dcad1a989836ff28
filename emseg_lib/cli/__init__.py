"""emseg: the thesis pipeline on your own data, from the command line.

    emseg fetch vnc --dest data/
    emseg train --model unet2d --data stack.tif --labels labels.tif --out runs/mine
    emseg segment --checkpoint runs/mine/best.pt --data stack.tif --out seg.h5
    emseg postprocess --prob probabilities.h5 --out seg.h5
    emseg evaluate --seg seg.h5 --gt labels.tif

Bad input ends with one line ``emseg: error: ...`` naming the file and the fix, exit code 2.
One module per command; :mod:`.common` holds the arguments and readers they share.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from emseg_lib import __version__
from emseg_lib.cli import evaluate, fetch, segment, train
from emseg_lib.errors import EmsegInputError


def build_parser() -> argparse.ArgumentParser:
    """The ``emseg`` argument parser."""
    parser = argparse.ArgumentParser(prog="emseg", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"emseg {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in (fetch, train, segment, evaluate):
        module.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``emseg`` command; returns the exit code (2 for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except EmsegInputError as err:
        print(f"emseg: error: {err}", file=sys.stderr)
        return 2
