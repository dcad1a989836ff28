"""The ``emseg`` command line: end to end on TIFF and PNG stacks, bad input (fetching: in
test_fetch.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch

from emseg_lib.cli import main
from emseg_lib.data import synthetic_em_volume
from emseg_lib.data.formats import describe, load_stack
from emseg_lib.data.targets import instance_boundary
from emseg_lib.output.pipeline import PROBABILITY_KEY
from emseg_lib.postprocess import segment_volume, watershed_postprocess
from emseg_lib.postprocess.derive import default_smooth_px
from emseg_lib.scoring.evaluation import evaluate_slices, score_volume
from emseg_lib.train.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    """A small synthetic stack as TIFF (ids) and as PNG folders (membrane-mask labels)."""
    root = tmp_path_factory.mktemp("stacks")
    volume = synthetic_em_volume((8, 96, 96), seed=5)
    tifffile.imwrite(root / "raw.tif", volume.raw, photometric="minisblack")
    tifffile.imwrite(root / "labels.tif", volume.labels.astype(np.uint32),
                     photometric="minisblack")
    (root / "raw_png").mkdir()
    (root / "membranes_png").mkdir()
    membranes = instance_boundary(volume.labels, thickness=0)
    for z in range(8):
        iio.imwrite(root / "raw_png" / f"slice_{z}.png", volume.raw[z])
        iio.imwrite(root / "membranes_png" / f"slice_{z}.png",
                    (membranes[z] * 255).astype(np.uint8))
    return root, volume


def _run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("raw, labels", [("raw.tif", "labels.tif"),
                                         ("raw_png", "membranes_png")])
def test_train_segment_evaluate_end_to_end(tmp_path, stacks, capsys, raw, labels, monkeypatch):
    root, _ = stacks
    run = tmp_path / "run"
    trained_reads, torch_load = [], torch.load
    with monkeypatch.context() as patch:
        patch.setattr(torch, "load", lambda f, *a, **k: trained_reads.append(str(f))
                      or torch_load(f, *a, **k))
        code, out, err = _run(["train", "--model", "unet2d", "--data", root / raw, "--labels",
                               root / labels, "--out", run, "--profile", "smoke", "--epochs",
                               "1", "--device", "cpu"], capsys)
    assert code == 0, err
    # best.pt read and verified once after training: tuned, annotated, its network returned
    assert trained_reads.count(str(run / "best.pt")) == 1, trained_reads
    assert "shape (8, 96, 96)" in out
    assert ("split: train slices 0-5 (6), validation 6-7 (2: the last 20 % of the labelled "
            "slices, the default); every labelled slice is used") in out
    for name in ("last.pt", "best.pt", "history.csv", "summary.json", "tensorboard"):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 1
    assert summary["split"]["train"] == "0-5" and summary["split"]["val"] == "6-7"
    assert summary["budget"] == {**summary["budget"], "minutes": None, "epochs": 1,
                                 "stopped_by": "epochs"}
    # one validation figure, named with its protocol, on the console and in summary.json
    final = summary["final"]
    assert final["protocol"] == "cremi" and "val_voi" not in final
    assert f"VOI {final['val_cremi_voi']:.4f} (split" in out and "(CREMI protocol" in out
    assert "learned on the validation split (slices 6-7)" in out

    learned = torch.load(run / "best.pt", weights_only=False)["postprocess"]
    assert set(learned["thresholds"]) == {"thesis", "seeded"}
    assert "learned on the validation split" in out

    seg = tmp_path / "seg.h5"
    reads, torch_load = [], torch.load
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: reads.append(str(f)) or torch_load(
        f, *a, **k))
    code, out, err = _run(["segment", "--checkpoint", run / "best.pt", "--data", root / raw,
                           "--out", seg, "--chunk-slices", "3", "--device", "cpu",
                           "--workers", "2"], capsys)
    assert code == 0, err
    assert reads == [str(run / "best.pt")]  # read and verified once
    seeded = learned["thresholds"]["seeded"]
    assert (f"post-processing: seeded (seed_th {seeded['seed_th']:g}, smooth_px "
            f"{seeded['smooth_px']:g}, min_seed_px {seeded['min_seed_px']:g}; learned on the "
            "validation split") in out
    assert "every voxel has a segment id" in out
    with h5py.File(seg) as handle:
        ids = handle["volumes/labels/neuron_ids"][()]
        prob = handle[PROBABILITY_KEY][()]
    assert ids.shape == (8, 96, 96) and ids.min() > 0 and prob.dtype == np.float32
    # per slice, ids unique across the volume
    assert not set(np.unique(ids[0])) & set(np.unique(ids[1]))

    code, out, err = _run(["evaluate", "--seg", seg, "--gt", root / labels], capsys)
    assert code == 0, err
    assert "protocol cremi" in out and "warning" not in err
    scores = json.loads(seg.with_suffix(".scores.json").read_text())
    assert scores["slices_scored"] == 8 and scores["protocol"] == "cremi"
    gt = load_stack(root / raw, root / labels).labels
    notebook = score_volume(ids, gt, "cremi", pixel_nm=4.0).mean()
    for key in ("voi_split", "voi_merge", "arand", "cremi_score"):
        assert scores["per_slice_mean"][key] == pytest.approx(notebook[key]), key


def test_train_on_two_labelled_slices_says_what_it_did(tmp_path, stacks, capsys):
    """Too few slices for the thesis's split: one trains, one validates, and the line says so."""
    root, volume = stacks
    tifffile.imwrite(tmp_path / "raw.tif", volume.raw[:2], photometric="minisblack")
    tifffile.imwrite(tmp_path / "labels.tif", volume.labels[:2].astype(np.uint32),
                     photometric="minisblack")
    code, out, err = _run(["train", "--model", "unet2d", "--data", tmp_path / "raw.tif",
                           "--labels", tmp_path / "labels.tif", "--out", tmp_path / "run",
                           "--profile", "smoke", "--epochs", "1", "--device", "cpu",
                           "--workers", "1", "--no-tensorboard"], capsys)
    assert code == 0, err
    assert not (tmp_path / "run" / "tensorboard").exists()
    assert ("split: train slices 0 (1), validation 1 (1: the last 20 % of the labelled slices, "
            "the default; 20 % of 2 is under 1, so 1); every labelled slice is used; one "
            "validation slice: best.pt and the learned thresholds rest on it alone") in out
    identity = json.loads((tmp_path / "run" / "run.json").read_text())["identity"]
    assert identity["split"] == {"train": "0", "val": "1"}


