"""Segmentation networks: the 2D UNet, the Lee et al. 2017 3D UNet, the Boundless segmenter.

:data:`MODELS` is the one registry of segmentation networks: how each is built and how it is
run on a whole stack (:class:`ModelEntry`: whole 2D slices padded to a size multiple, or 3D
tiles), and, for the networks ``emseg train`` and the notebooks train, how a profile sizes
and schedules them (:func:`trainable_kinds`). :data:`GENERATORS` are the GAN generators whose
weights checkpoints also carry. Every model keeps its constructor arguments in
``model.config``; :func:`model_spec` and :func:`build_model` turn a model into a small
description and back, which is how checkpoints remember their architecture.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from emseg_lib.data.targets import TARGETS
from emseg_lib.errors import EmsegInputError
from emseg_lib.models.boundless import BoundlessGenerator, BoundlessSegmenter
from emseg_lib.models.stylegan import StyleGenerator
from emseg_lib.models.unet2d import UNet2D
from emseg_lib.models.unet3d import LEE2017_FILTERS, UNet3D
from emseg_lib.profiles import SCHEDULES, Profile, UNetSchedule


@dataclass(frozen=True)
class ModelEntry:
    """A registered segmentation network: how it is built, trained and run on a whole stack.

    Attributes:
        cls: the ``nn.Module`` class.
        dims: 2 = applied to whole ``(Y, X)`` slices, 3 = to overlapping ``(D, H, W)`` tiles;
            also its crops' dimensions and its affinity channels (:func:`output_channels`).
        size_multiple: for 2D networks, the multiple that slice sides are padded to.
        build: the network of a profile's size with the given output channels (``(profile,
            out_channels) -> model``); None: not trained by ``emseg train`` (e.g. the
            Boundless segmenter, trained by the transfer sweep).
        schedule_section: the :class:`~emseg_lib.profiles.Profile` field (one of
            :data:`~emseg_lib.profiles.SCHEDULES`) holding its training schedule.
    """

    cls: type[nn.Module]
    dims: int
    size_multiple: Callable[[nn.Module], int] = lambda model: 1
    build: Callable[[Profile, int], nn.Module] | None = None
    schedule_section: str | None = None

    def _section(self) -> str:
        if self.schedule_section not in SCHEDULES:
            raise EmsegInputError(f"{self.cls.__name__}: its schedule_section "
                                  f"{self.schedule_section!r} is not one of the profile's "
                                  f"training schedules {SCHEDULES}")
        return self.schedule_section

    def schedule(self, profile: Profile) -> UNetSchedule:
        """``profile``'s training schedule of this network."""
        return getattr(profile, self._section())

    def with_schedule(self, profile: Profile, plan: UNetSchedule) -> Profile:
        """``profile`` with ``plan`` as this network's training schedule."""
        return dataclasses.replace(profile, **{self._section(): plan})


def _unet2d(profile: Profile, out_channels: int) -> UNet2D:
    return UNet2D(out_channels=out_channels, base_width=profile.unet2d_width,
                  depth=profile.unet2d_depth)


def _unet3d(profile: Profile, out_channels: int) -> UNet3D:
    return UNet3D(out_channels=out_channels, filters=profile.unet3d_filters)


MODELS: dict[str, ModelEntry] = {
    "unet2d": ModelEntry(UNet2D, 2, lambda model: 2 ** (model.depth - 1), build=_unet2d,
                         schedule_section="unet2d"),
    "unet3d": ModelEntry(UNet3D, 3, build=_unet3d, schedule_section="unet3d"),
    "boundless_segmenter": ModelEntry(BoundlessSegmenter, 2),
}


def trainable_kinds() -> tuple[str, ...]:
    """The :data:`MODELS` names that ``emseg train --model``, ``run_all.sh`` and
    :func:`~emseg_lib.experiments.supervised.train_unet` train (those with a ``build``)."""
    return tuple(name for name, entry in MODELS.items() if entry.build is not None)


def trainable_entry(kind: str) -> ModelEntry:
    """The :data:`MODELS` entry of the trainable network ``kind``.

    Raises:
        EmsegInputError: ``kind`` is not one of :func:`trainable_kinds`.
    """
    kinds = trainable_kinds()
    if kind not in kinds:
        raise EmsegInputError(f"model kind must be one of {kinds}, got {kind!r}")
    return MODELS[kind]


def output_channels(entry: ModelEntry, target: str) -> int:
    """The output channels of a network of ``entry`` trained for ``target``: one cell
    probability for boundaries, one affinity per axis (``entry.dims``) for affinities."""
    if target not in TARGETS:
        raise EmsegInputError(f"the target must be one of {', '.join(TARGETS)}, got "
                              f"{target!r}")
    return 1 if target == "boundaries" else entry.dims


def model_target(model: nn.Module) -> str:
    """What ``model`` predicts, from its output channels (:func:`output_channels`)."""
    channels = getattr(model, "config", {}).get("out_channels", 1)
    return "boundaries" if channels == 1 else "affinities"


GENERATORS: dict[str, type[nn.Module]] = {"boundless_generator": BoundlessGenerator,
                                          "style_generator": StyleGenerator}


def _classes() -> dict[str, type[nn.Module]]:
    """Every registered class by name, read from :data:`MODELS` at each call (an entry
    added later, e.g. by a test, is known at once)."""
    return {**{name: entry.cls for name, entry in MODELS.items()}, **GENERATORS}


def model_name(model: nn.Module) -> str:
    """The :data:`MODELS` or :data:`GENERATORS` name of ``model``'s class."""
    classes = _classes()
    for name, cls in classes.items():
        if type(model) is cls:
            return name
    raise EmsegInputError(f"{type(model).__name__} is not a registered model: "
                          f"{sorted(classes)}")


def model_entry(model: nn.Module) -> ModelEntry:
    """How the segmentation network ``model`` is run (:class:`ModelEntry`)."""
    name = model_name(model)
    if name not in MODELS:
        raise EmsegInputError(f"{name} is not a segmentation network; expected one of "
                              f"{sorted(MODELS)}")
    return MODELS[name]


def model_spec(model: nn.Module) -> dict[str, Any]:
    """``{"name": ..., "config": {...}}`` of a registered model."""
    return {"name": model_name(model), "config": dict(model.config)}


def build_model(spec: dict[str, Any]) -> nn.Module:
    """A freshly initialised model from a :func:`model_spec` description."""
    name = spec.get("name")
    classes = _classes()
    if name not in classes:
        raise EmsegInputError(f"unknown model {name!r}; expected one of {sorted(classes)}")
    return classes[name](**spec.get("config", {}))


__all__ = ["GENERATORS", "LEE2017_FILTERS", "MODELS", "BoundlessSegmenter", "ModelEntry",
           "UNet2D", "UNet3D", "build_model", "model_entry", "model_name", "model_spec",
           "output_channels", "trainable_entry", "trainable_kinds"]
