"""The ``emseg`` command line: end to end on TIFF and PNG stacks, bad input, fetching."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import threading
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch

from emseg_lib.cli import main
from emseg_lib.data import EMVolume, save_cremi, synthetic_em_volume
from emseg_lib.data.formats import describe, load_stack
from emseg_lib.data.targets import instance_boundary
from emseg_lib.pipeline import PROBABILITY_KEY
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
def test_train_segment_evaluate_end_to_end(tmp_path, stacks, capsys, raw, labels):
    root, _ = stacks
    run = tmp_path / "run"
    code, out, err = _run(["train", "--model", "unet2d", "--data", root / raw, "--labels",
                           root / labels, "--out", run, "--profile", "smoke", "--epochs", "1",
                           "--device", "cpu"], capsys)
    assert code == 0, err
    assert "shape (8, 96, 96)" in out
    for name in ("last.pt", "best.pt", "history.csv", "summary.json"):
        assert (run / name).exists(), name
    assert json.loads((run / "summary.json").read_text())["epochs"] == 1

    seg = tmp_path / "seg.h5"
    code, out, err = _run(["segment", "--checkpoint", run / "best.pt", "--data", root / raw,
                           "--out", seg, "--chunk-slices", "3", "--device", "cpu"], capsys)
    assert code == 0, err
    assert "slices/s" in out
    with h5py.File(seg) as handle:
        assert handle["volumes/labels/neuron_ids"].shape == (8, 96, 96)
        assert handle[PROBABILITY_KEY].dtype == np.float32

    code, out, err = _run(["evaluate", "--seg", seg, "--gt", root / labels, "--border-nm",
                           "25"], capsys)
    assert code == 0, err
    scores = json.loads(seg.with_suffix(".scores.json").read_text())
    assert scores["slices_scored"] == 8
    assert set(scores["per_slice_mean"]) >= {"voi_split", "voi_merge", "arand", "cremi_score"}


def test_console_script_installed(tmp_path):
    result = subprocess.run(["emseg", "evaluate", "--seg", str(tmp_path / "none.h5"), "--gt",
                             str(tmp_path / "none.tif")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("emseg: error:")


def test_membrane_masks_become_instances(stacks):
    root, volume = stacks
    loaded = load_stack(root / "raw_png", root / "membranes_png")
    assert loaded.label_kind == "membrane mask -> instances"
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


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range support (what resuming needs)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if "Range" in self.headers:
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_RangeHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_fetch_downloads_resumes_and_verifies(tmp_path, server, capsys):
    served, url = server
    volume = synthetic_em_volume((2, 64, 64), seed=1)
    save_cremi(EMVolume(volume.raw, volume.labels, volume.resolution, "test"),
               served / "sample_A_20160501.hdf")
    original = (served / "sample_A_20160501.hdf").read_bytes()
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "sample_A_20160501.hdf.part").write_bytes(original[:1000])  # interrupted earlier
    code, out, err = _run(["fetch", "cremi", "--sample", "A", "--dest", dest, "--base-url",
                           url], capsys)
    assert code == 0, err
    assert (dest / "sample_A_20160501.hdf").read_bytes() == original
    assert not (dest / "sample_A_20160501.hdf.part").exists()
    assert (dest / "sample_A_20160501.hdf.sha256").exists()
    code, _, _ = _run(["fetch", "cremi", "--sample", "A", "--dest", dest, "--base-url",
                       url + "/gone"], capsys)
    assert code == 0  # verified by checksum, not downloaded again


def test_fetch_not_cremi_and_no_network(tmp_path, server, capsys):
    served, url = server
    (served / "sample_B_20160501.hdf").write_bytes(b"not hdf5 at all")
    _expect_error(capsys, ["fetch", "cremi", "--sample", "B", "--dest", tmp_path, "--base-url",
                           url], "sample_B_20160501.hdf", "not an HDF5 file")
    _expect_error(capsys, ["fetch", "cremi", "--sample", "C", "--dest", tmp_path, "--base-url",
                           "http://127.0.0.1:9"], "cannot be reached", "network")


def test_fetch_rejects_a_checksum_mismatch(tmp_path, server):
    from emseg_lib import EmsegInputError
    from emseg_lib.fetch import fetch_cremi

    served, url = server
    volume = synthetic_em_volume((2, 64, 64), seed=1)
    save_cremi(volume, served / "sample_C_20160501.hdf")
    with pytest.raises(EmsegInputError, match="differs from the published"):
        fetch_cremi("C", tmp_path, base_url=url, expected_sha256="0" * 64, progress=False)
    assert not (tmp_path / "sample_C_20160501.hdf").exists()
