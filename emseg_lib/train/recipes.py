"""Training recipes of boundary networks: the thesis's (the notebooks, exact) and the one
``emseg train`` uses on a user's own data, chosen per CPU-minute on three real stacks
(``benchmarks/train_recipes.py``).

A recipe fixes the optimiser's step (Adam's ``lr`` and ``eps``) and the loss
(:data:`~emseg_lib.train.losses.BOUNDARY_LOSSES`); everything else (crops, batch, schedule,
ReduceLROnPlateau) is the profile's and the thesis's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emseg_lib.errors import EmsegInputError
from emseg_lib.train.losses import THESIS_BOUNDARY_LOSS


@dataclass(frozen=True)
class TrainingRecipe:
    """How a boundary network is trained.

    Attributes:
        name: the key in :data:`RECIPES` (``emseg train --recipe``).
        summary: one line for ``--help`` and the README.
        lr: Adam's learning rate.
        eps: Adam's epsilon (the thesis's 0.01 damps every step whose gradient is small).
        boundary_loss: a key of :data:`~emseg_lib.train.losses.BOUNDARY_LOSSES`.
    """

    name: str
    summary: str
    lr: float
    eps: float
    boundary_loss: str

    def config_fields(self) -> dict[str, Any]:
        """The :class:`~emseg_lib.train.TrainConfig` fields this recipe sets."""
        return {"lr": self.lr, "eps": self.eps, "boundary_loss": self.boundary_loss}


RECIPES: dict[str, TrainingRecipe] = {
    "thesis": TrainingRecipe(
        "thesis", "the thesis's: cross-entropy, Adam lr 0.01, eps 0.01", 0.01, 0.01, "bce"),
    "adam": TrainingRecipe(
        "adam", "cross-entropy, Adam lr 0.001, eps 1e-8 (PyTorch's default eps)", 1e-3, 1e-8,
        "bce"),
    "balanced": TrainingRecipe(
        "balanced", "class-balanced cross-entropy (Lee et al. 2017), Adam lr 0.001, eps 1e-8",
        1e-3, 1e-8, "balanced_bce"),
    "dice": TrainingRecipe(
        "dice", "cross-entropy + Dice of the membrane, Adam lr 0.001, eps 1e-8", 1e-3, 1e-8,
        "bce_dice"),
}
#: the notebooks' recipe (the thesis's, exactly)
THESIS_RECIPE = "thesis"
#: ``emseg train``'s recipe for a boundary UNet2D: chosen on two real stacks, it beat the
#: thesis's on the third, for each stack left out (UNet2D, quick, 35 epochs, about 2.5
#: CPU-minutes; training seeds 0-2 for thesis and dice, 0-1 for adam and balanced; test VOI
#: 0.92 / 0.55 / 0.76 of the thesis recipe's on FIB-SEM / SNEMI / VNC:
#: ``benchmarks/results/train_recipes/``)
DEFAULT_RECIPE = "dice"
#: ``emseg train``'s recipe by network: only the UNet2D's was measured; the others train as
#: the thesis did until a measurement says otherwise
DEFAULT_RECIPES = {"unet2d": DEFAULT_RECIPE}


def default_recipe(model: str) -> str:
    """The recipe ``emseg train`` gives a boundary network ``model`` (a
    :data:`~emseg_lib.models.MODELS` name) without ``--recipe``: :data:`DEFAULT_RECIPES`,
    else the thesis's."""
    return DEFAULT_RECIPES.get(model, THESIS_RECIPE)


def get_recipe(name: str) -> TrainingRecipe:
    """The recipe called ``name``.

    Raises:
        EmsegInputError: no such recipe.
    """
    if name not in RECIPES:
        raise EmsegInputError(f"the recipe must be one of {', '.join(RECIPES)}, got {name!r}")
    return RECIPES[name]


def recorded_recipe(settings: Mapping[str, Any]) -> str | None:
    """The name of the recipe a run was trained with, from the training settings recorded in
    its identity (``run.json``'s ``identity.config``; a thesis-loss run records no
    ``boundary_loss``); None when no recipe matches."""
    for recipe in RECIPES.values():
        if (settings.get("lr") == recipe.lr and settings.get("eps") == recipe.eps
                and settings.get("boundary_loss", THESIS_BOUNDARY_LOSS) == recipe.boundary_loss):
            return recipe.name
    return None
