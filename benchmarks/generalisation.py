"""Leave one stack out: the seeded method's default rule, chosen without a stack, on that stack.

Usage::

    python benchmarks/generalisation.py --stack vnc=data/vnc_sstem_stack1_cremi.h5 \\
        --stack fibsem=data/medulla_fibsem_250_cremi.h5 --work runs/generalisation \\
        --out benchmarks/results/generalisation

1. **Maps.** On every stack a UNet2D is trained (quick profile, the thesis's split
   proportions) for each budget of ``--epochs`` (one run, resumed to the next budget), and
   its ``best.pt`` predicts the test split: a briefly trained network gives a less confident
   map, a longer one a confident map. With several ``--seed`` values each seed trains its
   own set of maps (replicates: the same stacks and budgets, another draw of the network),
   and with several ``--recipe`` values (:mod:`emseg_lib.train.recipes`) each recipe too;
   every step below uses all of them. Run folders and predictions are kept in ``--work``
   (a rerun resumes from them), with each run's training seconds.
2. **Grid.** On every map, each test slice is segmented by the seeded method at every
   point of a grid (smoothing sigma in nm, :data:`SMOOTH_NM`, times the smallest seed in nm²,
   :data:`SEED_AREA_NM2`, times ``seed_th``, :data:`SEED_GRID`) and scored (CREMI protocol);
   the best grid point of a map is its *oracle*, a bound no user gets. Grids are kept
   in ``--work`` (``grids/``) beside the maps, so trying another rule costs no grid.
3. **Rules.** Each candidate rule derives ``seed_th`` per slice from the smoothed map itself
   (:mod:`emseg_lib.postprocess.derive`); a rule's free parameter ``f``, its smoothing in nm
   and its seed area in nm² are chosen together on the maps of the *other* stacks (lowest
   mean of VOI / oracle VOI), then the rule is scored on the left-out stack's maps, exactly.
   The "most seeds" candidate instead takes the grid ``seed_th`` with the most seeds over the
   map's slices, plus ``f`` grid steps. Beside them: the library's default as it ships (what
   ``emseg postprocess`` does without thresholds: the cut with the most seeds over each chunk
   of 8 slices, no fitted parameter), the fixed 0.95 / ``smooth_px`` 1 / 16-pixel seeds of
   earlier releases and the thesis method at 0.83 / 0.91, all without tuning on the map.
   Last, each rule's parameters chosen on every stack.
4. **End to end**: each run's thresholds learned on its validation split (what ``emseg
   segment`` uses after ``emseg train``), with the training seconds.

Writes ``generalisation.csv`` (every map and row), ``generalisation.md`` (the README's table)
and ``rule_selection.csv`` to ``--out``, and prints the table with the machine and profile.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from emseg_lib.experiments.real_data import load_real_stack
from emseg_lib.experiments.supervised import predict_split, train_unet
from emseg_lib.infra.atomic_files import atomic_path, atomic_write_text
from emseg_lib.output.pipeline import CHUNK_SLICES, chunk_ranges
from emseg_lib.postprocess import METHODS, THESIS_EDGE_TH, THESIS_SIG_TH, segment_volume
from emseg_lib.postprocess.derive import (
    DEFAULT_MIN_SEED_NM2,
    DEFAULT_SMOOTH_NM,
    DERIVED_SEED_TH,
    RULES,
    min_seed_px_of,
)
from emseg_lib.postprocess.methods import LEGACY_MIN_SEED_PX
from emseg_lib.postprocess.seeded import seeds_from_interior, smooth, watershed_from_seeds
from emseg_lib.profiles import get_profile
from emseg_lib.scoring.evaluation import score_grid, score_volume
from emseg_lib.scoring.metrics import SCORE_COLUMNS
from emseg_lib.train.recipes import RECIPES, THESIS_RECIPE

#: the fine seed_th grid every map is scored on (the oracle's and the rules' lookup grid)
SEED_GRID = tuple(round(v, 2) for v in np.arange(0.40, 0.985, 0.02))
#: the smoothing sigmas (nm in the plane) every map is scored at: a sigma in nm means the
#: same on stacks of different pixel size (4.6 nm VNC, 6 nm SNEMI, 10 nm FIB-SEM)
SMOOTH_NM = (2.5, 5.0, 10.0)
#: the smallest seeds (nm² in the plane) every map is scored at
SEED_AREA_NM2 = (800.0, 1600.0, 3200.0, 6400.0)
OLD_DEFAULT, OLD_SMOOTH_PX = 0.95, 1.0


@dataclasses.dataclass(frozen=True)
class Choice:
    """A seeded setting on the grid: smoothing sigma (nm), smallest seed (nm²), the rule's
    parameter ``f`` (or the fixed ``seed_th`` of an oracle), and its mean VOI / oracle."""

    smooth_nm: float
    seed_area_nm2: float
    f: float
    ratio: float = float("nan")

    def describe(self) -> str:
        return f"smooth {self.smooth_nm:g} nm, seeds >= {self.seed_area_nm2:g} nm²"


@dataclasses.dataclass(frozen=True)
class Map:
    """A network's test-split probabilities on one stack."""

    stack: str
    epochs: int
    train_s: float
    prob: np.ndarray
    gt: np.ndarray
    pixel_nm: float
    learned: dict
    seed: int
    folder: Path  # the --work folder of its seed and recipe (maps/, grids/)
    recipe: str = THESIS_RECIPE

    @property
    def name(self) -> str:
        return (f"{self.stack} e{self.epochs}" + (f" s{self.seed}" if self.seed else "")
                + ("" if self.recipe == THESIS_RECIPE else f" {self.recipe}"))


