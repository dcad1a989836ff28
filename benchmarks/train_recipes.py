"""Training recipes of a boundary network at one CPU budget, left one stack out: which recipe
``emseg train`` should use on a stack nobody tuned it on.

Usage::

    python benchmarks/train_recipes.py --stack vnc=../shared/data/vnc_sstem_stack1_cremi.h5 \\
        --stack fibsem=../shared/data/medulla_fibsem_250_cremi.h5 \\
        --stack snemi=data/snemi3d_ac4_cremi.h5 --epochs 35 --seed 1 --work runs/recipes

For every stack, training seed and recipe of :data:`~emseg_lib.train.recipes.RECIPES`, a
UNet2D is trained on the stack's train split (quick profile, the thesis's split proportions)
for ``--epochs`` epochs: every recipe costs the same per epoch (the loss is a negligible part
of it), so equal epochs are equal CPU time; each run's training seconds are recorded. Its
``best.pt`` predicts the test split, which is segmented three ways and scored (CREMI
protocol, VOI per slice, mean):

- **learned**: the method and thresholds learned on the validation split, what ``emseg
  segment`` uses after ``emseg train``; the recipe is chosen on this column;
- **derived**: the seeded method's defaults derived from the map (no learned thresholds);
- **oracle**: the seeded method's best ``seed_th`` on the test slices themselves (default
  smoothing and seed area), a bound no user gets.

Leave one stack out: for each stack, the recipe with the lowest geometric mean of learned VOI
relative to the thesis's recipe on the *other* stacks, and what it gives on the stack left out.

Runs are kept in ``--work`` (a rerun resumes; rows already in ``runs.csv`` are not measured
again). Writes ``runs.csv`` (one row per run) and ``train_recipes.md`` (the README's table)
to ``--out`` and prints the table with the machine and profile.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from emseg_lib.data import EMVolume
from emseg_lib.experiments.real_data import load_real_stack
from emseg_lib.experiments.supervised import TrainingRun, predict_split, train_unet
from emseg_lib.infra.atomic_files import atomic_write_text
from emseg_lib.postprocess import METHODS
from emseg_lib.postprocess.derive import default_min_seed_px, default_smooth_px
from emseg_lib.postprocess.seeded import seeds_from_interior, smooth, watershed_from_seeds
from emseg_lib.profiles import Profile, get_profile
from emseg_lib.scoring.evaluation import score_volume
from emseg_lib.train.recipes import RECIPES, THESIS_RECIPE

#: the oracle's ``seed_th`` grid
ORACLE_SEED_TH = np.round(np.arange(0.5, 0.99, 0.02), 2)
#: the columns of ``runs.csv`` that identify a run
KEY = ["stack", "recipe", "seed", "epochs"]


def measure_run(stack: str, path: Path, recipe: str, seed: int, epochs: int, profile_name: str,
                work: Path) -> dict:
    """Train (or resume) one run and score its test split (see the module docstring)."""
    profile = get_profile(profile_name)
    profile = dataclasses.replace(profile, unet2d=dataclasses.replace(profile.unet2d,
                                                                      epochs=epochs))
    volume = load_real_stack(path, profile)
    run_dir = work / f"{stack}_{recipe}_e{epochs}_s{seed}"
    trained = train_unet("unet2d", volume, profile, run_dir, seed=seed, progress=False,
                         recipe=recipe)
    return {"stack": stack, "recipe": recipe, "seed": seed, "epochs": epochs,
            **test_scores(trained, volume, profile, run_dir)}


def test_scores(trained: TrainingRun, volume: EMVolume, profile: Profile, run_dir: Path
                ) -> dict:
    """A trained UNet2D's test split segmented the three ways of the module docstring and
    scored (CREMI protocol, mean VOI per slice), with its training seconds."""
    test = predict_split(trained.model, volume, "test", profile, progress=False,
                         cache_dir=run_dir)
    labelled = [z for z in range(len(test.gt)) if np.any(test.gt[z])]
    prob, gt = test.prob[labelled], test.gt[labelled].astype(np.int64)
    sampling = (test.pixel_nm, test.pixel_nm)

    def voi(seg: np.ndarray) -> float:
        return float(score_volume(seg.astype(np.int64), gt, "cremi",
                                  pixel_nm=test.pixel_nm)["voi"].mean())

    learned = trained.postprocess
    method = learned["method"]
    thresholds = learned["thresholds"][method]
    learned_voi = voi(np.stack([METHODS[method].segment(p, thresholds, sampling=sampling)
                                for p in prob]))
    derived_voi = voi(np.stack([METHODS["seeded"].segment(p, {}, sampling=sampling)
                                for p in prob]))
    smoothed = np.stack([smooth(p, default_smooth_px(sampling)) for p in prob])
    min_seed_px = default_min_seed_px(sampling)
    oracle = {float(t): voi(np.stack([watershed_from_seeds(s, seeds_from_interior(
        s, t, min_seed_px)) for s in smoothed])) for t in ORACLE_SEED_TH}
    best = min(oracle, key=oracle.get)
    return {"train_s": round(float(trained.history["epoch_s"].sum()), 1),
            "learned": learned_voi, "learned_method": method,
            "learned_thresholds": str(thresholds), "derived": derived_voi,
            "oracle": oracle[best], "oracle_seed_th": best}


def measured_runs(table: Path, key: list[str],
                  plan: list[tuple[tuple, Callable[[], dict]]]) -> pd.DataFrame:
    """The rows of ``table`` (a csv, created with ``key``'s columns when missing), with every
    run of ``plan`` (its ``key`` values, and what measures it) not yet among them measured
    and added with the day it was measured (``measured``, :func:`measured_on`), the table
    rewritten after each so that a stopped benchmark resumes."""
    table.parent.mkdir(parents=True, exist_ok=True)
    runs = pd.read_csv(table) if table.exists() else pd.DataFrame(columns=key)
    done = set(map(tuple, runs[key].astype(str).to_numpy()))
    for values, measure in plan:
        if tuple(map(str, values)) in done:
            continue
        row = {**measure(), "measured": time.strftime("%Y-%m-%d")}
        print(row, flush=True)
        runs = pd.concat([runs, pd.DataFrame([row])], ignore_index=True)
        atomic_write_text(table, runs.to_csv(index=False))
    return runs


def measured_on(runs: pd.DataFrame) -> str:
    """The days ``runs`` (rows of :func:`measured_runs`) were measured on, for a table's first
    line: a rerun that measured nothing new keeps the days of the rows it shows."""
    days = sorted(set(runs["measured"].astype(str)))
    return days[0] if len(days) == 1 else ", ".join(days[:-1]) + " and " + days[-1]


def provenance(runs: pd.DataFrame, by: str) -> tuple[str, str]:
    """A table's first words, ``"Measured <days> on <machine>"`` (:func:`measured_on`), and
    the training seeds of ``runs`` by ``by`` (``"thesis [0, 1]; dice [0, 1, 2]"``)."""
    machine = f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores, CPU)"
    seeds = "; ".join(f"{value} {sorted(set(group['seed'].astype(int)))}"
                      for value, group in runs.groupby(by))
    return f"Measured {measured_on(runs)} on {machine}", seeds


def leave_one_out(runs: pd.DataFrame, column: str = "recipe",
                  reference: str = THESIS_RECIPE) -> pd.DataFrame:
    """Per stack left out: the ``column`` value (a recipe; a size in ``train_sizes.py``)
    chosen on the other stacks (lowest geometric mean of learned VOI / ``reference``'s
    learned VOI, seeds averaged first) and its result."""
    mean = runs.groupby(["stack", column])["learned"].mean().unstack(column)
    ratio = mean.div(mean[reference], axis=0)
    rows = []
    for left_out in mean.index:
        others = np.log(ratio.drop(index=left_out)).mean().sort_values()
        chosen = str(others.index[0])
        rows.append({"left out": left_out, "chosen on the others": chosen,
                     "others' mean ratio": float(np.exp(others.iloc[0])),
                     "reference VOI": mean.loc[left_out, reference],
                     "chosen VOI": mean.loc[left_out, chosen],
                     "ratio": ratio.loc[left_out, chosen]})
    return pd.DataFrame(rows)


def held_out_markdown(held_out: pd.DataFrame, reference: str) -> list[str]:
    """The lines of the leave-one-stack-out table (:func:`leave_one_out`)."""
    lines = [f"| left out | chosen on the others | others' ratio | {reference} VOI | chosen VOI "
             "| ratio |", "|---|---|---|---|---|---|"]
    for row in held_out.itertuples(index=False):
        lines.append(f"| {row[0]} | {row[1]} | {row[2]:.3f} | {row[3]:.3f} | {row[4]:.3f} | "
                     f"{row[5]:.3f} |")
    return lines


def markdown(runs: pd.DataFrame, held_out: pd.DataFrame) -> str:
    """The per-stack table (means over seeds) and the leave-one-stack-out table."""
    groups = runs.sort_values("seed").groupby(["stack", "recipe"])
    mean = groups[["learned", "derived", "oracle", "train_s"]].mean()
    per_seed = groups["learned"].apply(lambda v: " / ".join(f"{x:.3f}" for x in v))
    lines = ["| stack | recipe | learned VOI | per seed | derived VOI | oracle VOI | training s |",
             "|---|---|---|---|---|---|---|"]
    for (stack, recipe), row in mean.iterrows():
        lines.append(f"| {stack} | {recipe} | {row.learned:.3f} | {per_seed[stack, recipe]} | "
                     f"{row.derived:.3f} | {row.oracle:.3f} | {row.train_s:.0f} |")
    return "\n".join([*lines, "", *held_out_markdown(held_out, "thesis")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stack", action="append", required=True,
                        help="NAME=PATH of a CREMI-layout stack (repeat)")
    parser.add_argument("--recipe", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--epochs", type=int, default=35,
                        help="training epochs of every run (equal CPU time per recipe)")
    parser.add_argument("--seed", type=int, nargs="+", default=[1])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_recipes"))
    args = parser.parse_args()
    stacks = {name: Path(path) for name, path in (s.split("=", 1) for s in args.stack)}
    plan = [((stack, recipe, seed, args.epochs),
             lambda stack=stack, recipe=recipe, seed=seed: measure_run(
                 stack, stacks[stack], recipe, seed, args.epochs, args.profile, args.work))
            for seed in args.seed for stack in stacks for recipe in args.recipe]
    runs = measured_runs(args.out / "runs.csv", KEY, plan)
    runs = runs[runs["epochs"].astype(int) == args.epochs]
    measured, seeds = provenance(runs, "recipe")
    text = (f"{measured}; UNet2D, profile "
            f"{args.profile}, {args.epochs} epochs per run, training seeds by recipe: {seeds}; "
            "CREMI protocol, test splits, VOI (mean per slice; seeds averaged).\n\n"
            + markdown(runs, leave_one_out(runs)))
    atomic_write_text(args.out / "train_recipes.md", text + "\n")
    print(text)


if __name__ == "__main__":
    main()
