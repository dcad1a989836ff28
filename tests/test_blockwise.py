"""Blockwise segmentation on a local dask cluster of 2 workers (``--engine local``): the same
labels as one process for per-slice post-processing, the same segments across block faces in
3D, a killed worker and a killed run that resume to the same labels, and one line for bad
flags."""

from __future__ import annotations

from contextlib import nullcontext

import h5py
import numpy as np
import pytest
import zarr
from test_real_data import real_stack

from emseg_lib.blockwise import BlockGrid, run
from emseg_lib.blockwise.block_job import KILL_SWITCH
from emseg_lib.blockwise.work_folder import work_folder
from emseg_lib.cli import main
from emseg_lib.data.synthetic import label_probability, synthetic_em_volume
from emseg_lib.errors import EmsegInputError
from emseg_lib.experiments.supervised import train_unet
from emseg_lib.output.stitching import IdMap, same_segments
from emseg_lib.profiles import get_profile
from emseg_lib.scoring.metrics import voi

LABELS = "labels/neuron_ids/0"


@pytest.fixture(autouse=True)
def _watchdog(monkeypatch):
    """A hung cluster fails the test naming the blocks it waited for (a last guard only)."""
    monkeypatch.setattr(run, "WAIT_LIMIT_S", 600.0)


def _labels(path) -> np.ndarray:
    return np.asarray(zarr.open_array(path / LABELS, mode="r")[:])


def test_block_cores_tile_the_volume_and_halos_stay_inside():
    grid = BlockGrid((10, 50, 40), (4, 32, 32), (2, 8, 8))
    seen = np.zeros(grid.shape, dtype=int)
    for block in grid.blocks():
        seen[block.core] += 1
        assert all(0 <= o.start <= c.start and c.stop <= o.stop <= n for c, o, n in
                   zip(block.core, block.outer, grid.shape, strict=True))
    assert (seen == 1).all() and len(grid) == 3 * 2 * 2
    faces = grid.upper_faces(grid.block_at(0))
    assert [(f.axis, f.upper) for f in faces] == [(0, 4), (1, 2), (2, 1)]
    assert faces[0].above == (slice(4, 5), slice(0, 32), slice(0, 32))  # half the z halo
    assert faces[1].below == (slice(0, 4), slice(28, 32), slice(0, 32))
    assert grid.lower_faces(grid.block_at(4)) == [faces[0]]
    with pytest.raises(EmsegInputError, match="smaller than the halo of 16"):
        BlockGrid((10, 50, 40), (4, 8, 32), (2, 16, 8))


def test_segments_are_one_when_each_holds_most_of_the_other():
    lower = np.array([1, 1, 1, 1, 2, 2, 3, 3, 3, 0])
    upper = np.array([5, 5, 5, 6, 6, 6, 6, 8, 9, 5])
    # 1 and 5 overlap on 3 voxels: most of 1 (3 of 4) and of 5 (4 voxels here); 2 lies in 6
    # but holds only half of it (2 of 4); 3 is split three ways
    np.testing.assert_array_equal(same_segments(lower, upper), [[1, 5]])
    ids = IdMap.build([3, 9, 2], np.array([[0, 1, 1, 5], [1, 5, 2, 2]], dtype=np.uint64))
    # offsets 0, 3, 12; block 1's id 5 (global 8) and block 2's id 2 (14) join block 0's 1
    np.testing.assert_array_equal(ids.apply(1, np.array([0, 5, 6])), [0, 1, 9])
    np.testing.assert_array_equal(ids.apply(2, np.array([1, 2])), [13, 1])
    assert ids.merges == 2


