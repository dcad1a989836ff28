"""Segmentation networks: the 2D UNet, the Lee et al. 2017 3D UNet, the Boundless segmenter.

:data:`MODELS` is the one registry of segmentation networks: how each is built and how it is
run on a whole stack (:class:`ModelEntry`: whole 2D slices padded to a size multiple, or 3D
tiles). :data:`GENERATORS` are the GAN generators whose weights checkpoints also carry. Every
model keeps its constructor arguments in ``model.config``; :func:`model_spec` and
:func:`build_model` turn a model into a small description and back, which is how checkpoints
remember their architecture.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class ModelEntry:
    """A registered segmentation network and how it is run on a whole stack.

    Attributes:
        cls: the ``nn.Module`` class.
        dims: 2 = applied to whole ``(Y, X)`` slices, 3 = to overlapping ``(D, H, W)`` tiles.
        size_multiple: for 2D networks, the multiple that slice sides are padded to.
    """

    cls: type[nn.Module]
    dims: int
    size_multiple: Callable[[nn.Module], int] = lambda model: 1


MODELS: dict[str, ModelEntry] = {
    "unet2d": ModelEntry(UNet2D, 2, lambda model: 2 ** (model.depth - 1)),
    "unet3d": ModelEntry(UNet3D, 3),
    "boundless_segmenter": ModelEntry(BoundlessSegmenter, 2),
}
def output_channels(entry: ModelEntry, target: str) -> int:
    """The output channels of a network of ``entry`` trained for ``target``."""
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
_CLASSES = {**{name: entry.cls for name, entry in MODELS.items()}, **GENERATORS}


def model_name(model: nn.Module) -> str:
    """The :data:`MODELS` or :data:`GENERATORS` name of ``model``'s class."""
    for name, cls in _CLASSES.items():
        if type(model) is cls:
            return name
    raise EmsegInputError(f"{type(model).__name__} is not a registered model: "
                          f"{sorted(_CLASSES)}")


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
    if name not in _CLASSES:
        raise EmsegInputError(f"unknown model {name!r}; expected one of {sorted(_CLASSES)}")
    return _CLASSES[name](**spec.get("config", {}))


__all__ = ["GENERATORS", "LEE2017_FILTERS", "MODELS", "BoundlessSegmenter", "ModelEntry",
           "UNet2D", "UNet3D", "build_model", "model_entry", "model_name", "model_spec"]
