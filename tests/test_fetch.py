"""``emseg fetch``: CREMI and the public EM stacks, offline against a local HTTP server.

Tiny fake upstream files are served from a temporary folder; the registry entries are
replaced by ones pinning the fakes' SHA-256, so the real download, verification and
conversion code runs end to end.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import os
import re
import threading
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from emseg_lib import EmsegInputError
from emseg_lib.cli import main
from emseg_lib.data import EMVolume, save_cremi, synthetic_em_volume
from emseg_lib.data.formats import membranes_to_instances
from emseg_lib.data.upstream import MEMBRANES_KEY, bodies_from_supervoxels, convert_snemi
from emseg_lib.fetch import CREMI_SHA256, DATASETS, fetch_cremi, sha256_of

RAW, IDS = "volumes/raw", "volumes/labels/neuron_ids"


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range support (what resuming needs).

    ``cut`` maps a URL path to a byte count: its next response announces the whole file but
    stops after that many bytes (an interrupted download). ``ranges`` records Range requests.
    """

    cut: dict[str, int] = {}
    ranges: list[str] = []

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
            self.ranges.append(self.path)
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
        stop = start + self.cut.pop(self.path) if self.path in self.cut else len(data)
        self.wfile.write(data[start:stop])


@pytest.fixture
def server(tmp_path):
    """(served folder, base URL, handler class) of a local server on a free port."""
    served = tmp_path / "served"
    served.mkdir()
    handler_class = type("Handler", (_RangeHandler,), {"cut": {}, "ranges": []})
    handler = functools.partial(handler_class, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}", handler_class
    httpd.shutdown()
    httpd.server_close()


def _run(capsys, args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _expect_error(capsys, args, *fragments):
    code, _, err = _run(capsys, args)
    assert code == 2
    lines = err.strip().splitlines()  # progress bars may precede the error
    errors = [line for line in lines if line.startswith("emseg: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


# -- hand-made tiny upstream data --------------------------------------------------------

#: two 3 x 3 sections; 1 = membrane. Section 0: pixel (0, 0) touches the rest only
#: diagonally, so 4-connectivity makes it its own cell.
VNC_MEMBRANES = np.array([[[0, 1, 0], [1, 0, 0], [0, 0, 0]],
                          [[0, 0, 0], [1, 1, 1], [0, 0, 0]]], dtype=bool)
#: ids per section, numbered on through the stack, not linked across z; 0 = membrane
VNC_IDS = np.array([[[1, 0, 2], [0, 2, 2], [2, 2, 2]],
                    [[3, 3, 3], [0, 0, 0], [4, 4, 4]]], dtype=np.uint64)
FIB_SUPERVOXELS = np.array([[[5, 5, 7], [9, 9, 11]], [[7, 7, 7], [0, 9, 11]]], dtype=np.int32)
FIB_TABLE = np.array([[0, 0], [5, 100], [7, 100], [9, 3], [11, 42], [13, 3]], dtype=np.int64)
FIB_BODIES = np.array([[[100, 100, 100], [3, 3, 42]], [[100, 100, 100], [0, 3, 42]]],
                      dtype=np.uint64)


def _fake_vnc(served: Path) -> np.ndarray:
    raw = np.arange(2 * 9, dtype=np.uint8).reshape(2, 3, 3) * 7
    for z in range(2):
        (served / "stack1/raw").mkdir(parents=True, exist_ok=True)
        (served / "stack1/membranes").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(served / f"stack1/raw/{z:02d}.tif", raw[z])
        iio.imwrite(served / f"stack1/membranes/{z:02d}.png", VNC_MEMBRANES[z].astype(np.uint8)
                    * 255)
    return raw


def _fake_fibsem(served: Path) -> np.ndarray:
    raw = np.arange(2 * 6, dtype=np.uint8).reshape(2, 2, 3) * 11
    folder = served / "training_sample2/grayscale_maps"
    folder.mkdir(parents=True)
    for z in range(2):
        iio.imwrite(folder / f"iso.{2600 + z}.png", raw[z])
    with h5py.File(served / "groundtruth.h5", "w") as handle:
        handle["stack"] = FIB_SUPERVOXELS
        handle["transforms"] = FIB_TABLE
    packed = gzip.compress((served / "groundtruth.h5").read_bytes())
    (served / "training_sample2/groundtruth.h5.gz").write_bytes(packed)
    return raw


#: 12 slices, so that the unpadded label names sort differently as text (labels10 < labels2)
SNEMI_SLICES = 12


def _fake_snemi(served: Path) -> tuple[np.ndarray, np.ndarray]:
    """SNEMI3D's upstream layout: 8-bit ``sectionNN.tif`` and 16-bit ``labelsN.tif`` (ImageJ
    TIFFs with a 6 nm pixel size, as upstream); the ids of slice z start at 10 z, so a slice
    read out of order shows."""
    raw = (np.arange(SNEMI_SLICES * 6, dtype=np.uint8).reshape(SNEMI_SLICES, 2, 3) * 3)
    ids = np.array([[0, 1, 1], [2, 2, 0]], dtype=np.uint16)
    labels = np.stack([np.where(ids > 0, ids + 10 * z, 0) for z in range(SNEMI_SLICES)])
    (served / "example_SNEMI3D/images").mkdir(parents=True)
    (served / "example_SNEMI3D/segmentation").mkdir(parents=True)
    for z in range(SNEMI_SLICES):
        kwargs = {"imagej": True, "resolution": (1 / 6, 1 / 6), "metadata": {"unit": "nm"}}
        tifffile.imwrite(served / f"example_SNEMI3D/images/section{z:02d}.tif", raw[z], **kwargs)
        tifffile.imwrite(served / f"example_SNEMI3D/segmentation/labels{z}.tif",
                         labels[z].astype(np.uint16), **kwargs)
    return raw, labels.astype(np.uint64)


def _pin(monkeypatch, served: Path, name: str, prefix: str) -> dict[str, str]:
    """Point ``DATASETS[name]`` at the fake files under ``served/prefix``; returns them."""
    files = {p.relative_to(served).as_posix(): sha256_of(p)
             for p in sorted((served / prefix).rglob("*")) if p.is_file()}
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], files=files))
    return files


