"""Affinity agglomeration with waterz and the mutex watershed: perfect affinities give the
labels back, channel orders are reordered as told, bad affinities are one clear error."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import zarr
from scipy import ndimage
from skimage.measure import label

from emseg_lib.cli import main
from emseg_lib.data.targets import affinities
from emseg_lib.errors import EmsegInputError
from emseg_lib.postprocess.agglomeration import AFFINITY_METHODS, as_zyx, segment_affinities
from emseg_lib.scoring.metrics import voi


@pytest.fixture(scope="module")
def cells() -> np.ndarray:
    """(12, 48, 48) labels: about 30 cells, the voxels nearest to a random centre, each
    connected piece its own cell (affinities link face neighbours only)."""
    rng = np.random.default_rng(4)
    seeds = np.zeros((12, 48, 48), dtype=bool)
    seeds[tuple(rng.integers(0, n, 30) for n in seeds.shape)] = True
    _, nearest = ndimage.distance_transform_edt(~seeds, return_indices=True)
    markers = np.zeros(seeds.shape, dtype=np.int64)
    markers[seeds] = np.arange(1, int(seeds.sum()) + 1)
    return label(markers[tuple(nearest)], connectivity=1)


@pytest.mark.parametrize("method", sorted(AFFINITY_METHODS))
def test_perfect_affinities_give_the_labels_back(cells, method):
    labels = segment_affinities(affinities(cells), method)
    assert labels.shape == cells.shape and labels.dtype == np.uint64 and labels.min() > 0
    split, merge = voi(cells, labels)
    assert split + merge == pytest.approx(0.0, abs=1e-9)
    assert len(np.unique(labels)) == len(np.unique(cells)) > 20


@pytest.mark.parametrize("method", sorted(AFFINITY_METHODS))
def test_another_channel_order_is_reordered_as_the_flag_says(cells, method):
    zyx = affinities(cells)
    xyz = zyx[::-1].copy()
    np.testing.assert_array_equal(segment_affinities(xyz, method, order="xyz"),
                                  segment_affinities(zyx, method))
    # read in the wrong order, z and x are swapped: the cells are no longer found
    wrong = segment_affinities(xyz, method, order="zyx")
    assert sum(voi(cells, wrong)) > 0.5


def test_in_plane_affinities_never_link_slices(cells):
    labels = segment_affinities(affinities(cells)[1:], "waterz")
    assert as_zyx(affinities(cells)[1:]).shape == (3, *cells.shape)
    assert not set(np.unique(labels[0])) & set(np.unique(labels[1]))


@pytest.mark.parametrize("affs, fragment", [
    (np.zeros((4, 2, 8, 8), np.float32), "C = 3 (z, y, x) or 2 (y, x)"),
    (np.full((3, 2, 8, 8), 1.5, np.float32), "finite and in [0, 1]"),
    (np.full((3, 2, 8, 8), np.nan, np.float32), "finite and in [0, 1]"),
])
def test_bad_affinities_are_refused(affs, fragment):
    with pytest.raises(EmsegInputError, match=fragment.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        segment_affinities(affs, "mws")


def test_thresholds_outside_the_unit_interval_and_unknown_methods_are_refused(cells):
    with pytest.raises(EmsegInputError, match="threshold must lie in"):
        segment_affinities(affinities(cells), "waterz", {"threshold": 1.0})
    with pytest.raises(EmsegInputError, match="unknown affinity method"):
        segment_affinities(affinities(cells), "multicut")
    with pytest.raises(EmsegInputError, match="channel order"):
        segment_affinities(affinities(cells), "mws", order="yxz")


def _write_affinities(path, affs, key="volumes/predictions/affinities"):
    with h5py.File(path, "a") as handle:
        handle.create_dataset(key, data=affs).attrs["resolution"] = [10.0, 10.0, 10.0]


@pytest.mark.parametrize("method", sorted(AFFINITY_METHODS))
def test_postprocess_agglomerates_affinities_in_chunks_stitched_across_them(
        tmp_path, cells, method, capsys):
    """Perfect affinities in chunks of 5 slices (a z halo of 4 each): the labels back, ids
    unique across the chunks; an .h5 and a .zarr output alike."""
    _write_affinities(tmp_path / "affs.h5", affinities(cells))
    for out in ("seg.h5", "other.zarr"):
        assert main(["postprocess", "--affinities", str(tmp_path / "affs.h5"), "--method",
                     method, "--chunk-slices", "5", "--out", str(tmp_path / out)]) == 0
    stdout = capsys.readouterr().out
    assert "3 block(s) of 5 x 48 x 48 voxels (z, y, x), halo 4 0 0, in this process" in stdout
    with h5py.File(tmp_path / "seg.h5") as handle:
        labels = handle["volumes/labels/neuron_ids"][()]
    assert sum(voi(cells, labels)) == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "other.zarr" / "labels" /
                                                  "neuron_ids" / "0")[:], labels)


def test_postprocess_reads_affinities_in_the_channel_order_given(tmp_path, cells, capsys):
    _write_affinities(tmp_path / "affs.h5", affinities(cells)[::-1].copy(), key="xyz")
    common = ["postprocess", "--affinities", str(tmp_path / "affs.h5"), "--chunk-slices", "12"]
    assert main([*common, "--channel-order", "xyz", "--out", str(tmp_path / "a.h5")]) == 0
    assert main([*common, "--out", str(tmp_path / "b.h5")]) == 0
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        assert sum(voi(cells, a["volumes/labels/neuron_ids"][()])) == pytest.approx(0.0,
                                                                                   abs=1e-9)
        assert sum(voi(cells, b["volumes/labels/neuron_ids"][()])) > 0.5


@pytest.mark.parametrize("flags, fragment", [
    (["--method", "seeded"], "--method seeded segments a cell probability map (--prob); "
     "affinities take --method waterz or mws"),
    (["--seed-th", "0.5"], "--seed-th: not a setting of the waterz method on affinities"),
    (["--method", "mws", "--threshold", "0.3"], "--threshold: not a setting of the mws"),
    (["--bias", "1.5", "--method", "mws"], "bias must lie in (0, 1), got 1.5"),
    (["--affinities-key", "nothing"], "'nothing' not found (--affinities-key)"),
])
def test_bad_affinity_flags_are_one_line(tmp_path, cells, capsys, flags, fragment):
    _write_affinities(tmp_path / "affs.h5", affinities(cells))
    assert main(["postprocess", "--affinities", str(tmp_path / "affs.h5"), "--out",
                 str(tmp_path / "s.h5"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err
    assert not (tmp_path / "s.h5").exists()


def test_a_probability_file_given_as_affinities_is_refused(tmp_path, capsys):
    with h5py.File(tmp_path / "prob.h5", "w") as handle:
        handle.create_dataset("p", data=np.full((4, 16, 16), 0.5, np.float32))
    assert main(["postprocess", "--affinities", str(tmp_path / "prob.h5"), "--affinities-key",
                 "p", "--out", str(tmp_path / "s.h5")]) == 2
    assert "affinities must be (C, Z, Y, X)" in capsys.readouterr().err
