"""CREMI HDF5 loading: round trip and every bad-input error."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from emseg_lib import EmsegInputError
from emseg_lib.data import (
    LABELS_KEY,
    RAW_KEY,
    EMVolume,
    SyntheticDataWarning,
    load_cremi,
    open_volume,
    save_cremi,
)


def _write(path, raw=None, labels=None, resolution=(40.0, 4.0, 4.0)):
    with h5py.File(path, "w") as f:
        if raw is not None:
            ds = f.create_dataset(RAW_KEY, data=raw)
            if resolution is not None:
                ds.attrs["resolution"] = resolution
        if labels is not None:
            f.create_dataset(LABELS_KEY, data=labels)
    return path


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (4, 16, 20), dtype=np.uint8)
    labels = rng.integers(0, 9, (4, 16, 20)).astype(np.uint64)
    path = save_cremi(EMVolume(raw, labels, (40.0, 4.0, 4.0), "test"), tmp_path / "v.hdf")
    loaded = load_cremi(path)
    np.testing.assert_array_equal(loaded.raw, raw)
    np.testing.assert_array_equal(loaded.labels, labels)
    assert loaded.resolution == (40.0, 4.0, 4.0)
    assert loaded.labels.dtype == np.uint64 and loaded.raw.dtype == np.uint8
    assert loaded.synthetic is False


def test_reads_file_written_with_plain_h5py(tmp_path):
    raw = np.zeros((2, 8, 8), np.uint8)
    path = _write(tmp_path / "sample.hdf", raw, np.ones((2, 8, 8), np.uint64))
    volume = load_cremi(path)
    assert volume.shape == (2, 8, 8)
    assert volume.caption == "CREMI data: sample.hdf"


def test_synthetic_flag_survives_round_trip(tmp_path, small_volume):
    loaded = load_cremi(save_cremi(small_volume, tmp_path / "syn.hdf"))
    assert loaded.synthetic
    assert "SYNTHETIC" in loaded.caption
    np.testing.assert_array_equal(loaded.labels, small_volume.labels)


def test_missing_file(tmp_path):
    with pytest.raises(EmsegInputError, match=r"nope\.hdf: file not found"):
        load_cremi(tmp_path / "nope.hdf")


def test_not_hdf5(tmp_path):
    path = tmp_path / "fake.hdf"
    path.write_text("this is not HDF5")
    with pytest.raises(EmsegInputError, match=r"fake\.hdf: not an HDF5 file"):
        load_cremi(path)


def test_missing_raw_key(tmp_path):
    path = _write(tmp_path / "noraw.hdf", labels=np.ones((2, 4, 4), np.uint64))
    with pytest.raises(EmsegInputError, match=r"noraw\.hdf: dataset 'volumes/raw' not found"):
        load_cremi(path)


def test_missing_labels_key(tmp_path):
    path = _write(tmp_path / "nolab.hdf", raw=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(EmsegInputError,
                       match=r"nolab\.hdf: dataset 'volumes/labels/neuron_ids' not found"):
        load_cremi(path)
    assert load_cremi(path, require_labels=False).labels is None


def test_shape_mismatch(tmp_path):
    path = _write(tmp_path / "mis.hdf", np.zeros((2, 4, 4), np.uint8),
                  np.ones((2, 4, 5), np.uint64))
    with pytest.raises(EmsegInputError, match=r"shape \(2, 4, 5\) but 'volumes/raw' has shape"):
        load_cremi(path)


def test_not_3d(tmp_path):
    path = _write(tmp_path / "flat.hdf", np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint64))
    with pytest.raises(EmsegInputError, match=r"must be 3-D \(Z, Y, X\)"):
        load_cremi(path)


def test_missing_resolution(tmp_path):
    path = _write(tmp_path / "nores.hdf", np.zeros((2, 4, 4), np.uint8),
                  np.ones((2, 4, 4), np.uint64), resolution=None)
    with pytest.raises(EmsegInputError, match="no 'resolution' attribute"):
        load_cremi(path)
    assert load_cremi(path, resolution=(40, 4, 4)).resolution == (40, 4, 4)


def test_open_volume_falls_back_to_synthetic_loudly(tmp_path, capsys):
    with pytest.warns(SyntheticDataWarning, match="USING SYNTHETIC EM DATA"):
        volume = open_volume(tmp_path / "absent.hdf", synthetic_shape=(4, 64, 64))
    assert volume.synthetic and volume.shape == (4, 64, 64)
    assert "USING SYNTHETIC EM DATA" in capsys.readouterr().err


def test_open_volume_does_not_hide_a_broken_file(tmp_path):
    path = tmp_path / "broken.hdf"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(EmsegInputError, match="not an HDF5 file"):
        open_volume(path)