def test_console_script_installed(tmp_path):
    result = subprocess.run(["emseg", "evaluate", "--seg", str(tmp_path / "none.h5"), "--gt",
                             str(tmp_path / "none.tif")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("emseg: error:")


def test_membrane_masks_become_instances(stacks):
    root, volume = stacks
    loaded = load_stack(root / "raw_png", root / "membranes_png")
    assert loaded.label_kind.startswith("membrane mask -> instances (--label-kind auto: values "
                                        "0 and 255, 255 = membrane")
    assert loaded.labels.shape == volume.shape
    assert len(np.unique(loaded.labels[0])) > 5
    assert "membrane mask -> instances" in describe(loaded)


def _expect_error(capsys, args, *fragments):
    code, _, err = _run(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()  # progress bars may precede the error
    errors = [line for line in lines if line.startswith("emseg: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0]
    for fragment in fragments:
        assert fragment in errors[0]


def test_bad_input_is_one_line_exit_2(tmp_path, stacks, capsys):
    root, volume = stacks
    common = ["--out", tmp_path / "run", "--profile", "smoke", "--epochs", "1"]
    weird = tmp_path / "raw.xyz"
    weird.write_text("?")
    _expect_error(capsys, ["train", "--model", "unet2d", "--data", weird, "--labels",
                           root / "labels.tif", *common], "raw.xyz", "unknown format")
    tifffile.imwrite(tmp_path / "small_labels.tif", volume.labels[:4].astype(np.uint32),
                     photometric="minisblack")
    _expect_error(capsys, ["train", "--model", "unet2d", "--data", root / "raw.tif",
                           "--labels", tmp_path / "small_labels.tif", *common],
                  "small_labels.tif", "must match")
    (tmp_path / "empty").mkdir()
    _expect_error(capsys, ["train", "--model", "unet2d", "--data", tmp_path / "empty",
                           "--labels", root / "labels.tif", *common], "empty", "no .png/.tif")
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00garbage")
    _expect_error(capsys, ["segment", "--checkpoint", tmp_path / "x.pt", "--data", corrupt,
                           "--out", tmp_path / "s.h5"], "x.pt", "checkpoint not found")
    _expect_error(capsys, ["train", "--model", "unet2d", "--data", corrupt, "--labels",
                           root / "labels.tif", *common], "corrupt.tif", "cannot be read")


def test_checkpoint_from_another_architecture(tmp_path, stacks, capsys):
    root, _ = stacks
    save_checkpoint(tmp_path / "other.pt", {"model": {"weight": torch.zeros(3)}, "model_spec": {
        "name": "unet2d", "config": {"base_width": 4, "depth": 3}}})
    _expect_error(capsys, ["segment", "--checkpoint", tmp_path / "other.pt", "--data",
                           root / "raw.tif", "--out", tmp_path / "s.h5"],
                  "other.pt", "different architecture")
    torch.save({"config": {}, "state_dict": {}}, tmp_path / "generator.pt")
    _expect_error(capsys, ["segment", "--checkpoint", tmp_path / "generator.pt", "--data",
                           root / "raw.tif", "--out", tmp_path / "s.h5"],
                  "generator.pt", "not an emseg checkpoint")


@pytest.fixture(scope="module")
def probabilities(tmp_path_factory, stacks):
    """A noisy cell-probability map of the synthetic stack in an HDF5 file and as TIFF."""
    root = tmp_path_factory.mktemp("prob")
    _, volume = stacks
    clean = 1.0 - instance_boundary(volume.labels).astype(np.float32)
    rng = np.random.default_rng(0)
    prob = np.clip(clean * 0.9 + 0.05 + rng.normal(0, 0.05, clean.shape), 0, 1)
    prob = prob.astype(np.float32)
    with h5py.File(root / "prob.h5", "w") as handle:
        handle.create_dataset("predictions", data=prob).attrs["resolution"] = [40.0, 4, 4]
    tifffile.imwrite(root / "boundary.tif", 1.0 - prob, photometric="minisblack")
    return root, prob, volume


def test_postprocess_any_probability_map(tmp_path, probabilities, capsys):
    root, prob, volume = probabilities
    out = tmp_path / "seg.h5"
    code, stdout, err = _run(["postprocess", "--prob", root / "prob.h5", "--out", out,
                              "--workers", "1"], capsys)
    assert code == 0, err
    assert "post-processing: seeded (method defaults; seed_th derived: " in stdout
    with h5py.File(out) as handle:
        ids = handle["volumes/labels/neuron_ids"][()]
        assert tuple(handle["volumes/labels/neuron_ids"].attrs["resolution"]) == (40, 4, 4)
    np.testing.assert_array_equal(ids, segment_volume(
        prob, "seeded", {"smooth_px": default_smooth_px((4.0, 4.0))}))
    # a boundary map from another tool, inverted, as TIFF: the same result
    inverted = tmp_path / "inverted.h5"
    code, _, err = _run(["postprocess", "--prob", root / "boundary.tif", "--invert", "--out",
                         inverted, "--workers", "2"], capsys)
    assert code == 0, err
    with h5py.File(inverted) as handle:
        np.testing.assert_array_equal(handle["volumes/labels/neuron_ids"][()], ids)


def test_postprocess_thesis_method_and_kept_boundaries(tmp_path, probabilities, capsys):
    root, prob, volume = probabilities
    out = tmp_path / "thesis.h5"
    code, stdout, err = _run(["postprocess", "--prob", root / "prob.h5", "--out", out,
                              "--method", "thesis", "--sig-th", "0.7", "--keep-boundaries"],
                             capsys)
    assert code == 0, err
    assert "sig_th from the command line" in stdout and "boundary voxels are 0" in stdout
    with h5py.File(out) as handle:
        kept = handle["volumes/labels/neuron_ids"][()]
    assert kept.min() == 0
    expected = [watershed_postprocess(p, 0.7, 0.91) for p in prob]
    for got, want in zip(kept, expected, strict=True):
        assert len(np.unique(got)) == len(np.unique(want))
    code, stdout, err = _run(["evaluate", "--seg", out, "--gt", root / "prob.h5"], capsys)
    assert code == 2  # prob.h5 holds no labels


def test_evaluate_warns_about_boundaries_and_matches_the_notebooks(tmp_path, probabilities,
                                                                  stacks, capsys):
    root, prob, volume = probabilities
    stack_root, _ = stacks
    out = tmp_path / "kept.h5"
    _run(["postprocess", "--prob", root / "prob.h5", "--out", out, "--method", "thesis",
          "--keep-boundaries"], capsys)
    code, stdout, err = _run(["evaluate", "--seg", out, "--gt", stack_root / "labels.tif",
                              "--protocol", "thesis"], capsys)
    assert code == 0, err
    scores = json.loads(out.with_suffix(".scores.json").read_text())["per_slice_mean"]
    notebook = evaluate_slices(prob, volume.labels.astype(np.int64), 0.83, 0.91, pixel_nm=4.0)
    assert scores["voi"] == pytest.approx(notebook["voi"])
    assert scores["arand"] == pytest.approx(notebook["arand"])
    code, stdout, err = _run(["evaluate", "--seg", out, "--gt", stack_root / "labels.tif"],
                             capsys)
    assert code == 2 and "kept.scores.json: already exists" in err  # the thesis scores stay
    code, stdout, err = _run(["evaluate", "--seg", out, "--gt", stack_root / "labels.tif",
                              "--overwrite"], capsys)
    assert code == 0 and "% of voxels" in err and "are 0" in err


def test_evaluate_plain_protocol(tmp_path, stacks, capsys):
    """``--protocol plain``: gt 0 ignored, no band; the notebooks' function, named in the JSON."""
    root, volume = stacks
    gt = volume.labels.astype(np.int64)
    seg = gt.copy()
    seg[:, :40, :40] = seg[:, 40, 40][:, None, None]  # a merge in every slice
    tifffile.imwrite(tmp_path / "seg.tif", seg.astype(np.uint32), photometric="minisblack")
    code, out, err = _run(["evaluate", "--seg", tmp_path / "seg.tif", "--gt",
                           root / "labels.tif", "--protocol", "plain"], capsys)
    assert code == 0, err
    assert "protocol plain, 8 slices" in out
    scores = json.loads((tmp_path / "seg.scores.json").read_text())
    assert scores["protocol"] == "plain" and "no boundary band" in scores["protocol_definition"]
    expected = score_volume(seg, gt, "plain", pixel_nm=4.0).mean()
    assert scores["per_slice_mean"]["voi_merge"] == pytest.approx(expected["voi_merge"])
    assert scores["per_slice_mean"]["voi_merge"] > 0.01


@pytest.mark.parametrize("args, fragments", [
    (["--prob-key", "nothing"], ["prob.h5", "'nothing' not found"]),
    (["--seed-th", "1.5"], ["seed_th must lie in [0, 1]"]),
    (["--sig-th", "0.5"], ["--sig-th is a threshold of another method"]),
    (["--method", "seeded", "--keep-boundaries"], ["seeded method has none"]),
    (["--workers", "0"], ["--workers must be >= 1"]),
])
def test_postprocess_bad_arguments(tmp_path, probabilities, capsys, args, fragments):
    root, _, _ = probabilities
    _expect_error(capsys, ["postprocess", "--prob", root / "prob.h5", "--out",
                           tmp_path / "s.h5", *args], *fragments)
    assert not (tmp_path / "s.h5").exists()


def test_segment_tiles_with_the_profile_the_checkpoint_was_trained_with():
    from emseg_lib.cli.segment import tiling_profile
    from emseg_lib.train import Checkpoint

    def trained(state: dict) -> Checkpoint:
        return Checkpoint(Path("best.pt"), state)

    assert tiling_profile(None, trained({"identity": {"profile": "full"}})) == "full"
    assert tiling_profile("smoke", trained({"identity": {"profile": "full"}})) == "smoke"
    assert tiling_profile(None, trained({"identity": {"profile": "no such profile"}})) == "quick"
    assert tiling_profile(None, trained({})) == "quick"