def _cached_map(path: Path, source: dict[str, str], seed: int, folder: Path,
                recipe: str) -> Map | None:
    """The map kept at ``path``, None if none; one made from another stack file or profile
    (``source``) is refused."""
    if not path.exists():
        return None
    with np.load(path) as saved:
        meta = json.loads(str(saved["meta"]))
        if meta.get("source") != source:
            raise SystemExit(f"{path} was made from {meta.get('source')}, not {source}: "
                             "give another --work or remove it")
        return Map(meta["stack"], meta["epochs"], meta["train_s"], saved["prob"], saved["gt"],
                   meta["pixel_nm"], meta["learned"], seed, folder, recipe)


def _cache_map(m: Map, path: Path, source: dict[str, str]) -> None:
    meta = {"stack": m.stack, "epochs": m.epochs, "train_s": m.train_s,
            "pixel_nm": m.pixel_nm, "learned": m.learned, "source": source}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        np.savez(out, prob=m.prob, gt=m.gt, meta=json.dumps(meta))


def seed_folder(work: Path, seed: int, recipe: str = THESIS_RECIPE) -> Path:
    """The folder of the maps trained with ``seed`` and ``recipe``: ``work`` itself for seed 0
    of the thesis's recipe, else ``work[/<recipe>][/seed<N>]``."""
    if recipe != THESIS_RECIPE:
        work = work / recipe
    return work if seed == 0 else work / f"seed{seed}"


def make_maps(stacks: dict[str, Path], budgets: Sequence[int], work: Path, profile_name: str,
              workers: int | None, seed: int = 0, recipe: str = THESIS_RECIPE) -> list[Map]:
    """Train each stack's UNet2D to each budget (resuming; training seed ``seed``, training
    recipe ``recipe``) and predict its test split; each map is kept in ``maps/`` of
    :func:`seed_folder` (a run resumed past a budget cannot give its map again)."""
    work = seed_folder(work, seed, recipe)
    maps = []
    for stack, path in stacks.items():
        profile = get_profile(profile_name)
        source = {"stack file": str(Path(path).resolve()), "profile": profile_name}
        if seed:
            source["seed"] = str(seed)
        if recipe != THESIS_RECIPE:
            source["recipe"] = recipe
        volume = None
        run_dir = work / f"{stack}_unet2d"
        for epochs in sorted(budgets):
            cache = work / "maps" / f"{stack}_e{epochs}.npz"
            if (cached := _cached_map(cache, source, seed, work, recipe)) is not None:
                maps.append(cached)
                continue
            if volume is None:
                volume = load_real_stack(path, profile)
            plan = dataclasses.replace(profile.unet2d, epochs=epochs)
            budget_profile = dataclasses.replace(profile, unet2d=plan)
            started = time.perf_counter()
            trained = train_unet("unet2d", volume, budget_profile, run_dir, seed=seed,
                                 workers=workers, progress=False, recipe=recipe)
            history_s = float(trained.history["epoch_s"].sum())
            test = predict_split(trained.model, volume, "test", budget_profile, progress=False,
                                 cache_dir=run_dir)
            print(f"{stack}: {epochs} epochs, recipe {recipe} ({history_s:.0f} s of training; "
                  f"this call {time.perf_counter() - started:.0f} s)", flush=True)
            maps.append(Map(stack, epochs, history_s, test.prob, test.gt, test.pixel_nm,
                            trained.postprocess, seed, work, recipe))
            _cache_map(maps[-1], cache, source)
    return maps


