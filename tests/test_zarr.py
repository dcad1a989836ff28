"""zarr in and out: zarr v2/v3 inputs (chunk by chunk, validated like HDF5), OME-Zarr outputs
with the voxel size (read back with ome-zarr), written atomically; HDF5 files of other
layouts (--raw-key / --labels-key); preview pictures and per-slice score files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader

from emseg_lib.cli import main
from emseg_lib.data import LABELS_KEY, RAW_KEY, save_cremi, synthetic_em_volume
from emseg_lib.data.formats import load_stack
from emseg_lib.data.targets import instance_boundary
from emseg_lib.data.zarr_store import open_zarr
from emseg_lib.infra.atomic_files import atomic_directory
from emseg_lib.infra.temporaries import remove_stale_temporaries
from emseg_lib.models import UNet2D, model_spec
from emseg_lib.output.partial_results import partial_folder
from emseg_lib.output.pipeline import PROBABILITY_KEY
from emseg_lib.train.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (5, 64, 80)
RESOLUTION = [30.0, 5.0, 5.0]  # not CREMI's: the scale must come from the data


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: SHA-256 of a file, "folder" for a folder."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "folder" for p in sorted(folder.rglob("*"))}


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused(capsys, folder: Path, *args) -> str:
    """Exit 2, one ``emseg: error:`` line (returned), ``folder`` unchanged."""
    before = snapshot(folder)
    code, _, err = cli(capsys, *args)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("emseg: error: ") and "Traceback" not in err, err
    assert snapshot(folder) == before
    return lines[-1]


def zarr_stack(path: Path, arrays: dict[str, np.ndarray], zarr_format: int,
               resolution=RESOLUTION) -> Path:
    group = zarr.open_group(path, mode="w", zarr_format=zarr_format)
    for key, data in arrays.items():
        array = group.create_array(key, data=data, chunks=(2, 32, 32)[-data.ndim:])
        if resolution is not None:
            array.attrs["resolution"] = resolution
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A stack as CREMI HDF5 and as zarr v2 / v3 (raw and ids), a probability map, and a
    small untrained checkpoint."""
    root = tmp_path_factory.mktemp("zarr_data")
    volume = synthetic_em_volume(SHAPE, seed=7)
    volume = type(volume)(volume.raw, volume.labels, tuple(RESOLUTION), volume.source)
    save_cremi(volume, root / "stack.h5")
    prob = (0.05 + 0.9 * (1.0 - instance_boundary(volume.labels))).astype(np.float32)
    for fmt in (2, 3):
        zarr_stack(root / f"v{fmt}.zarr", {"em/raw": volume.raw,
                                          "em/ids": volume.labels.astype(np.uint32),
                                          "prob": prob}, fmt)
    torch.manual_seed(0)
    model = UNet2D(base_width=2, depth=2)
    save_checkpoint(root / "ckpt.pt", {"model": model.state_dict(),
                                       "model_spec": model_spec(model)})
    return root, volume, prob


def segment(data_root: Path, source, out: Path, *extra) -> list:
    return ["segment", "--checkpoint", data_root / "ckpt.pt", "--data", source, "--out", out,
            "--device", "cpu", "--workers", "1", "--profile", "smoke", "--chunk-slices", "2",
            *extra]


def ome_image(path: Path) -> dict:
    """The image ome-zarr reads at ``path``: its metadata and full-resolution data."""
    node = next(n for n in Reader(parse_url(str(path)))() if Path(n.zarr.path) == path)
    return {"scale": node.metadata["coordinateTransformations"][0][0]["scale"],
            "axes": node.metadata["axes"], "data": np.asarray(node.data[0]),
            "name": node.metadata.get("name")}


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_zarr_stack_segments_like_its_hdf5_twin(tmp_path, capsys, data, zarr_format):
    root, volume, _ = data
    code, _, err = cli(capsys, *segment(root, root / "stack.h5", tmp_path / "twin.h5"))
    assert code == 0, err
    out = tmp_path / "seg.zarr"
    code, stdout, err = cli(capsys, *segment(root, root / f"v{zarr_format}.zarr/em/raw", out,
                                             "--save-probabilities", "--zarr-format",
                                             zarr_format))
    assert code == 0, err
    assert f"resolution {tuple(RESOLUTION)} nm" in stdout
    with h5py.File(tmp_path / "twin.h5") as twin:
        labels, prob = twin[LABELS_KEY][()], twin[PROBABILITY_KEY][()]
    stored = zarr.open_group(out, mode="r")
    assert stored.metadata.zarr_format == zarr_format
    np.testing.assert_array_equal(stored["labels/neuron_ids/0"][...], labels)
    np.testing.assert_array_equal(stored["probabilities/0"][...], prob)
    np.testing.assert_array_equal(stored["0"][...], volume.raw)
    assert (tmp_path / "seg.preview.png").stat().st_size > 1000
    assert (tmp_path / "twin.preview.png").stat().st_size > 1000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("zarr_format, version", [(2, "0.4"), (3, "0.5")])
