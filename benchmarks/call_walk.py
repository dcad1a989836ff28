"""How many files ``emseg segment``'s arguments pass through: the call walk of one run.

Usage::

    python benchmarks/call_walk.py --out benchmarks/results/call_walk

Trains a UNet2D for one epoch on a small synthetic stack (smoke profile, CPU), then runs
``emseg segment`` on it under a tracer that records every call from one ``emseg_lib`` file to
another (a *move*). Reported: the files visited, the distinct moves (caller file -> callee
file), the moves *back up* (into a file the walk had already left, i.e. a caller calling back
into a module above it in the walk), and the moves that carry the parsed command-line
arguments (an ``argparse.Namespace`` among the callee's arguments: how far the flags travel
into the code). Fewer files and moves mean a reader
following the arguments opens fewer files. Calls inside one file, and calls into other
packages, are not moves. The walk counts what runs, so it is the same on every machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile

import emseg_lib
from emseg_lib.cli import main
from emseg_lib.data import synthetic_em_volume
from emseg_lib.infra.atomic_files import atomic_write_text

PACKAGE = Path(emseg_lib.__file__).parent


def _module(filename: str) -> str | None:
    path = Path(filename)
    if PACKAGE not in path.parents:
        return None
    return str(path.relative_to(PACKAGE))


def walk(args: list[str]) -> dict[str, object]:
    """Run ``emseg ARGS`` under the tracer; the files, moves and moves back up."""
    order: list[str] = []
    moves: set[tuple[str, str]] = set()
    carrying: set[tuple[str, str]] = set()

    def tracer(frame, event, _arg):
        if event != "call":
            return None
        callee = _module(frame.f_code.co_filename)
        caller = _module(frame.f_back.f_code.co_filename) if frame.f_back else None
        if callee is None or caller is None or callee == caller:
            return None
        moves.add((caller, callee))
        if any(isinstance(value, argparse.Namespace) for value in frame.f_locals.values()):
            carrying.add((caller, callee))
        if callee not in order:
            order.append(callee)
        if caller not in order:
            order.append(caller)
        return None

    sys.setprofile(tracer)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = main(args)
    finally:
        sys.setprofile(None)
    if code != 0:
        raise SystemExit(f"emseg {' '.join(args)} failed with {code}")
    first_seen = {name: index for index, name in enumerate(order)}
    back_up = {(a, b) for a, b in moves if first_seen[b] < first_seen[a]}
    return {"files": len(order), "moves": len(moves), "moves_back_up": len(back_up),
            "moves_carrying_arguments": len(carrying),
            "files_carrying_arguments": sorted({b for _, b in carrying}),
            "files_in_order": order}


def main_(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for call_walk.json")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        volume = synthetic_em_volume((8, 96, 96), seed=5)
        tifffile.imwrite(root / "raw.tif", volume.raw, photometric="minisblack")
        tifffile.imwrite(root / "labels.tif", volume.labels.astype(np.uint32),
                         photometric="minisblack")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            trained = main(["train", "--model", "unet2d", "--data", str(root / "raw.tif"),
                            "--labels", str(root / "labels.tif"), "--out", str(root / "run"),
                            "--profile", "smoke", "--epochs", "1", "--device", "cpu"])
        if trained != 0:
            raise SystemExit("emseg train failed")
        result = walk(["segment", "--checkpoint", str(root / "run" / "best.pt"), "--data",
                       str(root / "raw.tif"), "--out", str(root / "seg.h5"), "--device", "cpu",
                       "--workers", "1"])
    print(f"emseg segment: {result['files']} files, {result['moves']} distinct moves between "
          f"them, {result['moves_back_up']} back up; {result['moves_carrying_arguments']} "
          f"moves carry the parsed arguments, into "
          f"{len(result['files_carrying_arguments'])} files")
    if options.out is not None:
        options.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(options.out / "call_walk.json", json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_())