def smooth_px_of(m: Map, smooth_nm: float) -> float:
    """The smoothing sigma in pixels of the map's stack for a sigma of ``smooth_nm`` nm."""
    return smooth_nm / m.pixel_nm


@dataclasses.dataclass(frozen=True)
class SeedAreaGrid:
    """The seeded method over this benchmark's grid, for the library's grid-scoring engine
    (:func:`~emseg_lib.scoring.evaluation.score_grid`): smoothing sigma (nm, the outer axis) x
    smallest seed (nm²) x ``seed_th``; each grid point's row also carries its number of
    seeds. An area that drops no further seed yields the previous area's labelling (the
    engine reuses its score)."""

    pixel_nm: float
    has_boundaries = False

    @property
    def outer_values(self) -> tuple[float, ...]:
        return SMOOTH_NM

    def grid_labels(self, prob: np.ndarray, smooth_nm: float,
                    sampling: Sequence[float] | None = None
                    ) -> Iterator[tuple[dict[str, float], np.ndarray]]:
        smoothed = smooth(prob, smooth_nm / self.pixel_nm)
        for seed_th in SEED_GRID:
            sizes = np.bincount(seeds_from_interior(smoothed, seed_th, 1).ravel())[1:]
            kept, labels = None, None
            for area in SEED_AREA_NM2:
                min_seed_px = min_seed_px_of(area, self.pixel_nm)
                now = int(np.count_nonzero(sizes >= min_seed_px))
                if now != kept:
                    kept, labels = now, watershed_from_seeds(
                        smoothed, seeds_from_interior(smoothed, seed_th, min_seed_px))
                yield ({"smooth_nm": smooth_nm, "seed_area_nm2": area, "seed_th": seed_th,
                        "seeds": now}, labels)


def seed_area_grid(m: Map, workers: int | None) -> tuple[np.ndarray, np.ndarray]:
    """VOI (CREMI protocol) and number of seeds of every labelled slice of ``m`` at every
    point of :class:`SeedAreaGrid`, each ``(slices, len(SMOOTH_NM), len(SEED_AREA_NM2),
    len(SEED_GRID))``."""
    table = score_grid(m.prob, m.gt, SeedAreaGrid(m.pixel_nm), pixel_nm=m.pixel_nm,
                       workers=workers)
    ordered = table.sort_values(["slice", "smooth_nm", "seed_area_nm2", "seed_th"])
    shape = (-1, len(SMOOTH_NM), len(SEED_AREA_NM2), len(SEED_GRID))
    return (ordered["voi"].to_numpy().reshape(shape),
            ordered["seeds"].to_numpy().astype(float).reshape(shape))


def _grid_axes() -> str:
    return json.dumps({"smooth_nm": SMOOTH_NM, "seed_area_nm2": SEED_AREA_NM2,
                       "seed_th": SEED_GRID})