def test_the_ome_zarr_output_carries_the_voxel_size(tmp_path, capsys, data, zarr_format,
                                                   version):
    root, volume, _ = data
    out = tmp_path / "seg.zarr"
    assert cli(capsys, *segment(root, root / "stack.h5", out, "--zarr-format",
                                zarr_format))[0] == 0
    image = ome_image(out)
    assert image["scale"] == RESOLUTION
    assert [(a["name"], a["type"], a["unit"]) for a in image["axes"]] == [
        (axis, "space", "nanometer") for axis in "zyx"]
    np.testing.assert_array_equal(image["data"], volume.raw)
    labels = ome_image(out / "labels" / "neuron_ids")
    assert labels["scale"] == RESOLUTION and labels["data"].dtype == np.uint64
    attrs = zarr.open_group(out, mode="r").attrs.asdict()
    assert attrs.get("ome", attrs)["multiscales"][0].get("version", version) == version
    label_attrs = zarr.open_group(out / "labels" / "neuron_ids", mode="r").attrs.asdict()
    assert label_attrs.get("ome", label_attrs)["image-label"]["source"] == {"image": "../../"}
    assert not (out / "probabilities").exists()  # only on request
    # read back as an input: the voxel size comes from the OME metadata
    assert open_zarr(out / "labels" / "neuron_ids", role="labels").resolution == \
        tuple(RESOLUTION)


def test_postprocess_and_evaluate_zarr(tmp_path, capsys, data):
    root, volume, prob = data
    out = tmp_path / "post.zarr"
    code, stdout, err = cli(capsys, "postprocess", "--prob", root / "v3.zarr", "--prob-key",
                            "prob", "--out", out, "--workers", "1")
    assert code == 0, err
    image = ome_image(out)
    np.testing.assert_allclose(image["data"], prob)
    assert image["scale"] == RESOLUTION
    h5 = tmp_path / "prob.h5"
    with h5py.File(h5, "w") as handle:  # the same voxel size: smoothing is a length in nm
        handle["p"] = prob
        handle["p"].attrs["resolution"] = RESOLUTION
    assert cli(capsys, "postprocess", "--prob", h5, "--out", tmp_path / "twin.h5",
               "--workers", "1")[0] == 0
    with h5py.File(tmp_path / "twin.h5") as handle:
        np.testing.assert_array_equal(handle[LABELS_KEY][()],
                                      ome_image(out / "labels" / "neuron_ids")["data"])
    assert (tmp_path / "post.preview.png").exists()

    code, stdout, err = cli(capsys, "evaluate", "--seg", out, "--gt", root / "v2.zarr/em/ids")
    assert code == 0, err
    written = json.loads((tmp_path / "post.scores.json").read_text())
    table = pd.read_csv(tmp_path / "post.scores.csv")
    assert list(table["slice"]) == list(range(SHAPE[0]))
    assert table["voi"].mean() == pytest.approx(written["per_slice_mean"]["voi"])
    assert written["pixel_nm"] == RESOLUTION[1]
    assert (tmp_path / "post.scores.png").stat().st_size > 1000
    code, _, err = cli(capsys, "evaluate", "--seg", out, "--gt", root / "v2.zarr/em/ids")
    assert code == 2 and "post.scores.json: already exists" in err


def test_evaluate_never_writes_its_table_over_an_input(tmp_path, capsys, data):
    _, volume, _ = data
    seg = zarr_stack(tmp_path / "seg.zarr", {"ids": volume.labels.astype(np.uint32)}, 2)
    kept = tmp_path / "seg.scores.csv"
    kept.write_text("the user's own table, given as --gt by mistake")
    line = refused(capsys, tmp_path, "evaluate", "--seg", seg / "ids", "--gt", kept)
    assert "seg.scores.csv: is the input" in line