@pytest.fixture
def vnc(server, monkeypatch):
    """The local server with a fake ``stack1`` pinned as the ``vnc`` dataset."""
    served, url, handler = server
    raw = _fake_vnc(served)
    files = _pin(monkeypatch, served, "vnc", "stack1")
    return url, handler, raw, files


# -- converters --------------------------------------------------------------------------

def test_section_labels_are_4_connected_components_per_section():
    assert np.array_equal(membranes_to_instances(VNC_MEMBRANES), VNC_IDS)


def test_supervoxels_map_to_bodies():
    assert np.array_equal(bodies_from_supervoxels(FIB_SUPERVOXELS, FIB_TABLE), FIB_BODIES)
    with pytest.raises(EmsegInputError, match=r"1 supervoxel ids have no body.*\[11\]"):
        bodies_from_supervoxels(FIB_SUPERVOXELS, FIB_TABLE[:4])


def test_registry_pins_full_commits_and_every_file():
    for dataset in DATASETS.values():
        assert re.fullmatch(r"[0-9a-f]{40}", dataset.commit)
        assert dataset.base_url.startswith("https://raw.githubusercontent.com/")
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in dataset.files.values())
    assert len(DATASETS["vnc"].files) == 40  # 20 raw TIFFs + 20 membrane PNGs
    assert len(DATASETS["fibsem"].files) == 251  # 250 grayscale PNGs + groundtruth.h5.gz
    assert len(DATASETS["snemi"].files) == 200  # 100 image + 100 label TIFFs


def test_every_public_stack_has_a_network_for_the_real_data_experiment():
    from emseg_lib.experiments.real_data import REAL_STACK_MODELS

    assert set(REAL_STACK_MODELS) == set(DATASETS)


# -- the public stacks, end to end -------------------------------------------------------

def test_fetch_vnc_end_to_end(tmp_path, vnc, capsys):
    url, _, raw, _ = vnc
    dest = tmp_path / "data"
    code, out, err = _run(capsys, ["fetch", "vnc", "--dest", dest, "--base-url", url])
    assert code == 0, err
    assert "verified" in out and "CC BY-NC-SA 3.0" in out and "10.6084/m9.figshare.856713" in out
    path = dest / "vnc_sstem_stack1_cremi.h5"
    with h5py.File(path) as handle:
        assert np.array_equal(handle[RAW][()], raw) and handle[RAW].dtype == np.uint8
        assert np.array_equal(handle[IDS][()], VNC_IDS) and handle[IDS].dtype == np.uint64
        assert np.array_equal(handle[MEMBRANES_KEY][()], VNC_MEMBRANES.astype(np.uint8))
        for key in (RAW, IDS, MEMBRANES_KEY):
            assert np.allclose(handle[key].attrs["resolution"], (50, 4.6, 4.6))
    assert sorted(p.name for p in dest.iterdir()) == [path.name, path.name + ".sha256"]


