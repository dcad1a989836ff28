"""Fault suite for the ``emseg`` command line: bad data, bad places, signals, a full disk.

Every case runs a command that must fail and asserts the contract:

* exit code 2 (130 when interrupted);
* exactly one ``emseg: error:`` (or ``emseg: interrupted``) line, the last one on stderr,
  naming the file or flag, and no traceback;
* every file of the case's folder (inputs and earlier outputs) byte-identical afterwards,
  and no new file (:func:`snapshot` before and after).

Each case works on its own copy of a small data set (:func:`case`); a real training run is
made once per module (:func:`world`). Signals reach the CLI in a subprocess paused at a known
point by :data:`PAUSING_CLI` (a wrapper around ``main`` that sleeps at the second
post-processed chunk and at each training epoch), so the kill and interrupt cases are
deterministic.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import json
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import torch

from emseg_lib.cli import main
from emseg_lib.data import EMVolume, save_cremi, synthetic_em_volume
from emseg_lib.data.cremi import LABELS_KEY, RAW_KEY
from emseg_lib.data.formats import load_stack
from emseg_lib.data.targets import instance_boundary
from emseg_lib.models import UNet2D, model_spec
from emseg_lib.output.pipeline import PROBABILITY_KEY
from emseg_lib.scoring.evaluation import score_volume
from emseg_lib.train.checkpoint import save_checkpoint
from emseg_lib.train.runs import run_lock

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
SHAPE = (4, 160, 160)  # 160 x 160: the quick profile's crops fit, for the profile case
TRAIN = ["--model", "unet2d", "--profile", "smoke", "--epochs", "1", "--device", "cpu",
         "--workers", "1"]
INPUTS = ("raw.tif", "labels.tif", "cremi.h5", "prob.h5", "seg.h5", "ckpt.pt")

PAUSING_CLI = '''
"""emseg with pauses: creates $EMSEG_TEST_PAUSED and sleeps at the second post-processed
chunk (the first one is written) and at the first training epoch."""
import os
import signal
import sys
import time
from pathlib import Path

# Ctrl-C as in a terminal, also when the tests run as a background job (which
# starts with SIGINT ignored, and Python then never raises KeyboardInterrupt)
signal.signal(signal.SIGINT, signal.default_int_handler)

from emseg_lib.output import pipeline
from emseg_lib.cli import main
from emseg_lib.train import loop


def pausing(original, at_call):
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(None)
        if len(calls) == at_call:
            Path(os.environ["EMSEG_TEST_PAUSED"]).touch()
            time.sleep(3600)  # until the test signals it; never reached in a passing run
        return original(*args, **kwargs)
    return wrapper


pipeline.segment_volume = pausing(pipeline.segment_volume, 2)
loop._epoch = pausing(loop._epoch, 1)
sys.exit(main(sys.argv[1:]))
'''


# -- helpers -------------------------------------------------------------------------------

def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``, hidden ones too: SHA-256 of a file, target of a link."""
    entries = {}
    for path in sorted(folder.rglob("*")):
        key = path.relative_to(folder).as_posix()
        if path.is_symlink():
            entries[key] = f"-> {os.readlink(path)}"
        elif path.is_file():
            entries[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            entries[key] = "folder"
    return entries


def the_line(err: str, prefix: str) -> str:
    """The one ``emseg:`` line of ``err``, which must be its last line and start with
    ``prefix``; no traceback (progress bars may come before)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    ours = [line for line in lines if line.startswith("emseg:")
            and not line.startswith("emseg: warning:")]
    assert len(ours) == 1 and lines[-1] == ours[0], err
    assert ours[0].startswith(prefix), err
    return ours[0]


def cli(capsys, args: Sequence) -> tuple[int, str, str]:
    """``emseg ARGS`` in this process: exit code, stdout, stderr."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit_:  # argparse refuses an argument by exiting
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cli_process(args: Sequence, **options) -> subprocess.CompletedProcess:
    """``python -m emseg_lib.cli ARGS`` in a subprocess (text output captured)."""
    return subprocess.run([sys.executable, "-m", "emseg_lib.cli", *map(str, args)],
                          capture_output=True, text=True, env=ENV, timeout=900, **options)


def refused(capsys, folder: Path, args: Sequence, *fragments: str) -> str:
    """Run ``emseg ARGS``: exit 2, one error line holding every fragment, ``folder`` intact."""
    before = snapshot(folder)
    code, _, err = cli(capsys, args)
    line = the_line(err, "emseg: error: ")
    assert code == 2, err
    for fragment in fragments:
        assert fragment in line, line
    assert snapshot(folder) == before
    return line


def write_h5(path: Path, datasets: dict[str, np.ndarray | tuple], resolution=(40.0, 4.0, 4.0)
             ) -> Path:
    """An HDF5 file of ``{key: array, or (shape, dtype) for a chunked empty dataset}``."""
    with h5py.File(path, "w") as handle:
        for key, data in datasets.items():
            if isinstance(data, tuple):
                node = handle.create_dataset(key, shape=data[0], dtype=data[1],
                                             chunks=(1, 64, 64))
            else:
                node = handle.create_dataset(key, data=data, chunks=(1, *data.shape[1:]),
                                             compression="gzip")
            if resolution is not None:
                node.attrs["resolution"] = resolution
    return path


def damage_chunk(path: Path, key: str, z: int) -> None:
    """Zero 64 bytes of the stored chunk holding slice ``z`` of ``key``; the header reads."""
    with h5py.File(path, "r") as handle:
        offset = handle[key].id.get_chunk_info_by_coord((z, 0, 0)).byte_offset
    data = bytearray(path.read_bytes())
    data[offset:offset + 64] = bytes(64)
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def link(kind: str, target: Path, name: Path) -> Path:
    """``name`` as the same file as ``target``: ``path`` (target itself), symlink, hardlink."""
    if kind == "path":
        return target
    if kind == "symlink":
        name.symlink_to(target)
    else:
        os.link(target, name)
    return name


def tiff(path: Path, array: np.ndarray) -> Path:
    tifffile.imwrite(path, array, photometric="minisblack")
    return path


# -- data ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class World:
    """The module's data: input files, a real run folder, the volume, the pausing CLI."""

    root: Path
    volume: EMVolume
    pausing_cli: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("world")
    volume = synthetic_em_volume(SHAPE, seed=5)
    tiff(root / "raw.tif", volume.raw)
    tiff(root / "labels.tif", volume.labels.astype(np.uint32))
    save_cremi(volume, root / "cremi.h5")
    prob = 0.05 + 0.9 * (1.0 - instance_boundary(volume.labels).astype(np.float32))
    write_h5(root / "prob.h5", {"predictions": prob.astype(np.float32)})
    write_h5(root / "seg.h5", {LABELS_KEY: volume.labels.astype(np.uint64)})
    torch.manual_seed(0)
    model = UNet2D(base_width=2, depth=2)
    save_checkpoint(root / "ckpt.pt", {"model": model.state_dict(),
                                       "model_spec": model_spec(model)})
    code = main([str(a) for a in ["train", *TRAIN, "--data", root / "raw.tif", "--labels",
                                  root / "labels.tif", "--out", root / "run"]])
    assert code == 0
    (root / "pausing_cli.py").write_text(PAUSING_CLI)
    return World(root, volume, root / "pausing_cli.py")


@dataclasses.dataclass(frozen=True)
class Case:
    """One case's folder (watched: byte-identical after a refusal) with copies of the inputs."""

    dir: Path
    world: World

    def __truediv__(self, name: str) -> Path:
        return self.dir / name

    def run_folder(self) -> Path:
        """A copy of the module's trained run folder."""
        shutil.copytree(self.world.root / "run", self.dir / "run")
        return self.dir / "run"


@pytest.fixture
def case(tmp_path, world) -> Case:
    folder = tmp_path / "case"
    folder.mkdir()
    for name in INPUTS:
        shutil.copy2(world.root / name, folder / name)
    return Case(folder, world)


def segment_args(c: Case, out: Path, *extra, data: Path | None = None,
                 device: str = "cpu") -> list:
    return ["segment", "--checkpoint", c / "ckpt.pt", "--data", data or c / "cremi.h5",
            "--out", out, "--device", device, "--workers", "1", "--profile", "smoke", *extra]


def postprocess_args(c: Case, out: Path, *extra, prob: Path | None = None) -> list:
    return ["postprocess", "--prob", prob or c / "prob.h5", "--out", out, "--workers", "1",
            *extra]


def evaluate_args(c: Case, json_path: Path, *extra, seg: Path | None = None,
                  gt: Path | None = None) -> list:
    return ["evaluate", "--seg", seg or c / "seg.h5", "--gt", gt or c / "labels.tif",
            "--json", json_path, *extra]


def train_args(c: Case, out: Path, *extra, data: Path | None = None,
               labels: Path | None = None, tiff_labels: bool = True) -> list:
    labels_args = ["--labels", labels or c / "labels.tif"] if tiff_labels else []
    return ["train", *TRAIN, "--data", data or c / "raw.tif", *labels_args, "--out", out,
            *extra]


# -- 1. an output that is an input (also through a link) -------------------------------------

@pytest.mark.parametrize("command, kind, victim", [
    ("segment", "path", "ckpt.pt"),
    ("segment", "symlink", "cremi.h5"),
    ("segment", "hardlink", "ckpt.pt"),
    ("segment", "symlink", "labels.tif"),
    ("postprocess", "path", "prob.h5"),
    ("postprocess", "hardlink", "prob.h5"),
    ("evaluate", "path", "seg.h5"),
    ("evaluate", "symlink", "labels.tif"),
    ("evaluate", "hardlink", "labels.tif"),
    ("train", "path", "raw.tif"),
    ("train", "symlink", "labels.tif"),
    ("train", "hardlink", "raw.tif"),
])
def test_an_output_that_is_an_input_is_refused(capsys, case, command, kind, victim):
    out = link(kind, case / victim, case / "out.h5")
    tiff_data = ["--labels", case / "labels.tif"] if victim.endswith(".tif") else []
    args = {
        "segment": segment_args(case, out, *tiff_data,
                                data=case / ("raw.tif" if tiff_data else "cremi.h5")),
        "postprocess": postprocess_args(case, out),
        "evaluate": evaluate_args(case, out),
        "train": train_args(case, out),
    }[command]
    refused(capsys, case.dir, args, str(out), "is the input", victim)


# -- 2. an existing output without --overwrite -----------------------------------------------

@pytest.mark.parametrize("command", ["segment", "postprocess", "evaluate"])
def test_an_existing_output_needs_overwrite(capsys, case, command):
    out = case / "previous.h5"
    out.write_bytes(b"results of an earlier run")
    args = {"segment": segment_args(case, out), "postprocess": postprocess_args(case, out),
            "evaluate": evaluate_args(case, out)}[command]
    refused(capsys, case.dir, args, "previous.h5: already exists", "--overwrite")


def test_overwrite_replaces_an_output_only_when_complete(capsys, case):
    out = case / "previous.h5"
    out.write_bytes(b"results of an earlier run")
    code, _, err = cli(capsys, postprocess_args(case, out, "--overwrite"))
    assert code == 0, err
    with h5py.File(out) as handle:
        assert handle[LABELS_KEY].shape == SHAPE
    assert not [p for p in case.dir.iterdir() if p.name.startswith(".")]


# -- 3. where the output goes ----------------------------------------------------------------

def test_output_folder_missing(capsys, case):
    refused(capsys, case.dir, segment_args(case, case / "missing" / "seg.h5"),
            "missing/seg.h5", "does not exist")


def test_output_is_a_folder(capsys, case):
    (case / "results").mkdir()
    refused(capsys, case.dir, postprocess_args(case, case / "results"), "results: is a folder")


def test_json_output_is_a_folder(capsys, case):
    (case / "scores").mkdir()
    refused(capsys, case.dir, evaluate_args(case, case / "scores"), "scores: is a folder")


def test_output_under_a_file(capsys, case):
    refused(capsys, case.dir, segment_args(case, case / "raw.tif" / "seg.h5"),
            "raw.tif is not a folder")


def test_output_not_named_h5(capsys, case):
    refused(capsys, case.dir, postprocess_args(case, case / "seg.tif"), "seg.tif",
            "give it an .h5 or .zarr name")


def test_run_folder_holding_other_files(capsys, case):
    (case / "notes").mkdir()
    (case / "notes" / "todo.txt").write_text("mine")
    refused(capsys, case.dir, train_args(case, case / "notes"), "notes: folder holds other "
            "files")


def test_too_little_free_disk_is_refused_before_work(capsys, case, monkeypatch):
    usage = shutil.disk_usage(case.dir)
    monkeypatch.setattr("emseg_lib.infra.output_checks.shutil.disk_usage",
                        lambda folder: usage._replace(free=1000))
    refused(capsys, case.dir, segment_args(case, case / "seg_out.h5"), "seg_out.h5",
            "needs about", "only 1000 B is free")


def _read_only_run(folder: Path, args: Sequence) -> subprocess.CompletedProcess:
    """The CLI with ``folder`` read-only: a read-only bind mount in a private mount namespace
    when root (permission bits do not stop root), else permission bits."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            return cli_process(args)
        finally:
            folder.chmod(0o755)
    if shutil.which("unshare") is None:
        pytest.skip("root without unshare: cannot make a read-only folder")
    q = shlex.quote
    script = (f"mount --bind {q(str(folder))} {q(str(folder))} && mount -o remount,bind,ro "
              f"{q(str(folder))} && exec {q(sys.executable)} -m emseg_lib.cli "
              + " ".join(q(str(a)) for a in args))
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                            text=True, env=ENV, timeout=900)
    if result.stderr.startswith(("unshare:", "mount:")):
        pytest.skip(f"cannot mount a read-only folder here: {result.stderr.strip()}")
    return result


@pytest.mark.parametrize("command", ["postprocess", "train"])
def test_read_only_output_folder(case, command):
    folder = case / "read_only"
    folder.mkdir()
    out = folder / ("seg.h5" if command == "postprocess" else "run")
    args = postprocess_args(case, out) if command == "postprocess" else train_args(case, out)
    before = snapshot(case.dir)
    result = _read_only_run(folder, args)
    line = the_line(result.stderr, "emseg: error: ")
    assert result.returncode == 2
    assert f"folder {folder} is not writable" in line
    assert snapshot(case.dir) == before


# -- 4. devices ------------------------------------------------------------------------------

def test_unknown_device_is_refused_before_the_checkpoint_is_read(capsys, case):
    refused(capsys, case.dir, ["segment", "--checkpoint", case / "absent.pt", "--data",
                               case / "cremi.h5", "--out", case / "s.h5", "--device", "gpu"],
            "device='gpu' is not a device emseg can use")


def test_absent_gpu_is_refused(capsys, case):
    line = refused(capsys, case.dir, segment_args(case, case / "s.h5", device="cuda:99"),
                   "device='cuda:99'")
    assert "none is available" in line or "CUDA device(s)" in line


def test_train_device_is_checked_before_the_data(capsys, case):
    refused(capsys, case.dir, ["train", "--model", "unet2d", "--data", case / "absent.tif",
                               "--labels", case / "labels.tif", "--out", case / "run",
                               "--device", "banana"], "device='banana'")


# -- 5. thresholds, workers, chunk size, epochs ----------------------------------------------

@pytest.mark.parametrize("command, extra, fragment", [
    ("segment", ["--seed-th", "2"], "seed_th must lie in [0, 1], got 2"),
    ("segment", ["--chunk-slices", "0"], "--chunk-slices must be >= 1, got 0"),
    ("segment", ["--method", "seeded", "--sig-th", "0.5"], "--sig-th is a threshold of another"),
    ("postprocess", ["--chunk-slices", "-3"], "--chunk-slices must be >= 1, got -3"),
    ("postprocess", ["--edge-th", "nan"], "edge_th must lie in [0, 1], got nan"),
    ("postprocess", ["--smooth-px", "1000"], "smooth_px must lie in [0, 100]"),
    ("postprocess", ["--method", "thesis", "--sig-th", "0.8", "--edge-th", "0.5"],
     "--edge-th 0.5 is below --sig-th 0.8"),
    ("train", ["--workers", "0"], "--workers must be >= 1, got 0"),
    ("train", ["--epochs", "0"], "--epochs must be >= 1, got 0"),
    ("train", ["--minutes", "0"], "--minutes must be > 0"),
    ("train", ["--minutes", "nan"], "--minutes must be > 0"),
    ("train", ["--val-slices", "1.5"], "--val-slices: a fraction must lie strictly between"),
    ("train", ["--val-slices", "two"], "--val-slices takes a count (4"),
])
def test_bad_numbers_are_refused_before_any_data_is_read(capsys, case, command, extra,
                                                         fragment):
    absent = case / "absent.h5"  # never read: the arguments are checked first
    args = {"segment": ["segment", "--checkpoint", case / "absent.pt", "--data", absent,
                        "--out", case / "s.h5", *extra],
            "postprocess": ["postprocess", "--prob", absent, "--out", case / "s.h5", *extra],
            "train": ["train", "--model", "unet2d", "--data", absent, "--labels", absent,
                      "--out", case / "run", *extra]}[command]
    refused(capsys, case.dir, args, fragment)


@pytest.mark.parametrize("extra, fragment", [
    (["--workers", "abc"], "argument --workers: invalid int value: 'abc'"),
    (["--method", "magic"], "argument --method: invalid choice: 'magic'"),
])
def test_unreadable_values_are_one_line_too(capsys, case, extra, fragment):
    refused(capsys, case.dir, postprocess_args(case, case / "s.h5", *extra), fragment,
            "(see emseg postprocess --help)")


def test_segment_workers(capsys, case):
    refused(capsys, case.dir, segment_args(case, case / "s.h5") + ["--workers", "0"],
            "--workers must be >= 1, got 0")


# -- 6. dtypes -------------------------------------------------------------------------------

def _uint16_cremi(c: Case) -> Path:
    raw = c.world.volume.raw.astype(np.uint16) * 200 + 1000
    return write_h5(c / "raw16.h5", {RAW_KEY: raw})


def test_uint16_hdf5_raw_needs_rescale(capsys, case):
    refused(capsys, case.dir, segment_args(case, case / "s.h5", data=_uint16_cremi(case)),
            "raw16.h5: raw data is uint16, expected uint8; pass --rescale")


def test_uint16_hdf5_raw_with_rescale_is_segmented_chunk_by_chunk_as_if_loaded_whole(
        capsys, case):
    raw16 = _uint16_cremi(case)
    code, out, err = cli(capsys, segment_args(case, case / "a.h5", "--rescale",
                                              "--chunk-slices", "1", data=raw16))
    assert code == 0, err
    assert "uint16, rescaled to 0..255" in out
    whole = load_stack(raw16, rescale=True).raw  # min..max of the whole stack, at once
    write_h5(case / "raw8.h5", {RAW_KEY: whole})
    # the same chunks: the derived thresholds are derived per chunk
    assert cli(capsys, segment_args(case, case / "b.h5", "--chunk-slices", "1",
                                    data=case / "raw8.h5"))[0] == 0
    with h5py.File(case / "a.h5") as a, h5py.File(case / "b.h5") as b:
        for key in (LABELS_KEY, PROBABILITY_KEY):
            np.testing.assert_array_equal(a[key][()], b[key][()])


def test_uint16_tiff_needs_rescale_for_training(capsys, case):
    tiff(case / "raw16.tif", case.world.volume.raw.astype(np.uint16))
    refused(capsys, case.dir, train_args(case, case / "run", data=case / "raw16.tif"),
            "raw16.tif: raw data is uint16, expected uint8; pass --rescale")


def test_integer_probabilities_are_refused(capsys, case):
    write_h5(case / "int.h5", {"p": np.ones(SHAPE, np.int32)})
    refused(capsys, case.dir, postprocess_args(case, case / "s.h5", prob=case / "int.h5"),
            "int.h5: probabilities must be float in [0, 1] (or uint8 0..255), got int32")


def test_uint8_probabilities_are_read_as_value_over_255(capsys, case):
    with h5py.File(case / "prob.h5") as handle:
        prob = handle["predictions"][()]
    write_h5(case / "prob8.h5", {"p": np.rint(prob * 255).astype(np.uint8)})
    code, out, err = cli(capsys, postprocess_args(case, case / "s.h5", prob=case / "prob8.h5"))
    assert code == 0, err
    assert "every voxel has a segment id" in out


def test_float_segment_ids_are_refused(capsys, case):
    tiff(case / "seg_float.tif", case.world.volume.labels.astype(np.float32))
    refused(capsys, case.dir, evaluate_args(case, case / "s.json", seg=case / "seg_float.tif"),
            "seg_float.tif: segment ids must be integers, got float32")


# -- 7. NaN / inf ----------------------------------------------------------------------------

def test_nan_hdf5_raw_is_refused_naming_the_slice(capsys, case):
    raw = case.world.volume.raw.astype(np.float32)
    raw[2, 5, 5] = np.nan
    write_h5(case / "nan.h5", {RAW_KEY: raw})
    refused(capsys, case.dir, segment_args(case, case / "s.h5", "--rescale", "--chunk-slices", "3",
                                           data=case / "nan.h5"),
            "nan.h5: raw slice 2 holds 1 NaN/inf values")


def test_inf_tiff_raw_is_refused_naming_the_slice(capsys, case):
    raw = case.world.volume.raw.astype(np.float32)
    raw[1, 0, :3] = np.inf
    tiff(case / "inf.tif", raw)
    refused(capsys, case.dir, train_args(case, case / "run", "--rescale", data=case / "inf.tif"),
            "inf.tif: raw slice 1 holds 3 NaN/inf")


@pytest.mark.parametrize("value, slice_index, fragment", [
    (np.nan, 3, "probability slice 3 holds 1 NaN/inf values"),
    (np.inf, 0, "probability slice 0 holds 1 NaN/inf values"),
    (1.5, 2, "probability slice 2 has values in [0.05, 1.5]"),
])
def test_bad_probabilities_are_refused_before_the_output_is_touched(capsys, case, value,
                                                                    slice_index, fragment):
    with h5py.File(case / "prob.h5") as handle:
        prob = handle["predictions"][()]
    prob[slice_index, 7, 7] = value
    write_h5(case / "bad.h5", {"p": prob})
    previous = case / "previous.h5"
    previous.write_bytes(b"results of an earlier run")
    refused(capsys, case.dir, postprocess_args(case, previous, "--overwrite", "--chunk-slices", "1",
                                               prob=case / "bad.h5"), "bad.h5: " + fragment)


def test_nan_probabilities_in_a_tiff(capsys, case):
    prob = np.full(SHAPE, 0.5, np.float32)
    prob[1, 2, 3] = np.nan
    tiff(case / "prob.tif", prob)
    refused(capsys, case.dir, postprocess_args(case, case / "s.h5", prob=case / "prob.tif"),
            "prob.tif: probability slice 1 holds 1 NaN/inf values")


# -- 8. negative label ids -------------------------------------------------------------------

def _negative(c: Case, name: str, at_slice: int) -> Path:
    labels = c.world.volume.labels.astype(np.int32)
    labels[at_slice, 3, 3] = -1
    return tiff(c / name, labels)


def test_negative_training_labels(capsys, case):
    labels = _negative(case, "neg.tif", 2)
    refused(capsys, case.dir, train_args(case, case / "run", labels=labels),
            "neg.tif: labels hold negative ids (lowest -1, first in slice 2)")


def test_negative_ground_truth(capsys, case):
    gt = _negative(case, "neg_gt.tif", 1)
    refused(capsys, case.dir, evaluate_args(case, case / "s.json", gt=gt),
            "neg_gt.tif: labels hold negative ids")


def test_negative_segment_ids(capsys, case):
    seg = _negative(case, "neg_seg.tif", 3)
    refused(capsys, case.dir, evaluate_args(case, case / "s.json", seg=seg),
            "neg_seg.tif: labels hold negative ids (lowest -1, first in slice 3)")


def test_negative_ids_in_a_cremi_file(capsys, case):
    labels = case.world.volume.labels.astype(np.int64)
    labels[0, 0, 0] = -7
    write_h5(case / "neg.h5", {RAW_KEY: case.world.volume.raw, LABELS_KEY: labels})
    refused(capsys, case.dir,
            train_args(case, case / "run", data=case / "neg.h5", tiff_labels=False),
            "neg.h5: labels hold negative ids (lowest -7")


# -- 9. damaged files ------------------------------------------------------------------------

def test_truncated_hdf5_raw(capsys, case):
    truncate(case / "cremi.h5")
    refused(capsys, case.dir, segment_args(case, case / "s.h5"),
            "cremi.h5: cannot be opened as HDF5")


def test_damaged_hdf5_chunk_is_found_before_the_output_is_started(capsys, case):
    raw = write_h5(case / "raw.h5", {RAW_KEY: case.world.volume.raw})  # a chunk per slice
    damage_chunk(raw, RAW_KEY, 2)
    refused(capsys, case.dir, segment_args(case, case / "s.h5", "--chunk-slices", "1",
                                           data=raw),
            "raw.h5: slices 2..2 cannot be read", "truncated or corrupt")


def test_not_hdf5_at_all(capsys, case):
    (case / "fake.h5").write_bytes(b"this is not HDF5" * 100)
    refused(capsys, case.dir, segment_args(case, case / "s.h5", data=case / "fake.h5"),
            "fake.h5: not an HDF5 file")


def test_truncated_tiff(capsys, case):
    truncate(case / "raw.tif")
    refused(capsys, case.dir, train_args(case, case / "run"), "raw.tif: cannot be read")


def test_corrupt_tiff_for_segment(capsys, case):
    (case / "garbage.tif").write_bytes(b"II*\x00" + b"\xff" * 200)
    refused(capsys, case.dir, segment_args(case, case / "s.h5", data=case / "garbage.tif"),
            "garbage.tif: cannot be read as TIFF")


def test_truncated_probabilities(capsys, case):
    truncate(case / "prob.h5")
    refused(capsys, case.dir, postprocess_args(case, case / "s.h5"),
            "prob.h5: cannot be opened as HDF5")


def test_damaged_segmentation_chunk(capsys, case):
    damage_chunk(case / "seg.h5", LABELS_KEY, 1)
    refused(capsys, case.dir, evaluate_args(case, case / "s.json"),
            "seg.h5: dataset 'volumes/labels/neuron_ids' cannot be read")


# -- 10. headers claiming absurd sizes -------------------------------------------------------

HUGE = ((62_500, 62_500, 62_500), np.uint8)


def test_huge_raw_header_for_segment(capsys, case):
    write_h5(case / "huge.h5", {RAW_KEY: HUGE})
    refused(capsys, case.dir, segment_args(case, case / "s.h5", data=case / "huge.h5"),
            "huge.h5: 'volumes/raw' chunk (8, 62500, 62500) uint8", "of memory")


def test_huge_raw_header_for_training(capsys, case):
    write_h5(case / "huge.h5", {RAW_KEY: HUGE, LABELS_KEY: (HUGE[0], np.uint64)})
    refused(capsys, case.dir,
            train_args(case, case / "run", data=case / "huge.h5", tiff_labels=False),
            "huge.h5: volumes/raw (62500, 62500, 62500) uint8", "of memory")


def test_huge_probability_header(capsys, case):
    write_h5(case / "huge.h5", {"p": (HUGE[0], np.float32)})
    refused(capsys, case.dir, postprocess_args(case, case / "s.h5", prob=case / "huge.h5"),
            "huge.h5: 'p' chunk (8, 62500, 62500) float32", "of memory")


def test_huge_segmentation_header(capsys, case):
    write_h5(case / "huge.h5", {LABELS_KEY: (HUGE[0], np.uint64)})
    refused(capsys, case.dir, evaluate_args(case, case / "s.json", seg=case / "huge.h5"),
            "huge.h5: volumes/labels/neuron_ids (62500, 62500, 62500) uint64", "of memory")


# -- 11. missing datasets --------------------------------------------------------------------

def test_missing_raw_dataset(capsys, case):
    refused(capsys, case.dir, segment_args(case, case / "s.h5", data=case / "seg.h5"),
            "seg.h5: dataset 'volumes/raw' not found", "volumes/labels/neuron_ids")


def test_missing_probability_key(capsys, case):
    refused(capsys, case.dir, postprocess_args(case, case / "s.h5", "--prob-key", "no"),
            "prob.h5: dataset 'no' not found (--prob-key)")


def test_ambiguous_probability_dataset(capsys, case):
    write_h5(case / "two.h5", {"a": np.zeros(SHAPE, np.float32),
                               "b": np.zeros(SHAPE, np.float32)})
    refused(capsys, case.dir, postprocess_args(case, case / "s.h5", prob=case / "two.h5"),
            "two.h5: no 'volumes/predictions/cell_probability' dataset", "--prob-key")


def test_missing_segmentation_dataset(capsys, case):
    refused(capsys, case.dir, evaluate_args(case, case / "s.json", seg=case / "prob.h5"),
            "prob.h5: dataset 'volumes/labels/neuron_ids' not found")


def test_ground_truth_without_labels(capsys, case):
    write_h5(case / "raw_only.h5", {RAW_KEY: case.world.volume.raw})
    refused(capsys, case.dir, evaluate_args(case, case / "s.json", gt=case / "raw_only.h5"),
            "raw_only.h5: has no 'volumes/labels/neuron_ids'")


# -- 12. shapes ------------------------------------------------------------------------------

def test_labels_of_another_shape(capsys, case):
    tiff(case / "short.tif", case.world.volume.labels[:3].astype(np.uint32))
    refused(capsys, case.dir, train_args(case, case / "run", labels=case / "short.tif"),
            "short.tif: labels have shape (3, 160, 160)", "must match")


def test_segmentation_and_ground_truth_shapes(capsys, case):
    tiff(case / "short.tif", case.world.volume.labels[:3].astype(np.uint32))
    refused(capsys, case.dir, evaluate_args(case, case / "s.json", seg=case / "short.tif"),
            "labels.tif: ground truth has shape (4, 160, 160)", "must match")


def test_flat_raw_dataset(capsys, case):
    with h5py.File(case / "flat.h5", "w") as handle:
        handle[RAW_KEY] = np.zeros((160, 160), np.uint8)
    refused(capsys, case.dir, segment_args(case, case / "s.h5", data=case / "flat.h5"),
            "flat.h5: dataset 'volumes/raw' must be 3-D")


def test_cremi_raw_and_labels_differ(capsys, case):
    write_h5(case / "mismatch.h5", {RAW_KEY: case.world.volume.raw,
                                    LABELS_KEY: np.ones((4, 160, 96), np.uint64)})
    refused(capsys, case.dir,
            train_args(case, case / "run", data=case / "mismatch.h5", tiff_labels=False),
            "mismatch.h5: 'volumes/labels/neuron_ids' has shape (4, 160, 96)")


# -- 13. checkpoints -------------------------------------------------------------------------

class _RunsCodeOnLoad:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_flipped_weight_byte(capsys, case):
    model = UNet2D(base_width=2, depth=2)
    with torch.no_grad():
        model.head.weight.fill_(1234.5)  # a recognisable byte pattern
    save_checkpoint(case / "ckpt.pt", {"model": model.state_dict(),
                                       "model_spec": model_spec(model)})
    data = bytearray((case / "ckpt.pt").read_bytes())
    data[data.find(np.float32(1234.5).tobytes())] ^= 0x01
    (case / "ckpt.pt").write_bytes(bytes(data))
    refused(capsys, case.dir, segment_args(case, case / "s.h5"),
            "ckpt.pt: the weights do not match their SHA-256")


def test_pickle_that_would_run_code(capsys, case, tmp_path):
    marker = tmp_path / "code_ran"
    state = torch.load(case / "ckpt.pt", weights_only=True)
    state["payload"] = _RunsCodeOnLoad(marker)
    torch.save(state, case / "ckpt.pt")
    refused(capsys, case.dir, segment_args(case, case / "s.h5"),
            "ckpt.pt: refused: the file holds Python objects")
    assert not marker.exists()


def test_truncated_checkpoint(capsys, case):
    truncate(case / "ckpt.pt")
    refused(capsys, case.dir, segment_args(case, case / "s.h5"),
            "ckpt.pt: not a readable torch checkpoint")


def test_foreign_checkpoint(capsys, case):
    torch.save({"state_dict": UNet2D(base_width=2, depth=2).state_dict()}, case / "ckpt.pt")
    refused(capsys, case.dir, segment_args(case, case / "s.h5"),
            "ckpt.pt: not an emseg checkpoint")


def test_resuming_a_run_whose_last_checkpoint_has_a_flipped_weight_byte(capsys, case):
    run = case.run_folder()
    weights = torch.load(run / "last.pt", weights_only=True)["model"]
    tensor = next(t for t in weights.values() if t.numel() >= 64)
    data = bytearray((run / "last.pt").read_bytes())
    data[data.find(tensor.numpy().tobytes()) + 5] ^= 0x01
    (run / "last.pt").write_bytes(bytes(data))
    refused(capsys, case.dir, train_args(case, run, "--epochs", "2"),
            "last.pt: the weights do not match their SHA-256")


# -- 14. run folders: identity and lock ------------------------------------------------------

def test_resuming_with_other_data(capsys, case):
    run = case.run_folder()
    tiff(case / "other.tif", case.world.volume.raw[::-1])
    refused(capsys, case.dir, train_args(case, run, data=case / "other.tif"),
            f"{run}: this run folder (run.json) was trained with different data")


def test_resuming_with_another_seed(capsys, case):
    run = case.run_folder()
    refused(capsys, case.dir, train_args(case, run, "--seed", "1"),
            "trained with a different seed (seed was 0, now 1)")


def test_resuming_with_another_voxel_size(capsys, case):
    run = case.run_folder()
    refused(capsys, case.dir, train_args(case, run, "--resolution", "50", "5", "5"),
            "trained with different data (data.resolution was [40.0, 4.0, 4.0], now "
            "[50.0, 5.0, 5.0])")


def test_a_run_recorded_before_its_voxel_size_was_resumes(capsys, case):
    run = case.run_folder()
    record = json.loads((run / "run.json").read_text())
    del record["identity"]["data"]["resolution"]
    (run / "run.json").write_text(json.dumps(record))
    for name in ("last.pt", "best.pt"):
        identity = torch.load(run / name, weights_only=True)["identity"]
        del identity["data"]["resolution"]
        _resave(run / name, identity=identity)
    code, out, err = cli(capsys, train_args(case, run, "--epochs", "2"))
    assert code == 0, err


def test_resuming_with_another_split(capsys, case):
    run = case.run_folder()  # trained with the default split: train 0-2, validation 3
    refused(capsys, case.dir, train_args(case, run, "--val-slices", "2"),
            "trained with another split of the labelled slices (split.train was '0-2', now "
            "'0-1'; split.val was '3', now '2-3')")


def test_resuming_with_a_time_budget_continues(capsys, case):
    run = case.run_folder()  # 1 epoch done
    code, out, err = cli(capsys, train_args(case, run, "--epochs", "3", "--minutes", "1e-9"))
    assert code == 0, err
    assert "time budget of 1e-09 min ran out during epoch 1" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 2
    assert summary["budget"]["minutes"] == 1e-9 and summary["budget"]["epochs"] == 3
    assert summary["budget"]["stopped_by"] == "time budget"


def test_resuming_with_another_profile(capsys, case):
    run = case.run_folder()
    args = train_args(case, run)
    args[args.index("smoke")] = "quick"
    refused(capsys, case.dir, args, "trained with a different profile (profile was 'smoke', "
                                    "now 'quick'")


def test_a_second_trainer_is_refused_before_loading_data(capsys, case):
    run = case.run_folder()
    with run_lock(run):
        refused(capsys, case.dir, train_args(case, run, data=case / "absent.tif"),
                f"{run}: another trainer is using this run folder (PID {os.getpid()}")


# -- 15. downloads ---------------------------------------------------------------------------

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_fetch_with_a_wrong_checksum_keeps_the_users_file(capsys, case, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "sample_A_20160501.hdf").write_bytes((case / "cremi.h5").read_bytes())
    dest = case / "data"
    dest.mkdir()
    (dest / "sample_A_20160501.hdf").write_bytes(b"the user's own older copy")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        refused(capsys, case.dir, ["fetch", "cremi", "--sample", "A", "--dest", dest,
                                   "--base-url", f"http://127.0.0.1:{server.server_address[1]}"],
                "sample_A_20160501.hdf: downloaded file has SHA-256", "expected the pinned")
    finally:
        server.shutdown()
        server.server_close()


# -- 16. interrupts and kills ----------------------------------------------------------------

def _start_paused(c: Case, args: Sequence, scratch: Path, **options) -> subprocess.Popen:
    """The CLI in a subprocess, once it is paused mid-run (see :data:`PAUSING_CLI`)."""
    marker = scratch / "paused"
    process = subprocess.Popen([sys.executable, str(c.world.pausing_cli), *map(str, args)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**ENV, "EMSEG_TEST_PAUSED": str(marker)}, **options)
    deadline = time.monotonic() + 600  # a last guard: the CLI pauses within seconds
    while not marker.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the CLI never paused: {process.communicate()[1]}")
        time.sleep(0.05)
    return process


def _previous_output(c: Case) -> Path:
    out = c / "previous.h5"
    out.write_bytes(b"results of an earlier run")
    return out


@pytest.mark.parametrize("command", ["segment", "postprocess"])
def test_sigkill_mid_write_keeps_the_previous_output(capsys, case, tmp_path, command):
    out = _previous_output(case)
    builder = segment_args if command == "segment" else postprocess_args
    args = builder(case, out, "--chunk-slices", "1", "--overwrite")
    before = snapshot(case.dir)
    process = _start_paused(case, args, tmp_path)
    process.kill()
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    after = snapshot(case.dir)
    kept = ".previous.h5.partial"  # the first chunk was finished: kept for resuming
    new = [name for name in after if name not in before]
    temporary = [name for name in new if not name.startswith(kept)]
    assert len(temporary) == 1 and re.fullmatch(r"\.previous\.\d+-[0-9a-f]{8}\.tmp\.h5",
                                                 temporary[0])
    assert (case / temporary[0]).stat().st_size > 0  # the first chunk was being written
    assert f"{kept}/z000000.npz" in new and f"{kept}/z000001.npz" not in new
    assert {k: v for k, v in after.items() if k in before} == before
    code, stdout, err = cli(capsys, args)  # the next run clears the temporary, resumes
    assert code == 0, err
    assert f"removed {case / temporary[0]}, a partial file left by an interrupted" in stdout
    assert (f"resuming: 1 chunk(s) finished by an interrupted earlier run are taken from "
            f"{case / kept}") in stdout
    assert not [p for p in case.dir.iterdir() if p.name.startswith(".")]


def test_ctrl_c_while_segmenting(case, tmp_path):
    out = _previous_output(case)
    before = snapshot(case.dir)
    process = _start_paused(case, segment_args(case, out, "--chunk-slices", "1", "--overwrite"),
                            tmp_path)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 130, err
    _assert_interrupted_keeps_one_chunk(case, out, err, before)


def _assert_interrupted_keeps_one_chunk(c: Case, out: Path, err: str, before: dict) -> None:
    """Ctrl-C after the first chunk: the output and every other file as they were, the
    finished chunk kept beside them, and a line saying so."""
    kept = c / f".{out.name}.partial"
    assert the_line(err, "emseg: interrupted") == (
        f"emseg: interrupted; nothing was written to {out}; 1 finished chunk(s) are kept in "
        f"{kept}: run the same command again to resume")
    after = snapshot(c.dir)
    assert {k: v for k, v in after.items() if not k.startswith(kept.name)} == before
    assert sorted(p.name for p in kept.iterdir()) == ["job.json", "z000000.npz"]


def test_ctrl_c_to_the_whole_process_group_with_worker_processes(case, tmp_path):
    out = _previous_output(case)
    before = snapshot(case.dir)
    args = postprocess_args(case, out, "--chunk-slices", "2", "--overwrite")
    args[args.index("--workers") + 1] = "2"
    process = _start_paused(case, args, tmp_path, start_new_session=True)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, err = process.communicate(timeout=600)
    assert process.returncode == 130, err
    _assert_interrupted_keeps_one_chunk(case, out, err, before)


def test_ctrl_c_while_training_keeps_the_run(case, tmp_path):
    run = case.run_folder()
    before = snapshot(case.dir)
    process = _start_paused(case, train_args(case, run, "--epochs", "2"), tmp_path)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 130, err
    assert the_line(err, "emseg: interrupted") == (
        f"emseg: interrupted at epoch 1; {run} keeps every finished epoch, run the same "
        "command again to resume")
    assert snapshot(case.dir) == before


def test_ctrl_c_while_scoring(capsys, case, monkeypatch):
    scores = case / "seg.scores.json"
    scores.write_text("{}")
    before = snapshot(case.dir)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("emseg_lib.cli.evaluate.score_volume", interrupted)
    code, _, err = cli(capsys, evaluate_args(case, scores, "--overwrite"))
    assert code == 130
    assert the_line(err, "emseg: interrupted") == \
        f"emseg: interrupted; nothing was written to {scores}"
    assert snapshot(case.dir) == before


# -- 17. the environment fails while writing (file-size limit: like a full disk) --------------

def _limited(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_segmentation_that_cannot_be_written(case):
    out = _previous_output(case)
    before = snapshot(case.dir)
    result = cli_process(segment_args(case, out, "--chunk-slices", "1", "--overwrite"),
                         preexec_fn=_limited(4096))
    line = the_line(result.stderr, "emseg: error: ")
    assert result.returncode == 2
    assert line == f"emseg: error: {out}: not written: File too large"
    assert snapshot(case.dir) == before


def test_training_that_cannot_save_its_checkpoint(case):
    run = case.run_folder()
    before = snapshot(case.dir)
    result = cli_process(train_args(case, run, "--epochs", "2"),
                         preexec_fn=_limited(4096))
    line = the_line(result.stderr, "emseg: error: ")
    assert result.returncode == 2
    assert line.startswith(f"emseg: error: {run}: training stopped (the checkpoints there "
                           "hold the last finished epoch): File too large")
    assert snapshot(case.dir) == before


# -- 13. second hunt: numbers, output places, data, checkpoints, runs ------------------------

@pytest.mark.parametrize("command", ["segment", "postprocess", "evaluate", "train"])
@pytest.mark.parametrize("value", ["0", "-4", "nan", "inf", "1e308"])
def test_bad_resolution_is_refused_before_any_data_is_read(capsys, case, command, value):
    absent = case / "absent.tif"  # never read: the argument is refused while parsing
    args = {"segment": ["segment", "--checkpoint", case / "absent.pt", "--data", absent,
                        "--out", case / "s.h5"],
            "postprocess": ["postprocess", "--prob", absent, "--out", case / "s.h5"],
            "evaluate": ["evaluate", "--seg", absent, "--gt", absent],
            "train": ["train", "--model", "unet2d", "--data", absent, "--labels", absent,
                      "--out", case / "run"]}[command]
    refused(capsys, case.dir, [*args, "--resolution", "40", value, "4"],
            f"argument --resolution: a voxel side must be a positive number of nm, at most "
            f"1e+06, got '{value}'")


@pytest.mark.parametrize("seed", ["-1", str(2**64)])
def test_seed_outside_the_generators_range(capsys, case, seed):
    refused(capsys, case.dir, train_args(case, case / "run", "--seed", seed),
            f"--seed must lie in 0..4294967295, got {seed}")


def test_far_more_workers_than_cores(capsys, case):
    refused(capsys, case.dir, postprocess_args(case, case / "s.h5") + ["--workers", "100000"],
            "--workers must be <=", "got 100000")


def test_a_numbered_cpu(capsys, case):
    refused(capsys, case.dir, segment_args(case, case / "s.h5", device="cpu:1"),
            "device='cpu:1': the CPU has no numbered devices")


@pytest.mark.parametrize("name", ["scores.csv", "scores.PNG"])
def test_json_named_like_its_table_or_plot(capsys, case, name):
    refused(capsys, case.dir, evaluate_args(case, case / name), f"{name}: the per-slice scores",
            "give --json a .json name")


def _zarr_store(path: Path, key: str, array: np.ndarray) -> Path:
    import zarr

    group = zarr.open_group(str(path), mode="w")
    group.create_array(key, shape=array.shape, dtype=array.dtype,
                       chunks=(1, *array.shape[1:]))[:] = array
    return path


def test_output_inside_the_input_zarr_store(capsys, case):
    store = _zarr_store(case / "in.zarr", "raw", case.world.volume.raw)
    refused(capsys, case.dir, segment_args(case, store / "seg.zarr", data=store / "raw"),
            "seg.zarr: is inside the input folder", "in.zarr")


def test_scores_inside_the_segmentation_store(capsys, case):
    store = _zarr_store(case / "seg.zarr", "ids", case.world.volume.labels.astype(np.uint32))
    refused(capsys, case.dir, evaluate_args(case, store / "scores.json", seg=store / "ids"),
            "scores.json: is inside the input folder")


def test_output_inside_the_input_slice_folder(capsys, case):
    folder = case / "slices"
    folder.mkdir()
    for z, image in enumerate(case.world.volume.raw):
        tiff(folder / f"{z:02d}.tif", image)
    # its preview would be read back as a slice of that folder
    refused(capsys, case.dir, segment_args(case, folder / "seg.h5", data=folder),
            "seg.h5: is inside the input folder")


def test_tiff_pages_written_one_by_one_are_all_read(case):
    with tifffile.TiffWriter(case / "pages.tif") as writer:
        for image in case.world.volume.raw:  # each page its own series
            writer.write(image, photometric="minisblack")
    np.testing.assert_array_equal(load_stack(case / "pages.tif").raw, case.world.volume.raw)


def test_tiff_pages_of_mixed_sizes(capsys, case):
    with tifffile.TiffWriter(case / "mixed.tif") as writer:
        for image in case.world.volume.raw[:3]:
            writer.write(image, photometric="minisblack")
        writer.write(case.world.volume.raw[3, :32, :32], photometric="minisblack")
    refused(capsys, case.dir, segment_args(case, case / "s.h5", data=case / "mixed.tif"),
            "mixed.tif: pages differ in size or type")


def test_zarr_chunk_missing(capsys, case):
    with h5py.File(case / "prob.h5") as handle:
        store = _zarr_store(case / "prob.zarr", "predictions", handle["predictions"][()])
    chunk = sorted(p for p in (store / "predictions").rglob("*")
                   if p.is_file() and p.name != "zarr.json")[2]
    chunk.unlink()
    _warned_missing_chunks(capsys, postprocess_args(case, case / "s.h5", prob=store),
                           f"{store / 'predictions'}: 1 of its 4 chunks are not in the store "
                           "and are read as the fill value 0.0")


def _warned_missing_chunks(capsys, args: list, start: str) -> None:
    """Chunks absent from a zarr store are zarr's fill value (the format's rule for chunks
    never written): the run goes on, and one warning line says how many are absent."""
    code, _, err = cli(capsys, args)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("emseg: warning:")]
    assert len(warnings) == 1 and warnings[0].startswith(f"emseg: warning: {start}")
    assert "check that the copy is complete" in warnings[0]


def _resave(path: Path, **changes) -> None:
    """Rewrite an emseg checkpoint with ``changes`` (None deletes), checksums recomputed: a
    well-formed file whose contents are odd."""
    from emseg_lib.train.checkpoint import content_sha256

    state = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if value is None:
            state.pop(key)
        else:
            state[key] = value
    state["content_sha256"] = content_sha256(state)
    torch.save(state, path)


@pytest.mark.parametrize("changes, fragment", [
    ({"model_spec": {"name": "unet2d", "config": {"bogus": 1}}},
     "its model_spec {'name': 'unet2d', 'config': {'bogus': 1}} cannot be built"),
    ({"model_spec": {"name": "unet2d", "config": {"base_width": 10**7, "depth": 2}}},
     "checkpoint was saved from a different architecture than its model_spec"),
    ({"model_spec": None}, "an emseg checkpoint without model_spec"),
    ({"postprocess": {"method": "magic"}}, "its learned post-processing entry is not one"),
    ({"postprocess": {"method": "seeded", "thresholds": {}}},
     "its learned post-processing entry is not one"),
])
def test_checkpoint_with_odd_contents(capsys, case, changes, fragment):
    _resave(case / "ckpt.pt", **changes)
    refused(capsys, case.dir, segment_args(case, case / "s.h5"), "ckpt.pt: " + fragment)


def test_checkpoint_that_is_a_folder(capsys, case):
    (case / "best.pt").mkdir()
    refused(capsys, case.dir, ["segment", "--checkpoint", case / "best.pt", "--data",
                               case / "cremi.h5", "--out", case / "s.h5", "--device", "cpu"],
            "best.pt: is a folder, not a checkpoint file")


def test_resolution_attribute_that_is_text(capsys, case):
    write_h5(case / "text.h5", {RAW_KEY: case.world.volume.raw}, resolution="abc")
    refused(capsys, case.dir, segment_args(case, case / "s.h5", data=case / "text.h5"),
            "text.h5: 'resolution' of 'volumes/raw' must be three positive numbers", "'abc'")


def test_cremi_resolution_attribute_that_is_nan(capsys, case):
    volume = case.world.volume
    write_h5(case / "nan_res.h5", {RAW_KEY: volume.raw, LABELS_KEY: volume.labels},
             resolution=(40.0, np.nan, 4.0))
    refused(capsys, case.dir,
            train_args(case, case / "run", data=case / "nan_res.h5", tiff_labels=False),
            "nan_res.h5: 'resolution' attribute must be three positive numbers")


def test_training_labels_all_zero(capsys, case):
    tiff(case / "zero.tif", np.zeros(SHAPE, np.uint32))
    refused(capsys, case.dir, train_args(case, case / "run", labels=case / "zero.tif"),
            "zero.tif: the labels are all 0")


def test_training_labels_with_one_labelled_slice(capsys, case):
    labels = case.world.volume.labels.astype(np.uint32)
    labels[1:] = 0  # nothing left to validate on once slice 0 trains
    tiff(case / "sparse.tif", labels)
    refused(capsys, case.dir, train_args(case, case / "run", labels=case / "sparse.tif"),
            "sparse.tif: 1 labelled slice (slice 0) of 4; training needs at least 2 labelled "
            "slices (one to train on, one to validate)")


def test_validation_slices_that_are_unlabelled_or_absent(capsys, case):
    labels = case.world.volume.labels.astype(np.uint32)
    labels[2] = 0
    tiff(case / "sparse.tif", labels)
    refused(capsys, case.dir, train_args(case, case / "run", "--val-slices", "2-3",
                                         labels=case / "sparse.tif"),
            "sparse.tif: --val-slices 2-3: slice 2 is unlabelled (all 0)")
    refused(capsys, case.dir, train_args(case, case / "run", "--val-slices", "3,9"),
            "labels.tif: --val-slices 3,9: slice 9 is outside the stack (slices 0-3)")


def test_a_3d_network_refuses_validation_slices_between_training_slices(capsys, case):
    args = train_args(case, case / "run", "--val-slices", "1-1")
    args[args.index("unet2d")] = "unet3d"
    refused(capsys, case.dir, args, "a 3D network needs its training slices consecutive (its "
                                    "crops span z), got slices 0, 2-3")


def test_a_refusal_inside_training_leaves_no_run_folder(case):
    from emseg_lib.errors import EmsegInputError
    from emseg_lib.train.runs import training_run

    before = snapshot(case.dir)
    with pytest.raises(EmsegInputError), training_run(case / "new_run", {"seed": 0}):
        raise EmsegInputError("refused while training")
    assert snapshot(case.dir) == before


def test_ground_truth_all_zero(capsys, case):
    tiff(case / "zero_gt.tif", np.zeros(SHAPE, np.uint32))
    refused(capsys, case.dir, evaluate_args(case, case / "s.json", gt=case / "zero_gt.tif"),
            "zero_gt.tif: the ground truth is all 0")


@pytest.mark.parametrize("command", ["segment", "train", "postprocess", "evaluate"])
@pytest.mark.parametrize("kind", ["external", "soft"])
def test_hdf5_link_that_cannot_be_followed(capsys, case, command, kind):
    key = {"segment": RAW_KEY, "train": RAW_KEY, "postprocess": PROBABILITY_KEY,
           "evaluate": LABELS_KEY}[command]
    with h5py.File(case / "linked.h5", "w") as handle:
        handle[key] = (h5py.ExternalLink("moved.h5", "/data") if kind == "external"
                       else h5py.SoftLink("/removed"))
    linked = case / "linked.h5"
    args = {"segment": segment_args(case, case / "s.h5", data=linked),
            "train": train_args(case, case / "run", data=linked, tiff_labels=False),
            "postprocess": postprocess_args(case, case / "s.h5", prob=linked),
            "evaluate": evaluate_args(case, case / "s.json", seg=linked)}[command]
    refused(capsys, case.dir, args, f"linked.h5: '{key}' is a link to", "cannot be opened")


def test_slice_folder_of_mixed_bit_depths(capsys, case):
    import imageio.v3 as iio

    folder = case / "slices"
    folder.mkdir()
    raw = case.world.volume.raw
    for z in range(3):
        iio.imwrite(folder / f"s{z}.png", raw[z])
    iio.imwrite(folder / "s3.png", raw[3].astype(np.uint16) * 257)
    refused(capsys, case.dir, segment_args(case, case / "s.h5", "--rescale", data=folder),
            "slices: slices differ in type (uint8, uint16; first s3.png is uint16)")


def test_epochs_that_would_train_for_ever(capsys, case):
    refused(capsys, case.dir, train_args(case, case / "run", "--epochs", str(10**20)),
            f"--epochs must be <= 100000, got {10**20}")


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_empty_hdf5_dataset(capsys, case, command):
    volume = case.world.volume
    with h5py.File(case / "empty.h5", "w") as handle:  # an empty dataset cannot be chunked
        handle[RAW_KEY] = volume.raw[:0]
        handle[LABELS_KEY] = volume.labels[:0]
        handle[RAW_KEY].attrs["resolution"] = (40.0, 4.0, 4.0)
    args = (train_args(case, case / "run", data=case / "empty.h5", tiff_labels=False)
            if command == "train" else evaluate_args(case, case / "s.json", seg=case / "empty.h5"))
    refused(capsys, case.dir, args, "empty.h5: dataset", "is empty, shape (0, 160, 160)")


def test_empty_zarr_array(capsys, case):
    import zarr

    store = zarr.open_group(str(case / "empty.zarr"), mode="w")
    store.create_array("ids", shape=(0, 8, 8), dtype=np.uint32, chunks=(1, 8, 8))
    refused(capsys, case.dir, evaluate_args(case, case / "s.json", seg=case / "empty.zarr/ids"),
            "ids: the array is empty, shape (0, 8, 8)")


def _zarr_raw(c: Case) -> Path:
    return _zarr_store(c / "raw.zarr", "raw", c.world.volume.raw) / "raw"


def test_zarr_resolution_attribute_that_is_text(capsys, case):
    import zarr

    array = _zarr_raw(case)
    zarr.open_array(array).attrs["resolution"] = "abc"
    refused(capsys, case.dir, segment_args(case, case / "s.h5", data=array),
            "raw.zarr/raw: 'resolution' attribute must be three positive numbers", "'abc'")


def test_zarr_array_metadata_that_is_not_json(capsys, case):
    array = _zarr_raw(case)
    (array / "zarr.json").write_text("{not json")
    refused(capsys, case.dir, segment_args(case, case / "s.h5", data=array),
            "raw.zarr/raw: its zarr metadata cannot be read")


def test_zarr_metadata_claiming_a_larger_array(capsys, case):
    import json

    array = _zarr_raw(case)
    meta = json.loads((array / "zarr.json").read_text())
    meta["shape"][2] *= 2  # read back, the new half would be zeros
    (array / "zarr.json").write_text(json.dumps(meta))
    _warned_missing_chunks(capsys, segment_args(case, case / "s.h5", data=array),
                           f"{array}: 4 of its 8 chunks are not in the store and are read as "
                           "the fill value 0")


def test_output_named_only_by_its_suffix(capsys, case):
    refused(capsys, case.dir, postprocess_args(case, case / ".h5"),
            ".h5: the output needs a name before its suffix")


# -- 18. third hunt: guesses, names, pipes, signals, kept chunks -----------------------------

def _one_neuron(c: Case) -> np.ndarray:
    """Sparse ground truth: the largest neuron as 1 on a background of 0."""
    ids, counts = np.unique(c.world.volume.labels, return_counts=True)
    return (c.world.volume.labels == ids[np.argmax(counts)]).astype(np.uint8)


def test_sparse_ground_truth_of_two_values_is_not_guessed(capsys, case):
    gt = tiff(case / "one_neuron.tif", _one_neuron(case))
    refused(capsys, case.dir, evaluate_args(case, case / "s.json", gt=gt),
            "one_neuron.tif: the labels hold two values (0 and 1)", "--label-kind instances")


def test_sparse_ground_truth_as_instances_is_scored_as_given(capsys, case):
    gt = tiff(case / "one_neuron.tif", _one_neuron(case))
    code, out, err = cli(capsys, evaluate_args(case, case / "s.json", "--label-kind",
                                               "instances", gt=gt))
    assert code == 0, err
    assert f"ground truth {gt}: instance ids" in out
    scored = json.loads((case / "s.json").read_text())["per_slice_mean"]
    expected = score_volume(case.world.volume.labels, _one_neuron(case), "cremi", pixel_nm=4.0)
    assert scored["voi"] == pytest.approx(expected["voi"].mean())


def test_a_membrane_mask_is_read_as_one_and_said_so(capsys, case):
    gt = tiff(case / "mask.tif", instance_boundary(case.world.volume.labels).astype(np.uint8))
    code, out, err = cli(capsys, evaluate_args(case, case / "s.json", gt=gt))
    assert code == 0, err
    assert (f"ground truth {gt}: membrane mask -> instances (--label-kind auto: values 0 and "
            "1, 1 = membrane") in out


def test_cremi_ground_truth_needs_no_uint8_raw(capsys, case):
    volume = case.world.volume
    gt = write_h5(case / "gt16.h5", {RAW_KEY: volume.raw.astype(np.uint16),
                                     LABELS_KEY: volume.labels.astype(np.uint64)})
    code, out, err = cli(capsys, evaluate_args(case, case / "s.json", gt=gt))
    assert code == 0, err
    assert json.loads((case / "s.json").read_text())["per_slice_mean"]["voi"] == 0.0


def test_missing_ground_truth_dataset_names_only_evaluates_flags(capsys, case):
    line = refused(capsys, case.dir, evaluate_args(case, case / "s.json", "--gt-key", "gt/ids",
                                                   gt=case / "cremi.h5"),
                   "cremi.h5: dataset 'gt/ids' not found; name another with --gt-key")
    assert "--raw-key" not in line and "--rescale" not in line


@pytest.mark.parametrize("command", ["evaluate", "train"])
def test_a_resolution_stored_in_micrometres(capsys, case, command):
    volume = case.world.volume
    um = write_h5(case / "um.h5", {RAW_KEY: volume.raw, LABELS_KEY: volume.labels},
                  resolution=(0.04, 0.004, 0.004))
    args = (evaluate_args(case, case / "s.json", gt=um) if command == "evaluate"
            else train_args(case, case / "run", data=um, tiff_labels=False))
    refused(capsys, case.dir, args, "um.h5: 'resolution'", "(0.04, 0.004, 0.004)",
            "most likely in micrometres")


def test_a_resolution_flag_in_micrometres(capsys, case):
    refused(capsys, case.dir, evaluate_args(case, case / "s.json", "--resolution", "0.04",
                                            "0.004", "0.004"),
            "argument --resolution: '0.04' is below 0.5 nm, most likely micrometres")


def test_a_second_evaluate_writing_the_same_scores_is_refused(capsys, case):
    from emseg_lib.infra.locks import held_lock

    scores = case / "s.json"
    with held_lock(case / ".s.json.lock", lambda pid, host: "held by the first run"):
        refused(capsys, case.dir, evaluate_args(case, scores),
                f"{scores}: another emseg evaluate (process", "choose another --json")
    code, _, err = cli(capsys, evaluate_args(case, scores))  # the first is done: free again
    assert code == 0, err
    assert not (case / ".s.json.lock").exists()


@pytest.mark.parametrize("command", ["segment", "postprocess", "evaluate"])
def test_a_name_too_long_for_the_files_named_after_it(capsys, case, command):
    out = case / ("n" * 250 + (".json" if command == "evaluate" else ".h5"))  # 253-255 bytes
    builder = {"segment": segment_args, "postprocess": postprocess_args,
               "evaluate": evaluate_args}[command]
    flag = "--json" if command == "evaluate" else "--out"
    refused(capsys, case.dir, builder(case, out), f"{out}: the name given to {flag} is",
            "the file system takes names of at most 255 bytes: use a name of at most")


def test_a_long_segmentation_name_for_the_default_scores(capsys, case):
    seg = case / ("s" * 240 + ".h5")
    shutil.copy2(case / "seg.h5", seg)
    refused(capsys, case.dir, ["evaluate", "--seg", seg, "--gt", case / "labels.tif"],
            f"{seg}: the name given to --seg is 243 bytes", "or name the scores with --json")


@pytest.mark.parametrize("command", ["segment", "evaluate", "train"])
def test_a_closed_stdout_does_not_stop_the_work(case, command):
    """``emseg ... | head -1``: the reader has gone before the first line; the run goes on,
    writes every output and exits as usual."""
    args = {"segment": segment_args(case, case / "s.h5", "--chunk-slices", "1"),
            "evaluate": evaluate_args(case, case / "s.json"),
            "train": train_args(case, case / "new_run")}[command]
    process = subprocess.Popen([sys.executable, "-m", "emseg_lib.cli", *map(str, args)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=ENV)
    process.stdout.close()
    _, err = process.communicate(timeout=900)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "Error" not in err, err
    written = {"segment": ["s.h5", "s.preview.png"], "evaluate": ["s.json", "s.csv", "s.png"],
               "train": ["new_run/best.pt", "new_run/summary.json"]}[command]
    assert all((case / name).stat().st_size > 0 for name in written)


INTERRUPTED_WHILE_LOADING = '''
"""emseg, with Ctrl-C arriving while it imports numpy (the libraries take a second or two)."""
import os
import signal
import sys

signal.signal(signal.SIGINT, signal.default_int_handler)


class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy":
            os.kill(os.getpid(), signal.SIGINT)
        return None


sys.meta_path.insert(0, CtrlC())
from emseg_lib.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
'''


def test_ctrl_c_while_the_libraries_load_is_one_line(case, tmp_path):
    script = tmp_path / "ctrl_c_while_loading.py"
    script.write_text(INTERRUPTED_WHILE_LOADING)
    before = snapshot(case.dir)
    result = subprocess.run([sys.executable, str(script), *map(str, segment_args(
        case, case / "s.h5"))], capture_output=True, text=True, env=ENV, timeout=900)
    assert result.returncode == 130, result.stderr
    assert the_line(result.stderr, "emseg: interrupted") == \
        "emseg: interrupted; nothing was written"
    assert snapshot(case.dir) == before


@pytest.mark.parametrize("utf8_mode", ["0", "1"])
def test_non_ascii_names_under_the_c_locale(case, utf8_mode):
    """``LC_ALL=C``: file names are bytes Python cannot decode (surrogate escapes) or stdout
    is ASCII; printing them and drawing them in titles never fails."""
    seg, prob = case / "ség.h5", case / "prób.h5"
    shutil.copy2(case / "seg.h5", seg)
    shutil.copy2(case / "prob.h5", prob)
    env = {key: value for key, value in ENV.items()
           if not key.startswith(("LC_", "LANG", "PYTHONIOENCODING", "PYTHONUTF8"))}
    env.update(LANG="C", LC_ALL="C", PYTHONUTF8=utf8_mode)
    for args in (evaluate_args(case, case / "sé.json", seg=seg),
                 postprocess_args(case, case / "sé.h5", prob=prob)):
        result = subprocess.run([sys.executable, "-m", "emseg_lib.cli", *map(str, args)],
                                capture_output=True, env=env, timeout=900)
        err = result.stderr.decode("utf-8", "replace")
        assert result.returncode == 0 and "Traceback" not in err, err
        assert "sé".encode() in result.stdout
    assert (case / "sé.png").stat().st_size > 0 and (case / "sé.preview.png").stat().st_size > 0


def _damage_header(path: Path, key: str) -> None:
    """Overwrite the start of the object header of ``key`` (a group or a dataset)."""
    with h5py.File(path) as handle:
        address = h5py.h5o.get_info(handle[key].id).addr
    data = bytearray(path.read_bytes())
    data[address:address + 8] = b"\x07" * 8
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("command", ["train", "evaluate"])
@pytest.mark.parametrize("damaged", ["volumes", LABELS_KEY])
def test_hdf5_with_a_corrupt_object_header(capsys, case, command, damaged):
    _damage_header(case / "cremi.h5", damaged)
    args = (train_args(case, case / "run", data=case / "cremi.h5", tiff_labels=False)
            if command == "train" else evaluate_args(case, case / "s.json", gt=case / "cremi.h5"))
    key = RAW_KEY if damaged == "volumes" and command == "train" else LABELS_KEY
    refused(capsys, case.dir, args, f"cremi.h5: '{key}' cannot be opened",
            "the file's structure is damaged")


def _probabilities_with(c: Case, value: float) -> Path:
    with h5py.File(c / "prob.h5") as handle:
        prob = handle["predictions"][()]
    prob[1, 3, 3] = value
    return write_h5(c / "odd.h5", {"p": prob.astype(np.float32)})


def test_a_probability_beyond_one_is_refused_showing_its_value(capsys, case):
    refused(capsys, case.dir, postprocess_args(case, case / "s.h5",
                                               prob=_probabilities_with(case, 1.00001)),
            "odd.h5: probability slice 1 has values in [0.05, 1.00001]")


@pytest.mark.parametrize("value", [1.0000001, -1e-7])
def test_float_rounding_beyond_zero_or_one_is_read_as_zero_or_one(capsys, case, value):
    code, _, err = cli(capsys, postprocess_args(case, case / "s.h5",
                                                prob=_probabilities_with(case, value)))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "emseg: warning:" in line]
    assert len(warnings) == 1 and warnings[0].endswith(
        "odd.h5: 1 probabilities lie outside [0, 1] by float rounding only (by at most 1e-06; "
        "first in slice 1), read as 0 and 1")


def test_crops_larger_than_the_stack_name_the_file_and_the_profile(capsys, case):
    volume = case.world.volume
    raw = tiff(case / "small.tif", volume.raw[:, :96, :96])
    labels = tiff(case / "small_labels.tif", volume.labels[:, :96, :96].astype(np.uint32))
    args = train_args(case, case / "run", data=raw, labels=labels)
    args[args.index("smoke")] = "quick"
    refused(capsys, case.dir, args, "small.tif: the train split (slices 0-2, (3, 96, 96)) is "
            "smaller than the unet2d crops (1, 160, 160) of --profile quick; pass --profile "
            "smoke, whose crops fit, or use a larger stack")


def test_resuming_with_another_model_kind(capsys, case):
    run = case.run_folder()
    args = train_args(case, run)
    args[args.index("unet2d")] = "unet3d"
    refused(capsys, case.dir, args, f"{run}: this run folder (run.json) was trained with "
            "another model kind (model_spec.name was 'unet2d', now 'unet3d')")


def test_a_changed_network_is_named_before_what_follows_from_it(tmp_path):
    from emseg_lib.errors import EmsegInputError
    from emseg_lib.train.runs import check_identity

    stored = {"profile": "smoke", "plan": {"crop": [64, 64]}, "model_spec": {"name": "unet2d"}}
    with pytest.raises(EmsegInputError, match=r"another model kind \(model_spec.name was "
                                              r"'unet2d', now 'unet3d'; plan.crop was"):
        check_identity(tmp_path, "run.json", stored, {
            "profile": "smoke", "plan": {"crop": [5, 49, 49]}, "model_spec": {"name": "unet3d"}})
