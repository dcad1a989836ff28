"""Losses shared by the training loops: the GANs' hinge loss, the losses of boundary networks
(:data:`BOUNDARY_LOSSES`: the thesis's binary cross-entropy, class-balanced cross-entropy,
cross-entropy plus Dice) and of
affinity networks (:data:`AFFINITY_LOSSES`: class-balanced binary cross-entropy, Dice)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

#: a training loss: ``(logits, target) -> scalar``
LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def hinge_discriminator_loss(real_score: torch.Tensor, fake_score: torch.Tensor
                             ) -> torch.Tensor:
    """Hinge loss of a discriminator: ``mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))``.

    Args:
        real_score, fake_score: discriminator outputs, any shape (e.g. ``(N,)``).
    """
    return F.relu(1 - real_score).mean() + F.relu(1 + fake_score).mean()


def balanced_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with class rebalancing per channel (Lee et al. 2017): in each
    channel the voxels of either class weigh half of the batch's loss together, so the few
    boundary edges among the many inside cells are not ignored.

    Args:
        logits, target: ``(N, C, ...)``; target 0/1.
    """
    dims = [d for d in range(target.ndim) if d != 1]
    positive = target.float().mean(dim=dims, keepdim=True).clamp(1e-3, 1 - 1e-3)
    weight = torch.where(target > 0.5, 0.5 / positive, 0.5 / (1 - positive))
    return F.binary_cross_entropy_with_logits(logits, target, weight=weight)


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The thesis's loss of a boundary network: plain binary cross-entropy of the logits.

    Args:
        logits, target: ``(N, 1, ...)``; target 0/1 (1 = cell interior).
    """
    return F.binary_cross_entropy_with_logits(logits, target)


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus :func:`dice_loss`, which on a cell map is ``1 -`` the soft
    Dice coefficient of the membrane (``1 -`` cell probability, the rare class), as torch-em
    and pytorch_connectomics combine them: the Dice term weighs the thin membranes as much as
    the cells.

    Args:
        logits, target: ``(N, 1, ...)``; target 0/1 (1 = cell interior).
    """
    return bce_loss(logits, target) + dice_loss(logits, target)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 -`` the soft Dice coefficient of the edges that cross a boundary (``1 -``
    affinity, the rare class: on the frequent one a network that predicts "same segment"
    everywhere scores a Dice of 0.98) per channel, averaged over channels (the form of
    torch-em's ``DiceLoss``: ``2 sum(p t) / (sum(p²) + sum(t²))``).

    Args:
        logits, target: ``(N, C, ...)``; target 0/1 (1 = same segment).
    """
    cut = 1 - torch.sigmoid(logits.float())
    truth = 1 - target.float()
    dims = [d for d in range(truth.ndim) if d != 1]
    overlap = (cut * truth).sum(dim=dims)
    size = (cut * cut).sum(dim=dims) + (truth * truth).sum(dim=dims)
    return 1 - (2 * overlap / size.clamp_min(1e-6)).mean()


#: the losses an affinity network can be trained with, by name; the first, the default, is
#: the one that measured better on each real stack, so either stack left out picks it: test
#: VOI with waterz at learned thresholds, FIB-SEM (UNet3D, quick, 60 epochs, CPU) 1.63 vs 1.90
#: with the balanced BCE, VNC (UNet2D, quick, 20 epochs, CPU) 0.80 vs 0.94
#: (``benchmarks/results/real_data/*_affinities_*``)
AFFINITY_LOSSES: dict[str, LossFunction] = {
    "dice": dice_loss, "balanced_bce": balanced_bce}
#: the default loss of an affinity network
DEFAULT_AFFINITY_LOSS = next(iter(AFFINITY_LOSSES))


#: the losses a boundary network can be trained with, by name (the recipes of
#: :mod:`emseg_lib.train.recipes` pick one); the first is the thesis's
BOUNDARY_LOSSES: dict[str, LossFunction] = {
    "bce": bce_loss, "balanced_bce": balanced_bce, "bce_dice": bce_dice_loss}
#: the thesis's loss of a boundary network
THESIS_BOUNDARY_LOSS = next(iter(BOUNDARY_LOSSES))
