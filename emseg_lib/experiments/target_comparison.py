"""Boundary against affinity networks (Lee et al. 2017) of one kind on one volume.

:func:`compare_targets` trains (or resumes) the same network kind twice with the same
schedule — once for the thesis's cell-boundary map, once for nearest-neighbour affinities —
learns each one's post-processing on the validation split, and scores the test split under
the CREMI protocol: the boundary network with the seeded and the thesis watershed, the
affinity network agglomerated with waterz and the mutex watershed, each at the thresholds
learned on validation (what ``emseg segment`` uses). The thesis's own tables are untouched:
they stay on the boundary pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from emseg_lib.data import EMVolume
from emseg_lib.data.targets import TARGETS
from emseg_lib.experiments.supervised import (
    SplitPrediction,
    predict_split,
    train_unet,
)
from emseg_lib.models import model_entry
from emseg_lib.postprocess import postprocess_dims, segment_volume
from emseg_lib.postprocess.agglomeration import (
    AFFINITY_METHODS,
    get_affinity_method,
    segment_affinities,
)
from emseg_lib.profiles import Profile
from emseg_lib.scoring.evaluation import score_volume
from emseg_lib.scoring.metrics import SCORE_COLUMNS
from emseg_lib.scoring.tuning import choose_agglomeration, choose_thresholds

#: the post-processing methods compared for each target
TARGET_METHODS = {"boundaries": ("seeded", "thesis"), "affinities": tuple(AFFINITY_METHODS)}


@dataclass(frozen=True)
class TargetComparison:
    """The test-split results of :func:`compare_targets`.

    Attributes:
        table: one row per (``target``, ``method``): the ``thresholds`` learned on
            validation, ``training_s`` (wall seconds of the network's epochs, training and
            validation) and the mean CREMI-protocol ``voi_split``, ``voi_merge``, ``voi``,
            ``arand``, ``cremi_score`` over the test slices.
        segmentations: ``"target · method"`` -> the test split's ``(Z, Y, X)`` ids.
        test: target -> the network's test-split prediction (``prob`` ``(Z, Y, X)`` for
            boundaries, ``(C, Z, Y, X)`` for affinities).
    """

    table: pd.DataFrame
    segmentations: dict[str, np.ndarray]
    test: dict[str, SplitPrediction]


def compare_targets(kind: str, volume: EMVolume, profile: Profile,
                    run_dirs: Mapping[str, str | Path], *, seed: int = 0,
                    device: str | None = None, workers: int | None = None) -> TargetComparison:
    """Train ``kind`` for each target of :data:`~emseg_lib.data.targets.TARGETS` into
    ``run_dirs[target]`` (resumed when there) and score both on the test split."""
    rows, segmentations, tests = [], {}, {}
    for target in TARGETS:
        trained = train_unet(kind, volume, profile, run_dirs[target], seed=seed, device=device,
                             workers=workers, progress=False, target=target)
        test = predict_split(trained.model, volume, "test", profile, device=device,
                             progress=False, cache_dir=run_dirs[target])
        tests[target] = test
        dims, _ = postprocess_dims(model_entry(trained.model).dims, volume.resolution)
        for method in TARGET_METHODS[target]:
            if target == "affinities":
                value, _ = choose_agglomeration(method, None, trained.postprocess)
                thresholds = {get_affinity_method(method).parameter: value}
                seg = segment_affinities(test.prob, method, thresholds)
            else:
                thresholds = choose_thresholds(method, {}, trained.postprocess, dims).thresholds
                seg = segment_volume(test.prob, method, thresholds, dims=dims,
                                     resolution=volume.resolution, workers=workers)
            scores = score_volume(seg, test.gt, "cremi", pixel_nm=test.pixel_nm)
            segmentations[f"{target} · {method}"] = seg
            rows.append({"target": target, "method": method,
                         "thresholds": ", ".join(f"{k} {v:g}" for k, v in thresholds.items()),
                         "training_s": float(trained.history["epoch_s"].sum()),
                         **scores[list(SCORE_COLUMNS)].mean().to_dict()})
    return TargetComparison(pd.DataFrame(rows), segmentations, tests)
