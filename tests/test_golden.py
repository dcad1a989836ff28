"""Golden tables: every number the scoring code gives on a fixed map, pinned.

A refactor of the scoring (issue 20: one scoring engine) must show each number it changes. The
pinned files in ``tests/golden/`` hold, for a fixed map (the session's small synthetic volume,
3 slices, its perfect boundary map plus seeded Gaussian noise):

* ``threshold_grid.csv`` — the thesis tables' per-slice threshold grid (what notebook 05 and
  the smoke profile's ``*_threshold_grid_per_slice`` tables hold);
* ``validation_row.json`` — the scores a boundary network's validation row of ``history.csv``
  carries for one slice (``_slice_scores``, the ``val_*`` columns) and an affinity network's
  (``_affinity_scores``, from the perfect affinities of the same labels);
* ``postprocess_entry.json`` — the ``"postprocess"`` entry ``best.pt`` stores after tuning every
  method on these slices, 2D and 3D, and the affinity methods' entry.

A training run itself is not pinned: its weights differ between CPUs in the last bits, which
would make a golden history fail by chance. Regenerate after a deliberate change with
``EMSEG_UPDATE_GOLDEN=1 pytest tests/test_golden.py`` and explain the diff in the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emseg_lib.data.targets import affinities as affinity_target
from emseg_lib.data.targets import cell_target, instance_boundary
from emseg_lib.infra.atomic_files import atomic_write_text
from emseg_lib.scoring.evaluation import threshold_grid
from emseg_lib.scoring.tuning import checkpoint_entry, tune_agglomeration, tune_all
from emseg_lib.train.loop import _affinity_scores, _slice_scores

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("EMSEG_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="module")
def fixed_map(request) -> tuple[np.ndarray, np.ndarray]:
    volume = request.getfixturevalue("small_volume")
    gt = volume.labels[:3].astype(np.int64)
    prob = cell_target(instance_boundary(gt)) * 0.98 + 0.01
    noisy = np.clip(prob + np.random.default_rng(0).normal(0, 0.15, prob.shape), 0, 1)
    return noisy.astype(np.float32), gt


def _noisy_affinities(gt: np.ndarray) -> np.ndarray:
    """The perfect affinities ``(3, Z, Y, X)`` of ``gt`` with seeded Gaussian noise."""
    perfect = affinity_target(gt).astype(np.float32)
    noise = np.random.default_rng(1).normal(0, 0.2, perfect.shape)
    return np.clip(perfect + noise, 0, 1).astype(np.float32)


def _check_json(name: str, value: dict) -> None:
    path = GOLDEN / name
    if UPDATE:
        atomic_write_text(path, json.dumps(value, indent=1, sort_keys=True) + "\n")
    _nested_equal(json.loads(json.dumps(value)), json.loads(path.read_text()))


def _nested_equal(got: object, pinned: object, where: str = "") -> None:
    """``got`` equals ``pinned`` key by key, floats to 1e-9 relative; the message names the
    first differing key."""
    if isinstance(pinned, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(pinned), \
            f"{where}: keys {got if not isinstance(got, dict) else sorted(got)} != {sorted(pinned)}"
        for key in pinned:
            _nested_equal(got[key], pinned[key], f"{where}/{key}")
    elif isinstance(pinned, float):
        assert got == pytest.approx(pinned, rel=1e-9, abs=1e-12), f"{where}: {got} != {pinned}"
    else:
        assert got == pinned, f"{where}: {got!r} != {pinned!r}"


def test_threshold_grid_table_is_pinned(fixed_map):
    prob, gt = fixed_map
    table = threshold_grid(prob, gt, [0.73, 0.8, 0.9], [0.0, 0.02, 0.05, 0.1], pixel_nm=4.0)
    path = GOLDEN / "threshold_grid.csv"
    if UPDATE:
        atomic_write_text(path, table.to_csv(index=False))
    pinned = pd.read_csv(path)
    pd.testing.assert_frame_equal(table.reset_index(drop=True), pinned, check_dtype=False,
                                  rtol=1e-9, atol=1e-12)


def test_validation_row_is_pinned(fixed_map):
    prob, gt = fixed_map
    boundary = _slice_scores((prob[0], gt[0]), 0.83, 0.91, 4.0)
    affinity = pd.DataFrame(_affinity_scores((_noisy_affinities(gt), gt), 4.0)).mean().to_dict()
    _check_json("validation_row.json", {"boundaries": boundary, "affinities": affinity})


def test_learned_postprocess_entry_is_pinned(fixed_map):
    prob, gt = fixed_map
    entries = {f"{dims}d": checkpoint_entry(tune_all(prob, gt, pixel_nm=4.0, dims=dims,
                                                     resolution=(40.0, 4.0, 4.0)),
                                            dims=dims, epoch=7)
               for dims in (2, 3)}
    entries["affinities"] = checkpoint_entry(tune_agglomeration(_noisy_affinities(gt), gt,
                                                                pixel_nm=4.0),
                                             dims=3, epoch=7, method="waterz")
    _check_json("postprocess_entry.json", entries)