def test_fetch_fibsem_end_to_end(tmp_path, server, monkeypatch, capsys):
    served, url, _ = server
    raw = _fake_fibsem(served)
    _pin(monkeypatch, served, "fibsem", "training_sample2")
    dest = tmp_path / "data"
    code, out, err = _run(capsys, ["fetch", "fibsem", "--dest", dest, "--base-url", url])
    assert code == 0, err
    assert "verified" in out and "Creative Commons Attribution" in out
    with h5py.File(dest / "medulla_fibsem_250_cremi.h5") as handle:
        assert np.array_equal(handle[RAW][()], raw)
        assert np.array_equal(handle[IDS][()], FIB_BODIES) and handle[IDS].dtype == np.uint64
        assert np.allclose(handle[IDS].attrs["resolution"], (10, 10, 10))
        assert MEMBRANES_KEY not in handle


def test_fetch_snemi_end_to_end(tmp_path, server, monkeypatch, capsys):
    served, url, _ = server
    raw, labels = _fake_snemi(served)
    _pin(monkeypatch, served, "snemi", "example_SNEMI3D")
    dest = tmp_path / "data"
    code, out, err = _run(capsys, ["fetch", "snemi", "--dest", dest, "--base-url", url])
    assert code == 0, err
    assert "verified" in out and "Kasthuri" in out and "10.1016/j.cell.2015.06.054" in out
    with h5py.File(dest / "snemi3d_ac4_cremi.h5") as handle:
        assert np.array_equal(handle[RAW][()], raw) and handle[RAW].dtype == np.uint8
        assert np.array_equal(handle[IDS][()], labels) and handle[IDS].dtype == np.uint64
        for key in (RAW, IDS):
            assert np.allclose(handle[key].attrs["resolution"], (30, 6, 6))
        assert MEMBRANES_KEY not in handle


def test_snemi_converter_rejects_a_missing_label_slice_and_float_ids(tmp_path):
    _fake_snemi(tmp_path)
    files = {p.relative_to(tmp_path).as_posix(): p
             for p in (tmp_path / "example_SNEMI3D").rglob("*.tif")}
    with pytest.raises(EmsegInputError, match="11 label slices for 12 image slices"):
        convert_snemi({k: v for k, v in files.items() if not k.endswith("labels7.tif")})
    tifffile.imwrite(files["example_SNEMI3D/segmentation/labels3.tif"],
                     np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(EmsegInputError, match="labels3.tif: expected .* unsigned integer ids"):
        convert_snemi(files)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("EMSEG_SNEMI_UPSTREAM"),
                    reason="EMSEG_SNEMI_UPSTREAM (a folder holding the upstream "
                           "example_SNEMI3D/) not set")
def test_snemi_converter_on_the_real_upstream_files():
    folder = Path(os.environ["EMSEG_SNEMI_UPSTREAM"])
    files = {path: folder / path for path in DATASETS["snemi"].files}
    for path, digest in DATASETS["snemi"].files.items():
        assert sha256_of(files[path]) == digest, path
    arrays = convert_snemi(files)
    assert arrays[RAW].shape == arrays[IDS].shape == (100, 1024, 1024)
    ids = arrays[IDS]
    assert len(np.unique(ids)) == 401 and 0.10 < (ids == 0).mean() < 0.20  # 400 neurites + 0
    # the label slices follow the images: membranes (id 0) are darker than cell interiors
    assert arrays[RAW][ids == 0].mean() < arrays[RAW][ids > 0].mean() - 30


