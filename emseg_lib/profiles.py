"""Run profiles: how big and how long every experiment is.

``smoke`` checks that everything runs (minutes on a 2-core CPU), ``quick`` gives meaningful
numbers on the CPU in well under an hour, ``full`` is the thesis's setting and wants a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from emseg_lib.errors import EmsegInputError
from emseg_lib.models import LEE2017_FILTERS


@dataclass(frozen=True)
class UNetSchedule:
    """Size and length of one supervised training run."""

    crop: tuple[int, ...]
    epochs: int
    samples_per_epoch: int
    batch_size: int
    val_crops: int


@dataclass(frozen=True)
class Profile:
    """All experiment sizes of one profile.

    Attributes:
        synthetic_shape: ``(Z, Y, X)`` of the synthetic volume used without CREMI files.
        unet2d_width, unet2d_depth: UNet2D base width and number of levels.
        unet3d_filters: UNet3D channels per level.
        unet2d, unet3d: training schedules (crops ``(H, W)`` and ``(D, H, W)``).
        tile_3d, overlap_3d, halo_3d: tiled 3D inference on whole volumes.
    """

    name: str
    synthetic_shape: tuple[int, int, int]
    unet2d_width: int
    unet2d_depth: int
    unet3d_filters: tuple[int, ...]
    unet2d: UNetSchedule
    unet3d: UNetSchedule
    tile_3d: tuple[int, int, int]
    overlap_3d: tuple[int, int, int]
    halo_3d: tuple[int, int, int]


PROFILES = {
    "smoke": Profile(
        name="smoke", synthetic_shape=(32, 192, 192),
        unet2d_width=4, unet2d_depth=5, unet3d_filters=(4, 6, 8, 10, 12),
        unet2d=UNetSchedule(crop=(64, 64), epochs=2, samples_per_epoch=8, batch_size=4,
                            val_crops=2),
        unet3d=UNetSchedule(crop=(5, 49, 49), epochs=2, samples_per_epoch=2, batch_size=1,
                            val_crops=1),
        tile_3d=(5, 97, 97), overlap_3d=(2, 32, 32), halo_3d=(0, 8, 8),
    ),
    "quick": Profile(
        name="quick", synthetic_shape=(48, 256, 256),
        unet2d_width=16, unet2d_depth=5, unet3d_filters=LEE2017_FILTERS,
        unet2d=UNetSchedule(crop=(160, 160), epochs=20, samples_per_epoch=64, batch_size=8,
                            val_crops=6),
        unet3d=UNetSchedule(crop=(9, 97, 97), epochs=15, samples_per_epoch=8, batch_size=1,
                            val_crops=2),
        tile_3d=(9, 129, 129), overlap_3d=(4, 48, 48), halo_3d=(1, 12, 12),
    ),
    "full": Profile(
        name="full", synthetic_shape=(125, 1250, 1250),
        unet2d_width=64, unet2d_depth=5, unet3d_filters=LEE2017_FILTERS,
        unet2d=UNetSchedule(crop=(160, 160), epochs=300, samples_per_epoch=900,
                            batch_size=18, val_crops=36),
        unet3d=UNetSchedule(crop=(18, 160, 160), epochs=210, samples_per_epoch=100,
                            batch_size=1, val_crops=8),
        tile_3d=(18, 256, 256), overlap_3d=(6, 64, 64), halo_3d=(2, 16, 16),
    ),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (``smoke``, ``quick`` or ``full``)."""
    if name not in PROFILES:
        raise EmsegInputError(f"profile must be one of {sorted(PROFILES)}, got {name!r}")
    return PROFILES[name]
