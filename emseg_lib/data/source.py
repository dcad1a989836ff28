"""Choosing the data: a CREMI file when the user has one, else the synthetic volume."""

from __future__ import annotations

import enum
import sys
import warnings
from pathlib import Path

from emseg_lib.data.cremi import EMVolume, load_cremi
from emseg_lib.data.synthetic import DEFAULT_SHAPE
from emseg_lib.data.synthetic_cache import cached_synthetic_volume

DEFAULT_CREMI_FILE = Path("data/sample_A_20160501.hdf")


class SyntheticDataWarning(UserWarning):
    """Raised (as a warning) when the synthetic volume stands in for absent CREMI files."""


class CacheDir(enum.Enum):
    """Where :func:`open_volume` caches the synthetic volume when not told."""

    #: the folder of ``data_path`` (of :data:`DEFAULT_CREMI_FILE` when it is None)
    BESIDE_DATA = "beside data_path"


def open_volume(
    data_path: str | Path | None = DEFAULT_CREMI_FILE,
    *,
    synthetic_shape: tuple[int, int, int] = DEFAULT_SHAPE,
    seed: int = 0,
    cache_dir: str | Path | CacheDir | None = CacheDir.BESIDE_DATA,
) -> EMVolume:
    """The CREMI file at ``data_path`` if it exists, otherwise the synthetic volume.

    A file that exists but is malformed raises :class:`~emseg_lib.EmsegInputError`; only an
    *absent* file (or ``data_path=None``) falls back to synthetic data, with a
    :class:`SyntheticDataWarning` and a banner on stderr.

    Args:
        data_path: CREMI HDF5 file, or None to ask for synthetic data directly.
        synthetic_shape: ``(Z, Y, X)`` of the synthetic volume used as fallback.
        seed: seed of the synthetic volume.
        cache_dir: where the synthetic volume is cached, made once per shape and seed
            (:func:`~emseg_lib.data.synthetic_cache.cached_synthetic_volume`); by default
            beside ``data_path`` (the notebooks' ``data/`` folder); None: no cache.
    """
    if data_path is not None and Path(data_path).exists():
        return load_cremi(data_path)
    reason = "no data_path given" if data_path is None else f"{data_path} not found"
    message = (
        f"USING SYNTHETIC EM DATA ({reason}): every number and figure comes from "
        f"synthetic_em_volume(shape={tuple(synthetic_shape)}, seed={seed}), not from CREMI. "
        "Put sample_A_20160501.hdf (etc.) in data/ to use the real data."
    )
    print("!" * 80 + "\n" + message + "\n" + "!" * 80, file=sys.stderr)
    warnings.warn(message, SyntheticDataWarning, stacklevel=2)
    if cache_dir is CacheDir.BESIDE_DATA:
        cache_dir = Path(data_path if data_path is not None else DEFAULT_CREMI_FILE).parent
    return cached_synthetic_volume(synthetic_shape, seed, cache_dir=cache_dir)
