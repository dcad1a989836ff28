"""The synthetic-volume cache: made once, found again, never trusted when damaged."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from emseg_lib.data import SyntheticDataWarning, open_volume, synthetic_em_volume
from emseg_lib.data import synthetic_cache as cache
from emseg_lib.data.cremi import RAW_KEY
from emseg_lib.data.synthetic import SyntheticEMConfig

SHAPE = (3, 48, 48)


def _same(a, b):
    np.testing.assert_array_equal(a.raw, b.raw)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert (a.source, a.synthetic, a.resolution, a.caption) == \
        (b.source, b.synthetic, b.resolution, b.caption)


def _file(tmp_path, seed=1):
    return cache.cache_file(tmp_path, cache.cache_key(SHAPE, seed, SyntheticEMConfig()))


def _no_generator(monkeypatch):
    def refuse(*args):
        raise AssertionError("made again although cached")
    monkeypatch.setattr(cache, "synthetic_em_volume", refuse)


def test_made_once_then_read_back(tmp_path, monkeypatch):
    made = cache.cached_synthetic_volume(SHAPE, 1, cache_dir=tmp_path)
    _same(made, synthetic_em_volume(SHAPE, 1))
    assert [p.name for p in tmp_path.iterdir()] == [_file(tmp_path).name]
    _no_generator(monkeypatch)
    read = cache.cached_synthetic_volume(SHAPE, 1, cache_dir=tmp_path)
    _same(read, made)
    assert read.synthetic and read.caption.startswith("SYNTHETIC")


def test_every_parameter_has_its_own_file(tmp_path):
    keys = {cache.cache_key(SHAPE, 1, SyntheticEMConfig()),
            cache.cache_key(SHAPE, 2, SyntheticEMConfig()),
            cache.cache_key((4, 48, 48), 1, SyntheticEMConfig()),
            cache.cache_key(SHAPE, 1, SyntheticEMConfig(noise_std=0.1))}
    assert len(keys) == 4


def _truncate(path):
    path.write_bytes(path.read_bytes()[:2000])


def _flip_a_voxel(path):
    with h5py.File(path, "r+") as handle:
        handle[RAW_KEY][0, 0, 0] ^= 1


def _other_key(path):
    with h5py.File(path, "r+") as handle:
        handle.attrs[cache.KEY_ATTR] = "0" * 64


@pytest.mark.parametrize("damage", [_truncate, _flip_a_voxel, _other_key])
def test_a_damaged_file_is_made_again(tmp_path, damage):
    made = cache.cached_synthetic_volume(SHAPE, 1, cache_dir=tmp_path)
    damage(_file(tmp_path))
    with pytest.warns(UserWarning, match="cached synthetic volume not usable"):
        again = cache.cached_synthetic_volume(SHAPE, 1, cache_dir=tmp_path)
    _same(again, made)
    _same(cache._verified(_file(tmp_path), cache.cache_key(SHAPE, 1, SyntheticEMConfig())),
          made)  # the file was replaced by a good one


def test_no_cache_dir_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache.cached_synthetic_volume(SHAPE, 1, cache_dir=None)
    with pytest.warns(SyntheticDataWarning):
        open_volume(tmp_path / "absent.hdf", synthetic_shape=SHAPE, seed=1, cache_dir=None)
    assert list(tmp_path.iterdir()) == []


def test_open_volume_caches_beside_the_data_path(tmp_path, monkeypatch):
    data = tmp_path / "data"
    with pytest.warns(SyntheticDataWarning):
        made = open_volume(data / "sample_A_20160501.hdf", synthetic_shape=SHAPE, seed=1)
    assert _file(data).exists()
    _no_generator(monkeypatch)
    with pytest.warns(SyntheticDataWarning):
        _same(open_volume(data / "sample_A_20160501.hdf", synthetic_shape=SHAPE, seed=1), made)