def test_wrong_hash_is_an_error_and_writes_nothing(tmp_path, vnc, monkeypatch, capsys):
    url, _, _, files = vnc
    bad = dict(files, **{"stack1/raw/01.tif": "0" * 64})
    monkeypatch.setitem(DATASETS, "vnc", dataclasses.replace(DATASETS["vnc"], files=bad))
    dest = tmp_path / "data"
    _expect_error(capsys, ["fetch", "vnc", "--dest", dest, "--base-url", url],
                  f"{url}/stack1/raw/01.tif", "SHA-256", "run the same command again")
    assert not (dest / "vnc_sstem_stack1_cremi.h5").exists()
    assert not list(dest.rglob("*.part")) and not list(dest.rglob("01.tif"))


def test_corrupted_resumed_part_is_an_error_and_removed(tmp_path, vnc, capsys):
    url, handler, _, _ = vnc
    dest = tmp_path / "data"
    part = dest / "vnc_sstem_stack1_cremi.h5.download/stack1/raw/00.tif.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage from an earlier, broken download")
    _expect_error(capsys, ["fetch", "vnc", "--dest", dest, "--base-url", url],
                  "stack1/raw/00.tif", "SHA-256", "removed")
    assert handler.ranges == ["/stack1/raw/00.tif"]  # it was resumed, then rejected
    assert not part.exists() and not (dest / "vnc_sstem_stack1_cremi.h5").exists()
    code, out, err = _run(capsys, ["fetch", "vnc", "--dest", dest, "--base-url", url])
    assert code == 0, err  # the next run downloads afresh


def test_interrupted_download_resumes(tmp_path, vnc, capsys):
    url, handler, raw, _ = vnc
    handler.cut["/stack1/membranes/01.png"] = 20
    dest = tmp_path / "data"
    _expect_error(capsys, ["fetch", "vnc", "--dest", dest, "--base-url", url],
                  "stack1/membranes/01.png", "after 20 of", "run the same command again")
    part = dest / "vnc_sstem_stack1_cremi.h5.download/stack1/membranes/01.png.part"
    assert part.stat().st_size == 20
    code, out, err = _run(capsys, ["fetch", "vnc", "--dest", dest, "--base-url", url])
    assert code == 0, err
    assert handler.ranges == ["/stack1/membranes/01.png"]
    with h5py.File(dest / "vnc_sstem_stack1_cremi.h5") as handle:
        assert np.array_equal(handle[RAW][()], raw)
        assert np.array_equal(handle[IDS][()], VNC_IDS)


def test_existing_good_output_is_kept_and_a_bad_one_replaced_only_when_verified(
        tmp_path, vnc, capsys):
    url, _, _, _ = vnc
    dest = tmp_path / "data"
    assert _run(capsys, ["fetch", "vnc", "--dest", dest, "--base-url", url])[0] == 0
    path = dest / "vnc_sstem_stack1_cremi.h5"
    before = path.stat().st_mtime_ns
    code, out, _ = _run(capsys, ["fetch", "vnc", "--dest", dest, "--base-url",
                                 "http://127.0.0.1:9"])
    assert code == 0 and "verified" in out  # checked against NAME.sha256, no network
    assert path.stat().st_mtime_ns == before
    damaged = path.read_bytes()[:-1] + b"!"
    path.write_bytes(damaged)
    _expect_error(capsys, ["fetch", "vnc", "--dest", dest, "--base-url", "http://127.0.0.1:9"],
                  "cannot be reached")
    assert path.read_bytes() == damaged  # not replaced by anything unverified
    assert _run(capsys, ["fetch", "vnc", "--dest", dest, "--base-url", url])[0] == 0
    assert sha256_of(path) == (dest / f"{path.name}.sha256").read_text().split()[0]


def test_sample_only_for_cremi(tmp_path, capsys):
    _expect_error(capsys, ["fetch", "vnc", "--sample", "A", "--dest", tmp_path], "--sample")
    _expect_error(capsys, ["fetch", "cremi", "--dest", tmp_path], "--sample A, B or C")


# -- CREMI ---------------------------------------------------------------------------------

def _serve_cremi(served: Path, sample: str) -> bytes:
    volume = synthetic_em_volume((2, 64, 64), seed=1)
    save_cremi(EMVolume(volume.raw, volume.labels, volume.resolution, "test"),
               served / f"sample_{sample}_20160501.hdf")
    return (served / f"sample_{sample}_20160501.hdf").read_bytes()


