"""Post-processing methods by name, their thresholds, defaults and tuning grids.

Two methods turn a cell-probability map into a segmentation:

* ``thesis`` — the thesis's watershed post-processing (:mod:`.thesis`; thresholds ``sig_th``
  and ``edge_th``), its label-0 boundaries then flooded from the segments (:mod:`.dense`);
* ``seeded`` — a seeded watershed on the smoothed probability (:mod:`.seeded`; thresholds
  ``seed_th`` and ``smooth_px``), dense by construction. Unless learned or given, its
  ``seed_th`` is derived from the map being segmented (:mod:`.derive`; from all slices of the
  stack or chunk in 2D, from the volume in 3D): :attr:`PostprocessMethod.derived`.

Every method's :meth:`PostprocessMethod.grid_segmentations` walks a row of its tuning grid and
shares the work that does not depend on every threshold (the thesis method's watershed candidates
depend only on ``sig_th``, and an ``edge_th`` accepting the same candidates as the previous one
gives the same segmentation; the seeded method's smoothing depends only on ``smooth_px``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from emseg_lib.errors import EmsegInputError, check_ndim, check_probabilities
from emseg_lib.postprocess.dense import flood_boundaries
from emseg_lib.postprocess.derive import (
    DEFAULT_MIN_SEED_NM2,
    DEFAULT_SMOOTH_NM,
    DERIVED_SEED_TH,
    default_min_seed_px,
    default_smooth_px,
    grid_steps,
    most_seeds_in_slices,
    most_seeds_in_volume,
)
from emseg_lib.postprocess.seeded import (
    seeded_watershed,
    seeds_from_interior,
    smooth,
    watershed_from_seeds,
)
from emseg_lib.postprocess.thesis import (
    THESIS_EDGE_TH,
    THESIS_SIG_TH,
    candidate_segments,
    close_boundaries,
    label_cells,
    watershed_postprocess,
)

Thresholds = dict[str, float]
#: allowed range of every threshold (probabilities; smoothing sigma and smallest seed in
#: pixels)
LIMITS = {"sig_th": (0.0, 1.0), "edge_th": (0.0, 1.0), "seed_th": (0.0, 1.0),
          "smooth_px": (0.0, 100.0), "min_seed_px": (1.0, 1e6)}
#: the seeded method's smallest seed, in pixels whatever their size, when thresholds were
#: learned before it became an area (checkpoints that store no ``min_seed_px``)
LEGACY_MIN_SEED_PX = 16.0


@dataclass(frozen=True)
class PostprocessMethod:
    """A post-processing method: its thresholds, their defaults and tuning grid.

    A method is a subclass that says how it segments (:meth:`labels`) and how it walks a row of
    its grid (:meth:`grid_row`); this base class checks inputs and thresholds and makes the
    result dense.

    Attributes:
        name: the name ``--method`` takes.
        summary: one line for help texts.
        defaults: thresholds used when nothing was learned (e.g. ``emseg postprocess``) and
            the slices are segmented one by one (2D).
        grid: values tried by :func:`~emseg_lib.scoring.tuning.tune_thresholds`, one tuple per grid
            axis; the first axis is the :attr:`outer` one.
        has_boundaries: its :meth:`labels` leave 0 on boundaries (``keep_boundaries`` keeps
            them; otherwise they are flooded from the segments).
        defaults_3d: the defaults for volumes segmented in 3D, where they differ.
        derived: thresholds without a fixed default, derived from the map being segmented
            (:meth:`derive`) when neither learned nor given: ``{name: how, in words}``.
    """

    name: str
    summary: str
    defaults: Mapping[str, float]
    grid: Mapping[str, tuple[float, ...]]
    has_boundaries: bool = False
    defaults_3d: Mapping[str, float] | None = None
    derived: Mapping[str, str] = field(default_factory=dict)

    def default_thresholds(self, dims: int = 2) -> Thresholds:
        """:attr:`defaults`, or :attr:`defaults_3d` for ``dims == 3`` where the method has
        them."""
        return dict(self.defaults_3d if dims == 3 and self.defaults_3d else self.defaults)

    @property
    def parameters(self) -> tuple[str, ...]:
        """Names of the thresholds: the :attr:`derived` ones, then those of :attr:`defaults`."""
        return tuple(dict.fromkeys([*self.derived, *self.defaults]))

    def derive(self, prob: np.ndarray, thresholds: Mapping[str, float],
               sampling: Sequence[float] | None = None, *, per_slice: bool = False
               ) -> Thresholds:
        """``thresholds`` with every missing :attr:`derived` one derived from ``prob``:
        ``(Y, X)``, or ``(Z, Y, X)`` segmented in 3D, or, with ``per_slice``, a ``(Z, Y, X)``
        stack segmented slice by slice (one set for all of its slices)."""
        return dict(thresholds)

    @property
    def outer(self) -> str:
        """The grid axis whose value fixes the work shared by the other axis."""
        return next(iter(self.grid))

    def thresholds(self, given: Mapping[str, float | None] | None = None,
                   base: Mapping[str, float] | None = None, dims: int = 2) -> Thresholds:
        """``base`` (default: :meth:`default_thresholds` for ``dims``) with every non-None
        entry of ``given`` applied.

        Raises:
            EmsegInputError: an entry of ``given`` that is not one of this method's thresholds,
                or a value outside its range (:data:`LIMITS`).
        """
        values = dict(self.default_thresholds(dims) if base is None else base)
        for key, value in (given or {}).items():
            if value is None:
                continue
            if key not in self.parameters:
                raise EmsegInputError(
                    f"--{key.replace('_', '-')} is a threshold of another method; the "
                    f"{self.name} method takes {', '.join(self.parameters)}")
            values[key] = float(value)
        for key, value in values.items():
            lo, hi = LIMITS[key]
            if not lo <= value <= hi:
                raise EmsegInputError(f"{key} must lie in [{lo:g}, {hi:g}], got {value:g}")
        return {key: values[key] for key in (*self.parameters, *values) if key in values}

    def check_together(self, thresholds: Mapping[str, float]) -> None:
        """Raise when thresholds, each in its range, cannot work together (none here)."""

    def segment(self, prob: np.ndarray, thresholds: Mapping[str, float], *,
                keep_boundaries: bool = False, sampling: Sequence[float] | None = None
                ) -> np.ndarray:
        """Segment ``prob`` ``(Y, X)`` or ``(Z, Y, X)``: ``int64`` ids, dense unless
        ``keep_boundaries`` (methods with boundaries only: 0 on them, as the thesis's tables).
        """
        check_ndim("prob", prob, (2, 3), "(Y, X) or (Z, Y, X)")
        check_probabilities("prob", prob)
        if keep_boundaries and not self.has_boundaries:
            raise EmsegInputError(f"--keep-boundaries keeps the thesis method's label-0 "
                                  f"boundaries; the {self.name} method has none (use --method "
                                  "thesis)")
        thresholds = self.derive(prob, thresholds, sampling)
        labels = self.labels(prob, thresholds, sampling).astype(np.int64)
        if self.has_boundaries and not keep_boundaries:
            return flood_boundaries(labels, prob)
        return labels

    @property
    def outer_values(self) -> tuple[float, ...]:
        """The values of the grid's :attr:`outer` axis: one unit of work each."""
        return tuple(self.grid[self.outer])

    def grid_labels(self, prob: np.ndarray, outer_value: float,
                    sampling: Sequence[float] | None = None
                    ) -> Iterator[tuple[Thresholds, np.ndarray]]:
        """``(thresholds, labelling)`` for every grid point with ``grid[outer] ==
        outer_value`` (0 on boundaries when :attr:`has_boundaries`); the work that depends on
        it alone is done once, and a grid point with the labelling of the one before it yields
        the same array object (scorers reuse its scores)."""
        check_probabilities("prob", prob)
        inner = list(self.grid.values())[1:]
        return self.grid_row(prob, outer_value, inner[0] if inner else (), sampling)

    def grid_segmentations(self, prob: np.ndarray, outer_value: float,
                           sampling: Sequence[float] | None = None
                           ) -> Iterator[tuple[Thresholds, np.ndarray]]:
        """:meth:`grid_labels` made dense (boundaries flooded from the segments)."""
        last, dense = None, None
        for thresholds, labels in self.grid_labels(prob, outer_value, sampling):
            if labels is not last:
                last = labels
                dense = flood_boundaries(labels, prob) if self.has_boundaries else labels
            yield thresholds, dense

    def labels(self, prob: np.ndarray, thresholds: Mapping[str, float],
               sampling: Sequence[float] | None) -> np.ndarray:
        """The method's labelling of ``prob`` (0 on boundaries when :attr:`has_boundaries`)."""
        raise NotImplementedError

    def grid_row(self, prob: np.ndarray, outer_value: float, inner: Sequence[float],
                 sampling: Sequence[float] | None) -> Iterator[tuple[Thresholds, np.ndarray]]:
        """Labellings (:meth:`labels`) at ``outer_value`` and every ``inner`` grid value."""
        raise NotImplementedError


@dataclass(frozen=True)
class ThesisMethod(PostprocessMethod):
    """The thesis's watershed (:mod:`.thesis`), boundaries flooded afterwards."""

    has_boundaries: bool = True

    def check_together(self, thresholds: Mapping[str, float]) -> None:
        """Raise when ``edge_th`` is below ``sig_th``: every candidate segment lies inside
        the cells (``prob > sig_th``), so none has a mean below ``edge_th`` and no opening
        could ever be closed (the tuning grid starts at ``edge_th = sig_th``)."""
        sig_th, edge_th = thresholds["sig_th"], thresholds["edge_th"]
        if edge_th < sig_th:
            raise EmsegInputError(
                f"--edge-th {edge_th:g} is below --sig-th {sig_th:g}: the thesis method closes "
                "openings with boundary candidates whose mean probability is below edge_th, "
                "and every candidate lies above sig_th, so none could be closed; give "
                "--edge-th >= --sig-th")

    def labels(self, prob: np.ndarray, thresholds: Mapping[str, float],
               sampling: Sequence[float] | None) -> np.ndarray:
        return watershed_postprocess(prob, thresholds["sig_th"], thresholds["edge_th"],
                                     sampling=sampling)

    def grid_row(self, prob: np.ndarray, outer_value: float, inner: Sequence[float],
                 sampling: Sequence[float] | None) -> Iterator[tuple[Thresholds, np.ndarray]]:
        segments, means = candidate_segments(prob, outer_value, sampling=sampling)
        accepted, kept = None, None
        for delta in inner:
            edge_th = round(min(1.0, outer_value + delta), 4)
            if accepted is None or not np.array_equal(means < edge_th, accepted):
                accepted = means < edge_th  # else: same segments, same labelling
                kept = close_boundaries(prob, outer_value, edge_th, segments, means)
            yield {"sig_th": outer_value, "edge_delta": delta, "edge_th": edge_th}, kept


@dataclass(frozen=True)
class ThresholdMethod(PostprocessMethod):
    """The thesis's labelling *before* watershed: connected cells above ``sig_th``
    (:func:`~.thesis.label_cells`), 0 elsewhere. Its tables' "VOI before watershed"; not a
    method users pick (not in :data:`METHODS`)."""

    has_boundaries: bool = True

    def labels(self, prob: np.ndarray, thresholds: Mapping[str, float],
               sampling: Sequence[float] | None) -> np.ndarray:
        return label_cells(prob, thresholds["sig_th"])

    def grid_row(self, prob: np.ndarray, outer_value: float, inner: Sequence[float],
                 sampling: Sequence[float] | None) -> Iterator[tuple[Thresholds, np.ndarray]]:
        yield {"sig_th": outer_value}, label_cells(prob, outer_value)


@dataclass(frozen=True)
class SeededMethod(PostprocessMethod):
    """Seeded watershed on the smoothed probability (:mod:`.seeded`), dense by construction;
    when not given, ``smooth_px`` and ``min_seed_px`` follow from the pixel size (a sigma in
    nm, an area in nm²) and ``seed_th`` is derived from the smoothed map (:mod:`.derive`)."""

    def derive(self, prob: np.ndarray, thresholds: Mapping[str, float],
               sampling: Sequence[float] | None = None, *, per_slice: bool = False
               ) -> Thresholds:
        """``thresholds`` completed: ``smooth_px`` and ``min_seed_px`` from ``sampling``
        (voxel size in nm of ``prob``'s axes; :func:`~.derive.default_smooth_px`,
        :func:`~.derive.default_min_seed_px`), then ``seed_th`` from the map smoothed by
        ``smooth_px``: the cut with the most 3D seeds for a ``(Z, Y, X)`` volume, the most 2D
        seeds over the slices for a ``(Y, X)`` slice or, with ``per_slice``, a ``(Z, Y, X)``
        stack segmented slice by slice (:mod:`.derive`)."""
        in_3d = prob.ndim == 3 and not per_slice
        if not in_3d and sampling is not None:
            sampling = tuple(sampling)[-2:]  # the slices' pixels: z plays no part
        smooth_px = thresholds.get("smooth_px", default_smooth_px(sampling))
        min_seed_px = thresholds.get("min_seed_px", default_min_seed_px(sampling))
        if "seed_th" in thresholds:
            seed_th = thresholds["seed_th"]
        elif in_3d:
            seed_th = most_seeds_in_volume(smooth(prob, smooth_px, sampling),
                                           round(min_seed_px))
        else:
            slices = prob if prob.ndim == 3 else prob[None]
            seed_th = most_seeds_in_slices(
                np.stack([smooth(p, smooth_px, sampling) for p in slices]), round(min_seed_px))
        return {**thresholds, "seed_th": seed_th, "smooth_px": smooth_px,
                "min_seed_px": float(min_seed_px)}

    def labels(self, prob: np.ndarray, thresholds: Mapping[str, float],
               sampling: Sequence[float] | None) -> np.ndarray:
        return seeded_watershed(prob, thresholds["seed_th"], thresholds["smooth_px"],
                                min_seed_px=round(thresholds["min_seed_px"]),
                                sampling=sampling)

    def grid_row(self, prob: np.ndarray, outer_value: float, inner: Sequence[float],
                 sampling: Sequence[float] | None) -> Iterator[tuple[Thresholds, np.ndarray]]:
        smoothed = smooth(prob, outer_value, sampling)
        min_seed_px = default_min_seed_px(sampling)
        for seed_th in inner:
            seeds = seeds_from_interior(smoothed, seed_th, min_seed_px)
            yield ({"seed_th": seed_th, "smooth_px": outer_value,
                    "min_seed_px": float(min_seed_px)},
                   watershed_from_seeds(smoothed, seeds))


METHODS: dict[str, PostprocessMethod] = {
    "thesis": ThesisMethod(
        "thesis", "the thesis's watershed (sig_th, edge_th), boundaries flooded afterwards",
        defaults={"sig_th": THESIS_SIG_TH, "edge_th": THESIS_EDGE_TH},
        grid={"sig_th": grid_steps(0.3, 0.95, 0.05), "edge_delta": (0.0, 0.02, 0.05, 0.1)}),
    "seeded": SeededMethod(
        "seeded", "seeded watershed on the smoothed probability (seed_th, smooth_px)",
        defaults={},
        grid={"smooth_px": (0.0, 1.0, 2.0),
              "seed_th": (*grid_steps(0.2, 0.9, 0.05), 0.93, 0.95, 0.97, 0.98, 0.99)},
        derived={"seed_th": DERIVED_SEED_TH,
                 "smooth_px": f"a sigma of {DEFAULT_SMOOTH_NM:g} nm over the in-plane pixel "
                              "size (the file's resolution or --resolution)",
                 "min_seed_px": f"seeds smaller than {DEFAULT_MIN_SEED_NM2:g} nm² dropped: "
                                "that area over the in-plane pixel area"}),
}
DEFAULT_METHOD = "seeded"
#: the thesis tables' labelling before watershed ("VOI before"; not a user's method)
BEFORE_WATERSHED = ThresholdMethod(
    "before watershed", "connected cells above sig_th, before the thesis's watershed",
    defaults={"sig_th": THESIS_SIG_TH}, grid={"sig_th": grid_steps(0.3, 0.95, 0.05)})


def get_method(name: str) -> PostprocessMethod:
    """The method called ``name`` (``thesis`` or ``seeded``)."""
    if name not in METHODS:
        raise EmsegInputError(f"--method must be one of {', '.join(METHODS)}, got {name!r}")
    return METHODS[name]