def test_train_on_zarr_and_other_hdf5_layouts_names_the_keys(tmp_path, capsys, data):
    root, volume, _ = data
    loaded = load_stack(root / "v3.zarr/em/raw", labels_key="em/ids")
    np.testing.assert_array_equal(loaded.labels, volume.labels)
    assert loaded.resolution == tuple(RESOLUTION)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle["stack"] = volume.raw
        handle["gt/ids"] = volume.labels.astype(np.int32)
    loaded = load_stack(other, raw_key="stack", labels_key="gt/ids", resolution=(50, 6, 6))
    np.testing.assert_array_equal(loaded.labels, volume.labels)
    assert loaded.resolution == (50, 6, 6)
    line = refused(capsys, tmp_path, "train", "--model", "unet2d", "--data", other, "--out",
                   tmp_path / "run")
    assert "dataset 'volumes/raw' not found" in line and "--raw-key" in line
    assert "['gt/ids', 'stack']" in line
    line = refused(capsys, tmp_path, "train", "--model", "unet2d", "--data", other,
                   "--raw-key", "stack", "--labels-key", "labels", "--out", tmp_path / "run")
    assert "dataset 'labels' not found" in line and "['gt/ids', 'stack']" in line
    line = refused(capsys, tmp_path, "train", "--model", "unet2d", "--data",
                   root / "v2.zarr/em/raw", "--labels-key", "gt", "--out", tmp_path / "run")
    assert "no labels array 'gt'" in line and "['em/ids', 'em/raw', 'prob']" in line
    code, stdout, err = cli(capsys, "train", "--model", "unet2d", "--data", root / "v2.zarr",
                            "--raw-key", "em/raw", "--labels", root / "v3.zarr/em/ids",
                            "--out", tmp_path / "run", "--profile", "smoke", "--epochs", "1",
                            "--device", "cpu", "--workers", "1")
    assert code == 0, err
    assert "v2.zarr/em/raw: shape (5, 64, 80)" in stdout and "instance ids" in stdout


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_bad_zarr_input_is_one_line(tmp_path, capsys, data, zarr_format):
    root, volume, prob = data
    folder = tmp_path / "case"
    folder.mkdir()
    raw = volume.raw.astype(np.float32)
    raw[3, 1, 1] = np.nan
    bad = prob.copy()
    bad[2, 5, 5] = 1.5
    ids = volume.labels.astype(np.int64)
    ids[1, 0, 0] = -4
    store = zarr_stack(folder / "bad.zarr", {"nan": raw, "u16": volume.raw.astype(np.uint16),
                                             "prob": bad, "neg": ids, "flat": volume.raw[0]},
                       zarr_format)
    out = folder / "seg.zarr"
    assert "raw slice 3 holds 1 NaN/inf" in refused(
        capsys, folder, *segment(root, store / "nan", out, "--rescale"))
    assert "raw data is uint16, expected uint8; pass --rescale" in refused(
        capsys, folder, *segment(root, store, out, "--raw-key", "u16"))
    assert "probability slice 2 has values in [0.05, 1.5]" in refused(
        capsys, folder, "postprocess", "--prob", store / "prob", "--out", out)
    assert "labels hold negative ids (lowest -4, first in slice 1)" in refused(
        capsys, folder, "evaluate", "--seg", store / "neg", "--gt", root / "stack.h5")
    assert "must be 3-D (Z, Y, X)" in refused(
        capsys, folder, *segment(root, store / "flat", out))
    line = refused(capsys, folder, *segment(root, store / "nothing", out))
    assert "no raw array 'nothing'" in line and "Arrays present: ['flat', 'nan', 'neg'" in line
    (folder / "plain.zarr").mkdir()
    assert "cannot be opened as a zarr store" in refused(
        capsys, folder, *segment(root, folder / "plain.zarr", out))
    # a damaged chunk: found while the input is checked, before the output is started
    chunk = next(p for p in sorted((store / "u16").rglob("*")) if p.is_file()
                 and p.name not in (".zarray", ".zattrs", "zarr.json"))
    chunk.write_bytes(b"\x00garbage" * 3)
    line = refused(capsys, folder, *segment(root, store / "u16", out, "--rescale"))
    assert "u16: slices" in line and "cannot be read" in line


