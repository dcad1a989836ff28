"""Segmentation quality on a real stack: the README's real-data tables.

Usage::

    python benchmarks/real_data.py --stack data/vnc_sstem_stack1_cremi.h5 --model unet2d \\
        --profile quick --run-dir runs/real/vnc_unet2d --out benchmarks/results/real_data
    python benchmarks/real_data.py --stack data/medulla_fibsem_250_cremi.h5 --model unet3d \\
        --profile quick --epochs 60 --run-dir runs/real/fibsem_unet3d_e60 \\
        --out benchmarks/results/real_data

Trains (or resumes, from ``--run-dir``) the network on the stack with the thesis's split
proportions, then scores the test split under the CREMI protocol with every row of
:func:`emseg_lib.experiments.real_data.real_data_results` (thesis thresholds, thresholds
learned on validation, the ``postprocess`` defaults, and the best point of each grid on the
test split itself). Writes ``NAME.csv`` and ``NAME.md`` to ``--out`` (NAME from the stack,
model, profile and epochs) and prints the Markdown table, the wall time and the ratio of the
learned thresholds' VOI to the best on the grid.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import pandas as pd

from emseg_lib.data import load_cremi
from emseg_lib.data.targets import TARGETS
from emseg_lib.experiments.real_data import real_data_results, within_best
from emseg_lib.infra.atomic_files import atomic_write_text
from emseg_lib.models import trainable_entry, trainable_kinds
from emseg_lib.profiles import PROFILES, get_profile
from emseg_lib.train.losses import AFFINITY_LOSSES, DEFAULT_AFFINITY_LOSS

CHOSEN = {"thesis": "thesis's 0.83 / 0.91", "validation": "learned on validation",
          "defaults": "`postprocess` defaults", "test (oracle)": "best on the test grid (oracle)"}


def markdown(results: pd.DataFrame) -> str:
    """The README's table: one row per (method, thresholds, how they were chosen)."""
    shown = results[~((results["method"] == "thesis") & (results["chosen on"] == "defaults"))]
    rows = ["| method | thresholds | chosen | VOI split | VOI merge | VOI | ARAND |",
            "|---|---|---|---|---|---|---|"]
    rows += [f"| {r.method} | {r.thresholds} | {CHOSEN[r['chosen on']]} | {r.voi_split:.3f} | "
             f"{r.voi_merge:.3f} | **{r.voi:.3f}** | {r.arand:.3f} |"
             for _, r in shown.iterrows()]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stack", type=Path, required=True, help="a CREMI-layout HDF5 stack")
    parser.add_argument("--model", choices=trainable_kinds(), required=True)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument("--epochs", type=int, help="override the profile's epochs")
    parser.add_argument("--run-dir", type=Path, required=True, help="checkpoints (resumed)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/real_data"))
    parser.add_argument("--target", choices=TARGETS, default="boundaries",
                        help="what the network predicts (affinities: scored with waterz and mws)")
    parser.add_argument("--affinity-loss", choices=AFFINITY_LOSSES, default=DEFAULT_AFFINITY_LOSS)
    parser.add_argument("--seed", type=int, default=0,
                        help="training seed (a replicate network; not 0: NAME ends in _s<seed>)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()

    profile = get_profile(args.profile)
    entry = trainable_entry(args.model)
    plan = entry.schedule(profile)
    if args.epochs:
        plan = dataclasses.replace(plan, epochs=args.epochs)
        profile = entry.with_schedule(profile, plan)
    start = time.perf_counter()
    results = real_data_results(args.model, load_cremi(args.stack), profile, args.run_dir,
                                seed=args.seed, device=args.device, workers=args.workers,
                                target=args.target,
                                affinity_loss=args.affinity_loss)
    seconds = time.perf_counter() - start
    suffix = "" if args.target == "boundaries" else f"_affinities_{args.affinity_loss}"
    replicate = f"_s{args.seed}" if args.seed else ""
    name = f"{args.stack.stem}_{args.model}{suffix}_{args.profile}_e{plan.epochs}{replicate}"
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / f"{name}.csv", results.to_csv(index=False))
    table = markdown(results)
    atomic_write_text(args.out / f"{name}.md", table + "\n")
    print(table)
    print(f"{name}: {seconds:.0f} s wall (training resumed from {args.run_dir} if it was there)")
    for method in dict.fromkeys(results["method"]):
        print(f"{method}: VOI learned on validation / best on the test grid = "
              f"{within_best(results, method):.3f}")


if __name__ == "__main__":
    main()
