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

Everything is computed per 2D slice and averaged, for 2D and 3D models alike.
:func:`score_volume` is the one entry point for a finished segmentation (``emseg evaluate``
and the notebooks); :func:`threshold_grid` and :func:`evaluate_slices` score probability maps
through the thesis method.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from skimage.morphology import skeletonize
from skimage.segmentation import expand_labels

from emseg_lib.data.targets import cell_target, instance_boundary
from emseg_lib.errors import EmsegInputError, check_ndim, check_probabilities, check_same_shape
from emseg_lib.metrics import (
    SCORE_COLUMNS,
    SegmentationScores,
    cremi_boundary_mask,
    segmentation_scores,
)
from emseg_lib.parallel import parallel_map
from emseg_lib.postprocess import (
    candidate_segments,
    close_boundaries,
    flood_boundaries,
    label_cells,
    watershed_postprocess,
)

CREMI_BORDER_NM = 25.0


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
    if protocol not in PROTOCOLS:
        raise EmsegInputError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got "
                              f"{protocol!r}")
    check_ndim("seg", seg, (3,), "(Z, Y, X)")
    check_same_shape("seg", seg, "gt_ids", gt_ids)
    rows = []
    for z, (s, g) in enumerate(zip(seg, gt_ids, strict=True)):
        if not np.any(g):
            continue
        truth = GroundTruth.from_ids(g.astype(np.int64), pixel_nm=pixel_nm,
                                     boundary_thickness=boundary_thickness)
        rows.append({"slice": z, **PROTOCOLS[protocol](s.astype(np.int64), truth).as_dict()})
    if not rows:
        raise EmsegInputError("the ground truth has no labelled slice to score")
    return pd.DataFrame(rows)


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
    for p, g in zip(prob, gt_ids, strict=True):
        seg = watershed_postprocess(p, sig_th, edge_th)
        truth = GroundTruth.from_ids(g, pixel_nm=pixel_nm)
        scores = {"thesis": thesis_scores(seg, truth),
                  "thinned boundaries": segmentation_scores(g, thinned_segmentation(seg)),
                  "CREMI": cremi_scores(flood_boundaries(seg, p), truth)}
        for name, result in scores.items():
            rows[name].append(result.as_dict())
    return pd.DataFrame({name: pd.DataFrame(r)[list(SCORE_COLUMNS)].mean()
                         for name, r in rows.items()}).T


def score_segmentation(seg: np.ndarray, prob: np.ndarray, truth: GroundTruth
                       ) -> dict[str, float]:
    """Scores of a thesis-method ``(Y, X)`` labelling (0 on boundaries) under both protocols:
    as it is for the thesis protocol, with its boundaries flooded over ``prob`` for CREMI.

    Returns:
        ``voi``, ``voi_split``, ``voi_merge``, ``arand`` (thesis protocol) and
        ``cremi_voi_split``, ``cremi_voi_merge``, ``cremi_arand``, ``cremi_score``
        (CREMI protocol; score = sqrt(VOI * ARAND)).
    """
    check_same_shape("seg", seg, "gt_ids", truth.ids)
    thesis = thesis_scores(seg, truth)
    cremi = cremi_scores(flood_boundaries(seg, prob), truth)
    return {
        "voi": thesis.voi,
        "voi_split": thesis.voi_split,
        "voi_merge": thesis.voi_merge,
        "arand": thesis.arand,
        "cremi_voi_split": cremi.voi_split,
        "cremi_voi_merge": cremi.voi_merge,
        "cremi_arand": cremi.arand,
        "cremi_score": cremi.cremi_score,
    }


