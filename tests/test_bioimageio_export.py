"""``emseg export``: bioimage.io packages of a 2D and a 3D network pass bioimageio.core's own
test (the package's prediction on its test input equals emseg's), and a package whose
weights do not give emseg's prediction fails it."""

from __future__ import annotations

import json
import zipfile

import h5py
import numpy as np
import pytest
import tifffile
import torch
import yaml

from emseg_lib.cli import main
from emseg_lib.data import synthetic_em_volume
from emseg_lib.experiments.supervised import make_model, train_unet
from emseg_lib.profiles import get_profile
from emseg_lib.train import bioimageio_export
from emseg_lib.train.bioimageio_export import check_package, export_bioimageio
from emseg_lib.train.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def volume():
    return synthetic_em_volume((16, 96, 96), seed=2)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, volume):
    """best.pt of a smoke-trained UNet2D and UNet3D (one epoch each)."""
    root = tmp_path_factory.mktemp("runs")
    for kind in ("unet2d", "unet3d"):
        train_unet(kind, volume, get_profile("smoke"), root / kind, progress=False, workers=1,
                   tensorboard=False)
    return root


@pytest.mark.parametrize("kind, stack", [("unet2d", "raw.tif"), ("unet3d", "raw.h5")])
def test_the_package_passes_bioimageio_cores_test(tmp_path, capsys, checkpoints, volume, kind,
                                                   stack):
    """A TIFF stack (read whole) and an HDF5 one (read by ranges of slices)."""
    data = tmp_path / stack
    if data.suffix == ".tif":
        tifffile.imwrite(data, volume.raw, photometric="minisblack")
    else:
        with h5py.File(data, "w") as handle:
            handle.create_dataset("volumes/raw", data=volume.raw).attrs["resolution"] = \
                volume.resolution
    out = tmp_path / f"{kind}.zip"
    code = main(["export", "--checkpoint", str(checkpoints / kind / "best.pt"), "--data",
                 str(data), "--resolution", *map(str, volume.resolution), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "bioimageio.core test passed" in captured.out
    with zipfile.ZipFile(out) as package:
        rdf = yaml.safe_load(package.read("rdf.yaml"))
        test_input = np.load(package.open("test_input.npy"))
    axes = {axis["id"]: axis for axis in rdf["inputs"][0]["axes"] if "id" in axis}
    assert axes["x"]["scale"] == volume.resolution[2] and axes["x"]["unit"] == "nanometer"
    assert ("z" in axes) == (kind == "unet3d")
    learned = rdf["config"]["emseg"]["postprocess"]
    assert set(learned["thresholds"]) == {"thesis", "seeded"}
    assert json.dumps(learned)  # plain values
    assert test_input.max() > 1  # grey values 0-255, scaled by the package's preprocessing


def test_a_package_that_does_not_reproduce_emseg_fails_the_test(tmp_path, checkpoints, volume,
                                                              monkeypatch):
    """The weights written are another network's: bioimageio.core must notice."""
    other = make_model("unet2d", get_profile("smoke"), seed=7).eval()
    traced = bioimageio_export._torchscript
    monkeypatch.setattr(bioimageio_export, "_torchscript",
                        lambda model, example, dims: traced(other, example, dims))
    package = export_bioimageio(checkpoints / "unet2d" / "best.pt", volume.raw,
                                volume.resolution, tmp_path / "wrong.zip")
    assert check_package(package) != "passed"


def test_export_refuses_a_name_that_is_not_a_zip(tmp_path, capsys, checkpoints, volume):
    code = main(["export", "--checkpoint", str(checkpoints / "unet2d" / "best.pt"), "--data",
                 str(tmp_path / "raw.tif"), "--out", str(tmp_path / "model.h5")])
    assert code == 2
    assert "a bioimage.io package is a .zip file" in capsys.readouterr().err


def test_a_network_that_predicts_no_cell_is_one_line(tmp_path, capsys, checkpoints, volume):
    """bioimage.io refuses a test output below 1e-4 everywhere (a network that finds no cell
    on the crop): one line naming the checkpoint and the probabilities, nothing written."""
    state = load_checkpoint(checkpoints / "unet2d" / "best.pt")
    state["model"]["head.bias"] = torch.full_like(state["model"]["head.bias"], -100.0)
    dead = tmp_path / "dead.pt"
    save_checkpoint(dead, state)
    data = tmp_path / "raw.tif"
    tifffile.imwrite(data, volume.raw, photometric="minisblack")
    out = tmp_path / "dead.zip"
    code = main(["export", "--checkpoint", str(dead), "--data", str(data), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"{dead}: bioimage.io refuses the package" in err and "too small" in err
    assert not out.exists()
