"""Post-processing thresholds learned on a validation split, by CREMI-protocol VOI.

:func:`tune_thresholds` scores every point of a method's grid
(:attr:`~emseg_lib.postprocess.PostprocessMethod.grid`) on every slice (the one grid-scoring
engine, :func:`~emseg_lib.scoring.evaluation.score_grid`) and keeps the point
with the lowest mean VOI (ties: lower adapted Rand error). :func:`tune_all` does so for every
method; its result is what ``best.pt`` stores under ``"postprocess"`` and what ``emseg
segment`` uses unless thresholds are given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emseg_lib.errors import EmsegInputError, check_ndim, check_same_shape
from emseg_lib.postprocess import DEFAULT_METHOD, METHODS, get_method
from emseg_lib.postprocess.methods import LEGACY_MIN_SEED_PX
from emseg_lib.scoring.evaluation import GridMethod, score_grid
from emseg_lib.scoring.metrics import SCORE_COLUMNS


@dataclass(frozen=True)
class TuningResult:
    """The best thresholds of one method and the grid they were chosen from.

    Attributes:
        method: the method's name.
        thresholds: the chosen thresholds.
        scores: mean per-slice CREMI-protocol scores at ``thresholds``.
        grid: one row per (slice, grid point): the thresholds and the scores.
    """

    method: str
    thresholds: dict[str, float]
    scores: dict[str, float]
    grid: pd.DataFrame


def _best(method: str, keys: list[str], grid: pd.DataFrame) -> TuningResult:
    """The grid point of ``grid`` (per-slice rows of
    :func:`~emseg_lib.scoring.evaluation.score_grid`) with the lowest mean VOI over the slices
    (ties: lower adapted Rand error)."""
    means = grid.groupby(keys)[list(SCORE_COLUMNS)].mean().reset_index()
    best = means.sort_values(["voi", "arand"], kind="stable").iloc[0]
    return TuningResult(method, {k: float(best[k]) for k in keys},
                        {k: float(best[k]) for k in SCORE_COLUMNS}, grid)


def tune_thresholds(prob: np.ndarray, gt_ids: np.ndarray, method: str, *, pixel_nm: float,
                    dims: int = 2, resolution: Sequence[float] | None = None,
                    workers: int | None = 1) -> TuningResult:
    """The thresholds of ``method`` with the lowest mean CREMI-protocol VOI on a split
    (every point of its grid scored by :func:`~emseg_lib.scoring.evaluation.score_grid`).

    Args:
        prob: ``(Z, Y, X)`` cell probabilities of the validation split.
        gt_ids: ``(Z, Y, X)`` neuron ids.
        method: a post-processing method name.
        pixel_nm: in-plane pixel size in nm (the CREMI band).
        dims: 2 = slices segmented on their own, 3 = the split as one volume (anisotropy
            from ``resolution``).
        workers: processes (None = every core); each takes one slice (2D) or the volume (3D)
            at one value of the grid's outer axis.
    """
    check_ndim("prob", prob, (3,), "(Z, Y, X)")
    check_same_shape("prob", prob, "gt_ids", gt_ids)
    entry = get_method(method)
    grid = _split_grid(prob, gt_ids, entry, pixel_nm=pixel_nm, dims=dims,
                       sampling=resolution if dims == 3 else (pixel_nm, pixel_nm),
                       workers=workers)
    return _best(method, list(entry.parameters), grid)


def _split_grid(prob: np.ndarray, gt_ids: np.ndarray, method: GridMethod, **kwargs: Any
                ) -> pd.DataFrame:
    """:func:`~emseg_lib.scoring.evaluation.score_grid` of a validation split (CREMI protocol)."""
    gt_ids = np.asarray(gt_ids, dtype=np.int64)
    if not np.any(gt_ids):
        raise EmsegInputError("the validation split has no labelled slice to tune on")
    return score_grid(prob, gt_ids, method, protocols=("cremi",), **kwargs
                      ).drop(columns="protocol")


def tune_all(prob: np.ndarray, gt_ids: np.ndarray, *, pixel_nm: float, dims: int = 2,
             resolution: Sequence[float] | None = None, workers: int | None = 1
             ) -> dict[str, TuningResult]:
    """:func:`tune_thresholds` for every method, ``{name: result}``."""
    return {name: tune_thresholds(prob, gt_ids, name, pixel_nm=pixel_nm, dims=dims,
                                  resolution=resolution, workers=workers) for name in METHODS}


def tune_agglomeration(affinities: np.ndarray, gt_ids: np.ndarray, *, pixel_nm: float
                       ) -> dict[str, TuningResult]:
    """For each affinity method (:data:`~emseg_lib.postprocess.agglomeration.AFFINITY_METHODS`),
    the threshold of its grid with the lowest mean CREMI-protocol VOI on a split.

    Args:
        affinities: ``(C, Z, Y, X)`` (channels z, y, x, or y, x) of the validation split,
            agglomerated as one volume.
        gt_ids: ``(Z, Y, X)`` neuron ids, scored per slice.
        pixel_nm: in-plane pixel size in nm (the CREMI band).
    """
    from emseg_lib.postprocess.agglomeration import AFFINITY_METHODS

    check_ndim("affinities", affinities, (4,), "(C, Z, Y, X)")
    return {name: _best(name, [entry.parameter],
                        _split_grid(affinities, gt_ids, entry, pixel_nm=pixel_nm, dims=3))
            for name, entry in AFFINITY_METHODS.items()}


def tuned_before_seed_area(entry: dict[str, Any]) -> bool:
    """Whether a stored ``"postprocess"`` entry's seeded thresholds were learned before the
    smallest seed was one of them (no ``min_seed_px``: tuned with 16-pixel seeds)."""
    seeded = entry.get("thresholds", {}).get("seeded")
    return bool(seeded) and "min_seed_px" not in seeded


def completed_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A stored ``"postprocess"`` entry as it was tuned: seeded thresholds learned before the
    seed size was (:func:`tuned_before_seed_area`) get the 16-pixel seeds they were tuned with
    (:data:`~emseg_lib.postprocess.methods.LEGACY_MIN_SEED_PX`); ``entry`` is not changed."""
    if not tuned_before_seed_area(entry):
        return entry
    thresholds = entry["thresholds"]
    seeded = {**thresholds["seeded"], "min_seed_px": LEGACY_MIN_SEED_PX}
    return {**entry, "thresholds": {**thresholds, "seeded": seeded}}