def test_zarr_output_place_is_checked_first(tmp_path, capsys, data):
    root, _, _ = data
    folder = tmp_path / "case"
    folder.mkdir()
    out = folder / "seg.zarr"
    assert cli(capsys, *segment(root, root / "stack.h5", out))[0] == 0
    assert "seg.zarr: already exists" in refused(capsys, folder,
                                                 *segment(root, root / "stack.h5", out))
    (folder / "mine.zarr").mkdir()
    (folder / "mine.zarr" / "notes.txt").write_text("mine")
    assert "mine.zarr: is a folder but not a zarr store" in refused(
        capsys, folder, *segment(root, root / "stack.h5", folder / "mine.zarr", "--overwrite"))
    input_store = shutil.copytree(root / "v2.zarr", folder / "in.zarr")
    assert "holds the input" in refused(
        capsys, folder, *segment(root, input_store / "em/raw", input_store, "--overwrite"))
    assert "give it an .h5 or .zarr name" in refused(
        capsys, folder, *segment(root, root / "stack.h5", folder / "seg.n5"))
    (folder / "seg.preview.png").unlink()
    (folder / "other.preview.png").write_text("a picture the user keeps")
    assert "other.preview.png: already exists" in refused(
        capsys, folder, *segment(root, root / "stack.h5", folder / "other.zarr"))
    (out / "from_the_earlier_run.txt").write_text("replaced as a whole")
    code, _, err = cli(capsys, *segment(root, root / "stack.h5", out, "--overwrite"))
    assert code == 0, err
    assert not (out / "from_the_earlier_run.txt").exists()
    assert zarr.open_group(out, mode="r")["labels/neuron_ids/0"].shape == SHAPE
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_atomic_directory_keeps_the_previous_store_on_failure(tmp_path):
    target = tmp_path / "seg.zarr"
    target.mkdir()
    (target / "zarr.json").write_text("previous")
    with pytest.raises(KeyboardInterrupt), atomic_directory(target) as folder:
        (folder / "zarr.json").write_text("new")
        raise KeyboardInterrupt
    assert (target / "zarr.json").read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["seg.zarr"]
    with atomic_directory(target) as folder:
        (folder / "zarr.json").write_text("new")
    assert (target / "zarr.json").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["seg.zarr"]


PAUSING = '''
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # also in a background job
from pathlib import Path
from emseg_lib.output import pipeline
from emseg_lib.cli import main
calls = []
original = pipeline.segment_volume
def pausing(*args, **kwargs):
    calls.append(None)
    if len(calls) == 2:
        Path(os.environ["EMSEG_TEST_PAUSED"]).touch()
        time.sleep(3600)  # until the test's signal
    return original(*args, **kwargs)
pipeline.segment_volume = pausing
sys.exit(main(sys.argv[1:]))
'''