def map_grids(maps: Sequence[Map], workers: int | None
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``{map name: (slices, len(SMOOTH_NM), len(SEED_AREA_NM2), len(SEED_GRID)) VOI}`` of
    the labelled test slices, and the same of their seed counts. Each map's grids are kept in
    ``work/grids/`` with their axes and reused while the map (``work/maps/``) and the axes are
    unchanged, so trying another rule costs no grid."""
    grids, counts = {}, {}
    for m in maps:
        cache = m.folder / "grids" / f"{m.stack}_e{m.epochs}.npz"
        map_file = m.folder / "maps" / f"{m.stack}_e{m.epochs}.npz"
        made_from = f"{_grid_axes()} {map_file.stat().st_mtime_ns}"
        if cache.exists():
            with np.load(cache) as saved:
                if str(saved["made_from"]) == made_from:
                    grids[m.name], counts[m.name] = saved["voi"], saved["seeds"]
                    continue
        grids[m.name], counts[m.name] = seed_area_grid(m, workers)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp, open(tmp, "wb") as out:
            np.savez(out, voi=grids[m.name], seeds=counts[m.name], made_from=made_from)
    return grids, counts


def oracle_point(grid: np.ndarray) -> tuple[Choice, float]:
    """The best grid point of a map (``f`` its ``seed_th``) and its mean VOI."""
    means = grid.mean(axis=0)
    i, k, j = np.unravel_index(int(np.argmin(means)), means.shape)
    return Choice(SMOOTH_NM[i], SEED_AREA_NM2[k], SEED_GRID[j]), float(means[i, k, j])


def _grid_index(seed_th: float) -> int:
    step = SEED_GRID[1] - SEED_GRID[0]
    return int(np.clip(round((seed_th - SEED_GRID[0]) / step), 0, len(SEED_GRID) - 1))


def rule_picks(maps: Sequence[Map]) -> dict[tuple[str, str, float, float], list[int]]:
    """``{(map, rule, f, smooth_nm): grid index of every labelled slice's derived seed_th}``,
    each slice smoothed once per :data:`SMOOTH_NM` level (the seed area does not change the
    derived ``seed_th``)."""
    picks: dict[tuple[str, str, float, float], list[int]] = {}
    for m in maps:
        for p in (p for p, g in zip(m.prob, m.gt, strict=True) if np.any(g)):
            for smooth_nm in SMOOTH_NM:
                smoothed = smooth(p, smooth_px_of(m, smooth_nm))
                for name, rule in RULES.items():
                    levels = rule.levels(smoothed)
                    for f in rule.candidates:
                        picks.setdefault((m.name, name, f, smooth_nm), []).append(
                            _grid_index(rule.threshold_at(levels, f)))
    return picks


def _best_choice(maps: Sequence[Map], grids: dict[str, np.ndarray],
                 candidates: Sequence[float],
                 mean_voi: Callable[[Map, float, int, int], float]) -> Choice:
    """The ``(smoothing, seed area, candidate f)`` with the lowest mean VOI / oracle VOI over
    ``maps``; ``mean_voi(map, f, smoothing index, seed area index)`` is a map's mean VOI."""
    oracles = {m.name: oracle_point(grids[m.name])[1] for m in maps}
    best = Choice(np.nan, np.nan, np.nan, np.inf)
    for f in candidates:
        for i, smooth_nm in enumerate(SMOOTH_NM):
            for k, area in enumerate(SEED_AREA_NM2):
                ratio = float(np.mean([mean_voi(m, f, i, k) / oracles[m.name] for m in maps]))
                if ratio < best.ratio:
                    best = Choice(smooth_nm, area, f, ratio)
    return best


def select_parameters(name: str, maps: Sequence[Map], grids: dict[str, np.ndarray],
                      picks: dict[tuple[str, str, float, float], list[int]]) -> Choice:
    """The rule's ``(smoothing, seed area, f)`` with the lowest mean VOI / oracle VOI over
    ``maps``, looked up on their grids (nearest grid ``seed_th``)."""
    def mean_voi(m: Map, f: float, i: int, k: int) -> float:
        return float(np.mean([grids[m.name][s, i, k, j] for s, j in
                              enumerate(picks[(m.name, name, f, SMOOTH_NM[i])])]))
    return _best_choice(maps, grids, RULES[name].candidates, mean_voi)


#: the seeded method's derived default as :mod:`emseg_lib.postprocess.derive` ships it (scored
#: through the library's own path, :func:`library_default`)
SHIPPED = (f"{DERIVED_SEED_TH}; smooth {DEFAULT_SMOOTH_NM:g} nm, seeds >= "
           f"{DEFAULT_MIN_SEED_NM2:g} nm², derived per chunk of {CHUNK_SLICES} slices")
#: offsets (grid steps) of the "most seeds" candidate from the seed_th with the most seeds
MOST_SEEDS_OFFSETS = (-2, -1, 0, 1)
MOST_SEEDS = ("most seeds: seed_th = the grid value where the mean number of seeds over the "
              "map's slices is largest, plus f grid steps (the library's default without "
              "its offset, smoothing and seed area fitted, on this benchmark's grid)")


def most_seeds_index(counts: np.ndarray, i: int, k: int, offset: int) -> int:
    """The grid index of the "most seeds" candidate on one map's seed counts ``(slices,
    smoothing, seed area, seed_th)`` at smoothing ``i`` and seed area ``k``."""
    curve = counts[:, i, k].mean(axis=0)
    return int(np.clip(int(np.argmax(curve)) + offset, 0, len(SEED_GRID) - 1))


def select_most_seeds(maps: Sequence[Map], grids: dict[str, np.ndarray],
                      counts: dict[str, np.ndarray]) -> Choice:
    """The "most seeds" candidate's ``(smoothing, seed area, offset)`` with the lowest mean
    VOI / oracle VOI over ``maps``."""
    def mean_voi(m: Map, offset: float, i: int, k: int) -> float:
        return float(grids[m.name][:, i, k, most_seeds_index(counts[m.name], i, k,
                                                              int(offset))].mean())
    return _best_choice(maps, grids, MOST_SEEDS_OFFSETS, mean_voi)


def exact_scores(m: Map, segment: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
    """Mean CREMI scores over a map's labelled slices of ``segment`` (their ``(Z, Y, X)``
    probabilities -> ids, each slice segmented on its own)."""
    labelled = [z for z, g in enumerate(m.gt) if np.any(g)]
    rows = score_volume(segment(m.prob[labelled]), m.gt[labelled], "cremi",
                        pixel_nm=m.pixel_nm)
    return rows[list(SCORE_COLUMNS)].mean().to_dict()


def slice_by_slice(segment: Callable[[np.ndarray], np.ndarray]
                   ) -> Callable[[np.ndarray], np.ndarray]:
    """A ``(Y, X)`` segmenter applied to every slice of a ``(Z, Y, X)`` stack."""
    return lambda stack: np.stack([segment(p) for p in stack])


def library_default(m: Map) -> Callable[[np.ndarray], np.ndarray]:
    """What ``emseg postprocess`` does without thresholds: the seeded method per slice, its
    thresholds derived from each chunk (:func:`~emseg_lib.output.pipeline.chunk_ranges`, at
    most :data:`CHUNK_SLICES` slices; pixels of ``m``)."""
    def segment(stack: np.ndarray) -> np.ndarray:
        return np.concatenate([
            segment_volume(stack[z0:z1], "seeded", {}, resolution=(m.pixel_nm,) * 3)
            for z0, z1 in chunk_ranges(len(stack), CHUNK_SLICES)])
    return segment


def seeded_at(rule: Callable[[np.ndarray], float], smooth_px: float, min_seed_px: int
              ) -> Callable[[np.ndarray], np.ndarray]:
    """Per-slice seeded watershed of a ``(Z, Y, X)`` stack, ``seed_th`` from ``rule`` on each
    slice smoothed by ``smooth_px``, seeds of at least ``min_seed_px`` pixels."""
    def segment(prob: np.ndarray) -> np.ndarray:
        smoothed = smooth(prob, smooth_px)
        return watershed_from_seeds(smoothed, seeds_from_interior(smoothed, rule(smoothed),
                                                                  min_seed_px))
    return slice_by_slice(segment)


def seeded_choice(m: Map, rule: Callable[[np.ndarray], float], choice: Choice
                  ) -> Callable[[np.ndarray], np.ndarray]:
    """:func:`seeded_at` with ``choice``'s smoothing and seed area on ``m``'s pixels."""
    return seeded_at(rule, smooth_px_of(m, choice.smooth_nm),
                     min_seed_px_of(choice.seed_area_nm2, m.pixel_nm))


def _selection_row(left_out: str, name: str, chosen: Choice) -> dict:
    return {"left out": left_out, "rule": name, "f": chosen.f, "smooth_nm": chosen.smooth_nm,
            "seed_area_nm2": chosen.seed_area_nm2,
            "mean VOI / oracle on the others": round(chosen.ratio, 4)}


def leave_one_out(maps: Sequence[Map], grids: dict[str, np.ndarray],
                  counts: dict[str, np.ndarray]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every map's rows (rules chosen without its stack, oracle, old default, thesis,
    learned) and the selection of every rule's parameters per left-out stack, then on every
    stack (what the library ships)."""
    rows, selections = [], []
    picks = rule_picks(maps)
    for stack in sorted({m.stack for m in maps}):
        others = [m for m in maps if m.stack != stack]
        chosen = {}
        for name in RULES:
            chosen[name] = select_parameters(name, others, grids, picks)
            selections.append(_selection_row(stack, name, chosen[name]))
        most = select_most_seeds(others, grids, counts)
        selections.append(_selection_row(stack, "most seeds", most))
        for m in (m for m in maps if m.stack == stack):
            oracle, _ = oracle_point(grids[m.name])
            base = {"stack": m.stack, "map": m.name, "train_s": round(m.train_s)}
            rows.append({**base, "row": "oracle (best grid point on this map)",
                         "setting": f"seeded, seed_th {oracle.f}, {oracle.describe()}",
                         **exact_scores(m, seeded_choice(m, lambda _s, t=oracle.f: t,
                                                         oracle))})
            for name, rule in RULES.items():
                rows.append({**base, "row": f"rule {name} (chosen without {stack})",
                             "setting": f"{rule.describe(chosen[name].f)}, "
                                        f"{chosen[name].describe()}",
                             **exact_scores(m, seeded_choice(m, rule.bind(chosen[name].f),
                                                             chosen[name]))})
            j = most_seeds_index(counts[m.name], SMOOTH_NM.index(most.smooth_nm),
                                 SEED_AREA_NM2.index(most.seed_area_nm2), int(most.f))
            rows.append({**base, "row": f"rule most seeds (chosen without {stack})",
                         "setting": f"{MOST_SEEDS}, f {most.f:g} (seed_th {SEED_GRID[j]}), "
                                    f"{most.describe()}",
                         **exact_scores(m, seeded_choice(m, lambda _s, t=SEED_GRID[j]: t,
                                                         most))})
            rows.append({**base, "row": "old default (fixed)",
                         "setting": f"seeded, seed_th {OLD_DEFAULT}, smooth_px {OLD_SMOOTH_PX}, "
                                    f"seeds >= {LEGACY_MIN_SEED_PX:g} px",
                         **exact_scores(m, seeded_at(lambda _s: OLD_DEFAULT, OLD_SMOOTH_PX,
                                                     round(LEGACY_MIN_SEED_PX)))})
            rows.append({**base, "row": "library default (no thresholds given)",
                         "setting": f"seeded, derived: {SHIPPED}",
                         **exact_scores(m, library_default(m))})
            rows.append({**base, "row": "thesis method 0.83 / 0.91",
                         "setting": f"thesis, sig_th {THESIS_SIG_TH}, edge_th {THESIS_EDGE_TH}",
                         **exact_scores(m, slice_by_slice(lambda p: METHODS["thesis"].segment(
                             p, {"sig_th": THESIS_SIG_TH, "edge_th": THESIS_EDGE_TH})))})
            learned = m.learned["thresholds"]["seeded"]
            rows.append({**base, "row": "end to end: learned on validation",
                         "setting": f"seeded, seed_th {learned['seed_th']:g}, smooth_px "
                                    f"{learned['smooth_px']:g}, seeds >= "
                                    f"{learned['min_seed_px']:g} px",
                         **exact_scores(m, slice_by_slice(
                             lambda p, t=learned: METHODS["seeded"].segment(p, t)))})
    for name in RULES:
        selections.append(_selection_row("none (every stack: the shipped default)", name,
                                         select_parameters(name, maps, grids, picks)))
    selections.append(_selection_row("none (every stack)", "most seeds",
                                     select_most_seeds(maps, grids, counts)))
    return pd.DataFrame(rows), pd.DataFrame(selections)


#: the summary table's columns: (heading, the start of the rows' ``row`` it shows)
SUMMARY_COLUMNS = (("scale", "rule scale"), ("range", "rule range"), ("otsu", "rule otsu"),
                   ("fixed", "rule fixed"), ("most seeds", "rule most seeds"),
                   ("library default", "library default"), ("old 0.95", "old default"),
                   ("thesis 0.83 / 0.91", "thesis method"),
                   ("learned on validation", "end to end"))


def summary_markdown(table: pd.DataFrame) -> str:
    """The README's table: per map, its oracle VOI and every other row's VOI / oracle VOI,
    then each column's worst and mean map and how many maps are within 15 % of their oracle."""
    oracle = table[table["row"].str.startswith("oracle")].set_index("map")["voi"]
    heads = [head for head, _ in SUMMARY_COLUMNS]
    lines = ["| map | oracle VOI | " + " | ".join(heads) + " |",
             "|---|---|" + "---|" * len(heads)]
    ratios: dict[str, list[float]] = {head: [] for head in heads}
    for name in oracle.index:
        rows = table[table["map"] == name]
        for head, start in SUMMARY_COLUMNS:
            voi = float(rows[rows["row"].str.startswith(start)]["voi"].iloc[0])
            ratios[head].append(voi / oracle[name])
        lines.append(f"| {name} | {oracle[name]:.3f} | "
                     + " | ".join(f"{ratios[h][-1]:.2f}" for h in heads) + " |")
    lines.append("| **worst** | | " + " | ".join(f"**{max(ratios[h]):.2f}**" for h in heads)
                 + " |")
    lines.append("| mean | | " + " | ".join(f"{np.mean(ratios[h]):.2f}" for h in heads) + " |")
    lines.append(f"| within 15 % (of {len(oracle)}) | | "
                 + " | ".join(str(sum(r <= 1.15 for r in ratios[h])) for h in heads) + " |")
    return "\n".join(lines)


def markdown(table: pd.DataFrame) -> str:
    oracle = table[table["row"].str.startswith("oracle")].set_index("map")["voi"]
    lines = ["| map | row | setting | VOI | VOI / oracle | ARAND |", "|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        lines.append(f"| {r['map']} | {r['row']} | {r['setting']} | {r['voi']:.3f} | "
                     f"{r['voi'] / oracle[r['map']]:.2f} | {r['arand']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stack", action="append", required=True,
                        help="NAME=PATH of a CREMI-layout stack (repeat)")
    parser.add_argument("--epochs", type=int, nargs="+", default=[4, 16],
                        help="training budgets, quick profile (one map each)")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/generalisation"))
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, nargs="+", default=[0],
                        help="training seeds: one set of maps each (replicates, kept in "
                             "WORK/seed<N> beside seed 0's), all of them used together")
    parser.add_argument("--recipe", nargs="+", default=[THESIS_RECIPE], choices=list(RECIPES),
                        help="training recipes: one set of maps each (kept in WORK/<recipe> "
                             "but the thesis's), all of them used together")
    args = parser.parse_args()
    stacks = dict(item.split("=", 1) for item in args.stack)
    started = time.perf_counter()
    maps = [m for recipe in args.recipe for seed in args.seed
            for m in make_maps({k: Path(v) for k, v in stacks.items()}, args.epochs, args.work,
                               args.profile, args.workers, seed, recipe)]
    grids, counts = map_grids(maps, args.workers)
    table, selections = leave_one_out(maps, grids, counts)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "generalisation.csv", table.to_csv(index=False))
    atomic_write_text(args.out / "rule_selection.csv", selections.to_csv(index=False))
    machine = (f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores, CPU), "
               f"{len(maps)} maps")
    text = (f"Measured {time.strftime('%Y-%m-%d')} on {machine}; UNet2D, profile "
            f"{args.profile}, epochs {args.epochs}, training seeds {args.seed}, recipes "
            f"{args.recipe}; CREMI "
            "protocol, test splits. Summary: VOI / oracle VOI.\n\n"
            + summary_markdown(table) + "\n\nEvery row:\n\n" + markdown(table))
    atomic_write_text(args.out / "generalisation.md", text + "\n")
    atomic_write_text(args.out / "stacks.json", json.dumps(stacks, indent=2) + "\n")
    print(text)
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