@pytest.fixture(scope="module")
def unet2d(tmp_path_factory):
    """A smoke-trained UNet2D and an 8-slice synthetic HDF5 stack."""
    root = tmp_path_factory.mktemp("unet2d")
    volume = synthetic_em_volume((8, 96, 96), seed=3)
    train_unet("unet2d", volume, get_profile("smoke"), root / "run", progress=False, workers=1,
               tensorboard=False)
    with h5py.File(root / "raw.h5", "w") as handle:
        handle.create_dataset("volumes/raw", data=volume.raw).attrs["resolution"] = [
            40.0, 4.0, 4.0]
    return root


def test_a_2d_network_blockwise_writes_exactly_what_segment_writes(tmp_path, unet2d, capsys):
    # the smoke network's map is nearly flat: a low seed threshold gives ~100 segments
    common = ["segment", "--checkpoint", str(unet2d / "run" / "best.pt"), "--data",
              str(unet2d / "raw.h5"), "--device", "cpu", "--chunk-slices", "3", "--seed-th",
              "0.55", "--smooth-px", "0", "--min-seed-px", "4"]
    assert main([*common, "--out", str(tmp_path / "one.zarr"), "--workers", "1"]) == 0
    assert main([*common, "--out", str(tmp_path / "blocks.zarr"), "--engine", "local",
                 "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "blockwise: 3 block(s) of 3 x 96 x 96 voxels (z, y, x), halo 0 0 0, on local " \
           "with 2 worker(s)" in out
    one, blocks = _labels(tmp_path / "one.zarr"), _labels(tmp_path / "blocks.zarr")
    assert len(np.unique(one)) > 50  # many segments per slice: a real comparison
    np.testing.assert_array_equal(blocks, one)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "blocks.zarr" / "0")[:],
                                  zarr.open_array(tmp_path / "one.zarr" / "0")[:])
    assert not work_folder(tmp_path / "blocks.zarr").exists()
    assert (tmp_path / "blocks.preview.png").is_file()


@pytest.fixture(scope="module")
def fibsem_probabilities(tmp_path_factory):
    """A 48 x 128 x 128 crop of the FIB-SEM cube: its labels and a probability map of them."""
    with h5py.File(real_stack("fibsem"), "r") as handle:
        labels = handle["volumes/labels/neuron_ids"][:48, :128, :128]
        resolution = handle["volumes/raw"].attrs["resolution"]
    path = tmp_path_factory.mktemp("fibsem") / "prob.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("volumes/predictions/cell_probability",
                              data=label_probability(labels)).attrs[
            "resolution"] = resolution
    return path, labels


def _face_cuts(seg: np.ndarray, gt: np.ndarray, axis: int, at: int) -> int:
    """Voxel pairs across the plane before ``at`` along ``axis`` in one labelled segment
    but given different ids by ``seg``: how often ``seg`` cuts segments there."""
    below, above = np.take(seg, at - 1, axis=axis), np.take(seg, at, axis=axis)
    gt_below, gt_above = np.take(gt, at - 1, axis=axis), np.take(gt, at, axis=axis)
    return int(np.count_nonzero((gt_below == gt_above) & (gt_below > 0) & (below != above)))


def test_3d_blocks_stitched_across_faces_match_the_whole_volume(tmp_path,
                                                                fibsem_probabilities):
    prob, gt = fibsem_probabilities
    common = ["postprocess", "--prob", str(prob), "--dims", "3", "--seed-th", "0.8"]
    assert main([*common, "--out", str(tmp_path / "whole.zarr"), "--chunk-slices", "48"]) == 0
    assert main([*common, "--out", str(tmp_path / "blocks.zarr"), "--engine", "local",
                 "--jobs", "2", "--block", "24", "64", "64", "--halo", "16", "32", "32"]) == 0
    whole, blocks = _labels(tmp_path / "whole.zarr"), _labels(tmp_path / "blocks.zarr")
    split, merge = voi(whole, blocks, ignore_gt_background=False)
    assert split + merge <= 0.02
    for axis, at in ((0, 24), (1, 64), (2, 64)):  # the block faces
        assert _face_cuts(blocks, gt, axis, at) <= _face_cuts(whole, gt, axis, at)
    # without stitching, every segment crossing a face would be cut there
    assert len(np.unique(blocks)) < sum(len(np.unique(blocks[z:z + 24, y:y + 64, x:x + 64]))
                                        for z in (0, 24) for y in (0, 64) for x in (0, 64))


