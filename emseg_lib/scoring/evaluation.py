"""Scoring probability maps against ground truth, under two protocols.

``thesis`` — what the thesis tables report (3.2.7, 5.2): the ground truth is the connected
components of the *boundary target* (cells 1..n, boundary pixels 0), the prediction is the
post-processed labelling (cells 1..n, boundary 0), and label 0 is a segment of its own on both
sides. VOI "before watershed" labels ``prob > sig_th`` directly; "after" runs
:func:`~emseg_lib.postprocess.watershed_postprocess`.

``cremi`` — the CREMI challenge's conventions: the ground truth is the neuron ids with a
25 nm band around every boundary ignored; the prediction is scored as given, so it should be
dense (the post-processing floods its boundary pixels from the segments,
:func:`~emseg_lib.postprocess.flood_boundaries`). This is the fair comparison the thesis's
discussion asks for; both are reported side by side.

``plain`` — the ISBI 2012 / SNEMI3D scorers' conventions: the neuron ids with label 0
ignored and no band around boundaries; the prediction is scored as given (``emseg evaluate
--protocol plain``).

Everything is computed per 2D slice and averaged, for 2D and 3D models alike; the ground
truth of a slice is built once (:func:`ground_truths`). :func:`score_volume` is the one entry
point for a finished segmentation (``emseg evaluate`` and the notebooks); :func:`score_grid` is
the one engine that scores every point of a method's threshold grid (learned thresholds,
training validation, and the thesis tables :func:`threshold_grid` and
:func:`evaluate_slices`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Protocol

import numpy as np
import pandas as pd
from skimage.morphology import skeletonize
from skimage.segmentation import expand_labels

from emseg_lib.data.targets import cell_target, instance_boundary
from emseg_lib.errors import EmsegInputError, check_ndim, check_probabilities, check_same_shape
from emseg_lib.infra.parallel import parallel_map
from emseg_lib.postprocess import flood_boundaries, get_method, label_cells, watershed_postprocess
from emseg_lib.postprocess.methods import BEFORE_WATERSHED
from emseg_lib.scoring.metrics import (
    SCORE_COLUMNS,
    SegmentationScores,
    cremi_boundary_mask,
    segmentation_scores,
)

CREMI_BORDER_NM = 25.0


class GridMethod(Protocol):
    """What :func:`score_grid` needs of a method: its grid's outer values and the labellings
    of each (0 on boundaries when ``has_boundaries``)."""

    has_boundaries: bool

    @property
    def outer_values(self) -> tuple[float, ...]: ...

    def grid_labels(self, prob: np.ndarray, outer_value: float,
                    sampling: Sequence[float] | None = None
                    ) -> Iterator[tuple[dict[str, float], np.ndarray]]: ...


def thesis_ground_truth(gt_ids: np.ndarray, boundary_thickness: int = 1) -> np.ndarray:
    """Connected components of the cell target of ``gt_ids`` ``(Y, X)``: 0 on boundaries."""
    return label_cells(cell_target(instance_boundary(gt_ids, boundary_thickness)), 0.5)


def dense_segmentation(seg: np.ndarray) -> np.ndarray:
    """Assign every label-0 pixel of ``seg`` ``(Y, X)`` to the nearest segment."""
    if not np.any(seg):
        return seg
    return expand_labels(seg, distance=max(seg.shape))


def thinned_segmentation(seg: np.ndarray) -> np.ndarray:
    """Predicted boundaries slimmed to their 1-px skeleton (thesis 6.1's first remedy).

    The boundary pixels (label 0) of ``seg`` ``(Y, X)`` are reduced to their skeleton; the
    removed pixels join the nearest segment. The mask is edge-padded first so that skeleton
    lines run to the image border instead of retracting from it (which would reconnect the
    cells they separate).
    """
    pad = max(seg.shape)
    boundary = np.pad(seg == 0, pad, mode="edge")
    skeleton = skeletonize(boundary)[pad:-pad, pad:-pad]
    return np.where(skeleton, 0, dense_segmentation(seg))


@dataclass(frozen=True)
class GroundTruth:
    """The two ground truths of one ``(Y, X)`` slice, computed once and scored many times.

    Attributes:
        cells: thesis protocol, :func:`thesis_ground_truth` (0 on boundaries).
        banded: CREMI protocol, the neuron ids with the 25 nm boundary band set to 0.
        ids: the neuron ids themselves.
    """

    cells: np.ndarray
    banded: np.ndarray
    ids: np.ndarray

    @classmethod
    def from_ids(cls, gt_ids: np.ndarray, *, pixel_nm: float,
                 boundary_thickness: int = 1) -> GroundTruth:
        """Prepare both ground truths of ``gt_ids`` ``(Y, X)``."""
        banded = np.where(cremi_boundary_mask(gt_ids, CREMI_BORDER_NM, pixel_nm), 0, gt_ids)
        return cls(thesis_ground_truth(gt_ids, boundary_thickness), banded, gt_ids)


def thesis_scores(seg: np.ndarray, truth: GroundTruth) -> SegmentationScores:
    """Thesis protocol: ``seg`` against the labelled boundary target, label 0 a segment."""
    return segmentation_scores(truth.cells, seg, ignore_gt_background=False)


def cremi_scores(seg: np.ndarray, truth: GroundTruth) -> SegmentationScores:
    """CREMI protocol: ``seg`` as given against the ids, 25 nm ground-truth band ignored
    (a label 0 in ``seg`` is scored as one more segment)."""
    return segmentation_scores(truth.banded, seg)


def plain_scores(seg: np.ndarray, truth: GroundTruth) -> SegmentationScores:
    """Plain protocol (ISBI 2012, SNEMI3D): ``seg`` as given against the ids, ground-truth
    label 0 ignored, no boundary band (a label 0 in ``seg`` is scored as one more segment)."""
    return segmentation_scores(truth.ids, seg)


PROTOCOLS = {"cremi": cremi_scores, "thesis": thesis_scores, "plain": plain_scores}
#: one line per protocol, for help texts and reports
PROTOCOL_DESCRIPTIONS = {
    "cremi": "neuron ids, label 0 and a 25 nm band around boundaries ignored, the "
             "segmentation scored as given",
    "thesis": "connected components of the boundary target, label 0 (boundary) a segment on "
              "both sides",
    "plain": "neuron ids, label 0 ignored, no boundary band, the segmentation scored as given "
             "(as the ISBI 2012 / SNEMI3D scorers)",
}


def ground_truths(gt_ids: np.ndarray, *, pixel_nm: float, boundary_thickness: int = 1,
                  workers: int | None = 1) -> list[GroundTruth | None]:
    """The :class:`GroundTruth` of every slice of ``gt_ids`` ``(Z, Y, X)``, built once for
    every protocol and grid point that scores it; ``None`` for a slice with no label (nothing
    to score). ``workers`` processes (None = every core)."""
    check_ndim("gt_ids", gt_ids, (3,), "(Z, Y, X)")
    jobs = [(np.asarray(g, dtype=np.int64), pixel_nm, boundary_thickness) for g in gt_ids]
    labelled = [z for z, g in enumerate(gt_ids) if np.any(g)]
    built = parallel_map(_ground_truth, [jobs[z] for z in labelled], workers)
    truths: list[GroundTruth | None] = [None] * len(jobs)
    for z, truth in zip(labelled, built, strict=True):
        truths[z] = truth
    return truths


def _ground_truth(job: tuple[np.ndarray, float, int]) -> GroundTruth:
    gt_ids, pixel_nm, boundary_thickness = job
    return GroundTruth.from_ids(gt_ids, pixel_nm=pixel_nm, boundary_thickness=boundary_thickness)


def _check_protocols(protocols: Sequence[str]) -> None:
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise EmsegInputError(f"protocol must be one of {', '.join(PROTOCOLS)}, got "
                              f"{', '.join(map(repr, unknown or protocols)) or 'none'}")


def _slice_rows(labels: np.ndarray, dense: np.ndarray, truths: Sequence[GroundTruth | None],
                first_slice: int, protocols: Sequence[str]) -> list[dict[str, float]]:
    """Scores of one labelling ``(Y, X)`` or ``(Z, Y, X)`` per labelled slice and protocol:
    the thesis protocol scores ``labels`` as they are (0 = boundary), the others ``dense``."""
    stack, stack_dense = (labels, dense) if labels.ndim == 3 else (labels[None], dense[None])
    rows = []
    for z, truth in enumerate(truths):
        if truth is None:
            continue
        for protocol in protocols:
            seg = stack[z] if protocol == "thesis" else stack_dense[z]
            rows.append({"slice": first_slice + z, "protocol": protocol,
                         **PROTOCOLS[protocol](seg.astype(np.int64), truth).as_dict()})
    return rows


def _grid_job(job: tuple[np.ndarray, list[GroundTruth | None], int, float],
              method: GridMethod, protocols: Sequence[str], sampling: Sequence[float] | None
              ) -> list[dict[str, float]]:
    """Rows of the grid points at one outer value: ``job = (prob, truths, first slice,
    outer value)``, ``prob`` one slice ``(Y, X)`` or the volume scored per slice. A grid point
    whose labelling is the previous one's (the same array) reuses its scores."""
    prob, truths, first_slice, outer_value = job
    rows: list[dict[str, float]] = []
    last, scores = None, []
    for thresholds, labels in method.grid_labels(prob, outer_value, sampling):
        if labels is not last:
            last = labels
            dense = (flood_boundaries(labels, prob)
                     if method.has_boundaries and set(protocols) != {"thesis"} else labels)
            scores = _slice_rows(labels, dense, truths, first_slice, protocols)
        rows += [{"slice": row["slice"], "protocol": row["protocol"], **thresholds,
                  **{k: row[k] for k in SCORE_COLUMNS}} for row in scores]
    return rows


def score_grid(prob: np.ndarray, gt_ids: np.ndarray, method: GridMethod, *, pixel_nm: float,
               protocols: Sequence[str] = ("cremi",), dims: int = 2,
               sampling: Sequence[float] | None = None, boundary_thickness: int = 1,
               truths: Sequence[GroundTruth | None] | None = None,
               workers: int | None = 1) -> pd.DataFrame:
    """Per-slice scores of every point of ``method``'s grid: the one grid-scoring engine.

    Learned thresholds (:func:`~emseg_lib.scoring.tuning.tune_thresholds`,
    :func:`~emseg_lib.scoring.tuning.tune_agglomeration`), the thesis tables
    (:func:`threshold_grid`) and training validation score through it. The ground truth is built
    once per slice (:func:`ground_truths`); each outer grid value of each slice (2D) or of the
    volume (3D) is one job for ``workers`` processes, and the rows come back in order, so the table
    does not depend on the number of workers.

    Args:
        prob: ``(Z, Y, X)`` cell probabilities, or ``(C, Z, Y, X)`` affinities (``dims`` 3).
        gt_ids: ``(Z, Y, X)`` neuron ids.
        method: a post-processing method (:class:`~emseg_lib.postprocess.PostprocessMethod`,
            :class:`~emseg_lib.postprocess.agglomeration.AffinityMethod`): its
            :attr:`outer_values` and ``grid_labels``.
        pixel_nm: in-plane pixel size in nm (the CREMI band is 25 nm).
        protocols: keys of :data:`PROTOCOLS`; the thesis protocol scores a method's labels
            with their boundaries, the others the labels made dense.
        dims: 2 = every slice segmented on its own, 3 = the volume at once.
        sampling: voxel size in nm of ``prob``'s spatial axes, as the method segments it.
        truths: :func:`ground_truths` of ``gt_ids`` already built (else built here).

    Returns:
        One row per (grid point, labelled slice, protocol): ``slice``, ``protocol``, the
        grid point's thresholds, then :data:`~emseg_lib.scoring.metrics.SCORE_COLUMNS`.

    Raises:
        EmsegInputError: shapes that differ, an unknown protocol, or no labelled slice.
    """
    _check_protocols(protocols)
    check_ndim("prob", prob, (3,) if dims == 2 else (3, 4), "(Z, Y, X)" if dims == 2
               else "(Z, Y, X) or (C, Z, Y, X)")
    if prob.shape[-3:] != gt_ids.shape:
        raise EmsegInputError(f"prob and gt_ids must have the same (Z, Y, X) shape, got "
                              f"{prob.shape} and {gt_ids.shape}")
    if truths is None:
        truths = ground_truths(gt_ids, pixel_nm=pixel_nm,
                               boundary_thickness=boundary_thickness, workers=workers)
    if dims == 3:
        jobs = [(prob, list(truths), 0, value) for value in method.outer_values]
    else:
        jobs = [(p, [truth], z, value) for z, (p, truth) in enumerate(zip(prob, truths,
                                                                         strict=True))
                if truth is not None for value in method.outer_values]
    task = partial(_grid_job, method=method, protocols=tuple(protocols), sampling=sampling)
    rows = [row for job_rows in parallel_map(task, jobs, workers) for row in job_rows]
    if not rows:
        raise EmsegInputError("the ground truth has no labelled slice to score")
    return pd.DataFrame(rows)


def score_volume(seg: np.ndarray, gt_ids: np.ndarray, protocol: str = "cremi", *,
                 pixel_nm: float, boundary_thickness: int = 1) -> pd.DataFrame:
    """Per-slice scores of a finished segmentation under one protocol.

    Slices whose ground truth has no label are skipped (nothing to score).

    Args:
        seg: ``(Z, Y, X)`` predicted ids (dense for ``cremi`` and ``plain``; 0 = boundary
            for ``thesis``).
        gt_ids: ``(Z, Y, X)`` neuron ids.
        protocol: a key of :data:`PROTOCOLS`: ``"cremi"``, ``"thesis"`` or ``"plain"``.
        pixel_nm: in-plane pixel size in nm (the CREMI band is 25 nm).

    Returns:
        One row per scored slice: ``slice``, ``voi_split``, ``voi_merge``, ``arand``, ``voi``,
        ``cremi_score``.
    """
    _check_protocols([protocol])
    check_ndim("seg", seg, (3,), "(Z, Y, X)")
    check_same_shape("seg", seg, "gt_ids", gt_ids)
    truths = ground_truths(gt_ids, pixel_nm=pixel_nm, boundary_thickness=boundary_thickness)
    rows = _slice_rows(seg, seg, truths, 0, [protocol])
    if not rows:
        raise EmsegInputError("the ground truth has no labelled slice to score")
    return pd.DataFrame(rows).drop(columns="protocol")


def protocol_scores(prob: np.ndarray, gt_ids: np.ndarray, sig_th: float, edge_th: float, *,
                    pixel_nm: float) -> pd.DataFrame:
    """Mean per-slice VOI split/merge and ARAND of the watershed segmentation, three ways.

    Rows: ``thesis`` (:func:`thesis_scores`), ``thinned boundaries`` (prediction thinned by
    :func:`thinned_segmentation`, scored against the neuron ids), ``CREMI``
    (:func:`cremi_scores` of the segmentation with its boundaries flooded).

    Args:
        prob: ``(Z, Y, X)`` cell probabilities; gt_ids: ``(Z, Y, X)`` neuron ids.
    """
    check_ndim("prob", prob, (3,), "(Z, Y, X)")
    check_same_shape("prob", prob, "gt_ids", gt_ids)
    rows: dict[str, list[dict[str, float]]] = {"thesis": [], "thinned boundaries": [],
                                               "CREMI": []}
    truths = ground_truths(gt_ids, pixel_nm=pixel_nm)
    for p, g, truth in zip(prob, gt_ids, truths, strict=True):
        if truth is None:
            continue
        seg = watershed_postprocess(p, sig_th, edge_th)
        scores = {"thesis": thesis_scores(seg, truth),
                  "thinned boundaries": segmentation_scores(g, thinned_segmentation(seg)),
                  "CREMI": cremi_scores(flood_boundaries(seg, p), truth)}
        for name, result in scores.items():
            rows[name].append(result.as_dict())
    return pd.DataFrame({name: pd.DataFrame(r)[list(SCORE_COLUMNS)].mean()
                         for name, r in rows.items()}).T


#: the thesis tables' columns: (labelling, protocol) -> {score: column}
THESIS_TABLE_COLUMNS = {
    ("before", "thesis"): {"voi": "voi_before", "voi_split": "voi_split_before",
                           "voi_merge": "voi_merge_before"},
    ("after", "thesis"): {"voi": "voi", "voi_split": "voi_split", "voi_merge": "voi_merge",
                          "arand": "arand"},
    ("after", "cremi"): {"voi_split": "cremi_voi_split", "voi_merge": "cremi_voi_merge",
                         "arand": "cremi_arand", "cremi_score": "cremi_score"},
}


def _table_columns(scores: pd.DataFrame, keys: list[str], protocol: str,
                   names: dict[str, str]) -> pd.DataFrame:
    part = scores[scores["protocol"] == protocol]
    return part[keys + list(names)].rename(columns=names).reset_index(drop=True)


def threshold_grid(prob: np.ndarray, gt_ids: np.ndarray, sig_ths: Sequence[float],
                   edge_deltas: Sequence[float], *, pixel_nm: float,
                   boundary_thickness: int = 1, workers: int | None = 1) -> pd.DataFrame:
    """The thesis tables: scores for every ``sig_th`` x ``edge_th = sig_th + delta`` on
    every labelled slice, through :func:`score_grid` (the thesis method on this grid, thesis
    and CREMI protocols; the labelling before watershed, thesis protocol).

    ``edge_th`` values above 1 are clipped to 1 (every candidate is then accepted), and the
    row says so in ``edge_th`` (rounded to 4 decimals, as the method's own grid).

    Args:
        prob: ``(Z, Y, X)`` cell probabilities.
        gt_ids: ``(Z, Y, X)`` neuron ids.
        sig_ths: thresholds for the rows (thesis 0.73 ... 0.90).
        edge_deltas: ``edge_th - sig_th`` for the columns (thesis 0 ... 0.1).
        workers: processes (None = every core); the table does not depend on their number.

    Returns:
        Long table: ``slice``, ``sig_th``, ``edge_delta``, ``edge_th``, then the columns of
        :data:`THESIS_TABLE_COLUMNS` (thesis protocol: ``voi_before``, ..., ``voi``,
        ``voi_split``, ``voi_merge``, ``arand``; CREMI protocol: ``cremi_voi_split``, ...,
        ``cremi_score``).
    """
    check_ndim("prob", prob, (3,), "(Z, Y, X)")
    check_same_shape("prob", prob, "gt_ids", gt_ids)
    check_probabilities("prob", prob)
    truths = ground_truths(gt_ids, pixel_nm=pixel_nm, boundary_thickness=boundary_thickness,
                           workers=workers)
    common = {"pixel_nm": pixel_nm, "truths": truths, "workers": workers}
    grids = {"before": replace(BEFORE_WATERSHED, grid={"sig_th": tuple(sig_ths)}),
             "after": replace(get_method("thesis"), grid={"sig_th": tuple(sig_ths),
                                                          "edge_delta": tuple(edge_deltas)})}
    protocols = {"before": ("thesis",), "after": ("thesis", "cremi")}
    scores = {name: score_grid(prob, gt_ids, method, protocols=protocols[name], **common)
              for name, method in grids.items()}
    keys = ["slice", "sig_th", "edge_delta", "edge_th"]
    table = _table_columns(scores["after"], keys, "thesis", THESIS_TABLE_COLUMNS[
        ("after", "thesis")])
    table[list(THESIS_TABLE_COLUMNS[("after", "cremi")].values())] = _table_columns(
        scores["after"], keys, "cremi", THESIS_TABLE_COLUMNS[("after", "cremi")]
    ).drop(columns=keys)
    before = _table_columns(scores["before"], ["slice", "sig_th"], "thesis",
                            THESIS_TABLE_COLUMNS[("before", "thesis")])
    table = table.merge(before, on=["slice", "sig_th"], how="left")
    ordered = [*keys, *THESIS_TABLE_COLUMNS[("before", "thesis")].values(),
               *THESIS_TABLE_COLUMNS[("after", "thesis")].values(),
               *THESIS_TABLE_COLUMNS[("after", "cremi")].values()]
    return table[ordered]


def evaluate_slices(prob: np.ndarray, gt_ids: np.ndarray, sig_th: float, edge_th: float, *,
                    pixel_nm: float, boundary_thickness: int = 1) -> dict[str, float]:
    """Mean scores over the slices of ``(Z, Y, X)`` probabilities at one threshold pair.

    Returns:
        ``voi_before``, ``voi_split_before``, ``voi_merge_before`` (thesis protocol, threshold
        only) and the other :func:`threshold_grid` columns, after watershed.
    """
    grid = threshold_grid(prob, gt_ids, [sig_th], [edge_th - sig_th], pixel_nm=pixel_nm,
                          boundary_thickness=boundary_thickness)
    return grid.drop(columns=["slice", "sig_th", "edge_delta", "edge_th"]).mean().to_dict()
