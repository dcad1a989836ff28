"""Train / validation / test split along z (thesis 4.1: slices 0-99, 100-104, 105-124)."""

from __future__ import annotations

from dataclasses import dataclass

from emseg_lib.data.cremi import EMVolume
from emseg_lib.errors import EmsegInputError

THESIS_SPLIT = (100, 5, 20)


@dataclass(frozen=True)
class ZSplit:
    """Slice ranges of the three splits along z."""

    train: slice
    val: slice
    test: slice

    def apply(self, volume: EMVolume) -> dict[str, EMVolume]:
        """``{"train": ..., "val": ..., "test": ...}`` sub-volumes (views)."""
        return {name: volume.subvolume(getattr(self, name)) for name in ("train", "val", "test")}


def split_slices(n_slices: int, proportions: tuple[int, int, int] = THESIS_SPLIT,
                 min_slices: tuple[int, int, int] = (1, 1, 1)) -> ZSplit:
    """Split ``n_slices`` consecutive slices into train / val / test.

    With 125 slices and the thesis proportions this is exactly 100 / 5 / 20; smaller stacks are
    scaled proportionally (validation and test rounded, at least ``min_slices`` each, train
    takes the rest). For 32 slices: 26 / 1 / 5.

    Raises:
        EmsegInputError: when the stack is too short to give every split its minimum.
    """
    if n_slices < sum(min_slices):
        raise EmsegInputError(
            f"a stack of {n_slices} slices cannot be split into train/val/test with at least "
            f"{min_slices} slices each"
        )
    total = sum(proportions)
    val = max(min_slices[1], round(n_slices * proportions[1] / total))
    test = max(min_slices[2], round(n_slices * proportions[2] / total))
    train = n_slices - val - test
    if train < min_slices[0]:
        raise EmsegInputError(
            f"a stack of {n_slices} slices leaves {train} training slices after {val} "
            f"validation and {test} test slices; at least {min_slices[0]} are needed"
        )
    return ZSplit(slice(0, train), slice(train, train + val), slice(train + val, n_slices))
