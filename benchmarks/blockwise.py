"""Blockwise segmentation (``emseg postprocess --engine local``): voxels per second against
the number of workers, the stitching time, and a 10¹² voxel volume extrapolated from the
measured cost per block.

Usage::

    python benchmarks/blockwise.py --stack ../shared/data/medulla_fibsem_250_cremi.h5 \\
        --workers 1 2 --out benchmarks/results/blockwise

The probability map is **synthetic**: made from the stack's labels
(:func:`~emseg_lib.data.synthetic.label_probability`), so that the post-processing sees a
realistic map without a trained network; seeded 3D post-processing at ``--seed-th``. Per
worker count: the wall time of each pass (blocks, faces, relabel), voxels per second over
the whole run, and the mean seconds of one block's own work. Beside it, the single-process
path (``emseg postprocess --dims 3``, one chunk of ``--block`` z slices at a time) on the same
map. The extrapolation: ``1e12 / block voxels`` blocks at the measured mean cost per block
(block work plus its share of the stitching passes), divided over the workers, assuming they
scale as measured here. Writes ``blockwise.md`` and ``blockwise.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
import time
from pathlib import Path

import h5py
import measure
import numpy as np

from emseg_lib.blockwise import BlockGrid, BlockJob, Cluster, segment_blockwise
from emseg_lib.data.synthetic import label_probability
from emseg_lib.data.volume_ref import VolumeRef
from emseg_lib.output.pipeline import OutputSpec, Postprocessing, postprocess_to_file

TARGET_VOXELS = 1e12


def _map(stack: Path, folder: Path, crop: int | None) -> tuple[Path, tuple[float, ...]]:
    """The synthetic probability map of ``stack``'s labels (its ``crop``³ corner)."""
    with h5py.File(stack, "r") as handle:
        window = slice(0, crop)
        labels = handle["volumes/labels/neuron_ids"][window, window, window]
        resolution = tuple(float(r) for r in handle["volumes/raw"].attrs["resolution"])
    path = folder / "prob.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("prob", data=label_probability(labels), chunks=True)
    return path, resolution


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", type=Path, required=True,
                        help="a CREMI-layout HDF5 stack with labels")
    parser.add_argument("--crop", type=int, default=None, help="use its CROP³ corner")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--block", type=int, nargs=3, default=[64, 128, 128])
    parser.add_argument("--halo", type=int, nargs=3, default=[8, 32, 32])
    parser.add_argument("--seed-th", type=float, default=0.8)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    post = Postprocessing("seeded", {"seed_th": args.seed_th}, dims=3, workers=1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prob_path, resolution = _map(args.stack, folder, args.crop)
        with h5py.File(prob_path, "r") as handle:
            shape = tuple(int(n) for n in handle["prob"].shape)
            clock = time.perf_counter()
            postprocess_to_file(handle["prob"], folder / "single.zarr", post,
                                resolution=resolution, chunk_slices=args.block[0],
                                progress=False)
            single = time.perf_counter() - clock
        voxels = int(np.prod(shape))
        rows.append({"engine": "one process (3D per chunk)", "workers": 1, "wall_s": single,
                     "voxels_per_s": voxels / single})
        grid = BlockGrid(shape, tuple(args.block), tuple(args.halo))
        source = VolumeRef(str(prob_path), "prob", zarr=False, role="probabilities")
        job = BlockJob(source, None, None, "cpu", post, resolution, grid, "")
        for workers in args.workers:
            timings: dict = {}
            clock = time.perf_counter()
            segment_blockwise(job, folder / f"blocks{workers}.zarr", Cluster("local", workers),
                              run_job={"workers": workers}, spec=OutputSpec(preview_slices=0),
                              progress=False, timings=timings)
            wall = time.perf_counter() - clock
            per_block = float(np.mean(timings["per_block"]))
            stitch = timings["faces"] + timings["relabel"]
            blocks_needed = TARGET_VOXELS / np.prod(args.block)
            # a block's cost on one worker: its own work plus its share of both stitching
            # passes (their wall time over the blocks, times the workers that ran them)
            cost = per_block + stitch * workers / len(grid)
            rows.append({"engine": "local cluster", "workers": workers, "wall_s": wall,
                         "voxels_per_s": voxels / wall, **{f"{k}_s": v for k, v in
                                                          timings.items() if k != "per_block"},
                         "block_s": per_block, "stitch_s": stitch,
                         "extrapolated_1e12_worker_hours": blocks_needed * cost / 3600})
    now = datetime.datetime.now(datetime.UTC)
    machine = (f"{measure.cpu_name()}, {now:%Y-%m-%d}; {args.stack.name}"
               f"{f' {args.crop}³ corner' if args.crop else ''} {shape} voxels, synthetic "
               f"probability map of its labels; blocks {args.block}, halo {args.halo}, "
               f"{len(grid)} blocks; seeded 3D, seed_th {args.seed_th}")
    lines = [f"Measured on {machine}.", "",
             "| engine | workers | wall s | voxels/s | blocks pass s | stitching s "
             "(faces + relabel) | s per block | 10¹² voxels: worker-hours |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['engine']} | {row['workers']} | {row['wall_s']:.1f} | "
            f"{row['voxels_per_s']:,.0f} | {row.get('blocks_s', float('nan')):.1f} | "
            f"{row.get('stitch_s', float('nan')):.1f} | {row.get('block_s', float('nan')):.2f}"
            f" | {row.get('extrapolated_1e12_worker_hours', float('nan')):,.0f} |")
    measure.write_results(args.out, "blockwise", "\n".join(lines) + "\n",
                          {"machine": machine, "rows": rows})


if __name__ == "__main__":
    main()
