"""Segmentation quality (thesis 3.2.7), following the CREMI evaluation conventions.

* :func:`pixel_accuracy` — fraction of pixels whose thresholded prediction equals the target;
* :func:`voi` — variation of information split (over-segmentation, ``H(seg | gt)``) and
  merge (under-segmentation, ``H(gt | seg)``) in bits, as
  :func:`skimage.metrics.variation_of_information`;
* :func:`adapted_rand` — adapted Rand error, as :func:`skimage.metrics.adapted_rand_error`;
* :func:`cremi_boundary_mask` — CREMI's ignore band around ground-truth boundaries;
* :func:`segmentation_scores` — all of the above in one record, with the CREMI score;
* :func:`segment_count` — how many segments a label image holds (distinct non-zero ids).

Ground-truth label 0 is ignored by default (CREMI; ``ignore_gt_background=False`` scores it as
one more segment). Predicted label 0 (our boundary pixels) is, by default, scored as one more
segment; ``ignore_seg_background=True`` drops those pixels from scoring.
:mod:`emseg_lib.scoring.evaluation` combines these into the thesis and CREMI protocols. VOI and
adapted Rand error come from one contingency table of the scored pixels (:func:`contingency`, a
``bincount``), equal to scikit-image's to rounding (1e-12).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

from emseg_lib.data.targets import instance_boundary
from emseg_lib.errors import (
    EmsegInputError,
    check_ndim,
    check_probabilities,
    check_same_shape,
    check_unit_interval,
)


def segment_count(labels: np.ndarray) -> int:
    """Number of distinct non-zero ids in ``labels`` (any shape, ids >= 0): the segments,
    whatever the largest id (ids offset per slice or per block leave gaps)."""
    if labels.size == 0:
        return 0
    largest = int(labels.max())
    if largest <= 4 * labels.size:  # small ids: a presence table, no sort
        present = np.zeros(largest + 1, dtype=bool)
        present[labels.ravel()] = True
        return int(np.count_nonzero(present[1:]))
    return int(np.count_nonzero(np.unique(labels)))


def pixel_accuracy(prob: np.ndarray, target: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction of pixels where ``prob > threshold`` equals the binary ``target``.

    Args:
        prob: predicted cell probability, any shape.
        target: 0/1 target of the same shape.
        threshold: decision threshold in [0, 1].
    """
    check_same_shape("prob", prob, "target", target)
    check_probabilities("prob", prob)
    check_unit_interval("threshold", threshold)
    return float(np.mean((prob > threshold) == (target > 0.5)))


#: most (gt, seg) id pairs counted by a dense ``bincount``; beyond, by sorting
_DENSE_PAIRS = 1 << 23


@dataclass(frozen=True)
class Contingency:
    """Pixel counts of a (ground truth, segmentation) pair.

    Attributes:
        joint: ``(k,)`` pixels of every (gt id, seg id) pair that occurs.
        gt_sizes: ``(m,)`` pixels of every gt id (zeros allowed).
        seg_sizes: ``(n,)`` pixels of every seg id (zeros allowed).
    """

    joint: np.ndarray
    gt_sizes: np.ndarray
    seg_sizes: np.ndarray

    @property
    def pixels(self) -> int:
        """Scored pixels."""
        return int(self.joint.sum())

    def voi(self) -> tuple[float, float]:
        """``(H(seg | gt), H(gt | seg))`` in bits (skimage's ``variation_of_information``).

        Each is a difference of sums that are equal for a perfect side (e.g. a relabelled
        ground truth), where rounding can leave -3e-16; entropies are never negative, so such
        values are 0 (:func:`_non_negative`).
        """
        n, joint = self.pixels, _sum_xlog2x(self.joint)
        return (_non_negative((_sum_xlog2x(self.gt_sizes) - joint) / n),
                _non_negative((_sum_xlog2x(self.seg_sizes) - joint) / n))

    def adapted_rand(self) -> float:
        """Adapted Rand error, pairs counted as ``n(n - 1)`` (skimage's
        ``adapted_rand_error`` with ``alpha = 0.5``); never negative."""
        n = self.pixels
        together = _sum_squares(self.joint) - n
        in_gt, in_seg = _sum_squares(self.gt_sizes) - n, _sum_squares(self.seg_sizes) - n
        return _non_negative(1.0 - together / (0.5 * in_gt + 0.5 * in_seg))