@pytest.mark.parametrize("how", ["sigint", "sigkill"])
def test_interrupted_zarr_output_leaves_the_previous_store(tmp_path, capsys, data, how):
    root, _, _ = data
    folder = tmp_path / "case"
    folder.mkdir()
    out = folder / "seg.zarr"
    args = segment(root, root / "stack.h5", out, "--chunk-slices", "1", "--overwrite")
    assert cli(capsys, *args)[0] == 0
    before = snapshot(folder)
    (tmp_path / "pausing.py").write_text(PAUSING)
    marker = tmp_path / "paused"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EMSEG_TEST_PAUSED": str(marker)}
    process = subprocess.Popen([sys.executable, str(tmp_path / "pausing.py"), *map(str, args)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 600  # a last guard: the pause comes in seconds
    while not marker.exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT if how == "sigint" else signal.SIGKILL)
    _, err = process.communicate(timeout=600)
    partial = partial_folder(out)  # the first chunk was finished: kept for resuming
    assert sorted(p.name for p in partial.glob("z*.npz")) == ["z000000.npz"]
    if how == "sigint":
        assert process.returncode == 130, err
        assert err.strip().splitlines()[-1] == (
            f"emseg: interrupted; nothing was written to {out}; 1 finished chunk(s) are kept "
            f"in {partial}: run the same command again to resume")
    else:
        left = [p for p in folder.iterdir() if p.name.startswith(".") and p != partial]
        assert len(left) == 1 and left[0].is_dir() and ".tmp.zarr" in left[0].name
        assert remove_stale_temporaries(out) == left  # its writer is dead: the next run clears it
    shutil.rmtree(partial)
    assert snapshot(folder) == before


def test_hdf5_raw_key_for_segment(tmp_path, capsys, data):
    root, volume, _ = data
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle.create_dataset("em", data=volume.raw).attrs["resolution"] = RESOLUTION
    code, stdout, err = cli(capsys, *segment(root, other, tmp_path / "seg.h5", "--raw-key",
                                             "em"))
    assert code == 0, err
    assert f"'em' shape (5, 64, 80) (Z, Y, X), uint8, resolution {tuple(RESOLUTION)}" in stdout
    assert RAW_KEY not in stdout


def _ome_store(path: Path, data: np.ndarray, names: str, scale: list[float]) -> Path:
    """An OME-Zarr 0.4 image of ``data`` whose axes are ``names`` (e.g. "xyz", "czyx")."""
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscales_metadata

    group = zarr.open_group(path, mode="w", zarr_format=2)
    group.create_array("0", data=data, chunks=(16,) * data.ndim)
    axes = [{"name": n, "type": "space", "unit": "nanometer"} if n in "zyx"
            else {"name": n, "type": "channel" if n == "c" else "time"} for n in names]
    write_multiscales_metadata(group, [{"path": "0", "coordinateTransformations": [
        {"type": "scale", "scale": scale}]}], fmt=FormatV04(), axes=axes)
    return path


@pytest.mark.parametrize("names", ["xyz", "yzx", "czyx", "tcxyz"])
def test_an_ome_zarr_image_in_another_axis_order_is_read_as_z_y_x(tmp_path, data, names):
    _, volume, _ = data
    written = [n for n in "tc" if n in names] + list("zyx")  # channel, time: size 1
    stored = volume.raw.reshape((1,) * (len(names) - 3) + SHAPE)
    stored = stored.transpose([written.index(n) for n in names])
    scale = [{"z": RESOLUTION[0], "y": RESOLUTION[1], "x": RESOLUTION[2] * 2}.get(n, 1.0)
             for n in names]
    source = open_zarr(_ome_store(tmp_path / "image.zarr", stored, names, scale))
    assert source.shape == SHAPE
    assert source.resolution == (RESOLUTION[0], RESOLUTION[1], RESOLUTION[2] * 2)
    np.testing.assert_array_equal(source.array[1:3], volume.raw[1:3])
    np.testing.assert_array_equal(load_stack(tmp_path / "image.zarr").raw, volume.raw)


def test_an_ome_zarr_image_of_two_channels_is_refused(tmp_path, capsys, data):
    root, volume, _ = data
    folder = tmp_path / "case"
    folder.mkdir()
    store = _ome_store(folder / "two.zarr", np.stack([volume.raw, volume.raw]), "czyx",
                       [1.0, *RESOLUTION])
    line = refused(capsys, folder, *segment(root, store, folder / "seg.h5"))
    assert "two.zarr: OME-Zarr axis 'c' has 2 entries" in line


KILLED_MID_SWAP = '''
import os, sys
from emseg_lib.cli import main
rename = os.rename
def killed_before_the_new_store(source, target):  # kill -9 between the swap's two renames
    if ".tmp." in os.path.basename(source):
        os._exit(137)
    rename(source, target)
os.rename = killed_before_the_new_store
sys.exit(main(sys.argv[1:]))
'''


def test_a_kill_between_the_swaps_renames_is_repaired_by_the_next_run(tmp_path, capsys, data):
    root, _, _ = data
    folder = tmp_path / "case"
    folder.mkdir()
    out = folder / "seg.zarr"
    args = segment(root, root / "stack.h5", out, "--chunk-slices", "1")
    assert cli(capsys, *args)[0] == 0
    before = snapshot(folder)
    (tmp_path / "killed.py").write_text(KILLED_MID_SWAP)
    killed = subprocess.run([sys.executable, str(tmp_path / "killed.py"), *map(str, args),
                             "--overwrite"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert killed.returncode == 137, killed.stderr
    assert not out.exists()  # the window: the previous store is hidden as .old
    code, _, err = cli(capsys, *args)  # without --overwrite: refused, the store put back
    assert code == 2
    warning, error = err.strip().splitlines()[-2:]
    assert warning.startswith(f"emseg: warning: {out}: restored from .seg.") and \
        ".old.zarr" in warning
    assert error.startswith(f"emseg: error: {out}: already exists")
    after = snapshot(folder)
    assert {k: v for k, v in after.items() if not k.startswith(".")} == before
    code, _, err = cli(capsys, *args, "--overwrite")
    assert code == 0, err
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_evaluate_finds_a_store_that_a_killed_overwrite_left_aside(tmp_path, capsys, data):
    root, volume, _ = data
    store = zarr_stack(tmp_path / "seg.zarr", {"ids": volume.labels.astype(np.uint32)}, 2)
    store.rename(tmp_path / ".seg.999999999-0123abcd.old.zarr")  # no such process
    code, out, err = cli(capsys, "evaluate", "--seg", store / "ids", "--gt", root / "stack.h5")
    assert code == 0, err
    assert f"emseg: warning: {store}: restored from .seg.999999999-0123abcd.old.zarr" in err
