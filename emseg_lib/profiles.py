"""Run profiles: how big and how long every experiment is.

``smoke`` checks that everything runs (minutes on a 2-core CPU), ``quick`` gives meaningful
numbers on the CPU in well under an hour, ``full`` is the thesis's setting and wants a GPU.
The values live in ``resources/profiles.toml``.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, get_type_hints

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
        unet2d, unet3d: training schedules (crops ``(H, W)`` and ``(D, H, W)``;
            :data:`SCHEDULES`), each named by a network's
            :attr:`~emseg_lib.models.ModelEntry.schedule_section`.
        tiling_3d: tiled 3D inference on whole volumes.
        stylegan, boundless: the GAN experiments.
        transfer: the transfer-learning sweep.
        num_workers: DataLoader worker processes of every training run (``"auto"`` in the
            TOML file, None here: chosen from the device and the CPU cores,
            :func:`~emseg_lib.train.feed.resolve_loader_workers`; 0: in-process).
        notebook_limit_s: seconds after which ``run_all.sh`` takes a notebook as hung
            (:mod:`emseg_lib.infra.watchdog`).
        predict_slices: at most this many slices of each split are predicted and
            post-processed (the first ones; 0: every slice). Set only by :func:`dry_run`.
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
    predict_slices: int = 0


#: the :class:`Profile` fields that are training schedules (:class:`UNetSchedule`), each a
#: table of every profile in ``profiles.toml``; a network of
#: :data:`~emseg_lib.models.MODELS` names the one it trains with
SCHEDULES: tuple[str, ...] = tuple(name for name, kind in get_type_hints(Profile).items()
                                   if kind is UNetSchedule)


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
    plans = {**dict.fromkeys(SCHEDULES, UNetSchedule), "stylegan": StyleGANPlan,
             "boundless": BoundlessPlan, "transfer": TransferPlan, "tiling_3d": Tiling}
    fields = _tuples({key: value for key, value in values.items() if key not in plans})
    fields["num_workers"] = _workers(name, fields.get("num_workers"))
    nested = {key: plan(**_tuples(values[key])) for key, plan in plans.items()}
    return Profile(name=name, **fields, **nested)


def _load_profiles() -> dict[str, Profile]:
    text = (files("emseg_lib") / "resources" / "profiles.toml").read_text()
    return {name: _profile(name, values) for name, values in tomllib.loads(text).items()}


PROFILES = _load_profiles()


DRY_RUN_SUFFIX = "-dry"
DRY_STEPS = 2
DRY_SLICES = 2
DRY_CROPS = 4


def dry_run(profile: Profile) -> Profile:
    """``profile`` at its own sizes, but short: ``./run_all.sh --dry-run``.

    The volume shape, network widths, crop and batch sizes, tiling and threshold grids stay;
    every training loop runs :data:`DRY_STEPS` steps per epoch for 2 epochs (the transfer
    sweep: 1 seed, 2 epochs of one step), every GAN phase :data:`DRY_STEPS` iterations, every
    prediction and post-processing stage :data:`DRY_SLICES` slices per split, and validation
    or realism measures at most :data:`DRY_CROPS` crops. Named ``<name>-dry``, so its runs
    folder never mixes with the real profile's checkpoints.
    """
    def short(plan: UNetSchedule) -> UNetSchedule:
        return dataclasses.replace(plan, epochs=2, samples_per_epoch=DRY_STEPS * plan.batch_size,
                                   val_crops=min(plan.val_crops, DRY_CROPS))

    gan, boundless, transfer = profile.stylegan, profile.boundless, profile.transfer
    return dataclasses.replace(
        profile, name=profile.name + DRY_RUN_SUFFIX, predict_slices=DRY_SLICES,
        **{name: short(getattr(profile, name)) for name in SCHEDULES},
        stylegan=dataclasses.replace(
            gan, schedule=tuple((resolution, DRY_STEPS) for resolution, _ in gan.schedule),
            samples_per_epoch=min(gan.samples_per_epoch, DRY_STEPS * gan.batch_size),
            sample_every=DRY_STEPS, realism_crops=min(gan.realism_crops, DRY_CROPS * 4)),
        boundless=dataclasses.replace(
            boundless, steps=DRY_STEPS, eval_every=DRY_STEPS,
            samples_per_epoch=min(boundless.samples_per_epoch, DRY_STEPS * boundless.batch_size),
            val_crops=min(boundless.val_crops, DRY_CROPS)),
        transfer=dataclasses.replace(
            transfer, epochs=2, samples_per_epoch=transfer.batch_size,
            val_crops=min(transfer.val_crops, DRY_CROPS), seeds=transfer.seeds[:1],
            early_stop_epochs=1))


def profile_names() -> list[str]:
    """Every name :func:`get_profile` accepts: the profiles and their dry runs."""
    return sorted(PROFILES) + [name + DRY_RUN_SUFFIX for name in sorted(PROFILES)]


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (``smoke``, ``quick`` or ``full``, or one of them with
    ``-dry``: its :func:`dry_run`)."""
    if name in PROFILES:
        return PROFILES[name]
    base = name.removesuffix(DRY_RUN_SUFFIX)
    if name.endswith(DRY_RUN_SUFFIX) and base in PROFILES:
        return dry_run(PROFILES[base])
    raise EmsegInputError(f"profile must be one of {profile_names()}, got {name!r}")
