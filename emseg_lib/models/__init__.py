"""Segmentation networks: the 2D UNet, the Lee et al. 2017 3D UNet, the Boundless segmenter.

Every model keeps its constructor arguments in ``model.config``; :func:`model_spec` and
:func:`build_model` turn a model into a small description and back, which is how
checkpoints remember their architecture. :data:`MODELS` are the segmentation networks;
:data:`GENERATORS` the GAN generators whose weights checkpoints also carry.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from emseg_lib.errors import EmsegInputError
from emseg_lib.models.boundless import BoundlessGenerator, BoundlessSegmenter
from emseg_lib.models.stylegan import StyleGenerator
from emseg_lib.models.unet2d import UNet2D
from emseg_lib.models.unet3d import LEE2017_FILTERS, UNet3D

MODELS: dict[str, type[nn.Module]] = {"unet2d": UNet2D, "unet3d": UNet3D,
                                      "boundless_segmenter": BoundlessSegmenter}
GENERATORS: dict[str, type[nn.Module]] = {"boundless_generator": BoundlessGenerator,
                                          "style_generator": StyleGenerator}
_REGISTRY = {**MODELS, **GENERATORS}


def model_spec(model: nn.Module) -> dict[str, Any]:
    """``{"name": ..., "config": {...}}`` of a registered model."""
    for name, cls in _REGISTRY.items():
        if type(model) is cls:
            return {"name": name, "config": dict(model.config)}
    raise EmsegInputError(f"{type(model).__name__} is not a registered model: "
                          f"{sorted(_REGISTRY)}")


def build_model(spec: dict[str, Any]) -> nn.Module:
    """A freshly initialised model from a :func:`model_spec` description."""
    name = spec.get("name")
    if name not in _REGISTRY:
        raise EmsegInputError(f"unknown model {name!r}; expected one of {sorted(_REGISTRY)}")
    return _REGISTRY[name](**spec.get("config", {}))


__all__ = ["GENERATORS", "LEE2017_FILTERS", "MODELS", "BoundlessSegmenter", "UNet2D", "UNet3D",
           "build_model", "model_spec"]
