"""Real EM stacks end to end (train -> learned thresholds -> segment -> score), as a user does.

:func:`real_data_results` trains (or resumes) a network on a real stack with the thesis's split
proportions, then scores its test split under the CREMI protocol with: the thesis method at the
thesis's thresholds, each method at the thresholds learned on the validation split (what
``emseg segment`` uses), the ``emseg postprocess`` defaults, and, as an upper bound no user
gets, each method at the best thresholds of its grid *on the test split itself*.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emseg_lib.data import EMVolume, load_cremi
from emseg_lib.experiments.supervised import predict_split, train_unet
from emseg_lib.fetch import DATASETS
from emseg_lib.models import model_entry
from emseg_lib.postprocess import (
    DEFAULT_METHOD,
    METHODS,
    THESIS_EDGE_TH,
    THESIS_SIG_TH,
    get_method,
    postprocess_dims,
    segment_volume,
)
from emseg_lib.postprocess.agglomeration import AFFINITY_METHODS, segment_affinities
from emseg_lib.profiles import Profile
from emseg_lib.scoring.evaluation import score_volume
from emseg_lib.scoring.metrics import SCORE_COLUMNS
from emseg_lib.scoring.tuning import (
    choose_agglomeration,
    choose_thresholds,
    tune_agglomeration,
    tune_thresholds,
)
from emseg_lib.train.losses import DEFAULT_AFFINITY_LOSS


def real_stack_paths(folder: str | Path) -> dict[str, Path]:
    """``{name: path}`` of the public real stacks (``emseg fetch vnc|fibsem|snemi``) in
    ``folder`` that exist there."""
    paths = {name: Path(folder) / dataset.filename for name, dataset in DATASETS.items()}
    return {name: path for name, path in paths.items() if path.is_file()}


#: the network trained on each real stack: 2D on the anisotropic ssTEM stack (its labels are
#: not linked across sections) and on the anisotropic SNEMI3D stack (30 nm sections, 6 nm
#: pixels), 3D on the isotropic FIB-SEM cube
REAL_STACK_MODELS: dict[str, str] = {"vnc": "unet2d", "fibsem": "unet3d", "snemi": "unet2d"}


def load_real_stack(path: str | Path, profile: Profile) -> EMVolume:
    """A real CREMI-layout stack, centre-cropped to the profile's ``real_data_crop``."""
    volume = load_cremi(path)
    if not profile.real_data_crop:
        return volume
    window = tuple(slice((size - min(size, limit)) // 2,
                         (size - min(size, limit)) // 2 + min(size, limit))
                   for size, limit in zip(volume.shape, profile.real_data_crop, strict=True))
    return dataclasses.replace(volume, raw=volume.raw[window], labels=volume.labels[window])


def real_data_results(kind: str, volume: EMVolume, profile: Profile,
                      run_dir: str | Path, *, seed: int = 0, device: str | None = None,
                      workers: int | None = None, target: str = "boundaries",
                      affinity_loss: str = DEFAULT_AFFINITY_LOSS) -> pd.DataFrame:
    """Test-split scores (CREMI protocol, mean over slices) of one network on a real stack.

    Returns:
        One row per setting: ``method``, ``thresholds`` (a readable string), ``chosen on``
        (``thesis``: the thesis's 0.83 / 0.91; ``validation``: learned after training, what
        ``emseg segment`` uses; ``defaults``: the default method's defaults, what ``emseg
        postprocess`` uses; ``test (oracle)``) and the mean ``voi_split``, ``voi_merge``,
        ``voi``, ``arand``, ``cremi_score``. With ``target="affinities"`` the network
        predicts nearest-neighbour affinities and the rows are the affinity methods
        (:data:`~emseg_lib.postprocess.agglomeration.AFFINITY_METHODS`) on the test split as
        one volume, with no thesis row.
    """
    trained = train_unet(kind, volume, profile, run_dir, seed=seed, device=device,
                         workers=workers, progress=False, target=target,
                         affinity_loss=affinity_loss)
    test = predict_split(trained.model, volume, "test", profile, device=device,
                         progress=False, cache_dir=run_dir)
    if target == "affinities":
        return _affinity_results(trained.postprocess, test.prob, test.gt, test.pixel_nm)
    dims, _ = postprocess_dims(model_entry(trained.model).dims, volume.resolution)
    settings = [("thesis", {"sig_th": THESIS_SIG_TH, "edge_th": THESIS_EDGE_TH}, "thesis")]
    settings += [(name, choose_thresholds(name, {}, trained.postprocess, dims).thresholds,
                  "validation") for name in METHODS]
    settings.append((DEFAULT_METHOD, get_method(DEFAULT_METHOD).default_thresholds(dims),
                     "defaults"))
    rows = []
    for name, thresholds, source in settings:
        seg = segment_volume(test.prob, name, thresholds, dims=dims,
                             resolution=volume.resolution, workers=workers)
        scores = score_volume(seg, test.gt, "cremi", pixel_nm=test.pixel_nm)
        rows.append(_row(name, thresholds, source, scores[list(SCORE_COLUMNS)].mean()))
    for name in METHODS:
        oracle = tune_thresholds(test.prob, test.gt, name, pixel_nm=test.pixel_nm, dims=dims,
                                 resolution=volume.resolution, workers=workers)
        rows.append(_row(name, oracle.thresholds, "test (oracle)", pd.Series(oracle.scores)))
    return pd.DataFrame(rows)


def _affinity_results(learned: dict[str, Any], affinities: np.ndarray,
                      gt_ids: np.ndarray, pixel_nm: float) -> pd.DataFrame:
    """The rows of :func:`real_data_results` for an affinity network's test split
    ``(C, Z, Y, X)``: each affinity method learned on validation, at its default, and at the
    best of its grid on the test split (oracle)."""
    rows = []
    for name, entry in AFFINITY_METHODS.items():
        value, _ = choose_agglomeration(name, None, learned)
        for thresholds, source in (({entry.parameter: value}, "validation"),
                                   ({entry.parameter: entry.default}, "defaults")):
            seg = segment_affinities(affinities, name, thresholds)
            scores = score_volume(seg, gt_ids, "cremi", pixel_nm=pixel_nm)
            rows.append(_row(name, thresholds, source, scores[list(SCORE_COLUMNS)].mean()))
    for name, oracle in tune_agglomeration(affinities, gt_ids, pixel_nm=pixel_nm).items():
        rows.append(_row(name, oracle.thresholds, "test (oracle)", pd.Series(oracle.scores)))
    return pd.DataFrame(rows)


def _row(method: str, thresholds: dict[str, float], source: str, scores: pd.Series) -> dict:
    derived = () if method in AFFINITY_METHODS else get_method(method).derived
    values = ", ".join([*(f"{k} derived" for k in derived if k not in thresholds),
                        *(f"{k} {v:g}" for k, v in thresholds.items())])
    return {"method": method, "thresholds": values, "chosen on": source,
            **{column: float(scores[column]) for column in SCORE_COLUMNS}}


def within_best(results: pd.DataFrame, method: str, source: str = "validation") -> float:
    """VOI of ``method`` at the thresholds chosen on ``source`` divided by its oracle VOI."""
    pick = results[(results["method"] == method) & (results["chosen on"] == source)]
    oracle = results[(results["method"] == method) & (results["chosen on"] == "test (oracle)")]
    return float(np.asarray(pick["voi"])[0] / np.asarray(oracle["voi"])[0])
