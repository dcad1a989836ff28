"""Segmenting whole volumes: per 2D slice in parallel processes, or in 3D."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

import numpy as np

from emseg_lib.data.labels import stack_slices
from emseg_lib.errors import EmsegInputError, check_ndim
from emseg_lib.infra.parallel import ProcessPool, SerialPool, resolve_workers, worker_pool
from emseg_lib.postprocess.methods import get_method


def segment_slice(prob: np.ndarray, method: str, thresholds: Mapping[str, float],
                  keep_boundaries: bool = False) -> np.ndarray:
    """One ``(Y, X)`` slice with the method called ``method`` (picklable for workers)."""
    return get_method(method).segment(prob, thresholds, keep_boundaries=keep_boundaries)


def _segment_pair(pair: tuple[np.ndarray, Mapping[str, float]], method: str,
                  keep_boundaries: bool) -> np.ndarray:
    """:func:`segment_slice` of ``(slice, its thresholds)`` (picklable for workers)."""
    return segment_slice(pair[0], method, pair[1], keep_boundaries)


def segment_volume(prob: np.ndarray, method: str,
                   thresholds: Mapping[str, float] | Sequence[Mapping[str, float]], *,
                   dims: int = 2, resolution: Sequence[float] | None = None,
                   keep_boundaries: bool = False, start: int = 0, workers: int | None = 1,
                   pool: SerialPool | ProcessPool | None = None) -> np.ndarray:
    """Segment a ``(Z, Y, X)`` cell-probability volume.

    Args:
        prob: ``(Z, Y, X)`` float in [0, 1].
        method, thresholds: a :data:`~emseg_lib.postprocess.methods.METHODS` name and its
            thresholds (missing derived ones are derived from the map; in 2D one set
            from all of its slices together); in 2D also one mapping per slice (each
            completed from its own slice).
        dims: 2 = every slice on its own (2D networks, anisotropic stacks), ids unique across
            slices; 3 = the volume at once (3D networks), anisotropy from ``resolution``.
        resolution: voxel size ``(z, y, x)`` in nm: the anisotropy in 3D; in both, the
            pixel size of derived thresholds (``smooth_px``; CREMI's 4 nm when None).
        keep_boundaries: keep label 0 on the thesis method's boundaries.
        start: every id is greater than this (chunked volumes continue from the last id).
        workers: processes for the slices (None = every core); ignored when ``pool`` given.
        pool: a running :func:`~emseg_lib.infra.parallel.worker_pool` to reuse across calls.

    Returns:
        ``int64`` ``(Z, Y, X)`` ids; no 0 unless ``keep_boundaries``.
    """
    check_ndim("prob", prob, (3,), "(Z, Y, X)")
    if dims == 3:
        if not isinstance(thresholds, Mapping):
            raise EmsegInputError("a volume segmented in 3D takes one set of thresholds")
        labels = get_method(method).segment(prob, thresholds, keep_boundaries=keep_boundaries,
                                            sampling=resolution)
        return np.where(labels > 0, labels + start, 0)
    if dims != 2:
        raise EmsegInputError(f"dims must be 2 (per slice) or 3 (volume), got {dims}")
    task = partial(_segment_pair, method=method, keep_boundaries=keep_boundaries)
    if isinstance(thresholds, Mapping):  # derived ones: one set from all slices
        shared = get_method(method).derive(prob, thresholds, resolution, per_slice=True)
        pairs = [(p, shared) for p in prob]
    else:
        per_slice = list(thresholds)
        if len(per_slice) != len(prob):
            raise EmsegInputError(f"{len(per_slice)} sets of thresholds for {len(prob)} "
                                  "slices")
        plane = None if resolution is None else tuple(resolution[1:])
        pairs = [(p, get_method(method).derive(p, t, plane))
                 for p, t in zip(prob, per_slice, strict=True)]
    if pool is not None:
        return stack_slices(pool.map(task, pairs), start)
    with worker_pool(min(resolve_workers(workers), len(prob))) as own:
        return stack_slices(own.map(task, pairs), start)
