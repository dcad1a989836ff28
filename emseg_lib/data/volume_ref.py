"""An input volume named rather than opened, for jobs on other processes or machines to open
themselves and read box by box (blockwise segmentation): an HDF5 dataset or a zarr array.

Each box read is checked as :mod:`~emseg_lib.data.volumes` checks a chunk (uint8 raw data;
probabilities finite and in [0, 1]), naming the file and the slices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emseg_lib.data.readers import open_array
from emseg_lib.data.volumes import CheckedProbabilities
from emseg_lib.errors import EmsegInputError, one_line

#: what a volume holds: raw intensities (uint8), cell probabilities, or affinities (a
#: channel axis first)
ROLES = ("raw", "probabilities", "affinities")


@dataclass(frozen=True)
class VolumeRef:
    """A ``(Z, Y, X)`` volume to read by boxes.

    Attributes:
        path: the HDF5 file, or the zarr store.
        key: the dataset in the HDF5 file, or the array in the zarr store.
        zarr: True for a zarr store.
        role: ``"raw"`` (uint8 intensities), ``"probabilities"`` (float in [0, 1] or
            uint8 read as value / 255) or ``"affinities"`` (``(C, Z, Y, X)`` as
            probabilities, every channel of a box read).
        invert: probabilities given as 1 = boundary, read as ``1 - p``.
    """

    path: str
    key: str
    zarr: bool
    role: str = "raw"
    invert: bool = False

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise EmsegInputError(f"a volume's role is one of {ROLES}, got {self.role!r}")

    def read(self, box: tuple[slice, slice, slice]) -> np.ndarray:
        """The voxels of ``box`` ``(z, y, x)`` ranges: uint8 raw, float32 probabilities,
        or float32 affinities ``(C, z, y, x)``.

        Raises:
            EmsegInputError: a damaged file, or probabilities outside [0, 1] or not finite
                (naming the file and the slice).
        """
        index = (slice(None), *box) if self.role == "affinities" else box
        try:
            with open_array(self.path, self.key, "zarr" if self.zarr else "hdf5") as stored:
                chunk = np.asarray(stored[index])
        except (OSError, ValueError, RuntimeError, KeyError) as err:
            raise EmsegInputError(f"{self.path}: '{self.key}' slices {box[0].start}.."
                                  f"{box[0].stop - 1} cannot be read ({one_line(err)}); the "
                                  "file may be truncated or corrupt") from err
        if self.role == "raw":
            return chunk
        if self.role == "affinities":
            check = CheckedProbabilities(self.path)
            return np.stack([check(channel, box[0].start) for channel in chunk])
        prob = CheckedProbabilities(self.path)(chunk, box[0].start)
        return 1.0 - prob if self.invert else prob
