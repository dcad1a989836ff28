"""Real EM stacks (the public ssTEM and FIB-SEM volumes, in ``$EMSEG_REAL_DATA``,
``../shared/data`` or ``data/``: :data:`conftest.REAL_DATA_PLACES`): the
defaults a user gets without tuning by hand, measured on small crops.

Skipped, with the reason, where the stacks are absent (``emseg fetch vnc`` / ``fibsem``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import REAL_DATA_PLACES

from emseg_lib.cli import main
from emseg_lib.data import load_cremi, save_cremi, split_slices
from emseg_lib.fetch import DATASETS
from emseg_lib.output.pipeline import PROBABILITY_KEY
from emseg_lib.scoring.evaluation import score_volume
from emseg_lib.scoring.tuning import tune_thresholds
from emseg_lib.train import load_checkpoint


def real_stack(name: str) -> Path:
    """The path of a public real stack, or skip the test saying where it was looked for."""
    for folder in REAL_DATA_PLACES:
        path = folder / DATASETS[name].filename
        if path.is_file():
            return path
    pytest.skip(f"{DATASETS[name].filename} not in {', '.join(map(str, REAL_DATA_PLACES))}; "
                f"fetch it with: emseg fetch {name} --dest data/")


def centre_crop(path: Path, shape: tuple[int, int, int], out: Path) -> Path:
    """Write the centred ``shape`` crop of a CREMI-layout stack to ``out``."""
    volume = load_cremi(path)
    window = tuple(slice((s - c) // 2, (s - c) // 2 + c)
                   for s, c in zip(volume.shape, shape, strict=True))
    save_cremi(dataclasses.replace(volume, raw=volume.raw[window],
                                   labels=volume.labels[window]), out)
    return out


def test_train_then_segment_with_defaults_is_within_10_percent_of_the_best_threshold(tmp_path):
    """FIB-SEM crop (125 x 192 x 192: 100 / 5 / 20 slices): `emseg train` learns the
    thresholds on the 5 validation slices, `emseg segment` uses them without a flag; on the 20
    test slices its VOI is within 10 % of the best point of the method's grid chosen on the
    test slices themselves, and every voxel has a segment id."""
    crop = centre_crop(real_stack("fibsem"), (125, 192, 192), tmp_path / "crop.h5")
    run, seg = tmp_path / "run", tmp_path / "seg.h5"
    assert main(["train", "--model", "unet2d", "--data", str(crop), "--out", str(run),
                 "--profile", "quick", "--epochs", "4", "--device", "cpu"]) == 0
    learned = load_checkpoint(run / "best.pt")["postprocess"]
    assert main(["segment", "--checkpoint", str(run / "best.pt"), "--data", str(crop),
                 "--out", str(seg), "--device", "cpu"]) == 0
    volume = load_cremi(crop)
    test = split_slices(volume.shape[0]).test
    with h5py.File(seg) as handle:
        ids = handle["volumes/labels/neuron_ids"][test]
        prob = handle[PROBABILITY_KEY][test]
    assert ids.min() > 0
    gt = volume.labels[test].astype(np.int64)
    ours = score_volume(ids, gt, "cremi", pixel_nm=volume.resolution[1])["voi"].mean()
    best = tune_thresholds(prob, gt, learned["method"], pixel_nm=volume.resolution[1],
                           workers=2)
    assert ours <= 1.10 * best.scores["voi"], (learned["thresholds"], best.thresholds)
    # the grid is not flat: the worst threshold is far from the best
    assert best.grid.groupby(list(best.thresholds))["voi"].mean().max() > 1.5 * best.scores["voi"]
