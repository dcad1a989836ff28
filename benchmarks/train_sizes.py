"""Width and depth of ``emseg train``'s UNet2D for one CPU budget, left one stack out: which
size learns most per CPU-minute on a stack nobody tuned it on.

Usage::

    python benchmarks/train_sizes.py --stack vnc=../shared/data/vnc_sstem_stack1_cremi.h5 \\
        --stack fibsem=../shared/data/medulla_fibsem_250_cremi.h5 \\
        --stack snemi=data/snemi3d_ac4_cremi.h5 --size 16x5 8x5 32x5 --minutes 2.5 \\
        --seed 0 1 --work runs/sizes

For every stack, training seed and size (``WIDTHxDEPTH``: channels of the first level and
number of levels, :class:`~emseg_lib.models.unet2d.UNet2D`), a UNet2D is trained with
``emseg train``'s recipe for a boundary UNet2D (:data:`~emseg_lib.train.recipes.DEFAULT_RECIPE`)
on the stack's train split (the profile's crops and batch, the thesis's split proportions)
for a wall-clock budget of ``--minutes``, as ``emseg train --minutes`` does: a smaller
network runs more epochs in it. Sizes cost different amounts per epoch, so equal epochs
would not be equal CPU time; the epochs each run reached and its training seconds are
recorded. Its test split is scored as in ``train_recipes.py`` (learned / derived / oracle VOI,
:func:`train_recipes.test_scores`).

Leave one stack out (:func:`train_recipes.leave_one_out`): for each stack, the size with the
lowest geometric mean of learned VOI relative to the profile's own size on the *other*
stacks, and what it gives on the stack left out.

A run is measured on a machine doing nothing else: under load a budget buys fewer epochs.
Runs are kept in ``--work`` (rows already in ``runs.csv`` are not measured again; a run's
folder is trained afresh, since a budget restarts on resume). Writes ``runs.csv`` and
``train_sizes.md`` to ``--out`` and prints the table with the machine and profile.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from pathlib import Path

import pandas as pd
from train_recipes import (
    held_out_markdown,
    leave_one_out,
    measured_runs,
    provenance,
    test_scores,
)

from emseg_lib.experiments.real_data import load_real_stack
from emseg_lib.experiments.supervised import train_unet
from emseg_lib.infra.atomic_files import atomic_write_text
from emseg_lib.profiles import get_profile
from emseg_lib.train.recipes import default_recipe

#: the columns of ``runs.csv`` that identify a run
KEY = ["stack", "size", "seed", "minutes"]


def parse_size(text: str) -> tuple[int, int]:
    """``"16x5"`` -> ``(16, 5)``: base width and depth."""
    width, _, depth = text.partition("x")
    return int(width), int(depth)


def measure_run(stack: str, path: Path, size: str, seed: int, minutes: float,
                profile_name: str, work: Path) -> dict:
    """Train one UNet2D of ``size`` for ``minutes`` and score its test split."""
    width, depth = parse_size(size)
    profile = get_profile(profile_name)
    profile = dataclasses.replace(profile, unet2d_width=width, unet2d_depth=depth,
                                  unet2d=dataclasses.replace(profile.unet2d, epochs=None))
    volume = load_real_stack(path, profile)
    run_dir = work / f"{stack}_{size}_m{minutes:g}_s{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    trained = train_unet("unet2d", volume, profile, run_dir, seed=seed, progress=False,
                         minutes=minutes, recipe=default_recipe("unet2d"))
    return {"stack": stack, "size": size, "seed": seed, "minutes": minutes,
            "epochs": len(trained.history),
            "parameters": sum(p.numel() for p in trained.model.parameters()),
            **test_scores(trained, volume, profile, run_dir)}


def markdown(runs: pd.DataFrame, held_out: pd.DataFrame, reference: str) -> str:
    """The per-stack table (means over seeds) and the leave-one-stack-out table."""
    groups = runs.sort_values("seed").groupby(["stack", "size"])
    mean = groups[["learned", "derived", "oracle", "train_s", "epochs", "parameters"]].mean()
    per_seed = groups["learned"].apply(lambda v: " / ".join(f"{x:.3f}" for x in v))
    lines = ["| stack | size | parameters | epochs | training s | learned VOI | per seed | "
             "derived VOI | oracle VOI |", "|---|---|---|---|---|---|---|---|---|"]
    for (stack, size), row in mean.iterrows():
        lines.append(f"| {stack} | {size} | {row.parameters:,.0f} | {row.epochs:.1f} | "
                     f"{row.train_s:.0f} | {row.learned:.3f} | {per_seed[stack, size]} | "
                     f"{row.derived:.3f} | {row.oracle:.3f} |")
    return "\n".join([*lines, "", *held_out_markdown(held_out, reference)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stack", action="append", required=True,
                        help="NAME=PATH of a CREMI-layout stack (repeat)")
    parser.add_argument("--size", nargs="+", required=True,
                        help="WIDTHxDEPTH of each UNet2D compared, e.g. 16x5 8x5")
    parser.add_argument("--minutes", type=float, default=2.5,
                        help="training budget of every run, wall-clock minutes")
    parser.add_argument("--seed", type=int, nargs="+", default=[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_sizes"))
    args = parser.parse_args()
    for size in args.size:
        width, depth = parse_size(size)
        if width < 1 or depth < 2:
            parser.error(f"--size {size}: expected WIDTHxDEPTH, width >= 1, depth >= 2")
    profile = get_profile(args.profile)
    reference = f"{profile.unet2d_width}x{profile.unet2d_depth}"
    if reference not in args.size:
        parser.error(f"--size: expected the profile's own size {reference} among them (each "
                     "size is compared with it)")
    stacks = {name: Path(path) for name, path in (s.split("=", 1) for s in args.stack)}
    plan = [((stack, size, seed, args.minutes),
             lambda stack=stack, size=size, seed=seed: measure_run(
                 stack, stacks[stack], size, seed, args.minutes, args.profile, args.work))
            for seed in args.seed for stack in stacks for size in args.size]
    runs = measured_runs(args.out / "runs.csv", KEY, plan)
    runs = runs[runs["minutes"].astype(float) == args.minutes]
    measured, seeds = provenance(runs, "stack")
    text = (f"{measured}; UNet2D, recipe "
            f"{default_recipe('unet2d')}, profile {args.profile} (its size: {reference}), "
            f"{args.minutes:g} wall-clock minutes of training per run, training seeds by "
            f"stack: {seeds}; CREMI protocol, test splits, VOI (mean per slice; seeds "
            "averaged).\n\n"
            + markdown(runs, leave_one_out(runs, "size", reference), reference))
    atomic_write_text(args.out / "train_sizes.md", text + "\n")
    print(text)


if __name__ == "__main__":
    main()