def learned_entry(entry: Any, checkpoint: Path) -> dict[str, Any] | None:
    """A checkpoint's stored ``"postprocess"`` entry, checked and :func:`completed_entry`;
    None when it has none. An entry not shaped as :func:`checkpoint_entry` writes it (a known
    method, an integer epoch, thresholds per method) is refused rather than half used.

    Raises:
        EmsegInputError: one line naming ``checkpoint``.
    """
    from emseg_lib.postprocess.agglomeration import AFFINITY_METHODS

    if entry is None:
        return None
    thresholds = entry.get("thresholds", {}) if isinstance(entry, dict) else None
    if not (isinstance(entry, dict) and entry.get("method") in {*METHODS, *AFFINITY_METHODS}
            and isinstance(entry.get("epoch"), int) and isinstance(thresholds, dict)
            and all(isinstance(v, dict) for v in thresholds.values())):
        raise EmsegInputError(f"{checkpoint}: its learned post-processing entry is not one "
                              "emseg writes (a method, an epoch and thresholds per method); "
                              "use a checkpoint written by emseg training")
    return completed_entry(entry)


@dataclass(frozen=True)
class ChosenThresholds:
    """What a segmentation uses: a method, its thresholds and where they come from.

    Attributes:
        method: the method's name.
        thresholds: its thresholds (those :attr:`PostprocessMethod.derived` are missing
            unless given or learned: they follow from the map).
        source: where they come from, in words, for the one line a run prints.
    """

    method: str
    thresholds: dict[str, float]
    source: str


def choose_thresholds(method: str | None, given: Mapping[str, float | None],
                      learned: dict[str, Any] | None, dims: int, *,
                      from_checkpoint: bool = False, given_by: str = "given"
                      ) -> ChosenThresholds:
    """The one precedence rule for a boundary map's post-processing, for notebooks and
    commands alike: thresholds ``given``, then those ``learned`` on the validation split (a
    checkpoint's :attr:`~emseg_lib.train.checkpoint.Checkpoint.learned`), then the method's
    defaults (or thresholds derived from the map).

    Args:
        method: the method asked for; None: the learned default method, else
            :data:`~emseg_lib.postprocess.DEFAULT_METHOD`.
        given: thresholds given explicitly (None entries: not given).
        learned: the learned entry, None when there is none; thresholds learned for another
            number of dimensions than ``dims`` are not used.
        dims: 2 (slices one by one) or 3 (the volume at once).
        from_checkpoint: the map comes from a checkpoint (the source then says it has no
            learned thresholds when it has none).
        given_by: how the source names given thresholds (``"from the command line"``).

    Raises:
        EmsegInputError: an unknown method, a threshold of another method or out of range.
    """
    other_dims = learned is not None and learned.get("dims", dims) != dims
    name = method or (learned["method"] if learned else DEFAULT_METHOD)
    entry = get_method(name)
    base = None if other_dims else (learned or {}).get("thresholds", {}).get(name)
    thresholds = entry.thresholds(given, base, dims)
    if base is not None:
        source = f"learned on the validation split at epoch {learned['epoch']}"
    elif other_dims:
        source = f"method defaults: the checkpoint's thresholds were learned in {learned['dims']}D"
    elif learned is None and method is None and from_checkpoint:
        source = "method defaults: the checkpoint has no learned thresholds"
    else:
        source = "method defaults"
    named = [k for k in entry.parameters if given.get(k) is not None]
    if named:
        source = f"{', '.join(named)} {given_by}; otherwise {source}"
    return ChosenThresholds(name, thresholds, source)


def choose_agglomeration(method: str, given: float | None, learned: dict[str, Any] | None,
                         *, given_by: str = "given") -> tuple[float, str]:
    """The same precedence for an affinity method's one threshold: ``given``, then
    ``learned`` (a checkpoint's learned entry), then the method's default; with where it
    comes from, in words."""
    from emseg_lib.postprocess.agglomeration import get_affinity_method

    entry = get_affinity_method(method)
    stored = (learned or {}).get("thresholds", {}).get(method, {}).get(entry.parameter)
    if given is not None:
        return given, f"{entry.parameter} {given_by}"
    if stored is not None:
        return stored, f"learned on the validation split at epoch {learned['epoch']}"
    return entry.default, "method default"


def checkpoint_entry(results: dict[str, TuningResult], *, dims: int, epoch: int,
                     method: str = DEFAULT_METHOD) -> dict[str, Any]:
    """What ``best.pt`` stores under ``"postprocess"``: plain dicts, floats and strings;
    ``method`` is the one ``emseg segment`` uses by default."""
    return {"method": method, "dims": dims, "epoch": epoch, "protocol": "cremi",
            "split": "val",
            "thresholds": {name: r.thresholds for name, r in results.items()},
            "val_scores": {name: r.scores for name, r in results.items()}}