def _grid_row(job: tuple[int, np.ndarray, GroundTruth, float],
              edge_deltas: Sequence[float]) -> list[dict[str, float]]:
    """The rows of one slice at one ``sig_th``: ``job = (z, prob (Y, X), truth, sig_th)``.

    The watershed candidates are found once; an ``edge_th`` accepting the same segments as
    the previous one gives the same labelling, whose scores are reused.
    """
    z, p, truth, sig_th = job
    before = thesis_scores(label_cells(p, sig_th), truth)
    segments, means = candidate_segments(p, sig_th)
    rows, accepted, scores = [], None, {}
    for delta in edge_deltas:
        edge_th = min(1.0, sig_th + delta)
        now = means < edge_th
        if accepted is None or not np.array_equal(now, accepted):
            accepted = now
            scores = score_segmentation(close_boundaries(p, sig_th, edge_th, segments, means),
                                        p, truth)
        rows.append({"slice": z, "sig_th": sig_th, "edge_delta": delta, "edge_th": edge_th,
                     "voi_before": before.voi, "voi_split_before": before.voi_split,
                     "voi_merge_before": before.voi_merge, **scores})
    return rows


def _ground_truth(job: tuple[np.ndarray, float, int]) -> GroundTruth:
    gt_ids, pixel_nm, boundary_thickness = job
    return GroundTruth.from_ids(gt_ids, pixel_nm=pixel_nm, boundary_thickness=boundary_thickness)


def threshold_grid(prob: np.ndarray, gt_ids: np.ndarray, sig_ths: Sequence[float],
                   edge_deltas: Sequence[float], *, pixel_nm: float,
                   boundary_thickness: int = 1, workers: int | None = 1) -> pd.DataFrame:
    """Scores for every ``sig_th`` x ``edge_th = sig_th + delta`` on every slice.

    The ground truths are prepared once per slice and the watershed candidates once per
    ``sig_th`` row; the (slice, ``sig_th``) rows run in ``workers`` processes and come back
    in order, so the table does not depend on the number of workers.
    ``edge_th`` values above 1 are clipped to 1 (every candidate is then accepted), and the
    row says so in ``edge_th``.

    Args:
        prob: ``(Z, Y, X)`` cell probabilities.
        gt_ids: ``(Z, Y, X)`` neuron ids.
        sig_ths: thresholds for the rows (thesis 0.73 ... 0.90).
        edge_deltas: ``edge_th - sig_th`` for the columns (thesis 0 ... 0.1).
        workers: processes (None = every core).

    Returns:
        Long table: ``slice``, ``sig_th``, ``edge_delta``, ``edge_th``, ``voi_before``,
        ``voi_split_before``, ``voi_merge_before`` and the :func:`score_segmentation` keys.
    """
    check_ndim("prob", prob, (3,), "(Z, Y, X)")
    check_same_shape("prob", prob, "gt_ids", gt_ids)
    check_probabilities("prob", prob)
    truths = parallel_map(_ground_truth, [(g, pixel_nm, boundary_thickness) for g in gt_ids],
                          workers)
    jobs = [(z, p, truth, sig_th) for z, (p, truth) in enumerate(zip(prob, truths, strict=True))
            for sig_th in sig_ths]
    rows = parallel_map(partial(_grid_row, edge_deltas=list(edge_deltas)), jobs, workers)
    return pd.DataFrame([row for job_rows in rows for row in job_rows])


def evaluate_slices(prob: np.ndarray, gt_ids: np.ndarray, sig_th: float, edge_th: float, *,
                    pixel_nm: float, boundary_thickness: int = 1) -> dict[str, float]:
    """Mean scores over the slices of ``(Z, Y, X)`` probabilities at one threshold pair.

    Returns:
        ``voi_before``, ``voi_split_before``, ``voi_merge_before`` (thesis protocol, threshold
        only) and every :func:`score_segmentation` key after watershed.
    """
    grid = threshold_grid(prob, gt_ids, [sig_th], [edge_th - sig_th], pixel_nm=pixel_nm,
                          boundary_thickness=boundary_thickness)
    return grid.drop(columns=["slice", "sig_th", "edge_delta", "edge_th"]).mean().to_dict()