def test_cremi_base_url_still_verifies_the_published_hash(tmp_path, server, capsys):
    served, url, _ = server
    _serve_cremi(served, "A")
    _expect_error(capsys, ["fetch", "cremi", "--sample", "A", "--dest", tmp_path, "--base-url",
                           url], "sample_A_20160501.hdf", CREMI_SHA256["A"])
    assert not list(tmp_path.glob("sample_A*"))


def test_cremi_downloads_resumes_and_verifies(tmp_path, server, monkeypatch, capsys):
    served, url, handler = server
    original = _serve_cremi(served, "A")
    monkeypatch.setitem(CREMI_SHA256, "A", hashlib.sha256(original).hexdigest())
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "sample_A_20160501.hdf.part").write_bytes(original[:1000])  # interrupted earlier
    code, out, err = _run(capsys, ["fetch", "cremi", "--sample", "A", "--dest", dest,
                                   "--base-url", url])
    assert code == 0, err
    assert handler.ranges == ["/sample_A_20160501.hdf"]
    assert (dest / "sample_A_20160501.hdf").read_bytes() == original
    assert not (dest / "sample_A_20160501.hdf.part").exists()
    assert (dest / "sample_A_20160501.hdf.sha256").exists()
    code, _, _ = _run(capsys, ["fetch", "cremi", "--sample", "A", "--dest", dest, "--base-url",
                               url + "/gone"])
    assert code == 0  # verified by checksum, not downloaded again


def test_cremi_not_hdf5_and_no_network(tmp_path, server, monkeypatch, capsys):
    served, url, _ = server
    (served / "sample_B_20160501.hdf").write_bytes(b"not hdf5 at all")
    monkeypatch.setitem(CREMI_SHA256, "B", hashlib.sha256(b"not hdf5 at all").hexdigest())
    _expect_error(capsys, ["fetch", "cremi", "--sample", "B", "--dest", tmp_path, "--base-url",
                           url], "sample_B_20160501.hdf", "not an HDF5 file")
    assert not (tmp_path / "sample_B_20160501.hdf").exists()
    _expect_error(capsys, ["fetch", "cremi", "--sample", "C", "--dest", tmp_path, "--base-url",
                           "http://127.0.0.1:9"], "cannot be reached", "network")


def test_cremi_checksum_mismatch(tmp_path, server):
    served, url, _ = server
    save_cremi(synthetic_em_volume((2, 64, 64), seed=1), served / "sample_C_20160501.hdf")
    with pytest.raises(EmsegInputError, match="expected the pinned 0000"):
        fetch_cremi("C", tmp_path, base_url=url, expected_sha256="0" * 64, progress=False)
    assert not list(tmp_path.glob("sample_C*"))


class _FullDisk:
    """A file whose writes fail as on a full disk."""

    def __init__(self, file):
        self._file = file

    def write(self, data):
        raise OSError(28, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


def test_a_full_disk_while_downloading_is_named_as_such(tmp_path, server, monkeypatch, capsys):
    served, url, _ = server
    original = _serve_cremi(served, "A")
    monkeypatch.setitem(CREMI_SHA256, "A", hashlib.sha256(original).hexdigest())
    opened = Path.open

    def open_on_a_full_disk(path, mode="r", *args, **kwargs):
        file = opened(path, mode, *args, **kwargs)
        return _FullDisk(file) if path.name.endswith(".part") and "b" in mode \
            and mode[0] in "aw" else file

    monkeypatch.setattr(Path, "open", open_on_a_full_disk)
    dest = tmp_path / "data"
    dest.mkdir()
    _expect_error(capsys, ["fetch", "cremi", "--sample", "A", "--dest", dest, "--base-url", url],
                  f"{dest}: the disk is full (0 bytes kept in {dest / 'sample_A_20160501.hdf'}"
                  ".part); free some space and run the same command again to resume")


@pytest.mark.parametrize("dataset", ["cremi", "vnc"])
def test_a_fetch_without_network_leaves_no_folder(tmp_path, capsys, dataset):
    (tmp_path / "kept").mkdir()  # an existing folder stays, and gets nothing
    sample = ["--sample", "A"] if dataset == "cremi" else []
    for dest in (tmp_path / "new" / "data", tmp_path / "kept"):
        _expect_error(capsys, ["fetch", dataset, *sample, "--dest", dest, "--base-url",
                               "http://127.0.0.1:9"], "cannot be reached")
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")] == ["kept"]
