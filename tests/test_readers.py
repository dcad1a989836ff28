"""The one format dispatch (emseg_lib.data.readers): every input format opens through
open_input, and a wrong suffix, a missing file or a missing key is one clear error naming
the file (and a key flag only when the caller names one)."""

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import zarr

from emseg_lib.data.readers import format_of, open_input, read_array
from emseg_lib.errors import EmsegInputError

VOLUME = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8)


def _hdf5(path, key="volumes/raw", data=VOLUME, resolution=None):
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset(key, data=data)
        if resolution is not None:
            dataset.attrs["resolution"] = resolution
    return path


def _zarr(path, key="raw", data=VOLUME, zarr_format=3):
    group = zarr.open_group(path, mode="w", zarr_format=zarr_format)
    group.create_array(key, data=data, chunks=(*data.shape[:-3], 2, 8, 8))
    return path


def _tiff(path, data=VOLUME):
    tifffile.imwrite(path, data, photometric="minisblack")
    return path


def _folder(path, data=VOLUME):
    path.mkdir()
    for z, image in enumerate(data):
        iio.imwrite(path / f"slice_{z}.png", image)
    return path


@pytest.mark.parametrize(("name", "expected"), [
    ("a.h5", "hdf5"), ("a.HDF", "hdf5"), ("a.hdf5", "hdf5"), ("a.zarr", "zarr"),
    ("a.zarr/volumes/raw", "zarr"), ("a.tif", "tiff"), ("a.TIFF", "tiff"), ("a.xyz", None),
    ("a.png", None)])
def test_format_by_suffix(tmp_path, name, expected):
    assert format_of(tmp_path / name) == expected


def test_format_of_folders(tmp_path):
    assert format_of(_folder(tmp_path / "slices")) == "folder"
    assert format_of(_zarr(tmp_path / "store", zarr_format=2)) == "zarr"  # by its metadata


@pytest.mark.parametrize("make", [
    lambda p: (_hdf5(p / "v.h5"), None),
    lambda p: (_zarr(p / "v.zarr", zarr_format=2), None),
    lambda p: (_zarr(p / "v.zarr"), "raw"),
    lambda p: (_tiff(p / "v.tif"), None),
    lambda p: (_folder(p / "slices"), None),
], ids=["hdf5", "zarr-v2", "zarr-v3-key", "tiff", "folder"])
def test_every_format_opens_through_one_dispatch(tmp_path, make):
    path, key = make(tmp_path)
    with open_input(path, key, role="raw") as source:
        assert tuple(source.array.shape) == VOLUME.shape
        np.testing.assert_array_equal(np.asarray(source.array[1:3]), VOLUME[1:3])
        np.testing.assert_array_equal(source.read(), VOLUME)
        assert source.format == format_of(path)
        assert source.resolution((40, 4, 4)) == (40, 4, 4)


def test_stored_resolution(tmp_path):
    path = _hdf5(tmp_path / "v.h5", resolution=(30.0, 5.0, 5.0))
    with open_input(path) as source:
        assert source.resolution((40, 4, 4)) == (30.0, 5.0, 5.0)


def test_unknown_suffix_is_one_error_naming_the_file(tmp_path):
    path = tmp_path / "raw.xyz"
    path.write_bytes(b"not a volume")
    with pytest.raises(EmsegInputError, match=r"raw\.xyz: unknown format '\.xyz'"):
        with open_input(path):
            pass
    with pytest.raises(EmsegInputError, match=r"missing\.tif: not found"):
        read_array(tmp_path / "missing.tif")


def test_missing_key_names_the_file_and_no_flag(tmp_path):
    path = _hdf5(tmp_path / "v.h5", key="stack")
    with pytest.raises(EmsegInputError, match=r"v\.h5: dataset 'nope' not found") as err:
        with open_input(path, "nope", role="labels"):
            pass
    assert "--" not in str(err.value) and "\n" not in str(err.value)
    store = _zarr(tmp_path / "v.zarr")
    with pytest.raises(EmsegInputError, match=r"v\.zarr: no labels array 'nope'") as err:
        with open_input(store, "nope", role="labels"):
            pass
    assert "--" not in str(err.value)
    with pytest.raises(EmsegInputError, match=r"'stack' names a dataset .* not of .*v\.tif"):
        with open_input(_tiff(tmp_path / "v.tif"), "stack"):
            pass


def test_a_callers_flag_is_named(tmp_path):
    path = _hdf5(tmp_path / "v.h5", key="stack")
    with pytest.raises(EmsegInputError, match="name another with --gt-key"):
        with open_input(path, "nope", role="labels", flag="--gt-key"):
            pass


def test_probabilities_and_affinities_found_by_dimensions(tmp_path):
    prob = _hdf5(tmp_path / "p.h5", key="prob", data=np.full(VOLUME.shape, 0.5, np.float32))
    with open_input(prob, role="probabilities") as source:
        assert source.key == "prob"
    affinities = np.zeros((3, *VOLUME.shape), np.float32)
    store = _zarr(tmp_path / "a.zarr", key="affs", data=affinities)
    with open_input(store, role="affinities") as source:
        assert source.array.shape == affinities.shape and source.path == store / "affs"
    with pytest.raises(EmsegInputError, match=r"a\.zarr: 'x' not found; present: \['affs'\]"):
        with open_input(store, "x", role="affinities"):
            pass
