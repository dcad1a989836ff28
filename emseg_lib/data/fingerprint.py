"""Fingerprints of arrays and volumes: which data a run was trained on.

A fingerprint is a SHA-256 over an array's dtype, shape and bytes, read in chunks of whole
slices, so a full CREMI volume (125 x 1250 x 1250 raw plus uint64 labels) costs one pass
over its bytes and no copy of a contiguous array.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from emseg_lib.data.cremi import EMVolume

#: bytes hashed per chunk (whole slices along the first axis, at least one)
CHUNK_BYTES = 64 << 20


def array_sha256(array: np.ndarray) -> str:
    """Hex SHA-256 of ``array``'s dtype, shape and values (C order)."""
    array = np.asarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    if array.ndim == 0 or array.size == 0:
        digest.update(array.tobytes())
        return digest.hexdigest()
    rows = max(1, CHUNK_BYTES // array[0].nbytes)
    for start in range(0, array.shape[0], rows):
        chunk = np.ascontiguousarray(array[start:start + rows])
        digest.update(chunk.reshape(-1).view(np.uint8))
    return digest.hexdigest()


def volume_fingerprint(volume: EMVolume) -> dict[str, Any]:
    """``{"shape": [Z, Y, X], "raw_sha256": ..., "labels_sha256": ... or None}``."""
    return {"shape": list(volume.shape), "raw_sha256": array_sha256(volume.raw),
            "labels_sha256": None if volume.labels is None else array_sha256(volume.labels)}
