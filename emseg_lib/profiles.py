"""Run profiles: how big and how long every experiment is.

``smoke`` checks that everything runs (minutes on a 2-core CPU), ``quick`` gives meaningful
numbers on the CPU in well under an hour, ``full`` is the thesis's setting and wants a GPU.
The values live in ``resources/profiles.toml``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from emseg_lib.errors import EmsegInputError


@dataclass(frozen=True)
class UNetSchedule:
    """Size and length of one supervised training run."""

    crop: tuple[int, ...]
    epochs: int
    samples_per_epoch: int
    batch_size: int
    val_crops: int


@dataclass(frozen=True)
class Tiling:
    """Overlapping-tile inference of a 3D network (:func:`~emseg_lib.inference.predict_tiled`).

    Attributes:
        tile: window ``(D, H, W)`` in voxels.
        overlap: overlap of neighbouring windows per axis.
        halo: per axis, the inner border of a window discarded where it meets another.
    """

    tile: tuple[int, int, int]
    overlap: tuple[int, int, int]
    halo: tuple[int, int, int]


@dataclass(frozen=True)
class StyleGANPlan:
    """StyleGAN size and progressive schedule (``(resolution, iterations)`` phases)."""

    channels: tuple[int, ...]
    style_dim: int
    crop: int
    schedule: tuple[tuple[int, int], ...]
    batch_size: int
    samples_per_epoch: int
    sample_every: int
    realism_crops: int


@dataclass(frozen=True)
class BoundlessPlan:
    """Boundless GAN size and length (generator ``width``, discriminator ``d_widths``)."""

    width: int
    d_widths: tuple[int, ...]
    crop: int
    steps: int
    batch_size: int
    samples_per_epoch: int
    val_crops: int
    eval_every: int


@dataclass(frozen=True)
class TransferPlan:
    """Transfer-learning sweep: crops, length, seeds, early stopping on reduced data."""

    crop: int
    epochs: int
    samples_per_epoch: int
    batch_size: int
    val_crops: int
    seeds: tuple[int, ...]
    early_stop_epochs: int
    reduced_fraction: float


@dataclass(frozen=True)
class Profile:
    """All experiment sizes of one profile.

    Attributes:
        synthetic_shape: ``(Z, Y, X)`` of the synthetic volume used without CREMI files.
        real_data_crop: largest ``(Z, Y, X)`` of a real stack in the real-data experiments
            (a centred crop; empty = the whole stack).
        validation_seed: seed of every experiment's validation crops (the same crops for
            every training seed).
        unet2d_width, unet2d_depth: UNet2D base width and number of levels.
        unet3d_filters: UNet3D channels per level.
        unet2d, unet3d: training schedules (crops ``(H, W)`` and ``(D, H, W)``).
        tiling_3d: tiled 3D inference on whole volumes.
        stylegan, boundless: the GAN experiments.
        transfer: the transfer-learning sweep.
        num_workers: DataLoader worker processes of every training run (``"auto"`` in the
            TOML file, None here: chosen from the device and the CPU cores,
            :func:`~emseg_lib.train.feed.resolve_loader_workers`; 0: in-process).
        notebook_limit_s: seconds after which ``run_all.sh`` takes a notebook as hung
            (:mod:`emseg_lib.watchdog`).
    """

    name: str
    synthetic_shape: tuple[int, int, int]
    real_data_crop: tuple[int, ...]
    validation_seed: int
    notebook_limit_s: int
    num_workers: int | None
    unet2d_width: int
    unet2d_depth: int
    unet3d_filters: tuple[int, ...]
    unet2d: UNetSchedule
    unet3d: UNetSchedule
    tiling_3d: Tiling
    stylegan: StyleGANPlan
    boundless: BoundlessPlan
    transfer: TransferPlan


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    """TOML arrays -> tuples (nested too), so profiles are hashable and immutable."""
    def convert(value: Any) -> Any:
        return tuple(convert(v) for v in value) if isinstance(value, list) else value
    return {key: convert(value) for key, value in values.items()}


def _workers(name: str, value: Any) -> int | None:
    """``num_workers`` of a profile: ``"auto"`` -> None, else an int >= 0."""
    if value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EmsegInputError(f"profile {name}: num_workers must be \"auto\" or an integer "
                              f">= 0, got {value!r}")
    return value


def _profile(name: str, values: dict[str, Any]) -> Profile:
    plans = {"unet2d": UNetSchedule, "unet3d": UNetSchedule, "stylegan": StyleGANPlan,
             "boundless": BoundlessPlan, "transfer": TransferPlan, "tiling_3d": Tiling}
    fields = _tuples({key: value for key, value in values.items() if key not in plans})
    fields["num_workers"] = _workers(name, fields.get("num_workers"))
    nested = {key: plan(**_tuples(values[key])) for key, plan in plans.items()}
    return Profile(name=name, **fields, **nested)


def _load_profiles() -> dict[str, Profile]:
    text = (files("emseg_lib") / "resources" / "profiles.toml").read_text()
    return {name: _profile(name, values) for name, values in tomllib.loads(text).items()}


PROFILES = _load_profiles()


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (``smoke``, ``quick`` or ``full``)."""
    if name not in PROFILES:
        raise EmsegInputError(f"profile must be one of {sorted(PROFILES)}, got {name!r}")
    return PROFILES[name]
