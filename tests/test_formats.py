"""TIFF stacks and slice folders: conversions only when asked, bad data refused at load."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from emseg_lib import EmsegInputError
from emseg_lib.data import validate
from emseg_lib.data.formats import load_stack, read_array


def _tif(path, array):
    tifffile.imwrite(path, array, photometric="minisblack")
    return path


def test_float_stack_rescaled_only_when_asked(tmp_path):
    raw = _tif(tmp_path / "raw.tif", np.linspace(0, 1, 3 * 8 * 8, dtype=np.float32)
               .reshape(3, 8, 8))
    with pytest.raises(EmsegInputError, match=r"raw\.tif: raw data is float32, expected uint8; "
                                              r"pass --rescale"):
        load_stack(raw)
    volume = load_stack(raw, rescale=True)
    assert volume.raw.dtype == np.uint8 and volume.raw.min() == 0 and volume.raw.max() == 255


def test_one_nan_patch_is_refused_not_rescaled_around(tmp_path):
    array = np.full((4, 8, 8), 100.0, np.float32)
    array[3, 2:4, 2:4] = np.nan
    array[0, 0, 0] = np.inf
    raw = _tif(tmp_path / "raw.tif", array)
    with pytest.raises(EmsegInputError, match=r"raw\.tif: raw slice 0 holds 1 NaN/inf values"):
        load_stack(raw, rescale=True)
    array[0, 0, 0] = 0.0
    _tif(raw, array)
    with pytest.raises(EmsegInputError, match=r"raw slice 3 holds 4 NaN/inf values"):
        load_stack(raw, rescale=True)


def test_negative_label_ids_are_refused_naming_the_file(tmp_path):
    raw = _tif(tmp_path / "raw.tif", np.zeros((2, 8, 8), np.uint8))
    ids = np.arange(2 * 8 * 8, dtype=np.int16).reshape(2, 8, 8)
    ids[1, 3, 3] = -1
    labels = _tif(tmp_path / "labels.tif", ids)
    with pytest.raises(EmsegInputError, match=r"labels\.tif: labels hold negative ids "
                                              r"\(lowest -1, first in slice 1\)"):
        load_stack(raw, labels, label_kind="instances")


def test_truncated_tiff_is_one_line(tmp_path):
    path = _tif(tmp_path / "raw.tif", np.random.default_rng(0).integers(
        0, 256, (8, 64, 64), dtype=np.uint8))
    data = path.read_bytes()
    for cut in (len(data) // 2, 200):
        path.write_bytes(data[:cut])
        with pytest.raises(EmsegInputError, match=r"raw\.tif: cannot be read as TIFF") as err:
            read_array(path)
        assert "\n" not in str(err.value)


def test_stacks_larger_than_memory_are_refused_before_reading(tmp_path, monkeypatch):
    path = _tif(tmp_path / "raw.tif", np.zeros((4, 64, 64), np.uint16))
    folder = tmp_path / "slices"
    folder.mkdir()
    for z in range(3):
        iio.imwrite(folder / f"s{z}.png", np.zeros((64, 64), np.uint8))
    monkeypatch.setattr(validate, "available_memory", lambda: 1000)
    with pytest.raises(EmsegInputError, match=r"raw\.tif: TIFF stack \(4, 64, 64\) uint16 would "
                                              r"need 32\.0 KiB of memory but 1000 B is "
                                              r"available"):
        read_array(path)
    with pytest.raises(EmsegInputError, match=r"slices: 3 slices \(3, 64, 64\) uint8 would "
                                              r"need 12\.0 KiB"):
        read_array(folder)
