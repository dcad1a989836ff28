"""Peak memory and wall time of ``emseg segment`` on a whole stack: a boundary network (one
cell-probability channel, seeded post-processing) against an affinity network (3 channels,
waterz agglomeration in chunks of slices with a z halo), same stack, same chunking.

Usage::

    python benchmarks/segment_memory.py --stack ../shared/data/medulla_fibsem_250_cremi.h5 \\
        --slices 64 --boundary runs/real/fibsem_unet3d/best.pt \\
        --affinities runs/real/fibsem_unet3d_aff/best.pt --out benchmarks/results/segment_memory

Each ``emseg segment`` runs in a fresh Python process (so that one does not inherit the
other's peak); its peak resident memory (``ru_maxrss``) and wall time are measured by the
process itself. ``--slices N`` segments the stack's first N slices (copied to a temporary
file): the chunks, and so the memory bound, are the same; only the time shrinks. Memory
depends on the networks' sizes and the chunking, not on how well they were trained: any
checkpoints of the same model kind and profile compare. Writes ``segment_memory.md`` and
``segment_memory.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import measure


def _child(arguments: list[str]) -> None:
    """Run one ``emseg`` command in this process; print its peak MiB and wall seconds."""
    from emseg_lib.cli import main

    clock = time.perf_counter()
    code = main(arguments)
    print(json.dumps({"code": code, "seconds": time.perf_counter() - clock,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _first_slices(stack: Path, slices: int | None, folder: Path) -> Path:
    """``stack`` itself, or a copy of its raw data's first ``slices`` slices in ``folder``."""
    if slices is None:
        return stack
    with h5py.File(stack, "r") as source, h5py.File(folder / stack.name, "w") as copy:
        raw = source["volumes/raw"]
        copy.create_dataset("volumes/raw", data=raw[:slices]).attrs.update(raw.attrs)
    return folder / stack.name


def _measure(arguments: list[str]) -> dict:
    """Peak MiB and seconds of ``emseg ARGUMENTS`` in a fresh process."""
    done = subprocess.run([sys.executable, __file__, "--child", *arguments], check=True,
                          capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["code"] != 0:
        raise SystemExit(f"emseg {' '.join(arguments)} exited {result['code']}: {done.stderr}")
    return result


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", type=Path, required=True, help="a CREMI-layout HDF5 stack")
    parser.add_argument("--boundary", type=Path, required=True,
                        help="best.pt of a boundary network")
    parser.add_argument("--affinities", type=Path, required=True,
                        help="best.pt of an affinity network")
    parser.add_argument("--slices", type=int, default=None,
                        help="segment the first SLICES slices only (default: all)")
    parser.add_argument("--chunk-slices", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        stack = _first_slices(args.stack, args.slices, Path(tmp))
        with h5py.File(stack, "r") as handle:
            shape = handle["volumes/raw"].shape
        for name, checkpoint in (("boundaries (seeded)", args.boundary),
                                 ("affinities (waterz)", args.affinities)):
            result = _measure(["segment", "--checkpoint", str(checkpoint), "--data",
                               str(stack), "--device", "cpu", "--workers", "1",
                               "--chunk-slices", str(args.chunk_slices),
                               "--out", str(Path(tmp) / f"{len(rows)}.h5")])
            rows.append({"network": name, "checkpoint": str(checkpoint), **result})
    now = datetime.datetime.now(datetime.UTC)
    machine = (f"{measure.cpu_name()}, {now:%Y-%m-%d}; emseg segment of {args.stack.name} "
               f"{'' if args.slices is None else f'(first {args.slices} slices) '}{shape} on "
               f"the CPU, --chunk-slices {args.chunk_slices}, --workers 1")
    lines = [f"Measured on {machine}.", "", "| network | peak host memory, MiB | wall s |",
             "|---|---|---|"]
    lines += [f"| {r['network']} | {r['peak_mb']:,.0f} | {r['seconds']:.0f} |" for r in rows]
    ratio = rows[1]["peak_mb"] / rows[0]["peak_mb"]
    lines += ["", f"Affinity network's peak / boundary network's peak: {ratio:.2f}"]
    measure.write_results(args.out, "segment_memory", "\n".join(lines) + "\n",
                          {"machine": machine, "rows": rows, "peak_ratio": ratio})


if __name__ == "__main__":
    main()