def _non_negative(value: float) -> float:
    """``value`` as a float, rounding noise below 0 (a perfect score's -3e-16) made 0."""
    return max(0.0, float(value))


def _sum_xlog2x(counts: np.ndarray) -> float:
    """``sum(c * log2(c))`` over the positive counts, in float64."""
    counts = counts[counts > 0].astype(np.float64)
    return float(counts @ np.log2(counts))


def _sum_squares(counts: np.ndarray) -> float:
    counts = counts.astype(np.float64)
    return float(counts @ counts)


def _dense_ids(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """``ids`` as ``int64`` indices ``0..count-1``: as they are when small and non-negative,
    else their rank among the distinct ids."""
    ids = ids.astype(np.int64, copy=False)
    if ids.size and ids.min() >= 0 and ids.max() < _DENSE_PAIRS:
        return ids, int(ids.max()) + 1
    distinct, inverse = np.unique(ids, return_inverse=True)
    return inverse.ravel(), len(distinct)


def contingency(gt: np.ndarray, seg: np.ndarray) -> Contingency:
    """Pixel counts of every (gt id, seg id) pair of two id arrays of the same shape."""
    gt_ids, n_gt = _dense_ids(np.ravel(gt))
    seg_ids, n_seg = _dense_ids(np.ravel(seg))
    if n_gt * n_seg <= _DENSE_PAIRS:
        joint = np.bincount(gt_ids * n_seg + seg_ids, minlength=n_gt * n_seg)
    else:
        _, joint = np.unique(gt_ids * n_seg + seg_ids, return_counts=True)
    return Contingency(joint[joint > 0], np.bincount(gt_ids), np.bincount(seg_ids))


def _scored_pair(gt: np.ndarray, seg: np.ndarray, ignore_gt_background: bool,
                 ignore_seg_background: bool) -> Contingency:
    """The contingency table of the pixels to score."""
    check_same_shape("gt", gt, "seg", seg)
    if ignore_seg_background:
        keep = seg != 0
        gt, seg = gt[keep], seg[keep]
    if ignore_gt_background:
        keep = gt != 0
        if not np.any(keep):
            raise EmsegInputError("gt has no labelled (non-zero) pixel to score")
        gt, seg = gt[keep], seg[keep]
    return contingency(gt, seg)


def voi(gt: np.ndarray, seg: np.ndarray, *, ignore_gt_background: bool = True,
        ignore_seg_background: bool = False) -> tuple[float, float]:
    """Variation of information ``(split, merge)`` in bits.

    ``split = H(seg | gt)`` measures over-segmentation, ``merge = H(gt | seg)``
    under-segmentation; ``split + merge`` is the VOI of the thesis tables. Identical to the
    CREMI evaluation's ``voi`` and scikit-image's ``variation_of_information``.

    Args:
        gt: ground-truth ids, any shape (``(Y, X)`` or ``(Z, Y, X)``).
        seg: predicted ids of the same shape.
        ignore_gt_background: drop pixels where ``gt == 0`` (CREMI); when False, label 0 is
            scored as one more segment.
        ignore_seg_background: also drop pixels where ``seg == 0`` (predicted boundaries).
    """
    return _scored_pair(gt, seg, ignore_gt_background, ignore_seg_background).voi()


def adapted_rand(gt: np.ndarray, seg: np.ndarray, *, ignore_gt_background: bool = True,
                 ignore_seg_background: bool = False) -> float:
    """Adapted Rand error in [0, 1] (0 = perfect); options as :func:`voi`.

    Equal to :func:`skimage.metrics.adapted_rand_error`, which counts pixel pairs as
    ``n(n - 1)``; CREMI counts ``n^2`` (difference ~1e-4 on CREMI-size volumes).
    """
    return _scored_pair(gt, seg, ignore_gt_background, ignore_seg_background).adapted_rand()


def cremi_boundary_mask(gt: np.ndarray, border_nm: float, pixel_nm: float) -> np.ndarray:
    """Pixels within ``border_nm`` of a ground-truth label change, per 2D slice (CREMI).

    CREMI sets these pixels to 0 in the ground truth before scoring; with its 25 nm at 4 nm/px
    every pixel at distance <= 6.25 px of a boundary is masked.

    Args:
        gt: ``(Y, X)`` or ``(Z, Y, X)`` ground-truth ids.
        border_nm: half-width of the ignored band in nm (>= 0).
        pixel_nm: in-plane pixel size in nm (the data's resolution along y and x).

    Returns:
        ``bool`` mask of ``gt``'s shape, True where scoring ignores the pixel.
    """
    check_ndim("gt", gt, (2, 3), "(Y, X) or (Z, Y, X)")
    if border_nm < 0 or pixel_nm <= 0:
        raise EmsegInputError(
            f"border_nm must be >= 0 and pixel_nm > 0, got {border_nm} and {pixel_nm}"
        )
    stack = gt[None] if gt.ndim == 2 else gt
    edges = instance_boundary(stack, thickness=0, background=False)
    distance = np.stack([ndi.distance_transform_edt(~e) for e in edges]) * pixel_nm
    return (distance <= border_nm).reshape(gt.shape)


def count_merges(gt: np.ndarray, seg: np.ndarray, min_overlap: int = 20) -> int:
    """Number of false merges: for every predicted segment, the ground-truth cells it covers
    (each by at least ``min_overlap`` pixels) minus one, summed. Label 0 on either side is
    ignored. An open boundary between two cells counts as one merge.
    """
    check_same_shape("gt", gt, "seg", seg)
    keep = (gt != 0) & (seg != 0)
    pairs, counts = np.unique(np.stack([seg[keep], gt[keep]]), axis=1, return_counts=True)
    segments = pairs[0][counts >= min_overlap]
    _, covered = np.unique(segments, return_counts=True)
    return int(np.sum(covered - 1))


@dataclass(frozen=True)
class SegmentationScores:
    """Scores of one segmentation against ground truth (VOI in bits)."""

    voi_split: float
    voi_merge: float
    arand: float

    @property
    def voi(self) -> float:
        """Total variation of information, split + merge."""
        return self.voi_split + self.voi_merge

    @property
    def cremi_score(self) -> float:
        """CREMI leaderboard score: geometric mean ``sqrt(voi * arand)``."""
        return math.sqrt(self.voi * self.arand)

    def as_dict(self) -> dict[str, float]:
        """All scores, including the derived ``voi`` and ``cremi_score``."""
        return {**asdict(self), "voi": self.voi, "cremi_score": self.cremi_score}


#: the names of every score of :class:`SegmentationScores` (``as_dict``), in the order every
#: table shows them
SCORE_COLUMNS = ("voi_split", "voi_merge", "voi", "arand", "cremi_score")


def segmentation_scores(
    gt: np.ndarray,
    seg: np.ndarray,
    *,
    border_nm: float = 0.0,
    pixel_nm: float | None = None,
    ignore_gt_background: bool = True,
    ignore_seg_background: bool = False,
) -> SegmentationScores:
    """VOI split/merge and adapted Rand error of ``seg`` against ``gt``.

    Args:
        gt: ground-truth ids, ``(Y, X)`` or ``(Z, Y, X)``; label 0 is ignored.
        seg: predicted ids of the same shape.
        border_nm: when > 0, ignore the CREMI band of this half-width around gt boundaries.
        pixel_nm: in-plane pixel size in nm, needed when ``border_nm > 0``.
        ignore_gt_background: ignore pixels the ground truth labels 0 (CREMI).
        ignore_seg_background: also ignore pixels the prediction labels 0.
    """
    check_same_shape("gt", gt, "seg", seg)
    if border_nm > 0:
        if pixel_nm is None:
            raise EmsegInputError("border_nm > 0 needs pixel_nm, the in-plane pixel size in nm")
        gt = np.where(cremi_boundary_mask(gt, border_nm, pixel_nm), 0, gt)
    table = _scored_pair(gt, seg, ignore_gt_background, ignore_seg_background)
    split, merge = table.voi()
    return SegmentationScores(split, merge, table.adapted_rand())
