"""Defaults that adapt to the map: the seeded method's seed threshold derived from the map
(the same cells at another contrast give the same segmentation; flags and learned thresholds
win over it), and 3D networks on thick sections post-processed per slice."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import ndimage as ndi

from emseg_lib.cli import main
from emseg_lib.data import synthetic_em_volume
from emseg_lib.data.targets import cell_target, instance_boundary
from emseg_lib.experiments.supervised import make_model
from emseg_lib.models import model_spec
from emseg_lib.postprocess import METHODS, postprocess_dims, segment_volume
from emseg_lib.postprocess.derive import (
    DEFAULT_MIN_SEED_NM2,
    DEFAULT_SMOOTH_NM,
    DERIVED_SEED_TH,
    MOST_SEEDS_FRACTIONS,
    RULES,
    default_min_seed_px,
    default_smooth_px,
    most_seeds_in_slices,
    most_seeds_in_volume,
)
from emseg_lib.profiles import get_profile
from emseg_lib.scoring.evaluation import GroundTruth, cremi_scores
from emseg_lib.train.checkpoint import save_checkpoint

SEEDED = METHODS["seeded"]


@pytest.fixture(scope="module")
def cells():
    """Ground-truth ids ``(3, 96, 96)`` and a clean, slightly blurred cell map of them."""
    labels = synthetic_em_volume((3, 96, 96), seed=2).labels.astype(np.int64)
    clean = ndi.gaussian_filter(cell_target(instance_boundary(labels)), (0, 1.0, 1.0))
    return labels, clean


def _voi(seg: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean([cremi_scores(s, GroundTruth.from_ids(g, pixel_nm=4.0)).voi
                          for s, g in zip(seg, labels, strict=True)]))


def test_the_same_cells_at_two_contrasts_give_the_same_segmentation(cells):
    labels, clean = cells
    confident = 0.02 + 0.96 * clean  # membranes at 0.02, cells at 0.98
    dull = 0.1 + 0.6 * clean  # membranes at 0.1, cells at 0.7: nothing reaches 0.95
    seg_confident = segment_volume(confident, "seeded", SEEDED.thresholds())
    seg_dull = segment_volume(dull, "seeded", SEEDED.thresholds())
    np.testing.assert_array_equal(seg_dull, seg_confident)
    derived = [SEEDED.derive(p, SEEDED.thresholds())["seed_th"] for p in (confident[0],
                                                                          dull[0])]
    assert derived[1] == pytest.approx(0.1 + 0.6 * (derived[0] - 0.02) / 0.96, abs=1e-5)
    assert _voi(seg_dull, labels) < 0.3
    # the old fixed default finds no seed on the dull map: one segment per slice
    fixed = segment_volume(dull, "seeded", {"seed_th": 0.95, "smooth_px": 1.0})
    assert [len(np.unique(s)) for s in fixed] == [1, 1, 1]
    assert _voi(fixed, labels) > 5 * _voi(seg_dull, labels)


def test_derived_threshold_is_the_cut_with_the_most_seeds_over_the_slices(cells):
    labels, clean = cells
    thresholds = SEEDED.derive(clean, {"smooth_px": 0.0}, per_slice=True)
    assert thresholds["seed_th"] == most_seeds_in_slices(clean, thresholds["min_seed_px"])
    lo, hi = np.percentile(clean, [1, 99])
    assert lo < thresholds["seed_th"] < hi
    # the same number of seeds nowhere else on the candidate cuts: count them again here
    def seeds_at(cut: float) -> int:
        return sum(int(np.count_nonzero(np.bincount(ndi.label(s > cut)[0].ravel())[1:]
                                        >= thresholds["min_seed_px"])) for s in clean)
    cuts = [lo + f * (hi - lo) for f in MOST_SEEDS_FRACTIONS]
    assert seeds_at(thresholds["seed_th"]) == max(seeds_at(c) for c in cuts)
    # at most one seed per true cell large enough to hold one, and few cells lost
    large = sum(int(np.count_nonzero(np.bincount(s.ravel()) >= 2 * thresholds["min_seed_px"]))
                for s in labels)
    assert large - 2 <= seeds_at(thresholds["seed_th"]) <= sum(len(np.unique(s)) for s in labels)
    # a whole stack's slices share one derived set; per slice each its own
    seg = segment_volume(clean, "seeded", SEEDED.thresholds({"smooth_px": 0.0}))
    np.testing.assert_array_equal(seg, segment_volume(
        clean, "seeded", [thresholds] * len(clean)))


def test_range_rule_lies_between_the_map_levels(cells):
    _, clean = cells
    lo, hi = np.percentile(clean[0], [1, 99])
    assert RULES["range"].bind(0.25)(clean[0]) == pytest.approx(lo + 0.25 * (hi - lo))


def test_scale_rule_is_a_fraction_of_the_top_level(cells):
    _, clean = cells
    hi = np.percentile(clean[0], 99)
    assert RULES["scale"].bind(0.5)(clean[0]) == pytest.approx(0.5 * hi)
    assert RULES["scale"].bind(0.5)(0.5 * clean[0]) == pytest.approx(0.25 * hi)


def test_in_3d_the_cut_with_the_most_seeds_keeps_cells_apart_through_z():
    """Two cells side by side in a thick volume; the membrane between them is weak (0.85) in
    one slice only. Below 0.85 their seeds meet in that slice and merge in every slice."""
    volume = np.full((6, 32, 64), 0.3, dtype=np.float32)
    volume[:, 4:28, 4:30] = volume[:, 4:28, 34:60] = 1.0
    volume[3, 4:28, 30:34] = 0.85
    assert most_seeds_in_volume(volume, 1) == pytest.approx(0.86)
    thresholds = SEEDED.derive(volume, {"smooth_px": 0.0, "min_seed_px": 1.0})
    assert thresholds["seed_th"] == pytest.approx(0.86)
    seg = SEEDED.segment(volume, SEEDED.thresholds({"smooth_px": 0.0, "min_seed_px": 1.0}))
    assert seg[0, 16, 10] != seg[0, 16, 50] and seg[3, 16, 10] != seg[3, 16, 50]
    # a cut below the weak spot: the seeds touch in slice 3, the cells merge in every slice
    low = SEEDED.segment(volume, {"seed_th": 0.8, "smooth_px": 0.0, "min_seed_px": 1.0})
    assert low[0, 16, 10] == low[0, 16, 50]


def test_in_3d_the_same_cells_at_two_contrasts_give_the_same_segmentation(cells):
    """The 3D cut is placed in the map's range too: a dull copy of a volume (``0.1 + 0.6 p``)
    gets the cut moved with it and the same 3D segmentation."""
    _, clean = cells
    confident = 0.02 + 0.96 * clean
    dull = 0.1 + 0.6 * clean
    thresholds = SEEDED.thresholds({"smooth_px": 1.0, "min_seed_px": 16.0})
    derived = [SEEDED.derive(p, thresholds)["seed_th"] for p in (confident, dull)]
    assert derived[1] == pytest.approx(0.1 + 0.6 * (derived[0] - 0.02) / 0.96, abs=1e-5)
    seg_confident, seg_dull = (segment_volume(p, "seeded", thresholds, dims=3)
                               for p in (confident, dull))
    np.testing.assert_array_equal(seg_dull, seg_confident)
    assert len(np.unique(seg_dull)) > 10


def test_smoothing_is_a_length_in_nm_whatever_the_pixel_size(cells):
    _, clean = cells
    fine = SEEDED.derive(clean[0], {}, (4.0, 4.0))["smooth_px"]
    coarse = SEEDED.derive(clean[0], {}, (8.0, 8.0))["smooth_px"]
    assert fine == pytest.approx(DEFAULT_SMOOTH_NM / 4.0, abs=1e-3)
    assert coarse == pytest.approx(fine / 2, abs=1e-3)
    # a volume's finest axis sets the pixels; without a voxel size CREMI's 4 nm is assumed
    assert SEEDED.derive(clean, {}, (40.0, 4.0, 4.0))["smooth_px"] == fine
    assert SEEDED.derive(clean[0], {})["smooth_px"] == fine
    assert SEEDED.derive(clean[0], {"smooth_px": 0.5}, (8.0, 8.0))["smooth_px"] == 0.5


def test_given_thresholds_win_over_derived_ones(cells):
    _, clean = cells
    assert SEEDED.derive(clean[0], {"seed_th": 0.5, "smooth_px": 1.0})["seed_th"] == 0.5
    given = segment_volume(clean, "seeded", SEEDED.thresholds({"seed_th": 0.999}))
    assert not np.array_equal(given, segment_volume(clean, "seeded", SEEDED.thresholds()))


def _write_prob(path, prob, resolution):
    with h5py.File(path, "w") as handle:
        handle.create_dataset("predictions", data=prob.astype(np.float32)).attrs[
            "resolution"] = resolution


def test_postprocess_says_what_it_derived_and_flags_override(tmp_path, cells, capsys):
    _, clean = cells
    prob = 0.1 + 0.6 * clean
    _write_prob(tmp_path / "prob.h5", prob, [40.0, 4, 4])
    assert main(["postprocess", "--prob", str(tmp_path / "prob.h5"), "--out",
                 str(tmp_path / "derived.h5"), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert (f"post-processing: seeded (method defaults; seed_th derived: {DERIVED_SEED_TH}"
            in out and f"smooth_px derived: a sigma of {DEFAULT_SMOOTH_NM:g} nm" in out), out
    assert re.search(r"seed_th derived: 0\.\d{3} in all 3 slice\(s\)", out), out
    assert f"smooth_px derived: {DEFAULT_SMOOTH_NM / 4:.3f} in all 3 slice(s)" in out
    with h5py.File(tmp_path / "derived.h5") as handle:
        ids = handle["volumes/labels/neuron_ids"][()]
    np.testing.assert_array_equal(ids, segment_volume(
        prob, "seeded", {"smooth_px": default_smooth_px((4.0, 4.0))}))
    assert main(["postprocess", "--prob", str(tmp_path / "prob.h5"), "--out",
                 str(tmp_path / "given.h5"), "--seed-th", "0.3", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert ("seeded (seed_th 0.3; seed_th from the command line; otherwise method defaults; "
            "smooth_px derived" in out), out
    assert "seed_th derived" not in out


def test_learned_thresholds_win_over_derived_ones():
    from argparse import Namespace

    from emseg_lib.cli.segment import choose_postprocessing

    args = Namespace(method=None, keep_boundaries=False, workers=1, sig_th=None, edge_th=None,
                     seed_th=None, smooth_px=None, min_seed_px=None, checkpoint="best.pt")
    learned = {"method": "seeded", "epoch": 3, "dims": 2,
               "thresholds": {"seeded": {"seed_th": 0.8, "smooth_px": 2.0,
                                         "min_seed_px": 50.0}}}
    post, line = choose_postprocessing(args, learned, 2)
    assert post.thresholds == {"seed_th": 0.8, "smooth_px": 2.0, "min_seed_px": 50.0}
    assert "learned on the validation split at epoch 3" in line and "derived" not in line
    post, line = choose_postprocessing(args, {**learned, "dims": 3}, 2)
    assert post.thresholds == {}  # learned in 3D: not used per slice
    assert "learned in 3D" in line and "seed_th derived" in line


def test_anisotropy_guard():
    assert postprocess_dims(3, (10.0, 10.0, 10.0)) == (3, None)
    dims, why = postprocess_dims(3, (50.0, 4.6, 4.6))
    assert dims == 2 and "10.9x thicker" in why and "--dims 3" in why
    assert postprocess_dims(3, (50.0, 4.6, 4.6), requested=3) == (3, None)
    assert postprocess_dims(2, (50.0, 4.6, 4.6)) == (2, None)


def test_3d_checkpoint_on_thick_sections_is_post_processed_per_slice(tmp_path, capsys):
    volume = synthetic_em_volume((6, 64, 64), seed=1)
    with h5py.File(tmp_path / "stack.h5", "w") as handle:
        handle.create_dataset("volumes/raw", data=volume.raw).attrs["resolution"] = [
            50.0, 4.6, 4.6]
    model = make_model("unet3d", get_profile("smoke"))
    save_checkpoint(tmp_path / "unet3d.pt", {"model": model.state_dict(),
                                             "model_spec": model_spec(model)})
    common = ["segment", "--checkpoint", str(tmp_path / "unet3d.pt"), "--data",
              str(tmp_path / "stack.h5"), "--device", "cpu", "--profile", "smoke",
              "--workers", "1"]
    assert main([*common, "--out", str(tmp_path / "auto.h5")]) == 0
    out = capsys.readouterr().out
    guard = [line for line in out.splitlines() if "thicker than the pixels" in line]
    assert len(guard) == 1 and "post-processed per slice" in guard[0]
    assert "in all 6 slice(s)" in out
    with h5py.File(tmp_path / "auto.h5") as handle:
        ids = handle["volumes/labels/neuron_ids"][()]
        prob = handle["volumes/predictions/cell_probability"][()]
    np.testing.assert_array_equal(ids, segment_volume(prob, "seeded", {},
                                                      resolution=(50.0, 4.6, 4.6)))
    assert main([*common, "--out", str(tmp_path / "in3d.h5"), "--dims", "3"]) == 0
    assert "thicker than the pixels" not in capsys.readouterr().out


def _two_cells_and_a_speck(pixel_nm: float) -> np.ndarray:
    """A ``(Y, X)`` map of two 600 x 400 nm cells split by a membrane, and inside one of them a
    bright speck of 40 x 40 nm (1600 nm²) above a dimmer ring: at every pixel size the same
    tissue."""
    n = round(600 / pixel_nm)
    y, x = np.mgrid[0:n, 0:n] * pixel_nm
    prob = np.full((n, n), 0.6, dtype=np.float32)
    prob[np.abs(y - 300) < 10] = 0.05
    prob[(y < 280) & (x > 200) & (x < 400)] = 0.95  # one cell's interior
    prob[(y > 320) & (x > 200) & (x < 400)] = 0.95  # the other's
    speck = (np.abs(y - 140) < 20) & (np.abs(x - 80) < 20)
    prob[(np.abs(y - 140) < 40) & (np.abs(x - 80) < 40) & ~speck] = 0.3
    prob[speck] = 0.95
    return prob


@pytest.mark.parametrize("pixel_nm", [10.0, 5.0, 2.5])
def test_the_smallest_seed_is_an_area_in_nm2(pixel_nm):
    prob = _two_cells_and_a_speck(pixel_nm)
    given = {"seed_th": 0.9, "smooth_px": 0.0}
    seg = SEEDED.segment(prob, given, sampling=(pixel_nm, pixel_nm))
    assert len(np.unique(seg)) == 2  # the speck is smaller than DEFAULT_MIN_SEED_NM2
    assert default_min_seed_px((pixel_nm, pixel_nm)) == round(DEFAULT_MIN_SEED_NM2
                                                              / pixel_nm ** 2)
    kept = SEEDED.segment(prob, {**given, "min_seed_px": 1}, sampling=(pixel_nm, pixel_nm))
    assert len(np.unique(kept)) == 3  # a flag wins: the speck seeds its own segment


def test_thresholds_learned_before_the_seed_area_keep_the_old_seed_size():
    from emseg_lib.postprocess.methods import LEGACY_MIN_SEED_PX
    from emseg_lib.train import Checkpoint

    old = {"postprocess": {"method": "seeded", "epoch": 3, "dims": 2,
                           "thresholds": {"seeded": {"seed_th": 0.8, "smooth_px": 2.0}}}}
    entry = Checkpoint(Path("best.pt"), old).learned
    assert entry["thresholds"]["seeded"]["min_seed_px"] == LEGACY_MIN_SEED_PX
    assert "min_seed_px" not in old["postprocess"]["thresholds"]["seeded"]  # not mutated
