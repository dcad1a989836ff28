"""Transfer learning from the Boundless generator to segmentation (thesis 4.4.2, 4.5).

:class:`BoundlessSegmenter` is the image-extension generator used as a segmentation network:
same 16 gated convolutions and output conv, the final clamp to [-1, 1] removed, one logit
out. Its input is the image alone; inside, as in the thesis, it is scaled to [-1, 1] and
given to the generator with an all-zero mask (nothing unknown) and the ones-channel.

The 17 *layers* of the thesis's counting are the 16 gated convolutions and the output conv;
:func:`freeze_first` freezes the first ``n`` and :func:`load_pretrained` copies the first ``n``
from a trained generator (``generator.pt`` written by notebook 04, a verified checkpoint of
:mod:`emseg_lib.infra.checkpoint_file`), leaving the rest as initialised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from emseg_lib.errors import EmsegInputError
from emseg_lib.infra.checkpoint_file import load_checkpoint
from emseg_lib.models.boundless import N_SEGMENTATION_LAYERS as N_LAYERS
from emseg_lib.models.boundless import BoundlessSegmenter

__all__ = ["BoundlessSegmenter", "freeze_first", "load_pretrained", "read_generator_weights"]


def _layer_prefixes(n_layers: int) -> list[str]:
    if not 0 <= n_layers <= N_LAYERS:
        raise EmsegInputError(f"n_layers must lie in [0, {N_LAYERS}], got {n_layers}")
    return [f"layers.{i}." if i < N_LAYERS - 1 else "head." for i in range(n_layers)]


def freeze_first(model: BoundlessSegmenter, n_layers: int) -> list[str]:
    """Stop gradients in the first ``n_layers`` layers; returns the frozen parameter names.

    Frozen parameters get ``requires_grad = False`` (an optimizer then never changes them);
    every other parameter is made trainable.
    """
    prefixes = _layer_prefixes(n_layers)
    frozen = []
    for name, parameter in model.named_parameters():
        is_frozen = name.startswith(tuple(prefixes)) if prefixes else False
        parameter.requires_grad_(not is_frozen)
        if is_frozen:
            frozen.append(name)
    return frozen


def read_generator_weights(path: str | Path) -> dict[str, Any]:
    """Read Boundless generator weights: ``generator.pt`` or a Boundless run's ``last.pt``.

    Returns:
        The verified checkpoint: ``model`` (the generator's state dict), ``model_spec``
        (``name`` ``"boundless_generator"`` and its ``config``), and what else it records.

    Raises:
        EmsegInputError: the file is missing, not a verified emseg checkpoint (see
            :func:`~emseg_lib.infra.checkpoint_file.load_checkpoint`), or holds another network.
    """
    path = Path(path)
    if not path.is_file():
        raise EmsegInputError(f"{path}: generator weights not found (run notebook 04 first)")
    saved = load_checkpoint(path)
    name = saved["model_spec"].get("name") if isinstance(saved["model_spec"], dict) else None
    if name != "boundless_generator":
        raise EmsegInputError(f"{path}: not Boundless generator weights (it holds a {name!r}); "
                              "use the generator.pt of a Boundless run (notebook 04)")
    return saved


def load_pretrained(model: BoundlessSegmenter, path: str | Path, n_layers: int) -> list[str]:
    """Copy the first ``n_layers`` layers of a trained generator into ``model``.

    Layers after ``n_layers`` keep their current (random) initialisation.

    Returns:
        The names of the parameters copied.

    Raises:
        EmsegInputError: the file is missing, not generator weights, or from a generator of
            another architecture (width, channels, shapes); the message names the file and
            the difference.
    """
    saved = read_generator_weights(path)
    config = saved["model_spec"].get("config")
    if config != model.config:
        raise EmsegInputError(
            f"{path}: weights are from BoundlessGenerator({config}) but the model is "
            f"BoundlessSegmenter({model.config}); build the segmenter with the same width"
        )
    source = saved["model"]
    target = model.state_dict()
    prefixes = tuple(_layer_prefixes(n_layers))
    copied = [name for name in target if prefixes and name.startswith(prefixes)]
    for name in copied:
        if name not in source or source[name].shape != target[name].shape:
            found = tuple(source[name].shape) if name in source else "missing"
            raise EmsegInputError(
                f"{path}: parameter '{name}' does not match the architecture "
                f"(file: {found}, model: {tuple(target[name].shape)})"
            )
    with torch.no_grad():
        for name in copied:
            target[name].copy_(source[name])
    return copied
