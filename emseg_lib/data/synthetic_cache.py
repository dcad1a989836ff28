"""The synthetic volume, made once: an HDF5 cache keyed by everything that determines it.

:func:`cached_synthetic_volume` returns ``synthetic_em_volume(shape, seed, config)`` from
``cache_dir/synthetic_<key>.h5`` (the CREMI layout, :func:`~emseg_lib.data.cremi.save_cremi`)
when a verified file is there; otherwise it makes the volume and writes that file
atomically. The key is a SHA-256 of the parameters, of the generator's source code and of the
NumPy / SciPy / scikit-image versions, so a changed generator never reads an old file. The
file stores the full key and SHA-256 checksums of both arrays; a file whose key or checksums do
not match (damaged, truncated, edited) is made again and replaced, never trusted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import scipy
import skimage

from emseg_lib.data import synthetic
from emseg_lib.data.cremi import EMVolume, load_cremi, save_cremi
from emseg_lib.data.fingerprint import array_sha256
from emseg_lib.data.synthetic import DEFAULT_SHAPE, SyntheticEMConfig, synthetic_em_volume
from emseg_lib.errors import EmsegInputError, one_line

KEY_ATTR = "emseg_synthetic_key"
RAW_ATTR = "emseg_raw_sha256"
LABELS_ATTR = "emseg_labels_sha256"


def cache_key(shape: tuple[int, int, int], seed: int, config: SyntheticEMConfig) -> str:
    """Hex SHA-256 of everything the synthetic volume depends on."""
    parameters = {
        "shape": [int(size) for size in shape], "seed": int(seed),
        "config": dataclasses.asdict(config),
        "generator_sha256": hashlib.sha256(Path(synthetic.__file__).read_bytes()).hexdigest(),
        "numpy": np.__version__, "scipy": scipy.__version__, "skimage": skimage.__version__,
    }
    return hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()


def cache_file(cache_dir: str | Path, key: str) -> Path:
    """``cache_dir/synthetic_<first 16 hex digits of key>.h5``."""
    return Path(cache_dir) / f"synthetic_{key[:16]}.h5"


def _verified(path: Path, key: str) -> EMVolume | None:
    """The cached volume if ``path`` holds exactly the volume of ``key``, else None (warned)."""
    try:
        with h5py.File(path, "r") as handle:
            stored = {name: str(handle.attrs.get(name, ""))
                      for name in (KEY_ATTR, RAW_ATTR, LABELS_ATTR, "emseg_source")}
        volume = load_cremi(path)
    except (OSError, EmsegInputError) as err:
        problem = one_line(err)
    else:
        if stored[KEY_ATTR] != key or not volume.synthetic:
            problem = "made with other parameters"
        elif (array_sha256(volume.raw) != stored[RAW_ATTR]
              or array_sha256(volume.labels) != stored[LABELS_ATTR]):
            problem = "its arrays do not match their checksums"
        else:
            return dataclasses.replace(volume, source=stored["emseg_source"])
    warnings.warn(f"{path}: cached synthetic volume not usable ({problem}); making it again",
                  stacklevel=3)
    return None


def cached_synthetic_volume(shape: tuple[int, int, int] = DEFAULT_SHAPE, seed: int = 0,
                            config: SyntheticEMConfig | None = None, *,
                            cache_dir: str | Path | None) -> EMVolume:
    """:func:`~emseg_lib.data.synthetic.synthetic_em_volume`, made once per parameters.

    Args:
        shape, seed, config: as for ``synthetic_em_volume``.
        cache_dir: folder of the cache files (created if missing); None makes the volume
            without any cache. A folder that cannot be written only costs the cache (warned).

    Returns:
        The same volume ``synthetic_em_volume(shape, seed, config)`` returns (``source`` and
        ``synthetic=True`` included).
    """
    config = config or SyntheticEMConfig()
    if cache_dir is None:
        return synthetic_em_volume(shape, seed, config)
    key = cache_key(shape, seed, config)
    path = cache_file(cache_dir, key)
    if path.exists():
        volume = _verified(path, key)
        if volume is not None:
            return volume
    volume = synthetic_em_volume(shape, seed, config)
    try:
        save_cremi(volume, path, attrs={KEY_ATTR: key, RAW_ATTR: array_sha256(volume.raw),
                                        LABELS_ATTR: array_sha256(volume.labels)})
    except OSError as err:
        warnings.warn(f"{path}: cannot cache the synthetic volume ({one_line(err)}); it will "
                      "be made again next time", stacklevel=2)
    return volume