def test_a_killed_worker_and_a_killed_run_resume_to_the_same_labels(
        tmp_path, fibsem_probabilities, monkeypatch, capsys):
    prob, _ = fibsem_probabilities
    common = ["postprocess", "--prob", str(prob), "--dims", "3", "--seed-th", "0.8",
              "--engine", "local", "--jobs", "2", "--block", "24", "64", "64", "--halo", "8",
              "16", "16"]
    assert main([*common, "--out", str(tmp_path / "clean.zarr")]) == 0
    switch = tmp_path / "kill-one-worker"
    monkeypatch.setenv(KILL_SWITCH, str(switch))
    # a worker dies mid-block: dask gives the block to a new worker, the run finishes
    switch.write_text("")
    assert main([*common, "--out", str(tmp_path / "retried.zarr")]) == 0
    assert not switch.exists()  # the worker did die
    np.testing.assert_array_equal(_labels(tmp_path / "retried.zarr"),
                                  _labels(tmp_path / "clean.zarr"))
    # a worker dies and the run gives up (no retries): the finished blocks are kept, the
    # output does not exist, and the same command resumes
    import dask

    switch.write_text("")
    capsys.readouterr()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        assert main([*common, "--out", str(tmp_path / "resumed.zarr")]) == 1
    err = capsys.readouterr().err
    assert "its worker died" in err and "run the same command again to resume" in err
    assert not (tmp_path / "resumed.zarr").exists()
    assert work_folder(tmp_path / "resumed.zarr").is_dir()
    assert main([*common, "--out", str(tmp_path / "resumed.zarr")]) == 0
    assert "resuming: " in capsys.readouterr().out
    np.testing.assert_array_equal(_labels(tmp_path / "resumed.zarr"),
                                  _labels(tmp_path / "clean.zarr"))


@pytest.mark.parametrize("flags, fragment", [
    (["--jobs", "2"], "--jobs apply to blockwise runs; add --engine"),
    (["--engine", "local", "--jobs", "0"], "--jobs must be >= 1, got 0"),
    (["--engine", "local", "--dims", "3", "--block", "4", "8", "8", "--halo", "2", "16",
      "16"], "smaller than the halo of 16"),
    (["--engine", "local", "--block", "4", "32", "32"], "per-slice post-processing takes "
     "whole slices"),
    (["--engine", "slurm"], "sbatch, which is not on this machine's PATH"),
    (["--engine", "nowhere"], "invalid choice: 'nowhere'"),
])
def test_bad_blockwise_flags_are_one_line_before_any_work(tmp_path, capsys, flags, fragment,
                                                          monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here, whatever the machine has
    prob = tmp_path / "prob.h5"
    with h5py.File(prob, "w") as handle:
        handle.create_dataset("p", data=np.full((8, 48, 48), 0.5, np.float32))
    with pytest.raises(SystemExit) if "invalid choice" in fragment else nullcontext():
        code = main(["postprocess", "--prob", str(prob), "--out", str(tmp_path / "s.zarr"),
                     *flags])
        assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("emseg: error:") and fragment in err
    assert not list(tmp_path.glob("*s.zarr*"))


def test_an_hdf5_output_is_refused_for_blockwise_runs(tmp_path, capsys):
    prob = tmp_path / "prob.h5"
    with h5py.File(prob, "w") as handle:
        handle.create_dataset("p", data=np.full((4, 32, 32), 0.5, np.float32))
    assert main(["postprocess", "--prob", str(prob), "--out", str(tmp_path / "s.h5"),
                 "--engine", "local"]) == 2
    assert "give --out a .zarr name" in capsys.readouterr().err

