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
from emseg_lib.data.formats import load_stack


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


def test_float_raw_needs_rescale_which_maps_min_max_to_0_255(tmp_path):
    raw = np.linspace(-1.0, 3.0, 2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    path = _write(tmp_path / "float.hdf", raw, np.ones((2, 4, 4), np.uint64))
    with pytest.raises(EmsegInputError, match=r"float\.hdf: 'volumes/raw' must be uint8, got "
                                              r"float32; pass --rescale"):
        load_cremi(path)
    loaded = load_cremi(path, rescale=True)
    assert loaded.raw.dtype == np.uint8
    assert loaded.raw.min() == 0 and loaded.raw.max() == 255
    np.testing.assert_array_equal(loaded.raw, np.rint((raw + 1) / 4 * 255).astype(np.uint8))
    assert load_stack(path, rescale=True).raw.max() == 255  # the generic loader passes it on


def test_nan_raw_is_refused_naming_the_slice_even_with_rescale(tmp_path):
    raw = np.ones((4, 4, 4), np.float32)
    raw[2, 1, 1] = np.nan
    path = _write(tmp_path / "nan.hdf", raw, np.ones((4, 4, 4), np.uint64))
    with pytest.raises(EmsegInputError, match=r"nan\.hdf: raw slice 2 holds 1 NaN/inf values"):
        load_cremi(path, rescale=True)


def test_negative_label_ids_are_refused(tmp_path):
    labels = np.ones((3, 4, 4), np.int64)
    labels[1, 0, 0] = -5
    path = _write(tmp_path / "neg.hdf", np.zeros((3, 4, 4), np.uint8), labels)
    with pytest.raises(EmsegInputError, match=r"neg\.hdf: labels hold negative ids \(lowest -5,"
                                              r" first in slice 1\)"):
        load_cremi(path)


def test_a_header_claiming_terabytes_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.hdf"
    with h5py.File(path, "w") as f:  # chunked and never written: a tiny file
        raw = f.create_dataset(RAW_KEY, shape=(62_500, 62_500, 62_500), dtype=np.uint8,
                               chunks=(1, 64, 64))
        raw.attrs["resolution"] = (40.0, 4.0, 4.0)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(EmsegInputError, match=r"huge\.hdf: volumes/raw \(62500, 62500, 62500\) "
                                              r"uint8 would need 222\.0 TiB of memory") as err:
        load_cremi(path, require_labels=False)
    assert "\n" not in str(err.value)


def test_truncated_or_corrupt_file_is_one_line(tmp_path):
    raw = np.random.default_rng(0).integers(0, 256, (8, 64, 64), dtype=np.uint8)
    path = tmp_path / "cut.hdf"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(RAW_KEY, data=raw, compression="gzip", chunks=(1, 64, 64))
        ds.attrs["resolution"] = (40.0, 4.0, 4.0)
        f.create_dataset(LABELS_KEY, data=np.ones((8, 64, 64), np.uint64))
        chunk = ds.id.get_chunk_info(3).byte_offset
    data = bytearray(path.read_bytes())
    data[chunk:chunk + 64] = bytes(64)  # a damaged chunk: the header still reads fine
    corrupt = tmp_path / "corrupt.hdf"
    corrupt.write_bytes(bytes(data))
    with pytest.raises(EmsegInputError, match=r"corrupt\.hdf: dataset 'volumes/raw' cannot be "
                                              r"read \(.*\); the file may be truncated") as err:
        load_cremi(corrupt)
    assert "\n" not in str(err.value)
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(EmsegInputError, match=r"cut\.hdf: cannot be opened as HDF5 \(.*"
                                              r"truncated file") as err:
        load_cremi(path)
    assert "\n" not in str(err.value)


def test_save_cremi_replaces_a_file_only_when_complete(tmp_path):
    path = save_cremi(EMVolume(np.zeros((1, 4, 4), np.uint8), None, (40.0, 4.0, 4.0), "a"),
                      tmp_path / "v.hdf")
    before = path.read_bytes()
    unwritable = EMVolume(np.zeros((1, 4, 4), np.uint8), np.full((1, 4, 4), "x", object),
                          (40.0, 4.0, 4.0), "b")
    with pytest.raises(ValueError, match="invalid literal"):  # fails after raw was written
        save_cremi(unwritable, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["v.hdf"]
